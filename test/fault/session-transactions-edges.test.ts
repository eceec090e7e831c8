// Edges of transactions on checked-out clients (issue #15): savepoints and failed statements in
// the replay, replay off and its bounds, cursors, a read-only transaction's lost COMMIT, a
// connection lost while idle in a transaction or with BEGIN in flight, a COMMIT the server
// refuses, settings made inside a transaction, the option's validation and isRerunnable.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import { ErrorCodes, InvalidOptionError, Pool, isPgResilientError, isRerunnable, type CommitResolvedEvent, type PoolOptions } from '../../src/index.ts';
import { useFaultFixture } from '../helpers/fault-fixture.ts';
import { sessionPools } from '../helpers/session-pools.ts';
import { startProtocolProxy } from '../helpers/protocol-proxy.ts';
import { XID_SQL } from '../../src/transactions/xid-reading.ts';


describe('transactions on checked-out clients: edges', () => {
  const f = useFaultFixture({
    proxy: startProtocolProxy,
    setup: (s) => s.admin(`CREATE TABLE ledger (key text NOT NULL);
      CREATE TABLE uniq (key text PRIMARY KEY);
      CREATE TABLE deferred (key text UNIQUE DEFERRABLE INITIALLY DEFERRED);
      INSERT INTO uniq VALUES ('taken')`).then(() => undefined),
  });
  const rows = async (key: string): Promise<number> => Number((await f.server.admin<{ n: string }>('SELECT count(*) AS n FROM ledger WHERE key = $1', [key]))[0]!.n);
  const code = (e: unknown): string | undefined => (isPgResilientError(e) ? e.code : undefined);
  const { resilient, connect, end } = sessionPools((o) => f.via(o));

  test('savepoints and a statement that failed inside one are replayed in order (the failure must repeat)', async () => {
    const { pool, replays } = resilient();
    try {
      const client = await connect(pool);
      await client.query('BEGIN');
      await client.query('INSERT INTO ledger VALUES ($1)', ['sp']);
      await client.query('SAVEPOINT s1');
      await assert.rejects(client.query("INSERT INTO uniq VALUES ('taken')"), (e: { code?: string }) => e.code === '23505');
      await client.query('ROLLBACK TO SAVEPOINT s1');
      await client.query('INSERT INTO ledger VALUES ($1)', ['sp-after']);
      f.proxy.arm(/^RELEASE SAVEPOINT/, 'drop');
      await client.query('RELEASE SAVEPOINT s1');
      await client.query('COMMIT');
      client.release();
      assert.deepEqual(replays.map((r) => [r.outcome, r.statements]), [['replayed', 6]]);
      assert.equal(await rows('sp'), 1);
      assert.equal(await rows('sp-after'), 1);
    } finally {
      await end(pool);
    }
  });

  test('transactionReplay: false → PGR_TRANSACTION_ROLLED_BACK until the application ends the transaction; ROLLBACK completes; pool.retryable runs it again', async () => {
    const { pool, replays } = resilient({ transactionReplay: false });
    const db = new Kysely<any>({ dialect: new PostgresDialect({ pool }) });
    try {
      const client = await connect(pool);
      await client.query('BEGIN');
      await client.query('INSERT INTO ledger VALUES ($1)', ['off']);
      f.proxy.arm(/^INSERT INTO ledger/, 'drop');
      await assert.rejects(client.query('INSERT INTO ledger VALUES ($1)', ['off']), (e) => code(e) === ErrorCodes.TRANSACTION_ROLLED_BACK && /transactionReplay is off/.test((e as Error).message));
      await assert.rejects(client.query('COMMIT'), (e) => code(e) === ErrorCodes.TRANSACTION_ROLLED_BACK);
      // The COMMIT above ended it (as a failed COMMIT does): the session works again.
      assert.equal((await client.query('SELECT 2 AS two')).rows[0].two, 2);
      await client.query('BEGIN');
      f.proxy.arm(/^SELECT 3/, 'drop');
      await assert.rejects(client.query('SELECT 3'), (e) => code(e) === ErrorCodes.TRANSACTION_ROLLED_BACK);
      assert.equal((await client.query('ROLLBACK')).command, 'ROLLBACK');
      client.release();
      assert.equal(await rows('off'), 0);

      let runs = 0;
      await pool.retryable(() => db.transaction().execute(async (trx) => {
        runs += 1;
        if (runs === 1) f.proxy.arm(/^insert into "ledger"/, 'drop');
        await trx.insertInto('ledger').values({ key: 'off-kysely' }).execute();
      }));
      assert.equal(runs, 2);
      assert.equal(replays.length, 0, 'nothing recorded, nothing replayed');
      assert.equal(await rows('off-kysely'), 1);
    } finally {
      await db.destroy();
    }
  });

  test('beyond maxStatements, or after a cursor ran, a transaction is not replayed (PGR_TRANSACTION_ROLLED_BACK names why)', async () => {
    const { pool } = resilient({ transactionReplay: { maxStatements: 3 } });
    try {
      const client = await connect(pool);
      await client.query('BEGIN');
      for (let i = 0; i < 3; i += 1) await client.query('INSERT INTO ledger VALUES ($1)', ['bounded']);
      f.proxy.arm(/^SELECT 'last'/, 'drop');
      await assert.rejects(client.query("SELECT 'last'"), (e) => code(e) === ErrorCodes.TRANSACTION_ROLLED_BACK && /maxStatements/.test((e as Error).message));
      await client.query('ROLLBACK');

      await client.query('BEGIN');
      const cursor = client.query(new pg.Query('SELECT 1 AS n')) as unknown as pg.Query;
      await new Promise((resolve, reject) => cursor.on('end', resolve).on('error', reject));
      f.proxy.arm(/^SELECT 'after cursor'/, 'drop');
      await assert.rejects(client.query("SELECT 'after cursor'"), (e) => code(e) === ErrorCodes.TRANSACTION_ROLLED_BACK && /cursor/.test((e as Error).message));
      await client.query('ROLLBACK');
      client.release();
      assert.equal(await rows('bounded'), 0);
    } finally {
      await end(pool);
    }
  });

  test("a read-only transaction's lost COMMIT resolves at once (it wrote nothing: no id to ask about)", async () => {
    const { pool, resolved } = resilient();
    try {
      const client = await connect(pool);
      await client.query('BEGIN READ ONLY');
      await client.query('SELECT count(*) FROM ledger');
      f.proxy.arm(/^COMMIT/, 'lose-answer');
      assert.equal((await client.query('COMMIT')).command, 'COMMIT');
      assert.equal(f.proxy.fired() > 0, true);
      assert.equal(resolved.length, 0, 'no txid_status needed');
      assert.equal(client.getTransactionStatus(), 'I');
      client.release();
    } finally {
      await end(pool);
    }
  });

  test('lost while idle in the transaction: COMMIT (never sent) commits a replay; BEGIN lost in flight is sent again', async () => {
    const { pool, replays } = resilient();
    try {
      const client = await connect(pool);
      await client.query('BEGIN');
      await client.query('INSERT INTO ledger VALUES ($1)', ['idle']);
      f.proxy.resetAll();
      await new Promise((r) => setTimeout(r, 100)); // the client sees the reset before COMMIT
      assert.equal((await client.query('COMMIT')).command, 'COMMIT');
      assert.deepEqual(replays.map((r) => r.outcome), ['replayed']);
      assert.equal(await rows('idle'), 1);

      f.proxy.arm(/^BEGIN/, 'drop');
      await client.query('BEGIN');
      await client.query('INSERT INTO ledger VALUES ($1)', ['begin-lost']);
      await client.query('COMMIT');
      client.release();
      assert.equal(await rows('begin-lost'), 1);
    } finally {
      await end(pool);
    }
  });

  test("the transaction's id rides on its first write (COMMIT then goes out alone); without one, on the COMMIT: both resolve a lost answer", async () => {
    const { pool, resolved } = resilient();
    await f.server.admin(`CREATE OR REPLACE FUNCTION hidden_write(k text) RETURNS int LANGUAGE sql AS $$ INSERT INTO ledger VALUES (k); SELECT 1 $$`);
    try {
      const client = await connect(pool);
      const seen = f.proxy.statements.length;
      await client.query('BEGIN');
      await client.query('SELECT count(*) FROM ledger'); // a read: no id asked
      await client.query('INSERT INTO ledger VALUES ($1)', ['ride']);
      await client.query('INSERT INTO ledger VALUES ($1)', ['ride']); // the id is known: not asked again
      await client.query('COMMIT');
      assert.deepEqual(f.proxy.statements.slice(seen), [
        'BEGIN', 'SELECT count(*) FROM ledger', 'INSERT INTO ledger VALUES ($1)', XID_SQL, 'INSERT INTO ledger VALUES ($1)', 'COMMIT',
      ]);

      // A write the read rule cannot see (a function): the id is read with the COMMIT.
      await client.query('BEGIN');
      await client.query('SELECT hidden_write($1)', ['hidden']);
      f.proxy.arm(/^COMMIT/, 'lose-answer');
      assert.equal((await client.query('COMMIT')).command, 'COMMIT');
      await client.query('BEGIN');
      await client.query('SELECT hidden_write($1)', ['hidden-dropped']);
      f.proxy.arm(/^COMMIT/, 'drop');
      await assert.rejects(client.query('COMMIT'), (e) => code(e) === ErrorCodes.TRANSACTION_ROLLED_BACK);
      client.release();
      assert.deepEqual(resolved.map((e) => e.outcome), ['committed', 'aborted']);
      assert.equal(await rows('hidden'), 1);
      assert.equal(await rows('hidden-dropped'), 0);
    } finally {
      await end(pool);
    }
  });

  test('the server ends the session before it read COMMIT (FATAL ahead of the id): PGR_TRANSACTION_ROLLED_BACK without asking', async () => {
    const { pool, resolved } = resilient();
    try {
      const client = await connect(pool);
      await client.query('BEGIN');
      await client.query("SET LOCAL idle_in_transaction_session_timeout = '300ms'");
      await client.query("SELECT hidden_write('fatal')");
      // COMMIT (with the id read before it) waits at the proxy until the server gave up on the session.
      f.proxy.arm(/^SELECT txid_current_if_assigned/, 'hold', 1500);
      await assert.rejects(client.query('COMMIT'), (e) => code(e) === ErrorCodes.TRANSACTION_ROLLED_BACK && /before it read COMMIT/.test((e as Error).message));
      client.release();
      assert.equal(resolved.length, 0, 'nothing to ask');
      assert.equal(await rows('fatal'), 0);
    } finally {
      await end(pool);
    }
  });

  test('a COMMIT the server refuses (deferred unique violation) comes back unchanged, and the session goes on', async () => {
    const { pool, resolved } = resilient();
    try {
      const client = await connect(pool);
      await client.query('BEGIN');
      await client.query("INSERT INTO deferred VALUES ('x'), ('x')");
      await assert.rejects(client.query('COMMIT'), (e: { code?: string }) => e.code === '23505');
      assert.equal(resolved.length, 0);
      assert.equal((await client.query('SELECT 1 AS one')).rows[0].one, 1);
      client.release();
    } finally {
      await end(pool);
    }
  });

  test('a SET inside a committed transaction is a session setting: it follows the session to a new connection', async () => {
    const { pool } = resilient();
    try {
      const client = await connect(pool);
      await client.query('BEGIN');
      await client.query("SET application_name = 'set-in-tx'");
      await client.query('COMMIT');
      await client.query('BEGIN');
      await client.query("SET application_name = 'rolled-back'");
      await client.query('ROLLBACK');
      f.proxy.resetAll();
      await new Promise((r) => setTimeout(r, 100));
      assert.equal((await client.query('SHOW application_name')).rows[0].application_name, 'set-in-tx');
      client.release();
    } finally {
      await end(pool);
    }
  });

  test('transactionReplay is validated at construction', () => {
    assert.throws(() => new Pool({ transactionReplay: 'yes' as never }), (e) => e instanceof InvalidOptionError && e.option === 'transactionReplay');
    assert.throws(() => new Pool({ transactionReplay: { maxStatements: 0 } }), (e) => e instanceof InvalidOptionError && e.option === 'transactionReplay.maxStatements');
    assert.throws(() => new Pool({ transactionReplay: { maxBytes: 1.5 } }), (e) => e instanceof InvalidOptionError && e.option === 'transactionReplay.maxBytes');
    for (const ok of [true, false, {}, { maxStatements: 5, maxBytes: 0 }]) new Pool({ transactionReplay: ok }).end();
  });

  test('isRerunnable finds the two codes through the wrappers ORMs put around errors, and nothing else', () => {
    const rolledBack = Object.assign(new Error('pg-resilient: PGR_TRANSACTION_ROLLED_BACK: …'), { code: ErrorCodes.TRANSACTION_ROLLED_BACK });
    const diverged = Object.assign(new Error('x'), { code: ErrorCodes.REPLAY_DIVERGED });
    assert.equal(isRerunnable(rolledBack), true);
    assert.equal(isRerunnable(new Error('wrapped', { cause: diverged })), true); // Drizzle's DrizzleQueryError
    assert.equal(isRerunnable(Object.assign(new Error('q failed'), { driverError: diverged })), true); // TypeORM's QueryFailedError
    assert.equal(isRerunnable(Object.assign(new Error('s'), { original: diverged })), true); // Sequelize
    assert.equal(isRerunnable(Object.assign(new Error('p'), { meta: { driverAdapterError: { cause: { code: ErrorCodes.REPLAY_DIVERGED } } } })), true); // Prisma
    assert.equal(isRerunnable(new Error('Invalid invocation: pg-resilient: PGR_REPLAY_DIVERGED: the connection …')), true); // message only
    assert.equal(isRerunnable(new AggregateError([new Error('a'), diverged])), true);
    const cyclic = new Error('cyclic') as Error & { cause?: unknown };
    cyclic.cause = cyclic;
    for (const no of [cyclic, Object.assign(new Error('dup'), { code: '23505' }), { code: ErrorCodes.TRANSACTION_OUTCOME_UNKNOWN }, { code: ErrorCodes.STATEMENT_OUTCOME_UNKNOWN }, null, 'PGR', undefined]) {
      assert.equal(isRerunnable(no), false, String((no as { code?: string } | null)?.code ?? no));
    }
  });
});
