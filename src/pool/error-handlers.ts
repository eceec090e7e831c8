import type { EventEmitter } from 'node:events';
import { describeError } from '../errors.ts';
import type { Logger } from '../observe/logger.ts';

/**
 * The pool's own error handlers, as the listeners libraries look for (graphile-worker warns
 * about a pool without an 'error' and a 'connect' listener, and installs its own; issue 28): an
 * idle connection's error (the pool has already closed it) and an error a checked-out client
 * reports are logged, and neither can reach the process as an unhandled 'error'. The
 * application's own listeners are called as well.
 */
export function handleErrors(pool: EventEmitter, logger: Logger): void {
  pool.on('error', (err: unknown) => logger.debug({ error: describeError(err) }, 'pg-resilient: pool error event (an idle connection failed and was closed)'));
  const onClientError = (err: unknown): void => logger.warn({ error: describeError(err) }, 'pg-resilient: a checked-out client reported an error (its connection is unusable)');
  pool.on('connect', (client: EventEmitter) => client.on('error', onClientError));
}
