import { ErrorCodes, PgResilientError } from '../errors.ts';
import type { PoolEntry } from './pool-entry.ts';

// Questions about the errors a call gets from the pool itself (they are made in src/errors.ts).

/** The pool gave up on the call itself (abort or its own deadline), not the server. */
export function isOwnCancel(err: unknown): boolean {
  return err instanceof PgResilientError && (err.code === ErrorCodes.ABORTED || err.code === ErrorCodes.DEADLINE_EXCEEDED);
}

/** Marks the connection's server identity in messages without credentials. */
export function describeConnection(meta: Pick<PoolEntry, 'server' | 'target'>): string {
  const server = meta.server ?? meta.target;
  return `${server.host}:${server.port}`;
}
