// OpenTelemetry metrics from the pool itself, read through the SDK's own reader, through a fast
// restart of a real PostgreSQL under load (the "failover"). A raw pg.Pool runs the same load
// next to it as the control: it shows the restart really broke calls.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { metrics as otelMetrics } from '@opentelemetry/api';
import { MeterProvider, MetricReader, DataPointType, type MetricData, type DataPoint, type Histogram } from '@opentelemetry/sdk-metrics';
import pg from 'pg';
import { Pool, type CallEndEvent, type RetryEvent } from '../../src/index.ts';
import { instrumentPoolOtel, defaultPoolName } from '../../src/observe/otel.ts';
import { DEFAULT_TEST_PASSWORD, startPgServer, type PgServer } from '../helpers/pg-server.ts';

const QUERY_MARKER = 'otel_marker_q4417';

/** A reader the test collects from on demand (cumulative, as Prometheus-style backends see it). */
class CollectingReader extends MetricReader {
  protected onShutdown(): Promise<void> {
    return Promise.resolve();
  }

  protected onForceFlush(): Promise<void> {
    return Promise.resolve();
  }
}

async function collect(reader: MetricReader): Promise<Map<string, MetricData>> {
  const { resourceMetrics, errors } = await reader.collect();
  assert.deepEqual(errors, []);
  const out = new Map<string, MetricData>();
  for (const scope of resourceMetrics.scopeMetrics) {
    for (const m of scope.metrics) out.set(m.descriptor.name, m);
  }
  return out;
}

function points(data: Map<string, MetricData>, name: string): Array<DataPoint<unknown>> {
  const m = data.get(name);
  assert.ok(m !== undefined, `metric ${name} is exported`);
  return m.dataPoints as Array<DataPoint<unknown>>;
}

function histogramPoints(data: Map<string, MetricData>, name: string): Array<DataPoint<Histogram>> {
  const m = data.get(name);
  assert.ok(m !== undefined && m.dataPointType === DataPointType.HISTOGRAM, `${name} is a histogram`);
  return m.dataPoints as Array<DataPoint<Histogram>>;
}

const sumOf = (ps: Array<DataPoint<unknown>>): number => ps.reduce((s, p) => s + (p.value as number), 0);

