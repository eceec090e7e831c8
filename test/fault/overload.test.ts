import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { ErrorCodes, Pool, isPgResilientError } from '../../src/index.ts';
import { useFaultFixture } from '../helpers/fault-fixture.ts';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('overload during an outage, and shutdown', () => {
  const f = useFaultFixture();

  test('a burst of 10× max during an outage: bounded memory, typed rejections, recovery', async () => {
    const max = 10;
    const pool = new Pool({ ...f.via(), max, maxWaitingClients: 2 * max, retry: { maxElapsedMs: 4000 } });
    try {
      await pool.query('SELECT 1');
      const handlesBefore = process.getActiveResourcesInfo().length;
      await f.proxy.refuse();
      f.proxy.resetAll();
      global.gc?.();
      const heapBefore = process.memoryUsage().heapUsed;
      let peakHeap = heapBefore;
      const sampler = setInterval(() => { peakHeap = Math.max(peakHeap, process.memoryUsage().heapUsed); }, 50);
      const outcomes = new Map<string, number>();
      const burst = Array.from({ length: 10 * max }, () => pool.query('SELECT 1').then(
        () => 'ok',
        (e: unknown) => (isPgResilientError(e) ? e.code : `other: ${(e as Error).message}`),
      ).then((k) => outcomes.set(k, (outcomes.get(k) ?? 0) + 1)));
      await Promise.all(burst);
      clearInterval(sampler);
      console.log(`# overload: 100 calls during an outage → ${JSON.stringify(Object.fromEntries(outcomes))}; heap growth ${((peakHeap - heapBefore) / 1e6).toFixed(1)} MB; waiting now ${pool.waitingCount}`);
      for (const key of outcomes.keys()) assert.match(key, /^PGR_(QUEUE_FULL|RETRIES_EXHAUSTED)$/);
      assert.ok((outcomes.get(ErrorCodes.QUEUE_FULL) ?? 0) > 0, 'the excess must be rejected, not queued');
      assert.equal(pool.waitingCount, 0);
      assert.ok(peakHeap - heapBefore < 50e6, 'memory stays bounded');
      await f.proxy.pass();
      const t0 = Date.now();
      let ok = 0;
      // Recovery, not speed: the first calls wait for the breaker's trial and new connections
      // (paced by the connect gate); a busy CI machine must still get well past that in 3 s.
      while (Date.now() - t0 < 3000) {
        await Promise.all(Array.from({ length: max }, () => pool.query('SELECT 1').then(() => { ok += 1; })));
      }
      console.log(`# overload: after recovery ${Math.round(ok / 3)} queries/s over 3 s`);
      assert.ok(ok > 100, `only ${ok} queries in the 3 s after recovery`);
      await sleep(100);
      const handlesAfter = process.getActiveResourcesInfo().length;
      const kinds = process.getActiveResourcesInfo().filter((k) => k !== 'TCPSocketWrap');
      console.log(`# overload: active handles ${handlesBefore} before, ${handlesAfter} after (${pool.totalCount} connections open): ${JSON.stringify(kinds)}`);
      // Each connection is three sockets in this process: ours, and the in-process proxy's two.
      assert.ok(handlesAfter <= handlesBefore + 3 * pool.totalCount + 2, `handles ${handlesBefore} → ${handlesAfter}`);
    } finally {
      await f.proxy.pass();
      await pool.end();
    }
  });

  test('pool.end() during an outage resolves promptly, rejects waiters with PGR_POOL_ENDED, and the process exits', async () => {
    // A child process, so "lets the process exit" is observed for real.
    const script = `
      import { Pool } from ${JSON.stringify(new URL(`../../src/index.${import.meta.url.endsWith('.ts') ? 'ts' : 'js'}`, import.meta.url).href)};
      const pool = new Pool({ host: '127.0.0.1', port: ${f.proxy.port}, user: 'postgres', password: 'x', database: 'postgres', retry: { maxElapsedMs: 60000 }, min: 2 });
      const waits = Array.from({ length: 5 }, () => pool.query('SELECT 1').then(() => 'ok', (e) => e.code));
      await new Promise((r) => setTimeout(r, 1500));
      const t0 = Date.now();
      await pool.end();
      const endMs = Date.now() - t0;
      const codes = await Promise.all(waits);
      console.log(JSON.stringify({ endMs, codes }));
    `;
    await f.proxy.refuse();
    try {
      const t0 = Date.now();
      const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
      let out = '';
      child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
      const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
      const total = Date.now() - t0;
      const result = JSON.parse(out.trim().split('\n').pop() ?? '{}') as { endMs: number; codes: string[] };
      console.log(`# shutdown during an outage: end() took ${result.endMs} ms; waiters got ${[...new Set(result.codes)].join(',')}; process exited after ${total} ms in all`);
      assert.equal(code, 0);
      assert.ok(result.endMs < 1000, `end() took ${result.endMs} ms`);
      assert.deepEqual([...new Set(result.codes)], [ErrorCodes.POOL_ENDED]);
      assert.ok(total < 1500 + 3000, 'the process exits once end() resolved: no timer or socket left');
    } finally {
      await f.proxy.pass();
    }
  });
});
