// One ORM on one pool, in a process of its own, so that a crash (an 'error' event nobody listens
// to, as a raw pg client emits when its session is killed) ends this run only, and is reported as
// what it is. Driven by the harness over IPC:
//   argv: <orm> <resilient|raw> <table>   env PGR_ORM_CONN: JSON Conn,
//   PGR_ORM_POOL_OPTIONS: JSON pg-resilient options beyond the connection (optional)
//   parent → child: { type: 'go' } then { type: 'stop' }
//   child → parent: 'ready' | 'setup-failed' | 'stats' (every STATS_EVERY_MS) | 'done'
import { performance } from 'node:perf_hooks';
import * as pgResilient from '../../src/index.ts';
import { ROWS, type Conn, type OrmAdapter, type OrmDb, type PoolKind } from './adapter.ts';
import { errorKind } from './kinds.ts';

export const LOOPS = 8;
const STATS_EVERY_MS = 200;
const PAUSE_MS = 2; // between a loop's requests: keeps statements in flight without starving 2 cores
const CLOSE_TIMEOUT_MS = 5000;
const LIFETIME_MS = 90_000; // a child the harness lost must not outlive the test

export interface ChildStats {
  requests: number;
  reads: number;
  upserts: number;
  /** `read:<kind>` / `upsert:<kind>` → count. */
  errors: Record<string, number>;
  /** How upserts were marked idempotent: 'pool.idempotent', 'idempotent()' or 'none'. */
  scope: string;
  /** Requests that succeeded after the last error (recovery check). */
  okAfterLastError: number;
  /** The longest request, ms (a retried statement waits out the outage). */
  maxMs: number;
}

export type ChildMessage =
  | { type: 'ready'; scope: string }
  | { type: 'setup-failed'; error: string; kind: string }
  | { type: 'stats' | 'done'; stats: ChildStats };

type Scope = <T>(fn: () => Promise<T>) => Promise<T>;

/** pool.idempotent(fn) where the lead's API exists, else a module-level idempotent(fn), else nothing. */
function idempotentScope(kind: PoolKind, pool: unknown): { scope: Scope; name: string } {
  if (kind === 'resilient') {
    const method = (pool as { idempotent?: unknown } | undefined)?.idempotent;
    if (typeof method === 'function') return { scope: (fn) => method.call(pool, fn) as Promise<never>, name: 'pool.idempotent' };
    const fn = (pgResilient as Record<string, unknown>)['idempotent'];
    if (typeof fn === 'function') return { scope: (f) => fn(f) as Promise<never>, name: 'idempotent()' };
  }
  return { scope: (fn) => fn(), name: 'none' };
}

function send(msg: ChildMessage): void {
  process.send?.(msg);
}

async function main(): Promise<void> {
  const [orm, kindArg, table] = process.argv.slice(2);
  const kind = kindArg as PoolKind;
  const conn = JSON.parse(process.env['PGR_ORM_CONN'] ?? '{}') as Conn;
  const poolOptions = JSON.parse(process.env['PGR_ORM_POOL_OPTIONS'] ?? '{}') as Record<string, unknown>;
  setTimeout(() => process.exit(3), LIFETIME_MS).unref();
  const ext = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
  let db: OrmDb;
  let scope: Scope;
  let scopeName: string;
  try {
    const { adapter } = (await import(new URL(`./adapters/${orm}${ext}`, import.meta.url).href)) as { adapter: OrmAdapter };
    db = await adapter.setup({ kind, conn, table: table!, max: LOOPS, poolOptions });
    ({ scope, name: scopeName } = idempotentScope(kind, db.pool));
    // One of each before the clock starts: wiring mistakes show here, not as fault errors.
    if ((await db.read(1))?.id !== 1) throw new Error('warm-up read did not return row 1');
    await scope(() => db.upsert(1, 'warm-up'));
  } catch (err) {
    send({ type: 'setup-failed', error: err instanceof Error ? `${err.name}: ${err.message}` : String(err), kind: errorKind(err) });
    process.exitCode = 2;
    setTimeout(() => process.exit(2), 200).unref();
    return;
  }
  const stats: ChildStats = { requests: 0, reads: 0, upserts: 0, errors: {}, scope: scopeName, okAfterLastError: 0, maxMs: 0 };
  let stopping = false;
  const started = new Promise<void>((resolve) => {
    process.on('message', (m: { type?: string }) => {
      if (m.type === 'go') resolve();
      if (m.type === 'stop') stopping = true;
    });
  });
  send({ type: 'ready', scope: scopeName });
  await started;
  const ticker = setInterval(() => send({ type: 'stats', stats }), STATS_EVERY_MS);

  const loop = async (n: number): Promise<void> => {
    for (let k = 0; !stopping; k++) {
      const id = 1 + ((n * 37 + k * 11) % ROWS);
      const op = k % 2 === 0 ? 'read' : 'upsert';
      stats.requests += 1;
      const t0 = performance.now();
      try {
        if (op === 'read') {
          stats.reads += 1;
          const row = await db.read(id);
          if (row?.id !== id) throw new Error(`read ${id} returned ${JSON.stringify(row)}`);
        } else {
          stats.upserts += 1;
          await scope(() => db.upsert(id, `n${n}-k${k}`));
        }
        stats.okAfterLastError += 1;
      } catch (err) {
        const key = `${op}:${errorKind(err)}`;
        stats.errors[key] = (stats.errors[key] ?? 0) + 1;
        stats.okAfterLastError = 0;
      }
      stats.maxMs = Math.max(stats.maxMs, Math.round(performance.now() - t0));
      await new Promise((r) => setTimeout(r, PAUSE_MS));
    }
  };
  await Promise.all(Array.from({ length: LOOPS }, (_, n) => loop(n)));
  clearInterval(ticker);
  send({ type: 'done', stats });
  await Promise.race([db.close().catch(() => undefined), new Promise((r) => setTimeout(r, CLOSE_TIMEOUT_MS).unref())]);
  process.disconnect?.();
  process.exit(0);
}

await main();
