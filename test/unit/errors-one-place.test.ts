// Errors are made in one place: src/errors.ts has one factory per code (one message shape each),
// and nothing else in src/ constructs the library's error classes. The scan below fails on a
// `new PgResilientError(` (or of any subclass) outside src/errors.ts; the table proves it can fail.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { ROOT, SRC, sourceFiles } from '../helpers/src-tree.ts';

import {
  ErrorCodes,
  abortedError,
  acquireTimeoutError,
  brokenClientError,
  circuitOpenError,
  deadlineError,
  discoveryFailedError,
  invalidOption,
  isPgResilientError,
  noSuitableHostError,
  notReplicatedError,
  poolEndedError,
  queueFullError,
  replayDivergedError,
  retriesExhaustedError,
  rolledBackError,
  statementOutcomeUnknownError,
  transactionOutcomeUnknownError,
  type ErrorCode,
} from '../../src/errors.ts';
const BASES = ['PgResilientError', 'TransactionOutcomeUnknownError', 'InvalidOptionError'];

/** The error classes: the three bases and every class of `files` that extends one of them (transitively). */
function errorClasses(files: ReadonlyMap<string, string>): Set<string> {
  const classes = new Set(BASES);
  for (let grew = true; grew;) {
    grew = false;
    for (const text of files.values()) {
      for (const m of text.matchAll(/\bclass\s+(\w+)\s+extends\s+(\w+)/g)) {
        if (classes.has(m[2]!) && !classes.has(m[1]!)) {
          classes.add(m[1]!);
          grew = true;
        }
      }
    }
  }
  return classes;
}

