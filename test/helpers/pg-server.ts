// Throwaway PostgreSQL 15 servers for integration tests.
//
// Every server lives in its own temp dir (data dir + unix socket dir + log), listens only on
// 127.0.0.1 and requires a password over TCP, so tests see the same auth handshake as production
// and can check that the password never leaks into errors or logs.
import { execFile, execFileSync } from 'node:child_process';
import { once } from 'node:events';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import type { ClientConfig, QueryResultRow } from 'pg';

export const PG_BIN_DIR = process.env['PG_BIN_DIR'] ?? '/usr/lib/postgresql/15/bin';
export const DEFAULT_TEST_PASSWORD = 'pgr-test-secret-pw';

export type StopMode = 'smart' | 'fast' | 'immediate';

export interface StartPgServerOptions {
  port?: number;
  settings?: Record<string, string | number>;
  password?: string;
  /**
   * TLS on: `true` for a self-signed certificate (SAN localhost, 127.0.0.1); `{ ca: true }` for
   * one signed by a throwaway CA (its PEM in `caCertPem`, its file in `caCertFile`), with
   * `names` as the certificate's SANs (default `DNS:localhost,IP:127.0.0.1`; give another name
   * to test host-name verification).
   */
  ssl?: boolean | { ca: true; names?: string };
}

export interface TerminateFilter {
  applicationName?: string;
  database?: string;
  pids?: number[];
}

export interface PgServer {
  readonly host: string;
  readonly port: number;
  readonly user: string;
  readonly password: string;
  readonly database: string;
  /** postgresql://user:password@127.0.0.1:port/db (no ssl params; use `config` for TLS). */
  readonly connectionString: string;
  /** A fresh copy on every read, so tests may mutate it freely. */
  readonly config: ClientConfig;
  readonly dataDir: string;
  /** The temp dir holding dataDir, the socket and the log. */
  readonly baseDir: string;
  readonly logFile: string;
  /** PEM of the self-signed server certificate (ssl: true), or of the CA that signed it (ssl: { ca: true }). */
  readonly caCertPem: string | undefined;
  /** A file holding `caCertPem` (for `sslrootcert=`), when TLS is on. */
  readonly caCertFile: string | undefined;
  /** PID of the running postmaster, or undefined when it is not running. */
  readonly pid: number | undefined;
  stop(mode?: StopMode, opts?: { wait?: boolean }): Promise<void>;
  /** waitReady=false returns as soon as pg_ctl has launched the postmaster (for standby tricks). */
  start(opts?: { waitReady?: boolean }): Promise<void>;
  restart(mode?: StopMode): Promise<void>;
  /** SIGKILL the postmaster (withChildren: also every backend at once, i.e. a whole-node crash). */
  kill9(opts?: { withChildren?: boolean }): Promise<void>;
  admin<R extends QueryResultRow = QueryResultRow>(sql: string, values?: unknown[]): Promise<R[]>;
  psql<R extends QueryResultRow = QueryResultRow>(sql: string, values?: unknown[]): Promise<R[]>;
  /** pg_terminate_backend of every other client backend matching the filter; returns the count. */
  terminateBackends(filter?: TerminateFilter): Promise<number>;
  /** Appends settings to postgresql.conf (effective after reload/restart). */
  appendConf(settings: Record<string, string | number>): Promise<void>;
  /** Writes a file into the data dir owned by the server's OS user (e.g. standby.signal). */
  writeDataFile(name: string, content: string, mode?: number): Promise<void>;
  readLog(): Promise<string>;
  destroy(): Promise<void>;
}

const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;

// PostgreSQL refuses to run as root, so as root every server binary runs as the postgres OS user.
let pgOwner: { uid: number; gid: number } | undefined;
function owner(): { uid: number; gid: number } | undefined {
  if (!isRoot) return undefined;
  if (pgOwner === undefined) {
    const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
    pgOwner = { uid, gid };
  }
  return pgOwner;
}

function chownToOwner(p: string): void {
  const o = owner();
  if (o) fs.chownSync(p, o.uid, o.gid);
}

