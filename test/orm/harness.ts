// The ORM tier's harness: for one ORM and one fault, run the ORM on pg-resilient and on raw pg at
// the same time, each in a child process (test/orm/child.ts) with 8 concurrent loops of a read by
// primary key and an upsert, hit the server with the fault, and collect one line per pool:
// requests, errors by kind, crashed or not. The target (where the children connect, their tables,
// the fault) is the throwaway server's by default; the cluster tier (test/cluster/orm.test.ts)
// brings its own: HAProxy, a killed primary, a switchover.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import pg from 'pg';
import type { PgServer } from '../helpers/pg-server.ts';
import { ROWS, type Conn, type PoolKind } from './adapter.ts';
import type { ChildMessage, ChildStats } from './child.ts';

export type Fault = 'terminate' | 'restart';
export const FAULTS: readonly Fault[] = ['terminate', 'restart'];
export const KINDS: readonly PoolKind[] = ['resilient', 'raw'];

export interface OrmCase {
  /** File name in test/orm/adapters/. */
  name: string;
  /** [major, minor] of Node it needs, if more than Node 20. */
  minNode?: [number, number];
}

/** Where the children connect, their tables, and the fault that hits them. */
export interface Target {
  conn: Conn;
  /** pg-resilient options beyond the connection (children of the `resilient` kind only). */
  poolOptions?: Record<string, unknown>;
  /** The table of (orm, pool), prepared by the caller. */
  table(orm: string, kind: PoolKind): string;
  /** Hits the running children's server; resolves to what it did, once the fault completed. */
  fault(kinds: readonly PoolKind[]): Promise<string>;
}

export interface Timing {
  /** From 'go' to the fault. */
  faultAtMs: number;
  /** From 'go' to 'stop', at least. */
  runMs: number;
  /** After the fault completed, at least this long before 'stop' (recovery must show). */
  afterFaultMs: number;
  /** After 'stop', a child that has not exited is killed and reported hung. Defaults to 15 s. */
  exitTimeoutMs?: number;
}

export const DEFAULT_TIMING: Timing = { faultAtMs: 2000, runMs: 6000, afterFaultMs: 2500 };

export interface PoolLine {
  orm: string;
  kind: PoolKind;
  fault: string;
  requests: number;
  errors: Record<string, number>;
  errorCount: number;
  crashed: boolean;
  /** The crash's error line from the child's stderr. */
  crash?: string;
  /** The ORM could not even be set up (or not on this pool: NotWiredError). */
  setupFailed?: string;
  scope: string;
  okAfterLastError: number;
  /** The longest request, ms. */
  maxMs: number;
  /** What the fault did (sessions killed, restart duration). */
  faultNote: string;
}

const READY_TIMEOUT_MS = 60_000;
const EXIT_TIMEOUT_MS = 15_000;
/** application_name of every session a child opens: pgr-orm-resilient / pgr-orm-raw. */
const APP_PREFIX = 'pgr-orm-';
const BUSY_WAIT_MS = 3000;

export function tableFor(orm: string, kind: PoolKind): string {
  return `orm_${orm.replace(/-/g, '_')}_${kind}`;
}

export function nodeAtLeast([major, minor]: [number, number]): boolean {
  const [ma = 0, mi = 0] = process.versions.node.split('.').map(Number);
  return ma > major || (ma === major && mi >= minor);
}

/** One table per (ORM, pool), rows 1..ROWS, so the two runs don't wait on each other's row locks. */
export async function prepareTables(server: PgServer, orms: readonly OrmCase[]): Promise<void> {
  for (const { name } of orms) {
    for (const kind of KINDS) {
      const t = tableFor(name, kind);
      await server.admin(`DROP TABLE IF EXISTS ${t}; CREATE TABLE ${t} (id int PRIMARY KEY, name text NOT NULL);` +
        ` INSERT INTO ${t} SELECT g, 'row ' || g FROM generate_series(1, ${ROWS}) g`);
    }
  }
}

interface Running {
  orm: string;
  kind: PoolKind;
  messages: ChildMessage[];
  last?: ChildStats;
  stderr: string;
  exited: Promise<number | null>;
  child: ReturnType<typeof spawn>;
  ready: Promise<ChildMessage>;
}

