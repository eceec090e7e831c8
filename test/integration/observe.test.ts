import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import diagnostics from 'node:diagnostics_channel';
import { inspect } from 'node:util';
import * as client from 'prom-client';
import { Pool, diagnosticsChannels } from '../../src/index.ts';
import type { FailoverEvent, FailoverReport, RetryEvent, ConnectionRetiredEvent, GiveUpEvent } from '../../src/index.ts';
import { instrumentPool } from '../../src/observe/metrics.ts';
import { DEFAULT_TEST_PASSWORD, startPgServer, type PgServer } from '../helpers/pg-server.ts';
import { capturingLogger, type LogCall } from '../helpers/logger.ts';

// What an operator sees of a restart: events, diagnostics_channel messages, the failover report,
// the log and the Prometheus metrics, all from one fast restart of a real server under load.

// A marker in the statement text: it must never surface in metrics or logs.
const QUERY_MARKER = 'observe_marker_q7731';


/** The value of one series in prom-client's exposition text (labels in declaration order). */
function value(text: string, series: string): number | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith(series + ' ')) return Number(line.slice(series.length + 1));
  }
  return undefined;
}

describe('observability of a restart (real PostgreSQL)', () => {
  let server: PgServer;
  // Kept for the consistency check below.
  let seenReport: FailoverReport | undefined;
  let seenRetries: RetryEvent[] = [];
  before(async () => {
    server = await startPgServer();
    await server.admin('CREATE TABLE IF NOT EXISTS obs_items (id int PRIMARY KEY, name text)');
    await server.admin("INSERT INTO obs_items SELECT g, 'n' || g FROM generate_series(1, 100) g ON CONFLICT DO NOTHING");
  });
  after(async () => {
    await server.destroy();
  });

  test('events, channels, report, log and metrics after a fast restart under load', async () => {
    assert.ok(server.connectionString.includes(DEFAULT_TEST_PASSWORD), 'the password is in what the pool is given');
    const logCalls: LogCall[] = [];
    const pool = new Pool({
      connectionString: server.connectionString,
      max: 4,
      logger: capturingLogger(logCalls),
      retry: { maxElapsedMs: 20_000 },
    });
    const registry = new client.Registry();
    const metrics = instrumentPool(pool, { client, registry, labels: { pool: 'observe' } });

    const events = {
      retry: [] as RetryEvent[],
      giveUp: [] as GiveUpEvent[],
      failover: [] as FailoverEvent[],
      failoverReport: [] as FailoverReport[],
      connectionRetired: [] as ConnectionRetiredEvent[],
    };
    const channelMessages = {
      retry: [] as unknown[],
      giveUp: [] as unknown[],
      failover: [] as unknown[],
      failoverReport: [] as unknown[],
      connectionRetired: [] as unknown[],
    };
    pool.on('retry', (e) => events.retry.push(e));
    pool.on('giveUp', (e) => events.giveUp.push(e));
    pool.on('failover', (e) => events.failover.push(e));
    pool.on('failoverReport', (r) => events.failoverReport.push(r));
    pool.on('connectionRetired', (e) => events.connectionRetired.push(e));
    // Subscribed by name, as an APM agent would, not through the exported channel objects.
    const subscriptions = (Object.keys(channelMessages) as Array<keyof typeof channelMessages>).map((name) => {
      const channelName = `pg-resilient:${name}`;
      assert.equal(diagnosticsChannels[name].name, channelName);
      const fn = (message: unknown): void => void channelMessages[name].push(message);
      diagnostics.subscribe(channelName, fn);
      return () => diagnostics.unsubscribe(channelName, fn);
    });

    let ok = 0;
    const failures: unknown[] = [];
    try {
      await pool.query('SELECT 1');
      const stopAt = Date.now() + 5000;
      const restart = (async () => {
        await new Promise((r) => setTimeout(r, 1200));
        // Down for a moment between stop and start, so reconnects are surely refused (a bare
        // restart can be over before any worker tries to connect).
        await server.stop('fast');
        await new Promise((r) => setTimeout(r, 300));
        await server.start();
      })();
      const worker = async (): Promise<void> => {
        while (Date.now() < stopAt) {
          try {
            const r = await pool.query(`SELECT /* ${QUERY_MARKER} */ count(*)::int AS n FROM obs_items WHERE name <> $1`, ['x']);
            assert.equal(r.rows[0].n, 100);
            ok += 1;
          } catch (err) {
            failures.push(err);
          }
          await new Promise((r) => setTimeout(r, 10));
        }
      };
      await Promise.all([restart, worker(), worker(), worker(), worker()]);
      // The report comes with the failover's completion, on the first success after it.
      if (events.failoverReport.length === 0) await pool.query('SELECT 1');

      console.log(`# observe: ok=${ok} failures=${failures.length} retries=${events.retry.length} failover=${events.failover.map((e) => e.phase).join(',')}`);
      for (const r of events.failoverReport) console.log(`# ${r.summary}`);
      assert.deepEqual(failures, [], 'no call may fail for the application');
      assert.ok(ok > 50, `the workload ran (${ok} ok)`);

      // failover: detected, then completed, same generation.
      const detected = events.failover.filter((e) => e.phase === 'detected');
      const completed = events.failover.filter((e) => e.phase === 'completed');
      assert.equal(detected.length, 1, 'one restart, one failover');
      assert.equal(completed.length, 1);
      assert.equal(completed[0]!.generation, detected[0]!.generation);
      assert.ok(events.failover.indexOf(detected[0]!) < events.failover.indexOf(completed[0]!));
      assert.ok((completed[0]!.durationMs ?? -1) >= 0);
      // HostRefs are host and port only.
      for (const e of events.failover) {
        for (const h of [e.oldPrimary, e.newPrimary]) if (h !== undefined) assert.deepEqual(Object.keys(h).sort(), ['host', 'port']);
      }

      // retries happened, and say why.
      assert.ok(events.retry.length > 0, 'the restart must have caused retries');
      for (const e of events.retry) {
        assert.ok(e.attempt >= 1 && e.delayMs >= 0);
        assert.notEqual(e.category, 'unknown');
      }
      assert.deepEqual(events.giveUp, []);

      // The report: one line naming the first failure class and the recovery time.
      assert.equal(events.failoverReport.length, 1);
      const report = events.failoverReport[0]!;
      seenReport = report;
      seenRetries = events.retry;
      assert.equal(pool.lastFailoverReport, report);
      assert.equal(report.generation, detected[0]!.generation);
      assert.ok(['server-shutdown', 'connection-lost', 'cannot-connect-now', 'connect-failed'].includes(report.firstFailure.category), report.firstFailure.category);
      assert.ok(report.recoveryMs > 0 && report.recoveryMs < 15_000, `recoveryMs=${report.recoveryMs}`);
      assert.ok(report.summary.includes(`(${report.firstFailure.category})`), report.summary);
      assert.ok(report.summary.includes(`first failure ${report.firstFailure.code ?? report.firstFailure.category}`), report.summary);
      assert.ok(report.summary.includes(`after ${(report.recoveryMs / 1000).toFixed(1)} s`), report.summary);
      assert.ok(report.retries > 0 && report.retries <= events.retry.length && report.failedCalls === 0, report.summary);
      assert.ok(!Number.isNaN(Date.parse(report.firstFailureAt)));

      // diagnostics_channel: the very same objects, in the same order, as the events.
      for (const name of Object.keys(channelMessages) as Array<keyof typeof channelMessages>) {
        assert.equal(channelMessages[name].length, events[name].length, `channel ${name}`);
        channelMessages[name].forEach((m, i) => assert.equal(m, events[name][i], `channel ${name} #${i}`));
      }
      assert.ok(events.connectionRetired.length > 0, 'connections of the old server were retired');

      // Metrics: the expected series, and nothing secret.
      const text = await registry.metrics();
      assert.equal(value(text, 'pg_resilient_failover_recovery_seconds_count{pool="observe"}'), 1);
      assert.equal(value(text, 'pg_resilient_failover_recovery_seconds_sum{pool="observe"}'), report.recoveryMs / 1000);
      assert.equal(value(text, `pg_resilient_failovers_total{pool="observe",trigger="${detected[0]!.trigger}"}`), 1);
      assert.ok((value(text, 'pg_resilient_queries_total{pool="observe",outcome="ok"}') ?? 0) >= ok);
      assert.equal(value(text, 'pg_resilient_queries_total{pool="observe",outcome="error"}'), 0);
      const retriesInMetrics = text.split('\n').filter((l) => l.startsWith('pg_resilient_retries_total{')).reduce((s, l) => s + Number(l.split(' ')[1]), 0);
      assert.equal(retriesInMetrics, events.retry.length);
      const firstRetry = events.retry[0]!;
      assert.ok((value(text, `pg_resilient_errors_total{pool="observe",category="${firstRetry.category}",code="${firstRetry.code ?? 'none'}"}`) ?? 0) >= 1);
      assert.ok((value(text, 'pg_resilient_connections_retired_total{pool="observe",reason="failover"}') ?? 0) >= 1 ||
        (value(text, 'pg_resilient_connections_retired_total{pool="observe",reason="broken"}') ?? 0) >= 1);
      assert.equal(value(text, 'pg_resilient_breaker_state{pool="observe"}'), 0);
      assert.equal(value(text, 'pg_resilient_pool_connections{pool="observe"}'), pool.totalCount);
      assert.equal(value(text, 'pg_resilient_pool_waiting_clients{pool="observe"}'), 0);
      assert.ok(!text.includes(DEFAULT_TEST_PASSWORD), 'metrics must not contain the password');
      assert.ok(!text.includes(QUERY_MARKER) && !/select|obs_items/i.test(text), 'metrics must not contain query text');

      // The log: structured calls (fields object + message), the failover and its report, no secrets.
      assert.ok(logCalls.length > 0);
      for (const call of logCalls) {
        assert.equal(typeof call.fields, 'object');
        assert.equal(typeof call.message, 'string');
      }
      assert.ok(logCalls.some((c) => c.level === 'warn' && c.message === report.summary), 'the report is logged');
      assert.ok(logCalls.some((c) => c.message.includes('failover detected')));
      const logText = inspect(logCalls, { depth: 12, maxArrayLength: null, maxStringLength: null, showHidden: true });
      assert.ok(!logText.includes(DEFAULT_TEST_PASSWORD), 'the log must not contain the password');
      assert.ok(!logText.includes(QUERY_MARKER), 'the log must not contain query text');
    } finally {
      for (const unsubscribe of subscriptions) unsubscribe();
      metrics.close();
      await pool.end();
    }
  });

  // Regression: a refused connect was once noted twice in the episode (factory and attempt).
  test('the report counts each refused connect once', () => {
    assert.ok(seenReport !== undefined, 'runs after the restart test');
    const connectRetries = seenRetries.filter((e) => e.phase === 'connect' && e.category === 'connect-failed').length;
    assert.ok(connectRetries > 0, 'the restart produced refused connects');
    assert.equal(seenReport.failuresByCategory['connect-failed'] ?? 0, connectRetries);
  });
});
