import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import type { QueryConfig, QueryResult } from 'pg';
import {
  StatementCache,
  forgetPrepared,
  preparedConfig,
  preparedInvalidation,
  recoverFromPreparedError,
  runPrepared,
  statementName,
} from '../../src/prepared/cache.ts';
import { startPgServer, type PgServer } from '../helpers/pg-server.ts';

// The prepared-statement cache driven by hand on real pg Clients against a real PostgreSQL 15,
// the way the pool's runner will drive it: config → query → on failure recover → query once more.
// Every invalidation case has a raw-pg control next to it showing the error the cache hides.

const PK = 'SELECT id, name FROM items WHERE id = $1';

interface Prepared {
  name: string;
  statement: string;
  runs: number;
}

/** Statements the server holds for this very session (asked on the session itself, unnamed). */
async function serverStatements(client: pg.Client): Promise<Prepared[]> {
  const r = await client.query<Prepared>('SELECT name, statement, (generic_plans + custom_plans)::int AS runs FROM pg_prepared_statements ORDER BY name');
  return r.rows;
}

function pgRecord(client: pg.Client): Record<string, string> {
  return (client as unknown as { connection: { parsedStatements: Record<string, string> } }).connection.parsedStatements;
}

function run(client: pg.Client, cache: StatementCache, text: string, values?: unknown[]): Promise<QueryResult> {
  return runPrepared(cache, cache.config(text, values), (c) => client.query(c));
}

