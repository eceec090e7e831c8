// Produces REAL error objects from a real PgBouncer (Debian's 1.18) in front of a real
// PostgreSQL, for the classifier's table tests, the way real-errors.ts does for PostgreSQL and
// sockets. PgBouncer sends every error of its own as FATAL 08P01 and then closes the client's
// socket, so each case also records where the statement was when it failed and whether the
// client's socket to PgBouncer survived.
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import type { ClientConfig } from 'pg';
import { startFaultProxy, type FaultProxy } from './fault-proxy.ts';
import { startPgBouncer, type PgBouncer, type StartPgBouncerOptions } from './pgbouncer.ts';
import { startPgServer, type PgServer } from './pg-server.ts';
import type { ErrorPhase } from './real-errors.ts';

/**
 * Where the statement was when the failure came back:
 * - before-send: never sent (the connect to PgBouncer failed);
 * - rejected: sent to PgBouncer (or the server), refused before it ran;
 * - in-flight: running on the server, which may have done some or all of it.
 */
export type Stage = 'before-send' | 'rejected' | 'in-flight';

export interface CapturedPgBouncerError {
  error: unknown;
  phase: ErrorPhase;
  stage: Stage;
  /** Did the same pg.Client run `SELECT 1` through PgBouncer after the failure? */
  socketSurvived: boolean;
  note: string;
}

interface Expected {
  code: string;
  message: RegExp;
  phase: ErrorPhase;
  stage: Stage;
}

/** What each case produces with PgBouncer 1.18 and PostgreSQL 15 (checked on every capture). */
export const EXPECTED_PGBOUNCER_ERRORS: Record<string, Expected> = {
  'pgb-57P01-terminate-query': { code: '57P01', message: /^terminating connection due to administrator command$/, phase: 'query', stage: 'in-flight' },
  'pgb-server-conn-crashed-after-57P01': { code: '08P01', message: /^server conn crashed\?$/, phase: 'idle', stage: 'in-flight' },
  'pgb-server-conn-crashed-backend-killed': { code: '08P01', message: /^server conn crashed\?$/, phase: 'query', stage: 'in-flight' },
  'pgb-server-conn-crashed-network-reset': { code: '08P01', message: /^server conn crashed\?$/, phase: 'query', stage: 'in-flight' },
  'pgb-server-login-retry': { code: '08P01', message: /^server login has been failing, try again later \(server_login_retry\)$/, phase: 'query', stage: 'rejected' },
  'pgb-query-wait-timeout-server-down': { code: '08P01', message: /^query_wait_timeout$/, phase: 'query', stage: 'rejected' },
  'pgb-query-wait-timeout-paused': { code: '08P01', message: /^query_wait_timeout$/, phase: 'query', stage: 'rejected' },
  'pgb-client-login-timeout-server-down': { code: '08P01', message: /^client_login_timeout \(server down\)$/, phase: 'connect', stage: 'before-send' },
  'pgb-relayed-57P03-shutting-down': { code: '08P01', message: /^the database system is shutting down$/, phase: 'connect', stage: 'before-send' },
  'pgb-relayed-28P01-bad-password': { code: '08P01', message: /^password authentication failed for user "pgr_wrongpw"$/, phase: 'connect', stage: 'before-send' },
  'pgb-max-client-conn': { code: '08P01', message: /^no more connections allowed \(max_client_conn\)$/, phase: 'connect', stage: 'before-send' },
  'pgb-database-removed-query': { code: '08P01', message: /^database removed$/, phase: 'query', stage: 'in-flight' },
  'pgb-database-removed-idle': { code: '08P01', message: /^database removed$/, phase: 'idle', stage: 'before-send' },
  'pgb-26000-prepared-missing': { code: '26000', message: /^prepared statement "pgr_s" does not exist$/, phase: 'query', stage: 'rejected' },
  'pgb-42P05-prepared-exists': { code: '42P05', message: /^prepared statement "pgr_s" already exists$/, phase: 'query', stage: 'rejected' },
};

export interface PgBouncerCaptureReport {
  errors: Map<string, CapturedPgBouncerError>;
  failures: Map<string, string>;
  durationMs: number;
  passwords: string[];
}

