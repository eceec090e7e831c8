/**
 * The payloads of the pool's events and of the failover report, in one file that imports
 * nothing from the observe layer: `events.ts` (the event map and channels) and `report.ts`
 * (the reporter) both build on these, so neither has to import the other.
 */

import type { BreakerState } from '../policy/breaker.ts';

/** A host, as events and reports name it: never with credentials. */
export interface HostRef {
  /** Host name or IP address. */
  readonly host: string;
  /** TCP port. */
  readonly port: number;
}

/**
 * A change of primary as the pool saw it: `detected` at the first sign, then `completed` with the
 * same `generation` once a primary accepts work again.
 */
export interface FailoverEvent {
  /** `detected`: a failure said the topology is changing; `completed`: a primary accepts work again. */
  readonly phase: 'detected' | 'completed';
  /** Increments with each detected failover; the `completed` event carries the same number. */
  readonly generation: number;
  /** The primary before the change, if known. */
  readonly oldPrimary: HostRef | undefined;
  /** The primary after the change, if known yet. */
  readonly newPrimary: HostRef | undefined;
  /** Failure class that triggered detection. */
  readonly trigger: string;
  /** Milliseconds from detection (on `completed`). */
  readonly durationMs?: number;
}

/** A pooled connection was closed by the pool instead of being reused. */
export interface ConnectionRetiredEvent {
  /** The server it was connected to. */
  readonly host: HostRef;
  /**
   * Why: `failover` (opened before the latest failover), `broken` (it failed), `wrong-role` (its
   * server no longer has the role asked for), `lifetime` (`maxLifetimeSeconds`), `max-uses`
   * (`maxUses`), `idle` (`idleTimeoutMillis`), `ended` (the pool ended), `stale` (it failed the
   * liveness check after being idle).
   */
  readonly reason: 'failover' | 'broken' | 'wrong-role' | 'lifetime' | 'max-uses' | 'idle' | 'ended' | 'stale';
}

/** The circuit breaker changed state. */
export interface BreakerEvent {
  /**
   * `open`: calls are not sent and wait for the half-open trial; `half-open`: one trial call goes
   * through; `closed`: normal.
   */
  readonly state: BreakerState;
}

/**
 * One call (`query`, `connect`, `transaction`) started: it is counted in progress and will end
 * with one `callEnd` carrying the same `callId` (a tracer pairs the two on the channels alone).
 */
export interface CallStartEvent {
  /** Increasing number of the call in this process; its `callEnd` carries it too. */
  readonly callId: number;
  /** Which method the application called. */
  readonly kind: 'query' | 'connect' | 'transaction';
}

/** One call (`query`, `connect`, `transaction`) settled, after all its retries. */
export interface CallEndEvent {
  /** The `callId` of the call's `callStart`. */
  readonly callId: number;
  /** Which method the application called. */
  readonly kind: 'query' | 'connect' | 'transaction';
  /** Whether the application got a result or an error. */
  readonly outcome: 'ok' | 'error';
  /** Attempts made, from 1 (more than 1: the call was retried). */
  readonly attempts: number;
  /** From the call to its result, retries and waits included. */
  readonly durationMs: number;
  /** Failure class and code of the error the caller got (outcome 'error'). */
  readonly category?: string;
  /** The error code (a PGR_ code or a SQLSTATE) of that error. */
  readonly code?: string | undefined;
  /**
   * The first SQLSTATE of a server error found on the error or its causes (outcome 'error'):
   * `code` is PGR_RETRIES_EXHAUSTED when the retries ran out, this is the server's 53300.
   */
  readonly sqlstate?: string;
}

/**
 * A checked-out client's transaction whose connection was lost was replayed on a new connection:
 * `replayed` (every result the same; it goes on there) or `diverged` (rolled back, the
 * application gets PGR_REPLAY_DIVERGED).
 */
export interface TransactionReplayEvent {
  /** `replayed`: every result the same, the transaction goes on; `diverged`: rolled back. */
  readonly outcome: 'replayed' | 'diverged';
  /** Statements replayed (the one that began the transaction included). */
  readonly statements: number;
  /** Time the replay took. */
  readonly durationMs: number;
  /** `diverged`: index of the first statement whose result differed (0 began the transaction). */
  readonly statementIndex?: number;
  /** `diverged`: the SQLSTATE the replayed statement failed with, when it failed. */
  readonly sqlstate?: string;
}

/**
 * A new connection is ready for use (connected, authenticated, its role learned). Feeds
 * OpenTelemetry's `db.client.connection.create_time`.
 */
export interface ConnectionCreatedEvent {
  /** The server (behind a proxy such as HAProxy: the proxy's address when the server is unknown). */
  readonly host: HostRef;
  /** From the start of the TCP connect to ready, role query included; waiting for a connect slot excluded. */
  readonly durationMs: number;
  /** Time spent waiting for a connect slot or a host's backoff before connecting, if any. */
  readonly waitedMs?: number;
}

