// The failover benchmark: the Patroni cluster's primary is killed, then switched over, while raw
// pg.Pool (HAProxy) and pg-resilient (HAProxy, multi-host, Patroni discovery) carry the same load;
// application-visible errors, the longest request, time to recover, and whether every
// acknowledged write is there exactly once.
import pg from 'pg';
import { Pool as ResilientPool } from '../../src/index.ts';
import type { PoolOptions } from '../../src/index.ts';
import {
  CLUSTER_DATABASE,
  CLUSTER_PASSWORD,
  CLUSTER_USER,
  NODES,
  PATRONI_URLS,
  rwConnectionConfig,
  runCluster,
  type KillResult,
  type StartResult,
  type SwitchoverResult,
  type TimedClusterStatus,
} from '../../test/helpers/cluster.ts';
import { ensureCluster, ms, sleep, stamp, table } from '../common.ts';
import { POOL_MAX } from './runners.ts';
import { progress, quantile } from './util.ts';
import { ITEMS } from './workloads.ts';

type Mode = 'pg via HAProxy' | 'pg-resilient via HAProxy' | 'pg-resilient multi-host' | 'pg-resilient Patroni';
const MODES: readonly Mode[] = ['pg via HAProxy', 'pg-resilient via HAProxy', 'pg-resilient multi-host', 'pg-resilient Patroni'];
const FAILOVER_RATE = 40; // operations per second per mode
const WRITE_SHARE = 0.2;
const OP_TIMEOUT_MS = 30_000;
const MAX_ELAPSED_MS = 20_000;

interface Client {
  read(id: number): Promise<unknown>;
  write(run: string, seq: number): Promise<unknown>;
  end(): Promise<void>;
  reports: string[];
}

function makeClient(mode: Mode): Client {
  const auth = { user: CLUSTER_USER, password: CLUSTER_PASSWORD, database: CLUSTER_DATABASE };
  const READ = 'SELECT id, name FROM bench_items WHERE id = $1';
  const WRITE = 'INSERT INTO bench_writes (mode, run, seq) VALUES ($1, $2, $3)';
  const reports: string[] = [];
  if (mode === 'pg via HAProxy') {
    const pool = new pg.Pool({ ...rwConnectionConfig(), max: POOL_MAX, connectionTimeoutMillis: 5000 });
    pool.on('error', () => undefined); // idle clients killed by the failover must not crash us
    return { read: (id) => pool.query(READ, [id]), write: (run, seq) => pool.query(WRITE, [mode, run, seq]), end: () => pool.end(), reports };
  }
  const common: PoolOptions = { ...auth, max: POOL_MAX, connectionTimeoutMillis: 5000, retry: { maxElapsedMs: MAX_ELAPSED_MS }, maxWaitingClients: 5000 };
  const hosts = NODES.map((n) => `${n.host}:${n.port}`);
  const options: PoolOptions =
    mode === 'pg-resilient via HAProxy' ? { ...common, host: rwConnectionConfig().host, port: rwConnectionConfig().port }
      : mode === 'pg-resilient multi-host' ? { ...common, hosts, targetSessionAttrs: 'read-write' }
        : { ...common, patroni: { urls: [...PATRONI_URLS] }, targetSessionAttrs: 'read-write' };
  const pool = new ResilientPool(options);
  pool.on('error', () => undefined);
  pool.on('failoverReport', (r) => reports.push(r.summary));
  return { read: (id) => pool.query(READ, [id]), write: (run, seq) => pool.query(WRITE, [mode, run, seq]), end: () => pool.end(), reports };
}

interface Op {
  start: number;
  latencyMs: number;
  kind: 'read' | 'write';
  seq: number;
  /** undefined = success */
  error?: string;
}

interface Load {
  mode: Mode;
  ops: Op[];
  inFlight(): number;
  stop(): Promise<Op[]>;
}

function errorKey(err: unknown): string {
  const e = err as { code?: unknown; message?: unknown };
  if (typeof e?.code === 'string' && e.code !== '') return e.code;
  const msg = typeof e?.message === 'string' ? e.message : String(err);
  return msg.length > 60 ? `${msg.slice(0, 57)}…` : msg;
}

