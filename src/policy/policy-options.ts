// The retry and breaker options: what callers give (`retry`, `breaker`) and what the policies
// read once resolveOptions (src/options.ts) has applied defaults and validated them.

/** Retry policy of every call. */
export interface RetryOptions {
  /**
   * Total time a call may spend waiting for the database: acquiring, backing off, retrying.
   * Pick it from Patroni's timings: ≥ ttl + loop_wait + a few seconds rides out a failover.
   * Defaults to 15000.
   */
  maxElapsedMs?: number;
  /** Ceiling of the first backoff delay (full jitter). Defaults to 50. */
  initialDelayMs?: number;
  /** No backoff delay exceeds this: it bounds how late a waiting call notices recovery. Defaults to 500. */
  maxDelayMs?: number;
  /** Growth of the backoff ceiling per attempt. Defaults to 2. */
  multiplier?: number;
  /** At most this many attempts per call (the deadline usually ends it first). Defaults to Infinity. */
  maxAttempts?: number;
}

/** Circuit breaker (opossum) in front of the database. */
export interface BreakerOptions {
  /** Defaults to true. */
  enabled?: boolean;
  /** Percentage of failures in the rolling window that opens the breaker. Defaults to 50. */
  errorThresholdPercentage?: number;
  /** Minimum calls in the window before the breaker may open. Defaults to 20. */
  volumeThreshold?: number;
  /** Time the breaker stays open before letting one trial call through. Defaults to 500. */
  resetTimeoutMs?: number;
  /** Length of the rolling statistics window. Defaults to 10000. */
  rollingWindowMs?: number;
}

export interface ResolvedRetry {
  readonly maxElapsedMs: number;
  readonly initialDelayMs: number;
  readonly maxDelayMs: number;
  readonly multiplier: number;
  readonly maxAttempts: number;
}

export interface ResolvedBreaker {
  readonly enabled: boolean;
  readonly errorThresholdPercentage: number;
  readonly volumeThreshold: number;
  readonly resetTimeoutMs: number;
  readonly rollingWindowMs: number;
}
