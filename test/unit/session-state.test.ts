import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isRollback, sessionEffect, settingKey, type SessionEffect } from '../../src/classify/session-state.ts';
import { SessionSettings } from '../../src/pool/session-settings.ts';

// The rule that decides whether a checked-out client may move to a new connection.
const ROWS: Array<[string, SessionEffect]> = [
  ['SELECT * FROM products WHERE id = $1', 'none'],
  ['INSERT INTO kv (k, v) VALUES ($1, $2) ON CONFLICT (k) DO UPDATE SET v = $2', 'none'],
  ['UPDATE t SET x = 1', 'none'],
  ['BEGIN', 'none'],
  ['COMMIT', 'none'],
  ['SET LOCAL statement_timeout = 1000', 'none'],
  ['SET TRANSACTION ISOLATION LEVEL SERIALIZABLE', 'none'],
  ['SET CONSTRAINTS ALL DEFERRED', 'none'],
  ['SELECT pg_advisory_xact_lock(1)', 'none'],
  ["SELECT set_config('app.user', 'x', true)", 'none'],
  ["SELECT 'SET search_path TO evil'", 'none'],
  ['-- SET x = 1\nSELECT 1', 'none'],
  ['CREATE TABLE t (id int)', 'none'],
  ['SET search_path TO app, public', 'replayable'],
  ["SET TIME ZONE '+00:00'", 'replayable'],
  ['SET statement_timeout = 5000', 'replayable'],
  ['set session statement_timeout = 5000', 'replayable'],
  ['RESET statement_timeout', 'replayable'],
  ["SET client_min_messages TO warning; SET TIME ZONE '+00:00'", 'replayable'],
  ['RESET ALL', 'replayable'],
  ['DISCARD ALL', 'bound'],
  ['PREPARE q AS SELECT 1', 'bound'],
  ['LISTEN orders', 'bound'],
  ['UNLISTEN *', 'bound'],
  ['CREATE TEMP TABLE x (id int)', 'bound'],
  ['CREATE TEMPORARY TABLE x AS SELECT 1', 'bound'],
  ['create local temporary table x (id int)', 'bound'],
  ['DECLARE c CURSOR WITH HOLD FOR SELECT 1', 'bound'],
  ['DECLARE c CURSOR FOR SELECT 1', 'none'],
  ['SELECT pg_advisory_lock(42)', 'bound'],
  ['SELECT pg_try_advisory_lock(42)', 'bound'],
  ["SELECT set_config('app.user', 'x', false)", 'bound'],
  ['SET ROLE admin', 'bound'],
  ['SET SESSION AUTHORIZATION bob', 'bound'],
  ["LOAD 'auto_explain'", 'bound'],
  ['SET x = 1; LISTEN y', 'bound'],
  // set_config at any depth; local only with a plain `true` (issue 26).
  ["SELECT length(set_config('x.y', '1', false))", 'bound'],
  ["select set_config('a', current_setting('b'), false)", 'bound'],
  ["select coalesce(set_config('a', 'b', 0::boolean), '')", 'bound'],
  ["select set_config('a', 'b', is_local => false)", 'bound'],
  ["select set_config('a', 'b', $1)", 'bound'],
  ["SELECT set_config('a', format('%s', 'b'), true)", 'none'],
  ["SELECT pg_catalog.set_config('a', 'b', TRUE)", 'none'],
  ["SELECT 'set_config(x, y, false)'", 'none'],
  // A setting sent with other statements: running the text again would run them again.
  ['SET x = 1; INSERT INTO t VALUES (1)', 'bound'],
  ['BEGIN; SET x = 1', 'bound'],
  ['SET x = 1; SHOW x', 'replayable'],
];

test('sessionEffect: what a statement leaves on its connection', () => {
  for (const [text, expected] of ROWS) assert.equal(sessionEffect(text), expected, text);
  // Cached answers are the same answers.
  for (const [text, expected] of ROWS) assert.equal(sessionEffect(text), expected, text);
});

test('isRollback: statements that end a transaction without committing', () => {
  for (const t of ['ROLLBACK', 'rollback;', 'ABORT', 'ROLLBACK WORK', ' rollback transaction ']) assert.equal(isRollback(t), true, t);
  for (const t of ['ROLLBACK TO SAVEPOINT a', 'COMMIT', 'ROLLBACK; SELECT 1', 'SELECT 1']) assert.equal(isRollback(t), false, t);
});

// Texts with the same key replace each other in the session's list of settings (issue 26).
const KEYS: Array<[string, string]> = [
  ['SET statement_timeout = 5000', 'statement_timeout'],
  ['set STATEMENT_TIMEOUT to 1', 'statement_timeout'],
  ['SET SESSION statement_timeout = 1', 'statement_timeout'],
  ['RESET statement_timeout', 'statement_timeout'],
  ["SET TIME ZONE 'UTC'", 'timezone'],
  ["SET timezone = 'UTC'", 'timezone'],
  ["SET SCHEMA 'app'", 'search_path'],
  ['SET search_path TO app, public', 'search_path'],
  ["SET NAMES 'UTF8'", 'client_encoding'],
  ["SET app.user = 'x'", 'app.user'],
  ['SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY', 'session characteristics'],
  ["SET client_min_messages TO warning; SET TIME ZONE '+00:00'", 'client_min_messages,timezone'],
  ["SET TIME ZONE '+00:00'; SET client_min_messages TO warning", 'client_min_messages,timezone'],
  ['RESET ALL', '*'],
  ['SET "Weird" = 1', '=SET "Weird" = 1'],
  ['RESET ALL; SET x = 1', '=RESET ALL; SET x = 1'],
];

test('settingKey: which settings a text sets', () => {
  for (const [text, key] of KEYS) assert.equal(settingKey(text), key, text);
});

test('SessionSettings: the last text per setting, in the order last run; RESET ALL empties', () => {
  const s = new SessionSettings();
  s.add('SET x = 1');
  s.add("SET TIME ZONE 'UTC'");
  s.add('SET x = 2');
  assert.deepEqual([...s.texts()], ["SET TIME ZONE 'UTC'", 'SET x = 2']);
  for (let i = 0; i < 10000; i += 1) s.add(`SET x = ${i}`);
  assert.equal(s.size, 2, 'bounded by the settings used, not by how often');
  s.add('RESET x');
  assert.deepEqual([...s.texts()], ["SET TIME ZONE 'UTC'", 'RESET x']);
  s.addAll(['SET y = 1', 'RESET ALL']);
  assert.equal(s.size, 0);
  s.add('SET y = 1');
  assert.deepEqual([...s.texts()], ['SET y = 1']);
});
