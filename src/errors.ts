/**
 * Every error this library creates is a `PgResilientError` with a stable `code` (a closed set,
 * below) and, where another error caused it, that error as `cause`. Errors that come from the
 * server or the driver and that we decide not to handle (a unique violation, a syntax error, …)
 * are passed through unchanged, so `err.code === '23505'` keeps working after migrating from pg.
 *
 * Messages name hosts and ports, never passwords or connection strings.
 */

/** The closed set of codes. Treat them as API: they never change meaning. */
export const ErrorCodes = {
  /** The pool was ended (`pool.end()`); the call was never sent. */
  POOL_ENDED: 'PGR_POOL_ENDED',
  /** No connection became available within the acquire timeout; the call was never sent. */
  ACQUIRE_TIMEOUT: 'PGR_ACQUIRE_TIMEOUT',
  /** Too many callers were already waiting for a connection; the call was never sent. */
  QUEUE_FULL: 'PGR_QUEUE_FULL',
  /** The circuit breaker is open and the call's deadline ends before it may close. */
  CIRCUIT_OPEN: 'PGR_CIRCUIT_OPEN',
  /**
   * The database stayed unavailable while the call's retry budget lasted (`retry.maxElapsedMs`
   * or `retry.maxAttempts`); `cause` is the last failure, `reason` says which budget ran out.
   * Nothing was applied.
   */
  RETRIES_EXHAUSTED: 'PGR_RETRIES_EXHAUSTED',
  /**
   * The call's hard deadline (`deadlineMs`) passed while its statement was in flight: the
   * connection was closed, and the statement may or may not have taken effect.
   */
  DEADLINE_EXCEEDED: 'PGR_DEADLINE_EXCEEDED',
  /** The caller's AbortSignal fired; `cause` is the signal's reason. */
  ABORTED: 'PGR_ABORTED',
  /**
   * The connection was lost while a statement that is not known to be idempotent was in
   * flight: it may or may not have taken effect, so it was not retried.
   */
  STATEMENT_OUTCOME_UNKNOWN: 'PGR_STATEMENT_OUTCOME_UNKNOWN',
  /**
   * The connection was lost during COMMIT and the outcome could not be learned within the
   * deadline; `xid` (when known) is the transaction's id, for `SELECT txid_status(xid)` later.
   * Also: the connection of a checked-out client was lost after part of its work may have
   * committed (COMMIT AND CHAIN, a text with COMMIT and more, PREPARE TRANSACTION), so it was
   * not replayed (docs/transactions.md).
   */
  TRANSACTION_OUTCOME_UNKNOWN: 'PGR_TRANSACTION_OUTCOME_UNKNOWN',
  /**
   * The transaction did not commit, and running it again is safe: its connection was lost
   * before COMMIT was sent and it could not be continued on a new one (replay off, too large,
   * or a statement that cannot be replayed), or it was lost with COMMIT in flight and the
   * primary says the transaction did not commit. Nothing of it was applied. `retryable(fn)`
   * runs the whole unit of work again on this error.
   */
  TRANSACTION_ROLLED_BACK: 'PGR_TRANSACTION_ROLLED_BACK',
  /**
   * The connection was lost inside a transaction and its statements, replayed on a new
   * connection, returned something other than what the application had already been given
   * (a sequence value, `now()`, a row another transaction changed): the replay was rolled back
   * and nothing was applied; running the whole transaction again is safe (`retryable(fn)`).
   * `statementIndex` names the first statement that differed (0 is the one that began it).
   */
  REPLAY_DIVERGED: 'PGR_REPLAY_DIVERGED',
  /** A checked-out client whose connection broke was used again. */
  CLIENT_BROKEN: 'PGR_CLIENT_BROKEN',
  /** An option passed to the constructor is invalid; the message names it. */
  INVALID_OPTION: 'PGR_INVALID_OPTION',
  /** No host in the list has the requested role (target_session_attrs) right now. */
  NO_SUITABLE_HOST: 'PGR_NO_SUITABLE_HOST',
  /** Patroni's REST API could not be read or gave an answer we cannot use. */
  DISCOVERY_FAILED: 'PGR_DISCOVERY_FAILED',
  /**
   * `durability: 'replicated'`: the write COMMITTED on the primary, but no standby was seen to
   * receive it within `replicationTimeoutMs`. Not an error of the write: do not run it again; a
   * failover before a standby receives it may lose it (a `lostCommits` event then says so).
   */
  NOT_REPLICATED: 'PGR_NOT_REPLICATED',
} as const;