/**
 * A read judged for a standby while the primary was unavailable (the `failoverReads` policy):
 * served there, or refused as out of bounds (the call then tries another standby or waits for
 * the primary).
 */
export interface StandbyReadEvent {
  /** The standby (never with credentials). */
  readonly host: HostRef;
  /** Whether the standby served the read. */
  readonly outcome: 'served' | 'refused';
  /** Why it was refused: too much WAL missing, too stale, or behind the caller's own last write. */
  readonly reason?: 'lag' | 'staleness' | 'read-your-writes';
  /**
   * Upper bound of the read's staleness in ms: writes acknowledged longer ago than this are
   * certainly on the standby. Undefined when nothing is known of it.
   */
  readonly stalenessMs: number | undefined;
  /** WAL the standby lacks as far as known (bytes). */
  readonly lagBytes: number | undefined;
  /**
   * Why the primary counted as unavailable; 'recovering': a failover completed moments ago and
   * the new primary has no idle connection yet (callers that waited are being served first).
   */
  readonly during: 'failing-over' | 'breaker-open' | 'no-leader' | 'recovering';
}

/** A COMMIT whose connection was lost was resolved by asking the primary (`txid_status`). */
export interface CommitResolvedEvent {
  /** The transaction id (`txid_current()`). */
  readonly xid: string;
  /**
   * The primary's answer; `unknown` when it could not tell (the caller gets
   * TransactionOutcomeUnknownError).
   */
  readonly outcome: 'committed' | 'aborted' | 'unknown';
  /** Time spent resolving it. */
  readonly durationMs: number;
}

/** One acknowledged commit that a failover lost (see `LostCommitsEvent`). */
export interface LostCommit {
  /** Its transaction id on the old primary. */
  readonly xid: string;
  /** The old primary's WAL position read in its transaction, before its commit record. */
  readonly lsn: string;
  /** When the pool acknowledged it to the caller. */
  readonly at: Date;
  /** The caller's label for the write (`label` on the call, or `pool.withLabel`). */
  readonly label?: string;
}

/**
 * A failover forked the timeline before some of this pool's acknowledged commits: the new
 * primary lacks them (asynchronous replication). Published once per old timeline, after the
 * failover completed and the new primary's history was compared with what the pool remembers.
 */
export interface LostCommitsEvent {
  /** Acknowledged commits the new primary lacks (each listed in `commits`). */
  readonly count: number;
  /** Where the old timeline ends in the new primary's history; undefined when it could not be learned. */
  readonly forkLsn: string | undefined;
  /** The timeline the commits were made on. */
  readonly oldTimeline: number;
  /** The new primary's timeline. */
  readonly newTimeline: number;
  /** Commits of the old timeline that were compared. */
  readonly checked: number;
  /** Commits that could not be verified (no fork point, or an id too old): neither counted lost nor present. */
  readonly unverified: number;
  /** Commits dropped from memory before this check because `lostCommits.maxTracked` was reached. */
  readonly forgotten: number;
  /** The lost commits, oldest first. */
  readonly commits: readonly LostCommit[];
}

/**
 * What the client saw of one topology change: the client-side counterpart of a root-cause
 * summary ("a switchover occurred; sessions ended with 57P01; queries recovered after 2.4 s").
 */
export interface FailoverReport {
  /** The failover generation, as in `FailoverEvent`. */
  readonly generation: number;
  /** ISO time of the first failure seen in this episode. */
  readonly firstFailureAt: string;
  /** Class and code of that first failure. */
  readonly firstFailure: {
    /** Its failure class. */
    readonly category: string;
    /** Its error code (a PGR_ code or a SQLSTATE), if any. */
    readonly code: string | undefined;
  };
  /** The primary before the change, if known. */
  readonly oldPrimary: HostRef | undefined;
  /** The primary after it, if known. */
  readonly newPrimary: HostRef | undefined;
  /** From the first failure to the first successful statement afterwards. */
  readonly recoveryMs: number;
  /** Failures seen during the episode, by category. */
  readonly failuresByCategory: Readonly<Record<string, number>>;
  /** Calls that waited and retried at least once. */
  readonly retries: number;
  /** Calls that failed for the application (gave up). */
  readonly failedCalls: number;
  /** Reads served by standbys during the episode (`failoverReads`). */
  readonly standbyReads?: number;
  /** The largest staleness bound those reads carried, in ms (undefined when none was served). */
  readonly standbyReadMaxStalenessMs?: number | undefined;
  /** Acknowledged commits the new primary lacks (`lostCommits` on; undefined when off or none checked). */
  readonly lostCommits?: number | undefined;
  /** One line for humans. */
  readonly summary: string;
}
