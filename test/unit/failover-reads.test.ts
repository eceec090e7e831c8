import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { InvalidOptionError, Pool } from '../../src/index.ts';
import { resolveOptions } from '../../src/options.ts';
import {
  FailoverReads,
  STANDBY_PROBE_SQL,
  STANDBY_RECHECK_MS,
  completeUpTo,
  judgeStandby,
  parseLsn,
  parseProbe,
  readYourWrites,
  type JudgeInput,
  type PrimaryWatch,
  type StandbyLink,
  type StandbyProbe,
  type WriteMark,
} from '../../src/topology/failover-reads.ts';
import { Deadline } from '../../src/policy/deadline.ts';
import type { StandbyReadEvent } from '../../src/observe/types.ts';
import { WarpClock } from '../helpers/fake-clock.ts';

const bounds = { maxLagBytes: Infinity, maxStalenessMs: 1000 };
const probe = (p: Partial<StandbyProbe>): StandbyProbe => ({ standby: true, replayLsn: 1000n, receiveLsn: 1000n, replayCommitAt: 9_800, sentAt: 10_000, ...p });
const input = (i: Partial<JudgeInput>): JudgeInput => ({
  now: 10_000, bounds, probe: probe({}), sync: false, patroniLagBytes: undefined, marks: [], referenceLsn: undefined, lastWrite: undefined, ...i,
});
const mark = (ackAt: number, lsn?: bigint): WriteMark => ({ ackAt, lsn, lsnAt: lsn === undefined ? undefined : ackAt + 1 });

describe('failover reads: the pure rules', () => {
  test('LSNs and probe rows', () => {
    assert.equal(parseLsn('0/3001148'), 0x3001148n);
    assert.equal(parseLsn('16/B374D848'), (0x16n << 32n) + 0xb374d848n);
    for (const bad of [null, undefined, '', '1/2/3', 'x/1', 42]) assert.equal(parseLsn(bad), undefined);
    const p = parseProbe({ standby: true, replay: '0/10', receive: '0/20', replay_age_ms: 250 }, 5000);
    assert.deepEqual(p, { standby: true, replayLsn: 16n, receiveLsn: 32n, replayCommitAt: 4750, sentAt: 5000 });
    // A primary's clock ahead of the standby's: never later than the probe itself.
    assert.equal(parseProbe({ standby: true, replay: '0/10', receive: '0/10', replay_age_ms: -40 }, 5000).replayCommitAt, 5000);
    assert.deepEqual(parseProbe({ standby: false, replay: null, receive: null, replay_age_ms: null }, 1), { standby: false, replayLsn: undefined, receiveLsn: undefined, replayCommitAt: undefined, sentAt: 1 });
    assert.match(STANDBY_PROBE_SQL, /pg_last_xact_replay_timestamp/);
  });

  test('completeness: last replayed commit, our write positions it passed, a caught-up synchronous standby', () => {
    assert.equal(completeUpTo({ probe: probe({}), sync: false, marks: [] }), 9_800);
    assert.equal(completeUpTo({ probe: probe({ replayCommitAt: undefined }), sync: false, marks: [] }), -Infinity);
    // A position read at 9 901 that it replayed past: complete up to then.
    assert.equal(completeUpTo({ probe: probe({}), sync: false, marks: [mark(9_900, 900n), mark(9_950, 2000n)] }), 9_901);
    assert.equal(completeUpTo({ probe: probe({}), sync: true, marks: [] }), 10_000, 'sync and replayed all it received');
    assert.equal(completeUpTo({ probe: probe({ receiveLsn: 1001n }), sync: true, marks: [] }), 9_800, 'sync but not replayed all');
  });

  test('verdicts', () => {
    const cases: Array<[string, Partial<JudgeInput>, string]> = [
      ['fresh', {}, 'ok'],
      ['a primary', { probe: probe({ standby: false, replayLsn: undefined }) }, 'ok'],
      ['too stale', { now: 10_900 }, 'staleness'],
      ['stale but sync and caught up', { now: 10_900, sync: true }, 'ok'],
      ['nothing known', { probe: probe({ replayCommitAt: undefined }) }, 'staleness'],
      ['lag from the reference', { bounds: { maxLagBytes: 100, maxStalenessMs: 1000 }, referenceLsn: 1200n }, 'lag'],
      ['lag within bound', { bounds: { maxLagBytes: 100, maxStalenessMs: 1000 }, referenceLsn: 1050n }, 'ok'],
      ['received, not replayed', { bounds: { maxLagBytes: 100, maxStalenessMs: 1000 }, probe: probe({ receiveLsn: 1500n }) }, 'lag'],
      ['Patroni lag plus unreplayed', { bounds: { maxLagBytes: 100, maxStalenessMs: 1000 }, patroniLagBytes: 80, probe: probe({ receiveLsn: 1030n }) }, 'lag'],
      ['lag unknown with a finite bound', { bounds: { maxLagBytes: 100, maxStalenessMs: 1000 }, probe: probe({ replayLsn: undefined }) }, 'lag'],
      ['own write replayed (by position)', { lastWrite: mark(9_900, 1000n) }, 'ok'],
      ['own write not replayed (by position)', { lastWrite: mark(9_900, 1001n) }, 'read-your-writes'],
      ['own write, position unknown, a later commit replayed', { lastWrite: mark(9_700) }, 'ok'],
      ['own write, position unknown, no later commit replayed', { lastWrite: mark(9_850) }, 'read-your-writes'],
      ['own write older than the bound', { now: 10_700, probe: probe({ replayCommitAt: 9_750 }), lastWrite: mark(9_650, 5000n) }, 'ok'],
    ];
    for (const [name, i, expected] of cases) {
      const v = judgeStandby(input(i));
      assert.equal(v.ok ? 'ok' : v.reason, expected, name);
    }
    const v = judgeStandby(input({ now: 10_300 }));
    assert.ok(v.ok && v.stalenessMs === 500 && !v.primary);
  });
});

