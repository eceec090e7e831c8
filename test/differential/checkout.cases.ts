import assert from 'node:assert/strict';
import { describe } from 'node:test';
import pg from 'pg';
import { Trace, differential, errorShape, outcome, settledAs } from '../helpers/differential.ts';

// pool.connect() and client.release(): counts after every step, events with their arguments and
// order, the clients handed out (issue #13, point 1a).

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

export function checkoutCases(): void {
  describe('differential: connect and release', () => {
    differential('connect/release: counts and events after each step; release(err) and release(true) discard the client', async (s) => {
      const pool = s.pool({ max: 2 });
      const t = new Trace(pool);
      const a = await pool.connect();
      await t.step(`connect -> ${t.id(a)}`);
      const r = await a.query('SELECT 1 AS n');
      a.release();
      await t.step('release()');
      const b = await pool.connect();
      await t.step(`connect again -> ${t.id(b)}`);
      b.release(new Error('broken by the app'));
      t.countsNow('release(err)');
      await t.step('release(err)', 'remove c1');
      const c = await pool.connect();
      await t.step(`connect -> ${t.id(c)}`);
      c.release(true);
      t.countsNow('release(true)');
      await t.step('release(true)', 'remove c2');
      return { rows: r.rows, steps: t.steps };
    }, {
      expectPg: (o) => assert.deepEqual(o.steps.map((x) => `${x.step}: ${x.counts}`), [
        'connect -> c1: total=1 idle=0 waiting=0 expired=0',
        'release(): total=1 idle=1 waiting=0 expired=0',
        'connect again -> c1: total=1 idle=0 waiting=0 expired=0',
        'release(err) (at once): total=0 idle=0 waiting=0 expired=0',
        'release(err): total=0 idle=0 waiting=0 expired=0',
        'connect -> c2: total=1 idle=0 waiting=0 expired=0',
        'release(true) (at once): total=0 idle=0 waiting=0 expired=0',
        'release(true): total=0 idle=0 waiting=0 expired=0',
      ]),
    });

    differential('connect(callback) returns undefined and calls back with (undefined, client, done); done(err) discards', async (s) => {
      const pool = s.pool();
      const t = new Trace(pool);
      const got = await new Promise<Record<string, unknown>>((resolve) => {
        let sync = true;
        const returned = pool.connect((err, client, done) => {
          const calledSynchronously = sync;
          t.countsNow(`callback -> ${t.id(client)}`);
          client?.query('SELECT 2 AS n', (qErr: Error | undefined, res: pg.QueryResult | undefined) => {
            done(new Error('done with an error'));
            resolve({ returned: typeof returned, calledSynchronously, err: String(err), qErr: String(qErr), rows: res?.rows, doneType: typeof done });
          });
        });
        sync = false;
      });
      await t.step('after done(err)', 'remove c1');
      return { got, steps: t.steps };
    }, {
      expectPg: (o) => assert.deepEqual(o.got['rows'], [{ n: 2 }]),
    });

    differential('releasing a client twice throws pg\'s error', async (s) => {
      const pool = s.pool();
      const c = await pool.connect();
      c.release();
      try {
        c.release();
        return { threw: 'nothing' };
      } catch (err) {
        return { threw: errorShape(err) };
      }
    }, {
      expectPg: (o) => assert.deepEqual(o.threw, { class: 'Error', message: 'Release called on client which has already been released to the pool.', code: undefined }),
    });

    for (const awaited of [false, true]) {
      differential(`a client ended by the application (${awaited ? 'await ' : ''}client.end()) and then released is discarded; the next connect gets a new one`, async (s) => {
        const pool = s.pool();
        const t = new Trace(pool);
        const a = await pool.connect();
        const ending = a.end();
        if (awaited) await ending;
        a.release();
        t.countsNow('end() then release()');
        // At once, as an application would: the pool must not lend the ended client again.
        const b = await pool.connect();
        const sameClient = b === a;
        const q = await outcome(b.query('SELECT 1 AS n'), 2000);
        await t.step(`then connect -> ${t.id(b)}`, 'remove c1');
        b.release();
        await outcome(ending, 1000);
        // The ended client's 'remove' follows its socket's close, which races the new connect:
        // its place in the order is not part of the contract, its presence is.
        for (const st of t.steps) st.events.sort((x, y) => Number(x.startsWith('remove')) - Number(y.startsWith('remove')));
        return { sameClient, query: settledAs(q), steps: t.steps };
      }, {
        expectPg: (o) => {
          assert.equal(o.sameClient, false);
          assert.equal(o.query, 'resolved');
          assert.equal(o.steps[0]?.counts, 'total=0 idle=0 waiting=0 expired=0');
          assert.deepEqual(o.steps[1]?.events, ['connect c1', 'acquire c1', 'release c1', 'connect c2', 'acquire c2', 'remove c1']);
        },
      });
    }

    differential('max: callers beyond max wait (waitingCount), and a released client goes to the first of them', async (s) => {
      const pool = s.pool({ max: 2 });
      const t = new Trace(pool);
      const a = await pool.connect();
      const b = await pool.connect();
      await t.step('two checked out');
      const order: string[] = [];
      const third = pool.connect();
      const fourth = pool.query('SELECT 4 AS n');
      void third.then(() => order.push('third'));
      void fourth.then(() => order.push('fourth'));
      await tick();
      t.countsNow('a connect and a query wait');
      a.release();
      const c = await third;
      await t.step(`release ${t.id(a)} -> the third call gets ${t.id(c)}`);
      b.release();
      const rows = (await fourth).rows;
      await t.step('release the second -> the query runs on it');
      c.release();
      await t.step('all released');
      return { order, rows, steps: t.steps };
    }, {
      expectPg: (o) => {
        assert.equal(o.steps[1]?.counts, 'total=2 idle=0 waiting=2 expired=0');
        assert.deepEqual(o.order, ['third', 'fourth']);
      },
    });

    differential('release(err) with a caller waiting: the client is replaced and the caller gets the new one', async (s) => {
      const pool = s.pool({ max: 1 });
      const t = new Trace(pool);
      const a = await pool.connect();
      const waiting = pool.connect();
      await tick();
      await t.step('one checked out, one waiting');
      a.release(new Error('bad state'));
      const b = await waiting;
      await t.step(`waiter got ${t.id(b)}`, 'remove c1');
      b.release();
      return t.steps;
    }, {
      expectPg: (steps) => assert.deepEqual(steps[1]?.events, ['release c1 err=Error: bad state', 'remove c1', 'connect c2', 'acquire c2']),
    });

    differential('an idle client killed by the server: "error" event with the error and client, then "remove"', async (s) => {
      const app = `diff-idle-kill-${s.kind}`;
      const pool = s.pool({ application_name: app });
      const t = new Trace(pool);
      // pg-pool also sets err.client to the client on an idle client's error (its own suite checks it).
      const errClient: string[] = [];
      pool.on('error', (err: Error & { client?: unknown }, client) => errClient.push(err.client === client ? 'err.client is the client' : `err.client is ${typeof err.client}`));
      await pool.query('SELECT 1');
      await t.step('idle');
      await s.server.terminateBackends({ applicationName: app });
      await t.step('terminated', 'remove c1');
      const after = await pool.query('SELECT 1 AS n');
      return { rows: after.rows, errClient, steps: t.steps };
    }, {
      expectPg: (o) => assert.deepEqual({ errClient: o.errClient, step: o.steps[1] }, {
        errClient: ['err.client is the client'],
        step: {
          step: 'terminated',
          counts: 'total=0 idle=0 waiting=0 expired=0',
          events: ['error c1 DatabaseError: terminating connection due to administrator command', 'remove c1'],
        },
      }),
    });

    differential('a client released inside an open transaction: pg.Pool hands it out again mid-transaction, pg-resilient closes it', async (s) => {
      const pool = s.pool({ max: 1 });
      const t = new Trace(pool);
      const a = await pool.connect();
      await a.query('BEGIN');
      await a.query('SELECT 1');
      a.release();
      // pg-resilient closes the client (its 'remove' follows the socket's close); pg.Pool keeps it.
      await t.step('released with BEGIN open', ...(s.kind === 'ours' ? ['remove c1'] : []));
      const b = await pool.connect();
      const status = (await b.query("SELECT now() = statement_timestamp() AS in_autocommit")).rows[0] as { in_autocommit: boolean };
      b.release(true);
      return { nextClientInAutocommit: status.in_autocommit, steps: t.steps };
    }, {
      expectPg: (o) => {
        assert.equal(o.nextClientInAutocommit, false, 'pg.Pool gives the next caller the open transaction');
        assert.equal(o.steps[0]?.counts, 'total=1 idle=1 waiting=0 expired=0');
      },
      deliberate: {
        reason: 'reusing a connection with a transaction open would run the next caller\'s statements inside it',
        expectOurs: (o) => {
          assert.equal(o.nextClientInAutocommit, true);
          assert.deepEqual(o.steps[0], {
            step: 'released with BEGIN open',
            counts: 'total=0 idle=0 waiting=0 expired=0',
            events: ['connect c1', 'acquire c1', 'release c1', 'remove c1'],
          });
        },
      },
    });
  });
}
