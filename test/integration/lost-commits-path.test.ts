import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Pool } from '../../src/index.ts';
import { startPgServer, type PgServer } from '../helpers/pg-server.ts';

// With lostCommits on, an autocommit write runs with its commit's mark in one implicit
// transaction (src/transactions/commit-position.ts). The write must behave exactly as without it:
// same results and errors, prepared statements repaired when invalidated, nothing run twice.

describe('marked writes (lostCommits) behave as plain ones', () => {
  let server: PgServer;
  before(async () => {
    server = await startPgServer();
    await server.admin('CREATE TABLE m (id int PRIMARY KEY, v text)');
  });
  after(() => server.destroy());

  const count = async (): Promise<number> => Number((await server.admin<{ n: string }>('SELECT count(*) AS n FROM m'))[0]!.n);

  test('results, errors and row counts are the same as a plain pool', async () => {
    const plain = new Pool({ ...server.config, max: 1 });
    const marked = new Pool({ ...server.config, max: 1, lostCommits: true });
    try {
      for (const [pool, base] of [[plain, 0], [marked, 100]] as const) {
        const ins = await pool.query('INSERT INTO m VALUES ($1, $2) RETURNING id, v', [base + 1, 'a']);
        assert.deepEqual(ins.rows, [{ id: base + 1, v: 'a' }]);
        assert.equal(ins.command, 'INSERT');
        assert.equal(ins.rowCount, 1);
        const upd = await pool.query({ text: 'UPDATE m SET v = $1 WHERE id = $2', values: ['b', base + 1] });
        assert.equal(upd.rowCount, 1);
        const none = await pool.query('UPDATE m SET v = v WHERE id = -1');
        assert.equal(none.rowCount, 0);
        const dup = await pool.query('INSERT INTO m VALUES ($1, $2)', [base + 1, 'dup']).then(() => undefined, (e: { code?: string }) => e.code);
        assert.equal(dup, '23505', 'the server\'s error comes through unchanged');
        const arr = await pool.query({ text: 'DELETE FROM m WHERE id = $1 RETURNING v', values: [base + 1], rowMode: 'array' });
        assert.deepEqual(arr.rows, [['b']]);
      }
      assert.equal(await count(), 0);
    } finally {
      await plain.end();
      await marked.end();
    }
  });

  test('an invalidated prepared statement (ALTER TABLE) and a DISCARD ALL are repaired; each write runs once', async () => {
    const pool = new Pool({ ...server.config, max: 1, lostCommits: true });
    try {
      for (let i = 0; i < 3; i += 1) await pool.query('INSERT INTO m VALUES ($1, $2) RETURNING *', [i, 'x']);
      await server.admin('ALTER TABLE m ADD COLUMN extra int');
      const after = await pool.query('INSERT INTO m VALUES ($1, $2) RETURNING *', [10, 'y']);
      assert.deepEqual(Object.keys(after.rows[0]!), ['id', 'v', 'extra'], 'the new row shape, from a statement parsed again');
      const client = await pool.connect();
      await client.query('DISCARD ALL');
      client.release();
      await pool.query('INSERT INTO m VALUES ($1, $2) RETURNING *', [11, 'z']);
      assert.equal(await count(), 5, 'every write exactly once');
    } finally {
      await pool.end();
      await server.admin('DELETE FROM m');
      await server.admin('ALTER TABLE m DROP COLUMN extra');
    }
  });

  test('several statements in one text run unmarked, as they are', async () => {
    const pool = new Pool({ ...server.config, max: 1, lostCommits: true });
    try {
      const res = await pool.query("INSERT INTO m VALUES (50, 'p'); INSERT INTO m VALUES (51, 'q')");
      assert.ok(Array.isArray(res));
      assert.equal(await count(), 2);
    } finally {
      await pool.end();
      await server.admin('DELETE FROM m');
    }
  });
});
