// The differential tier's harness: one behavioural case, run against node-postgres's `pg.Pool`
// and against pg-resilient's `Pool` on the same real PostgreSQL, and the two observations
// compared. pg.Pool is the reference: a case first checks that pg.Pool's observation is what the
// case claims to observe (so a case that cannot fail is caught), then that ours equals it, or,
// for a documented deliberate difference, that ours shows its own documented behaviour.
//
// An observation is plain data (strings, numbers, nested arrays/objects) so that
// assert.deepStrictEqual prints a readable diff of the two pools' histories.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { Pool } from '../../src/index.ts';
import { startPgServer, type PgServer } from './pg-server.ts';

export type Kind = 'pg' | 'ours';

/** The events pg.Pool emits, recorded in order with their arguments. */
export const POOL_EVENTS = ['connect', 'acquire', 'release', 'remove', 'error'] as const;
export type PoolEvent = (typeof POOL_EVENTS)[number];

/** pg-resilient's extra options, given only to our pool (pg.Pool would hand them to each Client). */
export type OursOnly = Record<string, unknown>;

/** One side of the comparison: makes pools of one kind on the shared server and ends them after the case. */
export interface Subject {
  readonly kind: Kind;
  readonly label: string;
  readonly server: PgServer;
  /** A pool on the server (`server.config` plus `config`); both kinds are typed as pg.Pool. */
  pool(config?: pg.PoolConfig, ours?: OursOnly): pg.Pool;
  /** A pool from `config` alone (no server settings added), for unreachable hosts and bad options. */
  rawPool(config?: pg.PoolConfig, ours?: OursOnly): pg.Pool;
}

const describeValue = (v: unknown): string => {
  if (v === undefined) return 'undefined';
  if (v instanceof Error) return `${v.constructor.name}: ${v.message}`;
  return typeof v === 'object' && v !== null ? v.constructor.name : `${typeof v} ${String(v)}`;
};

/** The parts of an error the contract is about. */
export interface ErrorShape {
  class: string;
  message: string;
  code: string | undefined;
}

export function errorShape(err: unknown): ErrorShape {
  if (!(err instanceof Error)) return { class: typeof err, message: String(err), code: undefined };
  const code = (err as { code?: unknown }).code;
  return { class: err.constructor.name, message: err.message, code: typeof code === 'string' ? code : undefined };
}

/** How a call settled within a bound: its value, its error, or still pending; with coarse timing. */
export type Outcome<T> =
  | { status: 'resolved'; value: T; ms: number }
  | { status: 'rejected'; error: ErrorShape; raw: unknown; ms: number }
  | { status: 'pending'; ms: number };

export async function outcome<T>(p: Promise<T>, boundMs: number, startedAt = performance.now()): Promise<Outcome<T>> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const pending = new Promise<'pending'>((resolve) => {
    timer = setTimeout(() => resolve('pending'), boundMs);
  });
  try {
    const settled = await Promise.race([
      p.then((value) => ({ status: 'resolved' as const, value }), (raw: unknown) => ({ status: 'rejected' as const, raw })),
      pending,
    ]);
    const ms = Math.round(performance.now() - startedAt);
    if (settled === 'pending') return { status: 'pending', ms };
    if (settled.status === 'resolved') return { status: 'resolved', value: settled.value, ms };
    return { status: 'rejected', error: errorShape(settled.raw), raw: settled.raw, ms };
  } finally {
    clearTimeout(timer);
  }
}

