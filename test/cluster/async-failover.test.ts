// Issue 25, item 4: a failover under asynchronous replication loses acknowledged commits. With
// Patroni's synchronous_mode off (as Zalando's, CloudNativePG's and Crunchy's clusters run by
// default) and the leader's WAL senders frozen, the primary keeps acknowledging commits the
// replicas never receive; it is then killed, a replica is promoted on a new timeline that forks
// before those commits, and they are gone. A raw pg.Pool (through HAProxy) is the control: it
// loses acknowledged writes without a word. pg-resilient with `lostCommits: true` must report
// every one of them (`lostCommits` events: count and labels equal to the rows actually missing),
// in Patroni mode without any error reaching the application; multi-host mode is checked alike.
// Transactions in flight at the kill (their COMMIT in doubt): none may be reported committed
// while absent from the new primary unless it was reported lost.
//
// One failover serves every check (the before hook); each test asserts one claim on its figures.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { Pool, type LostCommitsEvent, type PoolOptions } from '../../src/index.ts';
import {
  CLUSTER_DATABASE, CLUSTER_PASSWORD, CLUSTER_USER, NODES, PATRONI_URLS, freezeSenders, killPrimary, rwConnectionConfig,
  setReplication, startNode, thawSenders, waitHealthy, type KillResult,
} from '../helpers/cluster.ts';
import { sleep } from './workload.ts';

const TABLE = 'pgr_async_ledger';
const SINGLES_PER_SEC = 10; // labelled single-row inserts per pool
const TX_PER_SEC = 4; // labelled transactions per pg-resilient pool
const COMMIT_MS = 500; // how long each of those transactions' COMMIT runs
const WARM_MS = 2000;
const FROZEN_BEFORE_KILL_MS = 1500;
const AFTER_PROMOTION_MS = 4000;
const DEADLINE_MS = 40_000; // Patroni's ttl (10 s) + HAProxy's checks + slack


const credentials = { user: CLUSTER_USER, password: CLUSTER_PASSWORD, database: CLUSTER_DATABASE };
const hosts = NODES.map((n) => `${n.host}:${n.port}`);
const RESILIENT_MODES = {
  patroni: { ...credentials, hosts, targetSessionAttrs: 'read-write', patroni: { urls: [...PATRONI_URLS] } },
  'multi-host': { ...credentials, hosts, targetSessionAttrs: 'read-write' },
} satisfies Record<string, PoolOptions>;
type Mode = keyof typeof RESILIENT_MODES;

interface Call { label: string; kind: 'single' | 'tx'; start: number; end: number; ok: boolean; error?: string }

interface Tally {
  calls: Call[];
  events: LostCommitsEvent[];
  /** COMMITs whose connection was lost, by the outcome pg-resilient learned (commitResolved). */
  resolved: Record<string, number>;
}

/** An open-loop load (a call every 1000/rate ms whatever the others do) until stopped. */
function load(rate: number, fire: (n: number) => Promise<void>): { stop(): Promise<void> } {
  const inFlight = new Set<Promise<void>>();
  let n = 0;
  const timer = setInterval(() => {
    n += 1;
    const p = fire(n).finally(() => inFlight.delete(p));
    inFlight.add(p);
  }, 1000 / rate);
  return {
    async stop() {
      clearInterval(timer);
      await Promise.all([...inFlight]);
    },
  };
}

function record(t: Tally, label: string, kind: Call['kind'], work: () => Promise<unknown>): Promise<void> {
  const start = Date.now();
  // Through a promise, so that a call that throws at once is counted as an error like any other.
  return Promise.resolve().then(work).then(
    () => { t.calls.push({ label, kind, start, end: Date.now(), ok: true }); },
    (err: { code?: string; message?: string }) => {
      t.calls.push({ label, kind, start, end: Date.now(), ok: false, error: `${err.code ?? ''} ${err.message ?? String(err)}`.trim().slice(0, 160) });
    },
  );
}

const INSERT = `INSERT INTO ${TABLE} (label, pool, kind) VALUES ($1, $2, $3) ON CONFLICT (label) DO NOTHING`;

interface Figures {
  acknowledged: number;
  missing: string[];
  reported: number;
  reportedLabels: string[];
  errors: number;
  errorKinds: Record<string, number>;
  inDoubt: { inFlight: number; reportedCommitted: number; present: number; absentUnreported: string[] };
}

