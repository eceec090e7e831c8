import { ErrorCodes, PgResilientError, describeError } from '../errors.ts';
import type { Deadline } from '../policy/deadline.ts';
import type { PoolEntry } from './pool-entry.ts';

// The errors a call can get from the pool itself (not from the server), in one place so that
// every site that refuses a call says it the same way.

export function poolEndedError(): PgResilientError {
  return new PgResilientError(ErrorCodes.POOL_ENDED, 'pg-resilient: Cannot use a pool after calling end on the pool');
}

export function queueFullError(maxWaitingClients: number): PgResilientError {
  return new PgResilientError(ErrorCodes.QUEUE_FULL, `pg-resilient: ${maxWaitingClients} callers are already waiting for a connection (maxWaitingClients)`);
}

export function acquireTimeoutError(acquireTimeoutMs: number, cause: unknown): PgResilientError {
  return new PgResilientError(ErrorCodes.ACQUIRE_TIMEOUT, `pg-resilient: no connection became available within ${acquireTimeoutMs} ms`, { cause });
}

/**
 * Every connection stayed busy on a healthy server for the whole wait: load, not an outage.
 * Services set `connectionTimeoutMillis` to shed load, so this is not retried (`saturated`).
 */
export function saturatedError(acquireTimeoutMs: number): PgResilientError {
  return new PgResilientError(ErrorCodes.ACQUIRE_TIMEOUT, `pg-resilient: timeout exceeded when trying to connect: every connection stayed busy for ${acquireTimeoutMs} ms (connectionTimeoutMillis/acquireTimeoutMs); the server is healthy, so this is load, not retried`, { saturated: true });
}


export function deadlineError(deadline: Deadline, cause: unknown): PgResilientError {
  return new PgResilientError(ErrorCodes.DEADLINE_EXCEEDED, `pg-resilient: the call's deadline passed after ${Math.round(deadline.elapsedMs())} ms${cause === undefined ? '' : `; last error: ${describeError(cause)}`}`, { cause });
}

export function inFlightDeadlineError(deadline: Deadline): PgResilientError {
  return new PgResilientError(ErrorCodes.DEADLINE_EXCEEDED, `pg-resilient: the call's deadline passed after ${Math.round(deadline.elapsedMs())} ms with the statement in flight; its connection was closed, and the statement may or may not have taken effect`, { inFlight: true });
}

/** The pool gave up on the call itself (abort or its own deadline), not the server. */
export function isOwnCancel(err: unknown): boolean {
  return err instanceof PgResilientError && (err.code === ErrorCodes.ABORTED || err.code === ErrorCodes.DEADLINE_EXCEEDED);
}

/** Marks the connection's server identity in messages without credentials. */
export function describeConnection(meta: Pick<PoolEntry, 'server' | 'target'>): string {
  const server = meta.server ?? meta.target;
  return `${server.host}:${server.port}`;
}

export function brokenClientError(meta: PoolEntry): PgResilientError {
  return new PgResilientError(
    ErrorCodes.CLIENT_BROKEN,
    `pg-resilient: this client's connection to ${describeConnection(meta)} broke (${describeError(meta.brokenBy)}); release it and take another`,
    { cause: meta.brokenBy },
  );
}
