import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isRollback, sessionEffect, type SessionEffect } from '../../src/classify/session-state.ts';

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
  ['RESET ALL', 'bound'],
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