function figures(name: string, t: Tally, present: ReadonlySet<string>, killAt: number): Figures {
  const acked = t.calls.filter((c) => c.ok);
  const missing = acked.filter((c) => !present.has(c.label)).map((c) => c.label).sort();
  const reportedLabels = t.events.flatMap((e) => e.commits.map((c) => c.label ?? `(no label, lsn ${c.lsn})`)).sort();
  const reportedSet = new Set(reportedLabels);
  const errorKinds: Record<string, number> = {};
  for (const c of t.calls) if (!c.ok) errorKinds[c.error ?? '?'] = (errorKinds[c.error ?? '?'] ?? 0) + 1;
  // In doubt: a transaction running when the primary was killed (its COMMIT may have been in flight).
  const inFlight = t.calls.filter((c) => c.kind === 'tx' && c.start <= killAt && c.end >= killAt);
  const committed = inFlight.filter((c) => c.ok);
  const f: Figures = {
    acknowledged: acked.length,
    missing,
    reported: t.events.reduce((s, e) => s + e.count, 0),
    reportedLabels,
    errors: t.calls.filter((c) => !c.ok).length,
    errorKinds,
    inDoubt: {
      inFlight: inFlight.length,
      reportedCommitted: committed.length,
      present: committed.filter((c) => present.has(c.label)).length,
      absentUnreported: committed.filter((c) => !present.has(c.label) && !reportedSet.has(c.label)).map((c) => c.label),
    },
  };
  const forks = t.events.map((e) => `timeline ${e.oldTimeline}→${e.newTimeline} at ${e.forkLsn}: ${e.count}`).join('; ');
  console.log(`[async-failover] ${name.padEnd(25)} acknowledged ${f.acknowledged}, missing on the new primary ${missing.length}, reported lost ${f.reported}${forks === '' ? '' : ` (${forks})`}, application errors ${f.errors}${f.errors > 0 ? ` ${JSON.stringify(errorKinds)}` : ''}`);
  if (inFlight.length > 0) console.log(`[async-failover] ${name.padEnd(25)} transactions in flight at the kill ${inFlight.length}: reported committed ${committed.length}, present ${f.inDoubt.present}, absent and not reported lost ${f.inDoubt.absentUnreported.length}; COMMITs resolved after a lost connection ${JSON.stringify(t.resolved)}`);
  return f;
}