function startLoad(mode: Mode, client: Client, run: string): Load {
  const ops: Op[] = [];
  const pending = new Set<Promise<void>>();
  const startedAt = Date.now();
  const interval = 1000 / FAILOVER_RATE;
  let sent = 0;
  let seq = 0;
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let rnd = 42;
  const random = (): number => {
    rnd = (rnd * 1103515245 + 12345) & 0x7fffffff;
    return rnd / 0x80000000;
  };
  const one = (): void => {
    const write = random() < WRITE_SHARE;
    const mySeq = write ? ++seq : 0;
    const start = Date.now();
    const t = performance.now();
    let to: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      to = setTimeout(() => reject(Object.assign(new Error('no answer within 30 s'), { code: 'CLIENT_TIMEOUT' })), OP_TIMEOUT_MS);
    });
    const call = write ? client.write(run, mySeq) : client.read(1 + Math.floor(random() * ITEMS));
    call.catch(() => undefined);
    const p = Promise.race([call, timeout]).then(
      () => void ops.push({ start, latencyMs: performance.now() - t, kind: write ? 'write' : 'read', seq: mySeq }),
      (err: unknown) => void ops.push({ start, latencyMs: performance.now() - t, kind: write ? 'write' : 'read', seq: mySeq, error: errorKey(err) }),
    ).finally(() => {
      clearTimeout(to);
      pending.delete(p);
    });
    pending.add(p);
  };
  const tick = (): void => {
    if (stopped) return;
    const due = Math.floor((Date.now() - startedAt) / interval) + 1;
    while (sent < due) {
      sent += 1;
      one();
    }
    timer = setTimeout(tick, Math.max(0, startedAt + sent * interval - Date.now()));
  };
  tick();
  return {
    mode,
    ops,
    inFlight: () => pending.size,
    async stop() {
      stopped = true;
      if (timer !== undefined) clearTimeout(timer);
      await Promise.all([...pending]);
      return ops;
    },
  };
}

export interface FailoverRow {
  fault: string;
  mode: Mode;
  ops: number;
  errors: number;
  errorsByCode: Record<string, number>;
  longestMs: number;
  p99Ms: number;
  /** From the fault to the end of the last operation that failed or took over 1 s. */
  timeToRecoverMs: number;
  writesAcknowledged: number;
  /** Acknowledged writes not found afterwards (must be 0). */
  writesLost: number;
  /** Writes reported as failed that did commit (the outcome-unknown case, visible to the app). */
  failedWritesCommitted: number;
  reports: string[];
}

async function allRecovered(loads: readonly Load[], timeoutMs: number): Promise<void> {
  const start = Date.now();
  let lastLog = start;
  for (;;) {
    const now = Date.now();
    const ok = loads.every((l) => {
      const recent = l.ops.filter((o) => o.start >= now - 3000 && o.start < now - 1000);
      return recent.length >= FAILOVER_RATE * 2 * 0.9 && recent.every((o) => o.error === undefined && o.latencyMs < 1000) && l.inFlight() <= FAILOVER_RATE;
    });
    if (ok) return;
    if (now - start > timeoutMs) {
      progress(`!! not all modes recovered after ${ms(timeoutMs)}; going on`);
      return;
    }
    if (now - lastLog > 5000) {
      lastLog = now;
      progress(`waiting for recovery: ${loads.map((l) => `${l.mode}: ${l.ops.filter((o) => o.error !== undefined).length} err, ${l.inFlight()} in flight`).join(' | ')}`);
    }
    await sleep(500);
  }
}

async function failoverRun(fault: 'kill-primary' | 'switchover', run: string): Promise<{ rows: FailoverRow[]; events: Array<{ at: number; what: string }> }> {
  progress(`failover: ${fault}: starting ${MODES.length} clients at ${FAILOVER_RATE} ops/s each (${Math.round(WRITE_SHARE * 100)}% writes)`);
  const clients = MODES.map((m) => makeClient(m));
  const events: Array<{ at: number; what: string }> = [];
  try {
    const loads = MODES.map((m, i) => startLoad(m, clients[i]!, run));
    await sleep(5000);
    progress(`failover: ${fault}: steady state: ${loads.map((l) => `${l.mode} ${l.ops.filter((o) => o.error !== undefined).length} err`).join(', ')}`);
    let faultAt: number;
    let killed: string | undefined;
    if (fault === 'kill-primary') {
      const k = await runCluster<KillResult>(['kill-primary', '--wait'], 120_000);
      faultAt = k.at;
      killed = k.killed;
      events.push({ at: k.at, what: `killed ${k.killed}` });
      if (k.failoverMs !== undefined) events.push({ at: k.at + k.failoverMs, what: `${k.newLeader} promoted after ${ms(k.failoverMs)}` });
    } else {
      const before = Date.now();
      const s = await runCluster<SwitchoverResult>(['switchover'], 120_000);
      faultAt = Math.max(before, s.at);
      events.push({ at: faultAt, what: `switchover ${s.from} → ${s.to}` }, { at: s.completedAt, what: `${s.to} leads after ${ms(s.tookMs)}` });
    }
    for (const e of events) progress(`failover: ${fault}: ${e.what}`);
    await allRecovered(loads, 90_000);
    await sleep(5000);
    if (killed !== undefined) {
      const st = await runCluster<StartResult>(['start', killed], 120_000);
      events.push({ at: st.at, what: `started ${killed}` });
      await runCluster<TimedClusterStatus>(['wait-healthy', '--timeout', '180000'], 210_000);
      events.push({ at: Date.now(), what: `${killed} rejoined, healthy` });
      progress(`failover: ${fault}: ${killed} restarted and rejoined`);
      await sleep(2000);
    }
    const all = await Promise.all(loads.map((l) => l.stop()));
    progress(`failover: ${fault}: load stopped; checking writes`);
    // Acknowledged writes must all be there; failed ones may or may not be (outcome unknown).
    const check = new pg.Client({ ...rwConnectionConfig(), connectionTimeoutMillis: 5000 });
    check.on('error', () => undefined);
    await check.connect();
    const rows: FailoverRow[] = [];
    try {
      for (const [i, mode] of MODES.entries()) {
        const ops = all[i]!;
        const { rows: present } = await check.query<{ seq: number }>('SELECT seq FROM bench_writes WHERE mode = $1 AND run = $2', [mode, run]);
        const have = new Set(present.map((r) => r.seq));
        const acked = ops.filter((o) => o.kind === 'write' && o.error === undefined);
        const failedWrites = ops.filter((o) => o.kind === 'write' && o.error !== undefined);
        const errorsByCode: Record<string, number> = {};
        let lastAffectedEnd = faultAt;
        for (const o of ops) {
          if (o.error !== undefined) errorsByCode[o.error] = (errorsByCode[o.error] ?? 0) + 1;
          if ((o.error !== undefined || o.latencyMs > 1000) && o.start + o.latencyMs >= faultAt) lastAffectedEnd = Math.max(lastAffectedEnd, o.start + o.latencyMs);
        }
        const lat = ops.map((o) => o.latencyMs).sort((a, b) => a - b);
        rows.push({
          fault, mode,
          ops: ops.length,
          errors: ops.filter((o) => o.error !== undefined).length,
          errorsByCode,
          longestMs: lat.at(-1) ?? 0,
          p99Ms: quantile(lat, 0.99),
          timeToRecoverMs: Math.round(lastAffectedEnd - faultAt),
          writesAcknowledged: acked.length,
          writesLost: acked.filter((o) => !have.has(o.seq)).length,
          failedWritesCommitted: failedWrites.filter((o) => have.has(o.seq)).length,
          reports: [...clients[i]!.reports],
        });
      }
    } finally {
      await check.end().catch(() => undefined);
    }
    return { rows, events };
  } finally {
    await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
  }
}