describe('failover reads: options', () => {
  test('Patroni mode defaults to read-write; host lists keep libpq\'s any', () => {
    assert.equal(resolveOptions({ patroni: { urls: ['http://127.0.0.1:8008'] } }).targetSessionAttrs, 'read-write');
    assert.equal(resolveOptions({ patroni: { urls: ['http://127.0.0.1:8008'] }, targetSessionAttrs: 'any' }).targetSessionAttrs, 'any');
    assert.equal(resolveOptions({ hosts: ['a:1', 'b:2'] }).targetSessionAttrs, 'any');
    assert.equal(resolveOptions({ connectionString: 'postgres://a:1,b:2/db?target_session_attrs=primary', patroni: { urls: ['http://x:1'] } }).targetSessionAttrs, 'primary');
  });

  test('failoverReads: off by default, true takes the defaults, bad values name the option', () => {
    assert.equal(resolveOptions({}).failoverReads, undefined);
    assert.equal(resolveOptions({ failoverReads: false }).failoverReads, undefined);
    assert.deepEqual(resolveOptions({ failoverReads: true }).failoverReads, { maxLagBytes: Infinity, maxStalenessMs: 5000 });
    assert.deepEqual(resolveOptions({ failoverReads: { maxStalenessMs: 200 } }).failoverReads, { maxLagBytes: Infinity, maxStalenessMs: 200 });
    for (const [bad, name] of [['yes', 'failoverReads'], [{ maxStalenessMs: -1 }, 'failoverReads.maxStalenessMs'], [{ maxLagBytes: 'x' }, 'failoverReads.maxLagBytes']] as const) {
      assert.throws(() => resolveOptions({ failoverReads: bad as never }), (e: unknown) => e instanceof InvalidOptionError && e.message.includes(`\`${name}\``), name);
    }
    assert.equal('failoverReads' in resolveOptions({ failoverReads: true }).clientConfig, false, 'not handed to pg');
  });

  test('per call: validated, and refused on a pool without the policy', async () => {
    const pool = new Pool({ host: '127.0.0.1', port: 1, failoverReads: true });
    const plain = new Pool({ host: '127.0.0.1', port: 1 });
    try {
      await assert.rejects(pool.query({ text: 'SELECT 1', failoverReads: 'no' as never }), /failoverReads/);
      await assert.rejects(pool.query({ text: 'SELECT 1', failoverReads: { maxStalenessMs: -5 } }), /failoverReads.maxStalenessMs/);
      await assert.rejects(plain.query({ text: 'SELECT 1', failoverReads: { maxStalenessMs: 5 } }), /needs the pool option/);
    } finally {
      await pool.end();
      await plain.end();
    }
  });
});

