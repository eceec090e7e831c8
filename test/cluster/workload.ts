import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { Pool } from '../../src/index.ts';
import { rwConnectionConfig, waitHealthy } from '../helpers/cluster.ts';

/** Anything with pg.Pool's query(): our Pool or a raw pg.Pool. */
export interface Queryable {
  query(config: { text: string; values?: unknown[]; idempotent?: boolean }): Promise<unknown>;
}

export interface RequestRecord {
  readonly startedAt: number;
  readonly endedAt: number;
  readonly ok: boolean;
  readonly write: boolean;
  /** The error's SQLSTATE or, without one, its message. */
  readonly error?: string;
  /** The error's message (PgBouncer sends several under one SQLSTATE, 08P01). */
  readonly message?: string;
}

export interface WorkloadResult {
  readonly name: string;
  readonly requests: number;
  readonly errors: number;
  readonly errorKinds: Record<string, number>;
  /** "code message" → count. */
  readonly errorMessages: Record<string, number>;
  readonly maxLatencyMs: number;
  readonly p50Ms: number;
  /** From the fault to the end of the last request that failed or was slow (> slowMs). */
  readonly recoveryMs: number | undefined;
  readonly records: readonly RequestRecord[];
}

export interface Workload {
  /** Stops sending, waits for requests in flight, and summarises relative to `faultAt`. */
  stop(faultAt: number): Promise<WorkloadResult>;
}

const SLOW_MS = 250;

/**
 * A steady, open-loop workload: a request every 1000/rate ms whatever the previous ones do
 * (like real traffic), alternating a read and an idempotent upsert on a small key space.
 */
export function startWorkload(name: string, pool: Queryable, options: { ratePerSec: number; table: string; keys?: number }): Workload {
  const records: RequestRecord[] = [];
  const inFlight = new Set<Promise<void>>();
  let n = 0;
  const keys = options.keys ?? 100;
  const send = (): void => {
    n += 1;
    const key = n % keys;
    const write = n % 2 === 0;
    const startedAt = performance.now();
    const query = write
      ? { text: `INSERT INTO ${options.table} (k, v, at) VALUES ($1, $2, now()) ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v, at = now()`, values: [key, n], idempotent: true }
      : { text: `SELECT v FROM ${options.table} WHERE k = $1`, values: [key] };
    const p: Promise<void> = pool.query(query).then(
      () => { records.push({ startedAt, endedAt: performance.now(), ok: true, write }); },
      (err: { code?: string; message?: string }) => {
        records.push({ startedAt, endedAt: performance.now(), ok: false, write, error: err.code ?? err.message ?? String(err), message: err.message ?? String(err) });
      },
    ).finally(() => inFlight.delete(p));
    inFlight.add(p);
  };
  const timer = setInterval(send, 1000 / options.ratePerSec);
  return {
    async stop(faultAt: number): Promise<WorkloadResult> {
      clearInterval(timer);
      await Promise.all([...inFlight]);
      return summarise(name, records, faultAt);
    },
  };
}

export function summarise(name: string, records: RequestRecord[], faultAt: number): WorkloadResult {
  const latencies = records.map((r) => r.endedAt - r.startedAt).sort((a, b) => a - b);
  const errorKinds: Record<string, number> = {};
  const errorMessages: Record<string, number> = {};
  for (const r of records) {
    if (r.ok) continue;
    errorKinds[r.error ?? '?'] = (errorKinds[r.error ?? '?'] ?? 0) + 1;
    const key = r.error === r.message ? (r.message ?? '?') : `${r.error} ${r.message}`;
    errorMessages[key] = (errorMessages[key] ?? 0) + 1;
  }
  const impaired = records.filter((r) => r.endedAt >= faultAt && (!r.ok || r.endedAt - r.startedAt > SLOW_MS));
  const lastImpaired = impaired.reduce((m, r) => Math.max(m, r.endedAt), -Infinity);
  return {
    name,
    requests: records.length,
    errors: records.filter((r) => !r.ok).length,
    errorKinds,
    errorMessages,
    maxLatencyMs: Math.round(latencies.at(-1) ?? 0),
    p50Ms: Math.round(latencies[Math.floor(latencies.length / 2)] ?? 0),
    recoveryMs: impaired.length === 0 ? undefined : Math.round(lastImpaired - faultAt),
    records,
  };
}