export interface FailoverResult {
  rows: FailoverRow[];
  events: Record<string, Array<{ at: number; what: string }>>;
  backend: string;
}

export async function failover(): Promise<FailoverResult> {
  progress('failover: bringing up the Patroni cluster (npm run cluster -- up) …');
  const up = await ensureCluster(progress);
  progress(`failover: cluster up (backend ${up.backend}), leader ${up.leader}`);
  const setup = new pg.Client({ ...rwConnectionConfig(), connectionTimeoutMillis: 5000 });
  setup.on('error', () => undefined);
  await setup.connect();
  try {
    await setup.query(`CREATE TABLE IF NOT EXISTS bench_items (id integer PRIMARY KEY, name text NOT NULL, price integer NOT NULL);
      INSERT INTO bench_items SELECT g, 'item ' || g, g % 1000 FROM generate_series(1, ${ITEMS}) g ON CONFLICT DO NOTHING;
      CREATE TABLE IF NOT EXISTS bench_writes (mode text NOT NULL, run text NOT NULL, seq integer NOT NULL, PRIMARY KEY (mode, run, seq));`);
  } finally {
    await setup.end();
  }
  const run = `bench-${stamp()}`;
  const rows: FailoverRow[] = [];
  const events: Record<string, Array<{ at: number; what: string }>> = {};
  for (const fault of ['kill-primary', 'switchover'] as const) {
    await runCluster(['wait-healthy', '--timeout', '180000'], 210_000);
    const r = await failoverRun(fault, `${run}-${fault}`);
    rows.push(...r.rows);
    events[fault] = r.events;
  }
  return { rows, events, backend: up.backend };
}

export function printFailover(f: FailoverResult): void {
  process.stdout.write(`\n## Failover on the Patroni cluster (backend ${f.backend}): ${FAILOVER_RATE} ops/s per client (${Math.round(WRITE_SHARE * 100)}% INSERTs), pg-resilient retry.maxElapsedMs ${MAX_ELAPSED_MS}\n`);
  for (const fault of Object.keys(f.events)) {
    const ev = f.events[fault] ?? [];
    const first = ev[0]?.at ?? 0;
    process.stdout.write(`\n### ${fault}: ${ev.map((e) => `${e.what} (+${((e.at - first) / 1000).toFixed(1)} s)`).join('; ')}\n\n`);
    const head = ['client', 'ops', 'errors', 'longest', 'p99', 'recovered after', 'acked writes', 'lost', 'failed but committed'];
    const rs = f.rows.filter((r) => r.fault === fault);
    process.stdout.write(`${table([head, ...rs.map((r) => [r.mode, String(r.ops), String(r.errors), ms(r.longestMs), ms(r.p99Ms), ms(r.timeToRecoverMs), String(r.writesAcknowledged), String(r.writesLost), String(r.failedWritesCommitted)])])}\n`);
    for (const r of rs) {
      const codes = Object.entries(r.errorsByCode).sort((a, b) => b[1] - a[1]).map(([k, v]) => `${v}× ${k}`).join(', ');
      if (codes !== '') process.stdout.write(`  errors, ${r.mode}: ${codes}\n`);
    }
    for (const r of rs) for (const s of r.reports) process.stdout.write(`  report, ${r.mode}: ${s}\n`);
  }
  process.stdout.write('\n(recovered after: from the fault to the end of the last operation that failed or took over 1 s)\n');
}
