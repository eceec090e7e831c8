import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as client from 'prom-client';
import { Pool } from '../../src/index.ts';
import { instrumentPool } from '../../src/observe/metrics.ts';
import type { FailoverReport } from '../../src/observe/types.ts';

// The metrics wiring, driven by synthetic pool events (no server): every series, label hygiene,
// several pools in one registry, close(). The real-server path is in test/integration/observe.

const PASSWORD = 'unit-secret-pw-4711';

function newPool(): Pool {
  // Port 1: nothing listens; the pool never connects because no test queries it.
  return new Pool({ connectionString: `postgresql://app:${PASSWORD}@127.0.0.1:1/db`, max: 2 });
}

/** The value of one series in the exposition text, or undefined when absent. */
function value(text: string, series: string): number | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith(series + ' ')) return Number(line.slice(series.length + 1));
  }
  return undefined;
}

function report(recoveryMs: number): FailoverReport {
  return {
    generation: 1,
    firstFailureAt: new Date().toISOString(),
    firstFailure: { category: 'server-shutdown', code: '57P01' },
    oldPrimary: undefined,
    newPrimary: undefined,
    recoveryMs,
    failuresByCategory: {},
    retries: 0,
    failedCalls: 0,
    summary: 'x',
  };
}

describe('instrumentPool (prom-client)', () => {
  test('every series follows the pool events', async () => {
    const registry = new client.Registry();
    const pool = newPool();
    const metrics = instrumentPool(pool, { client, registry, labels: { pool: 'orders' } });
    try {
      let text = await registry.metrics();
      // Before anything happened: zeroed outcomes and scrape-time gauges are present.
      assert.equal(value(text, 'pg_resilient_queries_total{pool="orders",outcome="ok"}'), 0);
      assert.equal(value(text, 'pg_resilient_queries_total{pool="orders",outcome="error"}'), 0);
      assert.equal(value(text, 'pg_resilient_breaker_state{pool="orders"}'), 0);
      assert.equal(value(text, 'pg_resilient_pool_connections{pool="orders"}'), 0);
      assert.equal(value(text, 'pg_resilient_pool_idle_connections{pool="orders"}'), 0);
      assert.equal(value(text, 'pg_resilient_pool_waiting_clients{pool="orders"}'), 0);

      pool.emit('callEnd', { kind: 'query', outcome: 'ok', attempts: 1, durationMs: 1 });
      pool.emit('callEnd', { kind: 'transaction', outcome: 'ok', attempts: 2, durationMs: 9 });
      pool.emit('callEnd', { kind: 'query', outcome: 'error', attempts: 1, durationMs: 3, category: 'statement', code: '23505' });
      pool.emit('retry', { attempt: 1, delayMs: 10, category: 'server-shutdown', code: '57P01', phase: 'query', reason: 'idempotent', error: new Error('x') });
      pool.emit('retry', { attempt: 1, delayMs: 10, category: 'connect-failed', code: 'ECONNREFUSED', phase: 'connect', reason: 'never-sent', error: new Error('x') });
      pool.emit('giveUp', { attempts: 1, elapsedMs: 3, category: 'statement', code: '23505', reason: 'not-transient', error: new Error('dup') });
      pool.emit('failover', { phase: 'detected', generation: 1, oldPrimary: undefined, newPrimary: undefined, trigger: 'server-shutdown' });
      pool.emit('failover', { phase: 'completed', generation: 1, oldPrimary: undefined, newPrimary: undefined, trigger: 'server-shutdown', durationMs: 800 });
      pool.emit('failoverReport', report(1500));
      pool.emit('connectionRetired', { host: { host: '127.0.0.1', port: 1 }, reason: 'failover' });
      pool.emit('connectionRetired', { host: { host: '127.0.0.1', port: 1 }, reason: 'failover' });

      text = await registry.metrics();
      assert.equal(value(text, 'pg_resilient_queries_total{pool="orders",outcome="ok"}'), 2);
      assert.equal(value(text, 'pg_resilient_queries_total{pool="orders",outcome="error"}'), 1);
      assert.equal(value(text, 'pg_resilient_errors_total{pool="orders",category="server-shutdown",code="57P01"}'), 1);
      assert.equal(value(text, 'pg_resilient_errors_total{pool="orders",category="connect-failed",code="ECONNREFUSED"}'), 1);
      assert.equal(value(text, 'pg_resilient_errors_total{pool="orders",category="statement",code="23505"}'), 1);
      assert.equal(value(text, 'pg_resilient_retries_total{pool="orders",category="server-shutdown"}'), 1);
      assert.equal(value(text, 'pg_resilient_give_ups_total{pool="orders",reason="not-transient"}'), 1);
      assert.equal(value(text, 'pg_resilient_failovers_total{pool="orders",trigger="server-shutdown"}'), 1);
      assert.equal(value(text, 'pg_resilient_failover_recovery_seconds_count{pool="orders"}'), 1);
      assert.equal(value(text, 'pg_resilient_failover_recovery_seconds_sum{pool="orders"}'), 1.5);
      assert.equal(value(text, 'pg_resilient_failover_recovery_seconds_bucket{le="1",pool="orders"}'), 0);
      assert.equal(value(text, 'pg_resilient_failover_recovery_seconds_bucket{le="2",pool="orders"}'), 1);
      assert.equal(value(text, 'pg_resilient_connections_retired_total{pool="orders",reason="failover"}'), 2);
      assert.ok(!text.includes(PASSWORD));
      assert.ok(!text.includes('127.0.0.1'), 'hosts are not label values');
    } finally {
      metrics.close();
      await pool.end();
    }
  });

  test('label values are only codes and classes: free text becomes "other"', async () => {
    const registry = new client.Registry();
    const pool = newPool();
    const metrics = instrumentPool(pool, { client, registry });
    try {
      pool.emit('giveUp', { attempts: 1, elapsedMs: 1, category: 'unknown', code: `password=${PASSWORD} SELECT secret`, reason: 'not-transient', error: new Error(PASSWORD) });
      pool.emit('failover', { phase: 'detected', generation: 1, oldPrimary: undefined, newPrimary: undefined, trigger: `SELECT * FROM users WHERE pw = '${PASSWORD}'` });
      const text = await registry.metrics();
      assert.equal(value(text, 'pg_resilient_errors_total{category="unknown",code="other"}'), 1);
      assert.equal(value(text, 'pg_resilient_failovers_total{trigger="other"}'), 1);
      assert.ok(!text.includes(PASSWORD));
      assert.ok(!text.includes('SELECT'));
    } finally {
      metrics.close();
      await pool.end();
    }
  });

  test('several pools share one registry when their labels differ', async () => {
    const registry = new client.Registry();
    const a = newPool();
    const b = newPool();
    const ma = instrumentPool(a, { client, registry, labels: { pool: 'a' } });
    const mb = instrumentPool(b, { client, registry, labels: { pool: 'b' } });
    try {
      assert.throws(() => instrumentPool(newPool(), { client, registry, labels: { pool: 'a' } }), /already instrumented with these labels/);
      assert.throws(() => instrumentPool(newPool(), { client, registry, labels: { db: 'x' } }), /same label names/);
      assert.throws(() => instrumentPool(newPool(), { client, registry, labels: { outcome: 'x' } }), /own series/);
      assert.throws(() => instrumentPool(newPool(), { client, registry, labels: { 'bad-name': 'x' } }), /not a valid Prometheus label name/);
      b.emit('giveUp', { attempts: 2, elapsedMs: 1, category: 'connect-failed', code: 'ECONNREFUSED', reason: 'deadline', error: new Error('x') });
      let text = await registry.metrics();
      assert.equal(value(text, 'pg_resilient_give_ups_total{pool="b",reason="deadline"}'), 1);
      assert.equal(value(text, 'pg_resilient_give_ups_total{pool="a",reason="deadline"}'), undefined);
      assert.equal(value(text, 'pg_resilient_pool_connections{pool="a"}'), 0);
      assert.equal(value(text, 'pg_resilient_pool_connections{pool="b"}'), 0);

      // Closing b: its gauges go, its events are no longer counted, a's series stay.
      mb.close();
      b.emit('giveUp', { attempts: 2, elapsedMs: 1, category: 'connect-failed', code: 'ECONNREFUSED', reason: 'deadline', error: new Error('x') });
      text = await registry.metrics();
      assert.equal(value(text, 'pg_resilient_pool_connections{pool="b"}'), undefined);
      assert.equal(value(text, 'pg_resilient_pool_connections{pool="a"}'), 0);
      assert.equal(value(text, 'pg_resilient_give_ups_total{pool="b",reason="deadline"}'), 1);

      // The last one out unregisters everything, so the registry can be instrumented afresh.
      ma.close();
      assert.equal(await registry.metrics(), '\n');
      const again = instrumentPool(a, { client, registry, labels: { other: 'label-set' } });
      again.close();
    } finally {
      ma.close();
      mb.close();
      await a.end();
      await b.end();
    }
  });

  test('prefix, and prom-client loaded lazily when no client is passed', async () => {
    const registry = new client.Registry();
    const pool = newPool();
    const metrics = instrumentPool(pool, { registry, prefix: 'app_db_' });
    try {
      const text = await registry.metrics();
      assert.equal(value(text, 'app_db_queries_total{outcome="ok"}'), 0);
      assert.ok(!text.includes('pg_resilient_'));
      assert.throws(() => instrumentPool(newPool(), { client, registry, prefix: 'bad prefix' }), /prefix/);
    } finally {
      metrics.close();
      await pool.end();
    }
  });

  test('a name clash with a metric that is not ours is reported, not overwritten', () => {
    const registry = new client.Registry();
    new client.Counter({ name: 'pg_resilient_queries_total', help: 'someone else', registers: [registry] });
    const pool = newPool();
    assert.throws(() => instrumentPool(pool, { client, registry }), /already registered/);
    void pool.end();
  });
});
