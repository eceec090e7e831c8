// The demo (`npm run demo`): the incident of the seed document, reproduced on a real Patroni
// cluster and measured for raw pg.Pool and pg-resilient side by side.
//
//   frontend (50 req/s) → catalog [raw pg.Pool]    ┐
//   frontend (50 req/s) → catalog [pg-resilient]   ┴→ HAProxy 127.0.0.1:5000 → Patroni primary
//   frontend (50 req/s) → catalog [pg-resilient + failoverReads] → Patroni discovery (REST
//                         8008-8010) → the primary, and while it is gone a standby for reads
//
// The third catalog (DEMO_FAILOVER_READS=0 leaves it out) shows issue #19: reads served by a
// standby within `failoverReads.maxStalenessMs` (DEMO_STALENESS_MS, 2000) while writes wait.
//
// With `--via pgbouncer` (bash scripts/demo.sh --via pgbouncer) both catalogs connect through
// PgBouncer 127.0.0.1:6432 (transaction pooling) in front of HAProxy, as services behind the
// Zalando operator's connection pooler do; its results and chart get a `-pgbouncer` suffix.
//
// Scenario 1: kill the primary (SIGKILL of its node), wait for the promotion and recovery,
// start the node again, wait until it has rejoined. Scenario 2: a planned switchover.
// Every number printed is measured in this run.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { HAPROXY_RW, NODES, PATRONI_URLS, PGBOUNCER, REPO_ROOT, pgbouncerConnectionConfig, rwConnectionConfig, runCluster, type ClusterStatus, type KillResult, type StartResult, type SwitchoverResult, type TimedClusterStatus } from '../../test/helpers/cluster.ts';
import { describeMachine, ensureCluster, machine, ms, pct, resultsDir, sleep, stamp, table } from '../common.ts';
import { renderChart, type ChartMarker } from './chart.ts';
import { isError, perSecond, startFrontend, summarize, type Frontend, type RequestRecord, type Summary } from './frontend.ts';
import type { Driver } from './service.ts';

const RATE = Number(process.env['DEMO_RATE'] ?? 50);
const STEADY_MS = Number(process.env['DEMO_STEADY_MS'] ?? 10_000);
const AFTER_MS = Number(process.env['DEMO_AFTER_MS'] ?? 10_000);
const STALENESS_MS = Number(process.env['DEMO_STALENESS_MS'] ?? 2000);
/** The catalogs compared: raw pg.Pool, pg-resilient, and pg-resilient with failoverReads. */
type Variant = 'pg' | 'resilient' | 'reads';
const DRIVERS: readonly Variant[] = process.env['DEMO_FAILOVER_READS'] === '0' ? ['pg', 'resilient'] : ['pg', 'resilient', 'reads'];
const LABEL: Record<Variant, string> = { pg: 'raw pg.Pool', resilient: 'pg-resilient', reads: 'pg-resilient + failoverReads' };
const COLOR: Record<Variant, string> = { pg: '#d62728', resilient: '#1f77b4', reads: '#2ca02c' };
const DRIVER_OF: Record<Variant, Driver> = { pg: 'pg', resilient: 'resilient', reads: 'resilient' };
/** One value per catalog in the run. */
function perVariant<T>(f: (v: Variant) => T): Record<Variant, T> {
  return Object.fromEntries(DRIVERS.map((v) => [v, f(v)])) as Record<Variant, T>;
}

/** The catalogs' route to the primary: HAProxy directly, or PgBouncer in front of it. */
type Via = 'haproxy' | 'pgbouncer';
function parseVia(argv: readonly string[]): Via {
  const i = argv.findIndex((a) => a === '--via' || a.startsWith('--via='));
  const arg = i < 0 ? undefined : argv[i]!.includes('=') ? argv[i]!.slice('--via='.length) : argv[i + 1];
  const via = arg ?? process.env['DEMO_VIA'] ?? 'haproxy';
  if (via !== 'haproxy' && via !== 'pgbouncer') throw new Error(`--via must be haproxy or pgbouncer, got "${via}"`);
  return via;
}
const VIA = parseVia(process.argv.slice(2));
const catalogConnection = VIA === 'pgbouncer' ? pgbouncerConnectionConfig : rwConnectionConfig;
const ROUTE = VIA === 'pgbouncer'
  ? `PgBouncer ${PGBOUNCER.host}:${PGBOUNCER.port} (transaction pooling) → HAProxy ${HAPROXY_RW.host}:${HAPROXY_RW.port}`
  : `HAProxy ${HAPROXY_RW.host}:${HAPROXY_RW.port}`;
