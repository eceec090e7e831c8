// A throwaway real PgBouncer (Debian's package, 1.18 on bookworm) in front of a throwaway
// PostgreSQL from pg-server.ts, for integration tests of what an application sees through a
// transaction pooler: PgBouncer's own errors, PAUSE/RESUME, KILL, its restart.
//
// It listens on a free 127.0.0.1 port only, runs as the `postgres` OS user (PgBouncer refuses to
// run as root), authenticates clients with SCRAM against its own auth file, and logs in to the
// server with the same user and password (plaintext in the auth file, which PgBouncer needs to
// answer the server's SCRAM challenge).
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import type { ClientConfig, QueryResultRow } from 'pg';
import { freePort } from './pg-server.ts';

export const PGBOUNCER_BIN = process.env['PGBOUNCER_BIN'] ?? '/usr/sbin/pgbouncer';
/** The admin console's user (in `admin_users`) and its password. */
export const PGBOUNCER_ADMIN_USER = 'pgr_bouncer_admin';

export type PoolMode = 'session' | 'transaction' | 'statement';

/** The server PgBouncer forwards to: a PgServer from pg-server.ts fits. */
export interface PgBouncerUpstream {
  readonly host: string;
  readonly port: number;
  readonly user: string;
  readonly password: string;
  readonly database: string;
}

export interface StartPgBouncerOptions {
  /** Listen port; a free one by default. Kept across stop()/start(), like a Service's address. */
  port?: number;
  /** Defaults to 'transaction', as the Zalando operator's pooler runs it. */
  poolMode?: PoolMode;
  /** Seconds PgBouncer waits after a failed server login before trying again (its default: 15). */
  serverLoginRetrySec?: number;
  /** Seconds a client may wait for a server connection before "query_wait_timeout" (default 120). */
  queryWaitTimeoutSec?: number;
  /** Client connections PgBouncer accepts in all (default 100). */
  maxClientConn?: number;
  /** Server connections per user/database pair (default 20). */
  defaultPoolSize?: number;
  /** Any other [pgbouncer] setting, written as given (overrides the ones above). */
  settings?: Record<string, string | number>;
}

export interface PgBouncer {
  readonly host: string;
  readonly port: number;
  readonly poolMode: PoolMode;
  /** The application's connection through PgBouncer (the upstream's user, password and database). */
  readonly config: ClientConfig;
  /** The admin console (database `pgbouncer`). */
  readonly adminConfig: ClientConfig;
  /** Every password in play (app and admin), so tests can check none leaks into an error. */
  readonly passwords: readonly string[];
  readonly baseDir: string;
  readonly logFile: string;
  /** PID of the running PgBouncer, or undefined when it is not running. */
  readonly pid: number | undefined;
  /** Runs one admin console command (SHOW …, PAUSE, RESUME …) and returns its rows. */
  admin<R extends QueryResultRow = QueryResultRow>(command: string): Promise<R[]>;
  /** PAUSE [db]: waits until every server connection is released, then holds new work. */
  pause(database?: string): Promise<void>;
  /** RESUME [db]. After KILL db, name the database: KILL pauses it, and a plain RESUME leaves it paused. */
  resume(database?: string): Promise<void>;
  /** RECONNECT [db]: closes each server connection once it is released. */
  reconnect(database?: string): Promise<void>;
  /** KILL db: drops every client and server connection of the database now, and pauses it (resume(db) ends that). */
  kill(database?: string): Promise<void>;
  /** SHUTDOWN through the admin console; resolves when the process exited. */
  shutdown(): Promise<void>;
  /** Starts it again (same port, same config) after stop(), kill9() or shutdown(). */
  start(): Promise<void>;
  /** SIGTERM (immediate shutdown) or SIGINT (safe: PAUSE then exit); waits for the exit. */
  stop(mode?: 'immediate' | 'safe'): Promise<void>;
  /** SIGKILL: the pod is deleted; clients' sockets are reset by the kernel. */
  kill9(): Promise<void>;
  restart(): Promise<void>;
  readLog(): Promise<string>;
  destroy(): Promise<void>;
}

const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;

function runAs(): { uid: number; gid: number } | undefined {
  if (!isRoot) return undefined;
  const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
  const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
  return { uid, gid };
}

function quote(v: string): string {
  return `"${v.replace(/"/g, '""')}"`;
}

function confValue(v: string | number): string {
  return typeof v === 'number' ? String(v) : v;
}

async function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

// Processes left running by a test that crashed or forgot destroy() are killed at exit.
const live = new Set<ChildProcess>();
let hooked = false;
function installExitHook(): void {
  if (hooked) return;
  hooked = true;
  process.on('exit', () => {
    for (const p of live) p.kill('SIGKILL');
  });
}

