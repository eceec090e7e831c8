import type { FunctionName } from '../classify/function-calls.ts';
import { ErrorCodes, PgResilientError } from '../errors.ts';
import type { CatalogQuery } from '../pool/function-volatility.ts';
import { fullJitterDelay, type BackoffOptions } from './backoff.ts';
import type { Breaker } from './breaker.ts';
import type { Random } from './clock.ts';
import type { Deadline } from './deadline.ts';
import type { Repeatable } from './idempotency.ts';
import type { ResolvedRetry } from './policy-options.ts';
import { retryAfterFailure, runWithRetry, type AttemptFailure, type GiveUpEvent, type RetryEvent, type RetryRun } from './retry.ts';

/** What the call policy is built from, once per pool: its settings, its breaker, and its ways out. */
export interface CallPolicyHost {
  readonly retry: ResolvedRetry;
  readonly random: Random;
  readonly breaker: Breaker;
  /** A failed attempt will be retried (counted, published). */
  onRetry(event: RetryEvent): void;
  /** A call failed for the application (counted, published). */
  onGiveUp(event: GiveUpEvent): void;
  /** Subscribes `wake` to a new primary; returns what unsubscribes it (see `RetryRun.wakeUp`). */
  wakeUp(wake: () => void): () => void;
  /** The pool is ending: no more retries. */
  stopping(): boolean;
  /** Are all of `functions` read-only (pg_proc, asked with `lookUp`)? See `FunctionVolatility.confirm`. */
  readOnly(functions: readonly FunctionName[], lookUp: CatalogQuery): Promise<boolean>;
}

/** One call through the policy: its deadline, and what decides whether it may run again. */
export interface Call {
  readonly deadline: Deadline;
  /**
   * May the work run twice (retry-safety's `idempotent`)? An object: a read calling functions,
   * idempotent once they are found read-only, looked up with `lookUp` only when it was lost in
   * flight and is about to run again.
   */
  readonly repeat: Repeatable;
  /** Where the functions of `repeat` are looked up: the connection the next attempt would take. */
  readonly lookUp?: CatalogQuery;
}

/**
 * The pool's one composition of its policies, built once: deadline ∘ breaker ∘ retry. Every
 * call that may be retried goes through it (the pool's statements, lent clients, transactions),
 * each with its own retry-safety input (`Call.repeat`); each attempt (or the part of it that
 * reaches the primary) goes through the breaker with `guarded`. The retry loop itself is
 * policy/retry.ts, the breaker policy/breaker.ts, the delays policy/backoff.ts.
 */
export class CallPolicy {
  readonly #host: CallPolicyHost;

  constructor(host: CallPolicyHost) {
    this.#host = host;
  }

  /** Runs `attempt` until it succeeds or the retry rule gives up. */
  run<T>(call: Call, attempt: (attemptNumber: number) => Promise<T>): Promise<T> {
    return runWithRetry(attempt, this.#retryRun(call));
  }

  /** `run`, each attempt through the breaker. */
  runGuarded<T>(call: Call, attempt: () => Promise<T>): Promise<T> {
    return runWithRetry(() => this.guarded(attempt), this.#retryRun(call));
  }

  /**
   * A call whose first attempt ran outside the policy (a fast path, with the breaker healthy)
   * and failed with `first`: the breaker counts it, then the retry loop takes over.
   */
  async continueAfter<T>(first: AttemptFailure, call: Call, attempt: (attemptNumber: number) => Promise<T>): Promise<T> {
    const run = this.#retryRun(call);
    await this.#host.breaker.noteFailure(first);
    return retryAfterFailure(first, attempt, run);
  }

  /**
   * One attempt through the breaker: an open breaker's refusal is an AttemptFailure of phase
   * 'connect' (nothing was sent), which the retry rule waits out (see `minDelayFor`).
   */
  guarded<T>(fn: () => Promise<T>): Promise<T> {
    return this.#host.breaker.attempt(fn);
  }

  /** The retry loop's settings for one call. */
  #retryRun(call: Call): RetryRun {
    const h = this.#host;
    const { deadline, repeat, lookUp } = call;
    return {
      deadline,
      idempotent: repeat !== false,
      // Without a place to look them up, the functions are not known read-only: not idempotent.
      ...(typeof repeat === 'object' ? { confirmIdempotent: () => lookUp === undefined ? Promise.resolve(false) : h.readOnly(repeat.functions, lookUp) } : {}),
      policy: h.retry,
      random: h.random,
      onRetry: (event) => h.onRetry(event),
      onGiveUp: (event) => h.onGiveUp(event),
      wakeUp: (wake) => h.wakeUp(wake),
      stopping: () => h.stopping(),
      // An open breaker: the next attempt waits at least until its trial call.
      minDelayFor: (failure) => failure instanceof PgResilientError && failure.code === ErrorCodes.CIRCUIT_OPEN ? h.breaker.msUntilTrial() : 0,
    };
  }
}

/** What one round of `repeatWithBackoff` came to: a value (done), or 'again' after a pause. */
export type Round<T> = { readonly value: T } | 'again';

/** The pauses of `repeatWithBackoff`. */
export interface BackoffLoop {
  readonly deadline: Deadline;
  readonly backoff: BackoffOptions;
  readonly random: Random;
  /** Called before each pause, with its length and the round that asked for it (from 0). */
  readonly beforePause?: (delayMs: number, round: number) => void;
  /** The pause itself; defaults to `deadline.sleep(delayMs)`. */
  readonly pause?: (delayMs: number) => Promise<void>;
}

/**
 * Runs `round(n)` (n from 0) until it gives a value or throws, pausing between rounds for the
 * policy's jittered backoff (`fullJitterDelay(n)`). When the next pause would not end before the
 * deadline it stops and answers 'again' (the caller says what running out of time means). For
 * loops whose rule is not the retry rule's (`retryable`, asking the primary about a lost COMMIT).
 */
export async function repeatWithBackoff<T>(loop: BackoffLoop, round: (n: number) => Promise<Round<T>>): Promise<Round<T>> {
  for (let n = 0; ; n += 1) {
    const r = await round(n);
    if (r !== 'again') return r;
    const delayMs = fullJitterDelay(n, loop.backoff, loop.random);
    if (loop.deadline.remainingMs() <= delayMs) return 'again';
    loop.beforePause?.(delayMs, n);
    await (loop.pause === undefined ? loop.deadline.sleep(delayMs) : loop.pause(delayMs));
  }
}