/** Result files of a run through PgBouncer do not overwrite the HAProxy run's. */
const SUFFIX = VIA === 'pgbouncer' ? '-pgbouncer' : '';

const t0 = Date.now();
function progress(msg: string): void {
  const s = Math.round((Date.now() - t0) / 1000);
  process.stdout.write(`[demo ${String(Math.floor(s / 60)).padStart(2, '0')}:${String(s % 60).padStart(2, '0')}] ${msg}\n`);
}

// ---- catalog processes ------------------------------------------------------------------------

interface CatalogProcess {
  driver: Variant;
  port: number;
  child: ChildProcess;
  reports: Array<{ at: number; summary: string; report: unknown }>;
  failovers: Array<{ at: number; event: unknown }>;
  exited: boolean;
  stopping: boolean;
  stats(): Promise<Record<string, unknown>>;
  stop(): Promise<void>;
}

function startCatalogProcess(driver: Variant, logFile: string): Promise<CatalogProcess> {
  // The compiled demo runs service.js next to it; run from sources (type stripping) it is service.ts.
  const ext = path.extname(fileURLToPath(import.meta.url));
  const script = fileURLToPath(new URL(`./service${ext}`, import.meta.url));
  const conn = catalogConnection();
  const log = fs.openSync(logFile, 'a');
  const child = spawn(process.execPath, [script], {
    env: {
      ...process.env,
      CATALOG_DRIVER: DRIVER_OF[driver],
      ...(driver === 'reads'
        ? { CATALOG_HOSTS: NODES.map((n) => `${n.host}:${n.port}`).join(','), CATALOG_PATRONI_URLS: PATRONI_URLS.join(','), CATALOG_FAILOVER_READS_MS: String(STALENESS_MS) }
        : {}),
      CATALOG_PORT: '0',
      PGHOST: conn.host,
      PGPORT: String(conn.port),
      PGUSER: conn.user,
      PGPASSWORD: conn.password,
      PGDATABASE: conn.database,
    },
    stdio: ['pipe', 'pipe', log],
  });
  fs.closeSync(log);
  child.stdin?.on('error', () => undefined); // EPIPE if it exits as we ask for stats
  const proc: CatalogProcess = {
    driver,
    port: 0,
    child,
    reports: [],
    failovers: [],
    exited: false,
    stopping: false,
    // A process that exited answers nothing: its stats are empty (and waiting for them hung the demo once).
    stats: () => proc.exited ? Promise.resolve({ exited: true }) : new Promise((resolve) => {
      statsWaiters.push(resolve);
      child.stdin?.write('stats\n');
    }),
    async stop() {
      if (proc.exited) return;
      proc.stopping = true;
      const gone = new Promise<void>((r) => child.once('exit', () => r()));
      child.kill('SIGTERM');
      await Promise.race([gone, sleep(5000)]);
      if (!proc.exited) child.kill('SIGKILL');
    },
  };
  const statsWaiters: Array<(s: Record<string, unknown>) => void> = [];
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`catalog (${driver}) did not start within 20 s; see ${logFile}`)), 20_000);
    child.once('exit', (code, signal) => {
      proc.exited = true;
      clearTimeout(timer);
      reject(new Error(`catalog (${driver}) exited (code ${code}, signal ${signal}); see ${logFile}`));
    });
    const lines = readline.createInterface({ input: child.stdout! });
    lines.on('line', (line) => {
      let msg: { event?: string; at?: number; port?: number; report?: { summary?: string }; failover?: unknown; stats?: Record<string, unknown> };
      try {
        msg = JSON.parse(line);
      } catch {
        return;
      }
      if (msg.event === 'ready' && typeof msg.port === 'number') {
        proc.port = msg.port;
        clearTimeout(timer);
        child.removeAllListeners('exit');
        child.once('exit', (code, signal) => {
          proc.exited = true;
          for (const waiter of statsWaiters.splice(0)) waiter({ exited: true });
          if (proc.stopping) return;
          progress(`!! catalog (${LABEL[driver]}) EXITED unexpectedly (code ${code}, signal ${signal}); see ${logFile}`);
        });
        resolve(proc);
      } else if (msg.event === 'failoverReport' && msg.report !== undefined) {
        const summary = msg.report.summary ?? '';
        proc.reports.push({ at: msg.at ?? Date.now(), summary, report: msg.report });
        progress(`${LABEL[driver]} failover report: ${summary}`);
      } else if (msg.event === 'failover') {
        proc.failovers.push({ at: msg.at ?? Date.now(), event: msg.failover });
      } else if (msg.event === 'stats' && msg.stats !== undefined) {
        statsWaiters.shift()?.(msg.stats);
      }
    });
  });
}

