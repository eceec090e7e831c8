/**
 * Time and randomness, injected so backoff, breaker and deadline logic can be tested exactly
 * and fast. Production uses the system clock and Math.random.
 */
export interface Clock {
  /** Milliseconds, monotonic where possible. */
  now(): number;
  /**
   * Schedules `fn` after `ms`; the returned handle cancels it. A caller's wait (backoff,
   * deadline) keeps the process alive, as a pending pg query would; `background` timers
   * (discovery refresh, warm-up pacing) don't.
   */
  setTimeout(fn: () => void, ms: number, options?: { background?: boolean }): {
    /** Cancels the timer if it has not fired. */
    cancel(): void;
  };
}

/** A source of uniformly distributed numbers in [0, 1). */
export type Random = () => number;

export const systemClock: Clock = {
  now: () => performance.now(),
  setTimeout(fn, ms, options) {
    const t = setTimeout(fn, ms);
    if (options?.background === true) t.unref();
    return { cancel: () => clearTimeout(t) };
  },
};

export const systemRandom: Random = Math.random;
