// ORM transactions through a kill-primary and a switchover on the Patroni cluster (issue #15).
// Kysely (`db.transaction().execute`), TypeORM (`dataSource.transaction`) and Prisma 7 (the
// driver adapter driven as Prisma's engine drives it: startTransaction, statements, COMMIT) each
// run transactions from 16 workers through HAProxy — insert an order with a unique key, add 1 to
// the ORM's counter — inside `retryable(fn)`, on pg-resilient; the same on raw pg.Pool as the
// control (Kysely's with a naive retry-everything loop). Prisma's insert reads back a
// database-made timestamp (RETURNING, as Prisma's create does), so its replays diverge and
// retryable runs those transactions again; the others replay.
//
// The claim: on pg-resilient no error reaches the application, every transaction it saw succeed
// is in the table exactly once, and each counter equals its successes; the control feels the
// faults. Printed: transactions replayed, diverged, resolved by txid_status and run again.
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { PrismaPg } from '@prisma/adapter-pg';
import { Kysely, PostgresDialect, sql } from 'kysely';
import pg from 'pg';
import { DataSource } from 'typeorm';
import { Pool, retryable, type CommitResolvedEvent } from '../../src/index.ts';
import pgResilient from '../../src/pg.ts';
import { freezeSenders, killPrimary, rwConnectionConfig, startNode, switchover, thawSenders, waitHealthy } from '../helpers/cluster.ts';
import { sleep } from './workload.ts';

const ORMS = ['kysely', 'typeorm', 'prisma'] as const;
type Orm = (typeof ORMS)[number];
const WORKERS = 16;
const CONTROL_WORKERS = 4;
// A kill-primary failover takes Patroni's ttl (10 s) plus a loop_wait and HAProxy's check.
const DEADLINE_MS = 40_000;
const POOL = { max: WORKERS, retry: { maxElapsedMs: DEADLINE_MS } };
// Paced between transactions, unpaced ("hot") around each fault so COMMITs are in flight then.
const PACE_MS = 250;
let hot = false;
let stopping = false;
const pace = (): Promise<void> => (hot ? Promise.resolve() : sleep(PACE_MS));

const ORDERS = 'pgr_ormtx_orders';
const COUNTER = 'pgr_ormtx_counter';
const TEXT = { scalarType: 'string', dbType: 'TEXT', arity: 'scalar' } as const;

/** One ORM's transaction on one pool kind: (key) => insert the order, bump the counter. */
interface Runner {
  tx(key: string): Promise<void>;
  pool: Pool | pg.Pool;
  close(): Promise<void>;
}

function rawPool(max: number): pg.Pool {
  const raw = new pg.Pool({ ...rwConnectionConfig(), max });
  // pg.Pool leaves errors of checked-out clients without a listener (node-postgres #2439); Kysely
  // adds none: without both guards the control would crash the test process.
  raw.on('error', () => undefined);
  raw.on('connect', (client) => client.on('error', () => undefined));
  return raw;
}