// ---- cluster and schema -----------------------------------------------------------------------

async function createSchema(): Promise<void> {
  const sql = fs.readFileSync(path.join(REPO_ROOT, 'examples', 'catalog', 'schema.sql'), 'utf8');
  const deadline = Date.now() + 60_000;
  for (;;) {
    const client = new pg.Client({ ...rwConnectionConfig(), connectionTimeoutMillis: 5000 });
    client.on('error', () => undefined);
    try {
      await client.connect();
      await client.query(sql);
      const { rows } = await client.query<{ n: string }>('SELECT count(*) AS n FROM products');
      progress(`schema ready: ${rows[0]?.n} products`);
      return;
    } catch (err) {
      if (Date.now() > deadline) throw err;
      progress(`schema: ${(err as Error).message}; retrying`);
      await sleep(2000);
    } finally {
      await client.end().catch(() => undefined);
    }
  }
}

// ---- load and waiting -------------------------------------------------------------------------

type Frontends = Record<Variant, Frontend>;

function startFrontends(cats: Record<Variant, CatalogProcess>, scenario: string): Frontends {
  const prefix = `demo-${t0}-${scenario}`;
  return perVariant((v) => startFrontend({ baseUrl: `http://127.0.0.1:${cats[v].port}`, ratePerSec: RATE, keyPrefix: `${prefix}-${v}` }));
}

function liveLine(fes: Frontends): string {
  const now = Date.now();
  return DRIVERS.map((d) => {
    const fe = fes[d];
    // The last complete second of sent requests that have all had a chance to answer (<1 s).
    const recent = fe.records.filter((r) => r.start >= now - 3000 && r.start < now - 1000);
    const errs = recent.filter((r) => isError(r.outcome)).length;
    const lat = recent.map((r) => r.latencyMs).sort((a, b) => a - b);
    const p99 = lat[Math.max(0, Math.ceil(lat.length * 0.99) - 1)] ?? 0;
    return `${LABEL[d]}: ${(recent.length / 2).toFixed(0)} ok+err/s, ${errs} err, p99 ${ms(p99)}, ${fe.inFlight()} in flight`;
  }).join(' | ');
}

/** Waits `msTotal` while printing a progress line every 5 s. */
async function hold(fes: Frontends, msTotal: number, what: string): Promise<void> {
  const end = Date.now() + msTotal;
  while (Date.now() < end) {
    await sleep(Math.min(5000, end - Date.now()));
    progress(`${what} — ${liveLine(fes)}`);
  }
}

/**
 * Resolves once both catalogs answer every request quickly again: the requests sent in the last
 * 3 s are all there, none failed, none slower than 1 s, and nothing older is still waiting.
 */
