// The read rule against a real server (issue 26): a statement the rule calls a read is run again
// after its connection was lost with it in flight. Here the server runs each statement to its end
// and the answer is lost on the way back (the protocol proxy's 'lose-answer'), the one case where
// a wrong "read" runs a write twice. Each write must be there exactly once, and the caller must be
// told its outcome is unknown, not given a silent success. A raw pg.Pool is the control: it runs
// the statement once and reports the lost connection.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { ErrorCodes, Pool, isPgResilientError, type RetryEvent } from '../../src/index.ts';
import { useFaultFixture } from '../helpers/fault-fixture.ts';
import { startProtocolProxy } from '../helpers/protocol-proxy.ts';

// The text: with standard_conforming_strings on (the default) '\' is a whole literal,
// so the second CTE is an INSERT.
const CTE = String.raw`WITH x AS (SELECT '\' AS a), y AS (INSERT INTO hits VALUES (1) RETURNING '\') SELECT * FROM y`;

describe('the read rule on a real server: a lost answer re-runs reads only', () => {
  const f = useFaultFixture({
    proxy: startProtocolProxy,
    setup: (s) => s.admin(`CREATE TABLE hits (k int NOT NULL);
      CREATE FUNCTION bump() RETURNS int LANGUAGE sql VOLATILE AS $$ INSERT INTO hits VALUES (2) RETURNING k $$;
      CREATE FUNCTION counted() RETURNS bigint LANGUAGE sql STABLE AS $$ SELECT count(*) FROM hits $$;
      CREATE SCHEMA other;
      CREATE FUNCTION other.bump2() RETURNS int LANGUAGE sql VOLATILE AS $$ INSERT INTO hits VALUES (3) RETURNING k $$`).then(() => undefined),
  });
  const rows = async (k: number): Promise<number> => Number((await f.server.admin<{ n: string }>('SELECT count(*) AS n FROM hits WHERE k = $1', [k]))[0]!.n);
  const clear = (): Promise<unknown> => f.server.admin('DELETE FROM hits');
  const outcomeUnknown = (e: unknown): boolean => isPgResilientError(e) && e.code === ErrorCodes.STATEMENT_OUTCOME_UNKNOWN;

  const lostOnce = async (text: string, k: number, asConfig = false): Promise<{ error: unknown; retries: RetryEvent[] }> => {
    await clear();
    const pool = new Pool(f.via({ max: 2 }));
    const retries: RetryEvent[] = [];
    pool.on('retry', (e: RetryEvent) => retries.push(e));
    try {
      await pool.query('SELECT 1'); // a connection open before the trap
      const before = f.proxy.fired();
      f.proxy.arm(new RegExp(`^${text.slice(0, 12).replace(/[()\\]/g, '\\$&')}`), 'lose-answer');
      let error: unknown;
      try {
        await (asConfig ? pool.query({ text }) : pool.query(text));
      } catch (err) {
        error = err;
      }
      assert.equal(f.proxy.fired(), before + 1, 'the answer was lost');
      assert.equal(await rows(k), 1, 'the server ran the write exactly once');
      return { error, retries };
    } finally {
      await pool.end();
    }
  };

  test(String.raw`a data-modifying CTE next to '\' literals is not a read: outcome unknown, one row`, async () => {
    const { error, retries } = await lostOnce(CTE, 1);
    assert.equal(outcomeUnknown(error), true, `expected PGR_STATEMENT_OUTCOME_UNKNOWN, got ${String(error)}`);
    assert.equal(retries.length, 0);
  });

  test('SELECT of a VOLATILE function that inserts is not a read: outcome unknown, one row (fast path and config form)', async () => {
    for (const asConfig of [false, true]) {
      const { error, retries } = await lostOnce('SELECT bump()', 2, asConfig);
      assert.equal(outcomeUnknown(error), true, `expected PGR_STATEMENT_OUTCOME_UNKNOWN, got ${String(error)}`);
      // A read calling functions is retried once its functions are found read-only: the retry
      // announced for it ends at that lookup, before the statement is sent again.
      assert.equal(retries.length <= 1, true);
    }
    const { error } = await lostOnce('SELECT other.bump2() AS k', 3);
    assert.equal(outcomeUnknown(error), true, `schema-qualified: expected PGR_STATEMENT_OUTCOME_UNKNOWN, got ${String(error)}`);
  });

  test('reads still ride out a lost answer: a STABLE function, an allowlisted volatile built-in, a literal with a backslash', async () => {
    await clear();
    await f.server.admin('INSERT INTO hits VALUES (7), (7)');
    const pool = new Pool(f.via({ max: 2 }));
    const retries: RetryEvent[] = [];
    pool.on('retry', (e: RetryEvent) => retries.push(e));
    try {
      await pool.query('SELECT 1');
      const cases: Array<[string, (r: pg.QueryResult) => void]> = [
        ['SELECT counted() AS n', (r) => assert.equal(Number(r.rows[0].n), 2)],
        ['SELECT random() < 2 AS ok', (r) => assert.equal(r.rows[0].ok, true)],
        [String.raw`SELECT '\' AS b, k FROM hits`, (r) => assert.equal(r.rows[0].b, '\\')],
      ];
      for (const [text, check] of cases) {
        const before = retries.length;
        f.proxy.arm(new RegExp(`^${text.slice(0, 12).replace(/[()\\]/g, '\\$&')}`), 'lose-answer');
        check(await pool.query(text));
        assert.equal(retries.length, before + 1, `${text}: retried once`);
      }
    } finally {
      await pool.end();
    }
  });

  test('pipelined: SELECT bump() written behind a slow read on a connection that is lost is not run again; the read is', async () => {
    await clear();
    const pool = new Pool(f.via({ max: 1, pipelining: { behindSlowMs: 60_000 } }));
    try {
      await pool.query('SELECT 1');
      const head = pool.query('SELECT pg_sleep(0.4) IS NULL AS slept');
      await new Promise((r) => setImmediate(r));
      const bumped = pool.query('SELECT bump()');
      const settled = Promise.allSettled([head, bumped]);
      const deadline = Date.now() + 5000;
      while ((await f.server.admin<{ n: string }>("SELECT count(*) AS n FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(0.4)%' AND state = 'active'"))[0]!.n === '0') {
        if (Date.now() > deadline) throw new Error('the head statement never ran');
        await new Promise((r) => setTimeout(r, 10));
      }
      assert.equal(pool.pipelinedCount, 1, 'bump() was written behind the sleeping read');
      assert.equal(await f.server.terminateBackends(), 1);
      const [h, b] = await settled;
      assert.equal(h.status, 'fulfilled', 'the read (pg_sleep is an allowed volatile built-in) ran again');
      assert.equal(b.status === 'rejected' && outcomeUnknown(b.reason), true, `bump(): expected PGR_STATEMENT_OUTCOME_UNKNOWN, got ${JSON.stringify(b)}`);
      assert.equal(await rows(2), 0, 'the server never reached bump(), and it was not sent again');
    } finally {
      await pool.end();
    }
  });

  test('on a checked-out client (pool of one connection): a STABLE read runs again, SELECT bump() does not', async () => {
    await clear();
    const pool = new Pool(f.via({ max: 1 }));
    try {
      const client = await pool.connect();
      try {
        f.proxy.arm(/^SELECT counted/, 'lose-answer');
        assert.equal(Number((await client.query('SELECT counted() AS n')).rows[0].n), 0);
        f.proxy.arm(/^SELECT bump/, 'lose-answer');
        await assert.rejects(client.query('SELECT bump()'), outcomeUnknown);
      } finally {
        client.release();
      }
      assert.equal(await rows(2), 1);
    } finally {
      await pool.end();
    }
  });

  test('control: a raw pg.Pool runs the CTE once and reports the lost connection', async () => {
    await clear();
    const pool = new pg.Pool({ ...f.via({ max: 2 }) } as pg.PoolConfig);
    pool.on('error', () => undefined);
    try {
      await pool.query('SELECT 1');
      f.proxy.arm(/^WITH x AS/, 'lose-answer');
      await assert.rejects(pool.query(CTE), (e: Error) => !isPgResilientError(e) && /terminated|ECONNRESET|Connection/i.test(e.message));
      assert.equal(await rows(1), 1);
    } finally {
      await pool.end();
    }
  });
});
