import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import type { PoolClient } from 'pg';
import { Pool, ErrorCodes, isPgResilientError } from '../../src/index.ts';
import { startPgServer, type PgServer } from '../helpers/pg-server.ts';

// The drop-in surface and restart survival, against a real PostgreSQL started here.
describe('Pool against a real PostgreSQL', () => {
  let server: PgServer;
  before(async () => {
    server = await startPgServer();
    await server.admin('CREATE TABLE IF NOT EXISTS items (id int PRIMARY KEY, name text)');
  });
  after(async () => {
    await server.destroy();
  });

  test('query: promise and callback forms, text+values and config', async () => {
    const pool = new Pool({ connectionString: server.connectionString, max: 3 });
    try {
      const a = await pool.query('SELECT $1::int + 1 AS n', [41]);
      assert.equal(a.rows[0].n, 42);
      const b = await pool.query({ text: 'SELECT $1::text AS s', values: ['x'] });
      assert.equal(b.rows[0].s, 'x');
      const c = await new Promise<number>((resolve, reject) => {
        pool.query('SELECT 7 AS n', (err, res) => (err ? reject(err) : resolve(res.rows[0].n)));
      });
      assert.equal(c, 7);
      const d = await new Promise<number>((resolve, reject) => {
        pool.query('SELECT $1::int AS n', [8], (err, res) => (err ? reject(err) : resolve(res.rows[0].n)));
      });
      assert.equal(d, 8);
      const arr = await pool.query({ text: 'SELECT 1 AS a, 2 AS b', rowMode: 'array' });
      assert.deepEqual(arr.rows[0], [1, 2]);
    } finally {
      await pool.end();
    }
  });

  test('connect/release, counts and events like pg.Pool', async () => {
    const pool = new Pool({ ...server.config, max: 2 });
    const seen: string[] = [];
    for (const e of ['connect', 'acquire', 'release', 'remove'] as const) pool.on(e, () => seen.push(e));
    const client = await pool.connect();
    assert.equal(pool.totalCount, 1);
    assert.equal(pool.idleCount, 0);
    const r = await client.query('SELECT 1 AS one');
    assert.equal(r.rows[0].one, 1);
    client.release();
    assert.throws(() => client.release(), /already been released/);
    assert.equal(pool.idleCount, 1);
    await pool.end();
    assert.equal(pool.ended, true);
    assert.deepEqual([...new Set(seen)].sort(), ['acquire', 'connect', 'release', 'remove']);
    await assert.rejects(pool.query('SELECT 1'), (err: unknown) => isPgResilientError(err) && err.code === ErrorCodes.POOL_ENDED);
  });

  test('server errors that are not transient come back unchanged', async () => {
    const pool = new Pool(server.config);
    try {
      await pool.query('INSERT INTO items VALUES (1, $1) ON CONFLICT DO NOTHING', ['a']);
      await assert.rejects(pool.query('INSERT INTO items VALUES (1, $1)', ['b']), (err: { code?: string }) => err.code === '23505');
      await assert.rejects(pool.query('SELEC 1'), (err: { code?: string }) => err.code === '42601');
    } finally {
      await pool.end();
    }
  });

  test('wrong password fails fast with 28P01, not a timeout', async () => {
    const pool = new Pool({ ...server.config, password: 'wrong-password-xyz' });
    const started = Date.now();
    try {
      await assert.rejects(pool.query('SELECT 1'), (err: { code?: string; message: string }) => {
        assert.equal(err.code, '28P01');
        assert.ok(!err.message.includes('wrong-password-xyz'));
        return true;
      });
      assert.ok(Date.now() - started < 3000, 'auth failure must not wait for a deadline');
    } finally {
      await pool.end();
    }
  });

  test('a fast restart of the server: raw pg.Pool fails, pg-resilient does not', async () => {
    const raw = new pg.Pool(server.config);
    raw.on('error', () => undefined); // idle clients die on restart; pg.Pool would crash otherwise
    const pool = new Pool({ ...server.config, retry: { maxElapsedMs: 20000 } });
    try {
      await Promise.all([raw.query('SELECT 1'), pool.query('SELECT 1')]);
      let rawErrors = 0;
      let ourErrors = 0;
      let ourOk = 0;
      const stop = Date.now() + 6000;
      const restart = (async () => {
        await new Promise((r) => setTimeout(r, 500));
        await server.restart('fast');
      })();
      const worker = async (p: { query(text: string): Promise<unknown> }, onErr: () => void, onOk: () => void): Promise<void> => {
        while (Date.now() < stop) {
          try {
            await p.query('SELECT count(*) FROM items');
            onOk();
          } catch {
            onErr();
          }
          await new Promise((r) => setTimeout(r, 20));
        }
      };
      await Promise.all([
        restart,
        ...Array.from({ length: 4 }, () => worker(raw, () => (rawErrors += 1), () => undefined)),
        ...Array.from({ length: 4 }, () => worker(pool, () => (ourErrors += 1), () => (ourOk += 1))),
      ]);
      console.log(`# restart: raw pg.Pool errors=${rawErrors}; pg-resilient errors=${ourErrors} ok=${ourOk}`);
      assert.ok(rawErrors > 0, 'the control (raw pg.Pool) must see the restart');
      assert.equal(ourErrors, 0);
    } finally {
      await raw.end();
      await pool.end();
    }
  });

  test('min connections are kept warm, and warmed again after a restart', async () => {
    const pool = new Pool({ ...server.config, min: 3, max: 5 });
    try {
      const waitFor = async (cond: () => boolean, ms: number): Promise<boolean> => {
        const until = Date.now() + ms;
        while (!cond() && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
        return cond();
      };
      assert.ok(await waitFor(() => pool.idleCount === 3, 3000), `idle ${pool.idleCount}`);
      await server.restart('fast');
      await waitFor(() => pool.idleCount < 3, 2000);
      assert.ok(await waitFor(() => pool.idleCount === 3 && pool.totalCount === 3, 5000), `after restart: idle ${pool.idleCount}, total ${pool.totalCount}`);
      const backends = await server.admin<{ n: string }>("SELECT count(*) AS n FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()");
      assert.equal(Number(backends[0]!.n), 3, 'the warm connections are real server sessions');
    } finally {
      await pool.end();
    }
  });

  test('callers beyond max wait in line and are served in order; idle connections are closed after idleTimeoutMillis', async () => {
    const pool = new Pool({ ...server.config, max: 1, min: 0, idleTimeoutMillis: 300 });
    try {
      const served: number[] = [];
      const calls = Array.from({ length: 6 }, (_, i) => pool.query('SELECT $1::int AS i', [i]).then((r) => served.push(r.rows[0].i)));
      assert.equal(pool.waitingCount, 5, 'one connection opening, five callers in line');
      await Promise.all(calls);
      assert.deepEqual(served, [0, 1, 2, 3, 4, 5], 'first come, first served');
      assert.equal(pool.waitingCount, 0);
      // Burst on a bigger pool, then quiet: every connection is idle, then closed by the idle timeout.
      const wide = new Pool({ ...server.config, max: 4, min: 1, idleTimeoutMillis: 300, application_name: 'pgr-idle-timeout' });
      try {
        await Promise.all(Array.from({ length: 16 }, () => wide.query('SELECT pg_sleep(0.02)')));
        assert.equal(wide.totalCount, 4);
        assert.equal(wide.idleCount, 4, 'all released');
        const until = Date.now() + 5000;
        while (wide.totalCount > 1 && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
        assert.equal(wide.totalCount, 1, 'closed down to min after the idle timeout');
        assert.equal(wide.idleCount, 1);
        const session = (): Promise<number[]> => server.admin<{ pid: number }>("SELECT pid FROM pg_stat_activity WHERE application_name = 'pgr-idle-timeout'").then((rows) => rows.map((r) => r.pid));
        const kept = await session();
        assert.equal(kept.length, 1, 'and the server agrees');
        await new Promise((r) => setTimeout(r, 1500));
        assert.deepEqual(await session(), kept, 'the min connection stays open: not closed and reopened every idle period');
        assert.equal((await wide.query('SELECT 1 AS one')).rows[0].one, 1);
      } finally {
        await wide.end();
      }
    } finally {
      await pool.end();
    }
  });

  test('a value pg cannot serialise fails that call alone, at once; the connection goes back', async () => {
    const pool = new Pool({ ...server.config, max: 1 });
    try {
      const bad = { toPostgres: (): string => { throw new Error('cannot serialise this value'); } };
      const started = Date.now();
      await assert.rejects(pool.query('SELECT $1::text AS v', [bad]), /cannot serialise this value/);
      assert.ok(Date.now() - started < 1000, 'not retried until the deadline');
      assert.equal((await pool.query('SELECT $1::text AS v', ['ok'])).rows[0].v, 'ok');
      assert.equal(pool.idleCount, pool.totalCount);
      assert.equal(pool.waitingCount, 0);
    } finally {
      await pool.end();
    }
  });

  test('maxLifetimeSeconds and maxUses recycle connections', async () => {
    const pool = new Pool({ ...server.config, max: 1, maxUses: 3 });
    try {
      const pids = new Set<number>();
      for (let i = 0; i < 9; i += 1) pids.add((await pool.query('SELECT pg_backend_pid() AS pid')).rows[0].pid);
      assert.equal(pids.size, 3, 'a new connection every 3 uses');
    } finally {
      await pool.end();
    }
    const aged = new Pool({ ...server.config, max: 1, maxLifetimeSeconds: 0.3 });
    try {
      const first = (await aged.query('SELECT pg_backend_pid() AS pid')).rows[0].pid;
      await new Promise((r) => setTimeout(r, 400));
      const second = (await aged.query('SELECT pg_backend_pid() AS pid')).rows[0].pid;
      assert.notEqual(first, second);
    } finally {
      await aged.end();
    }
  });

  test('every connection busy on a healthy server: PGR_ACQUIRE_TIMEOUT at acquireTimeoutMs, not retried (load, not an outage)', async () => {
    const pool = new Pool({ ...server.config, max: 1, acquireTimeoutMs: 200, retry: { maxElapsedMs: 5000 } });
    const held = await pool.connect();
    try {
      const started = Date.now();
      await assert.rejects(pool.query('SELECT 1'), (e: unknown) => {
        assert.ok(isPgResilientError(e));
        assert.equal(e.code, ErrorCodes.ACQUIRE_TIMEOUT);
        assert.equal((e as { saturated?: boolean }).saturated, true);
        return true;
      });
      const took = Date.now() - started;
      assert.ok(took >= 190 && took < 1200, `failed after ${took} ms`);
      assert.equal(pool.waitingCount, 0);
    } finally {
      held.release();
      await pool.end();
    }
  });

  test('a checked-out client whose connection breaks: a clean session moves to a new connection; inside a transaction (replay off) it ends (typed rolled-back error, ROLLBACK completes)', async () => {
    // Replay of transactions off, to see the session end (the replay has tests of its own).
    const pool = new Pool({ ...server.config, max: 2, application_name: 'pgr-broken-client', transactionReplay: false });
    let client: PoolClient | undefined;
    try {
      client = await pool.connect();
      const pid = (await client.query('SELECT pg_backend_pid() AS pid')).rows[0].pid;
      await server.admin('SELECT pg_terminate_backend($1)', [pid]);
      await new Promise((r) => setTimeout(r, 200));
      // No transaction open, nothing bound to the connection: the next statement runs on a new one.
      const moved = (await client.query('SELECT pg_backend_pid() AS pid')).rows[0].pid;
      assert.notEqual(moved, pid);
      await client.query('BEGIN');
      await client.query('SELECT 1');
      await server.admin('SELECT pg_terminate_backend($1)', [moved]);
      await new Promise((r) => setTimeout(r, 200));
      // The transaction is gone with its connection: a typed error that says nothing was applied.
      await assert.rejects(client.query('SELECT 1'), (e: unknown) => isPgResilientError(e) && e.code === 'PGR_TRANSACTION_ROLLED_BACK' && /57P01/.test(e.message));
      // The server rolled the transaction back with the connection: ROLLBACK completes, and the
      // session is clean again.
      await client.query('ROLLBACK');
      const third = (await client.query('SELECT pg_backend_pid() AS pid')).rows[0].pid;
      assert.ok(third !== pid && third !== moved);
      client.release();
      client = undefined;
      const after = await pool.query('SELECT pg_backend_pid() AS pid');
      assert.ok(after.rows[0].pid !== pid && after.rows[0].pid !== moved, 'no broken connection was reused');
    } finally {
      client?.release(true);
      await pool.end();
    }
  });
});
