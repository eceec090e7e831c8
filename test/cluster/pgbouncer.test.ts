import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  clusterStatus, killPgbouncer, killPrimary, pausePgbouncer, pgbouncerConnectionConfig, resumePgbouncer,
  startNode, startPgbouncer, stopPostgresPrimary, switchover, waitHealthy,
} from '../helpers/cluster.ts';
import { prepareCluster, runScenario, sleep, type ScenarioResult, type WorkloadResult } from './workload.ts';

const TABLE = 'pgr_pgbouncer_kv';
const RATE = 25; // requests per second per pool
const PAUSE_MS = 3000;

/** One line per pool with every error's code and message (PgBouncer sends several under 08P01). */
function errorLines(name: string, r: ScenarioResult): void {
  for (const w of [r.ours, r.raw] as WorkloadResult[]) {
    for (const [msg, n] of Object.entries(w.errorMessages)) console.log(`[scenario] ${name.padEnd(22)} ${w.name.padEnd(13)} error ×${n}: ${msg}`);
  }
}

/**
 * Issue 16: the same steady workload as failover.test.ts, but through PgBouncer (127.0.0.1:6432,
 * transaction pooling, in front of HAProxy's read-write port, as the Zalando operator's pooler
 * sits in front of the primary's Service). The application's connections end at PgBouncer, which
 * usually keeps them while its own server connections die, and answers with its own errors. Each
 * scenario runs pg-resilient's Pool and a raw pg.Pool through the same PgBouncer; pg-resilient
 * must show no application error, and the control shows what it protects against.
 */
describe('Patroni cluster: failover scenarios through PgBouncer', () => {
  const scenario = async (name: string, fault: () => Promise<unknown>, settleMs: number, holdInFlightMs?: number): Promise<ScenarioResult> => {
    const r = await runScenario(name, fault, settleMs, { connection: pgbouncerConnectionConfig(), table: TABLE, ratePerSec: RATE, applicationName: 'pgr-pgbouncer-test', holdInFlightMs });
    errorLines(name, r);
    return r;
  };

  before(async () => {
    // A PgBouncer left killed or paused by an interrupted run is brought back first.
    const s0 = await clusterStatus();
    if (s0.pgbouncer?.answering !== true) await startPgbouncer();
    await resumePgbouncer();
    await prepareCluster(TABLE);
    const s = await clusterStatus();
    console.log(`[cluster] backend=${s.backend} leader=${s.leader} pgbouncer=${JSON.stringify(s.pgbouncer)}`);
  });

  test('planned switchover behind PgBouncer', async () => {
    const r = await scenario('pgb switchover', () => switchover(), 8000);
    assert.equal(r.ours.errors, 0, JSON.stringify(r.ours.errorMessages));
    assert.ok(r.raw.errors > 0, 'the control (raw pg.Pool) must see the switchover through PgBouncer');
    await waitHealthy(120_000);
  });

  test("the primary's container killed behind PgBouncer", async () => {
    let killed: string | undefined;
    try {
      const r = await scenario('pgb kill-primary', async () => {
        const k = await killPrimary();
        killed = k.killed;
        return k;
      }, 20000, 4000);
      assert.equal(r.ours.errors, 0, JSON.stringify(r.ours.errorMessages));
      assert.equal(r.inFlight?.ours, 'ok', 'pg-resilient re-ran the idempotent read after the kill');
      // PgBouncer holds the paced requests while it cannot reach a primary (the control stalls
      // with them rather than failing), but a statement running on the killed primary is lost.
      assert.match(r.inFlight?.raw ?? '', /^failed/, 'the control (raw pg.Pool) loses its statement in flight');
    } finally {
      if (killed !== undefined) await startNode(killed);
      await waitHealthy(120_000);
    }
  });

  test('only PostgreSQL on the primary killed, behind PgBouncer', async () => {
    const r = await scenario('pgb stop-postgres', () => stopPostgresPrimary(), 10000, 2000);
    assert.equal(r.ours.errors, 0, JSON.stringify(r.ours.errorMessages));
    assert.equal(r.inFlight?.ours, 'ok', 'pg-resilient re-ran the idempotent read after the crash');
    assert.match(r.inFlight?.raw ?? '', /^failed/, 'the control (raw pg.Pool) loses its statement in flight');
    await waitHealthy(120_000);
  });

  test("PgBouncer's pod deleted and started again", async () => {
    const r = await scenario('pgb restart', async () => {
      const k = await killPgbouncer();
      await sleep(2000); // the pod rescheduled: PgBouncer absent for a while
      const s = await startPgbouncer();
      return { killedAt: k.at, readyAt: s.readyAt, absentMs: s.readyAt - k.at };
    }, 5000);
    assert.equal(r.ours.errors, 0, JSON.stringify(r.ours.errorMessages));
    assert.ok(r.raw.errors > 0, 'the control (raw pg.Pool) must see PgBouncer go away');
  });

  test('PgBouncer PAUSEd for 3 s, then RESUMEd', async () => {
    const r = await scenario('pgb pause', async () => {
      const p = await pausePgbouncer();
      await sleep(PAUSE_MS);
      const q = await resumePgbouncer();
      return { pausedAt: p.pausedAt, resumedAt: q.at, pausedMs: q.at - p.pausedAt };
    }, 4000);
    assert.equal(r.ours.errors, 0, JSON.stringify(r.ours.errorMessages));
    // PAUSE holds queries, it fails none: the control shows the stall, not errors.
    assert.equal(r.raw.errors, 0, JSON.stringify(r.raw.errorMessages));
    assert.ok(r.raw.maxLatencyMs >= PAUSE_MS * 0.8, `the control waited through the pause (longest ${r.raw.maxLatencyMs} ms)`);
  });

  after(async () => {
    await resumePgbouncer().catch(() => undefined);
    const s = await clusterStatus().catch(() => undefined);
    if (s?.pgbouncer?.answering !== true) await startPgbouncer().catch(() => undefined);
    await waitHealthy(120_000).catch(() => undefined);
  });
});
