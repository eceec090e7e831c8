import type { QueryConfig, QueryResult } from 'pg';
import { checkLabel } from '../transactions/durability-options.ts';
import { duration } from '../option-checks.ts';

/** Per-call options, accepted on the query config next to pg's own fields. */
export interface ResilienceQueryOptions {
  /**
   * The statement may run more than once without harm (an upsert with a unique key, a SET of a
   * fixed value, …): it is then retried even when the connection was lost mid-flight. Defaults to
   * true for statements the documented read rule recognises (see `isRecognisedRead`) whose
   * functions are all STABLE or IMMUTABLE on the server (docs/retry-safety.md), else false.
   */
  idempotent?: boolean;
  /** Route to a standby within `maxLagBytes`, falling back to the primary. Defaults to false. */
  readOnly?: boolean;
  /** Abort waiting, retrying and the statement in flight. */
  signal?: AbortSignal;
  /**
   * Hard deadline of this call in ms, including the statement in flight (the connection is
   * closed when it passes). Defaults to `retry.maxElapsedMs`, which bounds waiting and retrying
   * but not a statement that is running.
   */
  deadlineMs?: number;
  /**
   * The pool's `failoverReads` policy for this call: `false` keeps it off a standby while the
   * primary is unavailable (it waits for the primary); an object replaces the pool's bounds for
   * it. Needs the pool option (writes are tracked for read-your-writes only then). Defaults to
   * the pool's setting.
   */
  failoverReads?: boolean | {
    /** WAL (bytes) the standby may lack. Defaults to the pool's. */
    maxLagBytes?: number;
    /** Staleness bound of the read, in ms. Defaults to the pool's. */
    maxStalenessMs?: number;
  };
  /**
   * A label for this write, named in a `lostCommits` event if a failover loses it (needs the pool
   * option `lostCommits`); `pool.withLabel(label, fn)` labels every write in a scope.
   */
  label?: string;
  /** 'replicated': resolve a write only once a standby has received its commit. Defaults to the pool's `durability`. */
  durability?: 'local' | 'replicated';
}

/** A pg `QueryConfig` with the per-call resilience options. */
export type ResilientQueryConfig<I = unknown[]> = QueryConfig<I> & ResilienceQueryOptions;

export type Callback<R> = (err: Error | undefined, result: R) => void;

// pg.Pool accepts these forms; see `normalizeQuery`.
export type QueryArgs = [unknown, unknown?, unknown?];

/** pg.Pool's `query(config | text, values?, callback?)` forms, as one config and a callback. */
export function normalizeQuery(args: QueryArgs): { config: ResilientQueryConfig; callback: Callback<QueryResult> | undefined } {
  const [first, second, third] = args;
  let config: ResilientQueryConfig;
  if (typeof first === 'string') config = { text: first };
  else if (typeof first === 'object' && first !== null) config = first as ResilientQueryConfig;
  else throw new TypeError(`pg-resilient: query() expects a string or a query config object, got ${typeof first}`);
  let callback: Callback<QueryResult> | undefined;
  if (typeof second === 'function') callback = second as Callback<QueryResult>;
  // Values given apart from a config object: copy rather than change the caller's object.
  else if (second !== undefined) config = { ...config, values: second as unknown[] };
  if (typeof third === 'function') callback = third as Callback<QueryResult>;
  return { config, callback };
}

export function withoutResilienceOptions(c: ResilientQueryConfig): QueryConfig {
  const { idempotent: _i, readOnly: _r, signal: _s, deadlineMs: _d, failoverReads: _f, label: _l, durability: _du, ...pgConfig } = c;
  return pgConfig;
}

export function validateCallOptions(c: ResilientQueryConfig): void {
  if (c.idempotent !== undefined && typeof c.idempotent !== 'boolean') throw new TypeError('pg-resilient: query option `idempotent` must be a boolean');
  if (c.readOnly !== undefined && typeof c.readOnly !== 'boolean') throw new TypeError('pg-resilient: query option `readOnly` must be a boolean');
  // A time: finite and no longer than a timer can wait (InvalidOptionError, a TypeError).
  duration('query.deadlineMs', c.deadlineMs, 0, 0);
  if (c.signal !== undefined && !(c.signal instanceof AbortSignal)) throw new TypeError('pg-resilient: query option `signal` must be an AbortSignal');
  checkLabel(c.label, 'label');
  const f = c.failoverReads;
  if (f !== undefined && typeof f !== 'boolean') {
    if (typeof f !== 'object' || f === null || Array.isArray(f)) throw new TypeError('pg-resilient: query option `failoverReads` must be a boolean or { maxLagBytes?, maxStalenessMs? }');
    const v = f.maxLagBytes;
    if (v !== undefined && (typeof v !== 'number' || !(v >= 0))) throw new TypeError('pg-resilient: query option `failoverReads.maxLagBytes` must be a number ≥ 0');
    duration('query.failoverReads.maxStalenessMs', f.maxStalenessMs, 0, 0);
  }
}
