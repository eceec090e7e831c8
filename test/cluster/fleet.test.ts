import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import pg from 'pg';
import { killPrimary, runCluster, rwConnectionConfig, startNode, switchover, waitHealthy } from '../helpers/cluster.ts';
import { CONNECT_GATE_DEFAULTS } from '../../src/policy/connect-gate-options.ts';
import { startFleet, totals, type Fleet, type FleetChildStats, type FleetTotals } from '../helpers/fleet.ts';

// Issue #18: a failover seen by a fleet. N simulated pods (child processes), each with its own
// pool of max 8 under a steady load, all through HAProxy's read-write port, while the primary
// is killed and switched over; max_connections is set so that the fleet's sum of `max` fits
// with little headroom (and, in the long form, 30 below it). The same fleet of raw pg.Pools is
// the control. Measured: application errors, 53300 seen by the pods and logged by the server,
// connection attempts per second at the new primary (log_connections), time from promotion
// until every pod serves again, the longest request, and per pod the connection attempts in flight
// at once (the same instrumented pg.Client in both fleets).
//
// CI runs the short form (8 pods); FLEET_LONG=1 (npm run fleet) runs 24 pods and both
// max_connections variants.

const LONG = process.env['FLEET_LONG'] === '1';
const PODS = LONG ? 24 : 8;
const POOL_MAX = 8;
const RESERVED = 3; // superuser_reserved_connections (PostgreSQL's default)
const OTHERS = 2; // superuser sessions on the primary besides ours: Patroni's, and the test's monitor
const ROLE = 'fleet_app';
const ROLE_PASSWORD = 'fleet-app-pw-18';
const WARM_MS = 3000;
const AFTER_RECOVERY_MS = 3000;

interface Variant {
  readonly name: string;
  /** Connections the pods' role may hold: the fleet's sum of `max` plus this (may be negative). */
  readonly headroom: number;
}

const VARIANTS: readonly Variant[] = LONG
  ? [{ name: 'fits, little headroom', headroom: 4 }, { name: '30 below the sum', headroom: -30 }]
  : [{ name: 'fits, little headroom', headroom: 4 }];

interface PhaseResult {
  readonly kind: 'resilient' | 'raw';
  readonly scenario: string;
  readonly variant: string;
  readonly maxConnections: number;
  readonly totals: FleetTotals;
  readonly newPrimary: string;
  /** Most connection attempts at the new primary within any 1 s, and within any 100 ms. */
  readonly attemptsPeakPerSecond: number;
  readonly attemptsPeakPer100ms: number;
  readonly attempts: number;
  readonly serverTooMany: number;
  /** From promotion until the last pod served again (ms); Infinity when one never did. */
  readonly allServingAfterMs: number;
}

const results: PhaseResult[] = [];

/** When each pod served again after `at`: the end of its gap spanning `at`, else `at` itself. */
function servingAgainAfter(stats: readonly FleetChildStats[], at: number): number {
  let latest = 0;
  for (const s of stats) {
    if (s.lastOkAt < at) return Infinity;
    const gap = s.gaps.find(([from, to]) => from <= at && to > at);
    latest = Math.max(latest, gap === undefined ? 0 : gap[1] - at);
  }
  return latest;
}

interface LogStats {
  attempts: number;
  tooMany: number;
  peakPerSecond: number;
  peakPer100ms: number;
}

