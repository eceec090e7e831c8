// The pure parts of transaction replay (issue #15): result digests, the texts that commit or only
// begin a transaction, and the bounds of a transaction's record.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { digestError, digestResult } from '../../src/transactions/digest.ts';
import { TransactionRecord } from '../../src/transactions/record.ts';
import { commitKind, isBeginOnly, mayChangeCharacteristics, transactionControl, type TransactionControl } from '../../src/transactions/transaction-control.ts';

const result = (rows: unknown[], fields = [{ name: 'v', dataTypeID: 25 }], command = 'SELECT') => ({ command, rowCount: rows.length, fields, rows });

describe('digestResult', () => {
  test('equal exactly when the application was given the same thing', () => {
    const same = (a: unknown, b: unknown): boolean => digestResult(a) === digestResult(b);
    assert.ok(same(result([{ v: 'a' }]), result([{ v: 'a' }])));
    assert.ok(same({ command: 'INSERT', rowCount: 1, rows: [], fields: [] }, { command: 'INSERT', rowCount: 1, rows: [], fields: [] }));
    const differ: [unknown, unknown][] = [
      [result([{ v: 'a' }]), result([{ v: 'b' }])],
      [result([{ v: 1 }]), result([{ v: '1' }])],
      [result([{ v: null }]), result([{ v: 'null' }])],
      [result([{ v: Number.NaN }]), result([{ v: null }])],
      [result([{ v: 10n }]), result([{ v: 10 }])],
      [result([{ v: new Date(1) }]), result([{ v: new Date(2) }])],
      [result([{ v: Buffer.from([1]) }]), result([{ v: Buffer.from([2]) }])],
      [result([{ v: [1, 2] }]), result([{ v: [12] }])],
      [result([{ v: { a: 1 } }]), result([{ v: { a: 2 } }])],
      [result([{ v: 'a,b' }]), result([{ v: 'a' }, { v: 'b' }])],
      [result([{ v: 1 }], [{ name: 'v', dataTypeID: 23 }]), result([{ v: 1 }], [{ name: 'v', dataTypeID: 20 }])],
      [result([{ v: 1 }], [{ name: 'v', dataTypeID: 23 }]), result([{ v: 1 }], [{ name: 'w', dataTypeID: 23 }])],
      [{ command: 'UPDATE', rowCount: 1, rows: [], fields: [] }, { command: 'UPDATE', rowCount: 0, rows: [], fields: [] }],
      [[result([{ v: 'a' }]), result([])], [result([{ v: 'a' }])]],
    ];
    for (const [a, b] of differ) assert.notEqual(digestResult(a), digestResult(b), JSON.stringify([a, b], (_k, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v)));
  });

  test('array rows (rowMode: array) and long results (hashed) work; a cyclic value is not digestible', () => {
    const many = result(Array.from({ length: 50 }, (_, i) => [i, `row ${i}`]));
    assert.equal(digestResult(many), digestResult(structuredClone(many)));
    assert.ok(digestResult(many)!.length <= 44);
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    assert.equal(digestResult(result([{ v: cyclic }])), undefined);
    assert.notEqual(digestError({ code: '23505', message: 'duplicate key (a)' }), digestError({ code: '23505', message: 'duplicate key (b)' }));
  });
});

describe('statement texts', () => {
  test('commitKind: the forms ORMs send are plain; a COMMIT among statements is within; lookalikes are none', () => {
    for (const t of ['COMMIT', 'commit', 'COMMIT;', '  commit work ; ', 'END', 'end transaction', 'COMMIT AND NO CHAIN']) assert.equal(commitKind(t), 'plain', t);
    for (const t of ['UPDATE t SET n = 1; COMMIT', 'INSERT INTO t VALUES (1);\nEND;']) assert.equal(commitKind(t), 'within', t);
    for (const t of ['COMMIT AND CHAIN', 'PREPARE TRANSACTION \'x\'', "SELECT 'commit'", 'SELECT 1; SELECT 2', "INSERT INTO t VALUES ('x; COMMIT')", 'SELECT CASE WHEN true THEN 1 END; SELECT 2', 'COMMIT PREPARED \'x\'']) {
      assert.equal(commitKind(t), 'none', t);
    }
  });

  test('isBeginOnly: BEGIN and START TRANSACTION with their modes, nothing else', () => {
    for (const t of ['BEGIN', 'begin;', 'BEGIN ISOLATION LEVEL SERIALIZABLE, READ ONLY', 'start transaction isolation level repeatable read', 'BEGIN WORK']) assert.ok(isBeginOnly(t), t);
    for (const t of ['BEGIN; INSERT INTO t VALUES (1)', 'SELECT 1', "DO $$ BEGIN PERFORM 1; END $$"]) assert.ok(!isBeginOnly(t), t);
  });
});

