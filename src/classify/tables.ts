/**
 * Lookup tables behind `classify()`. Data only: every row says what one kind of failure means
 * for a client. Sources: PostgreSQL's errcodes (Appendix A), Node's socket errno codes, and
 * the literal messages of pg@8 / pg-pool@3 (which give their own errors no code).
 */

/** The stable names of failure classes; used in events, metric labels and reports. */
export type FailureCategory =
  | 'connection-lost' // the socket died under us (reset, closed, keepalive/read timeout)
  | 'connect-failed' // could not open a connection (refused, unreachable, DNS, connect timeout)
  | 'server-shutdown' // 57P01/57P02: the server ended our session
  | 'cannot-connect-now' // 57P03: starting up, shutting down, in recovery
  | 'session-timeout' // 57P05 and friends: the server closed an idle session; nothing lost
  | 'read-only' // 25006: we are on a standby or a demoted primary
  | 'serialization' // 40001/40P01: the transaction may be run again
  | 'too-many-connections' // 53300, PgBouncer's max_client_conn: a connection limit was reached
  | 'pooler-wait-timeout' // PgBouncer's query_wait_timeout: no server connection came free in time
  | 'prepared-statement' // 26000/42P05: a named statement is missing or taken (transaction pooling)
  | 'resources' // 53xxx/58xxx: the server is short of something
  | 'query-timeout' // the client gave up waiting for a result (query_timeout)
  | 'canceled' // 57014: statement timeout or cancel request: the caller asked for it
  | 'outcome-unknown' // 08007: the server itself says it doesn't know
  | 'auth' // 28xxx: credentials
  | 'configuration' // 3D000 no such database, and the like: a deployment problem
  | 'statement' // 42xxx, 23xxx, 22xxx …: an error in the statement or its data
  | 'pool' // the pool could not hand out a connection in time (acquire timeout, queue full)
  | 'pool-ended' // the pool was ended
  | 'circuit-open' // our breaker refused the call
  | 'aborted' // the caller's signal fired
  | 'client-misuse' // the driver refused an API misuse (reused client, bad query config)
  | 'unknown';

/** What a failure means. Every field answers one of the questions a pool must ask. */
export interface FailureTraits {
  /** The failure class. */
  readonly category: FailureCategory;
  /** Can the connection that saw this error be used again? (If not: evict it.) */
  readonly connectionUsable: boolean;
  /**
   * If a statement was in flight: 'none' = it certainly had no effect (the server rejected it,
   * or it was never sent); 'unknown' = it may have taken effect.
   */
  readonly effect: 'none' | 'unknown';
  /** Is the cluster's topology probably changing (re-find the primary, drain old connections)? */
  readonly topologyChanging: boolean;
  /** Is it worth waiting for: would the same call probably succeed a little later? */
  readonly transient: boolean;
  /** Does it say something about the database's health (feeds the circuit breaker)? */
  readonly countsForBreaker: boolean;
  /**
   * The server (or the pooler in front of it) is there but cannot take this connection now:
   * 53300 too many clients, 57P03 starting up / shutting down / in recovery, PgBouncer's
   * max_client_conn and query_wait_timeout. Worth waiting for with backoff, but no sign that
   * the host is down: it never counts for the circuit breaker, and connecting again at once
   * only adds to the load that caused it.
   */
  readonly serverBusy: boolean;
}

export function traits(
  category: FailureCategory,
  connectionUsable: boolean,
  effect: 'none' | 'unknown',
  topologyChanging: boolean,
  transient: boolean,
  countsForBreaker: boolean,
  serverBusy = false,
): FailureTraits {
  return Object.freeze({ category, connectionUsable, effect, topologyChanging, transient, countsForBreaker, serverBusy });
}