// ---- the routing, against a scripted standby link --------------------------------------------------

interface FakeConn { readonly port: number; readonly role: 'primary' | 'standby' }

function harness(o: { standbys: Array<{ port: number; row: () => Record<string, unknown> }>; failingOver?: boolean; recovering?: { cold: () => boolean } }) {
  const clock = new WarpClock();
  clock.advance(100_000);
  const events: StandbyReadEvent[] = [];
  const released: Array<[number, string]> = [];
  const aside: number[] = [];
  let probes = 0;
  let next = 0;
  const watch: PrimaryWatch = {
    failingOver: o.failingOver ?? true,
    leaderless: false,
    recovering: o.recovering !== undefined,
    primaryCold: () => o.recovering?.cold() ?? false,
    breakerState: () => 'closed',
    knownStandbys: () => o.standbys.map((s) => ({ host: 'h', port: s.port })),
    leader: undefined,
    standbyInfo: () => undefined,
    setAsideForReads: (server) => { aside.push(server.port); },
  };
  const link: StandbyLink<FakeConn> = {
    // Round robin over the standbys not set aside, as the read bag's candidates order them.
    acquire: async () => {
      const open = o.standbys.filter((s) => !aside.includes(s.port));
      const s = (open.length > 0 ? open : o.standbys)[next++ % (open.length > 0 ? open.length : o.standbys.length)]!;
      return { port: s.port, role: 'standby' };
    },
    describe: (c) => ({ server: { host: 'h', port: c.port }, role: c.role }),
    query: async (c) => { probes += 1; return [o.standbys.find((s) => s.port === c.port)!.row()]; },
    release: (c, how) => { released.push([c.port, typeof how === 'string' ? how : 'failed']); },
    servedByPrimary: () => undefined,
    publish: (e) => { events.push(e); },
  };
  const reads = new FailoverReads<FakeConn>({ maxLagBytes: Infinity, maxStalenessMs: 1000 }, clock, watch, link);
  const deadline = (): Deadline => new Deadline(clock, 5000);
  return { clock, reads, events, released, aside, deadline, probes: () => probes };
}

const row = (ageMs: number, replay = '0/1000'): Record<string, unknown> => ({ standby: true, replay, receive: replay, replay_age_ms: ageMs });

