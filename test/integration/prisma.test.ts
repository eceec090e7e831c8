import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { PrismaPg } from '@prisma/adapter-pg';
import type { ArgType, SqlDriverAdapter, SqlQuery } from '@prisma/driver-adapter-utils';
import { Pool, classify } from '../../src/index.ts';
import { startPgServer, type PgServer } from '../helpers/pg-server.ts';

// Prisma 7 on pg-resilient: `new PrismaPg(pool)` from @prisma/adapter-pg 7.10 (issue #13, point 7).
//
// Route: no generated PrismaClient. `prisma generate` downloads an engine binary, and only the
// npm registry is reachable here, so these tests drive the adapter through its own
// driver-adapter interface (@prisma/driver-adapter-utils), which is exactly what PrismaClient 7
// calls: the factory's connect(), then queryRaw / executeRaw for statements and
// startTransaction() → executeRaw('COMMIT') → commit() for interactive transactions.
//
// The adapter keeps a pool it is given only when `poolOrConfig instanceof pg.Pool`
// (PrismaPgAdapterFactory's constructor, node_modules/@prisma/adapter-pg/dist/index.mjs); any
// other object is taken for a PoolConfig and the adapter silently builds its own raw pg.Pool from
// its enumerable fields. So pg-resilient's Pool must pass `instanceof pg.Pool` for the application's
// copy of pg; these tests fail until it does.

const int: ArgType = { scalarType: 'int', arity: 'scalar' };
const str: ArgType = { scalarType: 'string', arity: 'scalar' };
const sql = (text: string, args: unknown[] = [], argTypes: ArgType[] = []): SqlQuery => ({ sql: text, args, argTypes });

const LOOPS = 4;
const WORKLOAD_MS = 5000;
const RESTART_AT_MS = 1500;

interface LoopStats {
  ok: number;
  errors: unknown[];
  okAfterRestart: number[];
}

/** LOOPS concurrent read loops per adapter for WORKLOAD_MS, with a fast restart in the middle. */
async function readsThroughRestart(server: PgServer, adapters: Record<string, SqlDriverAdapter>): Promise<Record<string, LoopStats>> {
  const stats: Record<string, LoopStats> = {};
  let restarted = false;
  const stopAt = Date.now() + WORKLOAD_MS;
  const restart = (async () => {
    await new Promise((r) => setTimeout(r, RESTART_AT_MS));
    await server.restart('fast');
    restarted = true;
  })();
  const loops: Promise<void>[] = [];
  for (const [name, adapter] of Object.entries(adapters)) {
    const s: LoopStats = { ok: 0, errors: [], okAfterRestart: Array.from({ length: LOOPS }, () => 0) };
    stats[name] = s;
    for (let i = 0; i < LOOPS; i++) {
      loops.push((async () => {
        while (Date.now() < stopAt) {
          try {
            const rs = await adapter.queryRaw(sql('SELECT count(*)::int AS n FROM prisma_items WHERE id >= $1', [100], [int]));
            assert.deepEqual(rs.rows, [[50]]);
            s.ok += 1;
            if (restarted) s.okAfterRestart[i] = (s.okAfterRestart[i] ?? 0) + 1;
          } catch (err) {
            s.errors.push(err);
          }
          await new Promise((r) => setTimeout(r, 5));
        }
      })());
    }
  }
  await Promise.all([restart, ...loops]);
  assert.ok(restarted, 'the restart finished within the workload');
  return stats;
}

function describeErrors(errors: unknown[]): string {
  const counts = new Map<string, number>();
  for (const e of errors) {
    // The adapter wraps pg's error in a DriverAdapterError whose `cause` describes it.
    const cause = (e as { cause?: { kind?: string; originalCode?: string; originalMessage?: string } }).cause;
    const k = cause?.kind !== undefined ? `${cause.kind}/${cause.originalCode ?? cause.originalMessage ?? '-'}` : classify(e).category;
    counts.set(k, (counts.get(k) ?? 0) + 1);
  }
  return [...counts].map(([k, n]) => `${k}×${n}`).join(' ') || 'none';
}

