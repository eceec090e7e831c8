import diagnostics from 'node:diagnostics_channel';
import type { PoolClient } from 'pg';
import type { GiveUpEvent, RetryEvent } from '../policy/retry.ts';
import type { BreakerState } from '../policy/breaker.ts';
import type { FailoverReport } from './report.ts';

export type { GiveUpEvent, RetryEvent } from '../policy/retry.ts';

/** A host, as events and reports name it: never with credentials. */
export interface HostRef {
  readonly host: string;
  readonly port: number;
}

export interface FailoverEvent {
  /** `detected`: a failure said the topology is changing; `completed`: a primary accepts work again. */
  readonly phase: 'detected' | 'completed';
  /** Increments with each detected failover; the `completed` event carries the same number. */
  readonly generation: number;
  readonly oldPrimary: HostRef | undefined;
  readonly newPrimary: HostRef | undefined;
  /** Failure class that triggered detection. */
  readonly trigger: string;
  /** Milliseconds from detection (on `completed`). */
  readonly durationMs?: number;
}

export interface ConnectionRetiredEvent {
  readonly host: HostRef;
  readonly reason: 'failover' | 'broken' | 'wrong-role' | 'lifetime' | 'max-uses' | 'idle' | 'ended' | 'stale';
}

export interface BreakerEvent {
  readonly state: BreakerState;
}

/** One call (`query`, `connect`, `transaction`) settled, after all its retries. */
export interface CallEndEvent {
  readonly kind: 'query' | 'connect' | 'transaction';
  readonly outcome: 'ok' | 'error';
  readonly attempts: number;
  readonly durationMs: number;
  /** Failure class and code of the error the caller got (outcome 'error'). */
  readonly category?: string;
  readonly code?: string | undefined;
}

/** A COMMIT whose connection was lost was resolved by asking the primary (`txid_status`). */
export interface CommitResolvedEvent {
  readonly xid: string;
  readonly outcome: 'committed' | 'aborted' | 'unknown';
  readonly durationMs: number;
}

/**
 * The pool's typed events. The first five are pg.Pool's, with the same arguments; `error` is
 * emitted only when someone listens (pg.Pool would crash the process otherwise).
 */
export interface PoolEventMap {
  connect: [client: PoolClient];
  acquire: [client: PoolClient];
  release: [err: Error | undefined, client: PoolClient];
  remove: [client: PoolClient];
  error: [err: Error, client: PoolClient];
  retry: [event: RetryEvent];
  giveUp: [event: GiveUpEvent];
  breaker: [event: BreakerEvent];
  failover: [event: FailoverEvent];
  connectionRetired: [event: ConnectionRetiredEvent];
  failoverReport: [report: FailoverReport];
  callEnd: [event: CallEndEvent];
  commitResolved: [event: CommitResolvedEvent];
}

/** `node:diagnostics_channel` names; each carries the same object as the pool event. */
export const CHANNELS = {
  retry: diagnostics.channel('pg-resilient:retry'),
  giveUp: diagnostics.channel('pg-resilient:giveUp'),
  breaker: diagnostics.channel('pg-resilient:breaker'),
  failover: diagnostics.channel('pg-resilient:failover'),
  connectionRetired: diagnostics.channel('pg-resilient:connectionRetired'),
  failoverReport: diagnostics.channel('pg-resilient:failoverReport'),
  callEnd: diagnostics.channel('pg-resilient:callEnd'),
  commitResolved: diagnostics.channel('pg-resilient:commitResolved'),
} as const;
