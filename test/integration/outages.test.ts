import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { ErrorCodes, Pool, isPgResilientError } from '../../src/index.ts';
import { startPgServer, type PgServer } from '../helpers/pg-server.ts';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface Tally { ok: number; errors: Map<string, number> }

/** `workers` loops of `query` until `until`; errors counted by code. */
async function readLoad(pool: { query(text: string): Promise<unknown> }, workers: number, until: () => boolean): Promise<Tally> {
  const t: Tally = { ok: 0, errors: new Map() };
  await Promise.all(Array.from({ length: workers }, async () => {
    while (!until()) {
      try {
        await pool.query('SELECT count(*) FROM pg_class');
        t.ok += 1;
      } catch (err) {
        const k = (err as { code?: string }).code ?? (err as Error).message;
        t.errors.set(k, (t.errors.get(k) ?? 0) + 1);
      }
      await sleep(5);
    }
  }));
  return t;
}

const total = (t: Tally): number => [...t.errors.values()].reduce((a, b) => a + b, 0);

describe('outages of a real PostgreSQL under a read workload at concurrency 10', () => {
  let server: PgServer;
  before(async () => {
    server = await startPgServer();
  });
  after(async () => {
    await server.destroy();
  });

  for (const [name, fault] of [
    ['every backend terminated (pg_terminate_backend)', async (s: PgServer) => { await s.terminateBackends(); }],
    ['pg_ctl restart -m fast', async (s: PgServer) => { await s.restart('fast'); }],
  ] as const) {
    test(`${name}: zero errors reach the application; raw pg.Pool fails`, async () => {
      const ours = new Pool({ ...server.config, max: 10 });
      const raw = new pg.Pool({ ...server.config, max: 10 });
      raw.on('error', () => undefined);
      try {
        await Promise.all([ours.query('SELECT 1'), raw.query('SELECT 1')]);
        let done = false;
        const loads = Promise.all([readLoad(ours, 10, () => done), readLoad(raw, 10, () => done)]);
        await sleep(500);
        // A statement surely in flight at the fault in both pools (the fast loops may all be
        // between statements at that instant): raw pg.Pool loses it, pg-resilient re-runs it.
        const inFlight = (pool: { query(text: string): Promise<unknown> }): Promise<unknown> =>
          pool.query('SELECT pg_sleep(0.3)').then(() => undefined, (err: unknown) => err);
        const slow = [inFlight(ours), inFlight(raw)];
        await sleep(100);
        await fault(server);
        await sleep(1500);
        done = true;
        const [a, b] = await loads;
        const [slowOurs, slowRaw] = await Promise.all(slow);
        if (slowOurs !== undefined) a.errors.set('in-flight read', (a.errors.get('in-flight read') ?? 0) + 1);
        if (slowRaw !== undefined) b.errors.set('in-flight read', (b.errors.get('in-flight read') ?? 0) + 1);
        console.log(`# ${name}: pg-resilient ok=${a.ok} errors=${total(a)}; raw pg.Pool ok=${b.ok} errors=${total(b)} ${JSON.stringify(Object.fromEntries(b.errors))}`);
        assert.equal(total(a), 0, JSON.stringify(Object.fromEntries(a.errors)));
        assert.ok(total(b) > 0, 'the control (raw pg.Pool) must see the fault');
      } finally {
        await ours.end();
        await raw.end().catch(() => undefined);
      }
    });
  }

  test('stopped for longer than the deadline: typed errors, fast failure while the breaker is open, recovery on its own', async () => {
    const pool = new Pool({
      ...server.config,
      max: 10,
      retry: { maxElapsedMs: 400 },
      breaker: { volumeThreshold: 5, resetTimeoutMs: 2000 },
    });
    const states: string[] = [];
    pool.on('breaker', (e) => states.push(e.state));
    try {
      await pool.query('SELECT 1');
      await server.stop('fast');
      const codes = new Map<string, number>();
      const latencies: number[] = [];
      for (let round = 0; round < 6; round += 1) {
        await Promise.all(Array.from({ length: 10 }, async () => {
          const t0 = Date.now();
          try {
            await pool.query('SELECT 1');
            codes.set('ok', (codes.get('ok') ?? 0) + 1);
          } catch (err) {
            assert.ok(isPgResilientError(err), `untyped: ${String(err)}`);
            codes.set(err.code, (codes.get(err.code) ?? 0) + 1);
            const cause = err.cause as { code?: string } | undefined;
            if (err.code === ErrorCodes.RETRIES_EXHAUSTED) assert.ok(cause !== undefined, 'the last failure is kept as cause');
          }
          latencies.push(Date.now() - t0);
        }));
      }
      const afterOpen = latencies.slice(-20);
      console.log(`# server down past the deadline: ${JSON.stringify(Object.fromEntries(codes))}; breaker ${states.join(' → ')}; median latency of the last 20 calls ${afterOpen.sort((a, b) => a - b)[10]} ms`);
      assert.equal(codes.get('ok'), undefined);
      assert.ok(states.includes('open'), 'repeated failures to reach the server open the breaker');
      assert.ok((afterOpen[10] ?? Infinity) < 100, 'while open, calls whose deadline ends before the trial fail fast');
      await server.start();
      const until = Date.now() + 10_000;
      let recovered = false;
      while (!recovered && Date.now() < until) {
        recovered = await pool.query('SELECT 1').then(() => true, () => false);
        if (!recovered) await sleep(200);
      }
      console.log(`# recovered on its own: ${recovered}; breaker ${states.join(' → ')}`);
      assert.ok(recovered, 'the pool recovers when the server returns');
      assert.equal(states.at(-1), 'closed');
    } finally {
      await pool.end();
    }
  });
});
