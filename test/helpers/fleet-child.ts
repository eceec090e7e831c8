// One simulated pod of a fleet (issue #18): a pool (pg-resilient's or a raw pg.Pool) under a
// steady load, in its own process, as each replica of a service is. Not a test file: started by
// test/helpers/fleet.ts, which sends 'start' and 'stop' and reads 'stats' and 'done'.
//
// Config as JSON in PGR_FLEET_CHILD (never on the command line: it holds a password).
import pg from 'pg';
import { Pool, type PoolOptions } from '../../src/index.ts';

export interface FleetChildConfig {
  readonly kind: 'resilient' | 'raw';
  readonly pod: number;
  /** Pool options (connection and sizing); pg-resilient's own keys are dropped for pg.Pool. */
  readonly pool: PoolOptions;
  /** Concurrent request loops. */
  readonly workers: number;
  readonly query: string;
  /** Mean pause between a worker's requests (uniform in [0.5, 1.5] × this). */
  readonly thinkMs: number;
  /** A pause between two successes of this pod longer than this is recorded as a gap. */
  readonly gapMs: number;
  readonly statsEveryMs: number;
}

export interface FleetChildStats {
  readonly pod: number;
  readonly kind: 'resilient' | 'raw';
  ok: number;
  errors: number;
  /** Error code (and the code of its cause) → count. */
  errorsByCode: Record<string, number>;
  firstErrors: string[];
  /** Connection attempts the server refused with 53300 (pg-resilient: its log; raw: the errors). */
  busyConnects: number;
  /** Calls pg-resilient retried after a 53300. */
  busyRetries: number;
  retries: number;
  breakerOpened: number;
  connectionsOpened: number;
  longestMs: number;
  /** Wall-clock [from, to] of pauses between successes longer than gapMs (bounded). */
  gaps: Array<[number, number]>;
  lastOkAt: number;
  mostConnections: number;
  /** Connection attempts in flight at once in this pod, the most seen: over the phase, and since 'mark' (the fault). */
  mostConnecting: number;
  mostConnectingSinceMark: number;
}

export type FleetChildMessage =
  | { type: 'ready'; pod: number }
  | { type: 'stats'; stats: FleetChildStats }
  | { type: 'done'; stats: FleetChildStats };

type ConnectCallback = (err?: Error | null) => void;

/**
 * The same instrumented pg.Client in both fleets, so their connection bursts are counted alike
 * on the client side: per pod, exactly, unlike the server's log, where a fleet's attempts in
 * 100 ms depend on when each pod's callers happen to arrive (a raw fleet bursts, or not).
 */
function countingClient(stats: FleetChildStats): { Client: typeof pg.Client; connectingNow(): number } {
  let connecting = 0;
  const begin = (): void => {
    connecting += 1;
    stats.mostConnecting = Math.max(stats.mostConnecting, connecting);
    stats.mostConnectingSinceMark = Math.max(stats.mostConnectingSinceMark, connecting);
  };
  class CountingClient extends pg.Client {
    constructor(config?: string | pg.ClientConfig) {
      super(config);
      const connect = pg.Client.prototype.connect as (this: pg.Client, cb: ConnectCallback) => void;
      // pg-pool and pg-resilient both call connect(callback), and pg calls it back once.
      Object.defineProperty(this, 'connect', {
        value: (callback: ConnectCallback): void => {
          if (typeof callback !== 'function') throw new TypeError('fleet pods connect with a callback');
          begin();
          connect.call(this, (err?: Error | null) => {
            connecting -= 1;
            callback(err);
          });
        },
      });
    }
  }
  return { Client: CountingClient, connectingNow: () => connecting };
}

function codeOf(err: unknown): string {
  const e = err as { code?: unknown; cause?: { code?: unknown } } | undefined;
  const code = typeof e?.code === 'string' ? e.code : (err instanceof Error ? err.message.slice(0, 40) : String(err));
  const cause = typeof e?.cause?.code === 'string' ? e.cause.code : undefined;
  return cause === undefined ? code : `${code}(${cause})`;
}

