import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Pool, instrumentPool, isPgResilientError, retryable } from '../../src/index.ts';
import { Kysely, PostgresDialect } from 'kysely';
import { waitReplayed } from '../helpers/pg-standby.ts';
import { startForkPair, type ForkPair } from '../helpers/fork-pair.ts';

// An asynchronous failover that forks the timeline before a transaction's COMMIT: the COMMIT
// reached the old primary (which committed it), its answer never came back, the primary died,
// and the standby that was promoted never received the transaction. Its id is then given to
// other transactions on the new primary, so `txid_status(id)` there answers for someone else.
// Every in-doubt transaction must end reported committed *and* present, or reported not
// committed *and* absent.

const SETUP = 'CREATE TABLE fork_t (id int NOT NULL, note text)';

async function count(pair: ForkPair, note: string): Promise<number> {
  const [row] = await pair.standby.admin<{ n: string }>('SELECT count(*) AS n FROM fork_t WHERE note = $1', [note]);
  return Number(row!.n);
}

function poolOn(pair: ForkPair, login: { user: string; password: string } = pair.primary): Pool {
  const pool = new Pool({
    hosts: pair.hosts,
    user: login.user,
    password: login.password,
    database: pair.primary.database,
    targetSessionAttrs: 'read-write',
    max: 4,
    retry: { maxElapsedMs: 30_000 },
  });
  pool.on('error', () => undefined);
  return pool;
}

/** Arms the trap; when it fires, fails over (the transaction's id reused), then cuts the client. */
function forkOnCommit(pair: ForkPair): Promise<void> {
  return pair.hold.arm().then(async () => {
    await pair.failover();
    pair.hold.release();
  });
}


/**
 * The scene every in-doubt case shares: a fresh pair, a pool on both hosts, the senders frozen,
 * the trap armed to fail over when a COMMIT's answer is swallowed. `body` runs the transaction;
 * `forked` settles once the failover happened and the client was cut.
 */
async function acrossFork(body: (s: { pair: ForkPair; pool: Pool; forked: Promise<void> }) => Promise<void>, options: { setup?: string; login?: { user: string; password: string } } = {}): Promise<void> {
  const pair = await startForkPair(options.setup ?? SETUP);
  const pool = poolOn(pair, options.login);
  try {
    await pool.query('SELECT 1');
    await pair.freezeSenders();
    await body({ pair, pool, forked: forkOnCommit(pair) });
  } finally {
    await pool.end();
    await pair.destroy();
  }
}

