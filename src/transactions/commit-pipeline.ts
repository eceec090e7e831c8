import { EventEmitter } from 'node:events';
import pg from 'pg';
import type { Client, QueryConfig, QueryResult } from 'pg';

/**
 * The transaction's id, read in the same round trip as its COMMIT.
 *
 * One write carries two simple-protocol Query messages: `SELECT txid_current_if_assigned()` and
 * the application's own COMMIT text, unchanged. The server answers the first completely (its
 * ReadyForQuery flushes the answer onto the wire) before it reads the second, so whenever the
 * COMMIT may have run, the id was on its way to us first: a connection lost with the COMMIT in
 * flight leaves us the id to ask `txid_status` about, unless the id's own answer was lost with
 * it (then the outcome is reported unknown, without an id).
 *
 * Only for a transaction in progress (status 'T'). Costs the server one tiny statement and
 * the client nothing more than a round trip it makes anyway.
 */
export const XID_SQL = 'SELECT txid_current_if_assigned()::text';

/** What the id read told us: a text id, null (the transaction wrote nothing), or nothing yet. */
export type XidReading = string | null | undefined;

interface PgQuery {
  text: string;
  callback: ((err: Error | null, res?: unknown) => void) | undefined;
  _result?: { _types?: unknown };
  handleRowDescription(msg: unknown): void;
  handleDataRow(msg: unknown): void;
  handleCommandComplete(msg: unknown, con: unknown): void;
  handleEmptyQuery(con: unknown): void;
  handlePortalSuspended(con: unknown): void;
  handleCopyInResponse(con: unknown): void;
  handleCopyData(msg: unknown, con: unknown): void;
  handleError(err: Error, con: unknown): void;
  handleReadyForQuery(con: unknown): void;
}

interface PgClientInternals {
  _types?: unknown;
  pipeline?: boolean;
  _queryQueue?: unknown[];
  queryQueue?: unknown[];
}

/**
 * A pg Submittable (the interface pg-cursor uses): pg's client routes the server's messages for
 * the active query here. Two ReadyForQuery messages answer it; pg ends a query at the first, so
 * there this puts itself back at the head of pg's queue, and pg makes it active again (its
 * second `submit` writes nothing). The COMMIT's messages go to a real pg Query, so its result
 * is exactly what pg would have given. It emits 'end' once, when settled (the pool's statement
 * bookkeeping listens for it).
 */
class CommitWithXid extends EventEmitter {
  readonly text: string;
  xid: XidReading = undefined;
  readonly #client: PgClientInternals;
  readonly #inner: PgQuery;
  #phase: 'xid' | 'commit' | 'done' = 'xid';
  #submitted = false;
  /** The id read failed (the server then answers the COMMIT with ROLLBACK): the COMMIT fails with it. */
  #xidError: Error | undefined;
  readonly #settle: (err: Error | undefined, result?: QueryResult) => void;

  constructor(client: PgClientInternals, inner: PgQuery, settle: (err: Error | undefined, result?: QueryResult) => void) {
    super();
    this.#client = client;
    this.#inner = inner;
    this.text = inner.text;
    this.#settle = settle;
    inner.callback = (err, res) => this.#finish(this.#xidError ?? err ?? undefined, res as QueryResult | undefined);
  }

