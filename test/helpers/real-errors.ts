// Produces REAL error objects (from real PostgreSQL servers, real sockets and the real `pg`
// library) for the classifier's table tests. Hand-made error objects drift from what pg actually
// throws; these are captured from the installed pg version every run.
import * as net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import type { ClientConfig, PoolConfig } from 'pg';
import { freePort, startPgServer } from './pg-server.ts';
import type { PgServer } from './pg-server.ts';
import { startFaultProxy } from './fault-proxy.ts';
import type { FaultProxy } from './fault-proxy.ts';

/**
 * Where the failure surfaced:
 * connect = connect() rejected; query/commit = that statement rejected; idle = an 'error' event
 * on a client with no query running; use = misuse of a client/pool that never reached the network;
 * notice = a NoticeResponse the server sent right before dropping the connection (not an error).
 */
export type ErrorPhase = 'connect' | 'query' | 'commit' | 'idle' | 'use' | 'notice';

export interface CapturedError {
  error: unknown;
  phase: ErrorPhase;
  note?: string;
}

export interface ExpectedError {
  code?: string;
  message: RegExp;
  phase: ErrorPhase;
}

// What each case is expected to produce with pg 8.x and PostgreSQL 15. The capture is checked
// against this so a case that silently captured the wrong failure is reported, not used.
export const EXPECTED_REAL_ERRORS: Record<string, ExpectedError> = {
  '57P01-terminate-backend-idle': { code: '57P01', message: /terminating connection due to administrator command/, phase: 'idle' },
  '57P01-terminate-backend-query': { code: '57P01', message: /terminating connection due to administrator command/, phase: 'query' },
  '57P01-fast-shutdown-query': { code: '57P01', message: /terminating connection due to administrator command/, phase: 'query' },
  '57P01-fast-shutdown-idle': { code: '57P01', message: /terminating connection due to administrator command/, phase: 'idle' },
  '57P01-immediate-shutdown-notice': { code: '57P01', message: /terminating connection due to immediate shutdown command/, phase: 'notice' },
  'immediate-shutdown-query': { message: /^Connection terminated unexpectedly$/, phase: 'query' },
  '57P02-crash-notice': { code: '57P02', message: /terminating connection because of crash of another server process/, phase: 'notice' },
  'crash-other-backend-idle': { message: /^Connection terminated unexpectedly$/, phase: 'idle' },
  'backend-killed-query': { message: /^Connection terminated unexpectedly$/, phase: 'query' },
  '57P03-recovery-mode': { code: '57P03', message: /the database system is in recovery mode/, phase: 'connect' },
  '57P03-not-yet-accepting': { code: '57P03', message: /the database system is not yet accepting connections/, phase: 'connect' },
  '57P03-shutting-down': { code: '57P03', message: /the database system is shutting down/, phase: 'connect' },
  '57P03-starting-up': { code: '57P03', message: /the database system is starting up/, phase: 'connect' },
  '57P03-not-accepting-hot-standby-off': { code: '57P03', message: /the database system is not accepting connections/, phase: 'connect' },
  '57P05-idle-session-timeout': { code: '57P05', message: /terminating connection due to idle-session timeout/, phase: 'idle' },
  '25P03-idle-in-transaction-timeout': { code: '25P03', message: /terminating connection due to idle-in-transaction timeout/, phase: 'idle' },
  '25006-read-only-transaction': { code: '25006', message: /cannot execute INSERT in a read-only transaction/, phase: 'query' },
  '25006-hot-standby': { code: '25006', message: /cannot execute INSERT in a read-only transaction/, phase: 'query' },
  '40001-concurrent-update': { code: '40001', message: /could not serialize access due to concurrent update/, phase: 'query' },
  '40001-serializable-commit': { code: '40001', message: /could not serialize access due to read\/write dependencies among transactions/, phase: 'commit' },
  '40P01-deadlock': { code: '40P01', message: /deadlock detected/, phase: 'query' },
  '53300-too-many-clients': { code: '53300', message: /sorry, too many clients already/, phase: 'connect' },
  '53300-reserved-slots': { code: '53300', message: /remaining connection slots are reserved/, phase: 'connect' },
  '57014-statement-timeout': { code: '57014', message: /canceling statement due to statement timeout/, phase: 'query' },
  '57014-user-cancel': { code: '57014', message: /canceling statement due to user request/, phase: 'query' },
  '28P01-bad-password': { code: '28P01', message: /password authentication failed for user "postgres"/, phase: 'connect' },
  '3D000-no-such-database': { code: '3D000', message: /database "pgr_no_such_db" does not exist/, phase: 'connect' },
  '42601-syntax-error': { code: '42601', message: /syntax error at or near/, phase: 'query' },
  '42P01-undefined-table': { code: '42P01', message: /relation "pgr_no_such_table" does not exist/, phase: 'query' },
  '23505-unique-violation': { code: '23505', message: /duplicate key value violates unique constraint/, phase: 'query' },
  '08P01-bind-parameter-mismatch': { code: '08P01', message: /bind message supplies 2 parameters, but prepared statement "" requires 1/, phase: 'query' },
  'ECONNREFUSED': { code: 'ECONNREFUSED', message: /connect ECONNREFUSED 127\.0\.0\.1:\d+/, phase: 'connect' },
  'ECONNREFUSED-server-stopped': { code: 'ECONNREFUSED', message: /connect ECONNREFUSED 127\.0\.0\.1:\d+/, phase: 'connect' },
  'ECONNRESET-query': { code: 'ECONNRESET', message: /read ECONNRESET/, phase: 'query' },
  'ECONNRESET-connect': { code: 'ECONNRESET', message: /ECONNRESET/, phase: 'connect' },
  'proxy-fin-query': { message: /^Connection terminated unexpectedly$/, phase: 'query' },
  'proxy-fin-idle': { message: /^Connection terminated unexpectedly$/, phase: 'idle' },
  'proxy-upstream-down-connect': { message: /^Connection terminated unexpectedly$/, phase: 'connect' },
  'client-connection-timeout': { message: /timeout expired|Connection terminated due to connection timeout/, phase: 'connect' },
  'pool-connection-timeout': { message: /^Connection terminated due to connection timeout$/, phase: 'connect' },
  'query-read-timeout': { message: /^Query read timeout$/, phase: 'query' },
  'query-read-timeout-blackhole': { message: /^Query read timeout$/, phase: 'query' },
  'not-queryable-after-error': { message: /^Client has encountered a connection error and is not queryable$/, phase: 'use' },
  'not-queryable-after-end': { message: /^Client was closed and is not queryable$/, phase: 'use' },
  'connection-terminated-by-end': { message: /^Connection terminated$/, phase: 'query' },
  'pool-timeout-exceeded': { message: /^timeout exceeded when trying to connect$/, phase: 'connect' },
  'pool-ended': { message: /^Cannot use a pool after calling end on the pool$/, phase: 'use' },
  'client-reused': { message: /^Client has already been connected\. You cannot reuse a client\.$/, phase: 'use' },
  'ENOTFOUND': { code: 'ENOTFOUND', message: /getaddrinfo ENOTFOUND no-such-host\.invalid/, phase: 'connect' },
  'EPIPE': { code: 'EPIPE', message: /EPIPE/, phase: 'query' },
  'ssl-not-supported': { message: /^The server does not support SSL connections$/, phase: 'connect' },
  'tls-self-signed': { code: 'DEPTH_ZERO_SELF_SIGNED_CERT', message: /self[- ]signed certificate/, phase: 'connect' },
};

