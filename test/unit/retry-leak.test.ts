// Retries leave nothing behind (issue 26): each backoff waits for "a new primary or the delay,
// whichever comes first", and on a pool that never fails over that wait must not leave a
// reaction on the topology's shared "next primary change" (about 300 B per retry, freed only by
// a failover). 50,000 retries through the real retry policy and a real Topology, with virtual
// time; the heap after a forced gc must stay flat.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import v8 from 'node:v8';
import vm from 'node:vm';
import { resolveOptions } from '../../src/options.ts';
import { Deadline } from '../../src/policy/deadline.ts';
import { AttemptFailure, runWithRetry, type RetryRun } from '../../src/policy/retry.ts';
import { Topology } from '../../src/topology/topology.ts';
import { WarpClock } from '../helpers/fake-clock.ts';

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;
const heap = (): number => {
  gc();
  gc();
  return v8.getHeapStatistics().used_heap_size;
};

test('50,000 retries on a pool that never fails over leave the heap flat', async () => {
  const options = resolveOptions({ host: '127.0.0.1', port: 1 });
  const topology = new Topology(options, () => undefined);
  const clock = new WarpClock();
  const policy = { maxElapsedMs: 1e12, initialDelayMs: 0, maxDelayMs: 0, multiplier: 2, maxAttempts: 1001 };
  const refused = new AttemptFailure(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' }), 'connect');
  const calls = async (n: number): Promise<void> => {
    for (let i = 0; i < n; i += 1) {
      const run: RetryRun = {
        deadline: new Deadline(clock, 1e12),
        idempotent: true,
        policy,
        random: () => 0.5,
        wakeUp: (wake) => topology.onPrimaryChange(wake),
      };
      // 1001 attempts: 1000 retries, then PGR_RETRIES_EXHAUSTED.
      await assert.rejects(runWithRetry(() => Promise.reject(refused), run), (e: { code?: string }) => e.code === 'PGR_RETRIES_EXHAUSTED');
      clock.sleeps.length = 0; // the test clock's own record of delays
    }
  };
  await calls(10); // warm up
  const before = heap();
  const started = Date.now();
  await calls(50);
  const grown = heap() - before;
  const perRetry = grown / 50_000;
  console.log(`# 50,000 retries in ${Date.now() - started} ms; heap after gc grew ${(grown / 1024).toFixed(0)} KiB (${perRetry.toFixed(1)} B per retry)`);
  assert.ok(perRetry < 20, `the heap grew ${perRetry.toFixed(1)} B per retry`);
  assert.equal(topology.primaryWaiters, 0);
  // A failover still wakes a waiting backoff at once.
  const woken = runWithRetry(async (n) => {
    if (n === 1) throw refused;
    return 'ok';
  }, { deadline: new Deadline({ now: () => 0, setTimeout: () => ({ cancel() {} }) }, 1e12), idempotent: true, policy: { ...policy, initialDelayMs: 1e9, maxDelayMs: 1e9 }, random: () => 0.5, wakeUp: (wake) => topology.onPrimaryChange(wake) });
  await new Promise((r) => setImmediate(r));
  topology.primaryChanged();
  assert.equal(await woken, 'ok');
});

