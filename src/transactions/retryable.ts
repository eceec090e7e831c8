import { ErrorCodes, PgResilientError, whileError } from '../errors.ts';
import { duration } from '../option-checks.ts';
import { resolveOptions } from '../options.ts';
import type { ResolvedRetry } from '../policy/policy-options.ts';
import { repeatWithBackoff } from '../policy/call-policy.ts';
import { systemClock, systemRandom, type Clock, type Random } from '../policy/clock.ts';
import { Deadline } from '../policy/deadline.ts';

/** Options of `retryable(fn)` and `pool.retryable(fn)`. */
export interface RetryableOptions {
  /** Total time for all runs of `fn`. Defaults to the pool's `retry.maxElapsedMs` (15000). */
  maxElapsedMs?: number;
  /** Runs of `fn` at most, the first included. Defaults to 10. */
  maxAttempts?: number;
  /** Stops waiting for the next run. */
  signal?: AbortSignal;
  /** Called before each re-run with the error that caused it and the number of the run that failed (from 1). */
  onRetry?: (error: unknown, attempt: number) => void;
}

/** What the loop needs from the pool (its clock, random source and backoff), or the defaults. */
export interface RetryableSettings {
  readonly clock: Clock;
  readonly random: Random;
  readonly retry: ResolvedRetry;
}

const RERUNNABLE = new Set<string>([ErrorCodes.TRANSACTION_ROLLED_BACK, ErrorCodes.REPLAY_DIVERGED]);
const IN_MESSAGE = /\b(PGR_TRANSACTION_ROLLED_BACK|PGR_REPLAY_DIVERGED)\b/;

/**
 * Did `err` come from a transaction that certainly did not commit (PGR_TRANSACTION_ROLLED_BACK
 * or PGR_REPLAY_DIVERGED)? ORMs wrap a driver's errors, so the error's causes are searched too:
 * `cause`, TypeORM's `driverError`, Sequelize's `original`/`parent`, Prisma's
 * `meta.driverAdapterError`, an AggregateError's `errors`; and, for wrappers that keep only the
 * text, the message (these two errors name their code in it).
 */
export function isRerunnable(err: unknown): boolean {
  const seen = new Set<unknown>();
  const queue: unknown[] = [err];
  while (queue.length > 0 && seen.size < 32) {
    const e = queue.shift();
    if (typeof e !== 'object' || e === null || seen.has(e)) continue;
    seen.add(e);
    const o = e as Record<string, unknown>;
    if (typeof o.code === 'string' && RERUNNABLE.has(o.code)) return true;
    if (typeof o.message === 'string' && IN_MESSAGE.test(o.message)) return true;
    for (const key of ['cause', 'driverError', 'original', 'parent', 'originalError', 'meta', 'driverAdapterError']) queue.push(o[key]);
    if (Array.isArray(o.errors)) queue.push(...o.errors);
  }
  return false;
}

/**
 * Runs `fn` and runs it again when it failed only because its transaction did not commit
 * (see `isRerunnable`), with a short jittered pause, until it succeeds, fails otherwise, or the
 * time or attempts run out (then the last error is thrown as it came).
 */
export async function runRetryable<T>(fn: (attempt: number) => Promise<T> | T, settings: RetryableSettings, options: RetryableOptions = {}): Promise<T> {
  if (typeof fn !== 'function') throw new TypeError('pg-resilient: retryable(fn) expects a function');
  if (typeof options !== 'object' || options === null) throw new TypeError('pg-resilient: retryable options must be an object');
  const maxAttempts = options.maxAttempts ?? 10;
  if (!Number.isInteger(maxAttempts) || maxAttempts < 1) throw new TypeError('pg-resilient: retryable option maxAttempts must be an integer ≥ 1');
  const deadline = new Deadline(settings.clock, duration('retryable.maxElapsedMs', options.maxElapsedMs, settings.retry.maxElapsedMs, 0), options.signal);
  // The error of the last run: the one a pause comes after, and the one thrown out of time.
  let last: unknown;
  const done = await repeatWithBackoff<T>({
    deadline,
    backoff: settings.retry,
    random: settings.random,
    beforePause: (_delayMs, n) => options.onRetry?.(last, n + 1),
    pause: async (delayMs) => {
      try {
        await deadline.sleep(delayMs);
      } catch (abort) {
        throw abort instanceof PgResilientError ? whileError(abort, 'while waiting to run again after', last) : abort;
      }
    },
  }, async (n) => {
    try {
      return { value: await fn(n + 1) };
    } catch (err) {
      if (!isRerunnable(err) || n + 1 >= maxAttempts) throw err;
      last = err;
      return 'again';
    }
  });
  if (done === 'again') throw last;
  return done.value;
}

let defaults: RetryableSettings | undefined;

/**
 * Runs `fn` — typically one call of an ORM's transaction API — and runs it again, within
 * `maxElapsedMs`, when it failed only because its transaction did not commit:
 * PGR_TRANSACTION_ROLLED_BACK (the connection was lost and the transaction could not be
 * continued, or its COMMIT was lost and the primary says it did not commit) or
 * PGR_REPLAY_DIVERGED (the replay on a new connection saw other results). Both guarantee that
 * nothing of that transaction was applied, so the whole unit of work can run again.
 *
 * `fn` may therefore run more than once: put in it the transaction and what decides its
 * content, nothing with effects outside the database (an e-mail, a call to another service),
 * and no statement outside the transaction that must not repeat.
 *
 * @example
 * const order = await retryable(() => db.transaction().execute(async (trx) => {
 *   await trx.insertInto('orders').values({ id: orderId, sku }).execute();
 *   await trx.updateTable('stock').set((eb) => ({ n: eb('n', '-', 1) })).where('sku', '=', sku).execute();
 * }));
 */
export function retryable<T>(fn: (attempt: number) => Promise<T> | T, options?: RetryableOptions): Promise<T> {
  // The pool's defaults (retry.maxElapsedMs and backoff), resolved once.
  defaults ??= { clock: systemClock, random: systemRandom, retry: resolveOptions({}).retry };
  return runRetryable(fn, defaults, options);
}
