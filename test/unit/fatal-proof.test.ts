import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { FATAL_EVIDENCE, commitFatalProvesRollback, firstKeyword, judgeFatal, type FatalEvidence, type FatalVerdict } from '../../src/classify/fatal-proof.ts';
import { classify } from '../../src/classify/classify.ts';
import { retrySafety } from '../../src/classify/retry-safety.ts';

// The rule's table (docs/what-a-fatal-proves.md). The evidence pg hands over is tested on a
// real server in test/integration/fatal-proof.test.ts; here, every way the rule can refuse.
const ev = (over: Partial<FatalEvidence> = {}): FatalEvidence => ({ text: 'INSERT INTO t VALUES (1)', statusBefore: 'I', completions: 0, committedLocally: false, ...over });

describe('judgeFatal: what an ErrorResponse before ReadyForQuery proves', () => {
  const rows: Array<[string, { code: string; severity: string }, FatalEvidence, FatalVerdict]> = [
    ['57P01 FATAL, idle, nothing completed', { code: '57P01', severity: 'FATAL' }, ev(), 'proven-no-effect'],
    ['57P02 FATAL', { code: '57P02', severity: 'FATAL' }, ev(), 'proven-no-effect'],
    ['57P03 FATAL', { code: '57P03', severity: 'FATAL' }, ev(), 'proven-no-effect'],
    ['40001 FATAL (recovery conflict)', { code: '40001', severity: 'FATAL' }, ev(), 'proven-no-effect'],
    ['40P01 ERROR', { code: '40P01', severity: 'ERROR' }, ev(), 'proven-no-effect'],
    ['57P01 as a WARNING (quickdie, syncrep) is no ErrorResponse', { code: '57P01', severity: 'WARNING' }, ev(), 'not-a-proof-code'],
    ['08P01 FATAL (a pooler closing)', { code: '08P01', severity: 'FATAL' }, ev(), 'not-a-proof-code'],
    ['57P05 idle-session timeout', { code: '57P05', severity: 'FATAL' }, ev(), 'not-a-proof-code'],
    ['inside a transaction block', { code: '57P01', severity: 'FATAL' }, ev({ statusBefore: 'T' }), 'in-transaction-block'],
    ['inside a failed block', { code: '57P01', severity: 'FATAL' }, ev({ statusBefore: 'E' }), 'in-transaction-block'],
    ['status unknown', { code: '57P01', severity: 'FATAL' }, ev({ statusBefore: null }), 'in-transaction-block'],
    ['a CommandComplete came first', { code: '57P01', severity: 'FATAL' }, ev({ completions: 1 }), 'completed-before'],
    ['the sync-rep warning came first', { code: '57P01', severity: 'FATAL' }, ev({ committedLocally: true }), 'committed-locally'],
    ['CALL may commit inside', { code: '57P01', severity: 'FATAL' }, ev({ text: 'CALL p()' }), 'may-commit-itself'],
    ['DO may commit inside', { code: '57P01', severity: 'FATAL' }, ev({ text: 'do $$ begin commit; end $$' }), 'may-commit-itself'],
    ['COMMIT PREPARED', { code: '57P01', severity: 'FATAL' }, ev({ text: "COMMIT PREPARED 'x'" }), 'may-commit-itself'],
    ['VACUUM', { code: '57P01', severity: 'FATAL' }, ev({ text: 'VACUUM t' }), 'may-commit-itself'],
    ['CREATE INDEX CONCURRENTLY', { code: '57P01', severity: 'FATAL' }, ev({ text: 'CREATE INDEX CONCURRENTLY i ON t (a)' }), 'may-commit-itself'],
    ['a parenthesised query (no keyword first)', { code: '57P01', severity: 'FATAL' }, ev({ text: '(SELECT 1)' }), 'may-commit-itself'],
    ['upsert with ON CONFLICT DO UPDATE', { code: '57P01', severity: 'FATAL' }, ev({ text: 'insert into t values (1) on conflict (id) do update set n = 2' }), 'proven-no-effect'],
    ['WITH … UPDATE … RETURNING (job fetch)', { code: '57P01', severity: 'FATAL' }, ev({ text: 'WITH j AS (SELECT id FROM jobs FOR UPDATE SKIP LOCKED) UPDATE jobs SET x = 1 FROM j RETURNING *' }), 'proven-no-effect'],
    ['leading comments', { code: '57P01', severity: 'FATAL' }, ev({ text: '-- c\n/* a /* nested */ b */ update t set a = 1' }), 'proven-no-effect'],
    ['a nested comment hiding CALL is read as PostgreSQL reads it', { code: '57P01', severity: 'FATAL' }, ev({ text: '/* /* */ SELECT */ CALL p()' }), 'may-commit-itself'],
  ];
  for (const [name, err, evidence, verdict] of rows) {
    test(name, () => assert.equal(judgeFatal(err, evidence), verdict));
  }
});

