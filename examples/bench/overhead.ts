// The overhead benchmark: every Node client and pgbench against one throwaway local PostgreSQL 15,
// five workloads at concurrency 1, 8, 32 and 64. Rounds are interleaved (who goes first rotates)
// and reported as medians; ratios are taken per round (same machine state), then the median.
import { ms, table } from '../common.ts';
import { startPgServer } from '../../test/helpers/pg-server.ts';
import { cleanupPgbenchScripts, pgbenchAvailable, runPgbench, type PgbenchMode } from './pgbench.ts';
import { LIBS, POOL_MAX, makeRunner, resilientPrepares, runsWorkload, type Lib, type Runner } from './runners.ts';
import { median, progress, quantile } from './util.ts';
import { RESET, SCHEMA, WORKLOADS, WORKLOAD_LABEL, type Workload } from './workloads.ts';

export const CONCURRENCY = [1, 8, 32, 64] as const;
export const WARMUP_MS = 300;

export type Entrant = Lib | 'pgbench -M simple' | 'pgbench -M prepared';
const PGBENCH_ENTRANTS: Record<PgbenchMode, Entrant> = { simple: 'pgbench -M simple', prepared: 'pgbench -M prepared' };

export interface OverheadConfig {
  durationMs: number;
  rounds: number;
  workloads: readonly Workload[];
  concurrency: readonly number[];
  libs: readonly Lib[];
  pgbench: boolean;
}

export interface OverheadSample {
  round: number;
  entrant: Entrant;
  workload: Workload;
  concurrency: number;
  queries: number;
  errors: number;
  qps: number;
  /** pgbench: its average latency (it gives no percentiles without per-transaction logs). */
  p50Ms: number;
  p99Ms: number;
  /** Client CPU (user + system) per query, µs: this process for Node clients, the pgbench process for pgbench. */
  cpuUs: number;
}

export interface OverheadRow {
  workload: Workload;
  concurrency: number;
  entrant: Entrant;
  qps: number;
  p50Ms: number;
  p99Ms: number;
  cpuUs: number;
  /** Medians of per-round ratios: q/s and CPU to raw pg.Pool; q/s to pgbench -M prepared. */
  qpsVsPg: number;
  qpsVsPgbench: number;
  cpuVsPg: number;
  errors: number;
}

export interface OverheadResult {
  server: string;
  /** Whether pg-resilient honoured `prepare: true` (false: both pg-resilient rows ran unnamed). */
  resilientPrepares: boolean;
  samples: OverheadSample[];
  rows: OverheadRow[];
}

/** `concurrency` callers in a closed loop for `durationMs`, after a warm-up that opens the connections. */
async function measure(runner: Runner, concurrency: number, durationMs: number): Promise<{ queries: number; errors: number; elapsedMs: number; cpuUs: number; lat: Float64Array }> {
  let lat = new Float64Array(1 << 16);
  let n = 0;
  let errors = 0;
  let recording = false;
  let stopAt = Date.now() + WARMUP_MS;
  let seed = 12345;
  const next = (): number => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed;
  };
  const worker = async (): Promise<void> => {
    while (Date.now() < stopAt) {
      const s = performance.now();
      try {
        await runner.run(next());
      } catch {
        errors += 1;
      }
      if (recording) {
        if (n === lat.length) {
          const bigger = new Float64Array(lat.length * 2);
          bigger.set(lat);
          lat = bigger;
        }
        lat[n++] = performance.now() - s;
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker)); // warm-up
  errors = 0;
  recording = true;
  const cpuBefore = process.cpuUsage();
  const start = performance.now();
  stopAt = Date.now() + durationMs;
  await Promise.all(Array.from({ length: concurrency }, worker));
  const elapsedMs = performance.now() - start;
  const cpu = process.cpuUsage(cpuBefore);
  return { queries: n, errors, elapsedMs, cpuUs: n === 0 ? 0 : (cpu.user + cpu.system) / n, lat: lat.slice(0, n).sort() };
}

function entrantsFor(cfg: OverheadConfig, workload: Workload): Entrant[] {
  const libs: Entrant[] = cfg.libs.filter((l) => runsWorkload(l, workload));
  return cfg.pgbench ? [...libs, PGBENCH_ENTRANTS.simple, PGBENCH_ENTRANTS.prepared] : libs;
}

