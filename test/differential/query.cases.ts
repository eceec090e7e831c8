import assert from 'node:assert/strict';
import { describe } from 'node:test';
import pg from 'pg';
import { Trace, differential, errorShape, outcome, settledAs } from '../helpers/differential.ts';

// pool.query in all its forms, on pg.Pool and on pg-resilient's Pool: values, errors, counts
// and events after each step (issue #13, points 5 and 8).

function shape(r: pg.QueryResult): Record<string, unknown> {
  return { command: r.command, rowCount: r.rowCount, rows: r.rows, fields: r.fields.map((f) => `${f.name}:${f.dataTypeID}`) };
}

/** What a call did: threw synchronously, or returned (what), then settled how. */
async function call(f: () => unknown, boundMs = 2000): Promise<Record<string, unknown>> {
  let returned: unknown;
  try {
    returned = f();
  } catch (err) {
    return { threwSynchronously: errorShape(err) };
  }
  if (!(returned instanceof Promise)) return { returned: typeof returned };
  const o = await outcome(returned, boundMs);
  return { returned: 'promise', settled: settledAs(o) };
}

/** Calls the callback form and reports what the callback got (or that it threw synchronously). */
async function withCallback(f: (cb: (err: unknown, res?: unknown) => void) => unknown): Promise<Record<string, unknown>> {
  let sync = true;
  const got = new Promise<Record<string, unknown>>((resolve) => {
    let returned: unknown;
    try {
      returned = f((err, res) => resolve({
        calledSynchronously: sync,
        err: err === undefined || err === null ? String(err) : errorShape(err),
        res: res instanceof pg.Result ? shape(res as pg.QueryResult) : typeof res,
      }));
    } catch (err) {
      resolve({ threwSynchronously: errorShape(err) });
      return;
    }
    if (returned !== undefined) resolve({ returned: typeof returned });
  });
  sync = false;
  const o = await outcome(got, 2000);
  return o.status === 'resolved' ? o.value : { callback: 'never called within 2 s' };
}

