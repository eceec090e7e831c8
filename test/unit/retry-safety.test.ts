import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { classify, isRecognisedRead, retrySafety, type Classification } from '../../src/index.ts';

// Minimal stand-ins for errors are fine here: this table tests the *rule*, not the classifier
// (which is tested on real errors in test/integration/classify-real.test.ts).
const server = (code: string, severity = 'ERROR'): Classification => classify(Object.assign(new Error(code), { code, severity }));
const socket = (code: string): Classification => classify(Object.assign(new Error(code), { code }));

describe('retrySafety: may this be retried?', () => {
  const rows: Array<[string, Classification, 'connect' | 'query' | 'commit', boolean, boolean, string]> = [
    ['refused at connect', socket('ECONNREFUSED'), 'connect', false, true, 'never-sent'],
    ['57P03 at connect', server('57P03', 'FATAL'), 'connect', false, true, 'never-sent'],
    ['reset mid-query, plain write', socket('ECONNRESET'), 'query', false, false, 'may-have-taken-effect'],
    ['reset mid-query, idempotent', socket('ECONNRESET'), 'query', true, true, 'idempotent'],
    ['57P01 mid-query, plain write', server('57P01', 'FATAL'), 'query', false, false, 'may-have-taken-effect'],
    ['25006: rejected, no effect', server('25006'), 'query', false, true, 'rejected-without-effect'],
    ['40001 in autocommit: rolled back', server('40001'), 'query', false, true, 'rejected-without-effect'],
    ['23505 is never retried', server('23505'), 'query', true, false, 'not-transient'],
    ['57014 the caller asked for', server('57014'), 'query', true, false, 'not-transient'],
    ['28P01 never retried even at connect', server('28P01', 'FATAL'), 'connect', true, false, 'not-transient'],
    ['lost during COMMIT, not idempotent', socket('ECONNRESET'), 'commit', false, false, 'may-have-taken-effect'],
  ];
  for (const [name, c, phase, idempotent, retry, reason] of rows) {
    test(name, () => {
      assert.deepEqual(retrySafety({ classification: c, phase, idempotent }), { retry, reason });
    });
  }
});

describe('isRecognisedRead: the documented read rule', () => {
  const reads = [
    'SELECT 1',
    '  select * from products where id = $1',
    '/* hi */ SELECT name FROM t',
    '-- comment\nSELECT 1;',
    "SELECT 'insert into x' AS s",
    'WITH a AS (SELECT 1) SELECT * FROM a',
    'SHOW server_version',
    'VALUES (1), (2)',
    'TABLE products',
    'EXPLAIN SELECT 1',
    'SELECT $$delete$$',
    'SELECT "update" FROM t',
    '(SELECT 1) UNION (SELECT 2)',
    String.raw`SELECT '\' AS a, '\' AS b`,
    String.raw`SELECT E'\'; DELETE FROM t; '`,
    "SELECT $x$ ; INSERT INTO t VALUES (1); $x$",
    'SELECT /* /* nested */ ; DELETE FROM t */ 1',
    "SELECT U&'d\\0061t' UESCAPE '!'",
    'SELECT CASE WHEN a THEN 1 END FROM t ORDER BY 1 FETCH FIRST 5 ROWS ONLY',
    'SELECT random(), now(), lower(name) FROM t',
  ];
  const writes = [
    'INSERT INTO t VALUES (1)',
    'UPDATE t SET a = 1',
    'DELETE FROM t',
    'WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d',
    'SELECT * INTO new_table FROM t',
    'SELECT nextval(\'s\')',
    'SELECT pg_advisory_lock(1)',
    'SELECT * FROM t FOR UPDATE',
    'EXPLAIN ANALYZE DELETE FROM t',
    'SELECT 1; DELETE FROM t',
    'BEGIN',
    'CALL proc()',
    'SET search_path = x',
    'select set_config(\'a\', \'b\', false)',
    '',
    // Issue 26: with standard_conforming_strings on, '\' is a whole literal.
    String.raw`WITH x AS (SELECT '\' AS a), y AS (INSERT INTO t VALUES (1) RETURNING '\') SELECT * FROM y`,
    // Read the other way (standard_conforming_strings off) it is a write: not a read either way.
    String.raw`SELECT '\' , ' ; DELETE FROM t; --'`,
    'SELECT a$$; DELETE FROM t; $$$$',
    'SELECT * FROM t FOR SHARE',
    'SELECT * FROM t FOR KEY SHARE',
    'EXPLAIN ANALYSE SELECT 1',
    'SELECT pg_catalog.nextval(1)',
    'SELECT txid_current()',
    "SELECT 'unterminated",
    'SELECT 1 /* unterminated',
    '(SHOW x)',
  ];
  for (const text of reads) test(`read: ${JSON.stringify(text)}`, () => assert.equal(isRecognisedRead(text), true));
  for (const text of writes) test(`not a read: ${JSON.stringify(text)}`, () => assert.equal(isRecognisedRead(text), false));
});

test('a wait that timed out only because the pool was full is not retried; one caused by failing connects is', () => {
  const saturated = classify(Object.assign(new Error('full'), { code: 'PGR_ACQUIRE_TIMEOUT', saturated: true }));
  const waited = classify(Object.assign(new Error('waited'), { code: 'PGR_ACQUIRE_TIMEOUT' }));
  assert.equal(retrySafety({ classification: saturated, phase: 'connect', idempotent: true }).retry, false);
  assert.equal(retrySafety({ classification: waited, phase: 'connect', idempotent: false }).retry, true);
  for (const code of ['PGR_TRANSACTION_ROLLED_BACK', 'PGR_REPLAY_DIVERGED']) {
    const c = classify(Object.assign(new Error(code), { code }));
    assert.deepEqual([c.effect, c.transient], ['none', false], code);
  }
});
