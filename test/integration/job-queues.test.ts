// graphile-worker and pg-boss on our Pool through terminate-all and a `pg_ctl restart -m fast`
// (issue 26, item 7): every job completes, and no worker error is reported other than the LISTEN
// client's (graphile-worker holds one connection for LISTEN; losing it is its own event). A raw
// pg.Pool under the same faults is the control. Both libraries need Node ≥ 22: skipped on Node 20.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { Pool } from '../../src/index.ts';
import { startPgServer, type PgServer } from '../helpers/pg-server.ts';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const JOBS = 200;
const nodeMajor = Number(process.versions.node.split('.')[0]);
const skip = nodeMajor < 22 ? `graphile-worker and pg-boss need Node >= 22 (this is ${process.versions.node})` : false;

type AnyPool = Pool | pg.Pool;
interface Outcome { completed: number; executions: number; errors: Record<string, number>; leftInQueue: number; ms?: number }

const count = (errors: Record<string, number>, kind: string): void => {
  errors[kind] = (errors[kind] ?? 0) + 1;
};

/** terminate-all three times, a fast restart, terminate-all three times more, while the jobs run. */
async function faults(server: PgServer): Promise<void> {
  const terminateAll = (): Promise<unknown> => server.admin(
    `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND datname = $1`, [server.database]);
  for (let i = 0; i < 3; i += 1) {
    await sleep(150);
    await terminateAll();
  }
  await sleep(300);
  await server.restart('fast');
  for (let i = 0; i < 3; i += 1) {
    await sleep(150);
    await terminateAll();
  }
}

/**
 * Sorts what a library reported: its LISTEN client's troubles (graphile-worker holds one session
 * for LISTEN; only a session bound to its connection, as LISTEN binds it, emits 'error' on our
 * Pool: src/pool/session.ts), the pool's 'error' for idle connections that died (pg.Pool's
 * contract, kept for drop-in compatibility; nothing was running on them), and everything else:
 * worker errors (a job fetch, a completion, a job that failed).
 */
function byKind(errors: Record<string, number>): { listen: Record<string, number>; idle: Record<string, number>; worker: Record<string, number> } {
  const out = { listen: {} as Record<string, number>, idle: {} as Record<string, number>, worker: {} as Record<string, number> };
  for (const [k, n] of Object.entries(errors)) {
    const bucket = k === 'pool:listen:error' || /notify listener|UNLISTEN|active client generated error/.test(k) ? out.listen
      : /idle client generated error/.test(k) ? out.idle : out.worker;
    bucket[k] = n;
  }
  return out;
}

async function waitFor(done: () => Promise<boolean>, ms: number): Promise<void> {
  const until = Date.now() + ms;
  while (Date.now() < until && !(await done())) await sleep(100);
}

