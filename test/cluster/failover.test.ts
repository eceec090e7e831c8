import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { clusterStatus, killPrimary, rwConnectionConfig, startNode, stopPostgresPrimary, switchover, waitHealthy } from '../helpers/cluster.ts';
import { prepareCluster, runScenario, type ScenarioResult } from './workload.ts';

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

  const scenario = (name: string, fault: () => Promise<unknown>, settleMs: number, holdInFlight = false): Promise<ScenarioResult> =>
    runScenario(name, fault, settleMs, { connection: rwConnectionConfig(), table: TABLE, ratePerSec: RATE, applicationName: 'pgr-failover-test', holdInFlightMs: holdInFlight ? 2000 : undefined });

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
