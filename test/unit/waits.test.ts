import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WaitSweeper } from '../../src/policy/waits.ts';
import { ErrorCodes, PgResilientError } from '../../src/errors.ts';
import { WarpClock } from '../helpers/fake-clock.ts';

const never = new Promise<never>(() => undefined);

test('waits share one sweep timer: work, expiry, abort and cancelAll each settle once', async () => {
  const clock = new WarpClock();
  const sweeper = new WaitSweeper(clock, 5);
  assert.equal(await sweeper.wait(Promise.resolve(7), 100, () => new Error('late')), 7);
  assert.equal(sweeper.size, 0);

  const expiring = sweeper.wait(never, 50, () => new Error('expired'));
  clock.advance(60);
  await assert.rejects(expiring, /expired/);

  const ac = new AbortController();
  const aborted = sweeper.wait(never, 1e9, () => new Error('no'), ac.signal);
  ac.abort(new Error('caller left'));
  await assert.rejects(aborted, (e: PgResilientError) => e.code === ErrorCodes.ABORTED);

  const a = sweeper.wait(never, 1e9, () => new Error('no'));
  const b = sweeper.wait(never, 1e9, () => new Error('no'));
  assert.equal(sweeper.size, 2);
  sweeper.cancelAll(() => new Error('ended'));
  await assert.rejects(a, /ended/);
  await assert.rejects(b, /ended/);
  assert.equal(sweeper.size, 0, 'nothing left waiting, and the timer is stopped');
});