// Reused rows (exported for the pooler table). A server ERROR (not FATAL) in autocommit rolls
// its statement back: effect 'none'.
export const CONNECTION_LOST = traits('connection-lost', false, 'unknown', true, true, true);
export const CONNECT_FAILED = traits('connect-failed', false, 'none', true, true, true);
const SERVER_SHUTDOWN = traits('server-shutdown', false, 'unknown', true, true, true);
/** The same FATAL with proof that its statement had not reached a commit point (classify.ts, fatal-proof.ts). */
export const SHUTDOWN_BEFORE_COMMIT = traits('server-shutdown', false, 'none', true, true, true);
// 57P03 is "busy" (issue #18: backoff, not counted against the host), but still a topology
// signal. It only ever arrives at login, and the pool starts a failover on a failed connect only
// when no statement succeeded on the current primary within the last second
// (src/pool/failures.ts, connectFailed), so next to working connections it changes nothing.
// When nothing is being served, it can be the only sign of a switchover: the old primary
// answers "shutting down" through its shutdown checkpoint, then "starting up" as it rejoins as
// a standby. Without the signal, a Patroni-discovery pool would keep knocking on the old leader
// (src/topology/topology.ts #fromDiscovery returns only the leader unless a failover is
// pending) until the next discovery poll (patroni.refreshIntervalMs, 5 s), and a multi-host
// pool would skip the promoted standby for hostRecheckMs; the signal makes discovery hunt every
// 100 ms and the pool try every member. 53300 is no topology signal: the server is the primary.
export const CANNOT_CONNECT_NOW = traits('cannot-connect-now', false, 'none', true, true, false, true);
const READ_ONLY = traits('read-only', false, 'none', true, true, false);
const SERIALIZATION = traits('serialization', true, 'none', false, true, false);
export const TOO_MANY = traits('too-many-connections', false, 'none', false, true, false, true);
export const RESOURCES = traits('resources', true, 'none', false, true, true);
const CANCELED = traits('canceled', true, 'none', false, false, false);
export const AUTH = traits('auth', false, 'none', false, false, false);
export const CONFIGURATION = traits('configuration', false, 'none', false, false, false);
const STATEMENT = traits('statement', true, 'none', false, false, false);
// A named statement that this server connection does not have (26000) or already has (42P05):
// behind a transaction pooler (PgBouncer < 1.21) a client's statements are spread over server
// connections. An ERROR: nothing ran, the connection goes on. The pool's first answer is to
// Parse again or send it unnamed on the same connection (namedStatementRecovery in
// retry-safety.ts, src/prepared/prepared-statements.ts); should that still fail, the retry loop may run it
// again like any rejection without effect, because every new send is repaired (named anew, or
// unnamed once the pool knows it is behind a transaction pooler). Never counted by the breaker.
const PREPARED = traits('prepared-statement', true, 'none', false, true, false);

/** SQLSTATE → traits, exact codes. Checked before the class table below. */
export const SQLSTATE_TABLE: ReadonlyMap<string, FailureTraits> = new Map([
  ['57P01', SERVER_SHUTDOWN], // admin_shutdown: fast shutdown, switchover, pg_terminate_backend
  ['57P02', SERVER_SHUTDOWN], // crash_shutdown: another backend crashed
  ['57P03', CANNOT_CONNECT_NOW], // starting up / shutting down / in recovery
  ['57P04', traits('configuration', false, 'none', false, false, false)], // database_dropped
  ['57P05', traits('session-timeout', false, 'none', false, true, false)], // idle_session_timeout
  ['25P03', traits('session-timeout', false, 'none', false, true, false)], // idle_in_transaction_session_timeout
  ['57014', CANCELED], // query_canceled: statement_timeout or a cancel request
  ['25006', READ_ONLY], // read_only_sql_transaction
  ['40001', SERIALIZATION], // serialization_failure
  ['40P01', SERIALIZATION], // deadlock_detected
  ['53300', TOO_MANY], // too_many_connections
  ['26000', PREPARED], // invalid_sql_statement_name: prepared statement "…" does not exist
  ['42P05', PREPARED], // duplicate_prepared_statement: prepared statement "…" already exists
  ['08007', traits('outcome-unknown', false, 'unknown', true, false, true)], // transaction_resolution_unknown
  // protocol_violation: sent as an ERROR for client bugs (wrong number of bind parameters); the
  // session goes on. A FATAL 08P01 is PgBouncer's (pooler.ts, by message) or else caught by the
  // severity rule in classify().
  ['08P01', traits('client-misuse', true, 'none', false, false, false)],
  ['3D000', CONFIGURATION], // invalid_catalog_name: no such database
  ['3F000', CONFIGURATION], // invalid_schema_name
  ['55000', STATEMENT], // object_not_in_prerequisite_state
]);

