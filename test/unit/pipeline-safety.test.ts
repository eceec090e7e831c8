import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mayPipeline } from '../../src/classify/pipeline-safety.ts';

// May a statement share a connection with others in flight? Never one that may leave a
// transaction block open (what follows it would run inside it), COPY, or several statements.
const ROWS: Array<[string, boolean]> = [
  ['SELECT id, name FROM items WHERE id = $1', true],
  ['select 1', true],
  ['  \n SELECT 1;', true],
  ['WITH x AS (SELECT 1) SELECT * FROM x', true],
  ['WITH moved AS (DELETE FROM a RETURNING *) INSERT INTO b SELECT * FROM moved', true],
  ['VALUES (1), (2)', true],
  ['TABLE items', true],
  ['SHOW search_path', true],
  ['INSERT INTO events (item_id, qty) VALUES ($1, $2)', true],
  ['UPDATE items SET price = $1 WHERE id = $2', true],
  ['DELETE FROM items WHERE id = $1', true],
  ['MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE', true],
  ['(SELECT 1) UNION (SELECT 2)', true],
  ['-- a comment; with a semicolon\nSELECT 1', true],
  ["SELECT 'a;b' AS s", true],
  ['SELECT $tag$;BEGIN;$tag$', true],
  ['BEGIN', false],
  ['begin isolation level serializable', false],
  ['START TRANSACTION', false],
  ['COMMIT', false],
  ['ROLLBACK', false],
  ['SAVEPOINT a', false],
  ['PREPARE TRANSACTION \'x\'', false],
  ['COPY items FROM STDIN', false],
  ['COPY items TO STDOUT', false],
  ['SET search_path TO app', false],
  ['CREATE TABLE t (id int)', false],
  ['CALL do_things()', false],
  ['DO $$ BEGIN PERFORM 1; END $$', false],
  ['SELECT 1; BEGIN', false],
  ['SELECT 1; SELECT 2', false],
  ['/* BEGIN */ BEGIN', false],
  ['', false],
  ['   ', false],
  // Cut as the server cuts them (issue 26).
  [String.raw`SELECT '\'; BEGIN; SELECT '\'`, false],
  [String.raw`SELECT '\' AS a`, true],
  [String.raw`SELECT E'\'; BEGIN; '`, true],
  [String.raw`SELECT '\' || ' ; BEGIN; --'`, false],
  ['SELECT a$$; BEGIN; $$$$', false],
  ['SELECT /* /* */ ; BEGIN */ 1', true],
  ['SELECT /* /* */ 1', false],
  ["SELECT 'a'\n'; BEGIN; '", true],
];

test('mayPipeline: one plain statement may follow others on a connection; transaction control, COPY and several statements may not', () => {
  for (const [text, expected] of ROWS) assert.equal(mayPipeline(text), expected, JSON.stringify(text));
  // Answers are cached per text: the same again.
  for (const [text, expected] of ROWS) assert.equal(mayPipeline(text), expected, `${JSON.stringify(text)} (cached)`);
});
