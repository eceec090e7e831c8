// A fleet of simulated pods (issue #18): N child processes, each with its own pool under a
// steady load (test/helpers/fleet-child.ts), started together, stopped together, and their
// figures summed. The same fleet with raw pg.Pools is every fleet test's control.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import type { PoolOptions } from '../../src/index.ts';
import type { FleetChildConfig, FleetChildMessage, FleetChildStats } from './fleet-child.ts';

export type { FleetChildStats } from './fleet-child.ts';

export interface FleetOptions {
  readonly kind: 'resilient' | 'raw';
  readonly pods: number;
  /** Each pod's pool options (`pod` is its index, e.g. for application_name). */
  readonly pool: (pod: number) => PoolOptions;
  readonly workers: number;
  readonly query: string;
  readonly thinkMs: number;
  readonly gapMs?: number;
  readonly statsEveryMs?: number;
}

export interface Fleet {
  readonly kind: 'resilient' | 'raw';
  /** Starts every pod's load (at once). */
  start(): void;
  /** Marks the fault: each pod's count of connection attempts in flight at once starts again from now. */
  mark(): void;
  /** The latest figures each pod reported. */
  latest(): FleetChildStats[];
  /** Stops the load, ends the pools, and returns each pod's final figures (bounded wait). */
  stop(timeoutMs?: number): Promise<FleetChildStats[]>;
  /** Kills whatever is still running (after hooks). */
  kill(): void;
}

interface Pod {
  readonly child: ChildProcess;
  last: FleetChildStats | undefined;
  done: FleetChildStats | undefined;
  stderr: string;
}

const READY_TIMEOUT_MS = 60_000;

export async function startFleet(o: FleetOptions): Promise<Fleet> {
  const ext = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
  const script = new URL(`./fleet-child${ext}`, import.meta.url).pathname;
  const pods: Pod[] = [];
  const readies: Array<Promise<void>> = [];
  for (let i = 0; i < o.pods; i += 1) {
    const config: FleetChildConfig = {
      kind: o.kind, pod: i, pool: o.pool(i), workers: o.workers, query: o.query, thinkMs: o.thinkMs,
      gapMs: o.gapMs ?? 250, statsEveryMs: o.statsEveryMs ?? 500,
    };
    const child = spawn(process.execPath, [...process.execArgv.filter((a) => !a.startsWith('--test')), script], {
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
      env: { ...process.env, PGR_FLEET_CHILD: JSON.stringify(config) },
    });
    const pod: Pod = { child, last: undefined, done: undefined, stderr: '' };
    child.on('error', () => undefined);
    child.stderr?.setEncoding('utf8').on('data', (d: string) => {
      if (pod.stderr.length < 10_000) pod.stderr += d;
    });
    readies.push(new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`fleet pod ${i}: no ready message within ${READY_TIMEOUT_MS} ms: ${pod.stderr}`)), READY_TIMEOUT_MS);
      child.on('message', (m: FleetChildMessage) => {
        if (m.type === 'ready') {
          clearTimeout(timer);
          resolve();
        } else if (m.type === 'stats') pod.last = m.stats;
        else if (m.type === 'done') pod.done = m.stats;
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`fleet pod ${i} exited (${code}) before ready: ${pod.stderr}`));
      });
    }));
    pods.push(pod);
  }
  const fleet: Fleet = {
    kind: o.kind,
    start() {
      for (const p of pods) if (p.child.connected) p.child.send({ type: 'start' });
    },
    mark() {
      for (const p of pods) if (p.child.connected) p.child.send({ type: 'mark' });
    },
    latest() {
      return pods.map((p) => p.done ?? p.last).filter((s): s is FleetChildStats => s !== undefined);
    },
    async stop(timeoutMs = 30_000) {
      const exits = pods.map((p) => (p.child.exitCode !== null ? Promise.resolve() : once(p.child, 'exit').then(() => undefined)));
      for (const p of pods) if (p.child.connected) p.child.send({ type: 'stop' });
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([Promise.all(exits), new Promise((r) => { timer = setTimeout(r, timeoutMs); })]);
      clearTimeout(timer);
      fleet.kill();
      return fleet.latest();
    },
    kill() {
      for (const p of pods) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
    },
  };
  try {
    await Promise.all(readies);
  } catch (err) {
    fleet.kill();
    throw err;
  }
  return fleet;
}

export interface FleetTotals {
  readonly pods: number;
  readonly ok: number;
  readonly errors: number;
  readonly errorsByCode: Record<string, number>;
  readonly busyConnects: number;
  readonly busyRetries: number;
  readonly retries: number;
  readonly breakerOpened: number;
  readonly connectionsOpened: number;
  readonly longestMs: number;
  /** Connection attempts in flight at once in one pod, the most of any pod: over the phase, and since the fault. */
  readonly mostConnecting: number;
  readonly mostConnectingSinceFault: number;
  /** Pods with at least one error. */
  readonly podsWithErrors: number;
  readonly firstErrors: string[];
}

export function totals(stats: readonly FleetChildStats[]): FleetTotals {
  const errorsByCode: Record<string, number> = {};
  for (const s of stats) for (const [code, n] of Object.entries(s.errorsByCode)) errorsByCode[code] = (errorsByCode[code] ?? 0) + n;
  const sum = (f: (s: FleetChildStats) => number): number => stats.reduce((n, s) => n + f(s), 0);
  return {
    pods: stats.length,
    ok: sum((s) => s.ok),
    errors: sum((s) => s.errors),
    errorsByCode,
    busyConnects: sum((s) => s.busyConnects),
    busyRetries: sum((s) => s.busyRetries),
    retries: sum((s) => s.retries),
    breakerOpened: sum((s) => s.breakerOpened),
    connectionsOpened: sum((s) => s.connectionsOpened),
    longestMs: Math.max(0, ...stats.map((s) => s.longestMs)),
    mostConnecting: Math.max(0, ...stats.map((s) => s.mostConnecting)),
    mostConnectingSinceFault: Math.max(0, ...stats.map((s) => s.mostConnectingSinceMark)),
    podsWithErrors: stats.filter((s) => s.errors > 0).length,
    firstErrors: stats.flatMap((s) => s.firstErrors).slice(0, 3),
  };
}
