import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { classify, retrySafety, type Classification, type FailureCategory } from '../../src/index.ts';
import { namedStatementRecovery } from '../../src/classify/retry-safety.ts';
import { POOLER_MESSAGE_TABLE, RELAYED_LOGIN_MESSAGE_TABLE } from '../../src/classify/pooler.ts';
import { ERRNO_TABLE, PG_MESSAGE_TABLE, PGR_CODE_TABLE, SQLSTATE_CLASS_TABLE, SQLSTATE_TABLE } from '../../src/classify/tables.ts';
import { Breaker, type BreakerState } from '../../src/policy/breaker.ts';
import { WarpClock } from '../helpers/fake-clock.ts';

// Stand-ins shaped like pg's DatabaseError. The messages PgBouncer 1.18 really sends are tested
// on captured errors in test/integration/pgbouncer-errors.test.ts; these rows cover what 1.18
// cannot produce (other versions' messages, read in PgBouncer's source) and the rule itself.
const poolerError = (message: string, severity = 'FATAL'): Error => Object.assign(new Error(message), { code: '08P01', severity });
const pooler = (message: string, severity = 'FATAL'): Classification => classify(poolerError(message, severity));
const server = (code: string, severity = 'ERROR'): Classification => classify(Object.assign(new Error(code), { code, severity }));

type Row = readonly [FailureCategory, effect: 'none' | 'unknown', topologyChanging: boolean, transient: boolean, serverBusy: boolean];

describe('PgBouncer messages (FATAL 08P01) by version', () => {
  const rows: Array<[string, Row]> = [
    ['pgbouncer cannot connect to server', ['connect-failed', 'none', true, true, false]], // before 1.17
    ['server login has been failing, try again later (server_login_retry)', ['connect-failed', 'none', true, true, false]], // 1.17–1.23
    ['server login has been failing, cached error: connect failed (server_login_retry)', ['connect-failed', 'none', true, true, false]], // 1.24+
    ['server login has been failing, cached error: the database system is starting up (server_login_retry)', ['connect-failed', 'none', true, true, false]],
    // A cached refusal that waiting cannot fix keeps its own class: never retried.
    ['server login has been failing, cached error: password authentication failed for user "app" (server_login_retry)', ['auth', 'none', false, false, false]],
    ['server login has been failing, cached error: database "shop" does not exist (server_login_retry)', ['configuration', 'none', false, false, false]],
    ['server shutting down', ['cannot-connect-now', 'none', false, true, true]], // 1.22+ SHUTDOWN WAIT_FOR_SERVERS
    ['pooler is shutting down', ['cannot-connect-now', 'none', false, true, true]],
    ['client connections exceeded (max_db_client_connections)', ['too-many-connections', 'none', false, true, true]], // 1.23+
    ['client connections exceeded (max_user_client_connections)', ['too-many-connections', 'none', false, true, true]],
    ['query_timeout', ['query-timeout', 'unknown', false, false, false]],
    ['client_idle_timeout', ['session-timeout', 'none', false, true, false]],
    ['idle transaction timeout', ['session-timeout', 'none', false, true, false]],
    ['client_login_timeout', ['connect-failed', 'none', false, true, false]],
    ['suspend_timeout', ['connection-lost', 'unknown', false, true, false]],
    ['prepared statement did not exist', ['prepared-statement', 'none', false, false, false]], // 1.21+
    ['no such database: shop', ['configuration', 'none', false, false, false]],
    ['database "shop" is disabled', ['configuration', 'none', false, false, false]],
    ['unsupported startup parameter: statement_timeout', ['configuration', 'none', false, false, false]],
    ['no such user', ['auth', 'none', false, false, false]],
    ['password authentication failed', ['auth', 'none', false, false, false]],
    ['SASL authentication failed', ['auth', 'none', false, false, false]],
    ['server login failed: wrong password type', ['auth', 'none', false, false, false]],
    // PostgreSQL's refusals, relayed by PgBouncer to clients of a pool's first login.
    ['the database system is starting up', ['cannot-connect-now', 'none', true, true, true]],
    ['the database system is in recovery mode', ['cannot-connect-now', 'none', true, true, true]],
    ['sorry, too many clients already', ['too-many-connections', 'none', false, true, true]],
    ['remaining connection slots are reserved for non-replication superuser connections', ['too-many-connections', 'none', false, true, true]],
    ['database "shop" does not exist', ['configuration', 'none', false, false, false]],
    ['role "app" does not exist', ['auth', 'none', false, false, false]],
  ];
  for (const [message, row] of rows) {
    test(`"${message}" → ${row[0]}`, () => {
      const c = pooler(message);
      assert.deepEqual([c.category, c.effect, c.topologyChanging, c.transient, c.serverBusy], [...row]);
      assert.equal(c.source, 'pooler-message');
      assert.equal(c.connectionUsable, false, 'PgBouncer closes the socket after its FATAL');
    });
  }

  test('only FATAL 08P01 is read as a pooler message: an ERROR 08P01 is a protocol error of the client', () => {
    assert.equal(pooler('query_wait_timeout', 'ERROR').category, 'client-misuse');
    assert.equal(pooler('query_wait_timeout', 'ERROR').source, 'sqlstate');
  });

  test('an unknown FATAL 08P01 is any lost session: connection gone, effect unknown', () => {
    const c = pooler('something PgBouncer 2.0 might say');
    assert.deepEqual([c.category, c.effect, c.transient, c.source], ['connection-lost', 'unknown', true, 'sqlstate']);
  });
});

