import assert from 'node:assert/strict';
import { describe } from 'node:test';
import pg from 'pg';
import { Trace, differential, errorShape, outcome, settledAs } from '../helpers/differential.ts';

// pool.end(): its promise and callback forms, the flags, and what happens to calls accepted before
// it (they finish) and made after it (refused): issue #13, point 2.

/**
 * A pg Client whose connects take as long as `DelayedConnectClient.delays` says, by order of
 * construction (the rest connect at once): a deterministic order of connects finishing.
 */
class DelayedConnectClient extends pg.Client {
  static delays: number[] = [];
  static made = 0;
}
// Both pools call connect(callback); only that form is delayed.
const baseConnect = pg.Client.prototype.connect as (this: pg.Client, cb: (err: Error | null) => void) => void;
(DelayedConnectClient.prototype as unknown as { connect(cb: (err: Error | null) => void): void }).connect = function (this: pg.Client, cb) {
  const delay = DelayedConnectClient.delays[DelayedConnectClient.made++] ?? 0;
  setTimeout(() => baseConnect.call(this, cb), delay);
};

export function endCases(): void {
  describe('differential: end()', () => {
    differential('end() with idle clients: removes them, sets ending/ended; a second end() is refused', async (s) => {
      const pool = s.pool();
      const t = new Trace(pool);
      const [a, b] = [await pool.connect(), await pool.connect()];
      a.release();
      b.release();
      await t.step('two idle');
      const ending = pool.end();
      const flagsAtOnce = { ending: pool.ending };
      const first = await outcome(ending, 3000);
      const flagsAfter = { ending: pool.ending, ended: pool.ended };
      await t.step('end() resolved', 'remove c1', 'remove c2');
      t.steps[1]?.events.sort(); // the two clients close in parallel
      const second = await outcome(pool.end(), 1000);
      const secondCb = await new Promise<unknown[]>((resolve) => pool.end((...args: unknown[]) => resolve(args.map((x) => (x instanceof Error ? errorShape(x) : x)))));
      return { flagsAtOnce, first: settledAs(first), flagsAfter, second: settledAs(second), secondCb, steps: t.steps };
    }, {
      expectPg: (o) => {
        assert.deepEqual(o.flagsAfter, { ending: true, ended: true });
        assert.equal(o.second, 'rejected Error: Called end on pool more than once');
        assert.deepEqual(o.steps[1]?.events, ['remove c1', 'remove c2']);
      },
    });

    differential('end(callback) calls back with no arguments once ended, and returns undefined', async (s) => {
      const pool = s.pool();
      await pool.query('SELECT 1');
      let returned: unknown = 'not yet';
      const args = await new Promise<unknown[]>((resolve) => {
        returned = pool.end((...a: unknown[]) => resolve(a));
      });
      return { returned: typeof returned, args, ended: pool.ended, total: pool.totalCount };
    }, {
      expectPg: (o) => assert.deepEqual(o, { returned: 'undefined', args: [], ended: true, total: 0 }),
    });

    differential('end() right after query(): the accepted query finishes (its connection was still opening)', async (s) => {
      const pool = s.pool();
      const t = new Trace(pool);
      const q = pool.query('SELECT 1 AS n');
      const e = pool.end();
      const [qo, eo] = await Promise.all([outcome(q, 3000), outcome(e, 3000)]);
      await t.step('settled', 'remove c1');
      const late = await outcome(pool.query('SELECT 1'), 1000);
      return { query: settledAs(qo), rows: qo.status === 'resolved' ? qo.value.rows : undefined, end: settledAs(eo), late: late.status, steps: t.steps };
    }, {
      expectPg: (o) => {
        assert.deepEqual([o.query, o.end, o.late], ['resolved', 'resolved', 'rejected']);
        assert.deepEqual(o.rows, [{ n: 1 }]);
      },
    });

    differential('end() while statements run: they finish, then end() resolves', async (s) => {
      const settledOrder: string[] = [];
      const app = `diff-end-running-${s.kind}`;
      const pool = s.pool({ max: 3, application_name: app });
      const qs = [1, 2, 3].map((i) => pool.query('SELECT pg_sleep(0.3), $1::int AS n', [i]));
      qs.forEach((q, i) => void q.then(() => settledOrder.push(`query ${i + 1}`), () => settledOrder.push(`query ${i + 1} failed`)));
      // end() only once the server runs all three statements.
      let running = 0;
      for (let i = 0; i < 100 && running < 3; i++) {
        const rows = await s.server.admin<{ n: number }>(
          "SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1 AND state = 'active' AND query LIKE 'SELECT pg_sleep%'", [app]);
        running = rows[0]?.n ?? 0;
      }
      const e = pool.end();
      void e.then(() => settledOrder.push('end'));
      const results = await Promise.all(qs.map((q) => outcome(q, 3000)));
      await outcome(e, 3000);
      return { running, results: results.map(settledAs), settledOrder: settledOrder.slice(-1), total: pool.totalCount, ended: pool.ended };
    }, {
      expectPg: (o) => assert.deepEqual(o, { running: 3, results: ['resolved', 'resolved', 'resolved'], settledOrder: ['end'], total: 0, ended: true }),
    });

    differential('end() with a client checked out: end() waits for its release; the client still works until then', async (s) => {
      const pool = s.pool();
      const t = new Trace(pool);
      const c = await pool.connect();
      const e = pool.end();
      const whileOut = await outcome(e, 300);
      const q = await outcome(c.query('SELECT 1 AS n'), 1000);
      c.release();
      const afterRelease = await outcome(e, 2000);
      await t.step('released', 'remove c1');
      return { whileOut: whileOut.status, query: settledAs(q), afterRelease: afterRelease.status, steps: t.steps };
    }, {
      expectPg: (o) => assert.deepEqual([o.whileOut, o.query, o.afterRelease], ['pending', 'resolved', 'resolved']),
    });

    differential('end() while a call within max waits for its connect, others hold released clients: every call resolves', async (s) => {
      // Issue 28, in a fixed order: two clients are held; three queries arrive, each with a
      // connect of its own (250 ms, 600 ms, and one queued behind them). The held clients go to
      // the first two queries (slow ones), then end(). The third query must get a connection,
      // not the refusal of a connect found unneeded when its turn came (it was needed).
      DelayedConnectClient.made = 0;
      DelayedConnectClient.delays = [0, 0, 250, 600, 0];
      // onConnect holds each new connection 100 ms before it is handed out.
      const pool = s.pool({ max: 5, Client: DelayedConnectClient, onConnect: () => new Promise((resolve) => setTimeout(resolve, 100)) } as unknown as pg.PoolConfig);
      const held = [await pool.connect(), await pool.connect()];
      const qs = [
        pool.query('SELECT pg_sleep(0.8), 1 AS n'),
        pool.query('SELECT pg_sleep(0.8), 2 AS n'),
        pool.query('SELECT 3 AS n'),
      ];
      await new Promise((resolve) => setTimeout(resolve, 50));
      for (const c of held) c.release();
      await new Promise((resolve) => setImmediate(resolve));
      const e = pool.end();
      const results = await Promise.all(qs.map((q) => outcome(q, 3000)));
      const end = await outcome(e, 3000);
      return {
        queries: results.map((r) => (r.status === 'resolved' ? (r.value.rows[0] as { n: number }).n : settledAs(r))),
        end: end.status,
      };
    }, {
      expectPg: (o) => assert.deepEqual(o, { queries: [1, 2, 3], end: 'resolved' }),
    });

    differential('end() after 10 slow and 10 quick calls on max 20: all 20 resolve (issue 28, 5 rounds)', async (s) => {
      const lost: string[] = [];
      for (let round = 0; round < 5; round++) {
        const pool = s.pool({ max: 20 });
        const calls = [
          ...Array.from({ length: 10 }, (_, i) => pool.query('SELECT pg_sleep(0.2), $1::int AS n', [i])),
          ...Array.from({ length: 10 }, (_, i) => pool.query('SELECT $1::int AS n', [i])),
        ];
        const e = pool.end();
        for (const r of await Promise.all(calls.map((q) => outcome(q, 5000)))) if (r.status !== 'resolved') lost.push(settledAs(r));
        await outcome(e, 3000);
      }
      return { lost };
    }, {
      expectPg: (o) => assert.deepEqual(o, { lost: [] }),
      timeoutMs: 60_000,
    });

    differential('end() with callers queued beyond max: pg.Pool leaves them pending forever, pg-resilient runs them', async (s) => {
      const pool = s.pool({ max: 1 });
      const qs = [1, 2, 3, 4].map((i) => pool.query('SELECT pg_sleep(0.02), $1::int AS n', [i]));
      const connectQueued = pool.connect();
      await new Promise((resolve) => setImmediate(resolve));
      const e = pool.end();
      const refused = await outcome(pool.query('SELECT 1'), 1000);
      const results = await Promise.all(qs.map((q) => outcome(q, 2000)));
      const conn = await outcome(connectQueued, 500);
      if (conn.status === 'resolved') {
        const r = await outcome((conn.value as pg.PoolClient).query('SELECT 5 AS n'), 1000);
        results.push(r as (typeof results)[number]);
        (conn.value as pg.PoolClient).release();
      }
      const end = await outcome(e, 2000);
      return {
        queries: results.map((r) => (r.status === 'resolved' ? (r.value.rows[0] as { n: number }).n : settledAs(r))),
        connect: conn.status,
        refusedAfterEnd: refused.status === 'rejected' ? refused.error.message : refused.status,
        end: end.status,
      };
    }, {
      expectPg: (o) => assert.deepEqual(o, {
        queries: [1, 'pending', 'pending', 'pending'],
        connect: 'pending',
        refusedAfterEnd: 'Cannot use a pool after calling end on the pool',
        end: 'resolved',
      }),
      deliberate: {
        reason: 'a graceful shutdown lets every accepted call finish; pg-pool strands queued callers (their promises never settle)',
        expectOurs: (o) => {
          assert.deepEqual(o.queries, [1, 2, 3, 4, 5], 'every accepted call ran');
          assert.equal(o.connect, 'resolved');
          assert.match(o.refusedAfterEnd, /Cannot use a pool after calling end on the pool/);
          assert.equal(o.end, 'resolved');
        },
      },
    });
  });
}