export interface CaptureReport {
  errors: Map<string, CapturedError>;
  /** Cases that could not be reproduced in this run, with the reason. */
  failures: Map<string, string>;
  durationMs: number;
  /** The password of every server used, so tests can check it never appears in an error. */
  passwords: string[];
}

export interface CaptureOptions {
  /** Progress output (e.g. console.error); silent by default. */
  log?: (msg: string) => void;
}

export function summarizeError(e: unknown): Record<string, unknown> {
  if (typeof e !== 'object' || e === null) return { value: String(e) };
  // Notices are not Errors but carry the same fields (pg's NoticeMessage).
  const x = e as Record<string, unknown>;
  const out: Record<string, unknown> = { name: x['name'], message: x['message'] };
  for (const k of ['code', 'errno', 'syscall', 'severity', 'detail', 'hint', 'routine']) {
    if (x[k] !== undefined) out[k] = x[k];
  }
  if (x['cause'] instanceof Error) out['cause'] = summarizeError(x['cause']);
  return out;
}

/** Does the captured entry match what its case name promises? Returns a reason when not. */
export function checkAgainstExpected(name: string, entry: CapturedError): string | undefined {
  const exp = EXPECTED_REAL_ERRORS[name];
  if (exp === undefined) return `no expectation for ${name}`;
  const e = entry.error as { code?: unknown; message?: unknown } | null;
  const msg = typeof e?.message === 'string' ? e.message : String(entry.error);
  if (!exp.message.test(msg)) return `message ${JSON.stringify(msg)} does not match ${exp.message}`;
  if (exp.code !== undefined && e?.code !== exp.code) return `code ${String(e?.code)} != ${exp.code}`;
  if (exp.phase !== entry.phase) return `phase ${entry.phase} != ${exp.phase}`;
  return undefined;
}

class CaptureTimeout extends Error {}

async function waitUntil(cond: () => boolean, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (!cond() && Date.now() < deadline) await sleep(5);
  return cond();
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new CaptureTimeout(`${what}: no result within ${ms} ms`)), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

/** Resolves with the rejection of `p`; fails if `p` resolves or hangs. */
async function rejectionOf(p: Promise<unknown>, ms: number, what: string): Promise<unknown> {
  try {
    await withTimeout(p, ms, what);
  } catch (e) {
    if (e instanceof CaptureTimeout) throw e;
    return e;
  }
  throw new Error(`${what}: expected a failure but it succeeded`);
}

// The fields of pg-protocol's NoticeMessage used here (pg's types do not re-export it).
interface PgNotice {
  code?: string | undefined;
  message?: string | undefined;
  severity?: string | undefined;
}

