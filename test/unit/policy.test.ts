import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { backoffDelays, fullJitterDelay } from '../../src/policy/backoff.ts';
import { Deadline } from '../../src/policy/deadline.ts';
import { AttemptFailure, runWithRetry, type GiveUpEvent, type RetryEvent } from '../../src/policy/retry.ts';
import { ErrorCodes, PgResilientError } from '../../src/errors.ts';
import { WarpClock, sequence } from '../helpers/fake-clock.ts';

const policy = { maxElapsedMs: 10_000, initialDelayMs: 100, maxDelayMs: 1000, multiplier: 2, maxAttempts: Infinity };
const refused = (): Error => Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' });
const reset = (): Error => Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' });

describe('full-jitter backoff', () => {
  test('delays are uniform below a growing, capped ceiling', () => {
    const gen = backoffDelays(policy, sequence(0.5));
    assert.deepEqual(Array.from({ length: 6 }, () => gen.next().value), [50, 100, 200, 400, 500, 500]);
  });
  test('random 0 gives 0 and random just below 1 stays below the ceiling', () => {
    assert.equal(fullJitterDelay(3, policy, () => 0), 0);
    assert.equal(fullJitterDelay(3, policy, () => 0.999999), 799);
  });
});

describe('Deadline', () => {
  test('sleep is cut short by the deadline', async () => {
    const clock = new WarpClock();
    const d = new Deadline(clock, 300);
    await d.sleep(1000);
    assert.equal(clock.now(), 300);
    assert.equal(d.expired(), true);
  });
  test('abort rejects a sleep with PGR_ABORTED', async () => {
    const clock = new WarpClock();
    const ac = new AbortController();
    const d = new Deadline(clock, 10_000, ac.signal);
    const p = d.sleep(5000);
    ac.abort(new Error('client went away'));
    await assert.rejects(p, (e: PgResilientError) => e.code === ErrorCodes.ABORTED && (e.cause as Error).message === 'client went away');
  });
  test('race rejects with the timeout error when work is slower than the deadline', async () => {
    const clock = new WarpClock();
    const d = new Deadline(clock, 50);
    await assert.rejects(d.race(new Promise(() => undefined), () => new Error('late')), /late/);
  });
});