async function waitRecovered(fes: Frontends, timeoutMs: number): Promise<number> {
  const start = Date.now();
  let lastLog = start;
  for (;;) {
    const now = Date.now();
    const ok = DRIVERS.every((d) => {
      const fe = fes[d];
      const recent = fe.records.filter((r) => r.start >= now - 4000 && r.start < now - 1000);
      return recent.length >= RATE * 3 * 0.9 && recent.every((r) => !isError(r.outcome) && r.latencyMs < 1000) && fe.inFlight() <= RATE;
    });
    if (ok) return now - start;
    if (now - start > timeoutMs) {
      progress(`!! not recovered after ${ms(timeoutMs)}; going on`);
      return now - start;
    }
    if (now - lastLog >= 5000) {
      progress(`waiting for recovery — ${liveLine(fes)}`);
      lastLog = now;
    }
    await sleep(500);
  }
}

// ---- scenarios ------------------------------------------------------------------------------

interface Marker {
  at: number;
  label: string;
}

interface ScenarioResult {
  name: string;
  title: string;
  startedAt: number;
  endedAt: number;
  faultAt: number;
  markers: Marker[];
  summaries: Record<Variant, Summary>;
  /** The same over reads only (GET /products…): the orders wait for the primary in every variant. */
  readSummaries: Record<Variant, Summary>;
  series: Record<Variant, ReturnType<typeof perSecond>>;
  /** The failoverReads catalog's reads only, per second (undefined without it). */
  readsOnlySeries: ReturnType<typeof perSecond> | undefined;
  failoverReports: string[];
  /** The failoverReads catalog's reports (empty without it). */
  readsReports: string[];
  catalogStats: Record<Variant, Record<string, unknown>>;
  records: Record<Variant, Array<[number, number, string, string]>>;
}

async function runScenario(
  name: string,
  title: string,
  cats: Record<Variant, CatalogProcess>,
  fault: (mark: (at: number, label: string) => void, fes: Frontends) => Promise<number>,
): Promise<ScenarioResult> {
  progress(`=== scenario ${name}: ${title} ===`);
  const statsBefore = await statsOf(cats);
  const reportsBefore = cats.resilient.reports.length;
  const readsReportsBefore = cats.reads?.reports.length ?? 0;
  const fes = startFrontends(cats, name);
  const startedAt = Math.min(...DRIVERS.map((v) => fes[v].startedAt));
  const markers: Marker[] = [];
  const mark = (at: number, label: string): void => {
    markers.push({ at, label });
    progress(`>> ${label}`);
  };
  await hold(fes, STEADY_MS, 'steady state');
  const faultAt = await fault(mark, fes);
  const stopped = await Promise.all(DRIVERS.map((v) => fes[v].stop()));
  const records = perVariant((v) => stopped[DRIVERS.indexOf(v)]!);
  const endedAt = Date.now();
  progress(`load stopped (all requests answered)`);
  // Give the last report a moment to arrive: it is emitted when the first query succeeds.
  await sleep(500);
  const statsAfter = await statsOf(cats);
  const delta = (a: Record<string, unknown>, b: Record<string, unknown>): Record<string, unknown> => {
    const out: Record<string, unknown> = {};
    for (const k of ['requests', 'retries', 'giveUps', 'failoverReports']) out[k] = Number(b[k] ?? 0) - Number(a[k] ?? 0);
    return out;
  };
  const summaries = perVariant((v) => summarize(records[v], startedAt, endedAt, faultAt));
  const readsOf = (rs: RequestRecord[]): RequestRecord[] => rs.filter((r) => r.kind !== 'order');
  const readSummaries = perVariant((v) => summarize(readsOf(records[v]), startedAt, endedAt, faultAt));
  const compact = (rs: RequestRecord[]): Array<[number, number, string, string]> =>
    rs.map((r) => [r.start - startedAt, Math.round(r.latencyMs * 100) / 100, r.errorCode ? `${r.outcome} ${r.errorCode}` : r.outcome, r.kind]);
  return {
    name,
    title,
    startedAt,
    endedAt,
    faultAt,
    markers,
    summaries,
    readSummaries,
    series: perVariant((v) => perSecond(records[v], startedAt, endedAt)),
    readsOnlySeries: records.reads === undefined ? undefined : perSecond(readsOf(records.reads), startedAt, endedAt),
    failoverReports: cats.resilient.reports.slice(reportsBefore).map((r) => r.summary),
    readsReports: (cats.reads?.reports ?? []).slice(readsReportsBefore).map((r) => r.summary),
    catalogStats: perVariant((v) => delta(statsBefore[v], statsAfter[v])),
    records: perVariant((v) => compact(records[v])),
  };
}