function check(name: string, c: CapturedPgBouncerError): string | undefined {
  const exp = EXPECTED_PGBOUNCER_ERRORS[name];
  if (exp === undefined) return `no expectation for ${name}`;
  const e = c.error as { code?: unknown; message?: unknown } | null;
  const msg = typeof e?.message === 'string' ? e.message : String(c.error);
  if (!exp.message.test(msg)) return `message ${JSON.stringify(msg)} does not match ${exp.message}`;
  if (e?.code !== exp.code) return `code ${String(e?.code)} != ${exp.code}`;
  if (exp.phase !== c.phase) return `phase ${c.phase} != ${exp.phase}`;
  return undefined;
}

export function checkPgBouncerCapture(name: string, c: CapturedPgBouncerError): string | undefined {
  return check(name, c);
}

async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: nothing within ${ms} ms`)), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

async function rejection(p: Promise<unknown>, ms: number, what: string): Promise<unknown> {
  const r = await within(p.then(() => ({ ok: true as const }), (e: unknown) => ({ ok: false as const, e })), ms, what);
  if (r.ok) throw new Error(`${what}: expected a failure but it succeeded`);
  return r.e;
}

/** Captures every case in EXPECTED_PGBOUNCER_ERRORS; a case that cannot be reproduced is reported, not faked. */
export async function capturePgBouncerErrors(log: (m: string) => void = () => {}): Promise<PgBouncerCaptureReport> {
  const started = Date.now();
  const errors = new Map<string, CapturedPgBouncerError>();
  const failures = new Map<string, string>();
  const clients = new Set<pg.Client>();
  const bouncers: PgBouncer[] = [];
  const proxies: FaultProxy[] = [];
  let server: PgServer | undefined;

  const client = (config: ClientConfig): { c: pg.Client; events: unknown[] } => {
    const c = new pg.Client({ ...config, connectionTimeoutMillis: 10_000 });
    const events: unknown[] = [];
    c.on('error', (e) => events.push(e));
    clients.add(c);
    return { c, events };
  };
  const connected = async (config: ClientConfig): Promise<{ c: pg.Client; events: unknown[] }> => {
    const w = client(config);
    await within(w.c.connect(), 10_000, 'connect');
    return w;
  };
  const survives = async (c: pg.Client): Promise<boolean> => {
    await sleep(50); // PgBouncer's FATAL is followed by its close: let pg see it
    return within(c.query('SELECT 1'), 3000, 'survival probe').then(() => true, () => false);
  };
  const record = (name: string, c: Omit<CapturedPgBouncerError, 'stage'>): void => {
    const full = { ...c, stage: EXPECTED_PGBOUNCER_ERRORS[name]?.stage ?? 'in-flight' };
    const bad = check(name, full);
    if (bad !== undefined) failures.set(name, `captured a different failure: ${bad}`);
    else errors.set(name, full);
  };
  const attempt = async (names: string[], ms: number, fn: () => Promise<void>): Promise<void> => {
    const t0 = Date.now();
    try {
      await within(fn(), ms, names.join(','));
    } catch (e) {
      for (const n of names) if (!errors.has(n) && !failures.has(n)) failures.set(n, `error while reproducing: ${(e as Error).message}`);
    }
    for (const n of names) if (!errors.has(n) && !failures.has(n)) failures.set(n, 'not reproduced');
    log(`  ${names.join(', ')}: ${Date.now() - t0} ms`);
  };
  const bouncer = async (upstream: Parameters<typeof startPgBouncer>[0], o: StartPgBouncerOptions): Promise<PgBouncer> => {
    const b = await startPgBouncer(upstream, o);
    bouncers.push(b);
    return b;
  };
  // pg_stat_activity pid of the server connection running the statement marked `marker`.
  const serverPidOf = async (s: PgServer, marker: string): Promise<number> => {
    for (let i = 0; i < 100; i++) {
      const rows = await s.admin<{ pid: number }>('SELECT pid FROM pg_stat_activity WHERE query LIKE $1 AND pid <> pg_backend_pid()', [`%${marker}%`]);
      if (rows[0] !== undefined) return rows[0].pid;
      await sleep(20);
    }
    throw new Error(`no backend runs ${marker}`);
  };

  try {
    server = await startPgServer();
    const s = server;
    // Short timeouts so the waits end in a second, not PgBouncer's default two minutes.
    const main = await bouncer(s, { defaultPoolSize: 2, queryWaitTimeoutSec: 1, serverLoginRetrySec: 1 });

    await attempt(['pgb-42P05-prepared-exists', 'pgb-26000-prepared-missing'], 10_000, async () => {
      // One server connection: a second client's Parse of the same name lands where the first
      // client's statement lives (42P05); after RECONNECT the first client's Bind lands on a new
      // server connection that never saw its Parse (26000).
      const b = await bouncer(s, { defaultPoolSize: 1 });
      const one = await connected(b.config);
      const two = await connected(b.config);
      const named = { name: 'pgr_s', text: 'SELECT 1 AS one' };
      await one.c.query(named);
      const e42 = await rejection(two.c.query(named), 5000, '42P05');
      record('pgb-42P05-prepared-exists', { error: e42, phase: 'query', socketSurvived: await survives(two.c), note: 'second client, same statement name, same server connection' });
      await b.reconnect();
      const e26 = await rejection(one.c.query(named), 5000, '26000');
      record('pgb-26000-prepared-missing', { error: e26, phase: 'query', socketSurvived: await survives(one.c), note: 'Bind after RECONNECT: the new server connection never saw the Parse' });
    });

    await attempt(['pgb-57P01-terminate-query', 'pgb-server-conn-crashed-after-57P01'], 10_000, async () => {
      const w = await connected(main.config);
      const q = rejection(w.c.query('SELECT pg_sleep(5) /*pgr_57p01*/'), 5000, '57P01');
      await s.terminateBackends({ pids: [await serverPidOf(s, 'pgr_57p01')] });
      const e = await q;
      await within((async () => { while (w.events.length === 0) await sleep(10); })(), 3000, 'event after 57P01');
      const socketSurvived = await survives(w.c);
      record('pgb-57P01-terminate-query', { error: e, phase: 'query', socketSurvived, note: 'pg_terminate_backend of the server connection mid-statement; PgBouncer relays the FATAL' });
      record('pgb-server-conn-crashed-after-57P01', { error: w.events[0], phase: 'idle', socketSurvived, note: "the 'error' event right after the relayed 57P01" });
    });

    await attempt(['pgb-max-client-conn'], 10_000, async () => {
      const b = await bouncer(s, { maxClientConn: 3 });
      for (let i = 0; i < 6 && !errors.has('pgb-max-client-conn'); i++) {
        const w = client(b.config);
        try {
          await w.c.connect();
        } catch (e) {
          record('pgb-max-client-conn', { error: e, phase: 'connect', socketSurvived: false, note: `client ${i + 1} with max_client_conn = 3` });
        }
      }
    });

    await attempt(['pgb-query-wait-timeout-paused'], 10_000, async () => {
      const w = await connected(main.config);
      await main.pause();
      try {
        const e = await rejection(w.c.query('SELECT 1'), 5000, 'paused');
        record('pgb-query-wait-timeout-paused', { error: e, phase: 'query', socketSurvived: await survives(w.c), note: 'PAUSE outlasting query_wait_timeout (1 s)' });
      } finally {
        await main.resume();
      }
    });

    await attempt(['pgb-database-removed-query', 'pgb-database-removed-idle'], 10_000, async () => {
      const busy = await connected(main.config);
      const idle = await connected(main.config);
      await idle.c.query('SELECT 1');
      const q = rejection(busy.c.query('SELECT pg_sleep(5) /*pgr_kill*/'), 5000, 'KILL');
      await serverPidOf(s, 'pgr_kill');
      await main.kill();
      try {
        record('pgb-database-removed-query', { error: await q, phase: 'query', socketSurvived: await survives(busy.c), note: 'admin KILL of the database mid-statement' });
        await within((async () => { while (idle.events.length === 0) await sleep(10); })(), 3000, 'idle KILL');
        record('pgb-database-removed-idle', { error: idle.events[0], phase: 'idle', socketSurvived: await survives(idle.c), note: 'admin KILL with the client idle between transactions' });
      } finally {
        await main.resume(s.database); // KILL pauses the database itself: a plain RESUME does not undo it
      }
    });

    await attempt(['pgb-server-conn-crashed-network-reset'], 10_000, async () => {
      const proxy = await startFaultProxy(s);
      proxies.push(proxy);
      const b = await bouncer({ ...s.config, host: proxy.host, port: proxy.port, user: s.user, password: s.password, database: s.database }, {});
      const w = await connected(b.config);
      const q = rejection(w.c.query('SELECT pg_sleep(5) /*pgr_net*/'), 5000, 'network reset');
      await serverPidOf(s, 'pgr_net');
      proxy.resetAll();
      record('pgb-server-conn-crashed-network-reset', { error: await q, phase: 'query', socketSurvived: await survives(w.c), note: 'TCP reset between PgBouncer and the server mid-statement' });
    });

    await attempt(['pgb-relayed-28P01-bad-password'], 10_000, async () => {
      // PgBouncer authenticates the client with its auth file, then logs in to the server with
      // the same password; the first login of a pool relays the server's refusal.
      await s.admin("CREATE ROLE pgr_wrongpw LOGIN PASSWORD 'pgr-right-pw'");
      const b = await bouncer({ host: s.host, port: s.port, user: 'pgr_wrongpw', password: 'pgr-wrong-pw', database: s.database }, {});
      const e = await rejection(client({ ...b.config, user: 'pgr_wrongpw', password: 'pgr-wrong-pw' }).c.connect(), 5000, 'relayed 28P01');
      record('pgb-relayed-28P01-bad-password', { error: e, phase: 'connect', socketSurvived: false, note: "the server refused PgBouncer's login (its first for this pool)" });
    });

    // Destructive cases last: a backend crash restarts the server; then it is stopped.
    await attempt(['pgb-server-conn-crashed-backend-killed'], 15_000, async () => {
      const w = await connected(main.config);
      const q = rejection(w.c.query('SELECT pg_sleep(5) /*pgr_crash*/'), 5000, 'backend killed');
      process.kill(await serverPidOf(s, 'pgr_crash'), 'SIGKILL');
      record('pgb-server-conn-crashed-backend-killed', { error: await q, phase: 'query', socketSurvived: await survives(w.c), note: 'kill -9 of the server backend mid-statement' });
      await s.start(); // waits until crash recovery is over
    });

    await attempt(['pgb-server-login-retry', 'pgb-query-wait-timeout-server-down'], 15_000, async () => {
      const waiter = await connected(main.config);
      const late = await connected(main.config);
      await s.stop('fast');
      await sleep(100);
      // The first query after the stop makes PgBouncer try a login, which is refused; it waits.
      const waiting = rejection(waiter.c.query('SELECT 1'), 5000, 'waiting through outage');
      await sleep(300);
      const e = await rejection(late.c.query('SELECT 1'), 5000, 'server_login_retry');
      record('pgb-server-login-retry', { error: e, phase: 'query', socketSurvived: await survives(late.c), note: 'a query while the last server login failed and no server connection is left' });
      record('pgb-query-wait-timeout-server-down', { error: await waiting, phase: 'query', socketSurvived: await survives(waiter.c), note: 'the query that was waiting for a server connection during the outage' });
    });

    await attempt(['pgb-client-login-timeout-server-down'], 10_000, async () => {
      const b = await bouncer(s, { settings: { client_login_timeout: 1 } });
      const e = await rejection(client(b.config).c.connect(), 5000, 'client_login_timeout');
      record('pgb-client-login-timeout-server-down', { error: e, phase: 'connect', socketSurvived: false, note: 'a fresh PgBouncer (no login to the server yet) while the server is down' });
    });

    await attempt(['pgb-relayed-57P03-shutting-down'], 15_000, async () => {
      await s.start();
      const holder = await connected(s.config);
      await s.stop('smart', { wait: false });
      try {
        await sleep(200);
        const b = await bouncer(s, {});
        const e = await rejection(client(b.config).c.connect(), 5000, 'relayed 57P03');
        record('pgb-relayed-57P03-shutting-down', { error: e, phase: 'connect', socketSurvived: false, note: "a fresh PgBouncer's first server login during a smart shutdown: PostgreSQL's message as 08P01" });
      } finally {
        await holder.c.end().catch(() => undefined);
        await s.stop('fast');
      }
    });
  } catch (e) {
    for (const n of Object.keys(EXPECTED_PGBOUNCER_ERRORS)) if (!errors.has(n) && !failures.has(n)) failures.set(n, `setup failed: ${(e as Error).message}`);
  } finally {
    for (const c of clients) (c as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy();
    await Promise.allSettled(bouncers.map((b) => b.destroy()));
    await Promise.allSettled(proxies.map((p) => p.close()));
    await server?.destroy();
  }
  for (const n of Object.keys(EXPECTED_PGBOUNCER_ERRORS)) if (!errors.has(n) && !failures.has(n)) failures.set(n, 'not attempted');
  const passwords = [...new Set([...bouncers.flatMap((b) => b.passwords), ...(server ? [server.password] : []), 'pgr-right-pw'])];
  return { errors, failures, durationMs: Date.now() - started, passwords };
}
