// Benchmark (`npm run bench`; without a build: `node examples/bench/bench.ts` on Node ≥ 23.6):
//
// 1. overhead (overhead.ts): raw pg.Pool (unnamed, and named by hand), raw pg.Pool with the
//    prepared-statement cache applied by hand, pg-resilient with `prepare: false` and
//    `prepare: true`, postgres.js, Kysely (PK lookup, over pg.Pool and over pg-resilient) and
//    pgbench (-M simple and -M prepared) against one throwaway local PostgreSQL 15: SELECT 1, a PK lookup, a join with two parameters, a
//    100-row range read and an insert, at concurrency 1, 8, 32 and 64. Medians of interleaved
//    rounds; each client's ratios to raw pg.Pool and to pgbench -M prepared from the same round.
// 2. failover (failover.ts): the Patroni cluster's primary is killed, then switched over, while
//    raw pg.Pool and pg-resilient carry the same load.
//
// Flags: --overhead-only, --failover-only, --duration <ms per run> (2000), --rounds <n> (3),
//        --workloads pk,join,… (all), --concurrency 8,32 (1,8,32,64), --libs pg,postgres.js,… (all;
//        baseline+prepare only with PGR_BASELINE=<an earlier build's dist/src/index.js>),
//        --no-pgbench.
// Results: a table on the terminal, JSON in .results/bench-<timestamp>.json and bench-latest.json.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describeMachine, machine, resultsDir, stamp } from '../common.ts';
import { failover, printFailover } from './failover.ts';
import { CONCURRENCY, WARMUP_MS, overhead, printOverhead, type OverheadConfig } from './overhead.ts';
import { LIBS, POOL_MAX } from './runners.ts';
import { flagList, flagNumber, hasFlag, startedAt } from './util.ts';
import { WORKLOADS } from './workloads.ts';

const OVERHEAD_ONLY = hasFlag('overhead-only');
const FAILOVER_ONLY = hasFlag('failover-only');

async function main(): Promise<void> {
  if (OVERHEAD_ONLY && FAILOVER_ONLY) throw new Error('--overhead-only and --failover-only exclude each other');
  const concurrency = flagList('concurrency', CONCURRENCY.map(String), CONCURRENCY.map(String)).map(Number);
  const cfg: OverheadConfig = {
    durationMs: flagNumber('duration', 2000),
    rounds: flagNumber('rounds', 3),
    workloads: flagList('workloads', WORKLOADS, WORKLOADS),
    concurrency,
    // The baseline build runs only when named (it needs PGR_BASELINE).
    libs: flagList('libs', LIBS, LIBS.filter((l) => l !== 'baseline+prepare' || process.env.PGR_BASELINE !== undefined)),
    pgbench: !hasFlag('no-pgbench'),
  };
  const m = machine();
  process.stdout.write(`machine: ${describeMachine(m)}\n`);
  const result: Record<string, unknown> = {
    kind: 'pg-resilient bench', startedAt: new Date(startedAt).toISOString(), machine: m,
    config: { ...cfg, poolMax: POOL_MAX, warmupMs: WARMUP_MS },
  };
  if (!FAILOVER_ONLY) {
    const o = await overhead(cfg);
    result['overhead'] = o;
    printOverhead(o, cfg);
  }
  if (!OVERHEAD_ONLY) {
    const f = await failover();
    result['failover'] = f;
    printFailover(f);
  }
  const dir = resultsDir();
  const file = path.join(dir, `bench-${stamp(new Date(startedAt))}.json`);
  fs.writeFileSync(file, JSON.stringify(result, null, 1));
  fs.writeFileSync(path.join(dir, 'bench-latest.json'), JSON.stringify(result, null, 1));
  process.stdout.write(`\nmachine: ${describeMachine(m)}\nresults: ${path.relative(process.cwd(), file)} (and .results/bench-latest.json)\n`);
  process.stdout.write('how these are measured, and the figures of earlier runs: docs/performance.md\n');
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`bench failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
    process.exit(1);
  },
);