/** SQLSTATE class (first two characters) → traits, for codes not in the exact table. */
export const SQLSTATE_CLASS_TABLE: ReadonlyMap<string, FailureTraits> = new Map([
  ['08', CONNECTION_LOST], // connection_exception and its subclasses
  ['28', AUTH], // invalid_authorization_specification, invalid_password
  ['53', RESOURCES], // insufficient_resources (disk full, out of memory)
  ['58', RESOURCES], // system_error: I/O error, undefined file
  ['40', SERIALIZATION], // transaction_rollback (others: integrity constraint, statement completion unknown)
  ['42', STATEMENT], // syntax error or access rule violation
  ['23', STATEMENT], // integrity constraint violation
  ['22', STATEMENT], // data exception
  ['21', STATEMENT], // cardinality violation
  ['25', STATEMENT], // invalid transaction state
  ['0A', STATEMENT], // feature not supported
  ['P0', STATEMENT], // PL/pgSQL raise
  ['XX', traits('unknown', false, 'unknown', false, false, true)], // internal error
]);

/** Node socket and DNS errno codes. `effect` assumes a statement was in flight (see classify). */
export const ERRNO_TABLE: ReadonlyMap<string, FailureTraits> = new Map([
  ['ECONNREFUSED', CONNECT_FAILED], // nothing listens: node down or restarting
  ['EHOSTUNREACH', CONNECT_FAILED],
  ['ENETUNREACH', CONNECT_FAILED],
  ['EHOSTDOWN', CONNECT_FAILED],
  ['ENOTFOUND', CONNECT_FAILED], // DNS: the pod was deleted and its name is gone for a while
  ['EAI_AGAIN', CONNECT_FAILED], // DNS temporary failure
  ['EADDRNOTAVAIL', CONNECT_FAILED],
  ['ECONNRESET', CONNECTION_LOST],
  ['EPIPE', CONNECTION_LOST],
  ['ECONNABORTED', CONNECTION_LOST],
  ['ETIMEDOUT', CONNECTION_LOST], // keepalive or connect timeout at the socket layer
  ['ERR_SOCKET_CLOSED', CONNECTION_LOST],
  ['ERR_STREAM_DESTROYED', CONNECTION_LOST],
  ['ERR_STREAM_WRITE_AFTER_END', CONNECTION_LOST],
  // TLS verification failures: a deployment problem that waiting will not fix.
  ['DEPTH_ZERO_SELF_SIGNED_CERT', CONFIGURATION],
  ['SELF_SIGNED_CERT_IN_CHAIN', CONFIGURATION],
  ['UNABLE_TO_VERIFY_LEAF_SIGNATURE', CONFIGURATION],
  ['UNABLE_TO_GET_ISSUER_CERT_LOCALLY', CONFIGURATION],
  ['CERT_HAS_EXPIRED', CONFIGURATION],
  ['ERR_TLS_CERT_ALTNAME_INVALID', CONFIGURATION],
]);

/**
 * pg@8 and pg-pool@3 messages (they carry no code). Pinned to pg's major version: the test
 * suite reproduces each against the real driver, so a changed message in pg@9 fails a test.
 * Matched by prefix, so `cause`-free messages with suffixes still match.
 */
