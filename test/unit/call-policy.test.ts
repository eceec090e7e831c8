// The pool's one call policy (src/policy/call-policy.ts): deadline ∘ breaker ∘ retry composed in
// one module, each caller bringing its own retry-safety input. Time is the injected WarpClock,
// randomness a fixed sequence, so the delays asserted are exact.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Breaker } from '../../src/policy/breaker.ts';
import { CallPolicy, repeatWithBackoff, type CallPolicyHost } from '../../src/policy/call-policy.ts';
import { Deadline } from '../../src/policy/deadline.ts';
import { AttemptFailure, type GiveUpEvent, type RetryEvent } from '../../src/policy/retry.ts';
import { ErrorCodes, type PgResilientError } from '../../src/errors.ts';
import { WarpClock, sequence } from '../helpers/fake-clock.ts';
import { ROOT, SRC, sourceFiles } from '../helpers/src-tree.ts';

/** Where retry and breaker may be composed by hand: only src/policy/. */
const COMPOSING = /\b(?:breaker\.attempt|breaker\.noteFailure|runWithRetry|retryAfterFailure)\(/;

function composingLines(file: string, text: string): string[] {
  return text.split('\n').flatMap((line, i) => (COMPOSING.test(line) ? [`${file}:${i + 1}: ${line.trim()}`] : []));
}

describe('retry and breaker are composed in one module', () => {
  test('no file of src/ outside src/policy/ calls breaker.attempt, breaker.noteFailure, runWithRetry or retryAfterFailure', () => {
    const found = sourceFiles()
      .filter((f) => !f.startsWith(path.join(SRC, 'policy') + path.sep))
      .flatMap((f) => composingLines(path.relative(ROOT, f), readFileSync(f, 'utf8')));
    assert.deepEqual(found, [], `compose through CallPolicy (src/policy/call-policy.ts) instead:\n${found.join('\n')}`);
  });

  test('the scan would catch one (sample text)', () => {
    const sample = [
      "const result = await runWithRetry(() => attempt(), run);",
      "return this.#s.breaker.attempt(async () => work());",
      "await s.breaker.noteFailure(first);",
      "return retryAfterFailure(first, attempt, run);",
      "return this.policy.run(call, attempt); // fine",
    ].join('\n');
    assert.equal(composingLines('sample.ts', sample).length, 4);
  });
});

const retry = { maxElapsedMs: 10_000, initialDelayMs: 100, maxDelayMs: 1000, multiplier: 2, maxAttempts: Infinity };
const refused = (): Error => Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' });
const reset = (): Error => Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' });

interface Made {
  policy: CallPolicy;
  clock: WarpClock;
  breaker: Breaker;
  retries: RetryEvent[];
  giveUps: GiveUpEvent[];
  asked: number;
}

function make(options: { breaker?: boolean; random?: () => number; readOnly?: boolean } = {}): Made {
  const clock = new WarpClock();
  const breaker = new Breaker({ enabled: options.breaker ?? false, errorThresholdPercentage: 50, volumeThreshold: 2, resetTimeoutMs: 30, rollingWindowMs: 10_000 }, clock, () => undefined);
  const made: Made = { policy: undefined as unknown as CallPolicy, clock, breaker, retries: [], giveUps: [], asked: 0 };
  const host: CallPolicyHost = {
    retry,
    random: options.random ?? sequence(0.5),
    breaker,
    onRetry: (e) => made.retries.push(e),
    onGiveUp: (e) => made.giveUps.push(e),
    wakeUp: () => () => undefined,
    stopping: () => false,
    readOnly: async () => {
      made.asked += 1;
      return options.readOnly ?? true;
    },
  };
  made.policy = new CallPolicy(host);
  return made;
}

describe('CallPolicy', () => {
  test('stops at the deadline: delays on the injected clock, PGR_RETRIES_EXHAUSTED with the last failure', async () => {
    const m = make();
    const deadline = new Deadline(m.clock, 1000);
    let attempts = 0;
    await assert.rejects(m.policy.runGuarded({ deadline, repeat: false }, async () => {
      attempts += 1;
      throw new AttemptFailure(refused(), 'connect');
    }), (e: PgResilientError) => e.code === ErrorCodes.RETRIES_EXHAUSTED && (e.cause as Error).message.includes('ECONNREFUSED'));
    // Delays 50, 100, 200, 400 (random 0.5): the fifth (500) would end past 1000.
    assert.deepEqual(m.retries.map((r) => r.delayMs), [50, 100, 200, 400]);
    assert.equal(attempts, 5);
    assert.equal(m.clock.now(), 750);
    assert.deepEqual(m.giveUps.map((g) => [g.reason, g.attempts]), [['deadline', 5]]);
    m.breaker.shutdown();
  });

  test('the caller\'s retry-safety input is consulted for each failure', async () => {
    // Lost in flight, not idempotent: not run again.
    const m = make();
    await assert.rejects(m.policy.run({ deadline: new Deadline(m.clock, 10_000), repeat: false }, async () => {
      throw new AttemptFailure(reset(), 'query');
    }), (e: PgResilientError) => e.code === ErrorCodes.STATEMENT_OUTCOME_UNKNOWN);
    assert.equal(m.retries.length, 0);
    // Idempotent: run again.
    let n = 0;
    assert.equal(await m.policy.run({ deadline: new Deadline(m.clock, 10_000), repeat: true }, async () => {
      n += 1;
      if (n < 3) throw new AttemptFailure(reset(), 'query');
      return 'ok';
    }), 'ok');
    assert.deepEqual(m.retries.map((r) => r.reason), ['idempotent', 'idempotent']);
    m.breaker.shutdown();
  });

  test('a read calling functions: asked once before it runs again; not read-only ends it as not idempotent', async () => {
    const yes = make();
    let n = 0;
    const lookUp = async (): Promise<Array<Record<string, unknown>>> => [];
    assert.equal(await yes.policy.run({ deadline: new Deadline(yes.clock, 10_000), repeat: { functions: [{ name: 'f' }] }, lookUp }, async () => {
      n += 1;
      if (n < 3) throw new AttemptFailure(reset(), 'query');
      return 'ok';
    }), 'ok');
    assert.equal(yes.asked, 1);
    const no = make({ readOnly: false });
    await assert.rejects(no.policy.run({ deadline: new Deadline(no.clock, 10_000), repeat: { functions: [{ name: 'f' }] }, lookUp }, async () => {
      throw new AttemptFailure(reset(), 'query');
    }), (e: PgResilientError) => e.code === ErrorCodes.STATEMENT_OUTCOME_UNKNOWN);
    assert.equal(no.asked, 1);
    yes.breaker.shutdown();
    no.breaker.shutdown();
  });

  test('an open breaker: the next attempt waits at least until its trial', async () => {
    const m = make({ breaker: true, random: () => 0 });
    for (let i = 0; i < 2; i += 1) await assert.rejects(m.breaker.run(() => Promise.reject(refused())));
    assert.equal(m.breaker.state, 'open');
    const result = await m.policy.runGuarded({ deadline: new Deadline(m.clock, 10_000), repeat: false }, async () => 'ok');
    assert.equal(result, 'ok');
    const first = m.retries[0]!;
    assert.equal(first.code, ErrorCodes.CIRCUIT_OPEN);
    assert.equal(first.delayMs, 30, 'the jitter is 0; the wait is the time until the trial');
    m.breaker.shutdown();
  });

  test('continueAfter: a failure of a first attempt made outside the policy engages the breaker', async () => {
    const m = make({ breaker: true });
    assert.equal(m.breaker.healthyAt(m.clock.now()), true);
    const result = await m.policy.continueAfter(new AttemptFailure(refused(), 'connect'), { deadline: new Deadline(m.clock, 10_000), repeat: false }, async () => 'ok');
    assert.equal(result, 'ok');
    assert.equal(m.breaker.healthyAt(m.clock.now()), false, 'counted: the breaker watches the next window');
    assert.equal(m.retries.length, 1);
    m.breaker.shutdown();
  });
});

describe('a failure is classified once', () => {
  test('every AttemptFailure of one error reads the same classification', () => {
    const err = reset();
    const a = new AttemptFailure(err, 'query');
    const b = new AttemptFailure(err, 'connect');
    assert.equal(a.classification, b.classification);
    assert.equal(a.classification.code, 'ECONNRESET');
  });
});

describe('repeatWithBackoff', () => {
  test('pauses with the policy\'s delays and stops when the next would pass the deadline', async () => {
    const clock = new WarpClock();
    const deadline = new Deadline(clock, 1000);
    const pauses: Array<[number, number]> = [];
    const rounds: number[] = [];
    const r = await repeatWithBackoff<string>({ deadline, backoff: retry, random: sequence(0.5), beforePause: (ms, n) => pauses.push([ms, n]) }, async (n) => {
      rounds.push(n);
      return 'again';
    });
    assert.equal(r, 'again');
    assert.deepEqual(rounds, [0, 1, 2, 3, 4]);
    assert.deepEqual(pauses, [[50, 0], [100, 1], [200, 2], [400, 3]]);
    assert.equal(clock.now(), 750);
  });

  test('a value ends it; a throw ends it', async () => {
    const clock = new WarpClock();
    const deadline = new Deadline(clock, 1000);
    assert.deepEqual(await repeatWithBackoff({ deadline, backoff: retry, random: sequence(0.5) }, async (n) => (n === 2 ? { value: n } : 'again')), { value: 2 });
    await assert.rejects(repeatWithBackoff({ deadline, backoff: retry, random: sequence(0.5) }, async () => {
      throw new Error('boom');
    }), /boom/);
  });
});
