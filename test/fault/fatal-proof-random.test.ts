// The FATAL rule under fire (docs/what-a-fatal-proves.md): writers run single INSERTs (simple and
// extended protocol, pipelined on busy connections), two-statement texts and explicit
// transactions with COMMIT, while a killer terminates backends at random moments (one, or all)
// and restarts the server once with -m fast; with synchronous replication off, then on (a real
// standby). Every row is accounted for afterwards: an acknowledged call's rows are there exactly
// once, a call that failed "without effect" left none, an unknown outcome left all or none of a
// call's rows, and no row is there twice. The rule must have fired (re-runs counted), or the
// test proves nothing; a raw pg.Pool under the same killer shows what reaches an application.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { ErrorCodes, Pool } from '../../src/index.ts';
import { startPgServer, type PgServer } from '../helpers/pg-server.ts';
import { startStandby } from '../helpers/pg-standby.ts';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const APP = 'fatal-random';
const RUN_MS = 4000;

type Mode = 'single-simple' | 'single-extended' | 'multi' | 'tx';
const MODES: Mode[] = ['single-simple', 'single-extended', 'multi', 'tx'];
/** Errors that say the call had no effect (retries ran out on rejections, a rolled-back transaction). */
const NO_EFFECT = new Set<string>([ErrorCodes.RETRIES_EXHAUSTED, ErrorCodes.TRANSACTION_ROLLED_BACK, ErrorCodes.REPLAY_DIVERGED]);
const UNKNOWN = new Set<string>([ErrorCodes.STATEMENT_OUTCOME_UNKNOWN, ErrorCodes.TRANSACTION_OUTCOME_UNKNOWN]);

interface Call { mode: Mode; ids: number[]; outcome: 'ok' | 'no-effect' | 'unknown' | 'other'; code?: string }

interface Tally { writes: number; terminations: number; restarts: number; rejectionReruns: number; calls: Call[] }

let nextId = 1;

/** One call of `mode` through our pool: its rows' ids and how it ended. */
async function write(pool: Pool, mode: Mode): Promise<Call> {
  const a = nextId++;
  // A little server time per statement, so that terminations often find a statement running.
  const nap = 'pg_sleep(random() * 0.004)';
  let ids = [a];
  try {
    if (mode === 'single-simple') {
      await pool.query(`INSERT INTO w SELECT ${a}, 'single-simple' FROM ${nap}`);
    } else if (mode === 'single-extended') {
      await pool.query(`INSERT INTO w SELECT $1::bigint, 'single-extended' FROM ${nap}`, [a]);
    } else if (mode === 'multi') {
      const b = nextId++;
      ids = [a, b];
      await pool.query(`INSERT INTO w SELECT ${a}, 'multi' FROM ${nap}; INSERT INTO w VALUES (${b}, 'multi')`);
    } else {
      const b = nextId++;
      ids = [a, b];
      const client = await pool.connect();
      let failed: Error | undefined;
      try {
        await client.query('BEGIN');
        await client.query(`INSERT INTO w SELECT $1::bigint, 'tx' FROM ${nap}`, [a]);
        await client.query('INSERT INTO w VALUES ($1, $2)', [b, 'tx']);
        await client.query('COMMIT');
      } catch (err) {
        failed = err as Error;
        await client.query('ROLLBACK').catch(() => undefined);
        throw err;
      } finally {
        client.release(failed);
      }
    }
    return { mode, ids, outcome: 'ok' };
  } catch (err) {
    const code = (err as { code?: string }).code ?? (err as Error).message;
    const outcome = NO_EFFECT.has(code) ? 'no-effect' : UNKNOWN.has(code) ? 'unknown' : 'other';
    return { mode, ids, outcome, code };
  }
}