export const PG_MESSAGE_TABLE: ReadonlyArray<readonly [string, FailureTraits]> = [
  ['Connection terminated unexpectedly', CONNECTION_LOST],
  ['Connection terminated due to connection timeout', CONNECT_FAILED],
  ['Connection terminated', CONNECTION_LOST], // our own end() raced a query: it may have run
  ['timeout expired', CONNECT_FAILED], // pg.Client's connectionTimeoutMillis
  ['Query read timeout', traits('query-timeout', false, 'unknown', true, true, true)],
  // Thrown before the query is written to the socket: it certainly never ran.
  ['Client has encountered a connection error and is not queryable', traits('connection-lost', false, 'none', true, true, true)],
  ['Client was closed and is not queryable', traits('connection-lost', false, 'none', false, true, false)],
  ['timeout exceeded when trying to connect', traits('pool', true, 'none', false, true, false)],
  ['Cannot use a pool after calling end on the pool', traits('pool-ended', true, 'none', false, false, false)],
  ['The server does not support SSL connections', CONFIGURATION],
  ['Client has already been connected', traits('client-misuse', true, 'none', false, false, false)],
  ['Query values must be an array', traits('client-misuse', true, 'none', false, false, false)],
  ['A query must have either text or a name', traits('client-misuse', true, 'none', false, false, false)],
];

/** Our own error codes. */
export const PGR_CODE_TABLE: ReadonlyMap<string, FailureTraits> = new Map([
  ['PGR_POOL_ENDED', traits('pool-ended', true, 'none', false, false, false)],
  ['PGR_ACQUIRE_TIMEOUT', traits('pool', true, 'none', false, true, false)],
  ['PGR_QUEUE_FULL', traits('pool', true, 'none', false, false, false)],
  ['PGR_CIRCUIT_OPEN', traits('circuit-open', true, 'none', false, true, false)],
  ['PGR_ABORTED', traits('aborted', true, 'none', false, false, false)],
  ['PGR_RETRIES_EXHAUSTED', traits('unknown', true, 'none', false, false, false)],
  ['PGR_DEADLINE_EXCEEDED', traits('unknown', true, 'unknown', false, false, false)],
  ['PGR_INVALID_OPTION', traits('client-misuse', true, 'none', false, false, false)],
  ['PGR_CLIENT_BROKEN', traits('connection-lost', false, 'none', true, false, false)],
  ['PGR_NO_SUITABLE_HOST', traits('connect-failed', true, 'none', true, true, true)],
  ['PGR_DISCOVERY_FAILED', traits('connect-failed', true, 'none', true, true, true)],
  ['PGR_STATEMENT_OUTCOME_UNKNOWN', traits('connection-lost', false, 'unknown', true, false, false)],
  ['PGR_TRANSACTION_OUTCOME_UNKNOWN', traits('outcome-unknown', false, 'unknown', true, false, false)],
  // Nothing of the transaction was applied; running it again is the application's (retryable()).
  ['PGR_TRANSACTION_ROLLED_BACK', traits('connection-lost', false, 'none', true, false, false)],
  ['PGR_REPLAY_DIVERGED', traits('connection-lost', false, 'none', true, false, false)],
  // The write committed: never run again, and nothing is wrong with the connection.
  ['PGR_NOT_REPLICATED', traits('unknown', true, 'unknown', false, false, false)],
]);

/**
 * A wait for a connection that timed out only because every connection stayed busy on a
 * healthy server (`saturated`): load, which callers shed with `connectionTimeoutMillis`, not an
 * outage to wait out. Not transient, so never retried.
 */
export const SATURATED_TRAITS = traits('pool', true, 'none', false, false, false);

/** Anything we cannot place: assume the worst about effect, don't retry, don't blame the server. */
export const UNKNOWN_TRAITS: FailureTraits = traits('unknown', false, 'unknown', false, false, false);
/** A server error whose SQLSTATE is in no table: an ERROR leaves the connection usable. */
export const UNKNOWN_SERVER_ERROR: FailureTraits = traits('unknown', true, 'none', false, false, false);
/** Any FATAL/PANIC not otherwise known: the session is gone and we can't say more. */
export const UNKNOWN_FATAL: FailureTraits = traits('connection-lost', false, 'unknown', true, true, true);
