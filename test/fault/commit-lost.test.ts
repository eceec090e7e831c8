import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import pg from 'pg';
import { Pool, type CommitResolvedEvent } from '../../src/index.ts';
import { useFaultFixture } from '../helpers/fault-fixture.ts';

type Trap = 'none' | 'drop-ack' | 'drop-commit';

/**
 * A real TCP proxy that understands one thing of the protocol: a simple-query COMMIT. Armed,
 * it either forwards the COMMIT and then swallows the server's answer and resets the connection
 * (the transaction committed, the client never hears it), or resets the connection before the
 * COMMIT reaches the server (it never committed). Each trap fires once.
 */
async function startCommitTrap(target: { host: string; port: number }): Promise<{ port: number; arm(trap: Trap): void; fired(): number; close(): Promise<void> }> {
  let armed: Trap = 'none';
  let fired = 0;
  const sockets = new Set<net.Socket>();
  const commit = Buffer.from('COMMIT\0');
  const server = net.createServer((client) => {
    const upstream = net.connect(target);
    sockets.add(client);
    sockets.add(upstream);
    let swallowing = false;
    const kill = (): void => {
      client.resetAndDestroy();
      upstream.resetAndDestroy();
    };
    client.on('data', (chunk: Buffer) => {
      if (armed !== 'none' && chunk[0] === 0x51 /* 'Q' */ && chunk.includes(commit)) {
        const trap = armed;
        armed = 'none';
        fired += 1;
        if (trap === 'drop-commit') return kill();
        swallowing = true;
      }
      upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => {
      if (swallowing) return kill(); // the server said CommandComplete: COMMIT is done
      client.write(chunk);
    });
    for (const s of [client, upstream]) {
      s.on('error', () => undefined);
      s.on('close', () => {
        sockets.delete(s);
        client.destroy();
        upstream.destroy();
      });
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    port: (server.address() as net.AddressInfo).port,
    arm: (trap) => { armed = trap; },
    fired: () => fired,
    close: () => new Promise<void>((r) => {
      for (const s of sockets) s.destroy();
      server.close(() => r());
    }),
  };
}

describe('a connection lost around COMMIT', () => {
  const f = useFaultFixture({
    proxy: startCommitTrap,
    setup: (s) => s.admin('CREATE TABLE ledger (key text NOT NULL)').then(() => undefined), // no unique index: a duplicate is possible
  });
  const count = async (key: string): Promise<number> => Number((await f.server.admin<{ n: string }>('SELECT count(*) AS n FROM ledger WHERE key = $1', [key]))[0]!.n);

  test('the answer to COMMIT is lost: pg-resilient asks txid_status and applies it once; a naive retry applies it twice', async () => {
    const pool = new Pool({ ...f.server.config, port: f.proxy.port });
    const resolved: CommitResolvedEvent[] = [];
    pool.on('commitResolved', (e) => resolved.push(e));
    let runs = 0;
    try {
      f.proxy.arm('drop-ack');
      const result = await pool.transaction(async (client) => {
        runs += 1;
        await client.query("INSERT INTO ledger VALUES ('ours-ack')");
        return 'done';
      });
      assert.equal(result, 'done');
      assert.equal(f.proxy.fired(), 1, 'the trap fired');
      assert.deepEqual(resolved.map((e) => e.outcome), ['committed']);
      assert.equal(runs, 1, 'a committed transaction is not run again');
      assert.equal(await count('ours-ack'), 1);
    } finally {
      await pool.end();
    }

    // Control: retry everything on error, over a raw pg client.
    f.proxy.arm('drop-ack');
    for (let attempt = 0; attempt < 3; attempt += 1) {
      const c = new pg.Client({ ...f.server.config, port: f.proxy.port });
      c.on('error', () => undefined);
      try {
        await c.connect();
        await c.query('BEGIN');
        await c.query("INSERT INTO ledger VALUES ('naive-ack')");
        await c.query('COMMIT');
        await c.end();
        break;
      } catch {
        await c.end().catch(() => undefined);
      }
    }
    const naive = await count('naive-ack');
    console.log(`# COMMIT answer lost: pg-resilient rows=1 (txid_status: ${resolved[0]?.outcome} in ${resolved[0]?.durationMs} ms); naive retry rows=${naive}`);
    assert.equal(naive, 2, 'the control applies the work twice');
  });

  test('COMMIT never reaches the server: the transaction is run again, once', async () => {
    const pool = new Pool({ ...f.server.config, port: f.proxy.port });
    const resolved: CommitResolvedEvent[] = [];
    pool.on('commitResolved', (e) => resolved.push(e));
    let runs = 0;
    try {
      const firedBefore = f.proxy.fired();
      f.proxy.arm('drop-commit');
      await pool.transaction(async (client) => {
        runs += 1;
        await client.query("INSERT INTO ledger VALUES ('ours-commit')");
      });
      assert.equal(f.proxy.fired(), firedBefore + 1);
      assert.deepEqual(resolved.map((e) => e.outcome), ['aborted']);
      assert.equal(runs, 2, 'the aborted transaction ran again');
      assert.equal(await count('ours-commit'), 1);
    } finally {
      await pool.end();
    }
  });

  test("fn's own error rolls back and is rethrown unchanged, never retried", async () => {
    const pool = new Pool(f.server.config);
    let runs = 0;
    const mine = new Error('business rule violated');
    try {
      await assert.rejects(pool.transaction(async (client) => {
        runs += 1;
        await client.query("INSERT INTO ledger VALUES ('rolled-back')");
        throw mine;
      }), (e) => e === mine);
      assert.equal(runs, 1);
      assert.equal(await count('rolled-back'), 0);
      await assert.rejects(pool.transaction(async (client) => {
        await client.query('SELECT * FROM no_such_table');
      }), (e: { code?: string }) => e.code === '42P01');
    } finally {
      await pool.end();
    }
  });

  test('serialization failures run the transaction again', async () => {
    await f.server.admin('CREATE TABLE IF NOT EXISTS acct (id int PRIMARY KEY, n int); INSERT INTO acct VALUES (1, 0) ON CONFLICT DO NOTHING');
    const pool = new Pool({ ...f.server.config, max: 8 });
    let runs = 0;
    try {
      await Promise.all(Array.from({ length: 8 }, () => pool.transaction(async (client) => {
        runs += 1;
        const { rows } = await client.query('SELECT n FROM acct WHERE id = 1');
        await new Promise((r) => setTimeout(r, 20));
        await client.query('UPDATE acct SET n = $1 WHERE id = 1', [rows[0].n + 1]);
      }, { isolationLevel: 'serializable' })));
      const n = (await f.server.admin<{ n: number }>('SELECT n FROM acct WHERE id = 1'))[0]!.n;
      console.log(`# serializable: 8 concurrent increments took ${runs} runs; n=${n}`);
      assert.equal(n, 8, 'every increment applied exactly once');
      assert.ok(runs > 8, 'conflicts happened and were retried');
    } finally {
      await pool.end();
    }
  });
});
