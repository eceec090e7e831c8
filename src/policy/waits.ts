import type { Clock } from './clock.ts';
import { abortedError } from '../errors.ts';

interface Entry<T> {
  readonly endsAt: number;
  readonly timeout: () => unknown;
  readonly signal: AbortSignal | undefined;
  readonly onAbort: (() => void) | undefined;
  readonly resolve: (value: T) => void;
  readonly reject: (err: unknown) => void;
  /** Takes a value another caller still uses (a connection with statements pipelined on it). */
  readonly shared: boolean;
  live: boolean;
}

/**
 * Callers waiting for a connection, first come first served, each bounded by a deadline and
 * an optional AbortSignal. A released connection is handed straight to the first live waiter
 * (`deliver`), synchronously, as pg-pool does: going through a promise-based pool for every
 * hand-off cost more than the rest of a `SELECT 1` under load.
 *
 * Waiting is the one wait on the query path that happens often (every call when all connections
 * are busy), so the waits share one sweep timer instead of a setTimeout each. A wait ends at
 * most `granularityMs` late. The timer runs only while someone waits (it stops at the first
 * sweep that finds nobody), and keeps the process alive then, as the caller's pending promise
 * should.
 */
export class WaitQueue<T> {
  readonly #clock: Clock;
  readonly #granularityMs: number;
  #entries: Entry<T>[] = [];
  #live = 0;
  #timer: ReturnType<typeof setInterval> | undefined;

  constructor(clock: Clock, granularityMs = 20) {
    this.#clock = clock;
    this.#granularityMs = granularityMs;
  }

  /** Callers still waiting. */
  get size(): number {
    return this.#live;
  }

  /**
   * Waits for a value handed over by `deliver`; rejects with `onTimeout()` once `endsAt` (clock
   * time) passes, or with PGR_ABORTED when `signal` fires. A `shared` waiter may also be handed a
   * value by `deliverShared`.
   */
  wait(endsAt: number, onTimeout: () => unknown, signal?: AbortSignal, shared = false): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      if (signal?.aborted === true) {
        reject(abortedError(signal));
        return;
      }
      const onAbort = signal === undefined ? undefined : (): void => this.#fail(entry, abortedError(signal));
      const entry: Entry<T> = { endsAt, timeout: onTimeout, signal, onAbort, resolve, reject, shared, live: true };
      this.#entries.push(entry);
      this.#live += 1;
      if (onAbort !== undefined) signal!.addEventListener('abort', onAbort, { once: true });
      this.#timer ??= setInterval(() => this.#sweep(), this.#granularityMs);
    });
  }

  /** Hands `value` to the first caller still waiting; false when nobody waits. */
  deliver(value: T): boolean {
    const entries = this.#entries;
    while (entries.length > 0) {
      const entry = entries.shift()!;
      if (!entry.live) continue;
      this.#end(entry);
      entry.resolve(value);
      return true;
    }
    return false;
  }

  /**
   * Hands `value` to the first caller still waiting if that caller takes a shared value; false
   * (and nobody served) otherwise: the line stays in order, a waiter for a value of its own is
   * never overtaken.
   */
  deliverShared(value: T): boolean {
    const entries = this.#entries;
    while (entries.length > 0 && !entries[0]!.live) entries.shift();
    const first = entries[0];
    if (first === undefined || !first.shared) return false;
    entries.shift();
    this.#end(first);
    first.resolve(value);
    return true;
  }

  /** Ends every wait now with `error()` (the pool is ending). */
  cancelAll(error: () => unknown): void {
    const entries = this.#entries;
    this.#entries = [];
    for (const entry of entries) if (entry.live) this.#fail(entry, error());
    this.#stop();
  }

  #fail(entry: Entry<T>, err: unknown): void {
    if (!entry.live) return;
    this.#end(entry);
    entry.reject(err);
  }

  #end(entry: Entry<T>): void {
    entry.live = false;
    this.#live -= 1;
    if (entry.onAbort !== undefined) entry.signal!.removeEventListener('abort', entry.onAbort);
  }

  #sweep(): void {
    if (this.#live === 0) {
      this.#entries = [];
      this.#stop();
      return;
    }
    const now = this.#clock.now();
    let dead = 0;
    for (const entry of this.#entries) {
      if (entry.live && entry.endsAt <= now) this.#fail(entry, entry.timeout());
      if (!entry.live) dead += 1;
    }
    // Ended waits leave their entries behind until a hand-off passes them; drop them here.
    if (dead > 0) this.#entries = this.#entries.filter((e) => e.live);
  }

  #stop(): void {
    if (this.#timer === undefined) return;
    clearInterval(this.#timer);
    this.#timer = undefined;
  }
}