describe('prepared statements on a real PostgreSQL', () => {
  let server: PgServer;
  const clients: pg.Client[] = [];
  const connect = async (): Promise<pg.Client> => {
    const c = new pg.Client(server.config);
    c.on('error', () => undefined);
    clients.push(c);
    await c.connect();
    return c;
  };

  before(async () => {
    server = await startPgServer();
    await server.admin(`CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL);
      INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 100) g;`);
  });
  after(async () => {
    await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
    await server.destroy();
  });

  test('a hot statement is parsed once per connection and then only bound and executed', async () => {
    const client = await connect();
    const cache = new StatementCache(client, { max: 10 });
    for (let i = 1; i <= 50; i++) {
      const r = await run(client, cache, PK, [i]);
      assert.deepEqual(r.rows, [{ id: i, name: `item ${i}` }]);
    }
    const held = await serverStatements(client);
    assert.equal(held.length, 1, 'one server statement for 50 calls');
    assert.equal(held[0]?.name, statementName(PK));
    assert.equal(held[0]?.statement, PK);
    assert.equal(held[0]?.runs, 50, 'all 50 executions used it');
    assert.deepEqual(cache.stats, { hits: 49, misses: 1, evictions: 0, uncached: 0, tooLong: 0, recovered: 0 });
    // Without values pg uses the simple protocol, and so does the cache.
    assert.deepEqual(cache.config('SELECT 1', undefined), { text: 'SELECT 1' });
    assert.deepEqual(cache.config('SELECT 1', []), { text: 'SELECT 1', values: [] });
  });

  test('the cache is bounded: the least recently used statement is closed on the server, no round trip of its own', async () => {
    const client = await connect();
    const cache = new StatementCache(client, { max: 3 });
    const texts = [1, 2, 3, 4, 5].map((k) => `SELECT $1::int + ${k} AS n`);
    for (const t of texts.slice(0, 3)) await run(client, cache, t, [1]);
    await run(client, cache, texts[0]!, [1]); // texts[0] is now the most recent: texts[1] goes first
    await run(client, cache, texts[3]!, [1]);
    await run(client, cache, texts[4]!, [1]);
    const held = (await serverStatements(client)).map((s) => s.statement).sort();
    assert.deepEqual(held, [texts[0], texts[3], texts[4]].sort());
    assert.deepEqual(Object.keys(pgRecord(client)).sort(), [texts[0], texts[3], texts[4]].map((t) => statementName(t!)).sort(), "pg's record follows the server");
    assert.equal(cache.stats.evictions, 2);
    // An evicted text comes back with a fresh Parse under the same name, and works.
    const r = await run(client, cache, texts[1]!, [40]);
    assert.equal(r.rows[0].n, 42);
    assert.equal((await serverStatements(client)).length, 3);
  });

  test('ALTER TABLE: 0A000 "cached plan must not change result type" is recovered; raw pg shows it', async () => {
    await server.admin('CREATE TABLE alt (id int PRIMARY KEY, a text); INSERT INTO alt VALUES (1, \'x\')');
    const text = 'SELECT * FROM alt WHERE id = $1';
    const client = await connect();
    const raw = await connect();
    const cache = new StatementCache(client, { max: 10 });
    const rawNamed = { name: 'by_hand', text, values: [1] };
    assert.deepEqual((await run(client, cache, text, [1])).rows, [{ id: 1, a: 'x' }]);
    await raw.query(rawNamed);
    await server.admin('ALTER TABLE alt ADD COLUMN b int DEFAULT 7');
    await assert.rejects(raw.query(rawNamed), (e: { code?: string; routine?: string }) => e.code === '0A000' && e.routine === 'RevalidateCachedQuery' && preparedInvalidation(e) === 'stale',
      'control: raw pg with a named statement fails');
    assert.deepEqual((await run(client, cache, text, [1])).rows, [{ id: 1, a: 'x', b: 7 }], 'no error reaches the caller, the new column is there');
    assert.equal(cache.stats.recovered, 1);
    const held = await serverStatements(client);
    assert.equal(held.length, 1, 'the stale statement was closed, the new one is held under the same name');
    assert.deepEqual((await run(client, cache, text, [1])).rows, [{ id: 1, a: 'x', b: 7 }]);
    assert.equal(cache.stats.recovered, 1, 'once repaired, it stays repaired');
  });

  for (const reset of ['DISCARD ALL', 'DEALLOCATE ALL']) {
    test(`${reset}: 26000 "does not exist" is recovered once for the whole cache`, async () => {
      const client = await connect();
      const cache = new StatementCache(client, { max: 10 });
      const other = 'SELECT name FROM items WHERE id = $1';
      await run(client, cache, PK, [1]);
      await run(client, cache, other, [2]);
      await client.query(reset);
      assert.equal((await serverStatements(client)).length, 0);
      assert.deepEqual((await run(client, cache, PK, [3])).rows, [{ id: 3, name: 'item 3' }]);
      assert.deepEqual((await run(client, cache, other, [4])).rows, [{ name: 'item 4' }], 'the second statement does not fail at all');
      assert.equal(cache.stats.recovered, 1);
      assert.equal((await serverStatements(client)).length, 2);
      // Control: pg alone keeps sending Bind for a name the server lost.
      const raw = await connect();
      const named = { name: 'raw_pk', text: PK, values: [1] };
      await raw.query(named);
      await raw.query(reset);
      await assert.rejects(raw.query(named), (e: { code?: string }) => e.code === '26000');
      await assert.rejects(raw.query(named), (e: { code?: string }) => e.code === '26000', 'and again: pg never forgets');
    });
  }

  test('search_path: the same text follows the schema it now names, whatever its row type', async () => {
    await server.admin(`CREATE SCHEMA s1; CREATE SCHEMA s2; CREATE SCHEMA s3;
      CREATE TABLE s1.t (id int, v text); INSERT INTO s1.t VALUES (1, 'one');
      CREATE TABLE s2.t (id int, v text); INSERT INTO s2.t VALUES (1, 'two');
      CREATE TABLE s3.t (id int, w int, v text); INSERT INTO s3.t VALUES (1, 3, 'three');`);
    const text = 'SELECT * FROM t WHERE id = $1';
    const client = await connect();
    const cache = new StatementCache(client, { max: 10 });
    await client.query('SET search_path = s1');
    assert.deepEqual((await run(client, cache, text, [1])).rows, [{ id: 1, v: 'one' }]);
    await client.query('SET search_path = s2');
    assert.deepEqual((await run(client, cache, text, [1])).rows, [{ id: 1, v: 'two' }], 'same row type: re-analysed by the server, no error');
    assert.equal(cache.stats.recovered, 0);
    await client.query('SET search_path = s3');
    assert.deepEqual((await run(client, cache, text, [1])).rows, [{ id: 1, w: 3, v: 'three' }], 'another row type: 0A000, recovered');
    assert.equal(cache.stats.recovered, 1);
  });

  test('42P05 "already exists" (the server holds the name, pg lost track) is recovered', async () => {
    const client = await connect();
    const cache = new StatementCache(client, { max: 10 });
    // As a session handed over by a session pooler (or a PREPARE by hand) would leave it.
    await client.query(`PREPARE "${statementName(PK)}" (int) AS SELECT 'stale' AS name`);
    assert.deepEqual((await run(client, cache, PK, [5])).rows, [{ id: 5, name: 'item 5' }]);
    assert.equal(cache.stats.recovered, 1);
    const held = await serverStatements(client);
    assert.deepEqual(held.map((s) => s.statement), [PK]);
  });

  test('a transaction: the invalidation aborts it, so it is NOT run again; the error reaches the caller and the cache is mended', async () => {
    await server.admin("CREATE TABLE txt (id int PRIMARY KEY, a text); INSERT INTO txt VALUES (1, 'x')");
    const text = 'SELECT * FROM txt WHERE id = $1';
    const client = await connect();
    const cache = new StatementCache(client, { max: 10 });
    await run(client, cache, text, [1]);
    await server.admin('ALTER TABLE txt ADD COLUMN b int');
    await client.query('BEGIN');
    await client.query("INSERT INTO txt VALUES (2, 'in tx')");
    await assert.rejects(run(client, cache, text, [1]), (e: { code?: string }) => e.code === '0A000');
    // (Read right after the error, pg's status may still be the 'T' before the statement: the
    // server flushes the error before the ReadyForQuery that says 'E'. Either is "in a block".)
    await assert.rejects(client.query('SELECT 1'), (e: { code?: string }) => e.code === '25P02', 'a silent re-run would have failed with 25P02 anyway');
    assert.equal(client.getTransactionStatus?.() ?? 'E', 'E', 'the transaction is aborted');
    await client.query('ROLLBACK');
    assert.equal((await server.admin('SELECT count(*)::int AS n FROM txt'))[0]?.n, 1, 'the insert before it was rolled back');
    assert.deepEqual((await run(client, cache, text, [1])).rows, [{ id: 1, a: 'x', b: null }], 'the next use works without an error');
    assert.equal(cache.stats.recovered, 1);
    // 26000 in a transaction: the same.
    await client.query('DEALLOCATE ALL');
    await client.query('BEGIN');
    await assert.rejects(run(client, cache, text, [1]), (e: { code?: string }) => e.code === '26000');
    await client.query('ROLLBACK');
    assert.deepEqual((await run(client, cache, text, [1])).rows, [{ id: 1, a: 'x', b: null }]);
  });

  test('user-named statements, rowMode and type parsers keep working; one server statement serves them all', async () => {
    const client = await connect();
    const cache = new StatementCache(client, { max: 10 });
    const mine: QueryConfig = { name: 'users_own', text: PK, values: [1] };
    assert.equal(cache.configFrom(mine), mine, 'a name of its own is left alone');
    await client.query(cache.configFrom(mine));
    const arrays = cache.configFrom({ text: PK, values: [2], rowMode: 'array' as const });
    assert.deepEqual((await client.query(arrays)).rows, [[2, 'item 2']]);
    const types = { getTypeParser: (oid: number, format?: 'text' | 'binary') => (oid === 23 ? (v: string) => `int:${v}` : pg.types.getTypeParser(oid, format)) };
    const parsed = cache.configFrom({ text: PK, values: [3], types });
    assert.deepEqual((await client.query(parsed)).rows, [{ id: 'int:3', name: 'item 3' }]);
    assert.deepEqual((await run(client, cache, PK, [4])).rows, [{ id: 4, name: 'item 4' }]);
    const held = (await serverStatements(client)).map((s) => s.name).sort();
    assert.deepEqual(held, [statementName(PK), 'users_own'].sort());
    // After DISCARD ALL the user's statement fails as it does with pg (not ours to repair); ours recovers.
    await client.query('DISCARD ALL');
    await assert.rejects(client.query(mine), (e: { code?: string }) => e.code === '26000');
    assert.equal(recoverFromPreparedError(client, mine, Object.assign(new Error('x'), { code: '26000' })), undefined);
    assert.deepEqual((await run(client, cache, PK, [5])).rows, [{ id: 5, name: 'item 5' }]);
  });

  test('failures that are not invalidations: a bad statement leaves no entry; a value pg cannot send leaves pg consistent', async () => {
    const client = await connect();
    const cache = new StatementCache(client, { max: 10 });
    await assert.rejects(run(client, cache, 'SELECT * FROM no_such_table WHERE id = $1', [1]), (e: { code?: string }) => e.code === '42P01');
    assert.equal(cache.size, 0, 'its Parse failed: nothing cached');
    // Another 0A000 (feature not supported) is no invalidation: it is not run again.
    await assert.rejects(run(client, cache, 'SELECT count(*) FROM items WHERE id > $1 FOR UPDATE', [1]),
      (e: { code?: string }) => e.code === '0A000' && preparedInvalidation(e) === undefined);
    assert.equal(cache.size, 0);
    assert.equal(cache.stats.recovered, 0);
    await run(client, cache, PK, [1]);
    const bad = { toPostgres: () => { throw new Error('cannot serialise'); } };
    await assert.rejects(run(client, cache, PK, [bad]), /cannot serialise/);
    // pg closes the statement on a failed Bind; the next call must neither fail nor re-run.
    const recoveredBefore = cache.stats.recovered;
    assert.deepEqual((await run(client, cache, PK, [6])).rows, [{ id: 6, name: 'item 6' }]);
    assert.equal(cache.stats.recovered, recoveredBefore, 'no 26000 on the way');
  });

  test('a busy client: a full cache makes no eviction while queries are queued (the statement runs unnamed)', async () => {
    const client = await connect();
    const cache = new StatementCache(client, { max: 1 });
    await run(client, cache, PK, [1]);
    const a = run(client, cache, PK, [2]); // hit, queued first
    const b = run(client, cache, 'SELECT $1::int * 2 AS n', [21]); // miss on a full cache while `a` is in flight
    assert.deepEqual((await a).rows, [{ id: 2, name: 'item 2' }]);
    assert.deepEqual((await b).rows, [{ n: 42 }]);
    assert.equal(cache.stats.uncached, 1);
    assert.equal(cache.stats.evictions, 0);
    assert.deepEqual((await serverStatements(client)).map((s) => s.statement), [PK]);
  });

  test('an invalidation while another query waits on the client: run again unnamed (no Close mid-queue), repaired on next use', async () => {
    await server.admin("CREATE TABLE busy (id int PRIMARY KEY, a text); INSERT INTO busy VALUES (1, 'x')");
    const text = 'SELECT * FROM busy WHERE id = $1';
    const client = await connect();
    const cache = new StatementCache(client, { max: 10 });
    await run(client, cache, text, [1]);
    await server.admin('ALTER TABLE busy ADD COLUMN b int DEFAULT 2');
    const first = run(client, cache, text, [1]);
    const behind = client.query('SELECT pg_sleep(0.05) AS slept');
    assert.deepEqual((await first).rows, [{ id: 1, a: 'x', b: 2 }]);
    await behind;
    assert.equal(cache.size, 0, 'dropped: the stale statement could not be closed with a query in flight');
    assert.deepEqual((await serverStatements(client)).map((p) => p.statement), [text], 'the stale one is still on the server');
    assert.deepEqual((await run(client, cache, text, [1])).rows, [{ id: 1, a: 'x', b: 2 }], 'next use: 42P05, closed, parsed again');
    assert.equal(cache.stats.recovered, 2);
    assert.equal(cache.size, 1);
    assert.deepEqual((await run(client, cache, text, [1])).rows, [{ id: 1, a: 'x', b: 2 }]);
    assert.equal(cache.stats.recovered, 2);
  });

  test('a connection replaced after a restart starts empty; the functional API keys caches by client', async () => {
    const before = await connect();
    await before.query(preparedConfig(before, PK, [1], { max: 10 }));
    await server.restart('fast');
    await assert.rejects(before.query(preparedConfig(before, PK, [1], { max: 10 })));
    forgetPrepared(before);
    const after = await connect();
    const cfg = preparedConfig(after, PK, [7], { max: 10 });
    assert.equal(cfg.name, statementName(PK));
    assert.deepEqual((await after.query(cfg)).rows, [{ id: 7, name: 'item 7' }]);
    assert.equal((await serverStatements(after)).length, 1);
  });
});