describe('job queues on our Pool through terminate-all and a fast restart', { skip }, () => {
  let server: PgServer;
  before(async () => {
    server = await startPgServer();
  });
  after(async () => {
    await server?.destroy();
  });

  async function graphile(pool: AnyPool, label: string, patienceMs: number): Promise<Outcome> {
    const { run, makeWorkerUtils, Logger } = await import('graphile-worker');
    const started = Date.now();
    const errors: Record<string, number> = {};
    const done = new Set<number>();
    let executions = 0;
    const logger = new Logger(() => (level: string, message: string) => {
      if (level === 'error') count(errors, `log: ${message.slice(0, 60)}`);
    });
    const utils = await makeWorkerUtils({ pgPool: pool as never, logger });
    await utils.migrate();
    await server.admin('DELETE FROM graphile_worker._private_jobs');
    for (let n = 0; n < JOBS; n += 1) await utils.addJob('t', { n });
    const runner = await run({
      pgPool: pool as never,
      concurrency: 4,
      pollInterval: 200,
      noHandleSignals: true,
      logger,
      taskList: {
        t: async (payload) => {
          executions += 1;
          await sleep(15);
          done.add((payload as { n: number }).n);
        },
      },
    });
    for (const kind of ['pool:listen:error', 'worker:getJob:error', 'job:error', 'worker:fatalError', 'pool:fatalError'] as const) {
      runner.events.on(kind, () => count(errors, kind));
    }
    const left = async (): Promise<number> => Number((await server.admin<{ n: string }>('SELECT count(*) AS n FROM graphile_worker._private_jobs'))[0]!.n);
    let leftInQueue = -1;
    try {
      await faults(server);
      await waitFor(async () => done.size === JOBS && (await left()) === 0, patienceMs);
      leftInQueue = await left();
    } finally {
      await runner.stop().catch((err: unknown) => count(errors, `stop: ${String(err).slice(0, 60)}`));
      await Promise.resolve().then(() => utils.release()).catch(() => undefined);
    }
    const outcome = { completed: done.size, executions, errors, leftInQueue, ms: Date.now() - started };
    console.log(`# graphile-worker on ${label}: ${JSON.stringify(outcome)}`);
    return outcome;
  }

  async function pgBoss(pool: AnyPool, label: string, patienceMs: number): Promise<Outcome> {
    const { PgBoss } = await import('pg-boss') as unknown as { PgBoss: new (o: unknown) => BossLike };
    const started = Date.now();
    const errors: Record<string, number> = {};
    const done = new Set<number>();
    let executions = 0;
    const boss = new PgBoss({
      db: { executeSql: (text: string, values?: unknown[]) => (pool as pg.Pool).query(text, values) },
      schema: 'pgboss',
      supervise: false,
      schedule: false,
    });
    boss.on('error', (err: unknown) => count(errors, `error: ${String((err as Error).message).slice(0, 60)}`));
    await boss.start();
    await boss.createQueue('q').catch(() => undefined);
    await server.admin('DELETE FROM pgboss.job');
    for (let n = 0; n < JOBS; n += 1) await boss.send('q', { n });
    await boss.work('q', { pollingIntervalSeconds: 0.5, batchSize: 2, localConcurrency: 4 }, async (jobs: Array<{ data: { n: number } }>) => {
      executions += jobs.length;
      await sleep(15);
      for (const j of jobs) done.add(j.data.n);
    });
    const left = async (): Promise<number> => Number((await server.admin<{ n: string }>(`SELECT count(*) AS n FROM pgboss.job WHERE name = 'q' AND state <> 'completed'`))[0]!.n);
    let leftInQueue = -1;
    try {
      await faults(server);
      await waitFor(async () => done.size === JOBS && (await left()) === 0, patienceMs);
      leftInQueue = await left();
    } finally {
      await boss.stop({ graceful: false, close: false, wait: true }).catch(() => undefined);
    }
    const outcome = { completed: done.size, executions, errors, leftInQueue, ms: Date.now() - started };
    console.log(`# pg-boss on ${label}: ${JSON.stringify(outcome)}`);
    return outcome;
  }

  for (const [name, runQueue] of [['graphile-worker', graphile], ['pg-boss', pgBoss]] as const) {
    test(`${name}: every job completes, no worker error but the LISTEN client's; raw pg.Pool control`, async () => {
      const ours = new Pool({ ...server.config, max: 6 });
      ours.on('error', () => undefined);
      let mine: Outcome;
      try {
        mine = await runQueue(ours, 'pg-resilient', 12_000);
      } finally {
        await ours.end();
      }
      const raw = new pg.Pool({ ...server.config, max: 6 });
      raw.on('error', () => undefined);
      let control: Outcome | undefined;
      let controlThrew: unknown;
      // On a raw pg.Pool graphile-worker lets some failures escape as unhandled rejections
      // (its batched job completion): counted as the control's errors, not left to fail the run.
      const runnerHandlers = process.listeners('unhandledRejection');
      process.removeAllListeners('unhandledRejection');
      const unhandled: string[] = [];
      const countUnhandled = (err: unknown): void => {
        unhandled.push(String((err as Error)?.message ?? err).slice(0, 60));
      };
      process.on('unhandledRejection', countUnhandled);
      try {
        control = await runQueue(raw, 'raw pg.Pool', 4_000);
      } catch (err) {
        controlThrew = err;
        console.log(`# ${name} on raw pg.Pool threw: ${String(err)}`);
      } finally {
        await raw.end().catch(() => undefined);
        await sleep(300);
        process.removeListener('unhandledRejection', countUnhandled);
        for (const h of runnerHandlers) process.on('unhandledRejection', h as (...a: unknown[]) => void);
      }
      if (unhandled.length > 0) console.log(`# ${name} on raw pg.Pool: ${unhandled.length} unhandled rejections ${JSON.stringify(unhandled.slice(0, 5))}`);
      const kinds = byKind(mine.errors);
      console.log(`# ${name} on pg-resilient, errors by kind: ${JSON.stringify(kinds)}; raw pg.Pool: ${JSON.stringify(control === undefined ? 'threw' : byKind(control.errors))}`);
      assert.equal(mine.completed, JOBS, 'every job ran');
      assert.equal(mine.leftInQueue, 0, 'every job is marked complete');
      assert.deepEqual(kinds.worker, {}, 'no worker error other than the LISTEN client\'s');
      const controlSaw = control === undefined || Object.keys(control.errors).length > 0 || control.leftInQueue > 0 || control.completed < JOBS;
      assert.ok(controlSaw || controlThrew !== undefined || unhandled.length > 0, 'the control (raw pg.Pool) must show the faults');
    });
  }
});

interface BossLike {
  on(event: 'error', fn: (err: unknown) => void): void;
  start(): Promise<unknown>;
  stop(o: unknown): Promise<void>;
  createQueue(name: string): Promise<void>;
  send(name: string, data: unknown): Promise<unknown>;
  work(name: string, o: unknown, fn: (jobs: Array<{ data: { n: number } }>) => Promise<void>): Promise<string>;
}