describe('runWithRetry', () => {
  test('retries never-sent failures with exact jittered delays, then succeeds', async () => {
    const clock = new WarpClock();
    const retries: RetryEvent[] = [];
    let n = 0;
    const result = await runWithRetry(async () => {
      n += 1;
      if (n < 4) throw new AttemptFailure(refused(), 'connect');
      return 'ok';
    }, { deadline: new Deadline(clock, 10_000), idempotent: false, policy, random: sequence(0.5), onRetry: (e) => retries.push(e) });
    assert.equal(result, 'ok');
    assert.deepEqual(retries.map((r) => r.delayMs), [50, 100, 200]);
    assert.deepEqual(retries.map((r) => r.reason), ['never-sent', 'never-sent', 'never-sent']);
    assert.equal(clock.now(), 350);
  });

  test('a plain write lost mid-flight is not retried: PGR_STATEMENT_OUTCOME_UNKNOWN', async () => {
    const clock = new WarpClock();
    let n = 0;
    const giveUps: GiveUpEvent[] = [];
    await assert.rejects(runWithRetry(async () => {
      n += 1;
      throw new AttemptFailure(reset(), 'query');
    }, { deadline: new Deadline(clock, 10_000), idempotent: false, policy, random: sequence(0.5), onGiveUp: (e) => giveUps.push(e) }),
    (e: PgResilientError) => e.code === ErrorCodes.STATEMENT_OUTCOME_UNKNOWN && (e.cause as Error).message === 'read ECONNRESET');
    assert.equal(n, 1);
    assert.equal(giveUps[0]?.reason, 'may-have-taken-effect');
  });

  test('the same failure of an idempotent statement is retried', async () => {
    const clock = new WarpClock();
    let n = 0;
    const r = await runWithRetry(async () => {
      n += 1;
      if (n === 1) throw new AttemptFailure(reset(), 'query');
      return n;
    }, { deadline: new Deadline(clock, 10_000), idempotent: true, policy, random: sequence(0.5) });
    assert.equal(r, 2);
  });

  test('a read calling functions runs again only once they are confirmed read-only, asked once before the re-run', async () => {
    for (const readOnly of [true, false]) {
      const clock = new WarpClock();
      const log: string[] = [];
      const run = runWithRetry(async () => {
        log.push('attempt');
        if (log.length === 1) throw new AttemptFailure(reset(), 'query');
        return 'ok';
      }, { deadline: new Deadline(clock, 10_000), idempotent: true, policy, random: sequence(0.5), confirmIdempotent: async () => {
        log.push('confirm');
        return readOnly;
      } });
      if (readOnly) assert.equal(await run, 'ok');
      else await assert.rejects(run, (e: PgResilientError) => e.code === ErrorCodes.STATEMENT_OUTCOME_UNKNOWN && (e.cause as Error).message === 'read ECONNRESET');
      assert.deepEqual(log, readOnly ? ['attempt', 'confirm', 'attempt'] : ['attempt', 'confirm']);
    }
  });

  test('a lookup that fails is tried again; out of time before it succeeds, the outcome is unknown', async () => {
    const clock = new WarpClock();
    let confirms = 0;
    await assert.rejects(runWithRetry(async () => { throw new AttemptFailure(reset(), 'query'); }, {
      deadline: new Deadline(clock, 2000), idempotent: true, policy, random: sequence(0.5),
      confirmIdempotent: async () => {
        confirms += 1;
        throw new AttemptFailure(refused(), 'connect');
      },
    }), (e: PgResilientError) => e.code === ErrorCodes.STATEMENT_OUTCOME_UNKNOWN);
    assert.ok(confirms >= 2, `lookups: ${confirms}`);
    // A failure before the statement was sent needs no confirmation.
    let asked = 0;
    let n = 0;
    assert.equal(await runWithRetry(async () => {
      n += 1;
      if (n === 1) throw new AttemptFailure(refused(), 'connect');
      return n;
    }, { deadline: new Deadline(clock, 10_000), idempotent: true, policy, random: sequence(0.5), confirmIdempotent: async () => (asked += 1) > 0 }), 2);
    assert.equal(asked, 0);
  });

  test('a non-transient error comes back unchanged after one attempt', async () => {
    const clock = new WarpClock();
    const dup = Object.assign(new Error('duplicate key'), { code: '23505', severity: 'ERROR' });
    await assert.rejects(runWithRetry(async () => { throw new AttemptFailure(dup, 'query'); },
      { deadline: new Deadline(clock, 10_000), idempotent: true, policy, random: sequence(0.5) }), (e) => e === dup);
  });

  test('gives up with PGR_RETRIES_EXHAUSTED when the next delay does not fit', async () => {
    const clock = new WarpClock();
    let n = 0;
    await assert.rejects(runWithRetry(async () => {
      n += 1;
      throw new AttemptFailure(refused(), 'connect');
    }, { deadline: new Deadline(clock, 1000), idempotent: false, policy, random: sequence(0.99) }),
    (e: PgResilientError) => e.code === ErrorCodes.RETRIES_EXHAUSTED && e.attempts === n && (e.cause as { code: string }).code === 'ECONNREFUSED');
    assert.ok(clock.now() <= 1000, `waited ${clock.now()} ms past a 1000 ms deadline`);
  });

  test('abort stops the loop with PGR_ABORTED', async () => {
    const clock = new WarpClock();
    const ac = new AbortController();
    let n = 0;
    await assert.rejects(runWithRetry(async () => {
      n += 1;
      if (n === 3) ac.abort();
      throw new AttemptFailure(refused(), 'connect');
    }, { deadline: new Deadline(clock, 10_000, ac.signal), idempotent: false, policy, random: sequence(0.5) }),
    (e: PgResilientError) => e.code === ErrorCodes.ABORTED);
    assert.equal(n, 3);
  });

  test('maxAttempts bounds the attempts', async () => {
    const clock = new WarpClock();
    let n = 0;
    await assert.rejects(runWithRetry(async () => {
      n += 1;
      throw new AttemptFailure(refused(), 'connect');
    }, { deadline: new Deadline(clock, 10_000), idempotent: false, policy: { ...policy, maxAttempts: 3 }, random: sequence(0.5) }),
    (e: PgResilientError) => e.code === ErrorCodes.RETRIES_EXHAUSTED && /maxAttempts/.test(e.message));
    assert.equal(n, 3);
  });
});