describe('Patroni cluster, asynchronous replication: kill-primary with the replicas behind', () => {
  const results = new Map<string, Figures>();
  let kill: KillResult | undefined;
  let frozenAt = 0;

  before(async () => {
    await waitHealthy(120_000);
    const admin = new pg.Client(rwConnectionConfig());
    await admin.connect();
    await admin.query(`DROP TABLE IF EXISTS ${TABLE}; CREATE TABLE ${TABLE} (label text PRIMARY KEY, pool text NOT NULL, kind text NOT NULL, at timestamptz NOT NULL DEFAULT now())`);
    // A transaction's COMMIT takes COMMIT_MS (a deferred trigger runs at COMMIT, before its
    // record is written), so that some COMMITs are in flight when the primary is killed: their
    // outcome is in doubt, and the new primary, on a timeline forked before them, has not seen
    // their transaction ids (it may give them to others).
    await admin.query(`CREATE OR REPLACE FUNCTION ${TABLE}_slow_commit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(${COMMIT_MS / 1000}); RETURN NULL; END $$;
      CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT ON ${TABLE} DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (NEW.kind = 'tx') EXECUTE FUNCTION ${TABLE}_slow_commit()`);
    await admin.end();
    const repl = await setReplication('async');
    console.log(`[async-failover] replication async on ${repl.leader} in ${repl.tookMs} ms: ${repl.senders.map((s) => `${s.replica} ${s.syncState}`).join(', ')}`);

    const raw = new pg.Pool({ ...rwConnectionConfig(), max: 8 });
    // pg.Pool leaves errors of checked-out clients without a listener (node-postgres #2439).
    raw.on('error', () => undefined);
    raw.on('connect', (client) => client.on('error', () => undefined));
    const tallies = new Map<string, Tally>([['raw pg.Pool (HAProxy)', { calls: [], events: [], resolved: {} }]]);
    const pools = new Map<Mode, Pool>();
    for (const [mode, options] of Object.entries(RESILIENT_MODES) as Array<[Mode, PoolOptions]>) {
      const pool = new Pool({ ...options, lostCommits: true, max: 8, retry: { maxElapsedMs: DEADLINE_MS }, application_name: `pgr-async-${mode}` });
      const t: Tally = { calls: [], events: [], resolved: {} };
      pool.on('commitResolved', (e) => { t.resolved[e.outcome] = (t.resolved[e.outcome] ?? 0) + 1; });
      pool.on('lostCommits', (e) => {
        t.events.push(e);
        console.log(`[async-failover] ${mode}: lostCommits count=${e.count} timeline ${e.oldTimeline}→${e.newTimeline} fork ${e.forkLsn}`);
      });
      tallies.set(`pg-resilient (${mode})`, t);
      pools.set(mode, pool);
    }
    const loads: Array<{ stop(): Promise<void> }> = [];
    try {
      await Promise.all([raw.query('SELECT 1'), ...[...pools.values()].map((p) => p.query('SELECT 1'))]);
      const rawTally = tallies.get('raw pg.Pool (HAProxy)')!;
      loads.push(load(SINGLES_PER_SEC, (n) => record(rawTally, `raw-s-${n}`, 'single', () => raw.query(INSERT, [`raw-s-${n}`, 'raw', 'single']))));
      for (const [mode, pool] of pools) {
        const t = tallies.get(`pg-resilient (${mode})`)!;
        loads.push(load(SINGLES_PER_SEC, (n) => {
          const label = `${mode}-s-${n}`;
          const config = { text: INSERT, values: [label, mode, 'single'], idempotent: true, label };
          return record(t, label, 'single', () => pool.query(config));
        }));
        loads.push(load(TX_PER_SEC, (n) => {
          const label = `${mode}-t-${n}`;
          return record(t, label, 'tx', () => pool.withLabel(label, () => pool.transaction(async (c) => {
            await c.query(INSERT, [label, mode, 'tx']);
          })));
        }));
      }
      await sleep(WARM_MS);
      const f = await freezeSenders();
      frozenAt = f.at;
      console.log(`[async-failover] froze ${f.node}'s WAL senders to ${f.frozen.map((x) => x.replica).join(', ')}`);
      await sleep(FROZEN_BEFORE_KILL_MS);
      kill = await killPrimary(true);
      console.log(`[async-failover] killed ${kill.killed}; ${kill.newLeader} promoted ${kill.failoverMs} ms after the kill`);
      await sleep(AFTER_PROMOTION_MS);
    } finally {
      await Promise.all(loads.map((l) => l.stop()));
      // The pools learn of the new timeline on their connections to the new primary: a moment more.
      await Promise.all([...pools.values()].map((p) => p.query('SELECT 1').catch(() => undefined)));
      await sleep(1000);
      for (const p of pools.values()) await p.end().catch(() => undefined);
      await raw.end().catch(() => undefined);
    }
    const reader = new pg.Client(rwConnectionConfig());
    await reader.connect();
    const present = new Set((await reader.query<{ label: string }>(`SELECT label FROM ${TABLE}`)).rows.map((r) => r.label));
    await reader.end();
    console.log(`[async-failover] ${present.size} rows on the new primary; senders frozen ${kill.at - frozenAt} ms before the kill; promotion ${kill.failoverMs} ms after it`);
    for (const [name, t] of tallies) results.set(name, figures(name, t, present, kill.at));
  });

  after(async () => {
    // Back to the cluster's own settings for the other cluster tests: senders running (a killed
    // node has none left), the old primary rejoined (pg_rewind), synchronous replication.
    await thawSenders().catch((e: Error) => console.log(`[async-failover] thaw: ${e.message}`));
    if (kill !== undefined) await startNode(kill.killed).catch((e: Error) => console.log(`[async-failover] start ${kill?.killed}: ${e.message}`));
    const started = Date.now();
    await setReplication('sync').catch((e: Error) => console.log(`[async-failover] replication sync: ${e.message}`));
    await waitHealthy(180_000);
    console.log(`[async-failover] cluster healed (sync replication, ${kill?.killed ?? 'the old primary'} rejoined) in ${Date.now() - started} ms`);
  });

  test('the control: a raw pg.Pool loses acknowledged writes and reports nothing', () => {
    const r = results.get('raw pg.Pool (HAProxy)');
    assert.ok(r !== undefined, 'the scenario ran');
    assert.ok(r.missing.length > 0, `acknowledged writes missing after the failover: ${r.missing.length} (the failure the test exists to show)`);
    assert.equal(r.reported, 0, 'a raw pg.Pool has no way to tell');
  });

  for (const mode of Object.keys(RESILIENT_MODES) as Mode[]) {
    test(`pg-resilient (${mode}): every acknowledged commit missing after the failover is reported, and nothing else`, () => {
      const r = results.get(`pg-resilient (${mode})`);
      assert.ok(r !== undefined, 'the scenario ran');
      assert.ok(r.missing.length > 0, 'the failover lost acknowledged writes here too (the scenario hit)');
      assert.equal(r.reported, r.missing.length, `lostCommits counted ${r.reported}, missing ${r.missing.length}`);
      // No acknowledged write missing without being reported, none reported that is there.
      assert.deepEqual(r.reportedLabels, r.missing);
    });

    test(`pg-resilient (${mode}): no transaction in flight at the kill is reported committed while absent`, () => {
      const r = results.get(`pg-resilient (${mode})`);
      assert.ok(r !== undefined, 'the scenario ran');
      assert.ok(r.inDoubt.inFlight > 0, 'transactions were in flight at the kill (the scenario hit)');
      assert.deepEqual(r.inDoubt.absentUnreported, [], 'reported committed, absent from the new primary, not reported lost');
    });
  }

  test('pg-resilient (patroni): no error reaches the application', () => {
    const r = results.get('pg-resilient (patroni)');
    assert.ok(r !== undefined, 'the scenario ran');
    assert.equal(r.errors, 0, JSON.stringify(r.errorKinds));
  });
});
