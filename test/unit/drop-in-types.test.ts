import { test } from 'node:test';
import assert from 'node:assert/strict';
import type pg from 'pg';
import { Pool } from '../../src/index.ts';

// Compile-time proof that code typed against pg.Pool accepts pg-resilient's Pool: if the
// surfaces drift apart, `tsc` (the build) fails here, before any test runs.
function usesPgPool(pool: pg.Pool): Promise<pg.QueryResult<{ n: number }>> {
  pool.on('error', (err: Error, client: pg.PoolClient) => void [err, client]);
  pool.on('connect', (client: pg.PoolClient) => void client);
  return pool.query<{ n: number }>('SELECT 1 AS n');
}
async function usesPoolClient(pool: pg.Pool): Promise<void> {
  const client: pg.PoolClient = await pool.connect();
  await client.query('SELECT $1::int', [1]);
  client.release();
  pool.connect((err, c, done) => {
    void [err, c];
    done();
  });
  void [pool.totalCount, pool.idleCount, pool.waitingCount, pool.expiredCount, pool.ending, pool.ended];
  await pool.end();
}

test('pg-resilient Pool is assignable where pg.Pool is expected (checked by tsc)', () => {
  const ours: pg.Pool = new Pool({ host: '127.0.0.1', port: 1, max: 1 });
  assert.equal(typeof usesPgPool, 'function');
  assert.equal(typeof usesPoolClient, 'function');
  void ours.end();
});
