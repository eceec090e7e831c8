/**
 * What PgBouncer's own errors mean. Data only, like tables.ts. PgBouncer sends every error it
 * raises itself as FATAL with SQLSTATE 08P01 and then closes the client's socket, so only the
 * message tells them apart. Messages of PgBouncer 1.18 (Debian bookworm), each captured from the
 * real program in test/helpers/real-errors-pgbouncer.ts; those of other versions (read in
 * PgBouncer's source) are marked with the version.
 */
import {
  AUTH,
  CANNOT_CONNECT_NOW,
  CONFIGURATION,
  CONNECT_FAILED,
  CONNECTION_LOST,
  TOO_MANY,
  traits,
  type FailureTraits,
} from './tables.ts';

/**
 * PgBouncer could not get a server connection for this client: the server is down or refusing
 * logins. The statement never reached a server (effect 'none'), the socket is closed, and the
 * server behind the pooler is probably changing (a failover or a restart).
 */
const SERVER_UNREACHABLE = CONNECT_FAILED;

/**
 * PgBouncer's own messages, matched in order against the whole message. The first column is a
 * regular expression so that messages carrying a name or a version-specific tail still match.
 */
export const POOLER_MESSAGE_TABLE: ReadonlyArray<readonly [RegExp, FailureTraits]> = [
  // The server connection this client was linked to closed (the backend was killed, crashed or
  // terminated, or the network between pooler and server broke) while a statement or a
  // transaction was in flight: it may have run. Also the second error after a relayed 57P01.
  [/^server conn crashed\?$/, CONNECTION_LOST],
  // The last login to the server failed and no server connection is left: the client is failed
  // fast for server_login_retry seconds (1.17+). Before 1.17 the same case said "pgbouncer
  // cannot connect to server". From 1.24 the message carries the cached error; see
  // classifyPoolerMessage for that form.
  [/^server login has been failing, try again later \(server_login_retry\)$/, SERVER_UNREACHABLE],
  [/^pgbouncer cannot connect to server$/, SERVER_UNREACHABLE],
  // A client logging in to a pool whose first server login has not succeeded yet.
  [/^client_login_timeout \(server down\)$/, SERVER_UNREACHABLE],
  // The pooler's own client limit: like 53300, "there but full". Back off; not the host's health.
  [/^no more connections allowed \(max_client_conn\)$/, TOO_MANY],
  // Waited query_wait_timeout for a server connection and never got one (pool exhausted, PAUSE,
  // or the server down): the statement never reached a server. Busy, not a topology signal:
  // a server that is down shows through "server login has been failing" to other clients.
  [/^query_wait_timeout$/, traits('pooler-wait-timeout', false, 'none', false, true, false, true)],
  // Admin console KILL (an operator redirecting the pool, often during a manual switchover):
  // statements in flight may have run; the database stays paused until RESUME.
  [/^database removed$/, CONNECTION_LOST],
  // PgBouncer's query_timeout: the statement ran too long (or waited too long) and the server
  // connection was dropped under it. Like a statement timeout the operator set, but the
  // statement may still finish on the server.
  [/^query_timeout$/, traits('query-timeout', false, 'unknown', false, false, false)],
  // Session-level timeouts: an idle session or an idle transaction (rolled back) was closed.
  [/^client_idle_timeout$/, traits('session-timeout', false, 'none', false, true, false)],
  [/^idle transaction timeout$/, traits('session-timeout', false, 'none', false, true, false)],
  // The client itself did not finish its login in time (not the "server down" variant above).
  [/^client_login_timeout$/, traits('connect-failed', false, 'none', false, true, false)],
  // Online restart (SUSPEND, -R): connections with unsent data are dropped.
  [/^suspend_timeout$/, traits('connection-lost', false, 'unknown', false, true, false)],
  [/^(no memory for pool|bouncer resources exhaustion|pause failed|out of memory)$/, traits('resources', false, 'none', false, true, true)],
  // 1.22+: a pooler draining for a rolling restart (SHUTDOWN WAIT_FOR_SERVERS / WAIT_FOR_CLIENTS)
  // turns away waiting and new clients: nothing was sent to a server; another pooler replica
  // (or this one, restarted) will take the next connection. The server behind is unchanged.
  [/^(server shutting down|pooler is shutting down)$/, traits('cannot-connect-now', false, 'none', false, true, false, true)],
  // 1.23+: per-database and per-user client limits, like max_client_conn.
  [/^client connections exceeded \(max_(db|user)_client_connections\)$/, TOO_MANY],
  // 1.21+ with max_prepared_statements: PgBouncer's own tracking of named statements refused
  // a Bind/Close of an unknown name or a second Parse of a name in use. Nothing ran.
  [/^(prepared statement did not exist|prepared statement name is already in use)$/, traits('prepared-statement', false, 'none', false, false, false)],
  // Configuration and credentials: the same on every try. Never retried, never the breaker.
  [/^no such database: /, CONFIGURATION],
  [/^database ".*" is disabled$/, CONFIGURATION],
  [/^unsupported startup parameter: /, CONFIGURATION],
  [/^(SSL required|bouncer config error|old V2 protocol not supported)$/, CONFIGURATION],
  [/^(no such user|login rejected|not allowed|no username supplied)$/, AUTH],
  [/^(password authentication failed|SASL authentication failed|"trust" authentication failed|certificate authentication failed|PAM authentication failed)$/, AUTH],
  [/^server login failed: /, AUTH],
];

/**
 * PostgreSQL's refusals of a login, as PgBouncer relays them to clients waiting for a pool's
 * first server login: PostgreSQL's message, but SQLSTATE 08P01 instead of its own code.
 */
export const RELAYED_LOGIN_MESSAGE_TABLE: ReadonlyArray<readonly [RegExp, FailureTraits]> = [
  [/^the database system is (starting up|shutting down|in recovery mode|not yet accepting connections|not accepting connections)/, CANNOT_CONNECT_NOW],
  [/^(sorry, too many clients already|remaining connection slots are reserved)/, TOO_MANY],
  [/^password authentication failed for user /, AUTH],
  [/^role ".*" does not exist$/, AUTH],
  [/^no pg_hba\.conf entry /, AUTH],
  [/^database ".*" does not exist$/, CONFIGURATION],
];

// 1.24+: "server login has been failing, cached error: <the server's message> (server_login_retry)"
const CACHED_ERROR = /^server login has been failing, cached error: (.*) \(server_login_retry\)$/s;

/**
 * Traits of a FATAL 08P01 message from PgBouncer, or undefined when the message is not one of
 * PgBouncer's (then it is treated as any other FATAL).
 */
export function classifyPoolerMessage(message: string): FailureTraits | undefined {
  const cached = CACHED_ERROR.exec(message);
  if (cached !== undefined && cached !== null) {
    // A cached refusal that waiting will not fix (wrong password, no such database) keeps its
    // own class: retrying it for server_login_retry seconds would only delay the real error.
    const inner = lookup(RELAYED_LOGIN_MESSAGE_TABLE, cached[1] ?? '');
    return inner !== undefined && !inner.transient ? inner : SERVER_UNREACHABLE;
  }
  return lookup(POOLER_MESSAGE_TABLE, message) ?? lookup(RELAYED_LOGIN_MESSAGE_TABLE, message);
}

function lookup(table: ReadonlyArray<readonly [RegExp, FailureTraits]>, message: string): FailureTraits | undefined {
  for (const [re, t] of table) if (re.test(message)) return t;
  return undefined;
}