/** One of the stable codes of `ErrorCodes`. */
export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

// A registry-wide brand, so `isPgResilientError` works across two installed copies of the
// package (the same reason undici brands its errors with Symbol.for).
const brand = Symbol.for('pg-resilient.error');

/** Optional fields of a `PgResilientError`. */
export interface PgResilientErrorDetails {
  /** The error behind it, kept as the standard `cause`. */
  cause?: unknown;
  /** Extra machine-readable fields (attempts, elapsedMs, host, …); never credentials. */
  [key: string]: unknown;
}

/** Base class of every error this library creates. */
export class PgResilientError extends Error {
  /** Stable code; see `ErrorCodes`. */
  readonly code: ErrorCode;
  /** Number of attempts made, when the error ends a retried call. */
  attempts?: number;
  /** Milliseconds spent on the call, when the error ends a retried call. */
  elapsedMs?: number;

  constructor(code: ErrorCode, message: string, details: PgResilientErrorDetails = {}) {
    const { cause, ...fields } = details;
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'PgResilientError';
    this.code = code;
    Object.assign(this, fields);
    Object.defineProperty(this, brand, { value: true });
  }
}

/** True for errors created by any copy of this library. */
export function isPgResilientError(value: unknown): value is PgResilientError {
  return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[brand] === true;
}

/**
 * Raised by `pool.transaction()`, and by a checked-out client's COMMIT, when the connection was
 * lost while COMMIT was in flight and the new primary could not say whether the transaction
 * committed.
 */
export class TransactionOutcomeUnknownError extends PgResilientError {
  /** The transaction's id (`txid_current()`), to look it up later with `txid_status`. */
  readonly xid: string | undefined;
  /** The timeline the transaction ran on, when known. */
  readonly timeline: number | undefined;
  /** The timeline of the primary that was asked, when it answered (differs after a failover). */
  readonly currentTimeline: number | undefined;

  /** Creates the error; `cause` is the failure that lost the connection. */
  constructor(message: string, xid: string | undefined, cause: unknown, timelines: { timeline?: number | undefined; currentTimeline?: number | undefined } = {}) {
    super(ErrorCodes.TRANSACTION_OUTCOME_UNKNOWN, message, { cause });
    this.name = 'TransactionOutcomeUnknownError';
    this.xid = xid;
    this.timeline = timelines.timeline;
    this.currentTimeline = timelines.currentTimeline;
  }
}

/**
 * Thrown at construction for a bad option: a TypeError (as pg and Node do for bad arguments)
 * that also carries the library's brand and code. `option` is its path, e.g. `retry.maxElapsedMs`.
 */
export class InvalidOptionError extends TypeError {
  /** Always PGR_INVALID_OPTION. */
  readonly code = ErrorCodes.INVALID_OPTION;
  /** Path of the bad option, e.g. `retry.maxElapsedMs`. */
  readonly option: string;

  constructor(option: string, problem: string) {
    super(`pg-resilient: invalid option \`${option}\`: ${problem}`);
    this.name = 'InvalidOptionError';
    this.option = option;
    Object.defineProperty(this, brand, { value: true });
  }
}

/** Short, credential-free description of any thrown value, for messages and logs. */
export function describeError(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    return typeof code === 'string' && code !== '' ? `${code} ${err.message}` : err.message;
  }
  return String(err);
}

// One factory per code below, so each code has one message shape, made in one place
// (test/unit/errors-one-place.test.ts fails on any `new` of these classes elsewhere in src/).
// Parameters fill the shape; every message says what went wrong without a credential.

const P = 'pg-resilient:';
const lastError = (err: unknown, label = 'last error'): string => (err === undefined ? '' : `; ${label}: ${describeError(err)}`);