/** An outcome as comparable data: the status and, if rejected, the error (timings are compared apart, coarsely). */
export function settledAs(o: Outcome<unknown>): string {
  if (o.status === 'rejected') return `rejected ${o.error.class}: ${o.error.message}`;
  return o.status;
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `cond` every 5 ms for up to `ms`; true when it held (bounded, never hangs). */
export async function until(cond: () => boolean, ms: number): Promise<boolean> {
  const deadline = performance.now() + ms;
  while (performance.now() < deadline) {
    if (cond()) return true;
    await sleep(5);
  }
  return cond();
}

export function counts(pool: pg.Pool): string {
  return `total=${pool.totalCount} idle=${pool.idleCount} waiting=${pool.waitingCount} expired=${pool.expiredCount}`;
}

/** A step waits for this long without events before it is recorded. */
const QUIET_MS = 30;

/**
 * Records a pool's events in order, naming clients c1, c2, … by first appearance (so the two
 * pools' histories compare), and the counts after each step the case marks.
 */
export class Trace {
  readonly pool: pg.Pool;
  readonly steps: Array<{ step: string; counts: string; events: string[] }> = [];
  readonly all: string[] = [];
  #fresh: string[] = [];
  readonly #ids = new Map<object, string>();

  constructor(pool: pg.Pool, events: readonly PoolEvent[] = POOL_EVENTS) {
    this.pool = pool;
    for (const event of events) {
      pool.on(event, (...args: unknown[]) => this.#record(event, args));
    }
  }

  /** The name of a client in this trace (c1, c2, … by first appearance). */
  id(client: object | undefined): string {
    if (client === undefined || client === null) return 'none';
    let id = this.#ids.get(client);
    if (id === undefined) {
      id = `c${this.#ids.size + 1}`;
      this.#ids.set(client, id);
    }
    return id;
  }

  #record(event: PoolEvent, args: unknown[]): void {
    let line: string;
    if (event === 'release') {
      const [err, client] = args;
      // pg.Pool passes null after pool.query's success and undefined after release(): both mean
      // "no error" to every listener seen in the wild, so they read alike here.
      line = `release ${this.id(client as object)}${err === undefined || err === null ? '' : ` err=${describeValue(err)}`}`;
    } else if (event === 'error') {
      const [err, client] = args;
      line = `error ${this.id(client as object)} ${describeValue(err)}`;
    } else {
      line = `${event} ${this.id(args[0] as object)}`;
    }
    this.all.push(line);
    this.#fresh.push(line);
  }

  /**
   * Marks a step once the pool is quiet (no event for QUIET_MS, at most 1 s): the counts then,
   * and the events since the previous step. Waiting for quiet keeps the comparison about what
   * happened and in which order, not about whether an event came in this tick or the next.
   * `awaited`: events pg.Pool is known to emit by then (a 'remove' follows a socket's close, late
   * on a loaded machine); waited for up to 2 s first, so their absence is a real difference.
   */
  async step(label: string, ...awaited: string[]): Promise<void> {
    if (awaited.length > 0) await until(() => awaited.every((e) => this.all.includes(e)), 2000);
    let seen = -1;
    const deadline = performance.now() + 1000;
    while (seen !== this.all.length && performance.now() < deadline) {
      seen = this.all.length;
      await sleep(QUIET_MS);
    }
    this.steps.push({ step: label, counts: counts(this.pool), events: this.#fresh });
    this.#fresh = [];
  }

  /** The counts right now, synchronously (pg.Pool updates them within the call that changed them). */
  countsNow(label: string): void {
    this.steps.push({ step: `${label} (at once)`, counts: counts(this.pool), events: [] });
  }

  /** A line of the case's own in the event history (a hook ran, a call settled). */
  note(line: string): void {
    this.all.push(line);
    this.#fresh.push(line);
  }
}

export interface CaseOptions<O> {
  /** Checks on pg.Pool's observation: the case really observes what its name says. */
  expectPg?: (pgObs: O) => void;
  /**
   * A documented deliberate difference (listed in the README's drop-in differences): instead of
   * equality, pg-resilient's observation is checked against its own documented behaviour.
   */
  deliberate?: { reason: string; expectOurs: (ours: O, pgObs: O) => void };
  /** Compares the two observations instead of deepStrictEqual (coarse timing bounds). */
  compare?: (ours: O, pgObs: O) => void;
  /**
   * Runs both pools at the same time (for cases that mostly wait: idle timeouts, lifetimes,
   * child processes). Only for cases whose two runs share nothing but the server.
   */
  concurrent?: boolean;
  timeoutMs?: number;
}

let server: PgServer | undefined;

/** Starts the tier's PostgreSQL before the cases of the enclosing suite and destroys it after them. */
export function useServer(): () => PgServer {
  before(async () => {
    server = await startPgServer({ settings: { max_connections: 60 } });
  });
  after(async () => {
    await server?.destroy();
    server = undefined;
  });
  return () => {
    if (server === undefined) throw new Error('the differential server is not running');
    return server;
  };
}

// PGR_DIFF_SELF_CHECK=1 puts pg.Pool on both sides: every case that is not a deliberate
// difference must then pass, which shows the cases observe pg.Pool deterministically.
const selfCheck = process.env['PGR_DIFF_SELF_CHECK'] === '1';

function makeSubject(kind: Kind, srv: PgServer, made: pg.Pool[]): Subject {
  const build = (config: pg.PoolConfig, ours: OursOnly): pg.Pool => {
    const pool = kind === 'pg' || selfCheck
      ? new pg.Pool(config)
      : (new Pool({ ...config, ...ours } as ConstructorParameters<typeof Pool>[0]) as unknown as pg.Pool);
    made.push(pool);
    return pool;
  };
  return {
    kind,
    label: kind === 'pg' ? 'pg.Pool' : 'pg-resilient',
    server: srv,
    pool: (config = {}, ours = {}) => build({ ...srv.config, ...config }, ours),
    rawPool: (config = {}, ours = {}) => build(config, ours),
  };
}

async function endAll(pools: pg.Pool[]): Promise<void> {
  // A case may leave clients checked out or a pool already ended: end what can be ended, bounded.
  await Promise.all(pools.map((p) => (p.ending ? undefined : outcome(p.end(), 3000))));
}

async function observe<O>(kind: Kind, run: (s: Subject) => Promise<O>): Promise<O> {
  const made: pg.Pool[] = [];
  const srv = server;
  if (srv === undefined) throw new Error('call useServer() in the test file');
  try {
    return await run(makeSubject(kind, srv, made));
  } finally {
    await endAll(made);
  }
}

/**
 * One differential case: `run` is called once with pg.Pool's subject, then once with ours
 * (one after the other, so timings don't interfere), and the observations compared.
 */
export function differential<O>(name: string, run: (s: Subject) => Promise<O>, options: CaseOptions<O> = {}): void {
  test(name, { timeout: options.timeoutMs ?? 20_000 }, async () => {
    let pgObs: O;
    let ours: O;
    if (options.concurrent === true) {
      [pgObs, ours] = await Promise.all([observe('pg', run), observe('ours', run)]);
      options.expectPg?.(pgObs);
    } else {
      pgObs = await observe('pg', run);
      options.expectPg?.(pgObs);
      ours = await observe('ours', run);
    }
    if (options.deliberate !== undefined) {
      options.deliberate.expectOurs(ours, pgObs);
    } else if (options.compare !== undefined) {
      options.compare(ours, pgObs);
    } else {
      assert.deepStrictEqual(ours, pgObs, 'pg-resilient observed differently from pg.Pool');
    }
  });
}

/** Runs `child.ts`/`child.js` next to the differential tests with a scenario; its JSON lines and how it ended. */
export interface ChildResult {
  lines: Array<Record<string, unknown>>;
  /** Exit code, or null when the process was killed at the bound. */
  code: number | null;
  killed: boolean;
  ms: number;
  /** From the first JSON line (the scenario's work done) to the exit. */
  msAfterFirstLine: number | undefined;
  stderr: string;
}

/**
 * `boundMs`: the child is killed this long after its first JSON line (its scenario's work done),
 * or 4 × that long after its start, so a loaded machine's slow start-up is not taken for a hang.
 */
export function runChild(kind: Kind, scenario: string, srv: PgServer, boundMs: number, childUrl: URL): Promise<ChildResult> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [fileURLToPath(childUrl), selfCheck ? 'pg' : kind, scenario], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, PGR_DIFF_CONFIG: JSON.stringify(srv.config) },
    });
    let stdout = '';
    let stderr = '';
    let firstLineAt: number | undefined;
    let killed = false;
    const kill = (): void => {
      killed = true;
      child.kill('SIGKILL');
    };
    let timer = setTimeout(kill, boundMs * 4);
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
      if (firstLineAt === undefined && stdout.includes('\n')) {
        firstLineAt = performance.now();
        clearTimeout(timer);
        timer = setTimeout(kill, boundMs);
      }
    });
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      const lines = stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
      const now = performance.now();
      const msAfterFirstLine = firstLineAt === undefined ? undefined : Math.round(now - firstLineAt);
      resolve({ lines, code, killed, ms: Math.round(now - started), msAfterFirstLine, stderr });
    });
  });
}

/** The URL of the child script next to `testUrl` (child.ts under type stripping, child.js compiled). */
export function childScript(testUrl: string): URL {
  return new URL(testUrl.endsWith('.ts') ? './child.ts' : './child.js', testUrl);
}
