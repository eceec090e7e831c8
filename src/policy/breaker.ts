import CircuitBreaker from 'opossum';
import { ErrorCodes, PgResilientError, circuitOpenError } from '../errors.ts';
import type { ResolvedBreaker } from './policy-options.ts';
import type { Clock } from './clock.ts';
import { AttemptFailure, classificationOf } from './retry.ts';

/**
 * The circuit breaker's state: `closed` (normal), `open` (calls wait), `half-open` (one trial
 * call).
 */
export type BreakerState = 'closed' | 'open' | 'half-open';

/**
 * The circuit breaker (opossum) around each attempt. Mechanism only: which failures count is
 * the classifier's `countsForBreaker` (auth, syntax and pool-saturation errors never trip it),
 * and never a `serverBusy` failure (53300, 57P03: the server is there, just full or starting).
 * An open breaker rejects with PGR_CIRCUIT_OPEN, a failure that was never sent, so the retry
 * policy waits for the half-open trial while the caller's deadline allows.
 */
export class Breaker {
  readonly #breaker: CircuitBreaker<[() => Promise<unknown>], unknown> | undefined;
  readonly #clock: Clock;
  readonly #resetTimeoutMs: number;
  #openedAt = 0;
  #state: BreakerState = 'closed';
  #shutdown = false;
  readonly #rollingWindowMs: number;
  /** Until then every call goes through opossum; before the first failure none need to. */
  #engagedUntil = -Infinity;

  constructor(options: ResolvedBreaker, clock: Clock, onStateChange: (state: BreakerState) => void) {
    this.#clock = clock;
    this.#resetTimeoutMs = options.resetTimeoutMs;
    this.#rollingWindowMs = options.rollingWindowMs;
    if (!options.enabled) return;
    this.#breaker = new CircuitBreaker((fn: () => Promise<unknown>) => fn(), {
      timeout: false,
      resetTimeout: options.resetTimeoutMs,
      errorThresholdPercentage: options.errorThresholdPercentage,
      volumeThreshold: options.volumeThreshold,
      rollingCountTimeout: options.rollingWindowMs,
      rollingCountBuckets: 10,
      enableSnapshots: false,
      // Latency percentiles per bucket cost a sort on every call; we only need counts.
      rollingPercentilesEnabled: false,
      // true = "this error says nothing about the database's health": not counted.
      errorFilter: (err: unknown) => !counts(err),
    });
    const set = (state: BreakerState) => (): void => {
      if (state === 'open') this.#openedAt = this.#clock.now();
      // Closing after trouble keeps counting for a window, in case the trouble comes back.
      if (state === 'closed') this.#engagedUntil = this.#clock.now() + this.#rollingWindowMs;
      this.#state = state;
      onStateChange(state);
    };
    this.#breaker.on('open', set('open'));
    this.#breaker.on('halfOpen', set('half-open'));
    this.#breaker.on('close', set('closed'));
  }

  get state(): BreakerState {
    return this.#state;
  }

  /** Time until an open breaker lets a trial call through; 0 when not open. */
  msUntilTrial(): number {
    if (this.#state !== 'open') return 0;
    return Math.max(0, this.#openedAt + this.#resetTimeoutMs - this.#clock.now());
  }

  /**
   * True while calls need no breaker bookkeeping: closed, and no countable failure within the
   * last statistics window. The pool's fast path then runs a statement without `run` (with its
   * own reading of the clock) and reports a failure with `noteFailure`.
   */
  healthyAt(now: number): boolean {
    return this.#breaker === undefined || this.#shutdown || (this.#state === 'closed' && now > this.#engagedUntil);
  }

  /**
   * One attempt of a retry loop through the breaker: an open breaker's refusal comes back as an
   * AttemptFailure of phase 'connect' (nothing was sent), so the retry rule waits for its trial.
   */
  attempt<T>(fn: () => Promise<T>): Promise<T> {
    return this.run(fn).catch((err: unknown) => {
      if (err instanceof PgResilientError && err.code === ErrorCodes.CIRCUIT_OPEN) throw new AttemptFailure(err, 'connect');
      throw err;
    });
  }

  async run<T>(fn: () => Promise<T>): Promise<T> {
    // After shutdown (pool.end()) calls in flight go straight through and meet the ended pool.
    if (this.#breaker === undefined || this.#shutdown) return fn();
    if (this.healthyAt(this.#clock.now())) return this.#healthy(fn);
    return this.#guarded(fn);
  }

  /**
   * A call made while `healthyAt` was true failed with `err`: if it says something about the database's
   * health, opossum records it and counts every call for the next window.
   */
  async noteFailure(err: unknown): Promise<void> {
    if (this.#breaker === undefined || this.#shutdown || !counts(err)) return;
    this.#engagedUntil = this.#clock.now() + this.#rollingWindowMs;
    await this.#breaker.fire(() => Promise.reject(err)).catch(() => undefined);
  }

  /**
   * While the database has not failed for a whole statistics window, calls skip opossum (its
   * bookkeeping is most of a fast query's overhead). The first countable failure engages it:
   * that failure is recorded, and for the next window every call is counted by opossum, so its
   * error percentage is computed over the troubled period, where it matters.
   */
  async #healthy<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      await this.noteFailure(err);
      throw err;
    }
  }

  async #guarded<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return (await this.#breaker!.fire(fn)) as T;
    } catch (err) {
      if ((err as { code?: unknown }).code === 'EOPENBREAKER') {
        throw circuitOpenError(this.msUntilTrial());
      }
      throw err;
    }
  }

  /**
   * The failures that opened the breaker were against a primary that is gone (discovery saw a
   * new leader): close it, so callers try the new primary now instead of after the reset
   * timeout. Counting goes on; if the new primary fails too, it opens again.
   */
  reset(): void {
    if (this.#breaker === undefined || this.#shutdown || this.#state === 'closed') return;
    this.#breaker.close();
  }

  shutdown(): void {
    this.#shutdown = true;
    this.#breaker?.shutdown();
  }
}

/**
 * Does this failure count against the database's health? A server that answers "too many
 * clients" (53300), "cannot connect now" (57P03) or a pooler that is full is up: opening the
 * breaker on a connection storm would turn a few seconds of backoff into refused calls for
 * `resetTimeoutMs`, for every caller at once (issue #18).
 */
function counts(err: unknown): boolean {
  // Attempts throw AttemptFailure wrappers; the breaker judges the failure inside, as classified once.
  const c = err instanceof AttemptFailure ? err.classification : classificationOf(unwrap(err));
  return c.countsForBreaker && !c.serverBusy;
}

function unwrap(err: unknown): unknown {
  return typeof err === 'object' && err !== null && 'failure' in err ? (err as { failure: unknown }).failure : err;
}