/** PGR_POOL_ENDED, with pg-pool's text (pg.Pool's callers match on it); `detail` says at what point. */
export function poolEndedError(detail?: string, details: PgResilientErrorDetails = {}): PgResilientError {
  return new PgResilientError(ErrorCodes.POOL_ENDED, `${P} Cannot use a pool after calling end on the pool${detail === undefined ? '' : ` (${detail})`}`, details);
}

/** PGR_QUEUE_FULL. */
export function queueFullError(maxWaitingClients: number): PgResilientError {
  return new PgResilientError(ErrorCodes.QUEUE_FULL, `${P} ${maxWaitingClients} callers are already waiting for a connection (maxWaitingClients)`);
}

/**
 * PGR_ACQUIRE_TIMEOUT, with pg-pool's text and what was waited for. `saturated`: every connection
 * stayed busy on a healthy server (load, not an outage: not retried).
 */
export function acquireTimeoutError(detail: string, details: { cause?: unknown; saturated?: true } = {}): PgResilientError {
  return new PgResilientError(ErrorCodes.ACQUIRE_TIMEOUT, `${P} timeout exceeded when trying to connect: ${detail}`, details);
}

/** PGR_CIRCUIT_OPEN. */
export function circuitOpenError(retryInMs: number): PgResilientError {
  return new PgResilientError(ErrorCodes.CIRCUIT_OPEN, `${P} circuit breaker is open after repeated database failures`, { retryInMs });
}

/** PGR_RETRIES_EXHAUSTED: `reason` names the budget that ran out. */
export function retriesExhaustedError(reason: 'deadline' | 'max-attempts', attempts: number, elapsedMs: number, last: unknown): PgResilientError {
  return new PgResilientError(
    ErrorCodes.RETRIES_EXHAUSTED,
    `${P} database unavailable: gave up after ${attempts} attempt${attempts === 1 ? '' : 's'} in ${elapsedMs} ms (${reason === 'deadline' ? 'retry.maxElapsedMs reached' : 'retry.maxAttempts reached'})${lastError(last)}`,
    { cause: last, attempts, elapsedMs, reason },
  );
}

/**
 * PGR_DEADLINE_EXCEEDED. `inFlight`: the statement was in flight, so its connection was closed
 * and its outcome is unknown; otherwise `cause` is what was waited out.
 */
export function deadlineError(deadline: { elapsedMs(): number }, cause: unknown, inFlight = false): PgResilientError {
  const after = `${P} the call's deadline passed after ${Math.round(deadline.elapsedMs())} ms`;
  return inFlight
    ? new PgResilientError(ErrorCodes.DEADLINE_EXCEEDED, `${after} with the statement in flight; its connection was closed, and the statement may or may not have taken effect`, { inFlight: true })
    : new PgResilientError(ErrorCodes.DEADLINE_EXCEEDED, `${after}${lastError(cause)}`, { cause });
}

/** PGR_ABORTED: `cause` is the signal's reason. */
export function abortedError(signal: AbortSignal | undefined): PgResilientError {
  return new PgResilientError(ErrorCodes.ABORTED, `${P} the call was aborted by its AbortSignal`, { cause: signal?.reason });
}

/** The same error (code, message) with what was going on when it happened, and another cause. */
export function whileError(err: PgResilientError, doing: string, cause: unknown): PgResilientError {
  return new PgResilientError(err.code, `${err.message} (${doing}: ${describeError(cause)})`, { cause });
}

/** PGR_STATEMENT_OUTCOME_UNKNOWN. */
export function statementOutcomeUnknownError(cause: unknown, attempts: number, elapsedMs: number): PgResilientError {
  return new PgResilientError(
    ErrorCodes.STATEMENT_OUTCOME_UNKNOWN,
    `${P} the connection failed while the statement was in flight (${describeError(cause)}); it may or may not have taken effect, so it was not retried. Mark it idempotent: true if running it twice is harmless.`,
    { cause, attempts, elapsedMs },
  );
}

