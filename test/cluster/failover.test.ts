import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { Pool } from '../../src/index.ts';
import { clusterStatus, killPrimary, rwConnectionConfig, startNode, stopPostgresPrimary, switchover, waitHealthy } from '../helpers/cluster.ts';
import { prepareCluster, scenarioLine, sleep, startWorkload, type WorkloadResult } from './workload.ts';

const TABLE = 'pgr_failover_kv';
const RATE = 25; // requests per second per pool

/**
 * Issue 3: a steady workload through HAProxy (127.0.0.1:5000) while the primary is switched
 * over, killed, has only its PostgreSQL killed, and rejoins. pg-resilient must show zero
 * application-visible errors; the same workload on a raw pg.Pool is the control.
 */
describe('Patroni cluster: failover scenarios through HAProxy', () => {
  before(async () => {
    await prepareCluster(TABLE);
    const s = await clusterStatus();
    console.log(`[cluster] backend=${s.backend} leader=${s.leader} members=${s.members.map((m) => `${m.name}:${m.role}`).join(',')}`);
  });

  /**
   * `holdInFlight`: both pools also have a 2 s read running when the fault hits, so the control's
   * failure does not depend on whether one of its paced requests happened to be in flight.
   */
  async function scenario(name: string, fault: () => Promise<unknown>, settleMs: number, holdInFlight = false): Promise<{ ours: WorkloadResult; raw: WorkloadResult; inFlight: { ours: string; raw: string } | undefined }> {
    const ours = new Pool({ ...rwConnectionConfig(), max: 8, retry: { maxElapsedMs: 30_000 }, application_name: 'pgr-failover-test' });
    const raw = new pg.Pool({ ...rwConnectionConfig(), max: 8 });
    raw.on('error', () => undefined); // the control must not crash the test process
    const reports: string[] = [];
    ours.on('failoverReport', (r) => reports.push(r.summary));
    try {
      await Promise.all([ours.query('SELECT 1'), raw.query('SELECT 1')]);
      const a = startWorkload('pg-resilient', ours, { ratePerSec: RATE, table: TABLE });
      const b = startWorkload('raw pg.Pool', raw as never, { ratePerSec: RATE, table: TABLE });
      await sleep(3000);
      const outcome = (p: Promise<unknown>): Promise<string> => p.then(() => 'ok', (e: { code?: string; message?: string }) => `failed: ${e.code ?? e.message}`);
      const held = holdInFlight
        ? { ours: outcome(ours.query({ text: 'SELECT pg_sleep(2)', idempotent: true })), raw: outcome(raw.query('SELECT pg_sleep(2)')) }
        : undefined;
      if (held !== undefined) await sleep(300); // both statements are running on the primary
      const faultAt = performance.now();
      const info = await fault();
      console.log(`[cluster] ${name}: ${JSON.stringify(info)}`);
      await sleep(settleMs);
      const [ro, rr] = await Promise.all([a.stop(faultAt), b.stop(faultAt)]);
      console.log(scenarioLine(name, ro));
      console.log(scenarioLine(name, rr));
      for (const summary of reports) console.log(`[scenario] ${name.padEnd(22)} report: ${summary}`);
      const inFlight = held === undefined ? undefined : { ours: await held.ours, raw: await held.raw };
      if (inFlight !== undefined) console.log(`[scenario] ${name.padEnd(22)} 2 s read in flight at the fault: pg-resilient ${inFlight.ours}; raw pg.Pool ${inFlight.raw}`);
      return { ours: ro, raw: rr, inFlight };
    } finally {
      await ours.end();
      await raw.end().catch(() => undefined);
    }
  }

  test('planned switchover', async () => {
    const r = await scenario('switchover', () => switchover(), 8000);
    assert.equal(r.ours.errors, 0, JSON.stringify(r.ours.errorKinds));
    assert.ok(r.raw.errors > 0, 'the control (raw pg.Pool) must see the switchover');
    await waitHealthy(120_000);
  });

  let killed: string | undefined;
  test("the primary's container killed", async () => {
    const r = await scenario('kill-primary', async () => {
      const k = await killPrimary();
      killed = k.killed;
      return k;
    }, 20000);
    assert.equal(r.ours.errors, 0, JSON.stringify(r.ours.errorKinds));
    assert.ok(r.raw.errors > 0, 'the control (raw pg.Pool) must see the failover');
  });

  test('the killed node started again, rejoining as a replica', async () => {
    assert.ok(killed !== undefined, 'the kill scenario ran first');
    const r = await scenario('rejoin', () => startNode(killed!), 5000);
    assert.equal(r.ours.errors, 0, JSON.stringify(r.ours.errorKinds));
    const s = await waitHealthy(120_000);
    const member = s.members.find((m) => m.name === killed);
    assert.ok(member !== undefined && member.role !== 'leader', `${killed} rejoined as ${member?.role}`);
  });

  test('only PostgreSQL on the primary killed', async () => {
    const r = await scenario('stop-postgres-primary', () => stopPostgresPrimary(), 15000, true);
    assert.equal(r.ours.errors, 0, JSON.stringify(r.ours.errorKinds));
    // Patroni restarts PostgreSQL within about a second, so the paced control requests often all
    // miss the crash; a statement running through it cannot.
    assert.equal(r.inFlight?.ours, 'ok', 'pg-resilient re-ran the idempotent read after the crash');
    assert.match(r.inFlight?.raw ?? '', /^failed/, 'the control (raw pg.Pool) loses its statement in flight');
    await waitHealthy(120_000);
  });

  after(async () => {
    await waitHealthy(120_000).catch(() => undefined);
  });
});