async function statsOf(cats: Record<Variant, CatalogProcess>): Promise<Record<Variant, Record<string, unknown>>> {
  const all = await Promise.all(DRIVERS.map((v) => cats[v].stats()));
  return perVariant((v) => all[DRIVERS.indexOf(v)]!);
}

async function killPrimaryScenario(cats: Record<Variant, CatalogProcess>): Promise<ScenarioResult> {
  return runScenario('kill-primary', 'primary killed (SIGKILL of its whole node), then restarted', cats, async (mark, fes) => {
    const before = await runCluster<ClusterStatus>(['status'], 30_000);
    progress(`killing the primary ${before.leader} …`);
    // The driver's `at` is taken right after the SIGKILL; the command itself takes ~1 s
    // (docker-compose), which is why the first failures can precede the marker.
    const killed = await runCluster<KillResult>(['kill-primary', '--wait'], 120_000);
    mark(killed.at, `kill ${killed.killed}`);
    if (killed.newLeader !== undefined && killed.failoverMs !== undefined) {
      mark(killed.at + killed.failoverMs, `${killed.newLeader} promoted ${(killed.failoverMs / 1000).toFixed(1)} s later`);
    }
    const took = await waitRecovered(fes, 90_000);
    progress(`both catalogs serving again (${ms(took)} after the promotion); ${AFTER_MS / 1000} s more of load`);
    await hold(fes, AFTER_MS, 'after recovery');
    const started = await runCluster<StartResult>(['start', killed.killed], 120_000);
    mark(started.at, `start ${killed.killed}`);
    const healthy = await runCluster<TimedClusterStatus>(['wait-healthy', '--timeout', '180000'], 210_000);
    mark(Date.now(), `${killed.killed} rejoined, cluster healthy`);
    progress(`cluster healthy again: leader ${healthy.leader}`);
    await hold(fes, 3000, 'after rejoin');
    return killed.at;
  });
}

async function switchoverScenario(cats: Record<Variant, CatalogProcess>): Promise<ScenarioResult> {
  return runScenario('switchover', 'planned Patroni switchover', cats, async (mark, fes) => {
    progress('switchover …');
    // Marked when patronictl is asked (fault) and when the new leader runs.
    const requestedAt = Date.now();
    const sw = await runCluster<SwitchoverResult>(['switchover'], 120_000);
    mark(Math.max(requestedAt, sw.at), `switchover ${sw.from} → ${sw.to}`);
    mark(sw.completedAt, `${sw.to} leads ${(sw.tookMs / 1000).toFixed(1)} s later`);
    const took = await waitRecovered(fes, 90_000);
    progress(`both catalogs serving again (${ms(took)} after the new leader ran); ${AFTER_MS / 1000} s more of load`);
    await hold(fes, AFTER_MS, 'after recovery');
    return Math.max(requestedAt, sw.at);
  });
}

// ---- output ---------------------------------------------------------------------------------

function byOutcomeText(s: Summary): string {
  const parts = Object.entries(s.errorsByOutcome).sort((a, b) => b[1] - a[1]).map(([k, v]) => `${v}× ${k}`);
  return parts.length === 0 ? '-' : parts.join(', ');
}

