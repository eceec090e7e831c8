// Retries leave nothing behind (issue 26), through a real pool on a real PostgreSQL that never
// fails over: every statement fails with a transient, retryable 40001 (serialization failure)
// raised by the server, so each call retries many times on a live connection. The heap after a
// forced gc stays flat (before the fix each backoff left a reaction on the topology's shared
// "next primary change" promise, about 600 B, until a failover that never came).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import v8 from 'node:v8';
import vm from 'node:vm';
import { Pool } from '../../src/index.ts';
import { startPgServer, type PgServer } from '../helpers/pg-server.ts';

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;
const heap = (): number => {
  gc();
  gc();
  return v8.getHeapStatistics().used_heap_size;
};

let server: PgServer;
before(async () => {
  server = await startPgServer();
  await server.admin(`CREATE FUNCTION conflict() RETURNS int LANGUAGE plpgsql AS $$
    BEGIN RAISE EXCEPTION 'could not serialize access' USING ERRCODE = '40001'; END $$`);
});
after(async () => {
  await server?.destroy();
});

test('a real pool retrying a transient failure 20,000 times: the heap stays flat', async () => {
  const pool = new Pool({ ...server.config, max: 4, breaker: { enabled: false }, retry: { initialDelayMs: 0, maxDelayMs: 0, maxAttempts: 501, maxElapsedMs: 120_000 } });
  let retries = 0;
  pool.on('retry', () => {
    retries += 1;
  });
  const round = async (): Promise<unknown[]> => {
    const codes: unknown[] = [];
    // Four at a time (the pool's size), ten calls of 500 retries each.
    for (let i = 0; i < 10; i += 4) codes.push(...await Promise.all(Array.from({ length: Math.min(4, 10 - i) }, () => pool.query('SELECT conflict()').catch((e: { code?: string }) => e.code))));
    return codes;
  };
  try {
    await round();
    const before = heap();
    const counted = retries;
    const started = Date.now();
    const codes = [...await round(), ...await round(), ...await round(), ...await round()];
    const done = retries - counted;
    const grown = heap() - before;
    console.log(`# real pool: ${done} retries in ${Date.now() - started} ms; heap after gc grew ${(grown / 1024).toFixed(0)} KiB (${(grown / done).toFixed(1)} B per retry)`);
    assert.ok(codes.every((c) => c === 'PGR_RETRIES_EXHAUSTED'), JSON.stringify([...new Set(codes)]));
    assert.equal(done, 20_000);
    assert.ok(grown / done < 100, `the heap grew ${(grown / done).toFixed(1)} B per retry`);
  } finally {
    await pool.end();
  }
});
