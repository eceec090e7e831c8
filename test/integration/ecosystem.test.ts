import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { Kysely, PostgresDialect, sql as ksql } from 'kysely';
import { drizzle } from 'drizzle-orm/node-postgres';
import { integer, pgTable, text } from 'drizzle-orm/pg-core';
import { eq, sql as dsql } from 'drizzle-orm';
import { Pool, classify } from '../../src/index.ts';
import { startPgServer, type PgServer } from '../helpers/pg-server.ts';

// Kysely and Drizzle take pg-resilient's Pool where they take pg.Pool, unchanged: this file
// compiling is the typecheck; the tests run real queries, transactions and a fast restart.
//
// How each uses the pool decides what a restart can do to it:
// - Drizzle runs statements outside a transaction with pool.query(): those are retried, so a
//   restart costs the application nothing.
// - Kysely runs every statement on a checked-out client (connect(), query, release()). The
//   pool retries getting that client, and never hands out one whose connection died, but a
//   statement that is in flight on it when the server ends the session fails (57P01): a lent
//   pg.Client can't be reconnected underneath the caller. So at most one error per concurrent
//   Kysely loop, all of them "terminated while in flight", and none of the other kinds a raw
//   pg.Pool produces (dead idle clients, refused connects, "starting up").

interface Db {
  eco_items: { id: number; name: string };
}

const ecoItems = pgTable('eco_items', {
  id: integer('id').primaryKey(),
  name: text('name').notNull(),
});

const LOOPS = 4;
const WORKLOAD_MS = 5000;
const RESTART_AT_MS = 1500;

interface LoopStats {
  ok: number;
  errors: unknown[];
  /** Successes per loop after the restart finished. */
  okAfterRestart: number[];
}