export function queryCases(): void {
  describe('differential: pool.query', () => {
    differential('promise forms resolve the same results, counts and events', async (s) => {
      const pool = s.pool({ max: 2 });
      const t = new Trace(pool);
      const results = [
        await pool.query("SELECT 1::int AS n, 'a'::text AS s"),
        await pool.query('SELECT $1::int + 1 AS n', [41]),
        await pool.query({ text: 'SELECT $1::text AS s', values: ['x'] }),
        await pool.query({ text: 'SELECT 1 AS a, 2 AS b', rowMode: 'array' }),
        await pool.query('SELECT generate_series(1, 3) AS g'),
        await pool.query({ text: 'SELECT $1::int AS n', values: [7], name: 'diff-prepared' }),
        await pool.query('DO $$ BEGIN END $$'),
      ].map(shape);
      await t.step('seven queries, one after another');
      return { results, steps: t.steps };
    }, {
      expectPg: (o) => assert.deepEqual(o.steps[0]?.counts, 'total=1 idle=1 waiting=0 expired=0'),
    });

    differential('callback forms: (text, cb), (text, values, cb), (config, cb) return undefined and call back with the result', async (s) => {
      const pool = s.pool();
      const t = new Trace(pool);
      const a = await withCallback((cb) => pool.query('SELECT 1 AS n', cb));
      const b = await withCallback((cb) => pool.query('SELECT $1::int AS n', [2], cb));
      const c = await withCallback((cb) => pool.query({ text: 'SELECT $1::int AS n', values: [3] }, cb));
      const d = await withCallback((cb) => pool.query('SELEC 1', cb));
      await t.step('four callback calls');
      return { a, b, c, d: { ...d, res: undefined }, errorCode: (d['err'] as { code?: string }).code };
    }, {
      expectPg: (o) => {
        assert.equal((o.a['res'] as { rows: unknown[] }).rows.length, 1);
        assert.equal(o.a['calledSynchronously'], false);
        assert.equal(o.errorCode, '42601');
      },
    });

    differential('a failed query rejects with the server\'s error unchanged; pg.Pool discards the client, pg-resilient keeps it', async (s) => {
      const pool = s.pool();
      const t = new Trace(pool);
      const failed = await outcome(pool.query('SELEC 1'), 2000);
      // pg.Pool's 'remove' follows the client's close, a moment later; pg-resilient keeps the client.
      await t.step('after the syntax error', ...(s.kind === 'pg' ? ['remove c1'] : []));
      const next = await pool.query('SELECT 1 AS n');
      await t.step('next query');
      return { failed: failed.status === 'rejected' ? failed.error : failed.status, next: next.rows, steps: t.steps };
    }, {
      expectPg: (o) => {
        assert.deepEqual(o.failed, { class: 'DatabaseError', message: 'syntax error at or near "SELEC"', code: '42601' });
        assert.deepEqual(o.steps[0]?.events, ['connect c1', 'acquire c1', 'release c1 err=DatabaseError: syntax error at or near "SELEC"', 'remove c1']);
      },
      deliberate: {
        reason: 'a connection whose statement failed with a harmless SQL error (the server said no, the session is fine) is kept: cheaper than reconnecting',
        expectOurs: (o, pgObs) => {
          assert.deepEqual(o.failed, pgObs.failed, 'the error itself is pg\'s, unchanged');
          assert.deepEqual(o.steps[0], {
            step: 'after the syntax error',
            counts: 'total=1 idle=1 waiting=0 expired=0',
            events: ['connect c1', 'acquire c1', 'release c1 err=DatabaseError: syntax error at or near "SELEC"'],
          });
          assert.deepEqual(o.steps[1]?.events, ['acquire c1', 'release c1'], 'the same connection serves the next query');
          assert.deepEqual(o.next, pgObs.next);
        },
      },
    });

    differential('query(fn) reports "not supported" through the callback, asynchronously, instead of throwing', async (s) => {
      const pool = s.pool();
      return withCallback((cb) => pool.query(cb as unknown as string));
    }, {
      expectPg: (o) => assert.deepEqual(o, {
        calledSynchronously: false,
        err: { class: 'Error', message: 'Passing a function as the first parameter to pool.query is not supported', code: undefined },
        res: 'undefined',
      }),
    });

    differential('query(null), query(undefined), query(), query(123): a rejected promise, never a synchronous throw', async (s) => {
      const pool = s.pool();
      const q = pool.query.bind(pool) as (...args: unknown[]) => unknown;
      return {
        null: await call(() => q(null)),
        undefined: await call(() => q(undefined)),
        none: await call(() => q()),
        number: await call(() => q(123)),
        nullWithCallback: await withCallback((cb) => q(null, cb)),
        valuesNotAnArray: await call(() => q('SELECT $1::int AS n', 5)),
        stillWorks: (await pool.query('SELECT 1 AS n')).rows,
      };
    }, {
      expectPg: (o) => {
        assert.deepEqual(o.null, { returned: 'promise', settled: 'rejected TypeError: Client was passed a null or undefined query' });
        assert.deepEqual(o.number, { returned: 'promise', settled: 'rejected Error: A query must have either text or a name. Supplying neither is unsupported.' });
        assert.deepEqual(o.valuesNotAnArray, { returned: 'promise', settled: 'rejected Error: Query values must be an array' });
      },
    });

    differential('calls after end() are refused with "Cannot use a pool after calling end on the pool"', async (s) => {
      const pool = s.pool();
      await pool.query('SELECT 1');
      await pool.end();
      const q = await outcome(pool.query('SELECT 1'), 2000);
      const c = await outcome(pool.connect(), 2000);
      const cb = await withCallback((done) => pool.query('SELECT 1', done));
      return { q, c, cb, ending: pool.ending, ended: pool.ended };
    }, {
      expectPg: (o) => {
        assert.equal(o.q.status === 'rejected' && o.q.error.message, 'Cannot use a pool after calling end on the pool');
      },
      compare: (ours, pgObs) => {
        // The message is pg's (prefixed); the class is PgResilientError (code PGR_POOL_ENDED), an Error.
        for (const key of ['q', 'c'] as const) {
          const o = ours[key];
          assert.equal(o.status, 'rejected', `${key} is refused`);
          if (o.status === 'rejected') {
            assert.ok(o.raw instanceof Error);
            assert.match(o.error.message, /Cannot use a pool after calling end on the pool/);
            assert.equal(o.error.code, 'PGR_POOL_ENDED');
          }
        }
        assert.match(JSON.stringify(ours.cb['err']), /Cannot use a pool after calling end on the pool/);
        assert.deepEqual([ours.ending, ours.ended], [pgObs.ending, pgObs.ended]);
      },
    });
  });
}
