import pRetry from 'p-retry';
import { classify, type Classification } from '../classify/classify.ts';
import { retrySafety, type FailurePhase, type RetrySafetyDecision } from '../classify/retry-safety.ts';
import { ErrorCodes, PgResilientError, describeError, poolEndedError, retriesExhaustedError, statementOutcomeUnknownError } from '../errors.ts';
import type { ResolvedRetry } from './policy-options.ts';
import { fullJitterDelay } from './backoff.ts';
import type { Random } from './clock.ts';
import type { Deadline } from './deadline.ts';

/** Each failure's classification, computed once: every rule on its way up reads the same answer. */
const CLASSIFIED = new WeakMap<object, Classification>();

/**
 * `classify(err)`, computed once per error object and kept with it: the retry rule, the
 * breaker's count, the pool's failure report and `callEnd` read one classification of one
 * failure. (`classify` reads only the error, which nothing changes once it was thrown.)
 */
export function classificationOf(err: unknown): Classification {
  if (typeof err !== 'object' || err === null) return classify(err);
  let c = CLASSIFIED.get(err);
  if (c === undefined) {
    c = classify(err);
    CLASSIFIED.set(err, c);
  }
  return c;
}

/** What an attempt throws: the failure, and where it happened. */
export class AttemptFailure extends Error {
  readonly failure: unknown;
  readonly phase: FailurePhase;
  /** Never retried, and the caller gets `failure` unchanged (the application ended the connection itself). */
  readonly final: boolean;

  /** What `failure` is (see `classify`), classified once where it was first caught. */
  get classification(): Classification {
    return classificationOf(this.failure);
  }

  constructor(failure: unknown, phase: FailurePhase, final = false) {
    super(describeError(failure));
    this.name = 'AttemptFailure';
    this.failure = failure;
    this.phase = phase;
    this.final = final;
  }
}

/** A failed attempt that will be retried, and why that is safe. */
export interface RetryEvent {
  /** Attempt that just failed, from 1. */
  readonly attempt: number;
  /** Backoff before the next attempt. */
  readonly delayMs: number;
  /** Failure class of the attempt (see `classify`). */
  readonly category: Classification['category'];
  /** Its error code (a PGR_ code or a SQLSTATE), if any. */
  readonly code: string | undefined;
  /** Where it failed: connecting, in flight, or during COMMIT. */
  readonly phase: FailurePhase;
  /** Why a retry is safe (from `retrySafety`). */
  readonly reason: RetrySafetyDecision['reason'];
  /** The error of the failed attempt. */
  readonly error: unknown;
}

/** A call that failed for the application: the last error and why no retry followed. */
export interface GiveUpEvent {
  /** Attempts made, from 1. */
  readonly attempts: number;
  /** Time spent on the call. */
  readonly elapsedMs: number;
  /** Failure class of the last error (see `classify`). */
  readonly category: Classification['category'];
  /** Its error code (a PGR_ code or a SQLSTATE), if any. */
  readonly code: string | undefined;
  /** Why we stopped: the failure may not be retried, the deadline/attempts ran out, or the pool was ended. */
  readonly reason: RetrySafetyDecision['reason'] | 'deadline' | 'max-attempts' | 'aborted' | 'pool-ended';
  /** The error the application got. */
  readonly error: unknown;
}

export interface RetryRun {
  readonly deadline: Deadline;
  readonly idempotent: boolean;
  readonly policy: ResolvedRetry;
  readonly random: Random;
  /** Called before each backoff; may refuse further attempts (e.g. breaker open past the deadline). */
  readonly onRetry?: (event: RetryEvent) => void;
  readonly onGiveUp?: (event: GiveUpEvent) => void;
  /** Extra wait a failure asks for before the next attempt (e.g. until the breaker's trial). */
  readonly minDelayFor?: (failure: unknown) => number;
  /**
   * Subscribes `wake` to the moment waiting is no longer useful (a new primary was found), and
   * returns what unsubscribes it: the backoff is cut short so callers reach the new primary at
   * once instead of after their jittered delay. Unsubscribed when the backoff ends either way,
   * so a pool that never fails over keeps nothing per retry.
   */
  readonly wakeUp?: (wake: () => void) => () => void;
  /**
   * True once the pool is ending: a call accepted before `end()` finishes what it is doing, but
   * a failure is not retried any more (a shutdown must not wait out an outage).
   */
  readonly stopping?: () => boolean;
  /**
   * `idempotent` holds only if this confirms it (a read calling functions: are they all
   * read-only?). Asked once, at the start of the first attempt that re-runs the statement after
   * it may have taken effect; false makes the call end as if it were not idempotent. It rejects
   * only with an AttemptFailure worth another attempt (the statement was not sent).
   */
  readonly confirmIdempotent?: () => Promise<boolean>;
}