describe('serverBusy: "there, but cannot take you now"', () => {
  test('53300 and 57P03 are busy: retried, never counted for the breaker; only 57P03 is a topology signal', () => {
    const tooMany = server('53300', 'FATAL');
    const cannot = server('57P03', 'FATAL');
    assert.deepEqual([tooMany.serverBusy, tooMany.countsForBreaker, tooMany.transient, tooMany.topologyChanging], [true, false, true, false]);
    assert.deepEqual([cannot.serverBusy, cannot.countsForBreaker, cannot.transient, cannot.topologyChanging], [true, false, true, true]);
    assert.equal(retrySafety({ classification: tooMany, phase: 'connect', idempotent: false }).retry, true);
  });

  test('every busy row in every table: transient, nothing ran, not the breaker', () => {
    const all = [
      ...SQLSTATE_TABLE.values(), ...SQLSTATE_CLASS_TABLE.values(), ...ERRNO_TABLE.values(), ...PGR_CODE_TABLE.values(),
      ...PG_MESSAGE_TABLE.map(([, t]) => t), ...POOLER_MESSAGE_TABLE.map(([, t]) => t), ...RELAYED_LOGIN_MESSAGE_TABLE.map(([, t]) => t),
    ];
    const busy = all.filter((t) => t.serverBusy);
    assert.ok(busy.length >= 4);
    for (const t of busy) assert.deepEqual([t.transient, t.effect, t.countsForBreaker], [true, 'none', false], t.category);
  });

  test('the breaker never opens on 53300 or 57P03; ECONNREFUSED in the same numbers opens it (control)', async () => {
    const states: BreakerState[] = [];
    const breaker = new Breaker({ enabled: true, errorThresholdPercentage: 50, volumeThreshold: 4, resetTimeoutMs: 60_000, rollingWindowMs: 10_000 }, new WarpClock(), (s) => states.push(s));
    const err = (code: string): Error => Object.assign(new Error(code), { code, severity: 'FATAL' });
    for (let i = 0; i < 20; i += 1) await assert.rejects(breaker.run(() => Promise.reject(err(i % 2 === 0 ? '53300' : '57P03'))));
    for (let i = 0; i < 4; i += 1) await assert.rejects(breaker.run(() => Promise.reject(poolerError('no more connections allowed (max_client_conn)'))));
    assert.deepEqual(states, [], 'busy answers never open it');
    for (let i = 0; i < 4; i += 1) await assert.rejects(breaker.run(() => Promise.reject(Object.assign(new Error('refused'), { code: 'ECONNREFUSED' }))));
    assert.deepEqual(states, ['open']);
    breaker.shutdown();
  });
});

describe('namedStatementRecovery: 26000/42P05 behind a transaction pooler', () => {
  const missing = server('26000');
  const taken = server('42P05');
  const rows: Array<[string, Classification, boolean, boolean, ReturnType<typeof namedStatementRecovery>]> = [
    ['26000, application-chosen name', missing, false, false, 'send-unnamed'],
    ['42P05, application-chosen name', taken, false, false, 'send-unnamed'],
    ['26000, name derived from the text', missing, true, false, 'parse-again'],
    ['42P05, name derived from the text', taken, true, false, 'close-and-parse'],
    ['26000 inside a transaction block: the transaction is aborted', missing, true, true, undefined],
    ['not a named-statement failure', server('42601'), true, false, undefined],
  ];
  for (const [name, classification, nameFromText, inTransaction, expected] of rows) {
    test(name, () => assert.equal(namedStatementRecovery({ classification, nameFromText, inTransaction }), expected));
  }
  test('26000/42P05 ran nothing: retried like any rejection without effect (each new send is repaired), never by the breaker', () => {
    for (const c of [missing, taken]) {
      assert.deepEqual([c.category, c.connectionUsable, c.effect, c.transient, c.countsForBreaker], ['prepared-statement', true, 'none', true, false]);
      assert.equal(retrySafety({ classification: c, phase: 'query', idempotent: false }).retry, true);
    }
  });
});