function printScenario(r: ScenarioResult): void {
  const s = r.summaries;
  const row = (label: string, f: (x: Summary) => string): string[] => [label, ...DRIVERS.map((v) => f(s[v]))];
  const rows: string[][] = [
    ['', ...DRIVERS.map((v) => LABEL[v])],
    row('requests', (x) => String(x.requests)),
    row('errors (5xx, conn, timeout)', (x) => String(x.errors)),
    row('error rate', (x) => pct(x.errorRate)),
    row('peak errors/s', (x) => String(x.peakErrorsPerSec)),
    row('p50', (x) => ms(x.p50)),
    row('p95', (x) => ms(x.p95)),
    row('p99', (x) => ms(x.p99)),
    row('max latency', (x) => ms(x.max)),
    ['reads only: p99 / max', ...DRIVERS.map((v) => `${ms(r.readSummaries[v].p99)} / ${ms(r.readSummaries[v].max)}`)],
    row('requests failed or > 1 s', (x) => String(x.affected)),
    row('time to recover', (x) => ms(x.timeToRecoverMs)),
    ['pool retries (catalog)', ...DRIVERS.map((v) => (v === 'pg' ? '-' : String(r.catalogStats[v]['retries'] ?? 0)))],
  ];
  const p = s.pg;
  const q = s.resilient;
  process.stdout.write(`\n### ${r.name}: ${r.title}\n`);
  const rel = (at: number): string => `+${((at - r.startedAt) / 1000).toFixed(1)} s`;
  process.stdout.write(`events: ${r.markers.map((m) => `${m.label} (${rel(m.at)})`).join('; ')}\n\n`);
  process.stdout.write(`${table(rows)}\n`);
  process.stdout.write(`errors by kind, raw pg.Pool:   ${byOutcomeText(p)}\n`);
  process.stdout.write(`errors by kind, pg-resilient:  ${byOutcomeText(q)}\n`);
  if (s.reads !== undefined) process.stdout.write(`errors by kind, + failoverReads: ${byOutcomeText(s.reads)}\n`);
  process.stdout.write(`(time to recover: from the fault to the end of the last request that failed or took over 1 s)\n`);
  if (r.failoverReports.length === 0) process.stdout.write('pg-resilient failover report: none emitted in this scenario\n');
  for (const line of r.failoverReports) process.stdout.write(`pg-resilient failover report: ${line}\n`);
  for (const line of r.readsReports) process.stdout.write(`pg-resilient + failoverReads failover report: ${line}\n`);
}

function convertToPng(svgPath: string): string | undefined {
  const png = svgPath.replace(/\.svg$/, '.png');
  for (const [cmd, args] of [
    ['rsvg-convert', ['-o', png, svgPath]],
    ['convert', [svgPath, png]],
  ] as const) {
    const res = spawnSyncQuiet(cmd, [...args]);
    if (res) return png;
  }
  return undefined;
}

function spawnSyncQuiet(cmd: string, args: string[]): boolean {
  try {
    const { status } = spawnSync(cmd, args, { stdio: 'ignore', timeout: 30_000 });
    return status === 0;
  } catch {
    return false;
  }
}