export async function overhead(cfg: OverheadConfig): Promise<OverheadResult> {
  const pgbench = cfg.pgbench && pgbenchAvailable();
  if (cfg.pgbench && !pgbench) progress('overhead: pgbench not found: no pgbench rows');
  const c = { ...cfg, pgbench };
  const perRound = cfg.concurrency.length * cfg.workloads.reduce((b, w) => b + entrantsFor(c, w).length, 0);
  const runs = perRound * cfg.rounds;
  progress(`overhead: ${runs} runs of ${cfg.durationMs} ms (+${WARMUP_MS} ms warm-up), ${cfg.rounds} rounds, pools of ${POOL_MAX}; about ${Math.round((runs * (cfg.durationMs + WARMUP_MS + 250)) / 1000)} s`);
  const srv = await startPgServer({ settings: { max_connections: 150 } });
  const samples: OverheadSample[] = [];
  try {
    await srv.admin(SCHEMA);
    const version = (await srv.admin<{ v: string }>("SELECT current_setting('server_version') AS v"))[0]?.v ?? '?';
    const prepares = await resilientPrepares(srv);
    if (!prepares) progress('overhead: pg-resilient ignores `prepare: true` (not wired yet): both pg-resilient rows run unnamed');
    let done = 0;
    let turn = 0;
    for (let round = 1; round <= cfg.rounds; round++) {
      await srv.admin(RESET);
      for (const concurrency of cfg.concurrency) {
        for (const workload of cfg.workloads) {
          const entrants = entrantsFor(c, workload);
          // Rotate who goes first, so no client always runs on a cooler or warmer machine.
          const order = entrants.map((_, i) => entrants[(i + turn) % entrants.length]!);
          turn += 1;
          for (const entrant of order) {
            samples.push(await runOne(srv, entrant, workload, concurrency, round, cfg.durationMs));
            done += 1;
          }
          const last = samples.slice(-entrants.length).map((s) => `${s.entrant} ${Math.round(s.qps)}`).join(', ');
          progress(`overhead ${done}/${runs}: round ${round}, ${workload} ×${concurrency}: ${last}`);
        }
      }
    }
    return { server: `PostgreSQL ${version} (throwaway, same machine, 127.0.0.1:${srv.port})`, resilientPrepares: prepares, samples, rows: aggregate(c, samples) };
  } finally {
    cleanupPgbenchScripts();
    await srv.destroy();
  }
}

async function runOne(srv: Parameters<typeof makeRunner>[2], entrant: Entrant, workload: Workload, concurrency: number, round: number, durationMs: number): Promise<OverheadSample> {
  if (entrant === PGBENCH_ENTRANTS.simple || entrant === PGBENCH_ENTRANTS.prepared) {
    const mode: PgbenchMode = entrant === PGBENCH_ENTRANTS.simple ? 'simple' : 'prepared';
    // One session per statement in flight, as the pools have: min(concurrency, pool size).
    const r = await runPgbench(srv, workload, mode, Math.min(concurrency, POOL_MAX), durationMs);
    return { round, entrant, workload, concurrency, queries: r.queries, errors: r.errors, qps: r.tps, p50Ms: r.latencyAvgMs, p99Ms: NaN, cpuUs: r.cpuUs };
  }
  const runner = makeRunner(entrant as Lib, workload, srv);
  try {
    const r = await measure(runner, concurrency, durationMs);
    return {
      round, entrant, workload, concurrency, queries: r.queries, errors: r.errors,
      qps: r.queries / (r.elapsedMs / 1000), p50Ms: quantile(r.lat, 0.5), p99Ms: quantile(r.lat, 0.99), cpuUs: r.cpuUs,
    };
  } finally {
    await runner.end();
  }
}