// A pg Client that never crashes the process with an unhandled 'error' event and remembers the
// first error event and every notice it saw.
interface Watched {
  client: pg.Client;
  errorEvents: unknown[];
  notices: PgNotice[];
  nextErrorEvent(ms: number, what: string): Promise<unknown>;
}

export async function captureRealErrorsDetailed(opts: CaptureOptions = {}): Promise<CaptureReport> {
  const started = Date.now();
  const log = opts.log ?? (() => {});
  const errors = new Map<string, CapturedError>();
  const failures = new Map<string, string>();
  const clients = new Set<pg.Client>();
  const pools = new Set<pg.Pool>();
  const proxies: FaultProxy[] = [];
  const servers: PgServer[] = [];
  const rawServers: net.Server[] = [];

  const record = (name: string, entry: CapturedError): void => {
    if (errors.has(name)) return;
    const bad = checkAgainstExpected(name, entry);
    if (bad !== undefined) {
      failures.set(name, `captured a different failure: ${bad}`);
      return;
    }
    failures.delete(name);
    errors.set(name, entry);
  };

  const attempt = async (names: string[], ms: number, fn: () => Promise<void>): Promise<void> => {
    const t0 = Date.now();
    try {
      await withTimeout(fn(), ms, names.join(','));
    } catch (e) {
      for (const n of names) {
        if (!errors.has(n) && !failures.has(n)) failures.set(n, `error while reproducing: ${e instanceof Error ? e.message : String(e)}`);
      }
    }
    for (const n of names) {
      if (!errors.has(n) && !failures.has(n)) failures.set(n, 'not reproduced');
    }
    log(`  ${names.join(', ')}: ${Date.now() - t0} ms`);
  };

  const watch = (config: ClientConfig): Watched => {
    const client = new pg.Client(config);
    clients.add(client);
    const errorEvents: unknown[] = [];
    const notices: PgNotice[] = [];
    const waiters: ((e: unknown) => void)[] = [];
    client.on('error', (e) => {
      errorEvents.push(e);
      for (const w of waiters.splice(0)) w(e);
    });
    client.on('notice', (n) => notices.push(n));
    return {
      client,
      errorEvents,
      notices,
      nextErrorEvent(ms, what) {
        if (errorEvents.length > 0) return Promise.resolve(errorEvents[0]);
        return withTimeout(new Promise((resolve) => waiters.push(resolve)), ms, what);
      },
    };
  };

  const connected = async (config: ClientConfig): Promise<Watched> => {
    const w = watch(config);
    await withTimeout(w.client.connect(), 10_000, 'connect');
    return w;
  };

  const backendPid = async (w: Watched): Promise<number> => {
    const r = await w.client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
    const pid = r.rows[0]?.pid;
    if (pid === undefined) throw new Error('no backend pid');
    return pid;
  };

  const connectError = (config: ClientConfig, ms = 10_000): Promise<unknown> =>
    rejectionOf(watch(config).client.connect(), ms, 'connect');

  // Polls connects until one fails with a message matching `re` (used around server state changes).
  const pollConnectError = async (config: ClientConfig, re: RegExp, ms: number, stepMs = 10): Promise<unknown> => {
    const deadline = Date.now() + ms;
    const seen = new Set<string>();
    while (Date.now() < deadline) {
      const c = new pg.Client({ ...config, connectionTimeoutMillis: 2000 });
      c.on('error', () => {});
      try {
        await c.connect();
        await c.end().catch(() => {});
      } catch (e) {
        const m = e instanceof Error ? e.message : String(e);
        if (re.test(m)) return e;
        seen.add(m);
      }
      await sleep(stepMs);
    }
    throw new Error(`no connect error matching ${re} within ${ms} ms (saw: ${[...seen].join(' | ') || 'only successes'})`);
  };

  try {
    log('starting servers');
    const [main, small, tls] = await Promise.all([
      startPgServer(),
      startPgServer({ settings: { max_connections: 5, superuser_reserved_connections: 2 } }),
      startPgServer({ ssl: true }),
    ]);
    servers.push(main, small, tls);
    log(`servers up after ${Date.now() - started} ms`);
    await main.admin(
      'CREATE TABLE pgr_t (id int PRIMARY KEY, v int NOT NULL); INSERT INTO pgr_t VALUES (1, 0), (2, 0);' +
        'CREATE TABLE pgr_skew (k int NOT NULL)',
    );
    const M = main.config;

    const mainGroup = async (): Promise<void> => {
      await attempt(['42601-syntax-error', '42P01-undefined-table', '23505-unique-violation', '08P01-bind-parameter-mismatch'], 10_000, async () => {
        const w = await connected(M);
        record('42601-syntax-error', { error: await rejectionOf(w.client.query('SELEC 1'), 5000, 'syntax'), phase: 'query' });
        record('42P01-undefined-table', { error: await rejectionOf(w.client.query('SELECT * FROM pgr_no_such_table'), 5000, 'undefined table'), phase: 'query' });
        record('23505-unique-violation', { error: await rejectionOf(w.client.query('INSERT INTO pgr_t VALUES (1, 0)'), 5000, 'unique'), phase: 'query' });
        record('08P01-bind-parameter-mismatch', {
          error: await rejectionOf(w.client.query('SELECT $1::int AS x', [1, 2]), 5000, 'bind mismatch'),
          phase: 'query',
          note: 'a protocol-level 08P01 that does NOT kill the connection',
        });
        // Documented for the classifier: the connection survives the 08P01 above.
        await w.client.query('SELECT 1');
      });

      await attempt(['28P01-bad-password', '3D000-no-such-database'], 10_000, async () => {
        record('28P01-bad-password', { error: await connectError({ ...M, password: 'definitely-wrong' }), phase: 'connect' });
        record('3D000-no-such-database', { error: await connectError({ ...M, database: 'pgr_no_such_db' }), phase: 'connect' });
      });

      await attempt(['57014-statement-timeout', '57014-user-cancel', 'query-read-timeout'], 10_000, async () => {
        const w = await connected(M);
        await w.client.query('SET statement_timeout = 50');
        record('57014-statement-timeout', { error: await rejectionOf(w.client.query('SELECT pg_sleep(2)'), 5000, 'statement timeout'), phase: 'query' });
        await w.client.query('RESET statement_timeout');
        const pid = await backendPid(w);
        const q = rejectionOf(w.client.query('SELECT pg_sleep(5)'), 5000, 'user cancel');
        await sleep(100);
        await main.admin('SELECT pg_cancel_backend($1)', [pid]);
        record('57014-user-cancel', { error: await q, phase: 'query', note: 'pg_cancel_backend from another session' });
        const r = await connected({ ...M, query_timeout: 100 });
        record('query-read-timeout', {
          error: await rejectionOf(r.client.query('SELECT pg_sleep(1)'), 5000, 'query_timeout'),
          phase: 'query',
          note: 'client-side query_timeout; the server keeps running the statement',
        });
      });

      await attempt(['25006-read-only-transaction'], 10_000, async () => {
        const w = await connected(M);
        await w.client.query('SET default_transaction_read_only = on');
        record('25006-read-only-transaction', {
          error: await rejectionOf(w.client.query('INSERT INTO pgr_t VALUES (100, 0)'), 5000, 'read only'),
          phase: 'query',
          note: 'default_transaction_read_only on a primary',
        });
      });

      await attempt(['40001-concurrent-update'], 10_000, async () => {
        const a = await connected(M);
        const b = await connected(M);
        await a.client.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
        await a.client.query('SELECT * FROM pgr_t');
        await b.client.query('UPDATE pgr_t SET v = v + 1 WHERE id = 1');
        record('40001-concurrent-update', {
          error: await rejectionOf(a.client.query('UPDATE pgr_t SET v = v + 1 WHERE id = 1'), 5000, 'concurrent update'),
          phase: 'query',
        });
        await a.client.query('ROLLBACK');
      });

      await attempt(['40001-serializable-commit'], 10_000, async () => {
        // Classic write skew: each transaction reads what the other writes. The first to commit
        // wins; the second fails, at COMMIT when the conflict is only known then.
        const a = await connected(M);
        const b = await connected(M);
        await a.client.query('BEGIN ISOLATION LEVEL SERIALIZABLE');
        await b.client.query('BEGIN ISOLATION LEVEL SERIALIZABLE');
        await a.client.query('SELECT count(*) FROM pgr_skew WHERE k = 2');
        await b.client.query('SELECT count(*) FROM pgr_skew WHERE k = 1');
        await a.client.query('INSERT INTO pgr_skew VALUES (1)');
        let phase: ErrorPhase = 'query';
        try {
          await b.client.query('INSERT INTO pgr_skew VALUES (2)');
          await a.client.query('COMMIT');
          phase = 'commit';
          await b.client.query('COMMIT');
          throw new Error('both serializable transactions committed');
        } catch (e) {
          if (e instanceof Error && e.message === 'both serializable transactions committed') throw e;
          record('40001-serializable-commit', { error: e, phase, note: 'write skew between two SERIALIZABLE transactions' });
        }
        await a.client.query('ROLLBACK').catch(() => {});
        await b.client.query('ROLLBACK').catch(() => {});
      });

      await attempt(['40P01-deadlock'], 10_000, async () => {
        const a = await connected(M);
        const b = await connected(M);
        for (const w of [a, b]) await w.client.query("SET deadlock_timeout = '100ms'");
        await a.client.query('BEGIN');
        await b.client.query('BEGIN');
        await a.client.query('UPDATE pgr_t SET v = v + 1 WHERE id = 1');
        await b.client.query('UPDATE pgr_t SET v = v + 1 WHERE id = 2');
        const pa = a.client.query('UPDATE pgr_t SET v = v + 1 WHERE id = 2');
        await sleep(20);
        const pb = b.client.query('UPDATE pgr_t SET v = v + 1 WHERE id = 1');
        // Exactly one of them is chosen as the victim.
        const outcome = await withTimeout(
          Promise.race([
            pa.then(() => undefined, (e: unknown) => e),
            pb.then(() => undefined, (e: unknown) => e),
          ]),
          5000,
          'deadlock',
        );
        if (outcome === undefined) throw new Error('no deadlock victim');
        record('40P01-deadlock', { error: outcome, phase: 'query' });
        await Promise.allSettled([pa, pb]);
        await a.client.query('ROLLBACK').catch(() => {});
        await b.client.query('ROLLBACK').catch(() => {});
      });

      await attempt(['57P05-idle-session-timeout', '25P03-idle-in-transaction-timeout'], 10_000, async () => {
        const a = await connected(M);
        await a.client.query("SET idle_session_timeout = '200ms'");
        const b = await connected(M);
        await b.client.query("SET idle_in_transaction_session_timeout = '200ms'");
        await b.client.query('BEGIN');
        const [ea, eb] = await Promise.all([
          a.nextErrorEvent(5000, 'idle session timeout'),
          b.nextErrorEvent(5000, 'idle in transaction timeout'),
        ]);
        record('57P05-idle-session-timeout', { error: ea, phase: 'idle', note: "'error' event on an idle client" });
        record('25P03-idle-in-transaction-timeout', { error: eb, phase: 'idle', note: "'error' event on a client idle in a transaction" });
      });

      await attempt(['57P01-terminate-backend-idle', '57P01-terminate-backend-query'], 10_000, async () => {
        const idle = await connected({ ...M, application_name: 'pgr-victim-idle' });
        const busy = await connected({ ...M, application_name: 'pgr-victim-busy' });
        const q = rejectionOf(busy.client.query('SELECT pg_sleep(5)'), 5000, 'terminate during query');
        await sleep(100);
        const n = await main.terminateBackends({ applicationName: 'pgr-victim-idle' });
        const m = await main.terminateBackends({ applicationName: 'pgr-victim-busy' });
        if (n !== 1 || m !== 1) throw new Error(`terminated ${n}+${m} backends, expected 1+1`);
        record('57P01-terminate-backend-query', { error: await q, phase: 'query', note: 'pg_terminate_backend' });
        record('57P01-terminate-backend-idle', { error: await idle.nextErrorEvent(5000, 'terminate idle'), phase: 'idle', note: 'pg_terminate_backend' });
      });

      await attempt(['not-queryable-after-error', 'not-queryable-after-end', 'connection-terminated-by-end', 'client-reused'], 10_000, async () => {
        // The connection of `dead` dies (terminated by the server); using it afterwards fails locally.
        const dead = await connected({ ...M, application_name: 'pgr-dead' });
        await main.terminateBackends({ applicationName: 'pgr-dead' });
        await dead.nextErrorEvent(5000, 'dead client');
        record('not-queryable-after-error', {
          error: await rejectionOf(dead.client.query('SELECT 1'), 5000, 'query on dead client'),
          phase: 'use',
          note: 'query on a client whose connection already died; never reached the network',
        });
        const ended = await connected(M);
        await ended.client.end();
        record('not-queryable-after-end', { error: await rejectionOf(ended.client.query('SELECT 1'), 5000, 'query after end'), phase: 'use' });
        const ending = await connected(M);
        const q = rejectionOf(ending.client.query('SELECT pg_sleep(5)'), 5000, 'end during query');
        await sleep(50);
        void ending.client.end().catch(() => {});
        record('connection-terminated-by-end', { error: await q, phase: 'query', note: 'client.end() while the query was running' });
        const reused = await connected(M);
        record('client-reused', { error: await rejectionOf(reused.client.connect(), 5000, 'reconnect'), phase: 'use' });
      });

      await attempt(['pool-timeout-exceeded', 'pool-ended'], 10_000, async () => {
        const pool = new pg.Pool({ ...M, max: 1, connectionTimeoutMillis: 200 } satisfies PoolConfig);
        pools.add(pool);
        pool.on('error', () => {});
        const held = await pool.connect();
        record('pool-timeout-exceeded', {
          error: await rejectionOf(pool.connect(), 5000, 'pool timeout'),
          phase: 'connect',
          note: 'pg.Pool max 1, the only client checked out',
        });
        held.release();
        await pool.end();
        record('pool-ended', { error: await rejectionOf(pool.query('SELECT 1'), 5000, 'pool ended'), phase: 'use' });
      });

      await attempt(['ssl-not-supported'], 10_000, async () => {
        record('ssl-not-supported', { error: await connectError({ ...M, ssl: { rejectUnauthorized: false } }), phase: 'connect' });
      });

      // Network faults through the proxy.
      await attempt(['ECONNRESET-query'], 10_000, async () => {
        const p = await startFaultProxy(main);
        proxies.push(p);
        const w = await connected({ ...M, port: p.port });
        const q = rejectionOf(w.client.query('SELECT pg_sleep(5)'), 5000, 'reset during query');
        await sleep(100);
        p.resetAll();
        record('ECONNRESET-query', { error: await q, phase: 'query', note: 'TCP RST during a query' });
      });

      await attempt(['proxy-fin-query', 'proxy-fin-idle'], 10_000, async () => {
        const p = await startFaultProxy(main);
        proxies.push(p);
        const busy = await connected({ ...M, port: p.port });
        const idle = await connected({ ...M, port: p.port });
        const q = rejectionOf(busy.client.query('SELECT pg_sleep(5)'), 5000, 'FIN during query');
        await sleep(100);
        p.closeAll();
        record('proxy-fin-query', { error: await q, phase: 'query', note: 'TCP FIN (no PostgreSQL error message) during a query' });
        record('proxy-fin-idle', { error: await idle.nextErrorEvent(5000, 'FIN idle'), phase: 'idle', note: 'TCP FIN on an idle client' });
      });

      await attempt(['proxy-upstream-down-connect', 'ECONNRESET-connect'], 10_000, async () => {
        const closedPort = await freePort();
        const p = await startFaultProxy({ host: '127.0.0.1', port: closedPort });
        proxies.push(p);
        record('proxy-upstream-down-connect', {
          error: await connectError({ ...M, port: p.port }),
          phase: 'connect',
          note: 'TCP connect succeeds (to a proxy/LB) but the connection is closed before the handshake',
        });
        // A listener that answers the startup packet with a reset.
        const raw = net.createServer((s) => {
          s.once('data', () => s.resetAndDestroy());
          s.on('error', () => {});
        });
        rawServers.push(raw);
        await new Promise<void>((resolve) => raw.listen(0, '127.0.0.1', resolve));
        const addr = raw.address();
        if (addr === null || typeof addr === 'string') throw new Error('no address');
        record('ECONNRESET-connect', {
          error: await connectError({ ...M, port: addr.port }),
          phase: 'connect',
          note: 'peer resets the connection during the startup handshake',
        });
      });

      await attempt(['client-connection-timeout', 'pool-connection-timeout', 'query-read-timeout-blackhole'], 10_000, async () => {
        const p = await startFaultProxy(main);
        proxies.push(p);
        const live = await connected({ ...M, port: p.port, query_timeout: 300 });
        await p.blackhole();
        record('client-connection-timeout', {
          error: await connectError({ ...M, port: p.port, connectionTimeoutMillis: 300 }, 5000),
          phase: 'connect',
          note: 'pg.Client connectionTimeoutMillis through a blackholed proxy',
        });
        const pool = new pg.Pool({ ...M, port: p.port, connectionTimeoutMillis: 300 });
        pools.add(pool);
        pool.on('error', () => {});
        record('pool-connection-timeout', {
          error: await rejectionOf(pool.connect(), 5000, 'pool connect timeout'),
          phase: 'connect',
          note: 'pg.Pool connectionTimeoutMillis through a blackholed proxy',
        });
        record('query-read-timeout-blackhole', {
          error: await rejectionOf(live.client.query('SELECT 1'), 5000, 'blackholed query'),
          phase: 'query',
          note: 'query_timeout on an established connection that got partitioned',
        });
      });

      await attempt(['EPIPE'], 8000, async () => {
        // EPIPE needs the peer to close (FIN) and then reset while we are still writing: the proxy's
        // closeAll() ends the connection while 32 MB of query are still unread, so its close turns
        // into an RST and the client's next write fails with EPIPE (a plain RST gives ECONNRESET).
        const big = 'x'.repeat(32 * 1024 * 1024);
        const seen: string[] = [];
        for (let i = 0; i < 3 && !errors.has('EPIPE'); i++) {
          const p = await startFaultProxy(main);
          proxies.push(p);
          const w = await connected({ ...M, port: p.port });
          const q = rejectionOf(w.client.query('SELECT length($1::text)', [big]), 5000, 'epipe');
          await sleep(5);
          p.closeAll();
          const e = await q;
          const code = (e as { code?: unknown }).code;
          seen.push(String(code ?? (e as Error).message));
          if (code === 'EPIPE') {
            record('EPIPE', { error: e, phase: 'query', note: 'peer closed (FIN, then RST) while a large query was being written' });
          }
          await p.close();
        }
        if (!errors.has('EPIPE')) failures.set('EPIPE', `not reproduced; got ${seen.join(', ')}`);
      });

      // Destructive cases last: they crash, stop and restart the main server.
      await attempt(
        ['57P02-crash-notice', 'crash-other-backend-idle', 'backend-killed-query', '57P03-recovery-mode', '57P03-not-yet-accepting'],
        15_000,
        async () => {
          const idle = await connected(M);
          const victim = await connected(M);
          const pid = await backendPid(victim);
          // After a crash the postmaster answers "in recovery mode" until all its children have
          // exited, then "not yet accepting connections" while crash recovery replays WAL. Both
          // windows last only milliseconds, so widen them: a SIGSTOPped backend cannot act on the
          // postmaster's SIGQUIT (the postmaster waits up to 5 s before it SIGKILLs it), and some
          // WAL to replay lengthens the recovery.
          await main.admin('CREATE TABLE pgr_bulk AS SELECT g AS x FROM generate_series(1, 100000) g');
          const frozen = await connected(M);
          const frozenPid = await backendPid(frozen);
          const q = rejectionOf(victim.client.query('SELECT pg_sleep(10)'), 5000, 'killed backend');
          await sleep(50);
          process.kill(frozenPid, 'SIGSTOP');
          const stopPolling = { now: false };
          const seen = new Map<string, unknown>();
          const pollers = Array.from({ length: 4 }, async () => {
            const deadline = Date.now() + 5000;
            let sawError = false;
            while (!stopPolling.now && Date.now() < deadline) {
              const c = new pg.Client({ ...M, connectionTimeoutMillis: 2000 });
              c.on('error', () => {});
              try {
                await c.connect();
                await c.end().catch(() => {});
                if (sawError) stopPolling.now = true;
              } catch (e) {
                sawError = true;
                const m = e instanceof Error ? e.message : String(e);
                if (!seen.has(m)) seen.set(m, e);
              }
            }
          });
          await sleep(20);
          process.kill(pid, 'SIGKILL');
          try {
            await waitUntil(() => [...seen.keys()].some((m) => /in recovery mode/.test(m)), 3000);
          } finally {
            process.kill(frozenPid, 'SIGCONT');
          }
          record('backend-killed-query', { error: await q, phase: 'query', note: 'kill -9 of the backend serving this query' });
          record('crash-other-backend-idle', {
            error: await idle.nextErrorEvent(5000, 'crash idle'),
            phase: 'idle',
            note: 'another backend crashed; the server sends a 57P02 NOTICE (not an error) and closes',
          });
          const notice = idle.notices.find((n) => n.code === '57P02');
          if (notice !== undefined) record('57P02-crash-notice', { error: notice, phase: 'notice', note: "received on the client's 'notice' event" });
          try {
            await Promise.all(pollers);
            for (const [m, e] of seen) {
              if (/in recovery mode/.test(m)) {
                record('57P03-recovery-mode', { error: e, phase: 'connect', note: 'connect right after a backend crash, before crash recovery starts' });
              } else if (/not yet accepting/.test(m)) {
                record('57P03-not-yet-accepting', { error: e, phase: 'connect', note: 'connect during crash recovery' });
              }
            }
            for (const name of ['57P03-recovery-mode', '57P03-not-yet-accepting']) {
              if (!errors.has(name)) failures.set(name, `not hit by the connect pollers (saw: ${[...seen.keys()].join(' | ') || 'nothing'})`);
            }
          } finally {
            await main.start();
          }
        },
      );

      await attempt(['57P01-fast-shutdown-query', '57P01-fast-shutdown-idle'], 15_000, async () => {
        const idle = await connected(M);
        const busy = await connected(M);
        const q = rejectionOf(busy.client.query('SELECT pg_sleep(10)'), 8000, 'fast shutdown');
        await sleep(50);
        await main.stop('fast');
        record('57P01-fast-shutdown-query', { error: await q, phase: 'query', note: 'pg_ctl stop -m fast' });
        record('57P01-fast-shutdown-idle', { error: await idle.nextErrorEvent(5000, 'fast shutdown idle'), phase: 'idle', note: 'pg_ctl stop -m fast' });
      });

      await attempt(['ECONNREFUSED-server-stopped'], 5000, async () => {
        record('ECONNREFUSED-server-stopped', { error: await connectError(M), phase: 'connect', note: 'server stopped' });
      });

      await attempt(['57P03-shutting-down'], 15_000, async () => {
        await main.start();
        // A smart shutdown waits for sessions to end; while this one is held, new connects are refused.
        const holder = await connected(M);
        await main.stop('smart', { wait: false });
        try {
          record('57P03-shutting-down', {
            error: await pollConnectError(M, /shutting down/, 5000, 20),
            phase: 'connect',
            note: 'pg_ctl stop -m smart with a session still open',
          });
        } finally {
          await main.stop('fast');
          await holder.nextErrorEvent(5000, 'smart holder').catch(() => {});
        }
      });

      await attempt(['57P01-immediate-shutdown-notice', 'immediate-shutdown-query'], 15_000, async () => {
        await main.start();
        const busy = await connected(M);
        const q = rejectionOf(busy.client.query('SELECT pg_sleep(10)'), 8000, 'immediate shutdown');
        await sleep(50);
        await main.stop('immediate');
        record('immediate-shutdown-query', { error: await q, phase: 'query', note: 'pg_ctl stop -m immediate: the 57P01 comes only as a NOTICE' });
        await sleep(50);
        const notice = busy.notices.find((n) => n.code === '57P01');
        if (notice !== undefined) {
          record('57P01-immediate-shutdown-notice', { error: notice, phase: 'notice', note: "received on the client's 'notice' event before the socket closed" });
        } else {
          failures.set('57P01-immediate-shutdown-notice', `no 57P01 notice (notices: ${busy.notices.map((n) => n.message).join(' | ') || 'none'})`);
        }
      });
    };

    const smallGroup = async (): Promise<void> => {
      const S = small.config;
      await small.admin("CREATE ROLE pgr_app LOGIN PASSWORD 'pgr-app-pw'; CREATE TABLE pgr_t (id int PRIMARY KEY)");
      await attempt(['53300-reserved-slots', '53300-too-many-clients'], 15_000, async () => {
        // max_connections 5 with 2 reserved for superusers: the 4th app connection is refused with
        // the reserved-slots message, and the 6th connection overall with "too many clients".
        const app: ClientConfig = { ...S, user: 'pgr_app', password: 'pgr-app-pw' };
        const held: Watched[] = [];
        try {
          for (let i = 0; i < 6 && !errors.has('53300-reserved-slots'); i++) {
            try {
              held.push(await connected(app));
            } catch (e) {
              record('53300-reserved-slots', { error: e, phase: 'connect', note: 'non-superuser when only reserved slots are left' });
            }
          }
          for (let i = 0; i < 6 && !errors.has('53300-too-many-clients'); i++) {
            try {
              held.push(await connected(S));
            } catch (e) {
              record('53300-too-many-clients', { error: e, phase: 'connect', note: 'max_connections exhausted' });
            }
          }
        } finally {
          await Promise.allSettled(held.map((w) => w.client.end()));
        }
      });

      await attempt(['57P03-starting-up', '57P03-not-accepting-hot-standby-off'], 15_000, async () => {
        // Turn the server into a standby whose restore_command is slow and always fails: the
        // startup process spends ~1 s per archive probe before recovery starts ("starting up"),
        // then, with hot_standby off, it never accepts connections ("not accepting").
        await small.stop('fast');
        await small.appendConf({ hot_standby: 'off', restore_command: 'sleep 1; exit 1' });
        await small.writeDataFile('standby.signal', '');
        await small.start({ waitReady: false });
        record('57P03-starting-up', {
          error: await pollConnectError(S, /starting up/, 5000, 10),
          phase: 'connect',
          note: 'standby still in its startup phase',
        });
        record('57P03-not-accepting-hot-standby-off', {
          error: await pollConnectError(S, /not accepting connections/, 8000, 20),
          phase: 'connect',
          note: 'standby in recovery with hot_standby = off',
        });
      });

      await attempt(['25006-hot-standby'], 15_000, async () => {
        await small.stop('fast');
        await small.appendConf({ hot_standby: 'on', restore_command: '' });
        await small.start();
        const w = await connected(S);
        const r = await w.client.query<{ rec: boolean }>('SELECT pg_is_in_recovery() AS rec');
        if (r.rows[0]?.rec !== true) throw new Error('server is not in recovery');
        record('25006-hot-standby', {
          error: await rejectionOf(w.client.query('INSERT INTO pgr_t VALUES (1)'), 5000, 'insert on standby'),
          phase: 'query',
          note: 'write on a hot standby (what a demoted primary returns)',
        });
      });
    };

    const miscGroup = async (): Promise<void> => {
      await attempt(['ECONNREFUSED'], 5000, async () => {
        const port = await freePort();
        record('ECONNREFUSED', { error: await connectError({ ...M, port }), phase: 'connect', note: 'nothing listens on the port' });
      });
      await attempt(['ENOTFOUND'], 10_000, async () => {
        record('ENOTFOUND', { error: await connectError({ ...M, host: 'no-such-host.invalid' }), phase: 'connect' });
      });
      await attempt(['tls-self-signed'], 10_000, async () => {
        record('tls-self-signed', {
          error: await connectError({ ...tls.config, ssl: { rejectUnauthorized: true } }),
          phase: 'connect',
          note: 'TLS server with a self-signed cert, client verifies without the CA',
        });
        // Sanity: with the CA the same server is fine, so the failure above is about trust only.
        const ok = await connected(tls.config);
        await ok.client.query('SELECT 1');
      });
    };

    await Promise.all([mainGroup(), smallGroup(), miscGroup()]);
  } catch (e) {
    // Server start failed: report every case as not reproduced, with the reason.
    for (const name of Object.keys(EXPECTED_REAL_ERRORS)) {
      if (!errors.has(name) && !failures.has(name)) failures.set(name, `setup failed: ${e instanceof Error ? e.message : String(e)}`);
    }
  } finally {
    for (const c of clients) {
      // end() may wait on a blackholed socket; destroying the stream is immediate.
      const con = (c as unknown as { connection?: { stream?: { destroy(): void } } }).connection;
      con?.stream?.destroy();
    }
    await Promise.allSettled([...pools].map((p) => withTimeout(p.end(), 2000, 'pool end')));
    await Promise.allSettled(proxies.map((p) => p.close()));
    for (const r of rawServers) r.close();
    await Promise.allSettled(servers.map((s) => s.destroy()));
  }
  for (const name of Object.keys(EXPECTED_REAL_ERRORS)) {
    if (!errors.has(name) && !failures.has(name)) failures.set(name, 'not attempted');
  }
  return { errors, failures, durationMs: Date.now() - started, passwords: [...new Set(servers.map((s) => s.password)), 'pgr-app-pw'] };
}

let cached: Promise<CaptureReport> | undefined;

/**
 * Real error objects keyed by case name (see EXPECTED_REAL_ERRORS). The capture runs once per
 * process (it takes several seconds and several servers); later calls share the result.
 */
export async function captureRealErrors(opts: CaptureOptions = {}): Promise<Map<string, CapturedError>> {
  cached ??= captureRealErrorsDetailed(opts);
  return (await cached).errors;
}

/** Same as captureRealErrors, with the cases that could not be reproduced and the timing. */
export function captureRealErrorsReport(opts: CaptureOptions = {}): Promise<CaptureReport> {
  cached ??= captureRealErrorsDetailed(opts);
  return cached;
}
