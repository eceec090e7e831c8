// What a FATAL proves (docs/what-a-fatal-proves.md), on a real PostgreSQL 15: a write whose
// backend is terminated before any commit point is re-run as a rejection without effect; the
// cases where the FATAL proves nothing (a procedure that committed, the synchronous-replication
// wait, a CommandComplete that came first) stay PGR_STATEMENT_OUTCOME_UNKNOWN, and in each of
// those the row really is there or may be, which is why.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ErrorCodes, Pool, type RetryEvent } from '../../src/index.ts';
import { startPgServer, type PgServer } from '../helpers/pg-server.ts';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('a FATAL before the statement reached a commit point', () => {
  let server: PgServer;
  // Nobody answers for this standby name: a commit with synchronous_commit=on waits forever,
  // so each test picks its own synchronous_commit through the connection's options.
  before(async () => {
    server = await startPgServer({ settings: { synchronous_standby_names: 'nobody' } });
    await server.admin('CREATE TABLE t (id int PRIMARY KEY, note text)');
    await server.admin(`CREATE PROCEDURE commit_then_wait(i int) LANGUAGE plpgsql AS $$
      BEGIN INSERT INTO t VALUES (i, 'proc'); COMMIT; PERFORM pg_sleep(5); END $$`);
  });
  after(async () => {
    await server.destroy();
  });

  function pool(syncCommit: 'local' | 'on'): { pool: Pool; retries: RetryEvent[] } {
    const p = new Pool({ ...server.config, max: 2, options: `-c synchronous_commit=${syncCommit}` });
    const retries: RetryEvent[] = [];
    p.on('retry', (e) => retries.push(e));
    return { pool: p, retries };
  }

  /** Terminates the backend running a statement that contains `marker`, once it is seen running. */
  async function terminateWhenRunning(marker: string, state = 'active'): Promise<void> {
    for (let i = 0; i < 200; i += 1) {
      const rows = await server.admin<{ pid: number }>(
        `SELECT pid FROM pg_stat_activity WHERE query LIKE $1 AND state = $2 AND pid <> pg_backend_pid()`, [`%${marker}%`, state]);
      if (rows.length > 0) {
        await server.admin('SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid', [rows.map((r) => r.pid)]);
        return;
      }
      await sleep(10);
    }
    throw new Error(`no backend ran ${marker}`);
  }

  const count = async (id: number): Promise<number> => Number((await server.admin<{ n: string }>('SELECT count(*) AS n FROM t WHERE id = $1', [id]))[0]!.n);

  let nextId = 100;
  for (const [name, run] of [
    ['pool.query, simple protocol', (p: Pool, id: number) => p.query(`INSERT INTO t SELECT ${id}, 'm${id}' FROM pg_sleep(0.4)`)],
    ['pool.query, extended protocol', (p: Pool, id: number) => p.query(`INSERT INTO t SELECT $1::int, 'm${id}' FROM pg_sleep(0.4)`, [id])],
    ['a checked-out client', async (p: Pool, id: number) => {
      const c = await p.connect();
      try {
        return await c.query(`INSERT INTO t SELECT $1::int, 'm${id}' FROM pg_sleep(0.4)`, [id]);
      } finally {
        c.release();
      }
    }],
    ['a two-statement text', (p: Pool, id: number) => p.query(`INSERT INTO t SELECT ${id}, 'm${id}' FROM pg_sleep(0.4); INSERT INTO t VALUES (${id + 1000}, 'second')`)],
  ] as const) {
    test(`${name}: terminated mid-statement, re-run once as a rejection without effect`, async () => {
      const { pool: p, retries } = pool('local');
      const id = (nextId += 1);
      try {
        await p.query('SELECT 1');
        const done = run(p, id);
        await terminateWhenRunning(`'m${id}'`);
        await done;
        assert.equal(await count(id), 1, 'the row is there exactly once');
        const shutdown = retries.filter((r) => r.code === '57P01');
        assert.equal(shutdown.length, 1, JSON.stringify(retries.map((r) => [r.code, r.reason])));
        assert.equal(shutdown[0]!.reason, 'rejected-without-effect');
      } finally {
        await p.end();
      }
    });
  }

  test('a procedure that committed before the FATAL: outcome unknown (and its row is there)', async () => {
    const { pool: p } = pool('local');
    try {
      const done = p.query('CALL commit_then_wait(7)').then(() => undefined, (err: unknown) => err);
      await terminateWhenRunning('commit_then_wait');
      const err = await done;
      assert.equal((err as { code?: string }).code, ErrorCodes.STATEMENT_OUTCOME_UNKNOWN);
      assert.equal(await count(7), 1, 'the procedure had committed its row');
    } finally {
      await p.end();
    }
  });

  test('terminated in the synchronous-replication wait: the WARNING says committed, outcome unknown (and the row is there)', async () => {
    const { pool: p } = pool('on');
    const notices: string[] = [];
    try {
      const c = await p.connect();
      c.on('notice', (n: { message?: string }) => notices.push(n.message ?? ''));
      c.release();
      const done = p.query(`INSERT INTO t VALUES (8, 'sync')`).then(() => undefined, (err: unknown) => err);
      // The backend waits in SyncRepWaitForLSN with its commit record written and flushed.
      for (let i = 0; i < 200; i += 1) {
        const rows = await server.admin<{ pid: number }>(`SELECT pid FROM pg_stat_activity WHERE wait_event = 'SyncRep'`);
        if (rows.length > 0) {
          await server.admin('SELECT pg_terminate_backend($1)', [rows[0]!.pid]);
          break;
        }
        await sleep(10);
      }
      const err = await done;
      assert.equal((err as { code?: string }).code, ErrorCodes.STATEMENT_OUTCOME_UNKNOWN, String(err));
      assert.equal(await count(8), 1, 'committed locally before the FATAL would have come');
      console.log(`# sync-rep wait terminated: ${String((err as { cause?: unknown }).cause)}; notices: ${JSON.stringify(notices)}`);
    } finally {
      await p.end();
    }
  });

  test('a CommandComplete came before the FATAL: no proof, outcome unknown', async () => {
    const { pool: p } = pool('local');
    try {
      const done = p.query(`INSERT INTO t VALUES (9, 'first'); SELECT pg_sleep(2), 'cc-first'`).then(() => undefined, (err: unknown) => err);
      await terminateWhenRunning('cc-first');
      const err = await done;
      assert.equal((err as { code?: string }).code, ErrorCodes.STATEMENT_OUTCOME_UNKNOWN);
      // The implicit block had not committed: the row is not there, but nothing we saw proved it.
      assert.equal(await count(9), 0);
    } finally {
      await p.end();
    }
  });
});