describe('a COMMIT in doubt across a timeline fork (asynchronous replication)', () => {
  test('pool.transaction: not reported committed while the new primary lacks it; run again exactly once', async () => {
    await acrossFork(async ({ pair, pool, forked }) => {
        let runs = 0;
        const outcome = await pool.transaction(async (c) => {
          runs += 1;
          await c.query('INSERT INTO fork_t VALUES (1, $1)', ['pool.transaction']);
          return 'done';
        }).then((v) => ({ ok: v }), (err: unknown) => ({ err }));
        await forked;
        const present = await count(pair, 'pool.transaction');
        console.log(`# pool.transaction across a fork: runs ${runs}, outcome ${'ok' in outcome ? 'resolved' : (outcome.err as { code?: string }).code}, rows on the new primary ${present}, new timeline ${await pair.timeline()}`);
        if ('ok' in outcome) {
          assert.equal(present, 1, 'reported committed: the new primary must have it, exactly once');
        } else {
          assert.ok(isPgResilientError(outcome.err) && outcome.err.code === 'PGR_TRANSACTION_OUTCOME_UNKNOWN', `an error other than outcome-unknown: ${String(outcome.err)}`);
          assert.equal(present, 0);
        }
        // The fork point precedes the transaction's first write: certainly rolled back, so it runs again.
        assert.equal(runs, 2, 'the fork certainly preceded the transaction: it must run again, once');
        assert.equal(present, 1);
    });
  });

  test('a checked-out client (BEGIN / INSERT / COMMIT, as ORMs send it): rolled back, and said so', async () => {
    await acrossFork(async ({ pair, pool, forked }) => {
        const client = await pool.connect();
        let commitError: unknown;
        try {
          await client.query('BEGIN');
          await client.query('INSERT INTO fork_t VALUES (2, $1)', ['checked-out']);
          await client.query('COMMIT').catch((err: unknown) => { commitError = err; });
        } finally {
          client.release();
        }
        await forked;
        const present = await count(pair, 'checked-out');
        const code = (commitError as { code?: string } | undefined)?.code;
        console.log(`# checked-out COMMIT across a fork: ${code ?? 'reported committed'}, rows on the new primary ${present}`);
        if (commitError === undefined) assert.equal(present, 1, 'reported committed while the new primary lacks it');
        else assert.equal(present, 0);
        assert.equal(code, 'PGR_TRANSACTION_ROLLED_BACK', 'the fork certainly preceded the transaction: rolled back is certain');
    });
  });

  test('retryable around a checked-out transaction: applied exactly once on the new primary', async () => {
    await acrossFork(async ({ pair, pool, forked }) => {
        let attempts = 0;
        await retryable(async () => {
          attempts += 1;
          const client = await pool.connect();
          try {
            await client.query('BEGIN');
            await client.query('INSERT INTO fork_t VALUES (3, $1)', ['retryable']);
            await client.query('COMMIT');
          } catch (err) {
            await client.query('ROLLBACK').catch(() => undefined);
            throw err;
          } finally {
            client.release();
          }
        }, { maxElapsedMs: 30_000 });
        await forked;
        const present = await count(pair, 'retryable');
        console.log(`# retryable across a fork: attempts ${attempts}, rows ${present}`);
        assert.equal(present, 1);
        assert.equal(attempts, 2);
    });
  });

  test('the writes reached the standby, the COMMIT did not: its id is known there, txid_status answers, rolled back', async () => {
    const pair = await startForkPair(SETUP);
    const pool = poolOn(pair);
    try {
      await pool.query('SELECT 1');
      const client = await pool.connect();
      let commitError: unknown;
      try {
        await client.query('BEGIN');
        await client.query('INSERT INTO fork_t VALUES (4, $1)', ['writes-replicated']);
        // Another session's commit flushes the WAL holding our insert (a partial page stays in
        // the WAL buffers otherwise), and the standby receives it.
        await pair.primary.admin('INSERT INTO pgr_fork_filler VALUES (0)');
        await waitReplayed(pair.primary, pair.standby);
        await pair.freezeSenders();
        const forked = forkOnCommit(pair);
        await client.query('COMMIT').catch((err: unknown) => { commitError = err; });
        await forked;
      } finally {
        client.release();
      }
      const present = await count(pair, 'writes-replicated');
      console.log(`# fork after the writes, before COMMIT: ${(commitError as { code?: string } | undefined)?.code ?? 'reported committed'}, rows ${present}`);
      assert.equal(present, 0);
      assert.equal((commitError as { code?: string } | undefined)?.code, 'PGR_TRANSACTION_ROLLED_BACK');
    } finally {
      await pool.end();
      await pair.destroy();
    }
  });

  test('a role that may not read the history, no Patroni: outcome unknown, with the id and both timelines', async () => {
    await acrossFork(async ({ pair, pool, forked }) => {
        let runs = 0;
        const err = await pool.transaction(async (c) => {
          runs += 1;
          await c.query('INSERT INTO fork_t VALUES (5, $1)', ['no-history']);
        }).then(() => undefined, (e: unknown) => e);
        await forked;
        const present = await count(pair, 'no-history');
        const e = err as { code?: string; xid?: string; timeline?: number; currentTimeline?: number; message?: string } | undefined;
        console.log(`# no history readable: ${e?.code ?? 'reported committed'} (timeline ${e?.timeline} → ${e?.currentTimeline}), rows ${present}, runs ${runs}`);
        assert.equal(e?.code, 'PGR_TRANSACTION_OUTCOME_UNKNOWN');
        assert.equal(runs, 1, 'never run again on a guess');
        assert.equal(present, 0);
        assert.ok(e?.xid !== undefined && /^\d+$/.test(e.xid));
        assert.equal(e?.timeline, 1);
        assert.equal(e?.currentTimeline, 2);
        assert.ok(!String(e?.message).includes('app-pw'));
    }, { setup: `${SETUP}; CREATE ROLE app LOGIN PASSWORD 'app-pw'; GRANT ALL ON fork_t TO app`, login: { user: 'app', password: 'app-pw' } });
  });

  test('Kysely transaction (its own `commit`) under retryable: applied exactly once', async () => {
    const pair = await startForkPair(SETUP);
    const pool = poolOn(pair);
    const db = new Kysely<{ fork_t: { id: number; note: string } }>({ dialect: new PostgresDialect({ pool: pool as never }) });
    try {
      await pool.query('SELECT 1');
      await pair.freezeSenders();
      const forked = forkOnCommit(pair);
      let attempts = 0;
      await retryable(() => {
        attempts += 1;
        return db.transaction().execute((trx) => trx.insertInto('fork_t').values({ id: 6, note: 'kysely' }).execute());
      }, { maxElapsedMs: 30_000 });
      await forked;
      const present = await count(pair, 'kysely');
      console.log(`# Kysely across a fork: attempts ${attempts}, rows ${present}`);
      assert.equal(present, 1);
      assert.equal(attempts, 2);
    } finally {
      await db.destroy();
      await pair.destroy();
    }
  });
});