function aggregate(cfg: OverheadConfig, samples: readonly OverheadSample[]): OverheadRow[] {
  const rows: OverheadRow[] = [];
  for (const workload of cfg.workloads) {
    for (const concurrency of cfg.concurrency) {
      const of = (e: Entrant): OverheadSample[] => samples.filter((s) => s.entrant === e && s.workload === workload && s.concurrency === concurrency);
      const ratio = (e: Entrant, base: Entrant, key: 'qps' | 'cpuUs'): number =>
        median(of(e).map((s) => {
          const b = of(base).find((x) => x.round === s.round);
          return b === undefined || b[key] === 0 ? NaN : s[key] / b[key];
        }));
      for (const entrant of entrantsFor(cfg, workload)) {
        const xs = of(entrant);
        if (xs.length === 0) continue;
        rows.push({
          workload, concurrency, entrant,
          qps: median(xs.map((s) => s.qps)),
          p50Ms: median(xs.map((s) => s.p50Ms)),
          p99Ms: median(xs.map((s) => s.p99Ms)),
          cpuUs: median(xs.map((s) => s.cpuUs)),
          qpsVsPg: ratio(entrant, 'pg', 'qps'),
          qpsVsPgbench: ratio(entrant, PGBENCH_ENTRANTS.prepared, 'qps'),
          cpuVsPg: ratio(entrant, 'pg', 'cpuUs'),
          errors: xs.reduce((a, s) => a + s.errors, 0),
        });
      }
    }
  }
  return rows;
}

const x = (v: number): string => (Number.isFinite(v) ? `${v.toFixed(2)}x` : '–');

export function printOverhead(o: OverheadResult, cfg: OverheadConfig): void {
  process.stdout.write(`\n## Overhead: ${o.server}; medians of ${cfg.rounds} rounds × ${cfg.durationMs} ms; pools of ${POOL_MAX} connections, pgbench with min(concurrency, ${POOL_MAX}) sessions\n`);
  if (!o.resilientPrepares) process.stdout.write('(pg-resilient ignored `prepare: true` in this build: its "+prepare" rows ran unnamed)\n');
  process.stdout.write('(ratios per round, then the median: q/s > 1.00x and CPU < 1.00x are better; "vs pgbench" is to pgbench -M prepared;\n'
    + ' CPU/query is the client process\'s user + system time per query (Node: the whole process incl. the bench loop);\n pgbench\'s latency is its average, in the p50 column)\n\n');
  const head = ['workload', 'conc', 'client', 'queries/s', 'vs pg', 'vs pgbench', 'p50', 'p99', 'CPU/query', 'vs pg', 'errors'];
  const body = o.rows.map((r) => [
    WORKLOAD_LABEL[r.workload], String(r.concurrency), r.entrant, String(Math.round(r.qps)), x(r.qpsVsPg), x(r.qpsVsPgbench),
    Number.isFinite(r.p50Ms) ? ms(r.p50Ms) : '–', Number.isFinite(r.p99Ms) ? ms(r.p99Ms) : '–',
    Number.isFinite(r.cpuUs) ? `${r.cpuUs.toFixed(1)} µs` : '–', x(r.cpuVsPg), String(r.errors),
  ]);
  process.stdout.write(`${table([head, ...body])}\n`);
  printGoals(o);
}

/** Issue 17's bar: ≥ 1.4x pg.Pool on the PK lookup and the join at 8 and 32, ahead of postgres.js, CPU ≤ pg's. */
function printGoals(o: OverheadResult): void {
  const row = (w: Workload, c: number, e: Entrant): OverheadRow | undefined => o.rows.find((r) => r.workload === w && r.concurrency === c && r.entrant === e);
  const lines: string[] = [];
  for (const w of ['pk', 'join'] as const) {
    for (const c of [8, 32]) {
      const r = row(w, c, 'pg-resilient+prepare');
      if (r === undefined) continue;
      lines.push(`  ${WORKLOAD_LABEL[w]} ×${c}: pg-resilient+prepare ${x(r.qpsVsPg)} pg.Pool (goal ≥ 1.40x: ${r.qpsVsPg >= 1.4 ? 'met' : 'not met'}), ${x(r.qpsVsPgbench)} pgbench -M prepared, CPU ${x(r.cpuVsPg)} pg's`);
    }
  }
  const behind = o.rows.filter((r) => r.entrant === 'pg-resilient+prepare').filter((r) => {
    const pjs = row(r.workload, r.concurrency, 'postgres.js');
    return pjs !== undefined && pjs.qps > r.qps;
  });
  if (lines.length > 0) {
    process.stdout.write(`\nIssue 17 bar:\n${lines.join('\n')}\n`);
    process.stdout.write(`  behind postgres.js on: ${behind.length === 0 ? 'no row' : behind.map((r) => `${WORKLOAD_LABEL[r.workload]} ×${r.concurrency}`).join(', ')}\n`);
  }
}
