import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { Pool, type CommitResolvedEvent } from '../../src/index.ts';
import { startPgServer, type PgServer } from '../helpers/pg-server.ts';

// What a FATAL proves about a commit (docs/what-a-fatal-proves.md), where this round's two
// mechanisms meet: a deferred constraint trigger sleeps inside COMMIT (CommitTransaction runs
// deferred triggers before its commit record, with interrupts allowed), and the backend is
// terminated there. The server's 57P01 ErrorResponse then arrives before COMMIT's CommandComplete.

const APP = 'pgr-fatal-commit';

describe('a FATAL inside COMMIT, before its commit point', () => {
  let server: PgServer;
  before(async () => {
    server = await startPgServer();
    await server.admin(`CREATE TABLE fc (id int PRIMARY KEY, note text);
      CREATE FUNCTION fc_slow() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(1.5); RETURN NULL; END $$;
      CREATE CONSTRAINT TRIGGER fc_slow AFTER INSERT ON fc DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (NEW.note LIKE 'slow%') EXECUTE FUNCTION fc_slow()`);
  });
  after(() => server.destroy());

  /** Terminates this test's backend once it sleeps in the deferred trigger; returns how many. */
  async function terminateWhileCommitting(): Promise<number> {
    for (let i = 0; i < 100; i += 1) {
      const rows = await server.admin<{ ok: boolean }>("SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity WHERE application_name = $1 AND wait_event = 'PgSleep'", [APP]);
      if (rows.length > 0) return rows.length;
      await sleep(20);
    }
    return 0;
  }
  const count = async (note: string): Promise<number> => Number((await server.admin<{ n: string }>('SELECT count(*) AS n FROM fc WHERE note = $1', [note]))[0]!.n);

  test('pool.transaction: rolled back for certain, so run again at once, without asking the primary', async () => {
    const pool = new Pool({ ...server.config, application_name: APP, max: 2 });
    const resolved: CommitResolvedEvent[] = [];
    pool.on('commitResolved', (e) => resolved.push(e));
    let runs = 0;
    try {
      const killed = terminateWhileCommitting();
      await pool.transaction(async (c) => {
        runs += 1;
        await c.query('INSERT INTO fc VALUES ($1, $2)', [runs, runs === 1 ? 'slow-tx' : 'slow-tx-again']);
      });
      assert.equal(await killed, 1, 'the backend was terminated inside COMMIT');
      console.log(`# FATAL inside COMMIT: runs ${runs}, commitResolved ${resolved.length}`);
      assert.equal(runs, 2);
      assert.equal(await count('slow-tx'), 0, 'the first run never committed');
      assert.equal(await count('slow-tx-again'), 1);
      assert.equal(resolved.length, 0, 'the FATAL proved it: no txid_status lookup was needed');
    } finally {
      await pool.end();
    }
  });

  test("a checked-out client's COMMIT (as every ORM sends it): PGR_TRANSACTION_ROLLED_BACK, without asking the primary", async () => {
    const pool = new Pool({ ...server.config, application_name: APP, max: 2 });
    const resolved: CommitResolvedEvent[] = [];
    pool.on('commitResolved', (e) => resolved.push(e));
    try {
      const client = await pool.connect();
      let code: string | undefined;
      try {
        await client.query('BEGIN');
        await client.query('INSERT INTO fc VALUES ($1, $2)', [50, 'slow-session']);
        const killed = terminateWhileCommitting();
        await client.query('COMMIT').catch((err: { code?: string }) => { code = err.code; });
        assert.equal(await killed, 1);
      } finally {
        client.release();
      }
      console.log(`# FATAL inside a checked-out COMMIT: ${code ?? 'reported committed'}, commitResolved ${resolved.length}`);
      assert.equal(code, 'PGR_TRANSACTION_ROLLED_BACK');
      assert.equal(await count('slow-session'), 0);
      assert.equal(resolved.length, 0, 'the FATAL proved it: no txid_status lookup was needed');
    } finally {
      await pool.end();
    }
  });

  test('a write marked for lostCommits: the FATAL came after its CommandComplete (extended protocol, commit at Sync), so it proves nothing and the write is not run again', async () => {
    const pool = new Pool({ ...server.config, application_name: APP, max: 2, lostCommits: true });
    try {
      const killed = terminateWhileCommitting();
      const err = await pool.query('INSERT INTO fc VALUES ($1, $2)', [100, 'slow-marked']).then(() => undefined, (e: unknown) => e);
      assert.equal(await killed, 1);
      const rows = await count('slow-marked');
      console.log(`# FATAL at the Sync of a marked write: ${(err as { code?: string } | undefined)?.code ?? 'resolved'}, rows ${rows}`);
      assert.equal((err as { code?: string } | undefined)?.code, 'PGR_STATEMENT_OUTCOME_UNKNOWN');
      assert.equal(rows, 0);
    } finally {
      await pool.end();
    }
  });
});
