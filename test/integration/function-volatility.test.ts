// Functions by their volatility on a real server (issue 26, item 2): the allowlist of volatile
// built-ins without side effects and the deny list checked against pg_proc, the lookup and its
// per-pool cache against real functions, and the costs that decide where the lookup runs
// (printed, not asserted).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { loadModule, parseSync } from 'libpg-query';
import { SIDE_EFFECT_FUNCTIONS, VOLATILE_READS } from '../../src/classify/function-calls.ts';
import { mayPipeline } from '../../src/classify/pipeline-safety.ts';
import { readFunctions } from '../../src/classify/read-rule.ts';
import { FunctionVolatility, type CatalogQuery } from '../../src/pool/function-volatility.ts';
import { startPgServer, type PgServer } from '../helpers/pg-server.ts';

describe('function volatility on a real server', () => {
  let server: PgServer;
  let client: pg.Client;
  before(async () => {
    server = await startPgServer();
    await server.admin(`CREATE TABLE hits (k int);
      CREATE FUNCTION bump() RETURNS int LANGUAGE sql VOLATILE AS $$ INSERT INTO hits VALUES (1) RETURNING k $$;
      CREATE FUNCTION counted() RETURNS bigint LANGUAGE sql STABLE AS $$ SELECT count(*) FROM hits $$;
      CREATE FUNCTION twice(int) RETURNS int LANGUAGE sql IMMUTABLE AS $$ SELECT $1 * 2 $$;
      CREATE FUNCTION twice(text) RETURNS text LANGUAGE sql VOLATILE AS $$ SELECT $1 || $1 $$;
      CREATE SCHEMA other;
      CREATE FUNCTION other.counted() RETURNS bigint LANGUAGE sql VOLATILE AS $$ SELECT 1::bigint $$`);
    client = new pg.Client(server.config);
    await client.connect();
  });
  after(async () => {
    await client?.end();
    await server?.destroy();
  });

  test('every allowlisted built-in is VOLATILE in pg_proc (or absent on this version); the deny list names real functions', async () => {
    const { rows } = await client.query<{ proname: string; v: string }>(
      "SELECT proname, string_agg(DISTINCT provolatile::text, '') AS v FROM pg_proc WHERE pronamespace = 'pg_catalog'::regnamespace AND proname = ANY($1) GROUP BY proname",
      [[...VOLATILE_READS]],
    );
    const found = new Map(rows.map((r) => [r.proname, r.v]));
    const absent = [...VOLATILE_READS].filter((n) => !found.has(n));
    for (const [name, v] of found) assert.ok(v.includes('v'), `${name} is ${v} on this server: not volatile, it needs no place on the allowlist`);
    console.log(`# allowlist: ${found.size} volatile in pg_catalog, absent on ${(await client.query('SHOW server_version')).rows[0].server_version}: ${absent.join(', ') || 'none'}`);
    const denied = await client.query<{ proname: string; v: string }>(
      "SELECT proname, string_agg(DISTINCT provolatile::text, '') AS v FROM pg_proc WHERE pronamespace = 'pg_catalog'::regnamespace GROUP BY proname",
    );
    const hits = denied.rows.filter((r) => SIDE_EFFECT_FUNCTIONS.test(r.proname));
    for (const name of ['nextval', 'setval', 'txid_current', 'pg_advisory_lock', 'set_config', 'pg_notify', 'pg_current_xact_id']) {
      assert.ok(hits.some((r) => r.proname === name), `${name} is denied`);
    }
    console.log(`# deny list: ${hits.length} pg_catalog functions, of which not VOLATILE: ${hits.filter((r) => !r.v.includes('v')).map((r) => `${r.proname} (${r.v})`).join(', ')}`);
  });

  test('the lookup: read-only only when every overload in every schema reached is STABLE/IMMUTABLE or allowed; cached per pool', async () => {
    let queries = 0;
    const query: CatalogQuery = async (sql, values) => {
      queries += 1;
      return (await client.query(sql, values)).rows;
    };
    const v = new FunctionVolatility(() => Date.now());
    const cases: Array<[string, boolean]> = [
      ['SELECT lower(name), now(), random() FROM t', true],
      ['SELECT bump()', false],
      ['SELECT public.counted()', true],
      ['SELECT counted()', false], // other.counted() is VOLATILE and search_path may reach it
      ['SELECT other.counted()', false],
      ['SELECT twice(2)', false], // twice(text) is VOLATILE: any overload
      ['SELECT no_such_function()', false],
      ['SELECT pg_catalog.random(), gen_random_uuid(), pg_is_in_recovery()', true],
      ['SELECT "lower"(x) FROM t', true],
    ];
    for (const [text, expected] of cases) {
      const functions = readFunctions(text);
      assert.ok(functions !== undefined && functions.length > 0, text);
      assert.equal(await v.readOnly(functions, query), expected, text);
    }
    const asked = queries;
    for (const [text, expected] of cases) assert.equal(await v.readOnly(readFunctions(text)!, query), expected, `${text} (cached)`);
    assert.equal(queries, asked, 'answered from the cache');
    // Concurrent callers share one lookup.
    const fresh = new FunctionVolatility(() => Date.now());
    queries = 0;
    await Promise.all(Array.from({ length: 20 }, () => fresh.readOnly(readFunctions('SELECT counted(), bump()')!, query)));
    assert.equal(queries, 1);
  });

  test('costs that place the lookup (printed): the rule per text, the real parser per text, one lookup on a warm connection', async () => {
    await loadModule();
    // Distinct texts (each new to the rule's cache of 1000), after a warm-up on others.
    const make = (tag: string, n: number): string[] => Array.from({ length: n }, (_, i) => `SELECT "id", "name", lower(name) FROM "items" WHERE "id" = $1 AND '${tag}${i}' <> name LIMIT 1`);
    const time = (fn: (t: string) => unknown, texts: string[]): number => {
      const t0 = performance.now();
      for (const t of texts) fn(t);
      return ((performance.now() - t0) * 1000) / texts.length;
    };
    for (const fn of [readFunctions, mayPipeline, parseSync]) time(fn, make('warm', 3000));
    const rule = time(readFunctions, make('rule', 3000));
    const pipe = time(mayPipeline, make('pipe', 3000));
    const few = make('few', 500);
    time(readFunctions, few);
    const cached = time(readFunctions, [...few, ...few, ...few, ...few]);
    const parser = time(parseSync, make('parse', 3000));
    const lookups: number[] = [];
    const v = new FunctionVolatility(() => 0);
    for (let i = 0; i < 30; i += 1) {
      const t0 = performance.now();
      await new FunctionVolatility(() => 0).readOnly([{ name: 'lower' }, { name: 'bump' }], async (sql, values) => (await client.query(sql, values)).rows);
      lookups.push(performance.now() - t0);
    }
    await v.readOnly([{ name: 'lower' }], async (sql, values) => (await client.query(sql, values)).rows);
    const t0 = performance.now();
    for (let i = 0; i < 10_000; i += 1) v.known([{ name: 'lower' }]);
    const hit = ((performance.now() - t0) * 1000) / 10_000;
    lookups.sort((a, b) => a - b);
    console.log(`# per text, µs: read rule uncached ${rule.toFixed(1)}, cached ${cached.toFixed(2)}; mayPipeline uncached ${pipe.toFixed(1)}; libpg-query parseSync ${parser.toFixed(1)}`);
    console.log(`# pg_proc lookup on a warm connection: median ${lookups[15]!.toFixed(2)} ms (min ${lookups[0]!.toFixed(2)}, max ${lookups[29]!.toFixed(2)}); a cached verdict ${hit.toFixed(3)} µs`);
  });
});
