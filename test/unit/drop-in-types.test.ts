import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import pg from 'pg';
import { Pool } from '../../src/index.ts';

// Compile-time proof that code typed against pg.Pool accepts pg-resilient's Pool: if the
// surfaces drift apart, `tsc` (the build) fails here, before any test runs. Node's type
// stripping (Node 24 runs this file as it is) checks no type, so the second test compares the
// surfaces at run time: what the types promise must exist on a real instance.
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

/** The members @types/pg declares on `class Pool` (what code typed against pg.Pool may use). */
function declaredPoolMembers(): string[] {
  const dts = readFileSync(path.join(path.dirname(createRequire(import.meta.url).resolve('@types/pg/package.json')), 'index.d.ts'), 'utf8');
  const start = dts.indexOf('export class Pool extends events.EventEmitter {');
  assert.ok(start >= 0, "@types/pg declares class Pool");
  const body = dts.slice(start, dts.indexOf('\n}', start));
  const names = new Set<string>();
  for (const m of body.matchAll(/^ {4}(?:readonly )?([A-Za-z]\w*)\s*[(<:]/gm)) if (m[1] !== 'constructor') names.add(m[1]!);
  return [...names];
}

test('at run time too (no tsc under type stripping): what @types/pg declares on Pool exists on ours, of the same kind as on pg.Pool', async () => {
  const config = { host: '127.0.0.1', port: 1, max: 1 };
  const theirs = new pg.Pool(config) as unknown as Record<string, unknown>;
  const ours = new Pool(config);
  try {
    const declared = declaredPoolMembers();
    // So that the comparison cannot pass by finding nothing.
    for (const name of ['query', 'connect', 'end', 'on', 'totalCount', 'idleCount', 'waitingCount', 'expiredCount', 'ending', 'ended', 'options']) {
      assert.ok(declared.includes(name), `@types/pg declares Pool.${name}`);
    }
    // EventEmitter's methods, which Pool inherits in the types as at run time.
    const inherited = ['once', 'off', 'emit', 'addListener', 'removeListener', 'removeAllListeners', 'listeners', 'listenerCount'];
    const differ = [...declared, ...inherited]
      .filter((name) => typeof (ours as unknown as Record<string, unknown>)[name] !== typeof theirs[name])
      .map((name) => `${name}: pg.Pool ${typeof theirs[name]}, ours ${typeof (ours as unknown as Record<string, unknown>)[name]}`);
    assert.deepEqual(differ, []);
    assert.deepEqual([ours.totalCount, ours.idleCount, ours.waitingCount, ours.expiredCount, ours.ending, ours.ended], [0, 0, 0, 0, false, false]);
  } finally {
    await (theirs as unknown as pg.Pool).end();
    await ours.end();
  }
});
