import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WaitQueue } from '../../src/policy/waits.ts';
import { ErrorCodes, PgResilientError } from '../../src/errors.ts';
import { WarpClock } from '../helpers/fake-clock.ts';

test('a wait queue hands values to the first live waiter, in order', async () => {
  const clock = new WarpClock();
  const queue = new WaitQueue<string>(clock, 5);
  assert.equal(queue.deliver('nobody'), false, 'nobody waits: the value stays with the caller');
  const a = queue.wait(1e9, () => new Error('no'));
  const b = queue.wait(1e9, () => new Error('no'));
  assert.equal(queue.size, 2);
  assert.equal(queue.deliver('first'), true);
  assert.equal(queue.deliver('second'), true);
  assert.equal(await a, 'first');
  assert.equal(await b, 'second');
  assert.equal(queue.size, 0);
});

test('expired and aborted waiters are skipped by hand-offs and settle once', async () => {
  const clock = new WarpClock();
  const queue = new WaitQueue<string>(clock, 5);
  const expiring = queue.wait(50, () => new Error('expired'));
  const ac = new AbortController();
  const aborted = queue.wait(1e9, () => new Error('no'), ac.signal);
  const patient = queue.wait(1e9, () => new Error('no'));
  clock.advance(60);
  await assert.rejects(expiring, /expired/);
  ac.abort(new Error('caller left'));
  await assert.rejects(aborted, (e: PgResilientError) => e.code === ErrorCodes.ABORTED && (e.cause as Error).message === 'caller left');
  assert.equal(queue.size, 1);
  assert.equal(queue.deliver('x'), true, 'the dead waiters ahead are passed over');
  assert.equal(await patient, 'x');
  assert.equal(queue.deliver('y'), false);
});

test('an already aborted signal rejects at once; cancelAll ends every wait and stops the timer', async () => {
  const clock = new WarpClock();
  const queue = new WaitQueue<number>(clock, 5);
  await assert.rejects(queue.wait(1e9, () => new Error('no'), AbortSignal.abort()), (e: PgResilientError) => e.code === ErrorCodes.ABORTED);
  assert.equal(queue.size, 0);
  const a = queue.wait(1e9, () => new Error('no'));
  const b = queue.wait(1e9, () => new Error('no'));
  queue.cancelAll(() => new Error('ended'));
  await assert.rejects(a, /ended/);
  await assert.rejects(b, /ended/);
  assert.equal(queue.size, 0, 'nothing left waiting, and the timer is stopped');
  assert.equal(queue.deliver(1), false);
});

test('a shared hand-off goes only to a first waiter that takes shared values; nobody is overtaken', async () => {
  const clock = new WarpClock();
  const queue = new WaitQueue<string>(clock, 5);
  assert.equal(queue.deliverShared('busy'), false, 'nobody waits');
  const own = queue.wait(1e9, () => new Error('no'));
  const sharing = queue.wait(1e9, () => new Error('no'), undefined, true);
  assert.equal(queue.deliverShared('busy'), false, 'the first waiter wants a connection of its own: it is not overtaken');
  assert.equal(queue.size, 2);
  assert.equal(queue.deliver('idle'), true);
  assert.equal(await own, 'idle');
  assert.equal(queue.deliverShared('busy'), true, 'now the first waiter takes a shared value');
  assert.equal(await sharing, 'busy');
  assert.equal(queue.size, 0);
});

test('a shared hand-off skips waiters that already left', async () => {
  const clock = new WarpClock();
  const queue = new WaitQueue<string>(clock, 5);
  const ac = new AbortController();
  const gone = queue.wait(1e9, () => new Error('no'), ac.signal, true);
  const next = queue.wait(1e9, () => new Error('no'), undefined, true);
  ac.abort(new Error('caller left'));
  await assert.rejects(gone, /caller left|aborted/i);
  assert.equal(queue.deliverShared('busy'), true);
  assert.equal(await next, 'busy');
});