async function main(): Promise<void> {
  const m = machine();
  progress(`machine: ${describeMachine(m)}`);
  progress(`load: ${RATE} req/s per catalog (70% product, 20% category list, 10% order); via ${ROUTE}${DRIVERS.includes('reads') ? `; failoverReads catalog: Patroni discovery, maxStalenessMs ${STALENESS_MS}` : ''}`);
  progress('bringing up the Patroni cluster (npm run cluster -- up; idempotent, the first time takes minutes) …');
  const up = await ensureCluster(progress);
  progress(`cluster up (backend ${up.backend}): leader ${up.leader}, members ${up.members.map((x) => `${x.name}=${x.role}`).join(', ')}`);
  await createSchema();

  const dir = resultsDir();
  const id = stamp();
  const cats: Partial<Record<Variant, CatalogProcess>> = {};
  const stopAll = async (): Promise<void> => {
    await Promise.all(DRIVERS.map((d) => cats[d]?.stop()));
  };
  process.once('SIGINT', () => {
    progress('interrupted: stopping the catalogs');
    void stopAll().finally(() => process.exit(130));
  });
  try {
    for (const d of DRIVERS) {
      cats[d] = await startCatalogProcess(d, path.join(dir, `demo-${id}-catalog-${d}.log`));
      progress(`catalog (${LABEL[d]}) listening on 127.0.0.1:${cats[d]!.port}, pid ${cats[d]!.child.pid}`);
    }
    const both = cats as Record<Variant, CatalogProcess>;
    // Warm both pools so the first scenario's first seconds do not measure connection set-up.
    const warm = startFrontends(both, 'warmup');
    await sleep(3000);
    await Promise.all(DRIVERS.map((v) => warm[v].stop()));

    const results: ScenarioResult[] = [];
    results.push(await killPrimaryScenario(both));
    progress('waiting for a healthy cluster before the next scenario …');
    await runCluster(['wait-healthy', '--timeout', '180000'], 210_000);
    results.push(await switchoverScenario(both));

    process.stdout.write(`\n================ results (this run, ${new Date(t0).toISOString()}) ================\n`);
    process.stdout.write(`machine: ${describeMachine(m)}; cluster backend: ${up.backend}\n`);
    process.stdout.write(`load: ${RATE} req/s to each catalog; frontend timeout 30 s; catalog pools max 20, pg-resilient retry.maxElapsedMs 20000\n`);
    process.stdout.write(`route: catalog → ${ROUTE} → Patroni primary${DRIVERS.includes('reads') ? `; the failoverReads catalog: Patroni discovery (maxStalenessMs ${STALENESS_MS})` : ''}\n`);
    for (const r of results) printScenario(r);

    const json = {
      kind: 'pg-resilient demo',
      startedAt: new Date(t0).toISOString(),
      machine: m,
      cluster: { backend: up.backend, via: VIA },
      config: { variants: DRIVERS, failoverReadsMaxStalenessMs: STALENESS_MS, ratePerSec: RATE, steadyMs: STEADY_MS, afterMs: AFTER_MS, frontendTimeoutMs: 30_000, catalogPoolMax: 20, resilientMaxElapsedMs: 20_000 },
      scenarios: results,
    };
    const jsonPath = path.join(dir, `demo-${id}${SUFFIX}.json`);
    fs.writeFileSync(jsonPath, JSON.stringify(json));
    fs.writeFileSync(path.join(dir, `demo-latest${SUFFIX}.json`), JSON.stringify(json));

    const svg = renderChart(
      VIA === 'pgbouncer'
        ? 'Primary failure: frontend → catalog → PgBouncer → PostgreSQL (Patroni + HAProxy)'
        : 'Primary failure: frontend → catalog → PostgreSQL (Patroni + HAProxy)',
      `${RATE} req/s per catalog; measured ${new Date(t0).toISOString().slice(0, 19).replace('T', ' ')} UTC on ${m.cores} cores; dashed lines: fault events`,
      results.map((r) => ({
        title: `${r.name}: ${r.title} — errors: ${DRIVERS.map((v) => `${LABEL[v]} ${r.summaries[v].errors}`).join(', ')}`,
        series: [
          ...DRIVERS.map((d) => ({ label: LABEL[d], color: COLOR[d], points: r.series[d] })),
          // Every variant's orders wait for the new primary (and set its p99): the reads apart.
          ...(r.readsOnlySeries === undefined ? [] : [{ label: `${LABEL.reads}, reads only`, color: '#98df8a', points: r.readsOnlySeries }]),
        ],
        markers: r.markers.map((mk): ChartMarker => ({ t: (mk.at - r.startedAt) / 1000, label: mk.label })),
      })),
    );
    const svgPath = path.join(dir, `demo-chart${SUFFIX}.svg`);
    fs.writeFileSync(svgPath, svg);
    const png = convertToPng(svgPath);
    process.stdout.write(`\nresults: ${path.relative(process.cwd(), jsonPath)}\nchart:   ${path.relative(process.cwd(), svgPath)}${png ? `, ${path.relative(process.cwd(), png)}` : ' (no PNG: install librsvg2-bin for rsvg-convert)'}\n`);
    process.stdout.write('how to read this table, and the figures measured so far: docs/performance.md#the-demo\n');
  } finally {
    await stopAll();
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`demo failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
    process.exit(1);
  },
);