function startChild(target: Target, orm: string, kind: PoolKind): Running {
  const ext = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
  const script = new URL(`./child${ext}`, import.meta.url).pathname;
  const child = spawn(process.execPath, [...process.execArgv.filter((a) => !a.startsWith('--test')), script, orm, kind, target.table(orm, kind)], {
    stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    // PGAPPNAME names every session pg opens in the child, whatever the ORM passes (none sets it).
    env: {
      ...process.env,
      PGR_ORM_CONN: JSON.stringify(target.conn),
      PGR_ORM_POOL_OPTIONS: JSON.stringify(kind === 'resilient' ? target.poolOptions ?? {} : {}),
      PGAPPNAME: `${APP_PREFIX}${kind}`,
    },
  });
  const r: Running = {
    orm,
    kind,
    messages: [],
    stderr: '',
    child,
    exited: once(child, 'exit').then(([code]) => code as number | null),
    ready: Promise.resolve({ type: 'ready', scope: '' }),
  };
  child.on('error', () => undefined); // a send to a child that just crashed; its exit tells the story
  child.stderr?.setEncoding('utf8').on('data', (d: string) => {
    if (r.stderr.length < 20_000) r.stderr += d;
  });
  r.ready = new Promise<ChildMessage>((resolve) => {
    const timer = setTimeout(() => resolve({ type: 'setup-failed', error: 'no ready message within 60 s', kind: 'timeout' }), READY_TIMEOUT_MS);
    child.on('message', (m: ChildMessage) => {
      r.messages.push(m);
      if (m.type === 'stats' || m.type === 'done') r.last = m.stats;
      if (m.type === 'ready' || m.type === 'setup-failed') {
        clearTimeout(timer);
        resolve(m);
      }
    });
    void r.exited.then(() => {
      clearTimeout(timer);
      resolve({ type: 'setup-failed', error: `exited before ready: ${crashLine(r.stderr) ?? 'no message'}`, kind: 'exit' });
    });
  });
  return r;
}

/** The line of a Node crash report that names the error, and whether it was an 'error' event. */
function crashLine(stderr: string): string | undefined {
  const lines = stderr.split('\n').map((l) => l.trim()).filter((l) => l.length > 0);
  const hit = lines.find((l) => /^(\w*Error|error)\b[^:]*:/.test(l)) ?? lines.find((l) => /error/i.test(l));
  if (hit === undefined) return undefined;
  const event = /Unhandled 'error' event/.test(stderr) ? "unhandled 'error' event: " : '';
  return `${event}${hit}`.slice(0, 160);
}

/**
 * Terminates every session of the children at moments when they have statements in flight: an
 * ORM that spends most of a request in JavaScript (MikroORM) would otherwise often have all its
 * connections idle in the pool, which a raw pool shrugs off. Each round kills every session once a
 * pool not yet caught busy is busy, until each pool was caught once (or BUSY_WAIT_MS passed). One
 * statement both checks and kills, so the check is not stale by the time the signals go out.
 */
async function terminateWhenBusy(server: PgServer, kinds: readonly PoolKind[]): Promise<string> {
  const admin = new pg.Client({ ...server.config, application_name: 'pgr-admin' });
  admin.on('error', () => undefined);
  await admin.connect();
  const waiting = new Set(kinds.map((k) => `${APP_PREFIX}${k}`));
  let rounds = 0;
  let killed = 0;
  try {
    const deadline = Date.now() + BUSY_WAIT_MS;
    while (waiting.size > 0) {
      const force = Date.now() >= deadline;
      if (force && rounds > 0) break;
      const { rows } = await admin.query<{ killed: string; busy: string[] | null }>(
        `WITH a AS (SELECT pid, state, application_name AS app FROM pg_stat_activity
                     WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() AND application_name LIKE $1),
              b AS (SELECT array_agg(DISTINCT app) AS busy FROM a WHERE state = 'active')
         SELECT (SELECT busy FROM b) AS busy,
                (SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM a
                  WHERE $2 OR (SELECT busy FROM b) && $3::text[]) AS killed`,
        [`${APP_PREFIX}%`, force, [...waiting]],
      );
      const n = Number(rows[0]?.killed ?? 0);
      if (n > 0) {
        rounds += 1;
        killed += n;
        for (const app of rows[0]?.busy ?? []) waiting.delete(app);
        if (force) break;
      }
    }
  } finally {
    await admin.end().catch(() => undefined);
  }
  const missed = [...waiting].map((a) => a.slice(APP_PREFIX.length));
  return `${rounds} round(s), ${killed} sessions killed${missed.length > 0 ? `, never caught busy: ${missed.join(', ')}` : ''}`;
}

