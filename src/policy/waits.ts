import type { Clock } from './clock.ts';
import { abortedError } from './deadline.ts';

interface Wait {
  readonly endsAt: number;
  readonly timeout: () => unknown;
  settle(outcome: { error: unknown } | undefined): void;
}

/**
 * Bounded waits without a timer each. Waiting for a connection is the one wait on the query
 * path that happens often (every call when all connections are busy): a setTimeout and an abort
 * listener per call showed up in profiles, so all these waits share one sweep timer instead.
 * A wait ends at most `granularityMs` late. The timer runs only while someone waits, and keeps
 * the process alive then, as the caller's pending promise should.
 */
export class WaitSweeper {
  readonly #clock: Clock;
  readonly #granularityMs: number;
  readonly #waits = new Set<Wait>();
  #timer: ReturnType<typeof setInterval> | undefined;

  constructor(clock: Clock, granularityMs = 20) {
    this.#clock = clock;
    this.#granularityMs = granularityMs;
  }

  get size(): number {
    return this.#waits.size;
  }

  /**
   * Settles with `work`, or rejects with `onTimeout()` once `endsAt` (clock time) passes, or with
   * PGR_ABORTED when `signal` fires. `work` is not cancelled: the caller cleans up after it.
   */
  wait<T>(work: Promise<T>, endsAt: number, onTimeout: () => unknown, signal?: AbortSignal): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      if (signal?.aborted === true) {
        reject(abortedError(signal));
        return;
      }
      let done = false;
      const onAbort = (): void => entry.settle({ error: abortedError(signal) });
      const entry: Wait = {
        endsAt,
        timeout: onTimeout,
        settle: (outcome) => {
          if (done) return;
          done = true;
          this.#waits.delete(entry);
          signal?.removeEventListener('abort', onAbort);
          if (this.#waits.size === 0) this.#stop();
          if (outcome !== undefined) reject(outcome.error);
        },
      };
      this.#waits.add(entry);
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#start();
      work.then(
        (value) => {
          if (done) return;
          entry.settle(undefined);
          resolve(value);
        },
        (err: unknown) => entry.settle({ error: err }),
      );
    });
  }

  /** Ends every wait now with `error()` (the pool is ending). */
  cancelAll(error: () => unknown): void {
    for (const w of [...this.#waits]) w.settle({ error: error() });
  }

  #start(): void {
    if (this.#timer !== undefined) return;
    this.#timer = setInterval(() => this.#sweep(), this.#granularityMs);
  }

  #stop(): void {
    if (this.#timer === undefined) return;
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  #sweep(): void {
    const now = this.#clock.now();
    for (const w of [...this.#waits]) {
      if (w.endsAt <= now) w.settle({ error: w.timeout() });
    }
  }
}