/** `LOOPS` concurrent read loops for WORKLOAD_MS, with a fast restart in the middle. */
async function underRestart(server: PgServer, workloads: Record<string, (loop: number) => Promise<void>>): Promise<Record<string, LoopStats>> {
  const stats: Record<string, LoopStats> = {};
  let restarted = false;
  const stopAt = Date.now() + WORKLOAD_MS;
  const restart = (async () => {
    await new Promise((r) => setTimeout(r, RESTART_AT_MS));
    await server.restart('fast');
    restarted = true;
  })();
  const loops: Promise<void>[] = [];
  for (const [name, once] of Object.entries(workloads)) {
    const s: LoopStats = { ok: 0, errors: [], okAfterRestart: Array.from({ length: LOOPS }, () => 0) };
    stats[name] = s;
    for (let i = 0; i < LOOPS; i++) {
      loops.push((async () => {
        while (Date.now() < stopAt) {
          try {
            await once(i);
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
    const c = classify(e);
    const k = `${c.category}/${c.code ?? '-'}`;
    counts.set(k, (counts.get(k) ?? 0) + 1);
  }
  return [...counts].map(([k, n]) => `${k}×${n}`).join(' ') || 'none';
}

describe('Kysely and Drizzle on pg-resilient', () => {
  let server: PgServer;
  before(async () => {
    server = await startPgServer();
    await server.admin('CREATE TABLE IF NOT EXISTS eco_items (id int PRIMARY KEY, name text NOT NULL)');
  });
  after(async () => {
    await server.destroy();
  });

  test('Kysely: queries, a transaction on one connection, a rollback', async () => {
    const pool = new Pool({ connectionString: server.connectionString, max: 4 });
    const db = new Kysely<Db>({ dialect: new PostgresDialect({ pool }) });
    try {
      await db.deleteFrom('eco_items').execute();
      await db.insertInto('eco_items').values([{ id: 1, name: 'one' }, { id: 2, name: 'two' }]).execute();
      const row = await db.selectFrom('eco_items').select(['id', 'name']).where('id', '=', 2).executeTakeFirstOrThrow();
      assert.deepEqual(row, { id: 2, name: 'two' });

      const txids = await db.transaction().execute(async (trx) => {
        const a = await ksql<{ t: string }>`SELECT txid_current()::text AS t`.execute(trx);
        await trx.insertInto('eco_items').values({ id: 3, name: 'three' }).execute();
        await trx.updateTable('eco_items').set({ name: 'ONE' }).where('id', '=', 1).execute();
        const b = await ksql<{ t: string }>`SELECT txid_current()::text AS t`.execute(trx);
        return [a.rows[0]!.t, b.rows[0]!.t];
      });
      assert.equal(txids[0], txids[1], 'the whole transaction ran on one connection');

      await assert.rejects(db.transaction().execute(async (trx) => {
        await trx.insertInto('eco_items').values({ id: 4, name: 'four' }).execute();
        throw new Error('roll it back');
      }), /roll it back/);
      const all = await db.selectFrom('eco_items').select(['id', 'name']).orderBy('id').execute();
      assert.deepEqual(all, [{ id: 1, name: 'ONE' }, { id: 2, name: 'two' }, { id: 3, name: 'three' }]);
      // Unique violation comes back as pg's own error, unchanged.
      await assert.rejects(db.insertInto('eco_items').values({ id: 1, name: 'dup' }).execute(), (err: { code?: string }) => err.code === '23505');
      assert.equal(pool.totalCount > 0 && pool.idleCount === pool.totalCount, true, 'every client was released');
    } finally {
      await db.destroy(); // ends the pool, as Kysely does with pg.Pool
    }
    assert.equal(pool.ended, true);
  });

  test('Drizzle: queries, a transaction on one connection, a rollback', async () => {
    const pool = new Pool({ connectionString: server.connectionString, max: 4 });
    const db = drizzle(pool);
    try {
      await db.delete(ecoItems);
      await db.insert(ecoItems).values([{ id: 1, name: 'one' }, { id: 2, name: 'two' }]);
      const rows = await db.select().from(ecoItems).where(eq(ecoItems.id, 2));
      assert.deepEqual(rows, [{ id: 2, name: 'two' }]);

      const txids = await db.transaction(async (tx) => {
        const a = await tx.execute<{ t: string }>(dsql`SELECT txid_current()::text AS t`);
        await tx.insert(ecoItems).values({ id: 3, name: 'three' });
        await tx.update(ecoItems).set({ name: 'ONE' }).where(eq(ecoItems.id, 1));
        const b = await tx.execute<{ t: string }>(dsql`SELECT txid_current()::text AS t`);
        return [a.rows[0]!.t, b.rows[0]!.t];
      });
      // Drizzle checks out a client for transactions only if it recognises a pool (by class
      // name); otherwise BEGIN and COMMIT would go to different connections.
      assert.equal(txids[0], txids[1], 'the whole transaction ran on one connection');

      await assert.rejects(db.transaction(async (tx) => {
        await tx.insert(ecoItems).values({ id: 4, name: 'four' });
        throw new Error('roll it back');
      }), /roll it back/);
      const all = await db.select().from(ecoItems).orderBy(ecoItems.id);
      assert.deepEqual(all, [{ id: 1, name: 'ONE' }, { id: 2, name: 'two' }, { id: 3, name: 'three' }]);
      await assert.rejects(db.insert(ecoItems).values({ id: 1, name: 'dup' }), (err: { code?: string; cause?: { code?: string } }) => (err.cause?.code ?? err.code) === '23505');
      assert.equal(pool.idleCount, pool.totalCount, 'every client was released');
    } finally {
      await pool.end();
    }
  });

  test('Kysely under a fast restart: only statements in flight can fail; a raw pg.Pool fails more ways', async () => {
    await server.admin("INSERT INTO eco_items SELECT g, 'n' || g FROM generate_series(100, 149) g ON CONFLICT DO NOTHING");
    const pool = new Pool({ connectionString: server.connectionString, max: LOOPS, retry: { maxElapsedMs: 20_000 } });
    const raw = new pg.Pool({ connectionString: server.connectionString, max: LOOPS });
    raw.on('error', () => undefined); // idle clients die on restart; pg.Pool would crash otherwise
    // A checked-out pg client whose session ends between statements emits 'error' with no
    // listener, which would crash this test process: the control gets the usual guard.
    raw.on('connect', (client) => client.on('error', () => undefined));
    const ours = new Kysely<Db>({ dialect: new PostgresDialect({ pool }) });
    const theirs = new Kysely<Db>({ dialect: new PostgresDialect({ pool: raw }) });
    const read = (db: Kysely<Db>) => async (): Promise<void> => {
      const r = await db.selectFrom('eco_items').select((eb) => eb.fn.countAll<string>().as('n')).where('id', '>=', 100).executeTakeFirstOrThrow();
      assert.equal(Number(r.n), 50);
    };
    try {
      await Promise.all([read(ours)(), read(theirs)()]);
      const stats = await underRestart(server, { ours: read(ours), raw: read(theirs) });
      const o = stats['ours']!;
      const r = stats['raw']!;
      console.log(`# kysely restart: pg-resilient ok=${o.ok} errors=${describeErrors(o.errors)}; raw pg.Pool ok=${r.ok} errors=${describeErrors(r.errors)}`);

      // The control must see the restart, beyond statements in flight: otherwise this test proves nothing.
      const rawBeyondInFlight = r.errors.filter((e) => !['server-shutdown', 'connection-lost'].includes(classify(e).category));
      assert.ok(rawBeyondInFlight.length > 0, `raw pg.Pool must fail on dead or refused connections too (${describeErrors(r.errors)})`);

      // Ours: at most the statements in flight when the server ended the sessions.
      assert.ok(o.errors.length <= LOOPS, `at most one in-flight statement per loop may fail (${describeErrors(o.errors)})`);
      // 57P01 if the server's message arrived first, "Connection terminated unexpectedly" if the close did.
      for (const e of o.errors) assert.ok(['server-shutdown', 'connection-lost'].includes(classify(e).category), `only terminated-in-flight errors (${describeErrors(o.errors)})`);
      assert.ok(o.okAfterRestart.every((n) => n > 10), `every loop went on after the restart (${o.okAfterRestart.join(',')})`);
    } finally {
      await ours.destroy();
      await theirs.destroy();
    }
  });

  test('Drizzle under a fast restart: no application error; a raw pg.Pool sees errors', async () => {
    await server.admin("INSERT INTO eco_items SELECT g, 'n' || g FROM generate_series(100, 149) g ON CONFLICT DO NOTHING");
    const pool = new Pool({ connectionString: server.connectionString, max: LOOPS, retry: { maxElapsedMs: 20_000 } });
    const raw = new pg.Pool({ connectionString: server.connectionString, max: LOOPS });
    raw.on('error', () => undefined);
    raw.on('connect', (client) => client.on('error', () => undefined));
    const ours = drizzle(pool);
    const theirs = drizzle(raw);
    let retries = 0;
    pool.on('retry', () => (retries += 1));
    const read = (db: typeof ours | typeof theirs) => async (loop: number): Promise<void> => {
      const rows = await db.select({ id: ecoItems.id, name: ecoItems.name }).from(ecoItems).where(eq(ecoItems.id, 100 + loop));
      assert.deepEqual(rows, [{ id: 100 + loop, name: `n${100 + loop}` }]);
    };
    try {
      await Promise.all([read(ours)(0), read(theirs)(0)]);
      const stats = await underRestart(server, { ours: read(ours), raw: read(theirs) });
      const o = stats['ours']!;
      const r = stats['raw']!;
      console.log(`# drizzle restart: pg-resilient ok=${o.ok} errors=${describeErrors(o.errors)} retries=${retries}; raw pg.Pool ok=${r.ok} errors=${describeErrors(r.errors)}`);
      assert.ok(r.errors.length > 0, 'the control (raw pg.Pool) must see the restart');
      assert.deepEqual(o.errors, [], 'no application error through pg-resilient');
      assert.ok(retries > 0, 'the restart was ridden out by retrying');
      assert.ok(o.okAfterRestart.every((n) => n > 10), `every loop went on after the restart (${o.okAfterRestart.join(',')})`);
    } finally {
      await pool.end();
      await raw.end();
    }
  });
});
