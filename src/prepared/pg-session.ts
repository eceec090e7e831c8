/**
 * The few internals of a node-postgres `Client` that a statement cache must reach, in one
 * place, for pg 8.11 – 8.23 (read in their source; the field names moved in 8.20):
 *
 * - `client.connection.parsedStatements`: pg's own per-connection record, statement name →
 *   text, filled on ParseComplete and never emptied. A query whose name is in it is sent as
 *   Bind/Execute without a Parse. It survives DISCARD ALL, DEALLOCATE and a failed Bind, so
 *   after those pg keeps sending Binds for names the server no longer has (26000) until the
 *   name is deleted here. 8.23 adds `submittedNamedStatements` (Parse sent, answer pending) for
 *   its pipeline mode; it cleans that one itself on errors.
 * - `client.connection.close({ type: 'S', name })`: the protocol's Close message. Unlike SQL
 *   `DEALLOCATE` it needs no round trip of its own (the server queues CloseComplete with the
 *   next answer, and pg ignores that message), is no error for a name the server does not have,
 *   and works in an aborted transaction. It must not be written while a query is active (a
 *   COPY in progress would take it as a protocol violation), hence `canWriteNow()`.
 * - the active query and the queues (`_activeQuery`/`_queryQueue` from 8.20, `_sentQueryQueue`
 *   from 8.23, `activeQuery`/`queryQueue` before; 8.20+ logs a deprecation for the old getters), and the
 *   socket's state (`_connected`, `_queryable`, `readyState`: a write to a socket that is not open
 *   becomes an 'error' event, which before `connect()` nobody listens to).
 * - the transaction status of the last ReadyForQuery (`getTransactionStatus()` from 8.21;
 *   before, from the connection's `readyForQuery` event).
 */

/** Transaction status from the server's last ReadyForQuery: idle, in a block, in a failed block. */
export type TxStatus = 'I' | 'T' | 'E';

interface PgConnectionInternals {
  parsedStatements?: Record<string, string>;
  stream?: { readyState?: string };
  close?(msg: { type: 'S' | 'P'; name: string }): unknown;
  on?(event: 'readyForQuery', listener: (msg: { status?: unknown }) => void): unknown;
}

interface PgClientInternals {
  connection?: PgConnectionInternals;
  _activeQuery?: unknown;
  activeQuery?: unknown;
  _queryQueue?: unknown[];
  queryQueue?: unknown[];
  _sentQueryQueue?: unknown[];
  /** Set by pg once the session is ready (all 8.x). */
  _connected?: boolean;
  /** Cleared by pg when the socket failed (all 8.x). */
  _queryable?: boolean;
  getTransactionStatus?(): unknown;
}

/** What a statement cache does to pg's side of one connection. */
export interface PgSession {
  /** True when pg believes the server holds a statement of this name (it will skip Parse). */
  isParsed(name: string): boolean;
  /** Deletes pg's record of `name`, so the next query with that name sends Parse again. */
  forgetParsed(name: string): void;
  /**
   * True when nothing is in flight or queued on the client: a Close written now reaches the
   * server between two queries. Always true for a client the pool just took from its idle
   * stack; false while a COPY, a cursor or a queued query is pending.
   */
  canWriteNow(): boolean;
  /** Writes a Close for the named statement (no round trip; the caller checked canWriteNow). */
  closeStatement(name: string): void;
  /** The server's transaction status as last reported; undefined before the first report. */
  transactionStatus(): TxStatus | undefined;
}

function asTxStatus(v: unknown): TxStatus | undefined {
  return v === 'I' || v === 'T' || v === 'E' ? v : undefined;
}

/**
 * Binds to one pg Client. Throws a TypeError when the client lacks pg's record of parsed
 * statements (not a node-postgres Client, or a pg major version with other internals), so a
 * mismatch shows at connection time, not as wrong results.
 */
export function pgSession(client: object): PgSession {
  const c = client as PgClientInternals;
  const connection = c.connection;
  const parsed = connection?.parsedStatements;
  if (connection === undefined || parsed === undefined || typeof parsed !== 'object' || typeof connection.close !== 'function') {
    throw new TypeError('prepared statements need a node-postgres Client (pg 8.11 or later): connection.parsedStatements / connection.close not found');
  }
  const close = connection.close.bind(connection);
  const modern = '_activeQuery' in c; // pg ≥ 8.20
  const active = modern ? (): unknown => c._activeQuery : (): unknown => c.activeQuery;
  const queued = modern ? (): number => (c._queryQueue?.length ?? 0) + (c._sentQueryQueue?.length ?? 0) : (): number => c.queryQueue?.length ?? 0;

  let transactionStatus: () => TxStatus | undefined;
  if (typeof c.getTransactionStatus === 'function') {
    const get = c.getTransactionStatus.bind(c);
    transactionStatus = () => asTxStatus(get());
  } else {
    // pg < 8.21 does not keep it; one listener per connection records it (one call per query).
    let last: TxStatus | undefined;
    connection.on?.('readyForQuery', (msg) => {
      last = asTxStatus(msg.status);
    });
    transactionStatus = () => last;
  }

  return {
    isParsed: (name) => parsed[name] !== undefined,
    forgetParsed: (name) => {
      delete parsed[name];
    },
    // A socket not (or no longer) open would turn the write into an 'error' event.
    canWriteNow: () =>
      c._connected === true && c._queryable !== false && connection.stream?.readyState === 'open' &&
      (active() === null || active() === undefined) && queued() === 0,
    closeStatement: (name) => {
      close({ type: 'S', name });
    },
    transactionStatus,
  };
}