/**
 * PGR_TRANSACTION_OUTCOME_UNKNOWN: the connection was lost `where` (during COMMIT, inside a
 * transaction) and `why` the outcome is unknown; `next` tells what to do. The code is in the
 * message too, for ORMs that keep only the message.
 */
export function transactionOutcomeUnknownError(
  where: string, why: string, next: string, xid: string | undefined, cause: unknown,
  timelines: { timeline?: number | undefined; currentTimeline?: number | undefined } = {},
): TransactionOutcomeUnknownError {
  return new TransactionOutcomeUnknownError(
    `${P} ${ErrorCodes.TRANSACTION_OUTCOME_UNKNOWN}: the connection was lost ${where}${xid === undefined ? '' : ` (transaction ${xid})`} and its outcome is unknown: ${why} (${describeError(cause)}); ${next}`,
    xid, cause, timelines,
  );
}

/**
 * PGR_TRANSACTION_ROLLED_BACK. The code is in the message too: some ORMs keep only the message
 * of a driver's error (`retryable` looks there as well).
 */
export function rolledBackError(why: string, cause: unknown, fields: Record<string, unknown> = {}): PgResilientError {
  return new PgResilientError(
    ErrorCodes.TRANSACTION_ROLLED_BACK,
    `${P} ${ErrorCodes.TRANSACTION_ROLLED_BACK}: the transaction did not commit (${why}; ${describeError(cause)}); nothing of it was applied, and running it again is safe`,
    { cause, ...fields },
  );
}

/** PGR_REPLAY_DIVERGED (the code is in the message too); `command` is the statement's first word only (its text may hold values). */
export function replayDivergedError(index: number, command: string, cause: unknown): PgResilientError {
  return new PgResilientError(
    ErrorCodes.REPLAY_DIVERGED,
    `${P} ${ErrorCodes.REPLAY_DIVERGED}: the connection was lost inside a transaction, and replayed on a new connection its statement #${index} (${command} …) returned something other than what the application had been given; the replay was rolled back, nothing of the transaction was applied, and running it again is safe`,
    { cause, statementIndex: index },
  );
}

/** PGR_CLIENT_BROKEN: `server` is host:port, `broken` what broke the connection. */
export function brokenClientError(server: string, broken: unknown): PgResilientError {
  return new PgResilientError(ErrorCodes.CLIENT_BROKEN, `${P} this client's connection to ${server} broke (${describeError(broken)}); release it and take another`, { cause: broken });
}

/** PGR_INVALID_OPTION: `option` is its path (`retry.maxElapsedMs`), `problem` what is wrong with it. */
export function invalidOption(option: string, problem: string, cause?: unknown): InvalidOptionError {
  const error = new InvalidOptionError(option, problem);
  // Not enumerable, as a TypeError's own fields: a logged option error shows no parsed secret.
  if (cause !== undefined) Object.defineProperty(error, 'cause', { value: cause, enumerable: false, writable: true, configurable: true });
  return error;
}

/** PGR_NO_SUITABLE_HOST: `seen` is a host that answered in another role. */
export function noSuitableHostError(attrs: string, seen?: { host: string; port: number; role: string | undefined }): PgResilientError {
  return new PgResilientError(ErrorCodes.NO_SUITABLE_HOST, `${P} no host satisfies target_session_attrs=${attrs} right now${seen === undefined ? '' : `: ${seen.host}:${seen.port} is a ${seen.role ?? 'server of another role'}`}`);
}

/** PGR_DISCOVERY_FAILED: what is wrong with Patroni's answer. */
export function discoveryFailedError(problem: string): PgResilientError {
  return new PgResilientError(ErrorCodes.DISCOVERY_FAILED, `${P} Patroni /cluster answer cannot be used: ${problem}`);
}

/** PGR_NOT_REPLICATED: the commit happened on the primary; no standby confirmed it in time. */
export function notReplicatedError(waitedMs: number, why: string): PgResilientError {
  return new PgResilientError(
    ErrorCodes.NOT_REPLICATED,
    `${P} ${ErrorCodes.NOT_REPLICATED}: the write committed on the primary, but no standby was seen to receive it within ${waitedMs} ms (${why}); do not run it again`,
    { committed: true },
  );
}