describe('digests are bounded (issue 26)', () => {
  test('a 5 MB result, a 1 MB buffer, a long error message: each digest at most 44 characters, still telling values apart', () => {
    const rows = Array.from({ length: 5000 }, (_, i) => ({ v: `${'x'.repeat(1000)}${i}` }));
    const a = digestResult(result(rows))!;
    rows[4999] = { v: `${'x'.repeat(1000)}-` };
    const b = digestResult(result(rows))!;
    assert.ok(a.length <= 44 && b.length <= 44, `${a.length} ${b.length}`);
    assert.notEqual(a, b);
    const buf = Buffer.alloc(1 << 20, 7);
    const c = digestResult(result([{ v: buf }]))!;
    buf[buf.length - 1] = 8;
    assert.ok(c.length <= 44);
    assert.notEqual(c, digestResult(result([{ v: buf }])));
    // A buffer and the text of its bytes are different things.
    assert.notEqual(digestResult(result([{ v: Buffer.from('ab') }])), digestResult(result([{ v: 'ab' }])));
    const longError = { code: '23505', message: `duplicate key value (k)=(${'y'.repeat(10000)})` };
    assert.ok(digestError(longError).length <= 46);
    assert.notEqual(digestError(longError), digestError({ ...longError, message: `${longError.message}!` }));
    const started = process.hrtime.bigint();
    for (let i = 0; i < 20; i += 1) digestResult(result(rows));
    console.log(`# digest of a 5000-row, 5 MB result: ${(Number(process.hrtime.bigint() - started) / 20 / 1e6).toFixed(2)} ms`);
  });

  test('maxBytes counts the digests kept as well as texts and values', () => {
    const r = new TransactionRecord({ maxStatements: 10000, maxBytes: 1000 });
    r.addResult({ text: 'BEGIN' }, { command: 'BEGIN', rowCount: null, rows: [], fields: [] });
    const text = 'SELECT v FROM t';
    const one = result([{ v: 'z'.repeat(100000) }]);
    let n = 0;
    while (r.replayable) {
      r.addResult({ text }, one);
      n += 1;
    }
    // Each statement keeps its 15-character text and a 44-character digest (not 100 000 characters).
    assert.ok(n > 10 && n <= Math.ceil(1000 / (text.length + 44)) + 1, `stopped after ${n}`);
    assert.match(r.reason!, /maxBytes/);
    const counted = new TransactionRecord({ maxStatements: 10, maxBytes: 1000 });
    counted.addResult({ text }, one);
    assert.equal(counted.bytes, text.length + digestResult(one)!.length);
  });
});

// What a text does to the transaction it runs in (issue 26): the recorder replays only within
// a transaction it is sure of.
const CONTROL: Array<[string, TransactionControl]> = [
  ['COMMIT AND CHAIN', 'chain-commit'],
  ['commit work and chain;', 'chain-commit'],
  ['END TRANSACTION AND CHAIN', 'chain-commit'],
  ['ROLLBACK AND CHAIN', 'chain-rollback'],
  ['abort and chain', 'chain-rollback'],
  ["CALL transfer(1, 2)", 'routine'],
  ["DO $$ BEGIN COMMIT; END $$", 'routine'],
  ["do language plpgsql 'begin null; end'", 'routine'],
  ["PREPARE TRANSACTION 'tx1'", 'uncertain'],
  ["COMMIT PREPARED 'tx1'", 'uncertain'],
  ["ROLLBACK PREPARED 'tx1'", 'uncertain'],
  ['UPDATE t SET n = n + 1; COMMIT; BEGIN; UPDATE t SET n = n + 10', 'uncertain'],
  ['BEGIN; UPDATE t SET n = 1; COMMIT; BEGIN', 'uncertain'],
  ['UPDATE t SET n = 1; ROLLBACK; SELECT 1', 'uncertain'],
  ['UPDATE t SET n = 1; COMMIT AND CHAIN', 'uncertain'],
  ['SELECT 1; CALL p()', 'routine'],
  ['UPDATE t SET n = 1; COMMIT; CALL p()', 'uncertain'],
  // Within the transaction, or followed already (a lone BEGIN/COMMIT/ROLLBACK, a text ending in COMMIT).
  ['COMMIT', 'none'],
  ['ROLLBACK', 'none'],
  ['COMMIT AND NO CHAIN', 'none'],
  ['BEGIN', 'none'],
  ['BEGIN; INSERT INTO t VALUES (1)', 'none'],
  ['UPDATE t SET n = 1; COMMIT', 'none'],
  ['BEGIN; UPDATE t SET n = 1; COMMIT', 'none'],
  ['SAVEPOINT a; UPDATE t SET n = 1; ROLLBACK TO SAVEPOINT a; RELEASE a', 'none'],
  ['ROLLBACK TO a; UPDATE t SET n = 1', 'none'],
  ["SELECT 'COMMIT AND CHAIN'", 'none'],
  ["INSERT INTO log VALUES ('x; COMMIT; BEGIN')", 'none'],
  ['-- CALL p()\nSELECT 1', 'none'],
  ['SELECT "do" FROM t', 'none'],
  ['UPDATE t SET done = true', 'none'],
  ['PREPARE q AS SELECT 1', 'none'],
  ["SELECT * FROM calls WHERE kind = 'call'", 'none'],
];

