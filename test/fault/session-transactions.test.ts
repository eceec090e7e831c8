// Transactions on checked-out clients (what ORMs' transaction APIs run on) through a connection
// lost at an exact point, with the protocol-aware proxy (issue #15):
// (a) lost after BEGIN and two statements → verified replay, the call completes, applied once;
// (b) COMMIT ran but its answer was lost → resolved with txid_status, applied once;
// (c) COMMIT dropped before the server → PGR_TRANSACTION_ROLLED_BACK; under retryable, once;
// and a transaction that read nextval() → PGR_REPLAY_DIVERGED; under retryable, once.
// Driven through plain client.query('BEGIN'), Kysely and TypeORM, each with a raw pg.Pool control.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Kysely, PostgresDialect, sql } from 'kysely';
import pg from 'pg';
import { DataSource } from 'typeorm';
import { ErrorCodes, Pool, isPgResilientError, retryable, type CommitResolvedEvent, type PoolOptions } from '../../src/index.ts';
import pgResilient from '../../src/pg.ts';
import { useFaultFixture } from '../helpers/fault-fixture.ts';
import { sessionPools, type Replay } from '../helpers/session-pools.ts';
import { startProtocolProxy } from '../helpers/protocol-proxy.ts';


describe('transactions on checked-out clients through a lost connection', () => {
  const f = useFaultFixture({
    proxy: startProtocolProxy,
    // No unique key on ledger: a transaction applied twice shows as two rows.
    setup: (s) => s.admin(`CREATE TABLE ledger (key text NOT NULL, ref bigint);
      CREATE TABLE audit (key text NOT NULL);
      CREATE TABLE counter (id text PRIMARY KEY, n int NOT NULL);
      CREATE SEQUENCE order_seq`).then(() => undefined),
  });
  const rows = async (key: string): Promise<number> => Number((await f.server.admin<{ n: string }>('SELECT count(*) AS n FROM ledger WHERE key = $1', [key]))[0]!.n);
  const counter = async (id: string): Promise<number> => (await f.server.admin<{ n: number }>('SELECT n FROM counter WHERE id = $1', [id]))[0]?.n ?? -1;
  const newCounter = (id: string): Promise<unknown> => f.server.admin('INSERT INTO counter VALUES ($1, 0)', [id]);

  const { resilient, connect, end } = sessionPools((o) => f.via(o));
  const kysely = (pool: Pool | pg.Pool): Kysely<any> => new Kysely<any>({ dialect: new PostgresDialect({ pool }) });
  /** The control: pg.Pool with the listeners it needs not to crash (Kysely adds none on checked-out clients). */
  const rawPool = (): pg.Pool => {
    const raw = new pg.Pool(f.via({ max: 2 }));
    raw.on('error', () => undefined);
    raw.on('connect', (c) => c.on('error', () => undefined));
    return raw;
  };
  const code = (e: unknown): string | undefined => (isPgResilientError(e) ? e.code : undefined);

  test('(a) plain client: lost after BEGIN and two statements, the transaction is replayed and completes; raw pg.Pool fails', async () => {
    const { pool, replays } = resilient();
    await newCounter('a-plain');
    try {
      const client = await connect(pool);
      await client.query('BEGIN');
      await client.query('INSERT INTO ledger (key) VALUES ($1)', ['a-plain']);
      await client.query('UPDATE counter SET n = n + 1 WHERE id = $1', ['a-plain']);
      f.proxy.arm(/^INSERT INTO audit/, 'drop'); // the third statement never reaches the server
      await client.query('INSERT INTO audit VALUES ($1)', ['a-plain']);
      // Lost again, this time after the server ran the statement (its answer never came).
      f.proxy.arm(/^UPDATE counter/, 'lose-answer');
      await client.query('UPDATE counter SET n = n + 1 WHERE id = $1', ['a-plain']);
      const done = await client.query('COMMIT');
      assert.equal(done.command, 'COMMIT');
      client.release();
      assert.deepEqual(replays.map((r) => [r.outcome, r.statements]), [['replayed', 3], ['replayed', 4]]);
      assert.equal(await rows('a-plain'), 1, 'applied once');
      assert.equal(await counter('a-plain'), 2);
    } finally {
      await end(pool);
    }

    // Control: the same with pg.Pool ends in an error, and nothing was applied.
    const raw = rawPool();
    try {
      const client = await raw.connect();
      client.on('error', () => undefined);
      await client.query('BEGIN');
      await client.query('INSERT INTO ledger (key) VALUES ($1)', ['a-raw']);
      f.proxy.arm(/^INSERT INTO audit/, 'drop');
      await assert.rejects(client.query('INSERT INTO audit VALUES ($1)', ['a-raw']), (e: Error) => /terminated|ECONNRESET/i.test(e.message));
      client.release(true);
      assert.equal(await rows('a-raw'), 0);
      console.log('# (a) plain: pg-resilient replayed twice and committed once; raw pg.Pool: connection error, nothing applied');
    } finally {
      await raw.end();
    }
  });

  test('(a) Kysely and TypeORM transactions: lost mid-transaction, the ORM call completes, applied once', async () => {
    const { pool, replays } = resilient();
    const db = kysely(pool);
    await newCounter('a-kysely');
    try {
      await db.transaction().execute(async (trx) => {
        await trx.insertInto('ledger').values({ key: 'a-kysely' }).execute();
        await sql`UPDATE counter SET n = n + 1 WHERE id = ${'a-kysely'}`.execute(trx);
        f.proxy.arm(/^insert into "audit"/, 'drop');
        await trx.insertInto('audit').values({ key: 'a-kysely' }).execute();
      });
      assert.deepEqual(replays.map((r) => r.outcome), ['replayed']);
      assert.equal(await rows('a-kysely'), 1);
      assert.equal(await counter('a-kysely'), 1);
    } finally {
      await db.destroy();
    }

    const ds = new DataSource({
      type: 'postgres', driver: pgResilient, host: '127.0.0.1', port: f.proxy.port,
      username: f.server.user, password: f.server.password, database: f.server.database, extra: { max: 2 }, logging: false,
    });
    await ds.initialize();
    const typeormReplays: Replay[] = [];
    (ds.driver as unknown as { master: Pool }).master.on('transactionReplay', (e: Replay) => typeormReplays.push(e));
    await newCounter('a-typeorm');
    try {
      await ds.transaction(async (m) => {
        await m.query('INSERT INTO ledger (key) VALUES ($1)', ['a-typeorm']);
        await m.query('UPDATE counter SET n = n + 1 WHERE id = $1', ['a-typeorm']);
        f.proxy.arm(/^INSERT INTO audit/, 'drop');
        await m.query('INSERT INTO audit VALUES ($1)', ['a-typeorm']);
      });
      assert.deepEqual(typeormReplays.map((r) => r.outcome), ['replayed']);
      assert.equal(await rows('a-typeorm'), 1);
      assert.equal(await counter('a-typeorm'), 1);
    } finally {
      await ds.destroy();
    }

    // Control: Kysely over pg.Pool fails the transaction.
    const raw = rawPool();
    const rawDb = kysely(raw);
    try {
      await assert.rejects(rawDb.transaction().execute(async (trx) => {
        await trx.insertInto('ledger').values({ key: 'a-kysely-raw' }).execute();
        f.proxy.arm(/^insert into "audit"/, 'drop');
        await trx.insertInto('audit').values({ key: 'a-kysely-raw' }).execute();
      }));
      assert.equal(await rows('a-kysely-raw'), 0);
    } finally {
      await rawDb.destroy();
    }
  });

  test('(b) the answer to COMMIT is lost: resolved as committed, applied once; a naive retry over pg.Pool applies it twice', async () => {
    const { pool, resolved } = resilient();
    const db = kysely(pool);
    try {
      const client = await connect(pool);
      await client.query('BEGIN');
      await client.query('INSERT INTO ledger (key) VALUES ($1)', ['b-plain']);
      f.proxy.arm(/^COMMIT/, 'lose-answer');
      assert.equal((await client.query('COMMIT')).command, 'COMMIT');
      client.release();

      f.proxy.arm(/^commit/, 'lose-answer');
      let runs = 0;
      await db.transaction().execute(async (trx) => {
        runs += 1;
        await trx.insertInto('ledger').values({ key: 'b-kysely' }).execute();
      });
      assert.equal(runs, 1);
      assert.deepEqual(resolved.map((e) => e.outcome), ['committed', 'committed']);
      assert.equal(await rows('b-plain'), 1);
      assert.equal(await rows('b-kysely'), 1);
    } finally {
      await db.destroy();
    }

    // Control: retry the whole transaction on any error, over pg.Pool.
    const raw = rawPool();
    const rawDb = kysely(raw);
    try {
      f.proxy.arm(/^commit/, 'lose-answer');
      let errors = 0;
      for (let attempt = 0; attempt < 3; attempt += 1) {
        try {
          await rawDb.transaction().execute((trx) => trx.insertInto('ledger').values({ key: 'b-naive' }).execute());
          break;
        } catch {
          errors += 1;
        }
      }
      const naive = await rows('b-naive');
      console.log(`# (b) COMMIT answer lost: pg-resilient rows=1 (txid_status: ${resolved.map((e) => `${e.outcome} in ${e.durationMs} ms`).join(', ')}); naive retry over pg.Pool: ${errors} error, rows=${naive}`);
      assert.equal(errors, 1);
      assert.equal(naive, 2, 'the control applies the work twice');
    } finally {
      await rawDb.destroy();
    }
  });

  test('(c) COMMIT never reaches the server: PGR_TRANSACTION_ROLLED_BACK; under retryable the ORM transaction is applied once', async () => {
    const { pool, resolved } = resilient();
    const db = kysely(pool);
    await newCounter('c-kysely');
    try {
      const client = await connect(pool);
      await client.query('BEGIN');
      await client.query('INSERT INTO ledger (key) VALUES ($1)', ['c-plain']);
      f.proxy.arm(/^COMMIT/, 'drop');
      await assert.rejects(client.query('COMMIT'), (e) => code(e) === ErrorCodes.TRANSACTION_ROLLED_BACK);
      // The session is usable again at once (the transaction is over).
      assert.equal((await client.query('SELECT 1 AS one')).rows[0].one, 1);
      client.release();
      assert.equal(await rows('c-plain'), 0, 'it did not commit');

      let runs = 0;
      const retries: string[] = [];
      await retryable(() => db.transaction().execute(async (trx) => {
        runs += 1;
        await trx.insertInto('ledger').values({ key: 'c-kysely' }).execute();
        await sql`UPDATE counter SET n = n + 1 WHERE id = ${'c-kysely'}`.execute(trx);
        if (runs === 1) f.proxy.arm(/^commit/, 'drop');
      }), { onRetry: (e) => retries.push(String(code(e) ?? (e as Error).message)) });
      assert.equal(runs, 2);
      assert.deepEqual(retries, [ErrorCodes.TRANSACTION_ROLLED_BACK]);
      assert.deepEqual(resolved.map((e) => e.outcome), ['aborted', 'aborted']);
      assert.equal(await rows('c-kysely'), 1, 'applied once');
      assert.equal(await counter('c-kysely'), 1);
    } finally {
      await db.destroy();
    }

    // Control: pg.Pool cannot tell this case from (b): the application only sees an error.
    const raw = rawPool();
    try {
      const client = await raw.connect();
      client.on('error', () => undefined);
      await client.query('BEGIN');
      await client.query('INSERT INTO ledger (key) VALUES ($1)', ['c-raw']);
      f.proxy.arm(/^COMMIT/, 'drop');
      let message = '';
      await assert.rejects(client.query('COMMIT'), (e: Error) => ((message = e.message), true));
      client.release(true);
      console.log(`# (c) COMMIT dropped: pg-resilient says ${ErrorCodes.TRANSACTION_ROLLED_BACK}, retryable applied it once in 2 runs; pg.Pool says "${message}" (committed or not?)`);
    } finally {
      await raw.end();
    }
  });

  test('a transaction that read nextval() diverges on replay: PGR_REPLAY_DIVERGED, nothing applied; under retryable applied once', async () => {
    const { pool, replays } = resilient();
    const db = kysely(pool);
    try {
      const client = await connect(pool);
      await client.query('BEGIN');
      const id = (await client.query("SELECT nextval('order_seq') AS id")).rows[0].id;
      await client.query('INSERT INTO ledger VALUES ($1, $2)', ['d-plain', id]);
      f.proxy.arm(/^INSERT INTO audit/, 'drop');
      await assert.rejects(client.query('INSERT INTO audit VALUES ($1)', ['d-plain']), (e) => code(e) === ErrorCodes.REPLAY_DIVERGED && (e as { statementIndex?: number }).statementIndex === 1);
      // Until the application ends it, the transaction stays failed: nothing runs outside it.
      await assert.rejects(client.query('INSERT INTO audit VALUES ($1)', ['d-plain']), (e) => code(e) === ErrorCodes.TRANSACTION_ROLLED_BACK);
      assert.equal((await client.query('ROLLBACK')).command, 'ROLLBACK');
      client.release();
      assert.equal(await rows('d-plain'), 0);

      let runs = 0;
      await retryable(() => db.transaction().execute(async (trx) => {
        runs += 1;
        const { rows: [row] } = await sql<{ id: string }>`SELECT nextval('order_seq') AS id`.execute(trx);
        await trx.insertInto('ledger').values({ key: 'd-kysely', ref: row!.id }).execute();
        if (runs === 1) f.proxy.arm(/^insert into "audit"/, 'drop');
        await trx.insertInto('audit').values({ key: 'd-kysely' }).execute();
      }));
      assert.equal(runs, 2);
      assert.deepEqual(replays.map((r) => r.outcome), ['diverged', 'diverged']);
      assert.equal(await rows('d-kysely'), 1, 'applied once');
    } finally {
      await db.destroy();
    }
  });
});
