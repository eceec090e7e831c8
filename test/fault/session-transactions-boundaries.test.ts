// Replay only within a transaction the recorder is sure of (issue 26, item 3): a text that
// commits or rolls back without leaving the transaction (COMMIT AND CHAIN, ROLLBACK AND CHAIN,
// a multi-statement text with transaction control, CALL, DO) must never have a committed part
// replayed. Each test loses the connection of a checked-out client at an exact point (the
// protocol-aware proxy) and reads a counter from the server: the right answers are the whole
// intended sum, or an error that says the outcome is unknown with only the committed part applied.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { ErrorCodes, isPgResilientError } from '../../src/index.ts';
import { useFaultFixture } from '../helpers/fault-fixture.ts';
import { sessionPools } from '../helpers/session-pools.ts';
import { startProtocolProxy } from '../helpers/protocol-proxy.ts';

describe('transaction boundaries the recorder must see', () => {
  const f = useFaultFixture({
    proxy: startProtocolProxy,
    server: { settings: { max_prepared_transactions: 4 } },
    setup: (s) => s.admin(`CREATE TABLE counter (id text PRIMARY KEY, n int NOT NULL);
      CREATE PROCEDURE bump(k text) LANGUAGE sql AS $$ UPDATE counter SET n = n + 1000 WHERE id = k $$;
      CREATE PROCEDURE bump_and_commit(k text) LANGUAGE plpgsql AS $$ BEGIN UPDATE counter SET n = n + 1000 WHERE id = k; COMMIT; END $$`).then(() => undefined),
  });
  const counter = async (id: string): Promise<number> => (await f.server.admin<{ n: number }>('SELECT n FROM counter WHERE id = $1', [id]))[0]?.n ?? -1;
  const newCounter = (id: string): Promise<unknown> => f.server.admin('INSERT INTO counter VALUES ($1, 0)', [id]);
  const code = (e: unknown): string | undefined => (isPgResilientError(e) ? e.code : undefined);
  const { resilient, connect, end } = sessionPools((o) => f.via(o));
  const bump = (by: number): string => `UPDATE counter SET n = n + ${by} WHERE id = $1`;

  test('COMMIT AND CHAIN: a loss after it replays only the chained transaction (111, never 112); raw pg.Pool fails', async () => {
    const { pool, replays } = resilient();
    await newCounter('chain');
    try {
      const client = await connect(pool);
      await client.query('BEGIN');
      await client.query(bump(1), ['chain']);
      await client.query('COMMIT AND CHAIN');
      assert.equal(client.getTransactionStatus?.(), 'T');
      await client.query(bump(10), ['chain']);
      f.proxy.arm(/n \+ 100 /, 'drop');
      await client.query(bump(100), ['chain']);
      assert.equal((await client.query('COMMIT')).command, 'COMMIT');
      client.release();
      const n = await counter('chain');
      console.log(`# COMMIT AND CHAIN then a lost connection: counter ${n} (replays: ${JSON.stringify(replays)})`);
      assert.equal(n, 111, 'the committed first transaction was not applied again');
      assert.deepEqual(replays.map((r) => [r.outcome, r.statements]), [['replayed', 2]]);
    } finally {
      await end(pool);
    }
    // Control: the same on pg.Pool fails at the lost connection; the first transaction stays.
    await newCounter('chain-raw');
    const raw = new pg.Pool(f.via({ max: 1 }));
    raw.on('error', () => undefined);
    try {
      const client = await raw.connect();
      client.on('error', () => undefined);
      await client.query('BEGIN');
      await client.query(bump(1), ['chain-raw']);
      await client.query('COMMIT AND CHAIN');
      await client.query(bump(10), ['chain-raw']);
      f.proxy.arm(/n \+ 100 /, 'drop');
      await assert.rejects(client.query(bump(100), ['chain-raw']));
      client.release(true);
      assert.equal(await counter('chain-raw'), 1);
    } finally {
      await raw.end();
    }
  });

  test('COMMIT AND CHAIN whose answer is lost: resolved as committed, the chained transaction goes on; applied once (11)', async () => {
    const { pool, resolved } = resilient();
    await newCounter('chain-lost');
    try {
      const client = await connect(pool);
      await client.query('BEGIN');
      await client.query(bump(1), ['chain-lost']);
      f.proxy.arm(/^COMMIT AND CHAIN/, 'lose-answer');
      assert.equal((await client.query('COMMIT AND CHAIN')).command, 'COMMIT');
      await client.query(bump(10), ['chain-lost']);
      await client.query('COMMIT');
      client.release();
      assert.deepEqual(resolved.map((r) => r.outcome), ['committed']);
      assert.equal(await counter('chain-lost'), 11);
    } finally {
      await end(pool);
    }
  });

  test('the chained transaction\'s COMMIT is resolved by its own id, not the first one\'s (a dropped COMMIT is not taken for committed)', async () => {
    const { pool, resolved } = resilient();
    await newCounter('chain-xid');
    try {
      const client = await connect(pool);
      await client.query('BEGIN');
      await client.query(bump(1), ['chain-xid']);
      await client.query('COMMIT AND CHAIN');
      await client.query(bump(10), ['chain-xid']);
      f.proxy.arm(/^COMMIT/, 'drop');
      await assert.rejects(client.query('COMMIT'), (e) => code(e) === ErrorCodes.TRANSACTION_OUTCOME_UNKNOWN);
      client.release();
      assert.deepEqual(resolved.map((r) => r.outcome), ['aborted']);
      assert.equal(await counter('chain-xid'), 1);
    } finally {
      await end(pool);
    }
  });

  test('a chained transaction whose characteristics may have changed is not replayed: PGR_TRANSACTION_OUTCOME_UNKNOWN, counter 1', async () => {
    const { pool, replays } = resilient();
    await newCounter('chain-set');
    try {
      const client = await connect(pool);
      await client.query('BEGIN');
      await client.query('SET TRANSACTION ISOLATION LEVEL SERIALIZABLE');
      await client.query(bump(1), ['chain-set']);
      await client.query('COMMIT AND CHAIN');
      await client.query(bump(10), ['chain-set']);
      f.proxy.arm(/n \+ 100 /, 'drop');
      await assert.rejects(client.query(bump(100), ['chain-set']), (e) => code(e) === ErrorCodes.TRANSACTION_OUTCOME_UNKNOWN && /COMMIT AND CHAIN/.test((e as Error).message));
      await client.query('ROLLBACK');
      client.release();
      assert.equal(replays.length, 0);
      assert.equal(await counter('chain-set'), 1);
    } finally {
      await end(pool);
    }
  });

  test('ROLLBACK AND CHAIN: a loss after it replays only the chained transaction (110)', async () => {
    const { pool } = resilient();
    await newCounter('rchain');
    try {
      const client = await connect(pool);
      await client.query('BEGIN');
      await client.query(bump(1), ['rchain']);
      await client.query('ROLLBACK AND CHAIN');
      await client.query(bump(10), ['rchain']);
      f.proxy.arm(/n \+ 100 /, 'drop');
      await client.query(bump(100), ['rchain']);
      await client.query('COMMIT');
      client.release();
      assert.equal(await counter('rchain'), 110);
    } finally {
      await end(pool);
    }
  });

  test('ROLLBACK AND CHAIN lost in flight completes (rolled back either way); COMMIT AND CHAIN of a failed transaction rolls back and chains', async () => {
    const { pool } = resilient();
    await newCounter('rchain-lost');
    await newCounter('echain');
    try {
      const client = await connect(pool);
      await client.query('BEGIN');
      await client.query(bump(1), ['rchain-lost']);
      f.proxy.arm(/^ROLLBACK AND CHAIN/, 'lose-answer');
      assert.equal((await client.query('ROLLBACK AND CHAIN')).command, 'ROLLBACK');
      await client.query(bump(10), ['rchain-lost']);
      await client.query('COMMIT');
      assert.equal(await counter('rchain-lost'), 10);

      await client.query('BEGIN');
      await client.query(bump(1), ['echain']);
      await assert.rejects(client.query('SELECT 1/0'), (e: { code?: string }) => e.code === '22012');
      assert.equal((await client.query('COMMIT AND CHAIN')).command, 'ROLLBACK');
      await client.query(bump(10), ['echain']);
      f.proxy.arm(/n \+ 100 /, 'drop');
      await client.query(bump(100), ['echain']);
      await client.query('COMMIT');
      client.release();
      assert.equal(await counter('echain'), 110);
    } finally {
      await end(pool);
    }
  });

  test('a chained transaction keeps the first one\'s isolation level after a replay', async () => {
    const { pool, replays } = resilient();
    await newCounter('chain-iso');
    try {
      const client = await connect(pool);
      await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
      await client.query(bump(1), ['chain-iso']);
      await client.query('COMMIT AND CHAIN');
      f.proxy.arm(/^SHOW transaction_isolation/, 'drop');
      const iso = await client.query('SHOW transaction_isolation');
      assert.equal(iso.rows[0].transaction_isolation, 'repeatable read');
      await client.query('COMMIT');
      client.release();
      assert.equal(replays.length, 1);
      assert.equal(await counter('chain-iso'), 1);
    } finally {
      await end(pool);
    }
  });

  test('a text that commits and opens a new transaction: a later loss is PGR_TRANSACTION_OUTCOME_UNKNOWN, the committed part stays once (1)', async () => {
    const { pool, replays } = resilient();
    await newCounter('multi-t');
    await newCounter('multi-i');
    try {
      // Inside a transaction: its first part commits within the text.
      const client = await connect(pool);
      await client.query('BEGIN');
      await client.query(`UPDATE counter SET n = n + 1 WHERE id = 'multi-t'; COMMIT; BEGIN; UPDATE counter SET n = n + 10 WHERE id = 'multi-t'`);
      f.proxy.arm(/n \+ 100 /, 'drop');
      await assert.rejects(client.query(bump(100), ['multi-t']), (e) => code(e) === ErrorCodes.TRANSACTION_OUTCOME_UNKNOWN);
      // As after any transaction lost for good: statements fail until the application ends it.
      await assert.rejects(client.query('SELECT 1 AS one'), (e) => code(e) === ErrorCodes.TRANSACTION_OUTCOME_UNKNOWN);
      assert.equal((await client.query('ROLLBACK')).command, 'ROLLBACK');
      assert.equal((await client.query('SELECT 1 AS one')).rows[0].one, 1);
      // Opened by such a text.
      await client.query(`BEGIN; UPDATE counter SET n = n + 1 WHERE id = 'multi-i'; COMMIT; BEGIN; UPDATE counter SET n = n + 10 WHERE id = 'multi-i'`);
      f.proxy.arm(/n \+ 100 /, 'drop');
      await assert.rejects(client.query(bump(100), ['multi-i']), (e) => code(e) === ErrorCodes.TRANSACTION_OUTCOME_UNKNOWN);
      await client.query('ROLLBACK');
      client.release();
      assert.equal(replays.length, 0);
      assert.equal(await counter('multi-t'), 1);
      assert.equal(await counter('multi-i'), 1);
    } finally {
      await end(pool);
    }
  });

  test('such a text refused after its COMMIT AND CHAIN ran: not replayed (PGR_TRANSACTION_OUTCOME_UNKNOWN), the committed part stays once', async () => {
    const { pool, replays } = resilient();
    await newCounter('multi-refused');
    try {
      const client = await connect(pool);
      await client.query('BEGIN');
      await assert.rejects(client.query(`UPDATE counter SET n = n + 1 WHERE id = 'multi-refused'; COMMIT AND CHAIN; SELECT 1/0`), (e: { code?: string }) => e.code === '22012');
      await client.query('ROLLBACK AND CHAIN');
      f.proxy.arm(/n \+ 100 /, 'drop');
      await assert.rejects(client.query(bump(100), ['multi-refused']), (e) => code(e) === ErrorCodes.TRANSACTION_OUTCOME_UNKNOWN);
      await client.query('ROLLBACK');
      client.release();
      assert.equal(replays.length, 0);
      assert.equal(await counter('multi-refused'), 1);
    } finally {
      await end(pool);
    }
  });

  test('such a text, or PREPARE TRANSACTION, lost in flight: PGR_TRANSACTION_OUTCOME_UNKNOWN, never run again; statements fail until ROLLBACK', async () => {
    const { pool, replays } = resilient();
    await newCounter('multi-lost');
    await newCounter('prepared');
    try {
      const client = await connect(pool);
      await client.query('BEGIN');
      f.proxy.arm(/^UPDATE counter SET n = n \+ 1 WHERE id = 'multi-lost'; COMMIT/, 'lose-answer');
      await assert.rejects(client.query(`UPDATE counter SET n = n + 1 WHERE id = 'multi-lost'; COMMIT; BEGIN; UPDATE counter SET n = n + 10 WHERE id = 'multi-lost'`), (e) => code(e) === ErrorCodes.TRANSACTION_OUTCOME_UNKNOWN);
      await assert.rejects(client.query('SELECT 1'), (e) => code(e) === ErrorCodes.TRANSACTION_OUTCOME_UNKNOWN);
      assert.equal((await client.query('ROLLBACK')).command, 'ROLLBACK');
      assert.equal(await counter('multi-lost'), 1);

      await client.query('BEGIN');
      await client.query(bump(1), ['prepared']);
      f.proxy.arm(/^PREPARE TRANSACTION/, 'lose-answer');
      await assert.rejects(client.query("PREPARE TRANSACTION 'pgr-test-1'"), (e) => code(e) === ErrorCodes.TRANSACTION_OUTCOME_UNKNOWN);
      assert.equal((await client.query('ROLLBACK')).command, 'ROLLBACK');
      client.release();
      const prepared = await f.server.admin<{ gid: string }>('SELECT gid FROM pg_prepared_xacts');
      assert.deepEqual(prepared.map((p) => p.gid), ['pgr-test-1'], 'prepared once, not replayed and prepared again');
      await f.server.admin("COMMIT PREPARED 'pgr-test-1'");
      assert.equal(await counter('prepared'), 1);
      assert.equal(replays.length, 0);
    } finally {
      await end(pool);
    }
  });

  test('CALL and DO turn replay off (what they did is not in their result): a later loss is PGR_TRANSACTION_ROLLED_BACK, certain because PostgreSQL refuses COMMIT inside them in a transaction (2D000)', async () => {
    const { pool, replays } = resilient();
    await newCounter('call');
    try {
      const client = await connect(pool);
      // The ground for "certain": a procedure that commits fails inside a transaction block.
      await client.query('BEGIN');
      await client.query(bump(1), ['call']);
      await assert.rejects(client.query(`CALL bump_and_commit('call')`), (e: { code?: string }) => e.code === '2D000');
      await client.query('ROLLBACK');
      await client.query('BEGIN');
      await client.query(bump(1), ['call']);
      await client.query(`CALL bump('call')`);
      f.proxy.arm(/n \+ 100 /, 'drop');
      await assert.rejects(client.query(bump(100), ['call']), (e) => code(e) === ErrorCodes.TRANSACTION_ROLLED_BACK && /CALL or DO/.test((e as Error).message));
      await client.query('ROLLBACK');
      await client.query('BEGIN');
      await client.query(`DO $$ BEGIN UPDATE counter SET n = n + 1 WHERE id = 'call'; END $$`);
      f.proxy.arm(/n \+ 100 /, 'drop');
      await assert.rejects(client.query(bump(100), ['call']), (e) => code(e) === ErrorCodes.TRANSACTION_ROLLED_BACK);
      await client.query('ROLLBACK');
      client.release();
      assert.equal(replays.length, 0);
      assert.equal(await counter('call'), 0);
    } finally {
      await end(pool);
    }
  });

  test('maxBytes counts what the record keeps (texts, values, digests), and a large result costs only its digest', async () => {
    // Ten 100 kB results: each statement keeps its text and a digest of at most 44 characters.
    const big = "SELECT repeat('x', 100000) || $1 AS v";
    const run = async (maxBytes: number, key: string): Promise<unknown> => {
      const { pool, replays } = resilient({ transactionReplay: { maxBytes } });
      await newCounter(key);
      try {
        const client = await connect(pool);
        await client.query('BEGIN');
        for (let i = 0; i < 10; i += 1) await client.query(big, [String(i)]);
        f.proxy.arm(/n \+ 100 /, 'drop');
        const outcome = await client.query(bump(100), [key]).then(() => 'replayed', (e: unknown) => code(e));
        await client.query(outcome === 'replayed' ? 'COMMIT' : 'ROLLBACK');
        client.release();
        return [outcome, replays.map((r) => r.statements), await counter(key)];
      } finally {
        await end(pool);
      }
    };
    // 5 + 10 × (37 + 1 + 44) = 825 bytes kept at most; 700 is too few (the digests count), 2000 enough.
    assert.deepEqual(await run(700, 'bytes-700'), [ErrorCodes.TRANSACTION_ROLLED_BACK, [], 0]);
    assert.deepEqual(await run(2000, 'bytes-2000'), ['replayed', [11], 100]);
  });
});