describe('transactionControl', () => {
  test('texts that end the transaction and go on, or may', () => {
    for (const [text, expected] of CONTROL) assert.equal(transactionControl(text), expected, text);
  });

  test('mayChangeCharacteristics: what a chained transaction would inherit', () => {
    for (const t of ['SET TRANSACTION ISOLATION LEVEL SERIALIZABLE', 'set transaction read only', "SET default_transaction_isolation = 'serializable'", "SELECT set_config('transaction_read_only', 'on', true)", 'SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY']) assert.ok(mayChangeCharacteristics(t), t);
    for (const t of ['UPDATE t SET n = 1', 'SET statement_timeout = 1', 'BEGIN']) assert.ok(!mayChangeCharacteristics(t), t);
  });
});

describe('TransactionRecord', () => {
  test('chained(): the first BEGIN again; not replayable after a characteristics change or a text with transaction control', () => {
    const limits = { maxStatements: 100, maxBytes: 10000 };
    const begin = { command: 'BEGIN', rowCount: null, rows: [], fields: [] };
    const update = { command: 'UPDATE', rowCount: 1, rows: [], fields: [] };
    const r = new TransactionRecord(limits);
    r.addResult({ text: 'BEGIN ISOLATION LEVEL REPEATABLE READ' }, begin);
    r.addResult({ text: 'UPDATE t SET n = n + 1' }, update);
    const next = r.chained();
    assert.deepEqual(next.entries.map((e) => e.config.text), ['BEGIN ISOLATION LEVEL REPEATABLE READ']);
    assert.equal(next.chained().entries.length, 1, 'and again down the chain');
    // Stopped for size, the chain still knows its BEGIN.
    r.stop('too large');
    assert.equal(r.chained().replayable, true);

    const set = new TransactionRecord(limits);
    set.addResult({ text: 'BEGIN' }, begin);
    set.addResult({ text: 'SET TRANSACTION ISOLATION LEVEL SERIALIZABLE' }, { command: 'SET', rowCount: null, rows: [], fields: [] });
    assert.equal(set.chained().replayable, false);
    assert.match(set.chained().reason!, /characteristics/);

    const opened = new TransactionRecord(limits);
    opened.addResult({ text: 'BEGIN; INSERT INTO t VALUES (1)' }, [begin, update]);
    assert.equal(opened.chained().replayable, false);

    const control = new TransactionRecord(limits);
    control.addResult({ text: 'BEGIN' }, begin);
    control.stopChain('a text beginning UPDATE may have committed part of the transaction');
    assert.equal(control.chained().replayable, false);
  });


  test('keeps copies of what it records, and stops past maxStatements or maxBytes, saying why', () => {
    const values = ['a'];
    const r = new TransactionRecord({ maxStatements: 3, maxBytes: 100 });
    r.addResult({ text: 'BEGIN' }, { command: 'BEGIN', rowCount: null, rows: [], fields: [] });
    r.addResult({ text: 'INSERT INTO t VALUES ($1)', values }, { command: 'INSERT', rowCount: 1, rows: [], fields: [] });
    values[0] = 'changed';
    assert.deepEqual(r.entries[1]!.config.values, ['a']);
    r.addError({ text: 'INSERT INTO u VALUES (1)' }, { code: '23505', message: 'dup' });
    assert.equal(r.replayable, true);
    r.addResult({ text: 'SELECT 1' }, result([{ v: 1 }]));
    assert.equal(r.replayable, false);
    assert.match(r.reason!, /maxStatements/);
    assert.equal(r.entries.length, 0, 'nothing kept once it cannot replay');

    const big = new TransactionRecord({ maxStatements: 100, maxBytes: 10 });
    big.addResult({ text: 'INSERT INTO t VALUES ($1)', values: ['x'.repeat(20)] }, { command: 'INSERT', rowCount: 1, rows: [], fields: [] });
    assert.equal(big.replayable, false);
    assert.match(big.reason!, /maxBytes/);
  });
});
