// pgbench (C, libpq) on the same server and statements: the machine's limit row. With
// `-M simple` every statement is parsed and planned (as pg does unnamed); with `-M prepared`
// each connection prepares once (what the cache gives a Node client).
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PG_BIN_DIR, type PgServer } from '../../test/helpers/pg-server.ts';
import { PGBENCH_SCRIPTS, type Workload } from './workloads.ts';

export type PgbenchMode = 'simple' | 'prepared';

export interface PgbenchResult {
  tps: number;
  queries: number;
  errors: number;
  /** pgbench's own average latency, ms (it reports no percentiles without per-transaction logs). */
  latencyAvgMs: number;
  /** pgbench's user + system CPU per statement, µs (its connection setup included). */
  cpuUs: number;
}

export const PGBENCH = path.join(PG_BIN_DIR, 'pgbench');

export function pgbenchAvailable(): boolean {
  try {
    fs.accessSync(PGBENCH, fs.constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

let scriptDir: string | undefined;
function scriptFile(workload: Workload): string {
  scriptDir ??= fs.mkdtempSync(path.join(os.tmpdir(), 'pgr-pgbench-'));
  const file = path.join(scriptDir, `${workload}.sql`);
  if (!fs.existsSync(file)) fs.writeFileSync(file, PGBENCH_SCRIPTS[workload]);
  return file;
}

export function cleanupPgbenchScripts(): void {
  if (scriptDir !== undefined) fs.rmSync(scriptDir, { recursive: true, force: true });
  scriptDir = undefined;
}

// bash's `times` reports the children's CPU after pgbench exits ("0m1.234s 0m0.567s").
function seconds(s: string): number {
  const m = /^(\d+)m([\d.]+)s$/.exec(s);
  return m === null ? NaN : Number(m[1]) * 60 + Number(m[2]);
}

/**
 * `connections` sessions (pgbench has one statement in flight per session, as a pool of that
 * many connections has at most), `-j` threads up to the cores, for `durationMs` (whole seconds,
 * at least 1: pgbench's -T).
 */
export function runPgbench(srv: PgServer, workload: Workload, mode: PgbenchMode, connections: number, durationMs: number): Promise<PgbenchResult> {
  const secs = Math.max(1, Math.round(durationMs / 1000));
  const threads = Math.max(1, Math.min(connections, os.cpus().length));
  const args = ['-n', '-M', mode, '-c', String(connections), '-j', String(threads), '-T', String(secs), '-f', scriptFile(workload),
    '-h', srv.host, '-p', String(srv.port), '-U', srv.user, srv.database];
  const script = 'pgbench="$1"; shift; "$pgbench" "$@"; rc=$?; times; exit $rc';
  return new Promise((resolve, reject) => {
    execFile('bash', ['-c', script, 'bash', PGBENCH, ...args], {
      env: { ...process.env, PGPASSWORD: srv.password, PGAPPNAME: 'pgbench' },
      timeout: (secs + 60) * 1000,
      maxBuffer: 4 * 1024 * 1024,
    }, (err, stdout, stderr) => {
      if (err) {
        reject(new Error(`pgbench ${mode} ${workload} failed: ${err.message}\n${stderr}`));
        return;
      }
      const tps = Number(/tps = ([\d.]+) \(without initial connection time\)/.exec(stdout)?.[1] ?? NaN);
      const queries = Number(/number of transactions actually processed: (\d+)/.exec(stdout)?.[1] ?? NaN);
      const failed = Number(/number of failed transactions: (\d+)/.exec(stdout)?.[1] ?? 0);
      const latencyAvgMs = Number(/latency average = ([\d.]+) ms/.exec(stdout)?.[1] ?? NaN);
      const lines = stdout.trim().split('\n');
      const children = (lines.at(-1) ?? '').trim().split(/\s+/);
      const cpuS = seconds(children[0] ?? '') + seconds(children[1] ?? '');
      if (!Number.isFinite(tps) || !Number.isFinite(queries)) {
        reject(new Error(`pgbench ${mode} ${workload}: no result in its output:\n${stdout}\n${stderr}`));
        return;
      }
      resolve({ tps, queries, errors: failed, latencyAvgMs, cpuUs: queries > 0 ? (cpuS * 1e6) / queries : NaN });
    });
  });
}