  submit(connection: { query(text: string): void; stream?: { cork?(): void; uncork?(): void } }): void {
    if (this.#submitted) return; // made active again after the first ReadyForQuery
    this.#submitted = true;
    const stream = connection.stream;
    stream?.cork?.();
    connection.query(XID_SQL);
    connection.query(this.text);
    stream?.uncork?.();
  }

  handleRowDescription(msg: unknown): void {
    if (this.#phase === 'commit') this.#inner.handleRowDescription(msg);
  }

  handleDataRow(msg: { fields: (string | Buffer | null)[] }): void {
    if (this.#phase === 'xid') {
      const v = msg.fields[0];
      this.xid = v === null || v === undefined ? null : String(v);
    } else if (this.#phase === 'commit') {
      this.#inner.handleDataRow(msg);
    }
  }

  handleCommandComplete(msg: unknown, con: unknown): void {
    if (this.#phase === 'xid') this.xid ??= null;
    else if (this.#phase === 'commit') this.#inner.handleCommandComplete(msg, con);
  }

  handleEmptyQuery(con: unknown): void {
    if (this.#phase === 'commit') this.#inner.handleEmptyQuery(con);
  }

  handlePortalSuspended(con: unknown): void {
    if (this.#phase === 'commit') this.#inner.handlePortalSuspended(con);
  }

  handleCopyInResponse(con: unknown): void {
    if (this.#phase === 'commit') this.#inner.handleCopyInResponse(con);
  }

  handleCopyData(msg: unknown, con: unknown): void {
    if (this.#phase === 'commit') this.#inner.handleCopyData(msg, con);
  }

  handleError(err: Error, con: unknown): void {
    if (this.#phase === 'xid' && !isConnectionGone(err)) {
      // A server error on the id read: pg has dropped us as its active query; the COMMIT's
      // answer is still to come, so be first in line again when its ReadyForQuery arrives.
      this.#xidError = err;
      this.#requeue();
      return;
    }
    if (this.#phase === 'commit') this.#inner.handleError(err, con);
    else this.#finish(err, undefined);
  }

  handleReadyForQuery(con: unknown): void {
    if (this.#phase === 'xid') {
      this.#requeue();
      return;
    }
    if (this.#phase === 'commit') this.#inner.handleReadyForQuery(con);
  }

  #requeue(): void {
    this.#phase = 'commit';
    const queue = this.#client._queryQueue ?? this.#client.queryQueue;
    queue?.unshift(this);
  }

  #finish(err: Error | undefined, result: QueryResult | undefined): void {
    if (this.#phase === 'done') return;
    this.#phase = 'done';
    // Taken off pg's queue if a lost connection failed us while we waited there.
    const queue = this.#client._queryQueue ?? this.#client.queryQueue;
    const at = queue?.indexOf(this) ?? -1;
    if (at >= 0) queue!.splice(at, 1);
    this.#settle(err, result);
    this.emit('end');
  }
}

/** pg's own errors for a connection that ended (no SQLSTATE): nothing more will arrive. */
function isConnectionGone(err: Error): boolean {
  return typeof (err as { severity?: unknown }).severity !== 'string';
}

/** A COMMIT sent with the id read before it, in one round trip. */
export interface PipelinedCommit {
  /** Settles as the COMMIT does (pg's result or error). */
  readonly done: Promise<QueryResult>;
  /** The id as read so far (undefined until its answer arrived). */
  xid(): XidReading;
}

/**
 * Sends `config` (a simple-protocol COMMIT text, possibly with other statements) with the id
 * read before it. Null when that is not possible (values, a named statement, a client in pg's
 * pipeline mode): the caller then reads the id in a round trip of its own.
 */
export function commitWithXid(client: Client, config: QueryConfig): PipelinedCommit | null {
  const internals = client as unknown as PgClientInternals;
  const extended = (config.values !== undefined && config.values.length > 0) || config.name !== undefined
    || (config as { queryMode?: unknown }).queryMode === 'extended' || (config as { rows?: unknown }).rows !== undefined;
  if (extended || internals.pipeline === true || (internals._queryQueue ?? internals.queryQueue) === undefined) return null;
  const QueryClass = (pg as unknown as { Query: new (config: QueryConfig) => PgQuery }).Query;
  const inner = new QueryClass({ ...config, values: undefined });
  // What pg's client.query does for its own queries: its type parsers (client.setTypeParser).
  if (inner._result !== undefined && inner._result._types === undefined) inner._result._types = internals._types;
  let query!: CommitWithXid;
  const done = new Promise<QueryResult>((resolve, reject) => {
    query = new CommitWithXid(internals, inner, (err, result) => (err === undefined ? resolve(result!) : reject(err)));
  });
  (client as unknown as { query(q: object): unknown }).query(query);
  return { done, xid: () => query.xid };
}
