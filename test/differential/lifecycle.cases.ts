import assert from 'node:assert/strict';
import { describe } from 'node:test';
import { Trace, differential, sleep, until } from '../helpers/differential.ts';

// How long connections live: idleTimeoutMillis (issue #13, point 8), min, maxUses and
// maxLifetimeSeconds (point 4: enforced on idle connections too).

/** Milliseconds until `cond` held, or 'never within N ms'. */
async function msUntil(cond: () => boolean, boundMs: number): Promise<number | string> {
  const started = performance.now();
  return (await until(cond, boundMs)) ? Math.round(performance.now() - started) : `never within ${boundMs} ms`;
}

export function lifecycleCases(): void {
  describe('differential: connection lifetimes', () => {
    for (const idleTimeoutMillis of [1, 100]) {
      differential(`idleTimeoutMillis ${idleTimeoutMillis}: an idle connection is closed about that long after its release`, async (s) => {
        const pool = s.pool({ idleTimeoutMillis });
        const t = new Trace(pool);
        await pool.query('SELECT 1');
        const closedAfter = await msUntil(() => pool.totalCount === 0, 2000);
        await t.step('idle timeout passed', 'remove c1');
        return { closedWithin400ms: typeof closedAfter === 'number' && closedAfter <= idleTimeoutMillis + 300, closedAfter, steps: t.steps };
      }, {
      concurrent: true,
        expectPg: (o) => {
          assert.equal(o.closedWithin400ms, true, `pg.Pool closed it after ${o.closedAfter}`);
          assert.deepEqual(o.steps[0]?.events, ['connect c1', 'acquire c1', 'release c1', 'remove c1']);
        },
        compare: (ours, pgObs) => {
          console.log(`idleTimeoutMillis ${idleTimeoutMillis}: pg.Pool closed after ${pgObs.closedAfter} ms, pg-resilient after ${ours.closedAfter} ms`);
          assert.deepEqual({ ...ours, closedAfter: 0 }, { ...pgObs, closedAfter: 0 });
        },
      });
    }

    differential('idleTimeoutMillis 0: idle connections are never closed for being idle', async (s) => {
      const pool = s.pool({ idleTimeoutMillis: 0 });
      const t = new Trace(pool);
      await pool.query('SELECT 1');
      await sleep(1500);
      await t.step('1.5 s idle');
      return t.steps;
    }, {
      concurrent: true,
      expectPg: (steps) => assert.equal(steps[0]?.counts, 'total=1 idle=1 waiting=0 expired=0'),
    });

    differential('min: idle connections above min are closed, min stay', async (s) => {
      const pool = s.pool({ max: 3, min: 1, idleTimeoutMillis: 100 });
      const clients = await Promise.all([pool.connect(), pool.connect(), pool.connect()]);
      for (const c of clients) c.release();
      const shrankAfter = await msUntil(() => pool.totalCount === 1, 2000);
      await sleep(300);
      return { shrankWithin600ms: typeof shrankAfter === 'number' && shrankAfter < 600, total: pool.totalCount, idle: pool.idleCount };
    }, {
      concurrent: true,
      expectPg: (o) => assert.deepEqual(o, { shrankWithin600ms: true, total: 1, idle: 1 }),
    });

    differential('min: pg.Pool opens nothing at construction; pg-resilient opens min connections at once', async (s) => {
      const pool = s.pool({ max: 4, min: 2 });
      const t = new Trace(pool);
      await sleep(500);
      await t.step('constructed, 0.5 s later');
      return t.steps;
    }, {
      concurrent: true,
      expectPg: (steps) => assert.deepEqual(steps[0], { step: 'constructed, 0.5 s later', counts: 'total=0 idle=0 waiting=0 expired=0', events: [] }),
      deliberate: {
        reason: 'min connections are kept open from the start and refilled after a failover, so the first calls after either do not pay for connecting',
        expectOurs: (steps) => assert.deepEqual(steps[0], { step: 'constructed, 0.5 s later', counts: 'total=2 idle=2 waiting=0 expired=0', events: ['connect c1', 'connect c2'] }),
      },
    });

    differential('min 1 and maxLifetimeSeconds 1: pg.Pool closes the connection at its lifetime and leaves none; pg-resilient opens a new one', async (s) => {
      // pg-pool's own suite (sizing.js): "does remove clients when at or below min if maxLifetimeSeconds is reached".
      const pool = s.pool({ max: 1, min: 1, idleTimeoutMillis: 10, maxLifetimeSeconds: 1 });
      const c = await pool.connect();
      c.release();
      const t = new Trace(pool);
      await sleep(1300);
      await t.step('past the lifetime');
      return { idle: pool.idleCount, total: pool.totalCount, removed: t.steps[0]!.events.filter((e) => e.startsWith('remove')).length };
    }, {
      expectPg: (o) => assert.deepEqual(o, { idle: 0, total: 0, removed: 1 }),
      deliberate: {
        reason: 'min connections are kept open: one closed at its lifetime is replaced (README: the min row)',
        expectOurs: (o) => assert.deepEqual(o, { idle: 1, total: 1, removed: 1 }),
      },
      timeoutMs: 30_000,
    });

    differential('30 short checkouts at once on max 9: pg.Pool opens 9 connections at once; pg-resilient paces its connects and may open fewer', async (s) => {
      // pg-pool's own suite (index.js): "properly pools clients" expects totalCount 9.
      const pool = s.pool({ max: 9 });
      const res = await Promise.all(Array.from({ length: 30 }, async () => {
        const client = await pool.connect();
        const r = await client.query('SELECT $1::text AS name', ['hi']);
        client.release();
        return r.rows[0];
      }));
      return { served: res.length, total: pool.totalCount };
    }, {
      expectPg: (o) => assert.deepEqual(o, { served: 30, total: 9 }),
      deliberate: {
        reason: 'connection attempts are paced by the connect gate (README: connection attempts in flight per pool), and a connection released meanwhile serves the line first',
        expectOurs: (o) => {
          assert.equal(o.served, 30);
          assert.ok(o.total >= 1 && o.total <= 9, `total ${o.total}`);
        },
      },
    });

    differential('maxUses 2: a connection is closed after its second use, through query and through connect/release', async (s) => {
      const pool = s.pool({ maxUses: 2 });
      const t = new Trace(pool);
      await pool.query('SELECT 1');
      await pool.query('SELECT 1');
      await t.step('two queries', 'remove c1');
      const a = await pool.connect();
      a.release();
      const b = await pool.connect();
      const same = a === b;
      b.release();
      t.countsNow('second release');
      await t.step('two checkouts', 'remove c2');
      return { same, steps: t.steps };
    }, {
      concurrent: true,
      expectPg: (o) => {
        assert.equal(o.same, true);
        assert.deepEqual(o.steps[0]?.events, ['connect c1', 'acquire c1', 'release c1', 'acquire c1', 'release c1', 'remove c1']);
      },
    });

    differential('maxLifetimeSeconds on an idle connection: closed at its lifetime, with a "remove" event, while idle', async (s) => {
      const pool = s.pool({ maxLifetimeSeconds: 0.4, idleTimeoutMillis: 0 }, { maxLifetimeJitter: 0 });
      const t = new Trace(pool);
      await pool.query('SELECT 1');
      const closedAfter = await msUntil(() => pool.totalCount === 0 && t.all.includes('remove c1'), 2000);
      await t.step('lifetime passed while idle');
      const next = await pool.query('SELECT 1 AS n');
      return {
        closedWithin1s: typeof closedAfter === 'number' && closedAfter < 1000,
        // pg.Pool checks an expired idle client out and in again to close it (acquire/release):
        // that is its mechanism, not the contract; the contract is the close and its 'remove'.
        removes: t.all.filter((e) => e.startsWith('remove') || e.startsWith('connect')),
        countsAfter: t.steps[0]?.counts,
        next: next.rows,
      };
    }, {
      concurrent: true,
      expectPg: (o) => assert.deepEqual(o, { closedWithin1s: true, removes: ['connect c1', 'remove c1', 'connect c2'], countsAfter: 'total=0 idle=0 waiting=0 expired=0', next: [{ n: 1 }] }),
    });

    differential('maxLifetimeSeconds on a checked-out connection: counted in expiredCount, closed on release', async (s) => {
      const pool = s.pool({ maxLifetimeSeconds: 0.3 }, { maxLifetimeJitter: 0 });
      const t = new Trace(pool);
      const c = await pool.connect();
      await sleep(600);
      await t.step('checked out past its lifetime');
      c.release();
      t.countsNow('released');
      await t.step('released', 'remove c1');
      return t.steps;
    }, {
      concurrent: true,
      expectPg: (steps) => {
        assert.equal(steps[0]?.counts, 'total=1 idle=0 waiting=0 expired=1');
        assert.deepEqual(steps[2]?.events, ['release c1', 'remove c1']);
      },
    });
  });
}