/**
 * Runs `attempt` until it succeeds, the failure may not be retried (see `retrySafety`), or the
 * deadline or attempt budget is spent. p-retry drives the loop; the delays are ours (full jitter
 * from the injected random source, waited on the call's Deadline, so abort and deadline cut
 * them short). The error the caller gets:
 * - a failure that is not transient: the original error, unchanged (`23505` stays `23505`);
 * - a transient one that may have taken effect and is not idempotent: PGR_STATEMENT_OUTCOME_UNKNOWN;
 * - a transient one when the budget ran out: PGR_RETRIES_EXHAUSTED with the last failure as `cause`;
 * - the caller's hard deadline passed with the statement in flight: PGR_DEADLINE_EXCEEDED.
 */
export async function runWithRetry<T>(attempt: (attemptNumber: number) => Promise<T>, run: RetryRun): Promise<T> {
  // Fast path: nearly every call succeeds at once, and it should cost no more than that.
  let first: unknown;
  try {
    run.deadline.throwIfAborted();
    return await attempt(1);
  } catch (err) {
    first = err;
  }
  return retryAfterFailure(first, attempt, run);
}

/**
 * The retry loop after a first attempt failed with `first` (an AttemptFailure, or a failure
 * taken as a query failure). For callers whose first attempt ran elsewhere (the pool's fast path).
 */
export async function retryAfterFailure<T>(first: unknown, attempt: (attemptNumber: number) => Promise<T>, run: RetryRun): Promise<T> {
  let giveUpReason: GiveUpEvent['reason'] | undefined;
  let attempts = 1;
  let lastFailure: unknown;
  let replayFirst = true;
  // A read calling functions: confirmed read-only before it runs again, else not idempotent.
  let idempotent = run.idempotent;
  let toConfirm: AttemptFailure | undefined;
  let confirmed = false;

  try {
    return await pRetry(
      async (n: number) => {
        // p-retry's attempt 1 replays the failure of the fast path, so its rule decides on it.
        if (replayFirst) {
          replayFirst = false;
          throw first;
        }
        attempts = n;
        run.deadline.throwIfAborted();
        if (toConfirm !== undefined) {
          const lost = toConfirm;
          if (!(await run.confirmIdempotent!())) {
            idempotent = false;
            toConfirm = undefined;
            throw lost;
          }
          toConfirm = undefined;
          confirmed = true;
        }
        return attempt(n);
      },
      {
        retries: run.policy.maxAttempts - 1,
        minTimeout: 0,
        maxTimeout: 0,
        randomize: false,
        shouldRetry: async ({ error, attemptNumber }) => {
          const failure = error instanceof AttemptFailure ? error : new AttemptFailure(error, 'query');
          if (failure.final) {
            giveUpReason = 'not-transient';
            return false;
          }
          const classification = failure.classification;
          const decision = retrySafety({ classification, phase: failure.phase, idempotent });
          if (decision.reason === 'idempotent' && run.confirmIdempotent !== undefined && !confirmed) toConfirm ??= failure;
          if (decision.retry && run.stopping?.() === true) {
            giveUpReason = 'pool-ended';
            return false;
          }
          if (!decision.retry) {
            giveUpReason = decision.reason;
            return false;
          }
          lastFailure = failure.failure;
          const delayMs = Math.max(
            fullJitterDelay(attemptNumber - 1, run.policy, run.random),
            run.minDelayFor?.(failure.failure) ?? 0,
          );
          if (run.deadline.remainingMs() <= delayMs) {
            giveUpReason = 'deadline';
            return false;
          }
          run.onRetry?.({
            attempt: attemptNumber,
            delayMs,
            category: classification.category,
            code: classification.code,
            phase: failure.phase,
            reason: decision.reason,
            error: failure.failure,
          });
          await backoff(run, delayMs);
          return true;
        },
      },
    );
  } catch (err) {
    let final = finalError(err, giveUpReason, attempts, idempotent === run.idempotent ? run : { ...run, idempotent }, lastFailure);
    // Out of time or attempts before the functions could be confirmed read-only: the statement
    // may have taken effect and is not known to be a read.
    if (toConfirm !== undefined && (final.reason === 'deadline' || final.reason === 'max-attempts')) {
      final = finalError(toConfirm, undefined, attempts, { ...run, idempotent: false }, lastFailure);
    }
    const c = classificationOf(final.reportedFailure);
    run.onGiveUp?.({
      attempts,
      elapsedMs: run.deadline.elapsedMs(),
      category: c.category,
      code: c.code,
      reason: final.reason,
      error: final.error,
    });
    throw final.error;
  }
}