async function runPhase(kind: 'resilient' | 'raw', scenario: 'kill-primary' | 'switchover', variant: Variant, maxConnections: number): Promise<PhaseResult> {
  await waitHealthy(180_000);
  const { host, port, database } = rwConnectionConfig();
  let fleet: Fleet | undefined;
  try {
    fleet = await startFleet({
      kind,
      pods: PODS,
      pool: (pod) => ({
        host, port, database, user: ROLE, password: ROLE_PASSWORD,
        max: POOL_MAX,
        application_name: `fleet-${kind}-${pod}`,
        // A kill-primary leaves no primary for ~10 s (Patroni's ttl) plus HAProxy's checks.
        retry: { maxElapsedMs: 30_000 },
      }),
      // Eight loops of a 10 ms statement with ~30 ms between: about two connections busy per pod.
      workers: 8,
      query: 'SELECT pg_sleep(0.01)',
      thinkMs: 30,
    });
    fleet.start();
    await sleep(WARM_MS);
    let at: number;
    let promotedAt: number;
    let newPrimary: string;
    let killed: string | undefined;
    fleet.mark();
    if (scenario === 'kill-primary') {
      const k = await killPrimary(true);
      at = k.at;
      promotedAt = k.at + (k.failoverMs ?? 0);
      newPrimary = k.newLeader ?? '?';
      killed = k.killed;
    } else {
      const s = await switchover();
      at = s.at;
      promotedAt = s.completedAt;
      newPrimary = s.to;
    }
    // Every pod serving again (a success after the promotion), bounded.
    const until = Date.now() + 60_000;
    while (Date.now() < until) {
      const latest = fleet.latest();
      if (latest.length === PODS && latest.every((s) => s.lastOkAt > promotedAt)) break;
      await sleep(250);
    }
    await sleep(AFTER_RECOVERY_MS);
    const stats = await fleet.stop();
    const stoppedAt = Date.now();
    assert.equal(stats.length, PODS, 'every pod reported');
    const log = await runCluster<LogStats>(['log-stats', newPrimary, '--since', String(at), '--until', String(stoppedAt)], 120_000);
    if (killed !== undefined) await startNode(killed);
    const r: PhaseResult = {
      kind, scenario, variant: variant.name, maxConnections, totals: totals(stats), newPrimary,
      attemptsPeakPerSecond: log.peakPerSecond, attemptsPeakPer100ms: log.peakPer100ms, attempts: log.attempts, serverTooMany: log.tooMany,
      allServingAfterMs: servingAgainAfter(stats, promotedAt),
    };
    results.push(r);
    console.log(line(r));
    if (r.totals.errors > 0) console.log(`#   ${kind} errors: ${JSON.stringify(r.totals.errorsByCode)}; e.g. ${r.totals.firstErrors[0] ?? ''}`);
    return r;
  } finally {
    fleet?.kill();
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function line(r: PhaseResult): string {
  const t = r.totals;
  const serving = Number.isFinite(r.allServingAfterMs) ? `${(r.allServingAfterMs / 1000).toFixed(1)} s` : 'never';
  return `# fleet ${r.kind.padEnd(9)} ${r.scenario.padEnd(12)} max_connections ${r.maxConnections}: calls ok ${t.ok}, app errors ${t.errors} (${t.podsWithErrors}/${t.pods} pods), 53300 seen by pods ${t.busyConnects} (whole phase) / logged by the new primary ${r.serverTooMany} (since the fault), attempts at new primary ${r.attempts} (at most ${r.attemptsPeakPerSecond} in 1 s, ${r.attemptsPeakPer100ms} in 100 ms), all pods serving ${serving} after promotion, longest request ${t.longestMs} ms, breaker opened ${t.breakerOpened}; in one pod at most ${t.mostConnecting} connection attempts in flight at once (${t.mostConnectingSinceFault} since the fault)`;
}

/** The README's table (markdown), from this run's figures. */
function table(): string {
  const rows = results.map((r) => {
    const t = r.totals;
    const serving = Number.isFinite(r.allServingAfterMs) ? `${(r.allServingAfterMs / 1000).toFixed(1)} s` : 'never';
    return `| ${r.variant} (${r.maxConnections}) | ${r.scenario} | ${r.kind === 'resilient' ? 'pg-resilient' : 'raw pg.Pool'} | ${t.errors} (${t.podsWithErrors}/${t.pods} pods) | ${t.busyConnects} / ${r.serverTooMany} | ${r.attemptsPeakPerSecond} / ${r.attemptsPeakPer100ms} | ${serving} | ${(t.longestMs / 1000).toFixed(1)} s |`;
  });
  return [
    '| max_connections | fault | fleet | application errors | 53300 seen by the pods (whole phase) / logged by the new primary (since the fault) | connection attempts at the new primary: most in 1 s / in 100 ms | every pod serving again after promotion | longest request |',
    '| --- | --- | --- | --- | --- | --- | --- | --- |',
    ...rows,
  ].join('\n');
}

describe(`fleet: ${PODS} pods × max ${POOL_MAX} through a failover (issue #18)`, () => {
  before(async () => {
    await waitHealthy(180_000);
    const admin = new pg.Client(rwConnectionConfig());
    await admin.connect();
    try {
      const exists = await admin.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [ROLE]);
      if (exists.rowCount === 0) await admin.query(`CREATE ROLE ${ROLE} LOGIN PASSWORD '${ROLE_PASSWORD}'`);
    } finally {
      await admin.end();
    }
  });

  after(async () => {
    // Back to the cluster's own settings (cluster/patroni.yml) for the other cluster tests.
    await runCluster(['set-params', '--max-connections', '200', '--log-connections', 'off'], 300_000).catch((e: Error) => console.log(`# fleet: restoring max_connections failed: ${e.message}`));
    if (results.length > 0) {
      console.log(`# fleet table (${PODS} pods, max ${POOL_MAX} each, sum ${PODS * POOL_MAX}):\n${table()}`);
      const out = process.env['FLEET_TABLE_FILE'];
      if (out !== undefined && out !== '') fs.writeFileSync(out, `${table()}\n`);
    }
  });

  for (const variant of VARIANTS) {
    const maxConnections = PODS * POOL_MAX + variant.headroom + RESERVED + OTHERS;
    test(`${variant.name}: max_connections ${maxConnections} for ${PODS * POOL_MAX} pooled connections; kill-primary and switchover with pg-resilient and raw pg.Pool fleets`, async () => {
      await runCluster(['set-params', '--max-connections', String(maxConnections), '--log-connections', 'on'], 300_000);
      for (const scenario of ['kill-primary', 'switchover'] as const) {
        const ours = await runPhase('resilient', scenario, variant, maxConnections);
        const raw = await runPhase('raw', scenario, variant, maxConnections);
        assert.equal(ours.totals.errors, 0, `${scenario}: no error reaches pg-resilient's application (${JSON.stringify(ours.totals.errorsByCode)})`);
        assert.ok(raw.totals.errors > 0, `${scenario}: the control (raw pg.Pool fleet) sees the failover`);
        // A raw pool opens a connection for every waiting caller at once; pg-resilient's pods two
        // at a time (the connect gate), through the failover too. Counted per pod by the same
        // instrumented pg.Client in both fleets. The server's log (attempts at the new primary in
        // 100 ms, printed) shows the fleet's burst only when the raw pods' callers happen to be
        // waiting together as the new primary appears: one CI run saw 8 where others saw ~48.
        const cap = CONNECT_GATE_DEFAULTS.maxInFlight;
        assert.ok(ours.totals.mostConnecting <= cap, `${scenario}: pg-resilient's pods had at most ${cap} connection attempts in flight at once (saw ${ours.totals.mostConnecting}; ${ours.totals.mostConnectingSinceFault} since the fault)`);
        // The control's burst counted since the fault (its pods' callers also start together, so
        // the whole phase would show a burst with no fault at all): its callers fail together and
        // reconnect at once, pg-resilient's go through the gate.
        assert.ok(raw.totals.mostConnectingSinceFault > cap, `${scenario}: the control (a raw pg.Pool) opens more than ${cap} connections at once after the fault (saw ${raw.totals.mostConnectingSinceFault} since the fault; ${raw.totals.mostConnecting} over the phase)`);
      }
    });
  }
});
