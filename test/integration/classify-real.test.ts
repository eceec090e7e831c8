import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { classify, retrySafety, type FailureCategory } from '../../src/index.ts';
import { captureRealErrorsDetailed, checkAgainstExpected, type CaptureReport } from '../helpers/real-errors.ts';

type Row = readonly [FailureCategory, usable: boolean, effect: 'none' | 'unknown', topologyChanging: boolean, transient: boolean];

const SHUTDOWN: Row = ['server-shutdown', false, 'unknown', true, true];
const LOST: Row = ['connection-lost', false, 'unknown', true, true];
const CANNOT_CONNECT: Row = ['cannot-connect-now', false, 'none', true, true];
const CONNECT_FAILED: Row = ['connect-failed', false, 'none', true, true];

/**
 * The classifier's answer for every failure a real server, pg and real sockets produced in this
 * run (test/helpers/real-errors.ts makes them; nothing here is hand-made).
 */
const EXPECTED: Record<string, Row> = {
  '57P01-terminate-backend-idle': SHUTDOWN,
  '57P01-terminate-backend-query': SHUTDOWN,
  '57P01-fast-shutdown-query': SHUTDOWN,
  '57P01-fast-shutdown-idle': SHUTDOWN,
  '57P01-immediate-shutdown-notice': SHUTDOWN,
  '57P02-crash-notice': SHUTDOWN,
  'immediate-shutdown-query': LOST,
  'crash-other-backend-idle': LOST,
  'backend-killed-query': LOST,
  'proxy-fin-query': LOST,
  'proxy-fin-idle': LOST,
  'proxy-upstream-down-connect': LOST,
  'ECONNRESET-query': LOST,
  'ECONNRESET-connect': LOST,
  'EPIPE': LOST,
  'connection-terminated-by-end': LOST,
  '57P03-recovery-mode': CANNOT_CONNECT,
  '57P03-not-yet-accepting': CANNOT_CONNECT,
  '57P03-shutting-down': CANNOT_CONNECT,
  '57P03-starting-up': CANNOT_CONNECT,
  '57P03-not-accepting-hot-standby-off': CANNOT_CONNECT,
  '57P05-idle-session-timeout': ['session-timeout', false, 'none', false, true],
  '25P03-idle-in-transaction-timeout': ['session-timeout', false, 'none', false, true],
  '25006-read-only-transaction': ['read-only', false, 'none', true, true],
  '25006-hot-standby': ['read-only', false, 'none', true, true],
  '40001-concurrent-update': ['serialization', true, 'none', false, true],
  '40001-serializable-commit': ['serialization', true, 'none', false, true],
  '40P01-deadlock': ['serialization', true, 'none', false, true],
  '53300-too-many-clients': ['too-many-connections', false, 'none', false, true],
  '53300-reserved-slots': ['too-many-connections', false, 'none', false, true],
  '57014-statement-timeout': ['canceled', true, 'none', false, false],
  '57014-user-cancel': ['canceled', true, 'none', false, false],
  '28P01-bad-password': ['auth', false, 'none', false, false],
  '3D000-no-such-database': ['configuration', false, 'none', false, false],
  '42601-syntax-error': ['statement', true, 'none', false, false],
  '42P01-undefined-table': ['statement', true, 'none', false, false],
  '23505-unique-violation': ['statement', true, 'none', false, false],
  '08P01-bind-parameter-mismatch': ['client-misuse', true, 'none', false, false],
  'ECONNREFUSED': CONNECT_FAILED,
  'ECONNREFUSED-server-stopped': CONNECT_FAILED,
  'ENOTFOUND': CONNECT_FAILED,
  'client-connection-timeout': CONNECT_FAILED,
  'pool-connection-timeout': CONNECT_FAILED,
  'query-read-timeout': ['query-timeout', false, 'unknown', true, true],
  'query-read-timeout-blackhole': ['query-timeout', false, 'unknown', true, true],
  'not-queryable-after-error': ['connection-lost', false, 'none', true, true],
  'not-queryable-after-end': ['connection-lost', false, 'none', false, true],
  'pool-timeout-exceeded': ['pool', true, 'none', false, true],
  'pool-ended': ['pool-ended', true, 'none', false, false],
  'client-reused': ['client-misuse', true, 'none', false, false],
  'ssl-not-supported': ['configuration', false, 'none', false, false],
  'tls-self-signed': ['configuration', false, 'none', false, false],
};

describe('classify() on errors captured from a real PostgreSQL, pg and real sockets', () => {
  let report: CaptureReport;
  before(async () => {
    report = await captureRealErrorsDetailed();
    console.log(`# captured ${report.errors.size} real errors in ${Math.round(report.durationMs)} ms; not reproducible here: ${[...report.failures.keys()].join(', ') || 'none'}`);
  });

  test('every expected case was captured and is what its name says', () => {
    const missing = Object.keys(EXPECTED).filter((k) => !report.errors.has(k));
    // A few cases depend on timing; allow at most two to be missing, never silently.
    assert.ok(missing.length <= 2, `cases not captured: ${missing.join(', ')} (${[...report.failures].map(([k, v]) => `${k}: ${v}`).join('; ')})`);
    for (const [name, entry] of report.errors) {
      assert.equal(checkAgainstExpected(name, entry), undefined, name);
    }
  });

  for (const [name, row] of Object.entries(EXPECTED)) {
    test(`${name} → ${row[0]}`, (t) => {
      const entry = report.errors.get(name);
      if (entry === undefined) {
        t.skip(`not captured in this run: ${report.failures.get(name) ?? 'no reason given'}`);
        return;
      }
      const c = classify(entry.error);
      assert.deepEqual([c.category, c.connectionUsable, c.effect, c.topologyChanging, c.transient], [...row], name);
      // Connect-phase failures never ran anything: the retry rule must allow them.
      if (entry.phase === 'connect' && c.transient) {
        assert.equal(retrySafety({ classification: c, phase: 'connect', idempotent: false }).retry, true);
      }
    });
  }

  test('53300 and 57P03 are "busy" (retried, never the breaker); no other captured error is', () => {
    for (const [name, entry] of report.errors) {
      const c = classify(entry.error);
      const busy = name.startsWith('53300-') || name.startsWith('57P03-');
      assert.equal(c.serverBusy, busy, name);
      if (busy) assert.deepEqual([c.transient, c.countsForBreaker], [true, false], name);
    }
  });

  test('no captured error carries a server password', () => {
    for (const [name, entry] of report.errors) {
      const text = JSON.stringify(entry.error, Object.getOwnPropertyNames(entry.error ?? {})) + String((entry.error as Error)?.stack);
      for (const pw of report.passwords) assert.ok(!text.includes(pw), `${name} leaks a password`);
    }
  });
});
