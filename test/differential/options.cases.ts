import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { inspect } from 'node:util';
import { describe } from 'node:test';
import pg from 'pg';
import { Trace, differential, errorShape, outcome, settledAs } from '../helpers/differential.ts';

// pg.Pool's options that pg-resilient must honour, not ignore (issue #13, point 3: onConnect,
// verify, Client, log, poolSize), what the options object shows, instanceof pg.Pool (point 7),
// and bad options.

/** A custom Client class, as applications pass one (instrumented, or a subclass). */
class MarkedClient extends pg.Client {
  static made = 0;
  readonly marker = 'marked';
  constructor(config?: string | pg.ClientConfig) {
    super(config);
    MarkedClient.made += 1;
  }
}

export function optionsCases(): void {
  describe('differential: options', () => {
    differential('onConnect: an async hook runs once per new client, before its first use and before "connect"', async (s) => {
      let t: Trace | undefined;
      const pool = s.pool({
        max: 2,
        onConnect: async (client: pg.ClientBase) => {
          t?.note(`onConnect ${t.id(client)}`);
          await client.query("SET application_name = 'set-by-on-connect'");
        },
      } as pg.PoolConfig);
      t = new Trace(pool);
      const seen = await pool.query<{ app: string }>("SELECT current_setting('application_name') AS app");
      const [a, b] = [await pool.connect(), await pool.connect()];
      const seenByB = await b.query<{ app: string }>("SELECT current_setting('application_name') AS app");
      a.release();
      b.release();
      await pool.query('SELECT 1');
      await t.step('a query, two checkouts, a query');
      return { seen: seen.rows[0]?.app, seenByB: seenByB.rows[0]?.app, steps: t.steps };
    }, {
      expectPg: (o) => {
        assert.deepEqual([o.seen, o.seenByB], ['set-by-on-connect', 'set-by-on-connect']);
        assert.deepEqual(o.steps[0]?.events.filter((e) => /onConnect|connect /.test(e)), ['onConnect c1', 'connect c1', 'onConnect c2', 'connect c2']);
      },
    });

    for (const how of ['rejects', 'throws'] as const) {
      differential(`onConnect that ${how}: that connect fails with the hook's error and the client is discarded`, async (s) => {
        const hookError = new Error(`onConnect ${how}`);
        let failures = 1;
        const pool = s.pool({
          onConnect: (_client: pg.ClientBase) => {
            if (failures-- > 0) {
              if (how === 'throws') throw hookError;
              return Promise.reject(hookError);
            }
            return Promise.resolve();
          },
        } as pg.PoolConfig);
        const t = new Trace(pool);
        const first = await outcome(pool.connect(), 3000);
        if (first.status === 'resolved') first.value.release(); // (the hook was ignored)
        await t.step('the hook failed');
        const second = await pool.query('SELECT 1 AS n');
        await t.step('the next connect');
        return { first: settledAs(first), sameError: first.status === 'rejected' && first.raw === hookError, fast: first.ms < 1500, second: second.rows, steps: t.steps };
      }, {
        expectPg: (o) => {
          assert.deepEqual(o.first, `rejected Error: onConnect ${how}`);
          assert.equal(o.sameError, true);
          assert.deepEqual(o.steps[0], { step: 'the hook failed', counts: 'total=0 idle=0 waiting=0 expired=0', events: [] });
        },
      });
    }

    differential('verify: called for each new client; an error fails that connect and discards the client', async (s) => {
      const verified: string[] = [];
      let t: Trace | undefined;
      let fail = true;
      const pool = s.pool({
        verify: (client: pg.PoolClient, done: (err?: Error) => void) => {
          verified.push(t?.id(client) ?? '?');
          const failNow = fail;
          fail = false;
          setImmediate(() => done(failNow ? new Error('verify said no') : undefined));
        },
      } as pg.PoolConfig);
      t = new Trace(pool);
      const first = await outcome(pool.connect(), 3000);
      if (first.status === 'resolved') first.value.release(); // (verify was ignored)
      await t.step('verify failed', 'remove c1');
      const c = await pool.connect();
      c.release();
      const again = await pool.connect();
      again.release();
      await t.step('verified, then reused');
      return { first: settledAs(first), verified, steps: t.steps };
    }, {
      expectPg: (o) => {
        assert.equal(o.first, 'rejected Error: verify said no');
        assert.deepEqual(o.verified, ['c1', 'c2']);
        assert.deepEqual(o.steps[0]?.events, ['connect c1', 'acquire c1', 'release c1 err=Error: verify said no', 'remove c1']);
      },
    });

    differential('Client: the pool makes its clients with the given class', async (s) => {
      MarkedClient.made = 0;
      const pool = s.pool({ Client: MarkedClient } as pg.PoolConfig);
      const c = await pool.connect();
      const info = { isMarked: c instanceof MarkedClient, marker: (c as unknown as { marker?: string }).marker };
      c.release();
      await pool.query('SELECT 1');
      return { ...info, made: MarkedClient.made };
    }, {
      expectPg: (o) => assert.deepEqual(o, { isMarked: true, marker: 'marked', made: 1 }),
    });

    differential('Client: a minimal client class (connect(cb) only, as pg-native and test doubles have) whose connect fails', async (s) => {
      // Not a pg.Client: an EventEmitter with a callback-style connect, as pg-pool's own suite mocks it.
      class FailingClient extends EventEmitter {
        connect(cb: (err?: Error) => void): void {
          process.nextTick(() => cb(new Error('bad news')));
        }
      }
      const pool = s.pool({ Client: FailingClient } as unknown as pg.PoolConfig, { retry: { maxElapsedMs: 1000 } });
      const t = new Trace(pool);
      const o = await outcome(pool.connect(), 3000);
      await t.step('connect failed');
      return { connect: settledAs(o), steps: t.steps };
    }, {
      expectPg: (o) => assert.deepEqual(o, { connect: 'rejected Error: bad news', steps: [{ step: 'connect failed', counts: 'total=0 idle=0 waiting=0 expired=0', events: [] }] }),
    });

    differential('log: the function is called, and never with the password', async (s) => {
      const lines: string[] = [];
      let construction = 'ok';
      let pool: pg.Pool | undefined;
      try {
        pool = s.pool({ log: (...args: unknown[]) => lines.push(inspect(args, { depth: 4, showHidden: true })) });
      } catch (err) {
        construction = JSON.stringify(errorShape(err));
      }
      if (pool !== undefined) await pool.query('SELECT 1');
      return { construction, called: lines.length > 0, leaksPassword: lines.some((l) => l.includes(s.server.password)) };
    }, {
      expectPg: (o) => assert.deepEqual(o, { construction: 'ok', called: true, leaksPassword: false }),
      compare: (ours) => {
        // Honoured like pg.Pool's, or refused at construction naming the option: never silently ignored.
        if (ours.construction !== 'ok') {
          assert.match(ours.construction, /PGR_INVALID_OPTION/);
          assert.match(ours.construction, /\blog\b/);
          return;
        }
        assert.deepEqual(ours, { construction: 'ok', called: true, leaksPassword: false });
      },
    });

    differential('poolSize: the legacy alias of max (max wins when both are given)', async (s) => {
      const sized = s.pool({ poolSize: 2 } as pg.PoolConfig);
      const both = s.pool({ poolSize: 2, max: 3 } as pg.PoolConfig);
      const out: Record<string, unknown> = {};
      for (const [name, pool] of [['poolSize 2', sized], ['poolSize 2, max 3', both]] as const) {
        const calls = [1, 2, 3, 4].map(() => pool.connect());
        await new Promise((resolve) => setTimeout(resolve, 300));
        out[name] = { max: pool.options.max, total: pool.totalCount, waiting: pool.waitingCount };
        for (const c of calls) void c.then((client) => client.release());
      }
      return out;
    }, {
      expectPg: (o) => assert.deepEqual(o, { 'poolSize 2': { max: 2, total: 2, waiting: 2 }, 'poolSize 2, max 3': { max: 3, total: 3, waiting: 1 } }),
    });

    differential('instanceof pg.Pool and EventEmitter', async (s) => {
      const pool = s.pool();
      return { pgPool: pool instanceof pg.Pool, emitter: pool instanceof EventEmitter };
    }, {
      expectPg: (o) => assert.deepEqual(o, { pgPool: true, emitter: true }),
    });

    differential('options: pg.Pool\'s defaults are filled in, the password is kept but hidden from enumeration', async (s) => {
      const pool = s.pool({ application_name: 'opts' });
      const o = pool.options;
      return {
        defaults: { max: o.max, min: o.min, idleTimeoutMillis: o.idleTimeoutMillis, maxUses: o.maxUses, allowExitOnIdle: o.allowExitOnIdle, maxLifetimeSeconds: o.maxLifetimeSeconds },
        passthrough: { application_name: o.application_name, port: o.port },
        password: { readable: o.password === s.server.password, enumerable: Object.keys(o).includes('password'), inJson: JSON.stringify(o).includes(s.server.password), inInspect: inspect(o).includes(s.server.password) },
        flags: { ending: pool.ending, ended: pool.ended },
      };
    }, {
      expectPg: (o) => {
        assert.deepEqual(o.defaults, { max: 10, min: 0, idleTimeoutMillis: 10000, maxUses: Infinity, allowExitOnIdle: false, maxLifetimeSeconds: 0 });
        assert.deepEqual(o.password, { readable: true, enumerable: false, inJson: false, inInspect: false });
      },
    });

    differential('bad option values: pg.Pool takes them silently, pg-resilient refuses them at construction, naming the option', async (s) => {
      const out: Record<string, string> = {};
      for (const bad of [{ max: 'ten' }, { idleTimeoutMillis: 'soon' }, { connectionTimeoutMillis: -5 }, { maxLifetimeSeconds: 'long' }]) {
        try {
          s.pool(bad as unknown as pg.PoolConfig);
          out[Object.keys(bad)[0]!] = 'accepted';
        } catch (err) {
          const e = errorShape(err);
          out[Object.keys(bad)[0]!] = `${e.class} ${e.code}: ${e.message}`;
        }
      }
      return out;
    }, {
      expectPg: (o) => assert.ok(Object.values(o).every((v) => v === 'accepted'), JSON.stringify(o)),
      deliberate: {
        reason: 'a mistyped option fails loudly at start-up (InvalidOptionError, a TypeError with code PGR_INVALID_OPTION) instead of misbehaving later',
        expectOurs: (o) => {
          for (const [name, got] of Object.entries(o)) {
            assert.match(got, /^InvalidOptionError PGR_INVALID_OPTION: /, name);
            assert.ok(got.includes(name), `${name}: ${got}`);
          }
        },
      },
    });
  });
}
