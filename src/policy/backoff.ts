import type { Random } from './clock.ts';

export interface BackoffOptions {
  /** First delay's ceiling. */
  readonly initialDelayMs: number;
  /** Ceiling no delay exceeds. */
  readonly maxDelayMs: number;
  /** Growth of the ceiling per attempt. */
  readonly multiplier: number;
}

/**
 * Exponential backoff with full jitter: the n-th delay (n from 0) is uniform in
 * [0, min(maxDelayMs, initialDelayMs · multiplier^n)). Full jitter spreads a fleet's retries
 * after a failover so they do not arrive at the new primary in one wave.
 */
export function fullJitterDelay(attempt: number, options: BackoffOptions, random: Random): number {
  const ceiling = Math.min(options.maxDelayMs, options.initialDelayMs * options.multiplier ** attempt);
  return Math.floor(random() * ceiling);
}

/** The delays for attempts 0, 1, 2, … as a generator; small and pure, for tests and callers. */
export function* backoffDelays(options: BackoffOptions, random: Random): Generator<number, never> {
  for (let attempt = 0; ; attempt += 1) yield fullJitterDelay(attempt, options, random);
}
