import type { Clock } from '../../src/policy/clock.ts';

/**
 * Virtual time for pure-logic tests: a timer fires on the next macrotask and moves `now` to its
 * due time, so backoff and deadline logic run instantly and their delays are exact.
 */
export class WarpClock implements Clock {
  #now = 0;
  readonly sleeps: number[] = [];

  now(): number {
    return this.#now;
  }

  advance(ms: number): void {
    this.#now += ms;
  }

  setTimeout(fn: () => void, ms: number): { cancel(): void } {
    let cancelled = false;
    this.sleeps.push(ms);
    const due = this.#now + ms;
    setImmediate(() => {
      if (cancelled) return;
      if (due > this.#now) this.#now = due;
      fn();
    });
    return { cancel: () => { cancelled = true; } };
  }
}

/** A random source that replays `values` in a loop. */
export function sequence(...values: number[]): () => number {
  let i = 0;
  return () => values[i++ % values.length]!;
}
