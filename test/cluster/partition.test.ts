import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { Pool } from '../../src/index.ts';
import { blackholePrimary, heal, rwConnectionConfig, waitHealthy } from '../helpers/cluster.ts';
import { prepareCluster, scenarioLine, sleep, startWorkload } from './workload.ts';

const TABLE = 'pgr_partition_kv';

/**
 * Issue 8 on the cluster: every packet to the primary's PostgreSQL port dropped (no reset).
 * Patroni keeps its lock (it talks to PostgreSQL over the unix socket), so this is a pure
 * client-side partition that lasts until `heal`: nothing fails over, connections just hang.
 */
describe('Patroni cluster: the primary blackholed', () => {
  before(async () => {
    await prepareCluster(TABLE);
  });
  after(async () => {
    await heal().catch(() => undefined);
    await waitHealthy(120_000).catch(() => undefined);
  });

  test('detected within 5 s, no call past its deadline, recovery when healed; raw pg.Pool hangs', async () => {
    const ours = new Pool({ ...rwConnectionConfig(), max: 6, retry: { maxElapsedMs: 20_000 } });
    const raw = new pg.Pool({ ...rwConnectionConfig(), max: 6 });
    raw.on('error', () => undefined);
    let firstRetryAt: number | undefined;
    ours.on('retry', () => { firstRetryAt ??= performance.now(); });
    try {
      await Promise.all([ours.query('SELECT 1'), raw.query('SELECT 1')]);
      const a = startWorkload('pg-resilient', ours, { ratePerSec: 20, table: TABLE });
      const b = startWorkload('raw pg.Pool', raw as never, { ratePerSec: 20, table: TABLE });
      await sleep(2000);
      const cutAt = performance.now();
      console.log(`[cluster] blackhole: ${JSON.stringify(await blackholePrimary())}`);
      await sleep(10_000);
      console.log(`[cluster] heal: ${JSON.stringify(await heal())}`);
      await sleep(6000);
      const [ro, rr] = await Promise.all([a.stop(cutAt), b.stop(cutAt)]);
      const detectionMs = firstRetryAt === undefined ? undefined : Math.round(firstRetryAt - cutAt);
      console.log(scenarioLine('blackhole 10 s', ro));
      console.log(scenarioLine('blackhole 10 s', rr));
      console.log(`[scenario] blackhole 10 s          dead connections detected after ${detectionMs} ms (target ≤ 5000); longest pg-resilient call ${ro.maxLatencyMs} ms (deadline 20000)`);
      assert.equal(ro.errors, 0, JSON.stringify(ro.errorKinds));
      assert.ok(detectionMs !== undefined && detectionMs <= 5000, `detected after ${detectionMs} ms`);
      assert.ok(ro.maxLatencyMs <= 20_000 + 1000, 'no call waits past its deadline');
      assert.ok(rr.maxLatencyMs >= 9000, 'the control (raw pg.Pool) hangs through the partition');
    } finally {
      await heal().catch(() => undefined);
      await ours.end();
      await raw.end().catch(() => undefined);
    }
  });
});
