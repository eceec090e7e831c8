// Small helpers shared by the demo scenario and the benchmark: machine description, results
// directory, text tables.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { REPO_ROOT, runCluster, type TimedClusterStatus } from '../test/helpers/cluster.ts';

export interface Machine {
  cpuModel: string;
  cores: number;
  memoryGiB: number;
  node: string;
  platform: string;
}

export function machine(): Machine {
  const cpus = os.cpus();
  return {
    cpuModel: cpus[0]?.model.trim() ?? 'unknown',
    cores: cpus.length,
    memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    platform: `${os.platform()} ${os.release()}`,
  };
}

export function describeMachine(m: Machine): string {
  return `${m.cpuModel}, ${m.cores} cores, ${m.memoryGiB} GiB RAM, Node ${m.node}, ${m.platform}`;
}

/** `.results/` at the repository root (gitignored), created on demand. */
export function resultsDir(): string {
  const dir = path.join(REPO_ROOT, '.results');
  fs.mkdirSync(dir, { recursive: true });
  return dir;
}

/** 2024-05-01T10-20-30: sortable and safe in file names. */
export function stamp(d = new Date()): string {
  return d.toISOString().replace(/\..*$/, '').replace(/:/g, '-');
}

/** Renders rows as an aligned text table; the first row is the header. Numbers align right. */
export function table(rows: readonly (readonly string[])[]): string {
  const widths: number[] = [];
  for (const r of rows) r.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, c.length)));
  const line = (r: readonly string[]): string =>
    r.map((c, i) => (i > 0 && /^[-+]?[\d.,]+( ?(ms|s|%|x|q\/s))?$/.test(c) ? c.padStart(widths[i] ?? 0) : c.padEnd(widths[i] ?? 0))).join('  ').trimEnd();
  const [head, ...body] = rows;
  if (head === undefined) return '';
  const sep = widths.map((w) => '-'.repeat(w)).join('  ');
  return [line(head), sep, ...body.map(line)].join('\n');
}

export function ms(v: number): string {
  if (v >= 10_000) return `${(v / 1000).toFixed(1)} s`;
  if (v >= 1000) return `${(v / 1000).toFixed(2)} s`;
  if (v >= 100) return `${v.toFixed(0)} ms`;
  if (v >= 10) return `${v.toFixed(1)} ms`;
  return `${v.toFixed(2)} ms`;
}

export function pct(v: number): string {
  return `${(v * 100).toFixed(2)}%`;
}

export const sleep = (msec: number): Promise<void> => new Promise((r) => setTimeout(r, msec));

/**
 * The cluster, healthy. `up` is idempotent but slow on a running cluster (it runs
 * docker-compose up, which may recreate containers), so a running cluster that becomes healthy
 * within a minute is used as it is.
 */
export async function ensureCluster(log: (msg: string) => void = () => undefined): Promise<TimedClusterStatus> {
  const running = await runCluster(['status'], 40_000).then(() => true, () => false);
  if (running) {
    try {
      return await runCluster<TimedClusterStatus>(['wait-healthy', '--timeout', '60000'], 100_000);
    } catch (err) {
      log(`the running cluster did not become healthy (${firstLine(err)}): running \`up\``);
    }
  }
  try {
    return await runCluster<TimedClusterStatus>(['up'], 1_200_000);
  } catch (err) {
    // `up` can fail while something else drives the same cluster; one more chance to settle.
    log(`cluster up failed (${firstLine(err)}); waiting for the cluster to become healthy`);
    return await runCluster<TimedClusterStatus>(['wait-healthy', '--timeout', '120000'], 160_000);
  }
}

function firstLine(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  const lines = text.split('\n');
  return (lines.find((l) => l.includes('ERROR')) ?? lines[0] ?? '').slice(0, 200);
}
