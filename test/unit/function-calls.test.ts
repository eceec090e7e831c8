import { test } from 'node:test';
import assert from 'node:assert/strict';
import { calledFunctions, readOnlyFunction } from '../../src/classify/function-calls.ts';
import { readFunctions } from '../../src/classify/read-rule.ts';
import { lex } from '../../src/classify/sql-lexer.ts';

// Each row: a statement and the functions it calls, as `name` or `schema.name`.
const ROWS: Array<[string, string[]]> = [
  ['SELECT 1', []],
  ['SELECT bump()', ['bump']],
  ['SELECT public.bump(1), "Odd Name"(2), s."F"()', ['public.bump', 'Odd Name', 's.F']],
  ['SELECT db.s.f(1)', ['s.f']],
  ['SELECT count(*), COUNT(x), lower(name) FROM t', ['count', 'lower']],
  // Keywords and constructs that take parentheses are not calls.
  ['SELECT CAST(x AS numeric(10,2)), COALESCE(a, b), NULLIF(a, b), GREATEST(1, 2), EXTRACT(epoch FROM t)', []],
  ['SELECT * FROM t WHERE a IN (1, 2) AND b = ANY($1) AND EXISTS (SELECT 1) AND c = ALL (ARRAY[1]) AND ROW(1, 2) IS NOT NULL', []],
  ['SELECT ARRAY(SELECT 1), x::varchar(20), y::character varying(3), z::pg_catalog.numeric(4)', []],
  ['VALUES (1), (2)', []],
  ['SELECT current_timestamp(3), localtime(2), SUBSTRING(a FROM 1 FOR 2), TRIM(BOTH FROM a), POSITION(a IN b), OVERLAY(a PLACING b FROM 1)', []],
  // Window and aggregate syntax after a closing parenthesis.
  ['SELECT row_number() OVER (PARTITION BY (a) ORDER BY (b)), count(*) FILTER (WHERE a), percentile_cont(0.5) WITHIN GROUP (ORDER BY x) FROM t', ['row_number', 'count', 'percentile_cont']],
  // Aliases, CTE column lists and type positions.
  ['WITH x(a, b) AS (SELECT 1, 2), y(c) AS MATERIALIZED (SELECT 3), z(d) AS NOT MATERIALIZED (SELECT 4) SELECT * FROM x', []],
  ['SELECT * FROM generate_series(1, 3) g(i), unnest($1::int[]) WITH ORDINALITY AS u(v, n), (SELECT 1) s(a)', ['generate_series', 'unnest']],
  ['SELECT a FROM t GROUP BY GROUPING SETS ((a), (b))', []],
  ['EXPLAIN (ANALYZE false) SELECT f()', ['f']],
  ['SELECT x AT TIME ZONE (tz) FROM t OFFSET 1 FETCH FIRST (5) ROWS ONLY', []],
  ['SELECT a OPERATOR(pg_catalog.+) b, operator(1)', ['operator']],
  // Calls in the positions that look like syntax still count.
  ['SELECT * FROM t WHERE NOT materialized(x) AND x LIKE f(y) ESCAPE g(z)', ['materialized', 'f', 'g']],
  ['SELECT left(name, 1), right(name, 1), current_schema()', ['left', 'right', 'current_schema']],
  ['SELECT f(g(h(1)))', ['f', 'g', 'h']],
  // Literals, comments and quoted identifiers hide nothing and invent nothing.
  ["SELECT 'bump()', $$bump()$$, \"bump\" FROM t -- bump()\n/* bump() */", []],
];

test('calledFunctions: names before ( that the grammar reads as calls', () => {
  const show = (f: { schema?: string; name: string }): string => (f.schema === undefined ? f.name : `${f.schema}.${f.name}`);
  for (const [text, expected] of ROWS) assert.deepEqual(calledFunctions(lex(text).tokens).map(show), expected, text);
});

test('readOnlyFunction: STABLE and IMMUTABLE in every schema searched; VOLATILE only for allowed built-ins; unknown is not', () => {
  const rows = [
    { schema: 'pg_catalog', name: 'lower', volatility: 'i' },
    { schema: 'pg_catalog', name: 'now', volatility: 's' },
    { schema: 'pg_catalog', name: 'random', volatility: 'v' },
    { schema: 'public', name: 'bump', volatility: 'v' },
    { schema: 'public', name: 'total', volatility: 's' },
    { schema: 'other', name: 'total', volatility: 'v' },
    { schema: 'public', name: 'random', volatility: 'v' },
    { schema: 'pg_catalog', name: 'txid_current', volatility: 's' },
  ];
  const cases: Array<[{ schema?: string; name: string }, boolean]> = [
    [{ name: 'lower' }, true],
    [{ name: 'now' }, true],
    [{ name: 'bump' }, false],
    [{ name: 'missing' }, false],
    [{ name: 'total' }, false], // a VOLATILE overload in another schema: search_path may reach it
    [{ schema: 'public', name: 'total' }, true],
    [{ schema: 'other', name: 'total' }, false],
    [{ name: 'random' }, false], // public.random is the caller's own, not the built-in
    [{ schema: 'pg_catalog', name: 'random' }, true],
    [{ schema: 'nowhere', name: 'lower' }, false],
    [{ name: 'txid_current' }, false], // STABLE, yet it assigns a transaction id
  ];
  for (const [fn, expected] of cases) assert.equal(readOnlyFunction(fn, rows), expected, JSON.stringify(fn));
});

test('readFunctions: the functions of a recognised read, none for a read without calls, undefined for a non-read', () => {
  assert.deepEqual(readFunctions('SELECT bump()'), [{ name: 'bump' }]);
  assert.deepEqual(readFunctions('SELECT 1'), []);
  assert.equal(readFunctions('INSERT INTO t SELECT bump()'), undefined);
  assert.equal(readFunctions('SELECT nextval($1)'), undefined);
  // Under both settings of standard_conforming_strings, the functions of both readings.
  assert.deepEqual(readFunctions(String.raw`SELECT '\' , f(' , g(1) --')`), [{ name: 'f' }, { name: 'g' }]);
});
