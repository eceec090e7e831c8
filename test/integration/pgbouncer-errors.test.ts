import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { Pool, classify, isPgResilientError, retrySafety, type FailureCategory, type FailurePhase } from '../../src/index.ts';
import { startPgBouncer, type PgBouncer } from '../helpers/pgbouncer.ts';
import { startPgServer, type PgServer } from '../helpers/pg-server.ts';
import { capturePgBouncerErrors, checkPgBouncerCapture, type PgBouncerCaptureReport, type Stage } from '../helpers/real-errors-pgbouncer.ts';
import { summarizeError } from '../helpers/real-errors.ts';

type Row = readonly [
  FailureCategory,
  usable: boolean,
  effect: 'none' | 'unknown',
  topologyChanging: boolean,
  transient: boolean,
  serverBusy: boolean,
  countsForBreaker: boolean,
  retryPlainWrite: boolean,
];

// The classifier's answer for each error the real PgBouncer 1.18 produced in this run, and
// whether a plain (non-idempotent) write that met it is retried.
const LOST: Row = ['connection-lost', false, 'unknown', true, true, false, true, false];
const UNREACHABLE: Row = ['connect-failed', false, 'none', true, true, false, true, true];
const EXPECTED: Record<string, Row> = {
  'pgb-57P01-terminate-query': ['server-shutdown', false, 'unknown', true, true, false, true, false],
  'pgb-server-conn-crashed-after-57P01': LOST,
  'pgb-server-conn-crashed-backend-killed': LOST,
  'pgb-server-conn-crashed-network-reset': LOST,
  'pgb-database-removed-query': LOST,
  // Between statements: nothing was in flight, so the next statement is simply sent elsewhere.
  'pgb-database-removed-idle': ['connection-lost', false, 'unknown', true, true, false, true, true],
  'pgb-server-login-retry': UNREACHABLE,
  'pgb-client-login-timeout-server-down': UNREACHABLE,
  'pgb-query-wait-timeout-server-down': ['pooler-wait-timeout', false, 'none', false, true, true, false, true],
  'pgb-query-wait-timeout-paused': ['pooler-wait-timeout', false, 'none', false, true, true, false, true],
  'pgb-max-client-conn': ['too-many-connections', false, 'none', false, true, true, false, true],
  'pgb-relayed-57P03-shutting-down': ['cannot-connect-now', false, 'none', true, true, true, false, true],
  'pgb-relayed-28P01-bad-password': ['auth', false, 'none', false, false, false, false, false],
  'pgb-26000-prepared-missing': ['prepared-statement', true, 'none', false, true, false, false, true],
  'pgb-42P05-prepared-exists': ['prepared-statement', true, 'none', false, true, false, false, true],
};

// The phase retrySafety is asked about: what the pool knows when the error comes back.
const PHASE: Record<Stage, FailurePhase> = { 'before-send': 'connect', rejected: 'query', 'in-flight': 'query' };

describe('classify() on errors captured from a real PgBouncer 1.18 in front of a real PostgreSQL', () => {
  let report: PgBouncerCaptureReport;
  before(async () => {
    report = await capturePgBouncerErrors();
    console.log(`# captured ${report.errors.size} real PgBouncer errors in ${report.durationMs} ms; not reproduced: ${[...report.failures].map(([k, v]) => `${k} (${v})`).join(', ') || 'none'}`);
    for (const [name, e] of report.errors) {
      const c = classify(e.error);
      const m = (e.error as { message?: string }).message;
      console.log(`#   ${name}: ${(e.error as { code?: string }).code} "${m}" · ${e.phase}/${e.stage} · socket ${e.socketSurvived ? 'survived' : 'closed'} → ${c.category}, retry write: ${retrySafety({ classification: c, phase: PHASE[e.stage], idempotent: false }).retry}`);
    }
  });

  test('every case was captured, and is what its name says', () => {
    // PgBouncer's answers are deterministic here: every case must be there.
    assert.deepEqual([...report.failures.keys()], [], [...report.failures].map(([k, v]) => `${k}: ${v}`).join('; '));
    for (const [name, entry] of report.errors) assert.equal(checkPgBouncerCapture(name, entry), undefined, name);
    assert.deepEqual(Object.keys(EXPECTED).sort(), [...report.errors.keys()].sort());
  });

  test("PgBouncer's own errors are FATAL 08P01 and close the client's socket; 26000/42P05 leave it usable", () => {
    for (const [name, entry] of report.errors) {
      const e = entry.error as { code?: string; severity?: string };
      if (e.code === '08P01') assert.equal(e.severity, 'FATAL', name);
      assert.equal(entry.socketSurvived, EXPECTED[name]![1], `${name}: socket ${entry.socketSurvived ? 'survived' : 'closed'}`);
    }
  });

  for (const [name, row] of Object.entries(EXPECTED)) {
    test(`${name} → ${row[0]}, plain write ${row[7] ? 'retried' : 'not retried'}`, () => {
      const entry = report.errors.get(name);
      assert.ok(entry !== undefined, `${name} was not captured: ${report.failures.get(name)}`);
      const c = classify(entry.error);
      assert.deepEqual(
        [c.category, c.connectionUsable, c.effect, c.topologyChanging, c.transient, c.serverBusy, c.countsForBreaker],
        row.slice(0, 7),
        name,
      );
      const decision = retrySafety({ classification: c, phase: PHASE[entry.stage], idempotent: false });
      assert.equal(decision.retry, row[7], `${name}: ${decision.reason}`);
      // Whatever never reached a server is retried even as a plain write.
      if (entry.stage !== 'in-flight' && c.transient) assert.equal(decision.retry, true, name);
    });
  }

  test('no captured error carries a password', () => {
    for (const [name, entry] of report.errors) {
      const text = JSON.stringify(summarizeError(entry.error)) + String((entry.error as Error)?.stack);
      for (const pw of report.passwords) assert.ok(!text.includes(pw), `${name} leaks a password`);
    }
  });
});

