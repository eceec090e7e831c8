import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { Pool } from '../../src/index.ts';
import { startPgServer, type PgServer } from '../helpers/pg-server.ts';

// Pipelining on the pool's busy connections (src/pool/pipeline.ts), against a real PostgreSQL
// 15: what it must deliver (every caller its own answer, as pg.Pool gives them), and what it
// must never do (run a statement inside another caller's transaction, starve a caller waiting
// for a connection of its own, lose reads or repeat writes when a connection dies under a pipeline).

const ECHO = 'SELECT $1::int AS v, pg_backend_pid() AS pid';

/** What both pools answer the same way (pg.Pool's and ours, side by side). */
interface Querier {
  query(text: string, values?: unknown[]): Promise<pg.QueryResult>;
}

async function until(what: string, check: () => Promise<boolean>, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('pipelining on a real PostgreSQL', () => {
  let server: PgServer;
  before(async () => {
    server = await startPgServer();
    await server.admin('CREATE TABLE pl_events (id serial PRIMARY KEY, v int NOT NULL)');
  });
  after(async () => {
    await server.destroy();
  });

  const count = async (lo: number, hi: number): Promise<number> =>
    Number((await server.admin<{ n: string }>('SELECT count(*) AS n FROM pl_events WHERE v >= $1 AND v < $2', [lo, hi]))[0]!.n);

  test('saturated: statements are pipelined, and every caller gets the answer pg.Pool gives it', async () => {
    // Each connection's pg Client, to see pg's pipeline mode on it (a public Client option).
    const made: pg.Client[] = [];
    class Tracked extends pg.Client {
      constructor(config?: pg.ClientConfig) {
        super(config);
        made.push(this);
      }
    }
    const ours = new Pool({ ...server.config, max: 2, Client: Tracked });
    const raw = new pg.Pool({ ...server.config, max: 2 });
    try {
      // Both connections open and idle first: the burst then meets busy connections at once.
      await Promise.all([ours.query('SELECT 1'), ours.query('SELECT 1')]);
      const burst = (pool: Querier): Promise<Array<{ v: number; pid: number }>> =>
        Promise.all(Array.from({ length: 300 }, (_, i) => pool.query(ECHO, [i]).then((r) => r.rows[0] as { v: number; pid: number })));
      const [mine, theirs] = await Promise.all([burst(ours), burst(raw)]);
      assert.deepEqual(mine.map((r) => r.v), theirs.map((r) => r.v));
      assert.deepEqual(mine.map((r) => r.v), Array.from({ length: 300 }, (_, i) => i));
      assert.ok(ours.pipelinedCount > 0, 'statements were written behind others');
      assert.ok(new Set(mine.map((r) => r.pid)).size <= 2, 'on the pool\'s two connections');
      // Everything came back: both connections idle, nobody waiting.
      assert.equal(ours.totalCount, 2);
      assert.equal(ours.idleCount, 2);
      assert.equal(ours.waitingCount, 0);
      // Drained connections leave pg's pipeline mode: one lent afterwards runs one statement at
      // a time, as pg.Pool's do (pg refuses cursors in pipeline mode).
      assert.equal(made.length, 2);
      assert.deepEqual(made.map((c) => (c as unknown as { pipeline: boolean }).pipeline), [false, false]);
    } finally {
      await Promise.all([ours.end(), raw.end()]);
    }
  });

  test('a pool with room opens a connection for each caller: their statements run side by side, as with pg.Pool', async () => {
    const pool = new Pool({ ...server.config, max: 3 });
    try {
      const rows = await Promise.all([1, 2, 3].map((i) => pool.query('SELECT pg_sleep(0.1) IS NULL AS slept, $1::int AS v, pg_backend_pid() AS pid', [i]).then((r) => r.rows[0])));
      assert.equal(new Set(rows.map((r) => r.pid)).size, 3, 'three server connections');
      assert.equal(pool.pipelinedCount, 0, 'nothing pipelined while connections could still be opened');
    } finally {
      await pool.end();
    }
  });

  test('pipelining: false sends one statement per connection at a time', async () => {
    const pool = new Pool({ ...server.config, max: 2, pipelining: false });
    try {
      await Promise.all([pool.query('SELECT 1'), pool.query('SELECT 1')]);
      const rows = await Promise.all(Array.from({ length: 100 }, (_, i) => pool.query(ECHO, [i]).then((r) => r.rows[0].v as number)));
      assert.deepEqual(rows, Array.from({ length: 100 }, (_, i) => i));
      assert.equal(pool.pipelinedCount, 0);
    } finally {
      await pool.end();
    }
  });

  test('nothing is pipelined behind a statement that opens a transaction: raw pg.Pool loses the writes, pg-resilient keeps them', async () => {
    // pool.query('BEGIN') is a bug in the application, but a common one. pg.Pool hands the
    // connection back inside the transaction and the next statements run in it, never committed.
    const raw = new pg.Pool({ ...server.config, max: 1 });
    const ours = new Pool({ ...server.config, max: 1 });
    try {
      await ours.query('SELECT 1');
      const writes = (pool: Querier, base: number): Array<Promise<unknown>> => [
        pool.query('BEGIN'),
        ...Array.from({ length: 5 }, (_, i) => pool.query('INSERT INTO pl_events (v) VALUES ($1)', [base + i])),
      ];
      await Promise.all(writes(raw, 1000));
      await Promise.all(writes(ours, 2000));
      assert.equal(await count(1000, 1005), 0, 'control: raw pg.Pool ran the inserts inside the open transaction');
      assert.equal(await count(2000, 2005), 5, 'pg-resilient: every insert committed on its own');
    } finally {
      await Promise.all([raw.end(), ours.end()]);
    }
  });

  test('a connection lost with reads pipelined on it: they run again, no error reaches the caller; raw pg.Pool errors', async () => {
    const slowHead = 'SELECT pg_sleep(0.4) IS NULL AS slept, $1::int AS v';
    const sleeping = async (): Promise<boolean> =>
      (await server.admin<{ n: string }>("SELECT count(*) AS n FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(0.4)%' AND state = 'active'"))[0]!.n !== '0';
    const run = async (pool: Querier): Promise<PromiseSettledResult<unknown>[]> => {
      const head = pool.query(slowHead, [0]);
      await new Promise((r) => setImmediate(r));
      const followers = Array.from({ length: 5 }, (_, i) => pool.query(ECHO, [i + 1]));
      // Settled from the start: the control's rejections come while the server is still busy.
      const settled = Promise.allSettled([head, ...followers]);
      await until('the head statement to run', sleeping);
      assert.equal(await server.terminateBackends(), 1);
      return settled;
    };
    const raw = new pg.Pool({ ...server.config, max: 1 });
    raw.on('error', () => undefined);
    // Pipelined even behind a slow statement here, so the loss meets a full pipeline.
    const ours = new Pool({ ...server.config, max: 1, pipelining: { behindSlowMs: 60_000 } });
    try {
      await raw.query('SELECT 1');
      const control = await run(raw);
      assert.ok(control.some((r) => r.status === 'rejected'), 'control: raw pg.Pool hands the lost connection\'s error to a caller');
      await raw.end();
      await ours.query('SELECT 1');
      const results = await run(ours);
      assert.deepEqual(results.map((r) => r.status), Array(6).fill('fulfilled'), JSON.stringify(results.filter((r) => r.status === 'rejected')));
      const values = results.map((r) => ((r as PromiseFulfilledResult<pg.QueryResult>).value.rows[0] as { v: number }).v);
      assert.deepEqual(values, [0, 1, 2, 3, 4, 5]);
      assert.ok(ours.pipelinedCount >= 5, `the followers were pipelined (${ours.pipelinedCount})`);
    } finally {
      if (!raw.ended) await raw.end();
      await ours.end();
    }
  });

  test('a write pipelined on a lost connection is refused, never run twice', async () => {
    const ours = new Pool({ ...server.config, max: 1, pipelining: { behindSlowMs: 60_000 } });
    try {
      await ours.query('SELECT 1');
      const head = ours.query('SELECT pg_sleep(0.4) IS NULL AS slept, $1::int AS v', [0]);
      await new Promise((r) => setImmediate(r));
      const write = ours.query('INSERT INTO pl_events (v) VALUES ($1)', [3000]);
      const refused = assert.rejects(write, (err: Error & { code?: string }) => err.code === 'PGR_STATEMENT_OUTCOME_UNKNOWN' && /may or may not have taken effect/.test(err.message));
      await until('the head statement to run', async () =>
        (await server.admin<{ n: string }>("SELECT count(*) AS n FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(0.4)%' AND state = 'active'"))[0]!.n !== '0');
      assert.equal(await server.terminateBackends(), 1);
      await refused;
      assert.equal((await head).rows[0].v, 0, 'the read in front of it ran again');
      assert.equal(ours.pipelinedCount, 1);
      // Written behind a statement the server was still running when it ended: never run.
      assert.equal(await count(3000, 3001), 0);
    } finally {
      await ours.end();
    }
  });

  test('a caller waiting for a connection of its own is served while pipelined load goes on', async () => {
    const pool = new Pool({ ...server.config, max: 2 });
    let stop = false;
    let served = 0;
    try {
      await Promise.all([pool.query('SELECT 1'), pool.query('SELECT 1')]);
      const workers = Array.from({ length: 32 }, async (_, w) => {
        for (let i = 0; !stop; i++) {
          const r = await pool.query(ECHO, [w * 1_000_000 + i]);
          assert.equal(r.rows[0].v, w * 1_000_000 + i);
          served += 1;
        }
      });
      await until('pipelining under load', async () => pool.pipelinedCount > 100);
      const client = await Promise.race([
        pool.connect(),
        new Promise<never>((_, reject) => setTimeout(() => reject(new Error('connect() starved by pipelined load')), 5000)),
      ]);
      const servedBefore = served;
      try {
        const r = await client.query("SELECT current_setting('transaction_isolation') AS iso");
        assert.ok(typeof r.rows[0].iso === 'string');
      } finally {
        client.release();
      }
      await until('load to go on after the lent client came back', async () => served > servedBefore + 100);
      stop = true;
      await Promise.all(workers);
    } finally {
      stop = true;
      await pool.end();
    }
  });

  test('under steady pipelined load a connection past its lifetime drains and is replaced', async () => {
    const pool = new Pool({ ...server.config, max: 2, maxLifetimeSeconds: 1 });
    let stop = false;
    const pids = new Set<number>();
    try {
      const workers = Array.from({ length: 32 }, async (_, w) => {
        for (let i = 0; !stop; i++) {
          const r = await pool.query(ECHO, [w * 1_000_000 + i]);
          assert.equal(r.rows[0].v, w * 1_000_000 + i);
          pids.add(r.rows[0].pid as number);
        }
      });
      // Connections that never drained would never be released, so never closed for age.
      await until('a third server connection', async () => pids.size > 2, 8000);
      stop = true;
      await Promise.all(workers);
      assert.ok(pool.pipelinedCount > 0);
    } finally {
      stop = true;
      await pool.end();
    }
  });
});