interface RunResult {
  stdout: string;
  stderr: string;
}

function runPgBinary(bin: string, args: string[], timeoutMs: number): Promise<RunResult> {
  const exe = path.join(PG_BIN_DIR, bin);
  const [file, argv] = isRoot ? ['runuser', ['-u', 'postgres', '--', exe, ...args]] : [exe, args];
  return new Promise((resolve, reject) => {
    execFile(
      file,
      argv,
      { timeout: timeoutMs, killSignal: 'SIGKILL', encoding: 'utf8', maxBuffer: 4 * 1024 * 1024 },
      (err, stdout, stderr) => {
        if (err) {
          reject(new Error(`${bin} ${args.join(' ')} failed: ${err.message}\n${stderr}`.trim()));
        } else {
          resolve({ stdout, stderr });
        }
      },
    );
  });
}

export async function freePort(): Promise<number> {
  const srv = net.createServer();
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const addr = srv.address();
  srv.close();
  await once(srv, 'close');
  if (addr === null || typeof addr === 'string') throw new Error('could not get a free port');
  return addr.port;
}

function quoteConfValue(v: string | number): string {
  if (typeof v === 'number') return String(v);
  return `'${v.replace(/'/g, "''")}'`;
}

function readPostmasterPid(dataDir: string): number | undefined {
  try {
    const first = fs.readFileSync(path.join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0];
    const pid = Number(first);
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

// A process whose parent does not reap it stays a zombie; kill(pid, 0) would still succeed, so
// look at /proc to decide whether it is really alive.
function processAlive(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

function childPids(parent: number): number[] {
  const out: number[] = [];
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${name}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[1]) === parent) out.push(Number(name));
    } catch {
      // raced with the process exiting
    }
  }
  return out;
}

async function waitFor(cond: () => boolean, timeoutMs: number, stepMs = 20): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (cond()) return true;
    await sleep(stepMs);
  }
  return cond();
}

// Everything alive is tracked here so a test run that crashes or forgets destroy() does not leave
// postmasters and temp dirs behind.
const live = new Set<{ killSync(): void }>();
let hooksInstalled = false;
function installExitHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.on('exit', () => {
    for (const s of live) s.killSync();
    cleanupTemplatesSync();
  });
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      for (const s of live) s.killSync();
      cleanupTemplatesSync();
      // Only re-raise when nobody else handles the signal, to keep the default behaviour (exit).
      if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
    });
  }
}

// initdb costs ~1 s; copying an already initialised cluster costs ~0.2 s. Templates are per
// password because the superuser password is baked in by initdb.
const templates = new Map<string, Promise<string>>();
const templateDirs: string[] = [];
function cleanupTemplatesSync(): void {
  for (const d of templateDirs) fs.rmSync(d, { recursive: true, force: true });
  templateDirs.length = 0;
}

async function makeTempDir(prefix: string): Promise<string> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), prefix));
  chownToOwner(dir);
  return dir;
}

function templateFor(password: string): Promise<string> {
  let t = templates.get(password);
  if (t === undefined) {
    t = (async () => {
      const dir = await makeTempDir('pgr-tpl-');
      templateDirs.push(dir);
      installExitHooks();
      const pwfile = path.join(dir, 'pwfile');
      await fsp.writeFile(pwfile, password + '\n', { mode: 0o600 });
      chownToOwner(pwfile);
      const dataDir = path.join(dir, 'data');
      await runPgBinary(
        'initdb',
        [
          '-D', dataDir, '-U', 'postgres', '-A', 'scram-sha-256', `--pwfile=${pwfile}`,
          '--no-sync', '-E', 'UTF8', '--locale=C', '--no-instructions',
        ],
        60_000,
      );
      await fsp.rm(pwfile);
      return dataDir;
    })();
    templates.set(password, t);
    t.catch(() => templates.delete(password));
  }
  return t;
}

