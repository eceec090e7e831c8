import { abortedError } from '../errors.ts';
import type { Clock } from './clock.ts';

/**
 * A point in time a call must finish by, plus the caller's AbortSignal. Every wait in the
 * library goes through `sleep` or `race` here, so nothing waits past the deadline or after
 * an abort.
 */
export class Deadline {
  readonly #clock: Clock;
  readonly startedAt: number;
  readonly endsAt: number;
  readonly signal: AbortSignal | undefined;

  /** `startedAt` (clock time) when the call began before its Deadline was needed (fast path). */
  constructor(clock: Clock, budgetMs: number, signal?: AbortSignal, startedAt?: number) {
    this.#clock = clock;
    this.startedAt = startedAt ?? clock.now();
    this.endsAt = this.startedAt + budgetMs;
    this.signal = signal;
  }

  remainingMs(): number {
    return Math.max(0, this.endsAt - this.#clock.now());
  }

  elapsedMs(): number {
    return this.#clock.now() - this.startedAt;
  }

  expired(): boolean {
    return this.remainingMs() <= 0;
  }

  /** Throws PGR_ABORTED if the caller's signal fired. */
  throwIfAborted(): void {
    if (this.signal?.aborted === true) throw abortedError(this.signal);
  }

  /** Waits `ms` (cut short by the deadline); rejects with PGR_ABORTED if the signal fires. */
  sleep(ms: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const signal = this.signal;
      if (signal?.aborted === true) {
        reject(abortedError(signal));
        return;
      }
      const onAbort = (): void => {
        timer.cancel();
        reject(abortedError(signal));
      };
      const timer = this.#clock.setTimeout(() => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      }, Math.min(ms, this.remainingMs()));
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /**
   * Settles with `work`, or rejects when the deadline passes (with `onTimeout()`'s error) or the
   * signal fires (PGR_ABORTED). `work` is not cancelled: callers clean up after it themselves.
   */
  race<T>(work: Promise<T>, onTimeout: () => unknown): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      if (this.signal?.aborted === true) {
        reject(abortedError(this.signal));
        return;
      }
      let done = false;
      const finish = (): void => {
        done = true;
        timer.cancel();
        this.signal?.removeEventListener('abort', onAbort);
      };
      const onAbort = (): void => {
        if (done) return;
        finish();
        reject(abortedError(this.signal));
      };
      const timer = this.#clock.setTimeout(() => {
        if (done) return;
        finish();
        const err = onTimeout();
        if (err === undefined) resolve(undefined as T);
        else reject(err);
      }, this.remainingMs());
      this.signal?.addEventListener('abort', onAbort, { once: true });
      work.then(
        (value) => {
          if (done) return;
          finish();
          resolve(value);
        },
        (err: unknown) => {
          if (done) return;
          finish();
          reject(err);
        },
      );
    });
  }
}