/** The throwaway server as a target: its tables (prepareTables), terminate-all or a fast restart. */
export function serverTarget(server: PgServer, fault: Fault): Target {
  return {
    conn: { host: server.host, port: server.port, user: server.user, password: server.password, database: server.database },
    table: tableFor,
    async fault(kinds) {
      if (fault === 'terminate') return terminateWhenBusy(server, kinds);
      const t0 = Date.now();
      await server.restart('fast');
      return `down and up in ${Date.now() - t0} ms`;
    },
  };
}

/** Runs `orm` on both pools at once through `fault`; one line per pool. */
export function runFault(server: PgServer, orm: string, fault: Fault, timing: Timing = DEFAULT_TIMING): Promise<PoolLine[]> {
  return runOrms(serverTarget(server, fault), [orm], fault, timing);
}

/**
 * Runs every ORM of `orms` on both pools at once (a child each), through one fault of `target`
 * named `faultName`; one line per (ORM, pool).
 */
export async function runOrms(target: Target, orms: readonly string[], faultName: string, timing: Timing = DEFAULT_TIMING): Promise<PoolLine[]> {
  const runs = orms.flatMap((orm) => KINDS.map((kind) => startChild(target, orm, kind)));
  const ready = await Promise.all(runs.map((r) => r.ready));
  const going = runs.filter((_, i) => ready[i]!.type === 'ready');
  const goAt = Date.now();
  for (const r of going) if (r.child.connected) r.child.send({ type: 'go' });
  let faultDoneAt = goAt;
  let faultNote = '';
  if (going.length > 0) {
    await new Promise((res) => setTimeout(res, timing.faultAtMs));
    faultNote = await target.fault([...new Set(going.map((r) => r.kind))]);
    faultDoneAt = Date.now();
    const stopAt = Math.max(goAt + timing.runMs, faultDoneAt + timing.afterFaultMs);
    await new Promise((res) => setTimeout(res, Math.max(0, stopAt - Date.now())));
  }
  for (const r of going) if (r.child.connected) r.child.send({ type: 'stop' });
  const exitTimeoutMs = timing.exitTimeoutMs ?? EXIT_TIMEOUT_MS;
  // Every child gets the whole timeout from 'stop', not what the ones before it left over.
  const exits = runs.map(async (r) => {
    let hung = false;
    const killer = setTimeout(() => {
      hung = true;
      r.child.kill('SIGKILL');
    }, exitTimeoutMs);
    const code = await r.exited;
    clearTimeout(killer);
    return { code, hung };
  });
  const lines: PoolLine[] = [];
  for (const [i, r] of runs.entries()) {
    const { code, hung } = await exits[i]!;
    const setup = ready[i]!;
    const done = r.messages.some((m) => m.type === 'done');
    const stats = r.last;
    const line: PoolLine = {
      orm: r.orm,
      kind: r.kind,
      fault: faultName,
      requests: stats?.requests ?? 0,
      errors: stats?.errors ?? {},
      errorCount: Object.values(stats?.errors ?? {}).reduce((a, b) => a + b, 0),
      crashed: setup.type === 'ready' && !done,
      scope: setup.type === 'ready' ? setup.scope : '-',
      okAfterLastError: stats?.okAfterLastError ?? 0,
      maxMs: stats?.maxMs ?? 0,
      faultNote,
    };
    if (setup.type === 'setup-failed') line.setupFailed = setup.error;
    // A child that never reported 'done' either crashed or had a request that never settled.
    if (line.crashed) line.crash = hung ? `hung: a request never settled, killed after ${exitTimeoutMs / 1000} s` : `exit ${code}: ${crashLine(r.stderr) ?? 'no message'}`;
    lines.push(line);
  }
  return lines;
}

export function formatLine(l: PoolLine): string {
  const pool = l.kind === 'resilient' ? 'pg-resilient' : 'raw pg';
  const head = `${l.orm.padEnd(11)} ${pool.padEnd(12)} ${l.fault.padEnd(12)}`;
  if (l.setupFailed !== undefined) return `${head} NOT RUN: ${l.setupFailed}`;
  const kinds = Object.entries(l.errors).sort((a, b) => b[1] - a[1]).map(([k, n]) => `${k}×${n}`).join(' ');
  return `${head} requests=${String(l.requests).padStart(5)} errors=${String(l.errorCount).padStart(3)}` +
    ` crashed=${l.crashed ? 'YES' : 'no '} longest=${l.maxMs}ms idempotent=${l.scope}${kinds ? ` [${kinds}]` : ''}${l.crash ? ` crash: ${l.crash}` : ''}` +
    ` (${l.faultNote})`;
}