describe('acknowledged commits a failover lost (lostCommits)', () => {
  test('pg-resilient counts exactly the acknowledged writes the new primary lacks; a raw pg.Pool is silent', async () => {
    const pair = await startForkPair(`${SETUP}; CREATE TABLE raw_t (id int NOT NULL)`);
    const pool = new Pool({
      hosts: pair.hosts, user: pair.primary.user, password: pair.primary.password, database: pair.primary.database,
      targetSessionAttrs: 'read-write', max: 4, retry: { maxElapsedMs: 30_000 }, lostCommits: true,
    });
    pool.on('error', () => undefined);
    const { default: pg } = await import('pg');
    const raw = new pg.Pool({ ...pair.primary.config, max: 2 });
    raw.on('error', () => undefined);
    const events: import('../../src/index.ts').LostCommitsEvent[] = [];
    pool.on('lostCommits', (e) => events.push(e));
    const prom = await import('prom-client');
    const registry = new prom.Registry();
    const metrics = instrumentPool(pool, { client: prom as never, registry });
    try {
      // Before the freeze: replicated, never reported.
      for (let i = 0; i < 5; i += 1) await pool.query('INSERT INTO fork_t VALUES ($1, $2)', [i, 'before']);
      await pool.query({ text: 'UPDATE fork_t SET note = note WHERE false' }); // no row: no id, nothing to lose
      await pair.primary.admin('SELECT 1');
      await waitReplayed(pair.primary, pair.standby);
      await pair.freezeSenders();
      // After the freeze: acknowledged by the old primary, never received by the standby.
      for (let i = 0; i < 20; i += 1) await pool.query({ text: 'INSERT INTO fork_t VALUES ($1, $2)', values: [100 + i, 'after'], label: `order-${i}` });
      await pool.withLabel('tx-scope', () => pool.transaction(async (c) => {
        await c.query('INSERT INTO fork_t VALUES (200, $1)', ['after-tx']);
      }));
      for (let i = 0; i < 20; i += 1) await raw.query('INSERT INTO raw_t VALUES ($1)', [i]);
      await pair.failover();
      // The next call meets the new primary; the failover completes and the history is compared.
      await pool.query('SELECT 1');
      for (let i = 0; i < 100 && events.length === 0; i += 1) await new Promise((r) => setTimeout(r, 50));
      const missing = Number((await pair.standby.admin<{ n: string }>("SELECT count(*) AS n FROM fork_t WHERE note IN ('after', 'after-tx')"))[0]!.n);
      const before = Number((await pair.standby.admin<{ n: string }>("SELECT count(*) AS n FROM fork_t WHERE note = 'before'"))[0]!.n);
      const rawPresent = Number((await pair.standby.admin<{ n: string }>('SELECT count(*) AS n FROM raw_t'))[0]!.n);
      const e = events[0];
      console.log(`# lostCommits: acknowledged 21 after the freeze, present ${missing}, reported ${e?.count} (checked ${e?.checked}, unverified ${e?.unverified}, fork ${e?.forkLsn}, timeline ${e?.oldTimeline} → ${e?.newTimeline}); control raw pg.Pool: acknowledged 20, present ${rawPresent}, reported 0`);
      assert.equal(before, 5, 'what was replicated survived');
      assert.equal(missing, 0, 'the fork dropped every write after the freeze');
      assert.equal(rawPresent, 0, 'control: the raw pool lost its acknowledged writes too, and nothing told it');
      assert.equal(events.length, 1);
      assert.equal(e!.count, 21 - missing, 'exactly the acknowledged writes the new primary lacks');
      assert.equal(e!.unverified, 0);
      assert.equal(e!.oldTimeline, 1);
      assert.equal(e!.newTimeline, 2);
      assert.deepEqual(e!.commits.map((c) => c.label), [...Array.from({ length: 20 }, (_, i) => `order-${i}`), 'tx-scope']);
      const report = pool.lastFailoverReport;
      assert.ok(report !== undefined, 'the failover completed and was reported');
      assert.equal(report.lostCommits, 21);
      assert.match(report.summary, /21 acknowledged commits lost by the failover/);
      const series = await registry.getSingleMetricAsString('pg_resilient_lost_commits_total');
      assert.match(series, /pg_resilient_lost_commits_total 21$/m);
      metrics.close();
    } finally {
      await raw.end().catch(() => undefined);
      await pool.end();
      await pair.destroy();
    }
  });
});