function main(): void {
  const config = JSON.parse(process.env['PGR_FLEET_CHILD'] ?? '{}') as FleetChildConfig;
  const stats: FleetChildStats = {
    pod: config.pod, kind: config.kind, ok: 0, errors: 0, errorsByCode: {}, firstErrors: [], busyConnects: 0, busyRetries: 0,
    retries: 0, breakerOpened: 0, connectionsOpened: 0, longestMs: 0, gaps: [], lastOkAt: 0, mostConnections: 0,
    mostConnecting: 0, mostConnectingSinceMark: 0,
  };
  const { Client, connectingNow } = countingClient(stats);
  let pool: pg.Pool;
  if (config.kind === 'resilient') {
    const countBusy = (fields: object, message: string): void => {
      const error = (fields as { error?: unknown }).error;
      if (message.includes('connect failed') && typeof error === 'string' && error.startsWith('53300')) stats.busyConnects += 1;
    };
    const noop = (): void => undefined;
    const p = new Pool({ ...config.pool, Client, logger: { debug: countBusy, info: noop, warn: noop, error: noop } });
    p.on('retry', (e) => {
      stats.retries += 1;
      if (e.code === '53300') stats.busyRetries += 1;
    });
    p.on('breaker', (e) => {
      if (e.state === 'open') stats.breakerOpened += 1;
    });
    p.on('connectionCreated', () => {
      stats.connectionsOpened += 1;
    });
    pool = p as unknown as pg.Pool;
  } else {
    const options: Record<string, unknown> = { ...config.pool };
    for (const key of ['retry', 'breaker', 'hosts', 'targetSessionAttrs', 'patroni', 'acquireTimeoutMs']) delete options[key];
    pool = new pg.Pool({ ...(options as pg.PoolConfig), Client });
    pool.on('connect', () => {
      stats.connectionsOpened += 1;
    });
  }
  pool.on('error', () => undefined); // an idle client's connection died: the next checkout sees it

  let running = false;
  const workers: Array<Promise<void>> = [];
  const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
  const worker = async (): Promise<void> => {
    while (running) {
      const t0 = Date.now();
      try {
        await pool.query(config.query);
        const now = Date.now();
        if (stats.lastOkAt > 0 && now - stats.lastOkAt > config.gapMs && stats.gaps.length < 200) stats.gaps.push([stats.lastOkAt, now]);
        stats.lastOkAt = Math.max(stats.lastOkAt, now);
        stats.ok += 1;
      } catch (err) {
        stats.errors += 1;
        const code = codeOf(err);
        stats.errorsByCode[code] = (stats.errorsByCode[code] ?? 0) + 1;
        if (config.kind === 'raw' && (err as { code?: unknown }).code === '53300') stats.busyConnects += 1;
        if (stats.firstErrors.length < 5) stats.firstErrors.push(`${code}: ${err instanceof Error ? err.message : String(err)}`.slice(0, 200));
      }
      stats.longestMs = Math.max(stats.longestMs, Date.now() - t0);
      stats.mostConnections = Math.max(stats.mostConnections, pool.totalCount);
      await sleep(config.thinkMs * (0.5 + Math.random()));
    }
  };
  const send = (m: FleetChildMessage): void => {
    if (process.connected) process.send?.(m);
  };
  const ticker = setInterval(() => send({ type: 'stats', stats }), config.statsEveryMs);
  process.on('message', (m: { type: string }) => {
    if (m.type === 'start' && !running) {
      running = true;
      for (let i = 0; i < config.workers; i += 1) workers.push(worker());
    } else if (m.type === 'mark') {
      stats.mostConnectingSinceMark = connectingNow();
    } else if (m.type === 'stop') {
      running = false;
      void Promise.all(workers).then(async () => {
        clearInterval(ticker);
        await pool.end().catch(() => undefined);
        send({ type: 'done', stats });
        process.disconnect?.();
      });
    }
  });
  process.on('disconnect', () => {
    // The parent went away: stop rather than load the server forever.
    if (running) process.exit(1);
  });
  send({ type: 'ready', pod: config.pod });
}

// A fleet child only when started as one (the types above are imported by the parent too).
if (process.env['PGR_FLEET_CHILD'] !== undefined && process.send !== undefined) main();
