/**
 * Time and randomness, injected so backoff, breaker and deadline logic can be tested exactly
 * and fast. Production uses the system clock and Math.random.
 */
export interface Clock {
  /** Milliseconds, monotonic where possible. */
  now(): number;
  /** Schedules `fn` after `ms`; the returned handle cancels it. Timers must not keep the process alive. */
  setTimeout(fn: () => void, ms: number): { cancel(): void };
}

/** A source of uniformly distributed numbers in [0, 1). */
export type Random = () => number;

export const systemClock: Clock = {
  now: () => performance.now(),
  setTimeout(fn, ms) {
    const t = setTimeout(fn, ms);
    t.unref();
    return { cancel: () => clearTimeout(t) };
  },
};

export const systemRandom: Random = Math.random;