/** The backoff: `delayMs` on the call's deadline, cut short by `wakeUp`, leaving nothing subscribed. */
function backoff(run: RetryRun, delayMs: number): Promise<void> {
  const sleep = run.deadline.sleep(delayMs);
  if (run.wakeUp === undefined) return sleep;
  const subscribe = run.wakeUp;
  return new Promise<void>((resolve, reject) => {
    const unsubscribe = subscribe(resolve);
    sleep.then(resolve, reject).finally(unsubscribe);
  });
}

function finalError(
  thrown: unknown,
  giveUpReason: GiveUpEvent['reason'] | undefined,
  attempts: number,
  run: RetryRun,
  previous: unknown,
): { error: unknown; reason: GiveUpEvent['reason']; reportedFailure: unknown } {
  const elapsedMs = Math.round(run.deadline.elapsedMs());
  // Thrown by our own sleep/race: the caller aborted.
  if (thrown instanceof PgResilientError && thrown.code === ErrorCodes.ABORTED) {
    return { error: thrown, reason: 'aborted', reportedFailure: thrown };
  }
  const failure = thrown instanceof AttemptFailure ? thrown : new AttemptFailure(thrown, 'query');
  const inner = failure.failure;
  if (inner instanceof PgResilientError && inner.code === ErrorCodes.ABORTED) {
    return { error: withTotals(inner, attempts, elapsedMs), reason: 'aborted', reportedFailure: inner };
  }
  if (inner instanceof PgResilientError && inner.code === ErrorCodes.DEADLINE_EXCEEDED) {
    // With the statement in flight: its outcome is unknown, the caller must know that.
    if ((inner as { inFlight?: unknown }).inFlight === true) return { error: withTotals(inner, attempts, elapsedMs), reason: 'deadline', reportedFailure: inner };
    // While waiting (for a connection, a backoff): the budget ran out; say what was waited out.
    const waitedOut = inner.cause ?? previous;
    return { error: retriesExhaustedError('deadline', attempts, elapsedMs, waitedOut ?? inner), reason: 'deadline', reportedFailure: waitedOut ?? inner };
  }
  if (failure.final) return { error: inner, reason: 'not-transient', reportedFailure: inner };
  if (giveUpReason === 'pool-ended') {
    return {
      error: poolEndedError(`it was ended while this call was waiting to retry; last error: ${describeError(inner)}`, { cause: inner, attempts, elapsedMs }),
      reason: 'pool-ended',
      reportedFailure: inner,
    };
  }
  const decision = retrySafety({ classification: failure.classification, phase: failure.phase, idempotent: run.idempotent });
  if (!decision.retry && decision.reason === 'not-transient') {
    return { error: inner, reason: 'not-transient', reportedFailure: inner };
  }
  if (!decision.retry) {
    return {
      error: statementOutcomeUnknownError(inner, attempts, elapsedMs),
      reason: 'may-have-taken-effect',
      reportedFailure: inner,
    };
  }
  const reason = giveUpReason === 'deadline' || run.deadline.expired() ? 'deadline' : 'max-attempts';
  return { error: retriesExhaustedError(reason, attempts, elapsedMs, inner), reason, reportedFailure: inner };
}

function withTotals(err: PgResilientError, attempts: number, elapsedMs: number): PgResilientError {
  err.attempts = attempts;
  err.elapsedMs = elapsedMs;
  return err;
}