/** Terminates backends of APP at random moments until `until`; restarts `server` -m fast once, midway. */
async function killer(server: PgServer, until: () => boolean, t: Tally, random: () => number): Promise<void> {
  const restartAt = Date.now() + RUN_MS / 2;
  let restarted = false;
  while (!until()) {
    await sleep(15 + random() * 80);
    try {
      if (!restarted && Date.now() >= restartAt) {
        restarted = true;
        t.restarts += 1;
        await server.restart('fast');
        continue;
      }
      const pids = (await server.admin<{ pid: number }>('SELECT pid FROM pg_stat_activity WHERE application_name = $1', [APP])).map((r) => r.pid);
      if (pids.length === 0) continue;
      const victims = random() < 0.1 ? pids : [pids[Math.floor(random() * pids.length)]!];
      await server.admin('SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid', [victims]);
      t.terminations += victims.length;
    } catch {
      // The server is restarting: the next round tries again.
    }
  }
}

/** A seeded generator (mulberry32), so a failing run can be repeated with its printed seed. */
function seeded(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let x = s;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

async function runOnce(server: PgServer, label: string): Promise<Tally> {
  const seed = Number(process.env['PGR_FATAL_SEED'] ?? Date.now() % 1_000_000);
  const random = seeded(seed);
  await server.admin('DROP TABLE IF EXISTS w');
  await server.admin('CREATE TABLE w (id bigint PRIMARY KEY, mode text NOT NULL)');
  const t: Tally = { writes: 0, terminations: 0, restarts: 0, rejectionReruns: 0, calls: [] };
  // Few connections for many writers: single INSERTs are pipelined behind each other.
  const pool = new Pool({ ...server.config, application_name: APP, max: 4, pipelining: true, retry: { maxElapsedMs: 15_000 } });
  pool.on('error', () => undefined);
  pool.on('retry', (e) => {
    if (e.reason === 'rejected-without-effect' && (e.code === '57P01' || e.code === '57P02')) t.rejectionReruns += 1;
  });
  let done = false;
  const stopAt = Date.now() + RUN_MS;
  try {
    const writers = Array.from({ length: 12 }, async (_, w) => {
      let i = 0;
      while (Date.now() < stopAt) {
        const mode = MODES[(w + i++) % MODES.length]!;
        t.calls.push(await write(pool, mode));
        t.writes += 1;
      }
    });
    const kill = killer(server, () => done, t, random);
    await Promise.all(writers);
    done = true;
    await kill;
  } finally {
    done = true;
    await pool.end();
  }
  await verify(server, t, label, seed);
  return t;
}

/** Every row accounted for; prints the counts per mode. */
async function verify(server: PgServer, t: Tally, label: string, seed: number): Promise<void> {
  const rows = await server.admin<{ id: string; n: string }>('SELECT id::text, count(*)::text AS n FROM w GROUP BY id');
  const present = new Map(rows.map((r) => [Number(r.id), Number(r.n)]));
  const problems: string[] = [];
  const per = new Map<Mode, Record<string, number>>();
  for (const call of t.calls) {
    const counts = call.ids.map((id) => present.get(id) ?? 0);
    const m = per.get(call.mode) ?? { ok: 0, 'no-effect': 0, unknown: 0, other: 0, unknownApplied: 0 };
    m[call.outcome]! += 1;
    per.set(call.mode, m);
    if (counts.some((n) => n > 1)) problems.push(`${call.mode} ${call.ids} present twice`);
    if (call.outcome === 'ok' && counts.some((n) => n !== 1)) problems.push(`${call.mode} ${call.ids} acknowledged but ${counts}`);
    if (call.outcome === 'no-effect' && counts.some((n) => n !== 0)) problems.push(`${call.mode} ${call.ids} failed without effect (${call.code}) but ${counts}`);
    if (call.outcome !== 'ok' && call.ids.length > 1 && counts[0] !== counts[1]) problems.push(`${call.mode} ${call.ids} half applied: ${counts}`);
    if ((call.outcome === 'unknown' || call.outcome === 'other') && counts[0] === 1) m['unknownApplied']! += 1;
  }
  const others = t.calls.filter((c) => c.outcome === 'other').map((c) => c.code);
  console.log(`# ${label} (seed ${seed}): writes=${t.writes} terminations=${t.terminations} restarts=${t.restarts} re-run as rejection=${t.rejectionReruns}`);
  for (const [mode, m] of per) console.log(`#   ${mode}: ${JSON.stringify(m)}`);
  if (others.length > 0) console.log(`#   other errors: ${JSON.stringify(others.slice(0, 10))}`);
  assert.deepEqual(problems, []);
}

describe('randomized terminations under a write load: every row accounted for', () => {
  let primary: PgServer;
  before(async () => {
    primary = await startPgServer({ settings: { synchronous_commit: 'on' } });
  });
  after(async () => {
    await primary?.destroy();
  });

  test('synchronous replication off: rejections re-run, nothing twice, nothing acknowledged lost', async () => {
    const t = await runOnce(primary, 'sync off');
    assert.ok(t.terminations > 0 && t.restarts === 1, 'the killer must have struck');
    assert.ok(t.rejectionReruns > 0, 'the rule must have fired at least once (or this test proves nothing)');
  });

  test('synchronous replication on (a real standby): the WARNING case stays unknown, nothing twice', async () => {
    const standby = await startStandby(primary);
    try {
      await primary.appendConf({ synchronous_standby_names: '*' });
      await primary.admin('SELECT pg_reload_conf()');
      for (let i = 0; i < 100; i += 1) {
        const rows = await primary.admin<{ s: string }>("SELECT sync_state AS s FROM pg_stat_replication");
        if (rows.some((r) => r.s === 'sync')) break;
        await sleep(50);
      }
      const t = await runOnce(primary, 'sync on');
      assert.ok(t.terminations > 0, 'the killer must have struck');
    } finally {
      await primary.appendConf({ synchronous_standby_names: '' });
      await primary.admin('SELECT pg_reload_conf()').catch(() => undefined);
      await standby.destroy();
    }
  });

  test('control: a raw pg.Pool under the same killer surfaces errors to the application', async () => {
    await primary.admin('DROP TABLE IF EXISTS w');
    await primary.admin('CREATE TABLE w (id bigint PRIMARY KEY, mode text NOT NULL)');
    const raw = new pg.Pool({ ...primary.config, application_name: APP, max: 4 });
    raw.on('error', () => undefined);
    const t: Tally = { writes: 0, terminations: 0, restarts: 0, rejectionReruns: 0, calls: [] };
    const errors = new Map<string, number>();
    let done = false;
    const stopAt = Date.now() + 2000;
    const writers = Array.from({ length: 12 }, async () => {
      while (Date.now() < stopAt) {
        const id = nextId++;
        try {
          await raw.query(`INSERT INTO w SELECT $1::bigint, 'raw' FROM pg_sleep(random() * 0.004)`, [id]);
        } catch (err) {
          const k = (err as { code?: string }).code ?? (err as Error).message;
          errors.set(k, (errors.get(k) ?? 0) + 1);
        }
        t.writes += 1;
      }
    });
    // No restart in the control: terminations alone show the difference.
    const kill = (async () => {
      const random = seeded(7);
      while (!done) {
        await sleep(15 + random() * 80);
        const pids = (await primary.admin<{ pid: number }>('SELECT pid FROM pg_stat_activity WHERE application_name = $1', [APP])).map((r) => r.pid);
        if (pids.length === 0) continue;
        await primary.admin('SELECT pg_terminate_backend($1)', [pids[Math.floor(random() * pids.length)]]);
        t.terminations += 1;
      }
    })();
    await Promise.all(writers);
    done = true;
    await kill;
    await raw.end();
    const total = [...errors.values()].reduce((a, b) => a + b, 0);
    console.log(`# raw pg.Pool: writes=${t.writes} terminations=${t.terminations} errors surfaced=${total} ${JSON.stringify(Object.fromEntries(errors))}`);
    assert.ok(total > 0, 'the control must see the terminations');
  });
});