describe('OpenTelemetry metrics of the pool (real PostgreSQL, SDK reader)', () => {
  let server: PgServer;
  before(async () => {
    server = await startPgServer();
    await server.admin('CREATE TABLE IF NOT EXISTS otel_items (id int PRIMARY KEY, name text)');
    await server.admin("INSERT INTO otel_items SELECT g, 'n' || g FROM generate_series(1, 100) g ON CONFLICT DO NOTHING");
  });
  after(async () => {
    await server.destroy();
  });

  test('logical calls, final SQLSTATE, connection state and the failover counter through a fast restart under load', async () => {
    const reader = new CollectingReader();
    const provider = new MeterProvider({ readers: [reader] });
    const pool = new Pool({ connectionString: server.connectionString, max: 4, min: 1, retry: { maxElapsedMs: 20_000 } });
    const otel = instrumentPoolOtel(pool, { meterProvider: provider, poolName: 'catalog' });
    const control = new pg.Pool({ connectionString: server.connectionString, max: 4 });
    control.on('error', () => undefined); // idle clients killed by the restart must not crash the test

    // The pool's own account, to compare the metrics with.
    const callEnds: CallEndEvent[] = [];
    const retries: RetryEvent[] = [];
    const created: unknown[] = [];
    pool.on('callEnd', (e) => callEnds.push(e));
    pool.on('retry', (e) => retries.push(e));
    pool.on('connectionCreated', (e) => created.push(e));

    let calls = 0;
    let ok = 0;
    const failures: unknown[] = [];
    let controlOk = 0;
    let controlErrors = 0;
    try {
      await pool.query('SELECT 1');
      calls += 1;
      const stopAt = Date.now() + 4500;
      const restart = (async () => {
        await new Promise((r) => setTimeout(r, 1200));
        await server.restart('fast');
      })();
      const worker = async (): Promise<void> => {
        while (Date.now() < stopAt) {
          calls += 1;
          try {
            const r = await pool.query(`SELECT /* ${QUERY_MARKER} */ count(*)::int AS n FROM otel_items WHERE name <> $1`, ['x']);
            assert.equal(r.rows[0].n, 100);
            ok += 1;
          } catch (err) {
            failures.push(err);
          }
          await new Promise((r) => setTimeout(r, 10));
        }
      };
      const controlWorker = async (): Promise<void> => {
        while (Date.now() < stopAt) {
          try {
            await control.query('SELECT count(*) FROM otel_items');
            controlOk += 1;
          } catch {
            controlErrors += 1;
          }
          await new Promise((r) => setTimeout(r, 10));
        }
      };
      await Promise.all([restart, worker(), worker(), worker(), controlWorker(), controlWorker()]);
      // The failover completes (and its report comes) with the first success after it.
      await pool.query('SELECT 1');
      calls += 1;
      // Failures that are the application's own: one attempt each, their SQLSTATE as status code.
      await assert.rejects(pool.query('SELEC 1'), (e: { code?: string }) => e.code === '42601');
      await assert.rejects(pool.query('INSERT INTO otel_items (id, name) VALUES (1, $1)', ['dup']), (e: { code?: string }) => e.code === '23505');
      await pool.transaction(async (c) => {
        await c.query('SELECT 1');
      });
      calls += 3;

      const data = await collect(reader);
      const retried = callEnds.filter((e) => e.attempts > 1);
      console.log(`# otel: calls=${calls} ok=${ok} failures=${failures.length} callEnd=${callEnds.length} retried calls=${retried.length} retries=${retries.length}; control pg.Pool: ok=${controlOk} errors=${controlErrors}`);
      assert.deepEqual(failures, [], 'no call failed for the application');
      assert.ok(controlErrors > 0, 'the control pg.Pool saw the restart as errors (the restart was real)');
      assert.ok(retries.length > 0, 'the restart made the pool retry');

      // db.client.operation.duration: one data point per logical call, not per attempt.
      const durations = histogramPoints(data, 'db.client.operation.duration');
      assert.equal(data.get('db.client.operation.duration')!.descriptor.unit, 's');
      const counted = durations.reduce((s, p) => s + p.value.count, 0);
      const attempts = callEnds.filter((e) => e.kind !== 'connect').reduce((s, e) => s + e.attempts, 0);
      assert.equal(counted, calls, `the histogram counts calls (${calls}), not attempts (${attempts})`);
      assert.ok(attempts > calls, 'some calls took more than one attempt');
      for (const p of durations) {
        assert.equal(p.attributes['db.system.name'], 'postgresql');
        assert.equal(p.attributes['db.client.connection.pool.name'], 'catalog');
      }
      // Retries are inside one duration: the longest call took as long as its retries.
      const longestMs = Math.max(...callEnds.map((e) => e.durationMs));
      const longestRecorded = Math.max(...durations.map((p) => p.value.max ?? 0));
      assert.ok(Math.abs(longestRecorded * 1000 - longestMs) < 1e-6, `max ${longestRecorded} s = longest call ${longestMs} ms`);
      const retriedPoints = durations.filter((p) => (p.attributes['pg_resilient.attempts'] as number) > 1);
      assert.equal(retriedPoints.reduce((s, p) => s + p.value.count, 0), retried.length, 'retried calls carry their attempt count');
      const byAttempts: Record<string, number> = {};
      for (const p of durations) byAttempts[String(p.attributes['pg_resilient.attempts'])] = (byAttempts[String(p.attributes['pg_resilient.attempts'])] ?? 0) + p.value.count;
      console.log(`# otel: longest call ${longestMs.toFixed(0)} ms; calls by attempts: ${JSON.stringify(byAttempts)}`);

      // Failures: error.type and the final SQLSTATE as db.response.status_code.
      for (const code of ['42601', '23505']) {
        const failed = durations.filter((p) => p.attributes['error.type'] === code);
        assert.equal(failed.reduce((s, p) => s + p.value.count, 0), 1, `one failed call with ${code}`);
        assert.equal(failed[0]!.attributes['db.response.status_code'], code);
        assert.equal(failed[0]!.attributes['pg_resilient.attempts'], 1, 'not retried');
      }
      const txn = durations.filter((p) => p.attributes['pg_resilient.call.kind'] === 'transaction');
      assert.equal(txn.reduce((s, p) => s + p.value.count, 0), 1);

      // Connection metrics, read at collection time from the pool.
      const count = points(data, 'db.client.connection.count');
      const byState = Object.fromEntries(count.map((p) => [p.attributes['db.client.connection.state'], p.value as number]));
      assert.deepEqual(Object.keys(byState).sort(), ['idle', 'used']);
      assert.equal(byState['idle']! + byState['used']!, pool.totalCount);
      assert.ok(pool.totalCount >= 1);
      assert.equal(sumOf(points(data, 'db.client.connection.max')), 4);
      assert.equal(sumOf(points(data, 'db.client.connection.idle.min')), 1);
      assert.equal(sumOf(points(data, 'db.client.connection.pending_requests')), 0);
      for (const p of [...count, ...points(data, 'db.client.connection.max')]) assert.equal(p.attributes['db.client.connection.pool.name'], 'catalog');

      // pg-resilient's own: the failover counter moved, with its trigger; retries match the events.
      const failovers = points(data, 'pg_resilient.failovers');
      assert.ok(sumOf(failovers) >= 1, 'the failover counter moved');
      assert.equal(typeof failovers[0]!.attributes['pg_resilient.failover.trigger'], 'string');
      assert.equal(sumOf(points(data, 'pg_resilient.retries')), retries.length);
      console.log(`# otel: connection.count ${JSON.stringify(byState)}; failovers ${JSON.stringify(failovers.map((p) => [p.attributes['pg_resilient.failover.trigger'], p.value]))}; retries ${sumOf(points(data, 'pg_resilient.retries'))}`);
      assert.ok(histogramPoints(data, 'pg_resilient.failover.duration').reduce((s, p) => s + p.value.count, 0) >= 1, 'the recovery time was recorded');
      const breaker = points(data, 'pg_resilient.breaker.state');
      assert.equal(breaker.find((p) => p.value === 1)?.attributes['pg_resilient.breaker.state'], pool.breakerState);
      assert.ok(sumOf(points(data, 'pg_resilient.connections.retired')) >= 1, 'connections of the old server were retired');

      // create_time needs the pool's connectionCreated event (added in the connection factory).
      if (created.length > 0) {
        assert.equal(histogramPoints(data, 'db.client.connection.create_time').reduce((s, p) => s + p.value.count, 0), created.length);
      } else {
        console.log('# otel: the pool emits no connectionCreated event yet: db.client.connection.create_time stays empty');
        assert.equal(data.get('db.client.connection.create_time')?.dataPoints.length ?? 0, 0);
      }

      // Nothing secret, no query text, in anything exported.
      const exported = JSON.stringify([...data.values()]);
      assert.ok(!exported.includes(DEFAULT_TEST_PASSWORD), 'no password in the metrics');
      assert.ok(!exported.includes(QUERY_MARKER) && !/otel_items|select/i.test(exported), 'no query text in the metrics');
      console.log(`# otel sample: ${JSON.stringify(durations.slice(0, 2).map((p) => ({ attributes: p.attributes, count: p.value.count, sum: Number((p.value.sum ?? 0).toFixed(4)), max: p.value.max })))}`);

      // A call that runs out of time while the server is down: retried, then PGR_RETRIES_EXHAUSTED.
      await server.stop('fast');
      const before = callEnds.length;
      await assert.rejects(pool.query({ text: 'SELECT 1', deadlineMs: 600 }), (e: { code?: string }) => e.code === 'PGR_RETRIES_EXHAUSTED' || e.code === 'PGR_DEADLINE_EXCEEDED');
      const exhausted = callEnds.slice(before).find((e) => e.outcome === 'error')!;
      const after = histogramPoints(await collect(reader), 'db.client.operation.duration').filter((p) => p.attributes['error.type'] === exhausted.code);
      assert.equal(after.reduce((s, p) => s + p.value.count, 0), 1);
      assert.ok((after[0]!.attributes['pg_resilient.attempts'] as number) >= 1);
      console.log(`# otel: while down: ${exhausted.code} after ${exhausted.attempts} attempts, ${exhausted.durationMs.toFixed(0)} ms; status code ${String(after[0]!.attributes['db.response.status_code'])}`);
    } finally {
      otel.close();
      await pool.end();
      await control.end().catch(() => undefined);
      await provider.shutdown();
      await server.start();
    }
  });

  test('the global MeterProvider by default; one name per pool; a bad provider and secrets are refused', async () => {
    const reader = new CollectingReader();
    const provider = new MeterProvider({ readers: [reader] });
    assert.ok(otelMetrics.setGlobalMeterProvider(provider));
    const pool = new Pool({ connectionString: server.connectionString, max: 2 });
    try {
      const otel = instrumentPoolOtel(pool); // @opentelemetry/api loaded lazily, its global provider
      await pool.query('SELECT 1');
      const name = `127.0.0.1:${server.port}/postgres`;
      const durations = histogramPoints(await collect(reader), 'db.client.operation.duration');
      assert.equal(durations.reduce((s, p) => s + p.value.count, 0), 1);
      assert.equal(durations[0]!.attributes['db.client.connection.pool.name'], name, 'host:port/database, no credentials');
      assert.throws(() => instrumentPoolOtel(pool), { code: 'PGR_INVALID_OPTION', option: 'poolName' });
      otel.close();
      instrumentPoolOtel(pool).close(); // the name is free again after close()
      assert.throws(() => instrumentPoolOtel(pool, { meterProvider: {} as never }), { code: 'PGR_INVALID_OPTION', option: 'meterProvider' });
      assert.throws(() => instrumentPoolOtel(pool, { meterProvider: provider, poolName: '' }), { code: 'PGR_INVALID_OPTION' });
    } finally {
      otelMetrics.disable();
      await pool.end();
      await provider.shutdown();
    }
    // The default name never carries a user or password, whatever the connection string holds.
    const names = [
      defaultPoolName({ max: 1, min: 0, connectionString: `postgresql://app:${DEFAULT_TEST_PASSWORD}@db1:5433,db2/shop?sslmode=require` } as never),
      defaultPoolName({ max: 1, min: 0, host: 'db1', port: 6432, database: 'shop', password: DEFAULT_TEST_PASSWORD } as never),
      defaultPoolName({ max: 1, min: 0, hosts: ['db1:5432', { host: 'db2' }], connectionString: 'postgres://u:p@x/shop' } as never),
    ];
    assert.deepEqual(names, ['db1:5433,db2:5432/shop', 'db1:6432/shop', 'db1:5432,db2:5432/shop']);
  });
});
