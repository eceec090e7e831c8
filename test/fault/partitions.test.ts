import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { ErrorCodes, Pool, isPgResilientError, type PoolOptions } from '../../src/index.ts';
import { useFaultFixture } from '../helpers/fault-fixture.ts';

// Network faults through a real TCP proxy in front of a real PostgreSQL: the proxy drops
// packets (blackhole), resets or refuses, exactly as a partition or a dead node would.
describe('partitions, resets and refusals through a real TCP fault proxy', () => {
  const f = useFaultFixture();
  const viaProxy = (extra: PoolOptions = {}): PoolOptions => f.via(extra);

  test('blackhole: the statement in flight is detected within 5 s by default, and retried once healed', async () => {
    await f.proxy.pass();
    const pool = new Pool(viaProxy({ max: 2, retry: { maxElapsedMs: 30000 } }));
    const raw = new pg.Pool(viaProxy({ max: 2 }));
    raw.on('error', () => undefined);
    try {
      await Promise.all([pool.query('SELECT 1'), raw.query('SELECT 1')]);
      let detectedAfter: number | undefined;
      pool.on('retry', () => {
        detectedAfter ??= Date.now() - cutAt;
      });
      const cutAt = Date.now();
      await f.proxy.blackhole();
      const ours = pool.query('SELECT pg_sleep(0.05), 1 AS ok');
      const rawQuery = raw.query('SELECT pg_sleep(0.05), 1 AS ok').then(() => 'answered', () => 'failed');
      setTimeout(() => void f.proxy.pass(), 7000).unref();
      const res = await ours;
      const total = Date.now() - cutAt;
      const rawState = await Promise.race([rawQuery, new Promise((r) => setTimeout(() => r('still hanging'), 500))]);
      console.log(`# blackhole: detected after ${detectedAfter} ms; query answered after healing, ${total} ms after the cut; raw pg.Pool query after ${total + 500} ms: ${String(rawState)}`);
      assert.equal(res.rows[0].ok, 1);
      assert.ok(detectedAfter !== undefined && detectedAfter <= 5000, `detection took ${detectedAfter} ms`);
      assert.equal(rawState, 'still hanging', 'the control (raw pg.Pool) hangs on a blackholed connection');
    } finally {
      await f.proxy.pass();
      f.proxy.resetAll();
      await pool.end();
      await raw.end().catch(() => undefined);
    }
  });

  test('two hosts, the first blackholed: connects go to the one that answers at once, none waits out the connect timeout; raw pg.Pool on the first hangs to its timeout', async () => {
    await f.proxy.blackhole();
    const connectTimeout = 4000;
    const hosts = [`127.0.0.1:${f.proxy.port}`, `${f.server.host}:${f.server.port}`];
    const pool = new Pool(viaProxy({ hosts, max: 8, connectionTimeoutMillis: connectTimeout, application_name: 'pgr-two-hosts' }));
    const raw = new pg.Pool(viaProxy({ max: 8, connectionTimeoutMillis: connectTimeout }));
    raw.on('error', () => undefined);
    try {
      const started = Date.now();
      // Eight callers at once on an empty pool: eight connections wanted, the first host hangs.
      const took = await Promise.all(Array.from({ length: 8 }, async () => {
        await pool.query('SELECT pg_sleep(0.05)');
        return Date.now() - started;
      }));
      const slowest = Math.max(...took);
      const sessions = await f.server.admin<{ n: string }>("SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = 'pgr-two-hosts'");
      const rawStarted = Date.now();
      const rawOutcomes = await Promise.all(Array.from({ length: 2 }, () => raw.query('SELECT 1').then(() => 'ok', (e: Error) => e.message)));
      const rawTook = Date.now() - rawStarted;
      console.log(`# two hosts, first blackholed: 8 calls done after ${slowest} ms (connect timeout ${connectTimeout} ms), ${sessions[0]!.n} sessions on the host that answers; raw pg.Pool on the blackholed host: ${rawOutcomes[0]} after ${rawTook} ms`);
      assert.ok(slowest < connectTimeout / 2, `a call waited ${slowest} ms: attempts to the blackholed host held the connect slots`);
      assert.ok(rawOutcomes.every((o) => o !== 'ok') && rawTook >= connectTimeout - 100, 'the control waits out its connect timeout');
    } finally {
      await f.proxy.pass();
      f.proxy.resetAll();
      await pool.end();
      await raw.end().catch(() => undefined);
    }
  });

  test('blackhole longer than the deadline: the call fails with PGR_RETRIES_EXHAUSTED, on time', async () => {
    await f.proxy.pass();
    const pool = new Pool(viaProxy({ max: 2, retry: { maxElapsedMs: 3000 }, connectionTimeoutMillis: 1000 }));
    try {
      await pool.query('SELECT 1');
      await f.proxy.blackhole();
      f.proxy.resetAll(); // existing connections die; new ones hang in the blackhole
      const started = Date.now();
      await assert.rejects(pool.query('SELECT 1'), (e: unknown) => isPgResilientError(e) && e.code === ErrorCodes.RETRIES_EXHAUSTED);
      const took = Date.now() - started;
      console.log(`# blackhole past the deadline: failed after ${took} ms (deadline 3000 ms)`);
      assert.ok(took < 3000 + 1500, `took ${took} ms`);
    } finally {
      await f.proxy.pass();
      await pool.end();
    }
  });

  test('reset of every connection mid-query: reads retried, a plain write is not run twice', async () => {
    await f.proxy.pass();
    await f.server.admin('CREATE TABLE IF NOT EXISTS writes (id serial PRIMARY KEY, note text)');
    await f.server.admin('TRUNCATE writes');
    const pool = new Pool(viaProxy({ max: 2 }));
    try {
      await pool.query('SELECT 1');
      setTimeout(() => f.proxy.resetAll(), 150).unref();
      const read = await pool.query('SELECT pg_sleep(0.4), 42 AS n');
      assert.equal(read.rows[0].n, 42);
      setTimeout(() => f.proxy.resetAll(), 150).unref();
      await assert.rejects(
        pool.query("INSERT INTO writes (note) SELECT 'x' FROM pg_sleep(0.4)"),
        (e: unknown) => isPgResilientError(e) && e.code === ErrorCodes.STATEMENT_OUTCOME_UNKNOWN,
      );
      await new Promise((r) => setTimeout(r, 600));
      const rows = await f.server.admin<{ n: string }>('SELECT count(*) AS n FROM writes');
      assert.ok(Number(rows[0]!.n) <= 1, 'a write must never run twice');
    } finally {
      await pool.end();
    }
  });

  test('refused for 2 s (node restarting): no error reaches the caller; raw pg.Pool fails', async () => {
    await f.proxy.pass();
    const pool = new Pool(viaProxy());
    const raw = new pg.Pool(viaProxy());
    raw.on('error', () => undefined);
    try {
      await Promise.all([pool.query('SELECT 1'), raw.query('SELECT 1')]);
      await f.proxy.refuse();
      f.proxy.resetAll();
      setTimeout(() => void f.proxy.pass(), 2000).unref();
      const started = Date.now();
      const [ours, theirs] = await Promise.all([
        pool.query('SELECT 1 AS ok').then(() => 'ok', (e: Error) => e.message),
        raw.query('SELECT 1 AS ok').then(() => 'ok', (e: Error) => e.message),
      ]);
      console.log(`# refused 2 s: pg-resilient ${ours} after ${Date.now() - started} ms; raw pg.Pool: ${theirs}`);
      assert.equal(ours, 'ok');
      assert.notEqual(theirs, 'ok');
    } finally {
      await pool.end();
      await raw.end().catch(() => undefined);
    }
  });

  test('new connections refused while the open ones still work (a proxy catching up after a switchover): no failover, no error', async () => {
    await f.proxy.pass();
    const pool = new Pool(viaProxy({ max: 4, application_name: 'pgr-route-flap' }));
    const failovers: unknown[] = [];
    const retired: unknown[] = [];
    pool.on('failover', (e) => failovers.push(e));
    pool.on('connectionRetired', (e) => retired.push(e));
    try {
      // Two connections open and in use.
      await Promise.all([pool.query('SELECT pg_sleep(0.05)'), pool.query('SELECT pg_sleep(0.05)')]);
      assert.equal(pool.totalCount, 2);
      const pidsBefore = (await f.server.admin<{ pid: number }>("SELECT pid FROM pg_stat_activity WHERE application_name = 'pgr-route-flap' ORDER BY pid")).map((r) => r.pid);
      await f.proxy.refuse();
      // Four callers at once: the pool tries to open two more connections and is refused.
      let errors = 0;
      let ok = 0;
      const until = Date.now() + 1500;
      await Promise.all(Array.from({ length: 4 }, async () => {
        while (Date.now() < until) {
          try {
            await pool.query('SELECT pg_sleep(0.02)');
            ok += 1;
          } catch {
            errors += 1;
          }
        }
      }));
      await f.proxy.pass();
      const pidsAfter = (await f.server.admin<{ pid: number }>("SELECT pid FROM pg_stat_activity WHERE application_name = 'pgr-route-flap' ORDER BY pid")).map((r) => r.pid);
      console.log(`# route flap: ${ok} calls ok, ${errors} errors, ${failovers.length} failovers, ${retired.length} connections retired; sessions before ${pidsBefore.length}, after ${pidsAfter.length}`);
      assert.equal(errors, 0);
      assert.ok(ok > 20, `the two open connections kept serving (${ok} calls)`);
      assert.equal(failovers.length, 0, 'refused connects next to working connections are not a failover');
      assert.equal(retired.length, 0);
      // (Connections the callers asked for may open once the route works again: the connect gate
      // keeps their attempts waiting out the host's backoff rather than failing them.)
      assert.ok(pidsBefore.every((pid) => pidsAfter.includes(pid)), 'the good connections were kept');
    } finally {
      await f.proxy.pass();
      await pool.end();
    }
  });

  test('delay: 150 ms added each way slows calls down but fails none', async () => {
    await f.proxy.pass();
    const pool = new Pool(viaProxy({ max: 4 }));
    try {
      await pool.query('SELECT 1');
      const fast = Date.now();
      await pool.query('SELECT 1');
      const base = Date.now() - fast;
      await f.proxy.delay(150);
      const t0 = Date.now();
      const results = await Promise.all(Array.from({ length: 8 }, () => pool.query('SELECT 2 AS two')));
      const slow = Date.now() - t0;
      console.log(`# delay 150 ms: a round trip took ${base} ms before, 8 concurrent calls ${slow} ms with the delay`);
      assert.ok(results.every((r) => r.rows[0].two === 2));
      assert.ok(slow >= 300, 'the delay was real');
    } finally {
      await f.proxy.pass();
      await pool.end();
    }
  });
});