async function copyDir(src: string, dst: string): Promise<void> {
  // cp -a keeps ownership (postgres) and the 0700 mode PostgreSQL insists on.
  await new Promise<void>((resolve, reject) => {
    execFile('cp', ['-a', src, dst], { timeout: 30_000 }, (err) => (err ? reject(err) : resolve()));
  });
}

async function generateCert(dataDir: string): Promise<string> {
  const crt = path.join(dataDir, 'server.crt');
  const key = path.join(dataDir, 'server.key');
  // The IP SAN lets clients verify the cert when connecting to 127.0.0.1 rather than "localhost".
  await new Promise<void>((resolve, reject) => {
    execFile(
      'openssl',
      [
        'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=localhost', '-days', '2',
        '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
        '-keyout', key, '-out', crt,
      ],
      { timeout: 30_000 },
      (err, _o, stderr) => (err ? reject(new Error(`openssl failed: ${err.message} ${stderr}`)) : resolve()),
    );
  });
  await fsp.chmod(key, 0o600);
  chownToOwner(key);
  chownToOwner(crt);
  return fsp.readFile(crt, 'utf8');
}

function openssl(args: string[]): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    execFile('openssl', args, { timeout: 30_000 }, (err, _o, stderr) => (err ? reject(new Error(`openssl failed: ${err.message} ${stderr}`)) : resolve()));
  });
}

/** A throwaway CA (in `workDir`) and a server certificate it signed for `names` (in the data dir); returns the CA's PEM. */
async function generateCaSignedCert(dataDir: string, workDir: string, names: string): Promise<string> {
  const caKey = path.join(workDir, 'ca.key');
  const caCrt = path.join(workDir, 'ca.crt');
  const csr = path.join(workDir, 'server.csr');
  const ext = path.join(workDir, 'server.ext');
  const crt = path.join(dataDir, 'server.crt');
  const key = path.join(dataDir, 'server.key');
  await openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=pg-resilient test CA', '-days', '2',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
    '-keyout', caKey, '-out', caCrt]);
  await openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=pg-resilient test server', '-keyout', key, '-out', csr]);
  await fsp.writeFile(ext, `subjectAltName=${names}\nbasicConstraints=CA:FALSE\n`);
  await openssl(['x509', '-req', '-in', csr, '-CA', caCrt, '-CAkey', caKey, '-CAcreateserial', '-days', '2', '-extfile', ext, '-out', crt]);
  await fsp.chmod(key, 0o600);
  chownToOwner(key);
  chownToOwner(crt);
  return fsp.readFile(caCrt, 'utf8');
}

async function tryConnect(config: ClientConfig, timeoutMs: number): Promise<Error | undefined> {
  const c = new pg.Client({ ...config, connectionTimeoutMillis: timeoutMs });
  c.on('error', () => {});
  try {
    await c.connect();
    await c.query('SELECT 1');
    return undefined;
  } catch (e) {
    return e instanceof Error ? e : new Error(String(e));
  } finally {
    await c.end().catch(() => {});
  }
}