async function runner(orm: Orm, resilient: boolean): Promise<Runner> {
  const name = resilient ? orm : `${orm}-raw`;
  const max = resilient ? WORKERS : CONTROL_WORKERS;
  if (orm === 'kysely') {
    const pool = resilient ? new Pool({ ...rwConnectionConfig(), ...POOL }) : rawPool(max);
    const db = new Kysely<any>({ dialect: new PostgresDialect({ pool }) });
    return {
      pool,
      tx: (key) => db.transaction().execute(async (trx) => {
        await trx.insertInto(ORDERS).values({ key, orm: name }).execute();
        await sql`UPDATE ${sql.table(COUNTER)} SET n = n + 1 WHERE orm = ${name}`.execute(trx);
      }),
      close: () => db.destroy(),
    };
  }
  if (orm === 'typeorm') {
    const c = rwConnectionConfig();
    const ds = new DataSource({
      type: 'postgres', ...(resilient ? { driver: pgResilient } : {}),
      host: c.host, port: c.port, username: c.user, password: c.password, database: c.database,
      extra: resilient ? POOL : { max }, logging: false,
    });
    await ds.initialize();
    const pool = (ds.driver as unknown as { master: Pool | pg.Pool }).master;
    (pool as pg.Pool).on('error', () => undefined);
    return {
      pool,
      tx: (key) => ds.transaction(async (m) => {
        await m.query(`INSERT INTO ${ORDERS} (key, orm) VALUES ($1, $2)`, [key, name]);
        await m.query(`UPDATE ${COUNTER} SET n = n + 1 WHERE orm = $1`, [name]);
      }),
      close: () => ds.destroy(),
    };
  }
  // Prisma 7: what its engine does for an interactive transaction with @prisma/adapter-pg.
  const pool = resilient ? new Pool({ ...rwConnectionConfig(), ...POOL }) : rawPool(max);
  (pool as pg.Pool).on('error', () => undefined);
  const adapter = await new PrismaPg(pool as pg.Pool).connect();
  assert.equal(adapter.underlyingDriver(), pool, '@prisma/adapter-pg must use the pool it was given');
  return {
    pool,
    async tx(key) {
      const tx = await adapter.startTransaction();
      try {
        await tx.queryRaw({ sql: `INSERT INTO "public"."${ORDERS}" ("key","orm") VALUES ($1,$2) RETURNING "key", "created_at"`, args: [key, name], argTypes: [TEXT, TEXT] });
        await tx.executeRaw({ sql: `UPDATE "public"."${COUNTER}" SET "n" = "n" + 1 WHERE "orm" = $1`, args: [name], argTypes: [TEXT] });
        await tx.executeRaw({ sql: 'COMMIT', args: [], argTypes: [] });
        await tx.commit();
      } catch (err) {
        await tx.executeRaw({ sql: 'ROLLBACK', args: [], argTypes: [] }).catch(() => undefined);
        await tx.rollback();
        throw err;
      }
    },
    async close() {
      await adapter.dispose();
      await pool.end();
    },
  };
}

interface Tally {
  ok: string[];
  errors: Record<string, number>;
  reruns: number;
  naiveRetries: number;
  replayed: number;
  diverged: number;
  /** Where replays diverged: statement index and the SQLSTATE it failed with, if it did. */
  divergedAt: Record<string, number>;
  resolved: Record<string, number>;
}

const errorName = (err: unknown): string => {
  for (let e: unknown = err, depth = 0; typeof e === 'object' && e !== null && depth < 5; depth += 1) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && code !== '') return code;
    e = (e as { cause?: unknown; driverError?: unknown }).driverError ?? (e as { cause?: unknown }).cause;
  }
  return String((err as Error)?.message ?? err).slice(0, 60);
};