describe('firstKeyword', () => {
  for (const [text, word] of [
    ['select 1', 'select'],
    ['  \n\tINSERT', 'insert'],
    ['-- only a comment', undefined],
    ['/* unclosed', undefined],
    ['selectx', 'selectx'],
    ['update$1', undefined],
    ['', undefined],
  ] as const) {
    test(JSON.stringify(text), () => assert.equal(firstKeyword(text), word));
  }
});

describe('classify and retrySafety with evidence on the error', () => {
  const fatal = (evidence?: FatalEvidence): Error => {
    const err = Object.assign(new Error('terminating connection due to administrator command'), { code: '57P01', severity: 'FATAL' });
    if (evidence !== undefined) Object.defineProperty(err, FATAL_EVIDENCE, { value: evidence, enumerable: false });
    return err;
  };
  test('without evidence (a FATAL seen anywhere else): effect unknown, a plain write is not re-run', () => {
    const c = classify(fatal());
    assert.equal(c.effect, 'unknown');
    assert.equal(retrySafety({ classification: c, phase: 'query', idempotent: false }).retry, false);
  });
  test('with proof: effect none, re-run as a rejection without effect; still a dead connection and a topology signal', () => {
    const c = classify(fatal(ev()));
    assert.equal(c.effect, 'none');
    assert.equal(c.connectionUsable, false);
    assert.equal(c.category, 'server-shutdown');
    assert.deepEqual(retrySafety({ classification: c, phase: 'query', idempotent: false }), { retry: true, reason: 'rejected-without-effect' });
  });
  test('with evidence that proves nothing: unchanged', () => {
    assert.equal(classify(fatal(ev({ completions: 1 }))).effect, 'unknown');
  });
  test('the evidence never shows when the error is logged', () => {
    assert.ok(!JSON.stringify(fatal(ev())).includes('INSERT'));
  });
});

describe('commitFatalProvesRollback (for commit resolution)', () => {
  const commit = (over: Partial<FatalEvidence> = {}): FatalEvidence => ev({ text: 'COMMIT', statusBefore: 'T', ...over });
  test('57P01 before COMMIT\'s CommandComplete: rolled back', () => assert.equal(commitFatalProvesRollback({ code: '57P01', severity: 'FATAL' }, commit()), true));
  test('after the sync-rep warning: no proof', () => assert.equal(commitFatalProvesRollback({ code: '57P01', severity: 'FATAL' }, commit({ committedLocally: true })), false));
  test('after its CommandComplete: no proof', () => assert.equal(commitFatalProvesRollback({ code: '57P01', severity: 'FATAL' }, commit({ completions: 1 })), false));
  test('40001 is not this rule\'s (a serialization failure at COMMIT is an ERROR: rolled back, known already)', () => assert.equal(commitFatalProvesRollback({ code: '40001', severity: 'ERROR' }, commit()), false));
});
