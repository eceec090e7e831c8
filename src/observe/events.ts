// A namespace import, so the emitted declarations need no esModuleInterop in CommonJS consumers.
import * as diagnostics from 'node:diagnostics_channel';
import type { PoolClient } from 'pg';
import type { GiveUpEvent, RetryEvent } from '../policy/retry.ts';
import type {
  BreakerEvent,
  CallEndEvent,
  CommitResolvedEvent,
  ConnectionCreatedEvent,
  ConnectionRetiredEvent,
  FailoverEvent,
  FailoverReport,
  StandbyReadEvent,
} from './types.ts';

export type { GiveUpEvent, RetryEvent } from '../policy/retry.ts';
// The payload types live in types.ts (report.ts needs them too, and must not import this file);
// they are re-exported here so every existing import of them keeps working.
export type {
  BreakerEvent,
  CallEndEvent,
  CommitResolvedEvent,
  ConnectionCreatedEvent,
  ConnectionRetiredEvent,
  FailoverEvent,
  FailoverReport,
  HostRef,
  StandbyReadEvent,
} from './types.ts';

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
  connectionCreated: [event: ConnectionCreatedEvent];
  standbyRead: [event: StandbyReadEvent];
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
  connectionCreated: diagnostics.channel('pg-resilient:connectionCreated'),
  standbyRead: diagnostics.channel('pg-resilient:standbyRead'),
} as const;