describe('Patroni cluster: ORM transactions exactly once through kill-primary and switchover', () => {
  before(async () => {
    await waitHealthy(120_000);
    const c = new pg.Client(rwConnectionConfig());
    await c.connect();
    // No unique index on the key: a transaction applied twice must be able to show.
    await c.query(`DROP TABLE IF EXISTS ${ORDERS}; DROP TABLE IF EXISTS ${COUNTER};
      CREATE TABLE ${ORDERS} (key text NOT NULL, orm text NOT NULL, created_at timestamptz NOT NULL DEFAULT clock_timestamp());
      CREATE TABLE ${COUNTER} (orm text PRIMARY KEY, n bigint NOT NULL)`);
    for (const orm of ORMS) await c.query(`INSERT INTO ${COUNTER} VALUES ($1, 0), ($2, 0)`, [orm, `${orm}-raw`]);
    await c.end();
  });

  test('Kysely, TypeORM and Prisma: zero application errors under retryable, each success exactly once; raw pg.Pool feels the faults', async () => {
    const tallies = new Map<string, Tally>();
    const runners = new Map<string, Runner>();
    for (const orm of ORMS) {
      for (const resilient of [true, false]) {
        const name = resilient ? orm : `${orm}-raw`;
        const t: Tally = { ok: [], errors: {}, reruns: 0, naiveRetries: 0, replayed: 0, diverged: 0, divergedAt: {}, resolved: {} };
        tallies.set(name, t);
        const r = await runner(orm, resilient);
        runners.set(name, r);
        if (resilient) {
          const pool = r.pool as Pool;
          pool.on('transactionReplay', (e: { outcome: string; statementIndex?: number; sqlstate?: string }) => {
            if (e.outcome === 'replayed') t.replayed += 1;
            else {
              t.diverged += 1;
              const at = `#${e.statementIndex}${e.sqlstate === undefined ? '' : ` ${e.sqlstate}`}`;
              t.divergedAt[at] = (t.divergedAt[at] ?? 0) + 1;
            }
          });
          pool.on('commitResolved', (e: CommitResolvedEvent) => {
            t.resolved[e.outcome] = (t.resolved[e.outcome] ?? 0) + 1;
          });
        }
      }
    }
    const worker = async (name: string, w: number): Promise<void> => {
      const r = runners.get(name)!;
      const t = tallies.get(name)!;
      const resilient = !name.endsWith('-raw');
      const naive = name === 'kysely-raw';
      for (let i = 0; !stopping; i += 1) {
        const key = `${name}-${w}-${i}`;
        try {
          if (resilient) {
            await retryable(() => r.tx(key), { maxElapsedMs: DEADLINE_MS, onRetry: () => { t.reruns += 1; } });
          } else if (naive) {
            // What many applications do: on any error, run the whole transaction again.
            const until = Date.now() + DEADLINE_MS;
            for (;;) {
              try {
                await r.tx(key);
                break;
              } catch (err) {
                t.naiveRetries += 1;
                if (Date.now() > until) throw err;
                await sleep(100);
              }
            }
          } else {
            await r.tx(key);
          }
          t.ok.push(key);
        } catch (err) {
          const e = errorName(err);
          t.errors[e] = (t.errors[e] ?? 0) + 1;
          if (resilient) console.log(`[orm-tx] ${name}: ${String((err as Error).message).slice(0, 400)}`);
        }
        await pace();
      }
    };
    const faults = (async () => {
      try {
        await sleep(4000);
        hot = true;
        await sleep(500);
        const k = await killPrimary();
        hot = false;
        console.log(`[orm-tx] killed ${k.killed}`);
        await sleep(12_000);
        await startNode(k.killed);
        await waitHealthy(120_000);
        console.log('[orm-tx] killed node rejoined');
        await sleep(2000);
        // The naive control's duplicate, made certain rather than left to a race: with the WAL
        // senders frozen every COMMIT commits locally and then waits for the synchronous standby.
        // The switchover's fast shutdown ends those sessions (57P01, "already committed locally"),
        // the senders, thawed, then ship the commits to the standbys before the old primary stops,
        // and the new primary has them: a naive retry applies its transaction a second time, while
        // pg-resilient resolves its COMMITs with txid_status.
        await freezeSenders();
        let s;
        try {
          hot = true;
          await sleep(1000);
          const naive = tallies.get('kysely-raw')!;
          const failedBefore = naive.naiveRetries;
          const switching = switchover();
          switching.catch(() => undefined);
          // Thawed once the shutdown has ended the waiting sessions (the control's COMMIT failed).
          const until = Date.now() + 20_000;
          while (naive.naiveRetries === failedBefore && Date.now() < until) await sleep(50);
          await thawSenders();
          s = await switching;
        } finally {
          await thawSenders().catch(() => undefined); // never leave the cluster's COMMITs hanging
          hot = false;
        }
        console.log(`[orm-tx] switchover ${s.from} → ${s.to} with COMMITs waiting on frozen WAL senders`);
        await sleep(5000);
      } finally {
        stopping = true; // a fault that failed must not leave the workers running
      }
    })();
    const started = Date.now();
    await Promise.all([
      faults,
      ...[...runners.keys()].flatMap((name) => Array.from({ length: name.endsWith('-raw') ? CONTROL_WORKERS : WORKERS }, (_, w) => worker(name, w))),
    ]);
    const tookS = Math.round((Date.now() - started) / 1000);
    for (const r of runners.values()) await r.close().catch(() => undefined);
    await waitHealthy(120_000);

    const c = new pg.Client(rwConnectionConfig());
    await c.connect();
    const counts = new Map<string, number>();
    for (const row of (await c.query<{ key: string; n: string }>(`SELECT key, count(*) AS n FROM ${ORDERS} GROUP BY key`)).rows) counts.set(row.key, Number(row.n));
    const counters = new Map((await c.query<{ orm: string; n: string }>(`SELECT orm, n FROM ${COUNTER}`)).rows.map((r) => [r.orm, Number(r.n)]));
    await c.end();

    const problems: string[] = [];
    console.log(`# ORM transactions through kill-primary + switchover (${tookS} s; ${WORKERS} workers per ORM on pg-resilient, ${CONTROL_WORKERS} on raw pg.Pool)`);
    for (const [name, t] of tallies) {
      const mine = [...counts].filter(([k]) => k.startsWith(`${name}-`) && !(name.endsWith('-raw') ? false : k.startsWith(`${name}-raw-`)));
      const dupes = mine.filter(([, n]) => n > 1).length;
      const notOnce = t.ok.filter((k) => counts.get(k) !== 1).length;
      const rows = mine.reduce((sum, [, n]) => sum + n, 0);
      const errors = Object.values(t.errors).reduce((a, b) => a + b, 0);
      console.log(`# ${name.padEnd(12)} ok=${t.ok.length} errors=${errors} ${JSON.stringify(t.errors)} rows=${rows} duplicate keys=${dupes} successes not exactly once=${notOnce} counter=${counters.get(name)}`
        + (name.endsWith('-raw') ? (t.naiveRetries > 0 ? ` naive retries=${t.naiveRetries}` : '')
          : ` replayed=${t.replayed} diverged=${t.diverged} ${JSON.stringify(t.divergedAt)} resolved by txid_status=${JSON.stringify(t.resolved)} re-run by retryable=${t.reruns}`));
      if (name.endsWith('-raw')) {
        if (errors === 0 && t.naiveRetries === 0) problems.push(`${name}: the control saw no error: the faults did not hit`);
        // What the naive control exists to show: a retried transaction applied twice.
        if (name === 'kysely-raw' && dupes === 0) problems.push(`${name}: the naive retry applied no transaction twice (${t.naiveRetries} retries)`);
      } else {
        if (errors > 0) problems.push(`${name}: ${errors} errors reached the application: ${JSON.stringify(t.errors)}`);
        if (dupes > 0 || notOnce > 0) problems.push(`${name}: ${dupes} duplicate keys, ${notOnce} successes not exactly once`);
        if (counters.get(name) !== t.ok.length) problems.push(`${name}: counter ${counters.get(name)} ≠ ${t.ok.length} successes`);
        if (t.ok.length < 200) problems.push(`${name}: barely ran (${t.ok.length} transactions)`);
      }
    }
    const total = (f: (t: Tally) => number): number => ORMS.reduce((n, o) => n + f(tallies.get(o)!), 0);
    console.log(`# pg-resilient in all: replayed=${total((t) => t.replayed)} diverged=${total((t) => t.diverged)} resolved by txid_status=${total((t) => Object.values(t.resolved).reduce((a, b) => a + b, 0))} re-run=${total((t) => t.reruns)}`);
    assert.deepEqual(problems, []);
  });
});
