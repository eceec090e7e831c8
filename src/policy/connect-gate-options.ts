import type { PgResilientError } from '../errors.ts';
import type { BackoffOptions } from './backoff.ts';
import type { Clock, Random } from './clock.ts';

// The connect gate's defaults (with their reasons), options and outcome types; the gate itself
// is in connect-gate.ts, which re-exports all of these.

/**
 * Defaults of the connect gate, each with its reason.
 *
 * - `maxInFlight` 2: connection attempts in flight at once, per pool. The poolers that face
 *   this problem every day serialise connection creation: PgBouncer allows a single connect
 *   per pool at a time (`launch_new_connection`), PgDog creates one connection at a time and
 *   re-checks the need after each, HikariCP has one "connection adder" thread per pool. A
 *   fleet of pods that reconnects after a failover then opens at most 2 × pods connections at
 *   once (24 pods: 48) instead of max × pods (24 × 8: 192), and a server that just got
 *   promoted forks and authenticates a few backends at a time. We allow 2 rather than 1
 *   because our pool lives inside the application: a caller waits on the connect, and one
 *   attempt stuck on a blackholed host for a whole connect timeout must not stall them all
 *   (with several hosts, `onePerHost` keeps such a host to one slot: the other one serves
 *   the hosts that answer).
 * - `failureBackoff` 50 → 500 ms, ×2, full jitter: after a failed attempt (refused,
 *   reset, timeout, shutting down) the next one to that host waits. The first delays are
 *   short because a restart is over in about a second; the cap is `hostRecheckMs`' default,
 *   the delay after which the topology tries a failed host again, so a host that comes back is
 *   used within half a second. (HikariCP: 250 ms growing ×1.5 to 10 s; PgBouncer:
 *   `server_login_retry`, 15 s, one attempt per pool.)
 * - `busyBackoff` 100 → 1000 ms, ×2, full jitter: the server answered "too many clients"
 *   (53300) or "cannot connect now" (57P03). The host is up, so it is not marked down (and
 *   53300 is no failover signal; 57P03 still is one when nothing was served for a second, see
 *   src/classify/tables.ts), but retrying sooner cannot help until another client leaves or
 *   the server finishes starting, and each refused login still costs the server a forked
 *   backend. Capped at 1 s so a server that finished its startup is used within a second.
 *   While the server says it is busy the gate also lets one attempt through at a time, until
 *   the next success.
 */
export const CONNECT_GATE_DEFAULTS = Object.freeze({
  maxInFlight: 2,
  failureBackoff: Object.freeze({ initialDelayMs: 50, maxDelayMs: 500, multiplier: 2 }) as BackoffOptions,
  busyBackoff: Object.freeze({ initialDelayMs: 100, maxDelayMs: 1000, multiplier: 2 }) as BackoffOptions,
});

export interface ConnectGateOptions {
  readonly clock: Clock;
  readonly random: Random;
  /**
   * True for a "server busy" failure (53300, 57P03): the host is up but cannot take a
   * connection now. Supplied by the caller (classify()'s `serverBusy` trait).
   */
  readonly isBusyFailure: (err: unknown) => boolean;
  /** Attempts in flight at once. Defaults to 2 (see CONNECT_GATE_DEFAULTS). */
  readonly maxInFlight?: number;
  /** Backoff after a failed attempt to a host. Defaults to 50 → 500 ms, ×2. */
  readonly failureBackoff?: BackoffOptions;
  /** Backoff after a "server busy" failure. Defaults to 100 → 1000 ms, ×2. */
  readonly busyBackoff?: BackoffOptions;
}

/** Why an attempt was not made. */
export type SkipReason = 'backoff' | 'host-busy' | 'unwanted' | 'deadline' | 'aborted' | 'ended';

/** How one attempt may wait for its host (the pool-wide cap applies to every attempt). */
export interface AttemptOptions {
  /**
   * The caller has other hosts to try: a host backing off, or with another attempt in flight,
   * is skipped at once (reason 'backoff' or 'host-busy') instead of waited for, also when that
   * attempt starts while this caller stands in line. Defaults to false.
   */
  readonly skipIfHostBusy?: boolean;
  /**
   * No other attempt to the same host may be in flight together with this one: it waits in
   * line until the host's attempt ends, leaving the free slot to other hosts. A multi-host pool
   * sets it so that attempts to a host that does not answer (a partition: each one hangs for
   * the whole connect timeout) hold at most one slot, never the whole cap. Defaults to false.
   */
  readonly onePerHost?: boolean;
  /**
   * Asked when the attempt could start (a slot granted, the host's backoff over): false skips
   * it (reason 'unwanted'). A pool opens a connection for each caller waiting, but after a
   * failover its first connections serve the queue in milliseconds, and the connections still
   * in line would only be held idle, by every pod of a fleet at once, on a server just promoted
   * (PgDog likewise re-checks the need after each connection it creates).
   */
  readonly stillWanted?: () => boolean;
}

/** What `attempt` did. It never rejects: every way it can end is one of these. */
export type ConnectOutcome<T> =
  | {
    readonly kind: 'connected';
    readonly value: T;
    /** Time spent waiting for the host's backoff and an attempt slot. */
    readonly waitedMs: number;
    /** Time `connectOnce` took. */
    readonly durationMs: number;
  }
  | {
    readonly kind: 'failed';
    /** What `connectOnce` threw, unchanged. */
    readonly error: unknown;
    /** A "server busy" failure: the host was not counted as down. */
    readonly busy: boolean;
    /** The backoff now imposed on this host before its next attempt. */
    readonly backoffMs: number;
    readonly waitedMs: number;
    readonly durationMs: number;
  }
  | {
    readonly kind: 'skipped';
    readonly reason: SkipReason;
    /**
     * PGR_ACQUIRE_TIMEOUT (backoff past the deadline or skipped, host busy, or no slot before
     * the deadline; `cause` is the host's last failure, if any), PGR_ABORTED or PGR_POOL_ENDED.
     */
    readonly error: PgResilientError;
    readonly waitedMs: number;
  };