export async function startPgBouncer(upstream: PgBouncerUpstream, opts: StartPgBouncerOptions = {}): Promise<PgBouncer> {
  const host = '127.0.0.1';
  const port = opts.port ?? (await freePort());
  const poolMode = opts.poolMode ?? 'transaction';
  const owner = runAs();
  const baseDir = await fsp.mkdtemp(path.join(os.tmpdir(), 'pgr-bouncer-'));
  const logFile = path.join(baseDir, 'pgbouncer.log');
  const iniFile = path.join(baseDir, 'pgbouncer.ini');
  const authFile = path.join(baseDir, 'userlist.txt');
  const adminPassword = `pgr-bouncer-admin-${process.pid}-${port}`;

  const settings: Record<string, string | number> = {
    listen_addr: host,
    listen_port: port,
    unix_socket_dir: '', // TCP only: no socket file in a shared directory
    auth_type: 'scram-sha-256',
    auth_file: authFile,
    admin_users: PGBOUNCER_ADMIN_USER,
    pool_mode: poolMode,
    max_client_conn: opts.maxClientConn ?? 100,
    default_pool_size: opts.defaultPoolSize ?? 20,
    server_login_retry: opts.serverLoginRetrySec ?? 15,
    query_wait_timeout: opts.queryWaitTimeoutSec ?? 120,
    // Clients of other drivers send these; PgBouncer 1.18 refuses unknown startup parameters.
    ignore_startup_parameters: 'extra_float_digits',
    logfile: logFile,
    pidfile: path.join(baseDir, 'pgbouncer.pid'),
    log_connections: 1,
    log_disconnections: 1,
    log_pooler_errors: 1,
    ...opts.settings,
  };
  const db = `host=${upstream.host} port=${upstream.port} dbname=${upstream.database} user=${upstream.user}`;
  const ini = [
    '[databases]',
    `${upstream.database} = ${db}`,
    `* = host=${upstream.host} port=${upstream.port}`,
    '',
    '[pgbouncer]',
    ...Object.entries(settings).map(([k, v]) => `${k} = ${confValue(v)}`),
    '',
  ].join('\n');
  await fsp.writeFile(iniFile, ini, { mode: 0o600 });
  await fsp.writeFile(
    authFile,
    `${quote(upstream.user)} ${quote(upstream.password)}\n${quote(PGBOUNCER_ADMIN_USER)} ${quote(adminPassword)}\n`,
    { mode: 0o600 },
  );
  await fsp.writeFile(logFile, '');
  if (owner !== undefined) {
    for (const p of [baseDir, iniFile, authFile, logFile]) fs.chownSync(p, owner.uid, owner.gid);
  }

  let proc: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  let destroyed = false;
  let stderr = '';

  const running = (): boolean => proc !== undefined && proc.exitCode === null && proc.signalCode === null;

  const start = async (): Promise<void> => {
    if (destroyed) throw new Error('pgbouncer destroyed');
    if (running()) return;
    installExitHook();
    const child = spawn(PGBOUNCER_BIN, [iniFile], {
      stdio: ['ignore', 'ignore', 'pipe'],
      ...(owner !== undefined ? { uid: owner.uid, gid: owner.gid } : {}),
    });
    proc = child;
    live.add(child);
    child.stderr?.on('data', (d: Buffer) => {
      stderr = (stderr + d.toString()).slice(-4000);
    });
    exited = new Promise<void>((resolve) => {
      child.once('exit', () => {
        live.delete(child);
        resolve();
      });
    });
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      if (!running()) break;
      if (await listening(port)) return;
      await sleep(20);
    }
    const log = await fsp.readFile(logFile, 'utf8').catch(() => '');
    child.kill('SIGKILL');
    throw new Error(`pgbouncer did not listen on ${host}:${port}\n${stderr}\n${log.slice(-2000)}`);
  };

  const waitExit = async (ms: number): Promise<void> => {
    const t = sleep(ms).then(() => 'timeout' as const);
    if ((await Promise.race([exited.then(() => 'exited' as const), t])) === 'timeout') {
      proc?.kill('SIGKILL');
      await exited;
    }
  };

  const admin = async <R extends QueryResultRow = QueryResultRow>(command: string): Promise<R[]> => {
    const c = new pg.Client({ ...adminConfig(), connectionTimeoutMillis: 5000 });
    c.on('error', () => {});
    await c.connect();
    try {
      return (await c.query<R>(command)).rows;
    } finally {
      await c.end().catch(() => {});
    }
  };

  const adminConfig = (): ClientConfig => ({ host, port, user: PGBOUNCER_ADMIN_USER, password: adminPassword, database: 'pgbouncer' });

  const bouncer: PgBouncer = {
    host,
    port,
    poolMode,
    get config() {
      return { host, port, user: upstream.user, password: upstream.password, database: upstream.database };
    },
    get adminConfig() {
      return adminConfig();
    },
    passwords: [upstream.password, adminPassword],
    baseDir,
    logFile,
    get pid() {
      return running() ? proc?.pid : undefined;
    },
    admin,
    async pause(database) {
      await admin(database === undefined ? 'PAUSE' : `PAUSE ${database}`);
    },
    async resume(database) {
      await admin(database === undefined ? 'RESUME' : `RESUME ${database}`);
    },
    async reconnect(database) {
      await admin(database === undefined ? 'RECONNECT' : `RECONNECT ${database}`);
    },
    async kill(database = upstream.database) {
      await admin(`KILL ${database}`);
    },
    async shutdown() {
      if (!running()) return;
      // The console closes as the process exits: no answer is the expected answer.
      await admin('SHUTDOWN').catch(() => undefined);
      await waitExit(5000);
    },
    start,
    async stop(mode = 'immediate') {
      if (!running()) return;
      proc?.kill(mode === 'safe' ? 'SIGINT' : 'SIGTERM');
      await waitExit(mode === 'safe' ? 30_000 : 5000);
    },
    async kill9() {
      if (!running()) return;
      proc?.kill('SIGKILL');
      await exited;
    },
    async restart() {
      await bouncer.stop();
      await start();
    },
    readLog() {
      return fsp.readFile(logFile, 'utf8').catch(() => '');
    },
    async destroy() {
      if (destroyed) return;
      destroyed = true;
      if (running()) {
        proc?.kill('SIGTERM');
        await waitExit(5000);
      }
      await fsp.rm(baseDir, { recursive: true, force: true });
    },
  };

  try {
    await start();
  } catch (e) {
    await bouncer.destroy();
    throw e;
  }
  return bouncer;
}
