// A namespace import, so the emitted declarations need no esModuleInterop in CommonJS consumers.
import * as diagnostics from 'node:diagnostics_channel';
import type { PoolClient } from 'pg';
import type { GiveUpEvent, RetryEvent } from '../policy/retry.ts';
import type {
  BreakerEvent,
  CallEndEvent,
  CallStartEvent,
  CommitResolvedEvent,
  ConnectionCreatedEvent,
  ConnectionRetiredEvent,
  FailoverEvent,
  FailoverReport,
  LostCommitsEvent,
  StandbyReadEvent,
  TransactionReplayEvent,
} from './types.ts';

/**
 * The pool's typed events. The first five are pg.Pool's, with the same arguments; `error` is
 * emitted only when someone listens (pg.Pool would crash the process otherwise).
 */
export interface PoolEventMap {
  /** pg.Pool's: a new client connected. */
  connect: [client: PoolClient];
  /** pg.Pool's: a client was checked out. */
  acquire: [client: PoolClient];
  /** pg.Pool's: a client was given back (with the error it was released with, if any). */
  release: [err: Error | undefined, client: PoolClient];
  /** pg.Pool's: a client was closed and left the pool. */
  remove: [client: PoolClient];
  /** pg.Pool's: an idle client failed. */
  error: [err: Error, client: PoolClient];
  /** A failed attempt will be retried after a backoff. */
  retry: [event: RetryEvent];
  /** A call failed for the application: no (further) retry. */
  giveUp: [event: GiveUpEvent];
  /** The circuit breaker changed state. */
  breaker: [event: BreakerEvent];
  /** A failover was detected or completed. */
  failover: [event: FailoverEvent];
  /** The pool closed a connection instead of reusing it. */
  connectionRetired: [event: ConnectionRetiredEvent];
  /** The summary of a failover episode, once queries succeed again. */
  failoverReport: [report: FailoverReport];
  /** A call started (its `callEnd` carries the same `callId`). */
  callStart: [event: CallStartEvent];
  /** A call settled, after all its retries. */
  callEnd: [event: CallEndEvent];
  /** A COMMIT whose connection was lost was resolved. */
  commitResolved: [event: CommitResolvedEvent];
  /** A new connection is ready for use. */
  connectionCreated: [event: ConnectionCreatedEvent];
  /** A read was served by, or refused on, a standby (`failoverReads`). */
  standbyRead: [event: StandbyReadEvent];
  /** A failover lost acknowledged commits of this pool (`lostCommits`). */
  lostCommits: [event: LostCommitsEvent];
  /** A checked-out client's transaction was replayed on a new connection (`transactionReplay`). */
  transactionReplay: [event: TransactionReplayEvent];
}

/** `node:diagnostics_channel` names; each carries the same object as the pool event. */
export const CHANNELS = {
  /** `pg-resilient:retry`, with a `RetryEvent`. */
  retry: diagnostics.channel('pg-resilient:retry'),
  /** `pg-resilient:giveUp`, with a `GiveUpEvent`. */
  giveUp: diagnostics.channel('pg-resilient:giveUp'),
  /** `pg-resilient:breaker`, with a `BreakerEvent`. */
  breaker: diagnostics.channel('pg-resilient:breaker'),
  /** `pg-resilient:failover`, with a `FailoverEvent`. */
  failover: diagnostics.channel('pg-resilient:failover'),
  /** `pg-resilient:connectionRetired`, with a `ConnectionRetiredEvent`. */
  connectionRetired: diagnostics.channel('pg-resilient:connectionRetired'),
  /** `pg-resilient:failoverReport`, with a `FailoverReport`. */
  failoverReport: diagnostics.channel('pg-resilient:failoverReport'),
  /** `pg-resilient:callStart`, with a `CallStartEvent`. */
  callStart: diagnostics.channel('pg-resilient:callStart'),
  /** `pg-resilient:callEnd`, with a `CallEndEvent`. */
  callEnd: diagnostics.channel('pg-resilient:callEnd'),
  /** `pg-resilient:commitResolved`, with a `CommitResolvedEvent`. */
  commitResolved: diagnostics.channel('pg-resilient:commitResolved'),
  /** `pg-resilient:connectionCreated`, with a `ConnectionCreatedEvent`. */
  connectionCreated: diagnostics.channel('pg-resilient:connectionCreated'),
  /** `pg-resilient:standbyRead`, with a `StandbyReadEvent`. */
  standbyRead: diagnostics.channel('pg-resilient:standbyRead'),
  /** `pg-resilient:lostCommits`, with a `LostCommitsEvent`. */
  lostCommits: diagnostics.channel('pg-resilient:lostCommits'),
  /** `pg-resilient:transactionReplay`, with a `TransactionReplayEvent`. */
  transactionReplay: diagnostics.channel('pg-resilient:transactionReplay'),
} as const;
