import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LostCommits } from '../../src/transactions/lost-commits.ts';
import { resolveLostCommits } from '../../src/transactions/durability-options.ts';
import { InvalidOptionError } from '../../src/errors.ts';
import { silentLogger } from '../../src/observe/logger.ts';
import { WarpClock } from '../helpers/fake-clock.ts';

function tracker(windowMs: number, maxTracked: number): { commits: LostCommits; clock: WarpClock; checks: number[]; noted: number[] } {
  const clock = new WarpClock();
  const checks: number[] = [];
  const noted: number[] = [];
  const commits = new LostCommits({ windowMs, maxTracked }, {
    clock,
    logger: silentLogger,
    checkout: async () => {
      checks.push(clock.now());
      throw new Error('no primary in a unit test');
    },
    giveBack: () => undefined,
    patroniHistory: async () => undefined,
    publish: () => undefined,
    noted: () => noted.push(clock.now()),
  });
  return { commits, clock, checks, noted };
}

const mark = (xid: number, timeline = 1) => ({ xid: String(xid), at: { lsn: `0/${(0x1000 + xid).toString(16)}`, timeline } });

test('memory is bounded: the window forgets old commits, maxTracked the oldest', () => {
  const { commits, clock } = tracker(1000, 5);
  for (let i = 0; i < 3; i += 1) commits.note(mark(i), undefined);
  assert.equal(commits.tracked, 3);
  clock.advance(1500);
  commits.note(mark(10), undefined);
  assert.equal(commits.tracked, 1, 'older than the window: forgotten');
  for (let i = 11; i < 30; i += 1) commits.note(mark(i), undefined);
  assert.equal(commits.tracked, 5, 'never more than maxTracked');
});

test('nothing to lose is not remembered: no id (no row written), or no position (not a primary)', () => {
  const { commits } = tracker(60_000, 100);
  commits.note({ xid: null, at: { lsn: '0/1', timeline: 1 } }, undefined);
  commits.note({ xid: '7', at: undefined }, undefined);
  commits.note(undefined, undefined);
  assert.equal(commits.tracked, 0);
});

test('a standby that received the WAL read after a commit makes it safe; only on the same timeline', () => {
  const { commits, clock } = tracker(60_000, 100);
  commits.note(mark(1), undefined);
  clock.advance(10);
  commits.note(mark(2), undefined);
  clock.advance(10);
  commits.note(mark(3), undefined);
  commits.confirmReplicated(15, 1);
  assert.equal(commits.tracked, 1, 'the two acknowledged before the read are forgotten');
  commits.confirmReplicated(100, 2);
  assert.equal(commits.tracked, 1, 'a position on another timeline proves nothing');
});

test('a commit on a newer timeline is news of a failover: the comparison starts', async () => {
  const { commits, checks, noted } = tracker(60_000, 100);
  commits.note(mark(1, 1), undefined);
  assert.equal(noted.length, 1);
  commits.note(mark(2, 2), undefined);
  await new Promise((r) => setImmediate(r));
  assert.ok(checks.length >= 1, 'asked for a primary connection to compare');
});

test('options: off by default, bounds validated and named', () => {
  assert.equal(resolveLostCommits(undefined), undefined);
  assert.equal(resolveLostCommits(false), undefined);
  assert.deepEqual(resolveLostCommits(true), { windowMs: 300_000, maxTracked: 100_000 });
  for (const [value, name] of [[{ windowMs: 10 }, 'lostCommits.windowMs'], [{ maxTracked: 0 }, 'lostCommits.maxTracked'], [{ windowMs: Infinity }, 'lostCommits.windowMs'], ['yes', 'lostCommits']] as const) {
    assert.throws(() => resolveLostCommits(value), (e: unknown) => e instanceof InvalidOptionError && e.option === name, name);
  }
});
