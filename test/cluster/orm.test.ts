// The ORM tier on the Patroni cluster (issue #14): Kysely 0.28 and TypeORM 1.1, each wired the way
// its documentation wires a pg pool (test/orm/adapters/), read by primary key and upsert (inside
// idempotent(fn)) from 8 loops each, through HAProxy's read-write port, while (1) the primary's
// container is killed and (2) the primary is switched over. Both ORMs run at once in one fault,
// each on pg-resilient and on raw pg (the control), four child processes in all, so a crash of the
// control is seen as a crash and ends only its own run.
//
// The claim: no error reaches the application on pg-resilient and nothing crashes; the raw control
// feels each fault (errors or a crash), or the fault proved nothing. Both ORMs run every statement
// on a client checked out with pool.connect(): this is the Session's test on a real failover.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { ROWS, type PoolKind } from '../orm/adapter.ts';
import { formatLine, KINDS, runOrms, type PoolLine, type Target, type Timing } from '../orm/harness.ts';
import { killPrimary, rwConnectionConfig, startNode, switchover, waitHealthy } from '../helpers/cluster.ts';

const ORMS = ['kysely', 'typeorm'] as const;
// A kill-primary failover takes Patroni's ttl (10 s) plus a loop_wait and HAProxy's check: the
// retry deadline must outlast it, as in the other cluster tests.
const POOL_OPTIONS = { retry: { maxElapsedMs: 25_000 } };
// The kill verb returns once a replica is promoted; after it, HAProxy needs a check (1 s) to send
// traffic there, and recovery must show in the figures before the children stop. A request still
// retrying at 'stop' may need its whole deadline, hence the exit timeout.
const KILL_TIMING: Timing = { faultAtMs: 2000, runMs: 6000, afterFaultMs: 6000, exitTimeoutMs: 30_000 };
const SWITCHOVER_TIMING: Timing = { faultAtMs: 2000, runMs: 6000, afterFaultMs: 5000, exitTimeoutMs: 30_000 };
const HEALTHY_TIMEOUT_MS = 120_000;

const tableFor = (orm: string, kind: PoolKind): string => `pgr_orm_cluster_${orm}_${kind}`;

function clusterTarget(fault: () => Promise<string>): Target {
  return { conn: rwConnectionConfig(), poolOptions: POOL_OPTIONS, table: tableFor, fault: () => fault() };
}

/** What must hold for one fault's lines; the empty list when it does. */
function problemsOf(lines: readonly PoolLine[]): string[] {
  const problems: string[] = [];
  for (const l of lines) {
    const at = `${l.orm} ${l.fault}`;
    if (l.kind === 'resilient') {
      if (l.setupFailed !== undefined) problems.push(`${at}: pg-resilient not in use: ${l.setupFailed}`);
      else if (l.crashed) problems.push(`${at}: pg-resilient run crashed (${l.crash ?? '?'})`);
      else if (l.errorCount > 0) problems.push(`${at}: ${l.errorCount} errors reached the application on pg-resilient: ${JSON.stringify(l.errors)}`);
      else if (l.requests < 200 || l.okAfterLastError < 50) problems.push(`${at}: pg-resilient run barely ran (${l.requests} requests, ${l.okAfterLastError} after the last error)`);
    } else if (l.setupFailed !== undefined) {
      problems.push(`${at}: raw control did not run: ${l.setupFailed}`);
    } else if (!l.crashed && l.errorCount === 0) {
      problems.push(`${at}: the raw control saw no error: the fault did not hit`);
    }
  }
  return problems;
}

describe('Patroni cluster: Kysely and TypeORM through kill-primary and switchover, pg-resilient vs raw pg', () => {
  const all: PoolLine[] = [];
  const t0 = Date.now();

  before(async () => {
    await waitHealthy(HEALTHY_TIMEOUT_MS);
    const c = new pg.Client(rwConnectionConfig());
    await c.connect();
    try {
      for (const orm of ORMS) {
        for (const kind of KINDS) {
          const t = tableFor(orm, kind);
          await c.query(`DROP TABLE IF EXISTS ${t}; CREATE TABLE ${t} (id int PRIMARY KEY, name text NOT NULL);` +
            ` INSERT INTO ${t} SELECT g, 'row ' || g FROM generate_series(1, ${ROWS}) g`);
        }
      }
    } finally {
      await c.end();
    }
  });

  after(async () => {
    console.log(`# ORM cluster summary (orm, pool, fault, requests, errors by kind, crashed, longest), ${Math.round((Date.now() - t0) / 1000)} s in all`);
    for (const l of all) console.log(`# ${formatLine(l)}`);
    await waitHealthy(HEALTHY_TIMEOUT_MS).catch(() => undefined);
  });

  const run = async (fault: string, hit: () => Promise<string>, timing: Timing): Promise<void> => {
    const started = Date.now();
    const lines = await runOrms(clusterTarget(hit), ORMS, fault, timing);
    for (const l of lines) console.log(`# ${formatLine(l)}`);
    console.log(`# ${fault}: ${Math.round((Date.now() - started) / 1000)} s`);
    all.push(...lines);
    const problems = problemsOf(lines);
    assert.deepEqual(problems, [], problems.join('\n'));
  };

  test("kill-primary: the primary's container killed, a replica promoted", async () => {
    let killed: string | undefined;
    try {
      await run('kill-primary', async () => {
        const k = await killPrimary(true);
        killed = k.killed;
        return `killed ${k.killed}, ${k.newLeader ?? '?'} leader after ${k.failoverMs ?? '?'} ms`;
      }, KILL_TIMING);
    } finally {
      // The next fault needs the whole cluster: the killed node rejoins as a replica.
      if (killed !== undefined) await startNode(killed);
      await waitHealthy(HEALTHY_TIMEOUT_MS);
    }
  });

  test('switchover: the primary stopped fast and demoted, the sync standby promoted', async () => {
    try {
      await run('switchover', async () => {
        const s = await switchover();
        return `${s.from} -> ${s.to} in ${s.tookMs} ms`;
      }, SWITCHOVER_TIMING);
    } finally {
      await waitHealthy(HEALTHY_TIMEOUT_MS);
    }
  });
});