describe('through a real PgBouncer (transaction pooling): behaviour that is not an error', () => {
  let server: PgServer;
  let bouncer: PgBouncer;
  before(async () => {
    server = await startPgServer();
    bouncer = await startPgBouncer(server, { defaultPoolSize: 2, serverLoginRetrySec: 1, queryWaitTimeoutSec: 3 });
    await server.admin('CREATE TABLE pgr_writes (id int PRIMARY KEY)');
  });
  after(async () => {
    await bouncer?.destroy();
    await server?.destroy();
  });

  const connected = async (): Promise<pg.Client> => {
    const c = new pg.Client(bouncer.config);
    c.on('error', () => undefined);
    await c.connect();
    return c;
  };

  test('a query sent during a PAUSE waits and completes after RESUME; PgBouncer still answers an SSLRequest meanwhile', async () => {
    const c = await connected();
    try {
      await c.query('SELECT 1');
      await bouncer.pause();
      const t0 = Date.now();
      const q = c.query('SELECT 42 AS n');
      await sleep(1500);
      // pg-resilient's liveness probe for a long statement is an SSLRequest: a paused pooler
      // must not look dead, or a PAUSE would be taken for a partition.
      const answer = await new Promise<string>((resolve) => {
        const s = net.connect({ host: bouncer.host, port: bouncer.port }, () => s.write(Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f])));
        s.once('data', (d: Buffer) => { s.destroy(); resolve(String.fromCharCode(d[0]!)); });
        s.once('error', () => resolve('error'));
      });
      await bouncer.resume();
      const r = await q;
      const waited = Date.now() - t0;
      console.log(`# PAUSE 1.5 s: the query waited ${waited} ms and answered ${r.rows[0].n}; SSLRequest during the PAUSE answered '${answer}'`);
      assert.equal(r.rows[0].n, 42);
      assert.ok(waited >= 1400, `waited ${waited} ms`);
      assert.equal(answer, 'N');
    } finally {
      await bouncer.resume().catch(() => undefined);
      await c.end();
    }
  });

  test("a server connection terminated while the client is idle is invisible to the client; RECONNECT too", async () => {
    const c = await connected();
    try {
      await c.query('SELECT 1');
      const killed = await server.terminateBackends({ applicationName: '' });
      await sleep(100);
      const after1 = await c.query('SELECT 1 AS ok');
      await bouncer.reconnect();
      const after2 = await c.query('SELECT 2 AS ok');
      console.log(`# ${killed} idle server connection(s) terminated, then RECONNECT: the client's next queries answered ${after1.rows[0].ok}, ${after2.rows[0].ok}`);
      assert.ok(killed >= 1);
      assert.equal(after2.rows[0].ok, 2);
    } finally {
      await c.end();
    }
  });

  test('named statements chosen by the application can silently run another client\'s text (why send-unnamed)', async () => {
    const b = await startPgBouncer(server, { defaultPoolSize: 2 });
    const clients = await Promise.all(Array.from({ length: 4 }, async () => {
      const c = new pg.Client(b.config);
      c.on('error', () => undefined);
      await c.connect();
      return c;
    }));
    const [a, bee, holder1, holder2] = clients as [pg.Client, pg.Client, pg.Client, pg.Client];
    try {
      // PgBouncer hands out the most recently released server connection first. Steer A's
      // statement onto one server connection and B's onto the other, then B's Bind onto A's.
      await holder1.query('BEGIN');
      await a.query({ name: 'pgr_same', text: 'SELECT 1 AS a' });
      await holder2.query('BEGIN');
      await holder1.query('COMMIT');
      await bee.query({ name: 'pgr_same', text: 'SELECT 2 AS b' });
      await holder2.query('COMMIT');
      const r = await bee.query({ name: 'pgr_same', text: 'SELECT 2 AS b' });
      console.log(`# B asked for "SELECT 2 AS b" by name and got ${JSON.stringify(r.rows)}`);
      assert.deepEqual(r.rows, [{ a: 1 }], 'PgBouncer 1.18 in transaction mode runs the other client\'s statement');
    } finally {
      await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
      await b.destroy();
    }
  });

  test('the server down behind PgBouncer: pg-resilient retries the writes PgBouncer refused and runs each once; the raw pg.Pool control fails them', async () => {
    const pool = new Pool({ ...bouncer.config, max: 4, retry: { maxElapsedMs: 15_000 } });
    const raw = new pg.Pool({ ...bouncer.config, max: 4 });
    raw.on('error', () => undefined);
    pool.on('error', () => undefined);
    const retried = new Map<string, number>();
    pool.on('retry', (e) => retried.set(`${e.category}:${e.reason}`, (retried.get(`${e.category}:${e.reason}`) ?? 0) + 1));
    let id = 0;
    const outcomes = { ours: { ok: 0, errors: new Map<string, number>() }, raw: { ok: 0, errors: new Map<string, number>() } };
    const write = async (p: Pool | pg.Pool, o: typeof outcomes.ours): Promise<void> => {
      const text = 'INSERT INTO pgr_writes VALUES ($1)';
      const values = [(id += 1)];
      try {
        await (p === raw ? raw.query(text, values) : pool.query(text, values));
        o.ok += 1;
      } catch (e) {
        const key = isPgResilientError(e) ? e.code : ((e as Error).message ?? String(e));
        o.errors.set(key, (o.errors.get(key) ?? 0) + 1);
      }
    };
    const probe = new pg.Client(bouncer.config);
    probe.on('error', () => undefined);
    try {
      // Four open connections to PgBouncer in each pool, idle when the server goes away, so the
      // writes below are sent on them: PgBouncer refuses them as statements, not as connects.
      await Promise.all([...Array.from({ length: 4 }, () => pool.query('SELECT pg_sleep(0.05)')), ...Array.from({ length: 4 }, () => raw.query('SELECT pg_sleep(0.05)'))]);
      await probe.connect();
      await server.stop('fast');
      // A first query makes PgBouncer try a server login, which fails: from then on it fails
      // other clients' statements fast ("server login has been failing") for server_login_retry.
      void probe.query('SELECT 1').catch(() => undefined);
      await sleep(200);
      let stop = false;
      const loops = [pool, pool, pool, pool, raw, raw, raw, raw].map(async (p) => {
        const o = p === raw ? outcomes.raw : outcomes.ours;
        while (!stop) {
          await write(p, o);
          await sleep(20);
        }
      });
      await sleep(1500);
      await server.start();
      await sleep(3000); // server_login_retry (1 s) and the retries' backoff
      stop = true;
      await Promise.all(loops);
      const rows = Number((await server.admin<{ n: string }>('SELECT count(*) AS n FROM pgr_writes'))[0]!.n);
      console.log(`# server down 1.5 s behind PgBouncer: pg-resilient ${outcomes.ours.ok} writes ok, errors ${JSON.stringify(Object.fromEntries(outcomes.ours.errors))}, retries ${JSON.stringify(Object.fromEntries(retried))}; raw pg.Pool ${outcomes.raw.ok} ok, errors ${JSON.stringify(Object.fromEntries(outcomes.raw.errors))}; rows ${rows}`);
      assert.deepEqual(Object.fromEntries(outcomes.ours.errors), {}, 'no error reaches the application');
      assert.ok((retried.get('connect-failed:rejected-without-effect') ?? 0) > 0, 'writes PgBouncer refused as statements were retried');
      assert.ok(outcomes.raw.errors.size > 0, 'the control sees the outage');
      // Every write of ours ran exactly once (a duplicate would have failed on the primary key),
      // and every failed write of the control was refused before it reached the server.
      assert.equal(rows, outcomes.ours.ok + outcomes.raw.ok);
    } finally {
      await probe.end().catch(() => undefined);
      await pool.end();
      await raw.end().catch(() => undefined);
    }
  });
});