/** The one line per scenario the issue asks for. */
export function scenarioLine(scenario: string, r: WorkloadResult): string {
  const kinds = Object.entries(r.errorKinds).map(([k, v]) => `${k}×${v}`).join(',');
  return `[scenario] ${scenario.padEnd(22)} ${r.name.padEnd(13)} requests=${String(r.requests).padStart(4)} errors=${String(r.errors).padStart(3)}${kinds === '' ? '' : ` (${kinds})`} longest=${r.maxLatencyMs}ms recovered=${r.recoveryMs === undefined ? 'unaffected' : `${r.recoveryMs}ms`}`;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Waits for a healthy cluster and creates the workload's table on the primary. */
export async function prepareCluster(table: string): Promise<void> {
  await waitHealthy(120_000);
  const c = new pg.Client(rwConnectionConfig());
  await c.connect();
  await c.query(`CREATE TABLE IF NOT EXISTS ${table} (k int PRIMARY KEY, v bigint, at timestamptz)`);
  await c.end();
}

export interface ScenarioConnection {
  host: string;
  port: number;
  user: string;
  password: string;
  database: string;
}

export interface ScenarioOptions {
  /** Where both pools connect: HAProxy, PgBouncer. */
  connection: ScenarioConnection;
  table: string;
  /** Requests per second per pool. */
  ratePerSec: number;
  applicationName: string;
  /** Load before the fault. Defaults to 3000 ms. */
  warmMs?: number;
  /**
   * Both pools also have a read of this many ms running when the fault hits, so the control's
   * failure does not depend on whether one of its paced requests happened to be in flight.
   * It must outlast the fault command (docker-compose kill takes about a second). None by default.
   */
  holdInFlightMs?: number;
}

export interface ScenarioResult {
  ours: WorkloadResult;
  raw: WorkloadResult;
  /** The held reads' outcomes with `holdInFlightMs`: 'ok' or 'failed: <code> <message>'. */
  inFlight: { ours: string; raw: string } | undefined;
  /** pg-resilient's failover reports during the scenario. */
  reports: string[];
}

/**
 * One scenario: pg-resilient's Pool and a raw pg.Pool (the control) under the same steady load
 * through `connection`, `fault()` injected, load kept for `settleMs` more; prints one line per
 * pool (scenarioLine) and pg-resilient's failover reports.
 */
export async function runScenario(name: string, fault: () => Promise<unknown>, settleMs: number, o: ScenarioOptions): Promise<ScenarioResult> {
  const ours = new Pool({ ...o.connection, max: 8, retry: { maxElapsedMs: 30_000 }, application_name: o.applicationName });
  const raw = new pg.Pool({ ...o.connection, max: 8 });
  raw.on('error', () => undefined); // the control must not crash the test process
  const reports: string[] = [];
  ours.on('failoverReport', (r) => reports.push(r.summary));
  try {
    await Promise.all([ours.query('SELECT 1'), raw.query('SELECT 1')]);
    const a = startWorkload('pg-resilient', ours, { ratePerSec: o.ratePerSec, table: o.table });
    const b = startWorkload('raw pg.Pool', raw as never, { ratePerSec: o.ratePerSec, table: o.table });
    await sleep(o.warmMs ?? 3000);
    const outcome = (p: Promise<unknown>): Promise<string> => p.then(() => 'ok', (e: { code?: string; message?: string }) => `failed: ${e.code === undefined ? '' : `${e.code} `}${e.message ?? String(e)}`);
    const holdSec = (o.holdInFlightMs ?? 0) / 1000;
    const held = holdSec > 0
      ? { ours: outcome(ours.query({ text: 'SELECT pg_sleep($1)', values: [holdSec], idempotent: true })), raw: outcome(raw.query('SELECT pg_sleep($1)', [holdSec])) }
      : undefined;
    if (held !== undefined) await sleep(300); // both statements are running on the primary
    const faultAt = performance.now();
    const info = await fault();
    console.log(`[cluster] ${name}: ${JSON.stringify(info)}`);
    await sleep(settleMs);
    const [ro, rr] = await Promise.all([a.stop(faultAt), b.stop(faultAt)]);
    console.log(scenarioLine(name, ro));
    console.log(scenarioLine(name, rr));
    for (const summary of reports) console.log(`[scenario] ${name.padEnd(22)} report: ${summary}`);
    const inFlight = held === undefined ? undefined : { ours: await held.ours, raw: await held.raw };
    if (inFlight !== undefined) console.log(`[scenario] ${name.padEnd(22)} ${holdSec} s read in flight at the fault: pg-resilient ${inFlight.ours}; raw pg.Pool ${inFlight.raw}`);
    return { ours: ro, raw: rr, inFlight, reports };
  } finally {
    await ours.end();
    await raw.end().catch(() => undefined);
  }
}