describe('failover reads: routing', () => {
  test('only while the primary is unavailable; a fresh standby serves, its probe is reused', async () => {
    const h = harness({ standbys: [{ port: 1, row: () => row(100) }] });
    const r1 = await h.reads.tryRead(h.reads.bounds, h.deadline(), async (c) => `ran on ${c.port}`);
    assert.deepEqual(r1, { value: 'ran on 1' });
    const r2 = await h.reads.tryRead(h.reads.bounds, h.deadline(), async () => 'again');
    assert.deepEqual(r2, { value: 'again' });
    assert.equal(h.probes(), 1, 'a probe that said yes is reused');
    assert.deepEqual(h.events.map((e) => [e.outcome, e.during]), [['served', 'failing-over'], ['served', 'failing-over']]);
    const calm = harness({ standbys: [{ port: 1, row: () => row(100) }], failingOver: false });
    assert.equal(await calm.reads.tryRead(calm.reads.bounds, calm.deadline(), async () => 'x'), undefined, 'primary available: not used');
    // Just after a failover, while the new primary has no idle connection, reads stay on the standby.
    let cold = true;
    const after = harness({ standbys: [{ port: 1, row: () => row(100) }], failingOver: false, recovering: { cold: () => cold } });
    assert.deepEqual(await after.reads.tryRead(after.reads.bounds, after.deadline(), async () => 'standby'), { value: 'standby' });
    assert.equal(after.events[0]?.during, 'recovering');
    cold = false;
    assert.equal(await after.reads.tryRead(after.reads.bounds, after.deadline(), async () => 'x'), undefined, 'warm primary: not used');
  });

  test('a stale standby is set aside and closed while another serves; with none in bounds the call waits', async () => {
    const h = harness({ standbys: [{ port: 1, row: () => row(5000) }, { port: 2, row: () => row(50) }] });
    const r = await h.reads.tryRead(h.reads.bounds, h.deadline(), async (c) => c.port);
    assert.deepEqual(r, { value: 2 });
    assert.deepEqual(h.aside, [1]);
    assert.deepEqual(h.released, [[1, 'close'], [2, 'keep']]);
    assert.equal(h.events[0]?.reason, 'staleness');

    const none = harness({ standbys: [{ port: 1, row: () => row(5000) }] });
    assert.equal(await none.reads.tryRead(none.reads.bounds, none.deadline(), async () => 'stale'), undefined);
    assert.deepEqual(none.released, [[1, 'keep']], 'the only standby is kept, not churned');
    const probes = none.probes();
    assert.equal(await none.reads.tryRead(none.reads.bounds, none.deadline(), async () => 'stale'), undefined);
    assert.equal(none.probes(), probes, `set aside for ${STANDBY_RECHECK_MS} ms: not even acquired`);
  });

  test('read-your-writes: a context waits for its own write, another context does not', async () => {
    let replay = '0/1000';
    const h = harness({ standbys: [{ port: 1, row: () => row(10, replay) }] });
    const lsnQuery = async (): Promise<Array<Record<string, unknown>>> => [{ lsn: '0/2000' }];
    await readYourWrites(async () => {
      await h.reads.noteWrite(lsnQuery);
      assert.equal(await h.reads.tryRead(h.reads.bounds, h.deadline(), async () => 'behind'), undefined, 'own write not replayed');
    });
    assert.equal(h.aside.length, 0, 'one context\'s write does not set the standby aside for others');
    const other = await readYourWrites(() => h.reads.tryRead(h.reads.bounds, h.deadline(), async () => 'other context'));
    assert.deepEqual(other, { value: 'other context' });
    // Outside any context the pool's last write stands for everybody's.
    h.clock.advance(60);
    assert.equal(await h.reads.tryRead(h.reads.bounds, h.deadline(), async () => 'pool-wide'), undefined);
    replay = '0/2000';
    h.clock.advance(STANDBY_RECHECK_MS);
    assert.deepEqual(await h.reads.tryRead(h.reads.bounds, h.deadline(), async () => 'caught up'), { value: 'caught up' });
  });

  test('which calls qualify', () => {
    const h = harness({ standbys: [] });
    assert.ok(h.reads.boundsFor('SELECT * FROM t WHERE id = $1', {}));
    assert.equal(h.reads.boundsFor('SELECT * FROM t', { failoverReads: false }), undefined);
    assert.equal(h.reads.boundsFor('SELECT * FROM t', { readOnly: true }), undefined, 'readOnly keeps its own routing');
    assert.equal(h.reads.boundsFor('SELECT my_fn()', { idempotent: false }), undefined);
    assert.equal(h.reads.boundsFor('INSERT INTO t VALUES (1)', {}), undefined);
    assert.equal(h.reads.boundsFor('SELECT nextval(\'s\')', {}), undefined);
    assert.deepEqual(h.reads.boundsFor('SELECT 1', { failoverReads: { maxStalenessMs: 50 } }), { maxLagBytes: Infinity, maxStalenessMs: 50 });
    assert.ok(h.reads.isWrite('UPDATE t SET v = 1', {}));
    assert.ok(h.reads.isWrite('SELECT my_fn()', { idempotent: false }));
    assert.ok(!h.reads.isWrite('SELECT 1', {}));
  });
});