export async function startPgServer(opts: StartPgServerOptions = {}): Promise<PgServer> {
  const password = opts.password ?? DEFAULT_TEST_PASSWORD;
  const port = opts.port ?? (await freePort());
  const template = await templateFor(password);
  const baseDir = await makeTempDir('pgr-pg-');
  const dataDir = path.join(baseDir, 'data');
  const logFile = path.join(baseDir, 'postgres.log');
  await copyDir(template, dataDir);
  await fsp.writeFile(logFile, '');
  chownToOwner(logFile);

  let caCertPem: string | undefined;
  let caCertFile: string | undefined;
  if (opts.ssl === true) caCertPem = await generateCert(dataDir);
  else if (typeof opts.ssl === 'object') caCertPem = await generateCaSignedCert(dataDir, baseDir, opts.ssl.names ?? 'DNS:localhost,IP:127.0.0.1');
  if (caCertPem !== undefined) {
    caCertFile = path.join(baseDir, 'root.crt');
    await fsp.writeFile(caCertFile, caCertPem);
  }

  const settings: Record<string, string | number> = {
    listen_addresses: '127.0.0.1',
    port,
    unix_socket_directories: baseDir,
    max_connections: 100,
    // Durability is irrelevant for throwaway servers; these make start/stop/checkpoints fast.
    fsync: 'off',
    synchronous_commit: 'off',
    full_page_writes: 'off',
    shared_buffers: '16MB',
    ssl: opts.ssl !== undefined && opts.ssl !== false ? 'on' : 'off',
    log_line_prefix: '%m [%p] %a ',
    ...opts.settings,
  };
  await fsp.appendFile(
    path.join(dataDir, 'postgresql.conf'),
    '\n# pg-resilient test server\n' +
      Object.entries(settings).map(([k, v]) => `${k} = ${quoteConfValue(v)}`).join('\n') + '\n',
  );

  const host = '127.0.0.1';
  const user = 'postgres';
  const database = 'postgres';
  let destroyed = false;

  const baseConfig = (): ClientConfig => {
    const c: ClientConfig = { host, port, user, password, database };
    if (caCertPem !== undefined) {
      // A certificate made for another name is still trusted by the helper's own connections.
      c.ssl = typeof opts.ssl === 'object' && opts.ssl.names !== undefined
        ? { ca: caCertPem, checkServerIdentity: () => undefined }
        : { ca: caCertPem };
    }
    return c;
  };

  const killSync = (): void => {
    const pid = readPostmasterPid(dataDir);
    if (pid !== undefined && processAlive(pid)) {
      // SIGQUIT is PostgreSQL's immediate shutdown: the postmaster takes its backends down with it,
      // which a SIGKILL would not do. It is sent synchronously, so it works from an 'exit' hook.
      try {
        process.kill(pid, 'SIGQUIT');
      } catch {
        // already gone
      }
    }
    fs.rmSync(baseDir, { recursive: true, force: true });
  };
  const tracker = { killSync };
  live.add(tracker);
  installExitHooks();

  const running = (): boolean => {
    const pid = readPostmasterPid(dataDir);
    return pid !== undefined && processAlive(pid);
  };

  const waitReady = async (timeoutMs: number): Promise<void> => {
    const deadline = Date.now() + timeoutMs;
    let last: Error | undefined;
    while (Date.now() < deadline) {
      last = await tryConnect(baseConfig(), 2000);
      if (last === undefined) return;
      await sleep(50);
    }
    throw new Error(`server on port ${port} did not accept connections: ${last?.message ?? 'timeout'}`);
  };

  const start = async (o: { waitReady?: boolean } = {}): Promise<void> => {
    if (destroyed) throw new Error('server destroyed');
    if (running()) {
      if (o.waitReady !== false) await waitReady(30_000);
      return;
    }
    // After a crash a stale lock file may name a zombie pid (the container's init may not reap);
    // the postmaster would then refuse to start, so drop the file when its owner is dead.
    await reapOrphans();
    const stale = readPostmasterPid(dataDir);
    if (stale !== undefined && !processAlive(stale)) {
      await fsp.rm(path.join(dataDir, 'postmaster.pid'), { force: true });
      // The unix socket lock file names the same dead pid and blocks startup the same way.
      await fsp.rm(path.join(baseDir, `.s.PGSQL.${port}.lock`), { force: true });
      await fsp.rm(path.join(baseDir, `.s.PGSQL.${port}`), { force: true });
    }
    const wait = o.waitReady !== false;
    await runPgBinary(
      'pg_ctl',
      ['-D', dataDir, '-l', logFile, wait ? '-w' : '-W', '-t', '30', 'start'],
      40_000,
    );
    if (wait) await waitReady(30_000);
  };

  const stop = async (mode: StopMode = 'fast', o: { wait?: boolean } = {}): Promise<void> => {
    if (!running()) return;
    const wait = o.wait !== false;
    await runPgBinary('pg_ctl', ['-D', dataDir, '-m', mode, wait ? '-w' : '-W', '-t', '30', 'stop'], 40_000);
  };

  // Backends orphaned by kill9(): they exit on their own once they notice the postmaster died,
  // but keep the shared memory attached until then, and a new postmaster refuses to start.
  let orphans: number[] = [];
  const reapOrphans = async (): Promise<void> => {
    if (orphans.length === 0) return;
    const list = orphans;
    if (!(await waitFor(() => list.every((c) => !processAlive(c)), 5000))) {
      for (const c of list) {
        try {
          process.kill(c, 'SIGKILL');
        } catch {
          // gone already
        }
      }
      await waitFor(() => list.every((c) => !processAlive(c)), 5000);
    }
    orphans = [];
  };

  const kill9 = async (o: { withChildren?: boolean } = {}): Promise<void> => {
    const pid = readPostmasterPid(dataDir);
    if (pid === undefined || !processAlive(pid)) return;
    const children = childPids(pid);
    process.kill(pid, 'SIGKILL');
    if (o.withChildren) {
      for (const c of children) {
        try {
          process.kill(c, 'SIGKILL');
        } catch {
          // gone already
        }
      }
    }
    orphans.push(...children);
    await waitFor(() => !processAlive(pid), 5000);
  };

  const admin = async <R extends QueryResultRow = QueryResultRow>(sql: string, values?: unknown[]): Promise<R[]> => {
    const c = new pg.Client({ ...baseConfig(), connectionTimeoutMillis: 10_000, application_name: 'pgr-admin' });
    c.on('error', () => {});
    await c.connect();
    try {
      const res = await c.query<R>(sql, values);
      return res.rows;
    } finally {
      await c.end().catch(() => {});
    }
  };

  const server: PgServer = {
    host,
    port,
    user,
    password,
    database,
    connectionString: `postgresql://${user}:${encodeURIComponent(password)}@${host}:${port}/${database}`,
    get config() {
      return baseConfig();
    },
    dataDir,
    baseDir,
    logFile,
    caCertPem,
    caCertFile,
    get pid() {
      const pid = readPostmasterPid(dataDir);
      return pid !== undefined && processAlive(pid) ? pid : undefined;
    },
    start,
    stop,
    async restart(mode: StopMode = 'fast') {
      await stop(mode);
      await start();
    },
    kill9,
    admin,
    psql: admin,
    async terminateBackends(filter: TerminateFilter = {}) {
      const conds = [`backend_type = 'client backend'`, 'pid <> pg_backend_pid()'];
      const values: unknown[] = [];
      if (filter.applicationName !== undefined) {
        values.push(filter.applicationName);
        conds.push(`application_name = $${values.length}`);
      }
      if (filter.database !== undefined) {
        values.push(filter.database);
        conds.push(`datname = $${values.length}`);
      }
      if (filter.pids !== undefined) {
        values.push(filter.pids);
        conds.push(`pid = ANY($${values.length}::int[])`);
      }
      const rows = await admin<{ ok: boolean }>(
        `SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity WHERE ${conds.join(' AND ')}`,
        values,
      );
      return rows.filter((r) => r.ok).length;
    },
    async appendConf(s) {
      await fsp.appendFile(
        path.join(dataDir, 'postgresql.conf'),
        Object.entries(s).map(([k, v]) => `${k} = ${quoteConfValue(v)}`).join('\n') + '\n',
      );
    },
    async writeDataFile(name, content, mode = 0o600) {
      const p = path.join(dataDir, name);
      await fsp.writeFile(p, content, { mode });
      chownToOwner(p);
    },
    readLog() {
      return fsp.readFile(logFile, 'utf8').catch(() => '');
    },
    async destroy() {
      if (destroyed) return;
      destroyed = true;
      try {
        await stop('immediate');
      } catch {
        // Fall back to signals below; destroy must not throw.
      }
      if (running()) await kill9({ withChildren: true }).catch(() => {});
      live.delete(tracker);
      await fsp.rm(baseDir, { recursive: true, force: true });
    },
  };

  try {
    await start();
  } catch (e) {
    const log = await server.readLog();
    await server.destroy();
    throw new Error(`${e instanceof Error ? e.message : String(e)}\n--- postgres log ---\n${log}`);
  }
  return server;
}
