// The pure parts of transaction replay (issue #15): result digests, the texts that commit or only
// begin a transaction, and the bounds of a transaction's record.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { digestError, digestResult } from '../../src/transactions/digest.ts';
import { TransactionRecord } from '../../src/transactions/record.ts';
import { commitKind, isBeginOnly } from '../../src/transactions/statements.ts';

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
    assert.ok(digestResult(many)!.length <= 40);
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

describe('TransactionRecord', () => {
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