describe('Prisma 7 (@prisma/adapter-pg) on pg-resilient', () => {
  let server: PgServer;
  before(async () => {
    server = await startPgServer();
    await server.admin('CREATE TABLE IF NOT EXISTS prisma_items (id int PRIMARY KEY, name text NOT NULL)');
    await server.admin("INSERT INTO prisma_items SELECT g, 'n' || g FROM generate_series(100, 149) g ON CONFLICT DO NOTHING");
  });
  after(async () => {
    await server.destroy();
  });

  test('new PrismaPg(pool) keeps the pool and runs its statements and transactions through it', async () => {
    const pool = new Pool({ ...server.config, max: 4 });
    const events: string[] = [];
    for (const e of ['connect', 'acquire', 'release'] as const) pool.on(e, () => events.push(e));
    pool.on('callEnd', (ev) => events.push(`callEnd ${ev.kind} ${ev.outcome}`));
    assert.ok(pool instanceof pg.Pool, 'pg-resilient\'s Pool is an instanceof pg.Pool (the adapter\'s test)');
    const factory = new PrismaPg(pool as unknown as pg.Pool);
    const adapter = await factory.connect();
    try {
      assert.equal(adapter.underlyingDriver(), pool, 'the adapter uses the pool it was given, not a pg.Pool of its own');

      const rs = await adapter.queryRaw(sql('SELECT $1::int AS n, $2::text AS s', [41, 'x'], [int, str]));
      assert.deepEqual({ columns: rs.columnNames, rows: rs.rows }, { columns: ['n', 's'], rows: [[41, 'x']] });
      assert.deepEqual(events.filter((e) => e !== 'connect'), ['acquire', 'release', 'callEnd query ok'], 'the statement went through pg-resilient\'s pool.query');

      events.length = 0;
      assert.equal(await adapter.executeRaw(sql('INSERT INTO prisma_items (id, name) VALUES ($1, $2)', [1, 'one'], [int, str])), 1);
      // pg's own error reaches the adapter unchanged, so Prisma maps it (P2002 for a unique violation).
      await assert.rejects(adapter.executeRaw(sql('INSERT INTO prisma_items (id, name) VALUES ($1, $2)', [1, 'dup'], [int, str])),
        (err: { cause?: { kind?: string; originalCode?: string } }) => err.cause?.kind === 'UniqueConstraintViolation' && err.cause.originalCode === '23505');

      // An interactive transaction: one checked-out client from BEGIN to COMMIT.
      events.length = 0;
      const tx = await adapter.startTransaction();
      const pidA = await tx.queryRaw(sql('SELECT pg_backend_pid() AS pid'));
      await tx.executeRaw(sql('INSERT INTO prisma_items (id, name) VALUES ($1, $2)', [2, 'two'], [int, str]));
      const pidB = await tx.queryRaw(sql('SELECT pg_backend_pid() AS pid'));
      await tx.executeRaw(sql('COMMIT'));
      await tx.commit();
      assert.deepEqual(pidA.rows, pidB.rows, 'the transaction ran on one connection');
      assert.equal(events.filter((e) => e === 'acquire').length, 1, `one checkout for the transaction (${events.join(', ')})`);
      assert.equal(events.filter((e) => e === 'release').length, 1);

      const rolledBack = await adapter.startTransaction();
      await rolledBack.executeRaw(sql('INSERT INTO prisma_items (id, name) VALUES ($1, $2)', [3, 'three'], [int, str]));
      await rolledBack.executeRaw(sql('ROLLBACK'));
      await rolledBack.rollback();

      const all = await adapter.queryRaw(sql('SELECT id, name FROM prisma_items WHERE id < 100 ORDER BY id'));
      assert.deepEqual(all.rows, [[1, 'one'], [2, 'two']]);
      assert.equal(pool.idleCount, pool.totalCount, 'every client was released');
    } finally {
      await adapter.dispose(); // leaves an external pool open (disposeExternalPool defaults to false)
      await pool.end();
      await server.admin('DELETE FROM prisma_items WHERE id < 100');
    }
  });

  test('PrismaPg over pg-resilient rides out a fast restart with no error; over a raw pg.Pool the same reads fail', async () => {
    const pool = new Pool({ ...server.config, max: LOOPS, retry: { maxElapsedMs: 20_000 } });
    const raw = new pg.Pool({ ...server.config, max: LOOPS });
    const rawIdleErrors: Error[] = [];
    const ours = await new PrismaPg(pool as unknown as pg.Pool).connect();
    // The adapter listens for the pool's 'error' (idle clients killed by the restart) and reports it here.
    const theirs = await new PrismaPg(raw, { onPoolError: (err) => rawIdleErrors.push(err) }).connect();
    try {
      assert.equal(ours.underlyingDriver(), pool, 'the adapter uses pg-resilient\'s pool');
      assert.equal(theirs.underlyingDriver(), raw);
      const stats = await readsThroughRestart(server, { ours, raw: theirs });
      const o = stats['ours']!;
      const r = stats['raw']!;
      console.log(`# prisma restart: pg-resilient ok=${o.ok} errors=${describeErrors(o.errors)}; raw pg.Pool ok=${r.ok} errors=${describeErrors(r.errors)} idle-client errors=${rawIdleErrors.length}`);
      assert.ok(r.errors.length > 0, 'the raw pg.Pool control must see the restart, or this test proves nothing');
      assert.deepEqual(o.errors.map((e) => String(e)), [], 'no read through pg-resilient failed');
      assert.ok(o.okAfterRestart.every((n) => n > 10), `every loop went on after the restart (${o.okAfterRestart.join(',')})`);
    } finally {
      await ours.dispose();
      await theirs.dispose();
      await pool.end();
      await raw.end();
    }
  });
});