describe("durability: 'replicated'", () => {
  test('a write resolves once the standby received it; with the sender frozen, PGR_NOT_REPLICATED says it committed', async () => {
    const pair = await startForkPair(SETUP);
    const pool = new Pool({
      hosts: pair.hosts, user: pair.primary.user, password: pair.primary.password, database: pair.primary.database,
      targetSessionAttrs: 'read-write', max: 4, replicationTimeoutMs: 800,
    });
    pool.on('error', () => undefined);
    try {
      await pool.query('SELECT 1');
      const timed = async (durability: 'local' | 'replicated', n: number): Promise<number[]> => {
        const ms: number[] = [];
        for (let i = 0; i < n; i += 1) {
          const t0 = performance.now();
          await pool.query({ text: 'INSERT INTO fork_t VALUES ($1, $2)', values: [i, durability], durability });
          ms.push(performance.now() - t0);
        }
        return ms.sort((a, b) => a - b);
      };
      await timed('replicated', 5); // the watch's connections
      const local = await timed('local', 200);
      const replicated = await timed('replicated', 200);
      const median = (a: number[]): number => a[Math.floor(a.length / 2)]!;
      console.log(`# durability on this machine (async standby on loopback): insert median local ${median(local).toFixed(2)} ms, replicated ${median(replicated).toFixed(2)} ms; p99 ${local[197]!.toFixed(2)} / ${replicated[197]!.toFixed(2)} ms`);
      // Each replicated write was on the standby when it resolved.
      const [onStandby] = await pair.standby.admin<{ n: string }>("SELECT count(*) AS n FROM fork_t WHERE note = 'replicated'");
      assert.equal(Number(onStandby!.n), 205);

      // Concurrent writers share one wait.
      await Promise.all(Array.from({ length: 20 }, (_, i) => pool.query({ text: 'INSERT INTO fork_t VALUES ($1, $2)', values: [1000 + i, 'concurrent'], durability: 'replicated' })));

      await pair.freezeSenders();
      const t0 = performance.now();
      const err = await pool.query({ text: 'INSERT INTO fork_t VALUES (1, $1)', values: ['frozen'], durability: 'replicated' }).then(() => undefined, (e: unknown) => e);
      const waited = performance.now() - t0;
      const [onPrimary] = await pair.primary.admin<{ n: string }>("SELECT count(*) AS n FROM fork_t WHERE note = 'frozen'");
      console.log(`# sender frozen: ${(err as { code?: string } | undefined)?.code} after ${waited.toFixed(0)} ms; on the primary: ${onPrimary!.n}`);
      assert.equal((err as { code?: string } | undefined)?.code, 'PGR_NOT_REPLICATED');
      assert.equal((err as { committed?: boolean }).committed, true);
      assert.equal(Number(onPrimary!.n), 1, 'the write committed; the error says so and it must not run again');
      const txErr = await pool.transaction(async (c) => { await c.query('INSERT INTO fork_t VALUES (2, $1)', ['frozen-tx']); }, { durability: 'replicated' }).then(() => undefined, (e: unknown) => e);
      assert.equal((txErr as { code?: string } | undefined)?.code, 'PGR_NOT_REPLICATED');
    } finally {
      await pool.end();
      await pair.destroy();
    }
  });

  test('a pool that knows no standby fails fast with PGR_NOT_REPLICATED, and the bad option is named', async () => {
    assert.throws(() => new Pool({ durability: 'quorum' as never }), /durability/);
    const pair = await startForkPair(SETUP);
    const pool = new Pool({ ...pair.primary.config, durability: 'replicated', replicationTimeoutMs: 5000 });
    try {
      const t0 = performance.now();
      const err = await pool.query('INSERT INTO fork_t VALUES (1, $1)', ['no-standby']).then(() => undefined, (e: unknown) => e);
      assert.equal((err as { code?: string } | undefined)?.code, 'PGR_NOT_REPLICATED');
      assert.match(String((err as Error).message), /knows no standby/);
      assert.ok(performance.now() - t0 < 4000, 'did not wait the whole timeout for a standby it cannot reach');
    } finally {
      await pool.end();
      await pair.destroy();
    }
  });
});
