import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Breaker, type BreakerState } from '../../src/policy/breaker.ts';
import { ErrorCodes, PgResilientError } from '../../src/errors.ts';
import { WarpClock } from '../helpers/fake-clock.ts';

// opossum keeps its own timers; the reset timeout here is short and real. Our part, the time
// until the trial call, runs on the injected clock and is checked exactly.
const refused = (): Error => Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
const syntax = (): Error => Object.assign(new Error('syntax error'), { code: '42601', severity: 'ERROR' });
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function make(clock = new WarpClock()): { breaker: Breaker; states: BreakerState[]; clock: WarpClock } {
  const states: BreakerState[] = [];
  const breaker = new Breaker({ enabled: true, errorThresholdPercentage: 50, volumeThreshold: 4, resetTimeoutMs: 60, rollingWindowMs: 10_000 }, clock, (s) => states.push(s));
  return { breaker, states, clock };
}

describe('circuit breaker (opossum) transitions', () => {
  test('failures to reach the database open it; open calls fail fast with PGR_CIRCUIT_OPEN; one trial closes it', async () => {
    const { breaker, states, clock } = make();
    for (let i = 0; i < 4; i += 1) await assert.rejects(breaker.run(() => Promise.reject(refused())));
    assert.deepEqual(states, ['open']);
    clock.advance(20);
    let ran = false;
    await assert.rejects(breaker.run(async () => { ran = true; }), (e: PgResilientError) => e.code === ErrorCodes.CIRCUIT_OPEN && (e as unknown as { retryInMs: number }).retryInMs === 40);
    assert.equal(ran, false, 'an open breaker sends nothing');
    assert.equal(breaker.msUntilTrial(), 40);
    await sleep(80);
    assert.equal(breaker.state, 'half-open');
    // One probe at a time: while the trial runs, others are refused.
    let release!: () => void;
    const trial = breaker.run(() => new Promise<void>((r) => { release = r; }));
    await assert.rejects(breaker.run(async () => undefined), (e: PgResilientError) => e.code === ErrorCodes.CIRCUIT_OPEN);
    release();
    await trial;
    assert.deepEqual(states, ['open', 'half-open', 'closed']);
    breaker.shutdown();
  });

  test('a failed trial opens it again', async () => {
    const { breaker, states } = make();
    for (let i = 0; i < 4; i += 1) await assert.rejects(breaker.run(() => Promise.reject(refused())));
    await sleep(80);
    await assert.rejects(breaker.run(() => Promise.reject(refused())));
    assert.deepEqual(states, ['open', 'half-open', 'open']);
    breaker.shutdown();
  });

  test('reset (a new leader was discovered) closes an open breaker at once; counting goes on', async () => {
    const { breaker, states } = make();
    for (let i = 0; i < 4; i += 1) await assert.rejects(breaker.run(() => Promise.reject(refused())));
    assert.equal(breaker.state, 'open');
    breaker.reset();
    assert.equal(breaker.state, 'closed');
    assert.equal(breaker.msUntilTrial(), 0);
    assert.equal(await breaker.run(async () => 'new primary'), 'new primary', 'no wait for the reset timeout');
    await assert.rejects(breaker.run(() => Promise.reject(refused())));
    assert.equal(breaker.state, 'open', 'the window still holds the failures: one more opens it again');
    assert.deepEqual(states, ['open', 'closed', 'open']);
    breaker.reset();
    breaker.reset();
    assert.deepEqual(states, ['open', 'closed', 'open', 'closed'], 'a second reset of a closed breaker does nothing');
    breaker.shutdown();
  });

  test('syntax, constraint and auth errors never open it', async () => {
    const { breaker, states } = make();
    for (let i = 0; i < 20; i += 1) await assert.rejects(breaker.run(() => Promise.reject(syntax())), (e: Error) => e.message === 'syntax error');
    const auth = Object.assign(new Error('password authentication failed'), { code: '28P01', severity: 'FATAL' });
    for (let i = 0; i < 20; i += 1) await assert.rejects(breaker.run(() => Promise.reject(auth)));
    assert.deepEqual(states, []);
    assert.equal(breaker.state, 'closed');
    breaker.shutdown();
  });

  test('disabled: a pass-through', async () => {
    const breaker = new Breaker({ enabled: false, errorThresholdPercentage: 50, volumeThreshold: 1, resetTimeoutMs: 60, rollingWindowMs: 1000 }, new WarpClock(), () => assert.fail('no state changes'));
    for (let i = 0; i < 5; i += 1) await assert.rejects(breaker.run(() => Promise.reject(refused())));
    assert.equal(await breaker.run(async () => 7), 7);
  });
});