/** `file:line: new X(` for each construction of an error class outside src/errors.ts. */
function constructionsOutsideErrors(files: ReadonlyMap<string, string>): string[] {
  const classes = errorClasses(files);
  const found: string[] = [];
  for (const [file, text] of files) {
    if (file === 'src/errors.ts') continue;
    text.split('\n').forEach((line, i) => {
      for (const m of line.matchAll(/\bnew\s+(\w+)\s*\(/g)) {
        if (classes.has(m[1]!)) found.push(`${file}:${i + 1}: new ${m[1]}(`);
      }
    });
  }
  return found;
}

function srcFiles(): Map<string, string> {
  return new Map(sourceFiles().map((f) => [path.relative(ROOT, f).split(path.sep).join('/'), readFileSync(f, 'utf8')]));
}

describe('errors are made in src/errors.ts only', () => {
  test('no construction of an error class elsewhere in src/', () => {
    const files = srcFiles();
    assert.ok(files.size > 50 && files.has('src/errors.ts'), 'the scan reads the real src/');
    assert.deepEqual(constructionsOutsideErrors(files), []);
  });

  const cases: Array<{ name: string; files: Record<string, string>; found: string[] }> = [
    { name: 'a base class', files: { 'src/pool/x.ts': "throw new PgResilientError(ErrorCodes.POOL_ENDED, 'x');" }, found: ['src/pool/x.ts:1: new PgResilientError('] },
    { name: 'InvalidOptionError, on line 2', files: { 'src/a.ts': "const a = 1;\nthrow new InvalidOptionError('max', 'bad');" }, found: ['src/a.ts:2: new InvalidOptionError('] },
    {
      name: 'a subclass declared in another file',
      files: { 'src/b.ts': 'export class MyError extends TransactionOutcomeUnknownError {}', 'src/c.ts': 'throw new MyError (m);' },
      found: ['src/c.ts:1: new MyError('],
    },
    { name: 'src/errors.ts itself', files: { 'src/errors.ts': "return new PgResilientError(code, 'x');" }, found: [] },
    { name: 'other classes', files: { 'src/d.ts': "throw new TypeError('x'); new Error('y');" }, found: [] },
  ];
  for (const c of cases) {
    test(`the scan: ${c.name}`, () => {
      assert.deepEqual(constructionsOutsideErrors(new Map(Object.entries(c.files))), c.found);
    });
  }
});

describe('every code has a factory', () => {
  const cause = new Error('connect ECONNREFUSED 10.0.0.1:5432');
  const elapsed = { elapsedMs: () => 1234.4 };
  // Typed by code: a code added to ErrorCodes without a factory here fails to compile.
  const made: Record<ErrorCode, () => Error & { code: string }> = {
    PGR_POOL_ENDED: () => poolEndedError('it was ended while connecting'),
    PGR_ACQUIRE_TIMEOUT: () => acquireTimeoutError('no connection became available within 50 ms', { cause }),
    PGR_QUEUE_FULL: () => queueFullError(10),
    PGR_CIRCUIT_OPEN: () => circuitOpenError(200),
    PGR_RETRIES_EXHAUSTED: () => retriesExhaustedError('deadline', 3, 900, cause),
    PGR_DEADLINE_EXCEEDED: () => deadlineError(elapsed, cause),
    PGR_ABORTED: () => abortedError(AbortSignal.abort(new Error('stop'))),
    PGR_STATEMENT_OUTCOME_UNKNOWN: () => statementOutcomeUnknownError(cause, 1, 10),
    PGR_TRANSACTION_OUTCOME_UNKNOWN: () => transactionOutcomeUnknownError('during COMMIT', 'the primary could not be asked in time', 'look it up with SELECT txid_status(42)', '42', cause),
    PGR_TRANSACTION_ROLLED_BACK: () => rolledBackError('replay is off', cause),
    PGR_REPLAY_DIVERGED: () => replayDivergedError(2, 'SELECT', cause),
    PGR_CLIENT_BROKEN: () => brokenClientError('db1:5432', cause),
    PGR_INVALID_OPTION: () => invalidOption('retry.maxElapsedMs', 'expected a number, got "x"'),
    PGR_NO_SUITABLE_HOST: () => noSuitableHostError('read-write', { host: 'db2', port: 5432, role: 'standby' }),
    PGR_DISCOVERY_FAILED: () => discoveryFailedError('it has no members array'),
    PGR_NOT_REPLICATED: () => notReplicatedError(500, 'no standby connected'),
  };

  test('each code of ErrorCodes: its factory makes an error with that code and a pg-resilient message', () => {
    assert.deepEqual(Object.keys(made).sort(), Object.values(ErrorCodes).sort());
    for (const [code, make] of Object.entries(made)) {
      const err = make();
      assert.equal(err.code, code);
      assert.ok(isPgResilientError(err), `${code}: branded`);
      assert.match(err.message, /^pg-resilient: /, code);
      assert.doesNotMatch(err.message, /undefined|\[object Object\]/, code);
    }
  });

  test("PGR_POOL_ENDED keeps pg-pool's text, with or without a detail", () => {
    assert.equal(poolEndedError().message, 'pg-resilient: Cannot use a pool after calling end on the pool');
    assert.equal(poolEndedError('it was ended while connecting').message, 'pg-resilient: Cannot use a pool after calling end on the pool (it was ended while connecting)');
  });

  test('deadlineError: in flight, or with what was waited out', () => {
    const inFlight = deadlineError(elapsed, undefined, true);
    assert.equal((inFlight as { inFlight?: boolean }).inFlight, true);
    assert.match(inFlight.message, /after 1234 ms with the statement in flight/);
    assert.match(deadlineError(elapsed, cause).message, /after 1234 ms; last error: connect ECONNREFUSED/);
    assert.equal(deadlineError(elapsed, cause).cause, cause);
  });

  test('an InvalidOptionError keeps its cause out of enumeration (a parsed secret stays out of logs)', () => {
    const err = invalidOption('connectionString', 'is not a valid URL', cause);
    assert.ok(err instanceof TypeError);
    assert.equal(err.cause, cause);
    assert.equal(Object.keys(err).includes('cause'), false);
  });
});
