import { EventEmitter } from 'node:events';
import pg from 'pg';
import type { Client, QueryConfig, QueryResult } from 'pg';
import { POSITION_COLUMNS, positionOf } from './primary-position.ts';
import type { WalPosition } from './timeline.ts';

/**
 * The transaction's id (`txid_current_if_assigned()`), read in the round trip of a statement the
 * application sends anyway, so that a COMMIT whose answer is lost can be looked up:
 *
 * - `after` (the first writing statement of a transaction): the application's statement, then the
 *   id read, in one write. Once the id is known, COMMIT goes out as it is, and whenever it may
 *   have run, we hold the id. A connection lost before the id came back is lost before COMMIT
 *   was sent: the transaction is replayed, nothing to resolve.
 * - `before` (COMMIT of a transaction whose id is not known yet): the id read, then the COMMIT.
 *   The server answers the first completely (its ReadyForQuery flushes the answer) before it
 *   reads the second, so the id is on its way first; only a connection lost with both in
 *   flight and the id's answer not yet here leaves the outcome unknown. A FATAL error from the
 *   server ahead of the id's answer proves the COMMIT never ran (`notRun`).
 *
 * The same statement reads where the primary's WAL stands and on which timeline (timeline.ts):
 * after the transaction's writes and before its COMMIT, which is what a failover's fork point is
 * compared with. On a standby (a read-only transaction) those two are NULL.
 *
 * Costs the server one tiny statement per writing transaction, and no round trip.
 */
export const XID_SQL = `SELECT txid_current_if_assigned()::text AS xid, ${POSITION_COLUMNS}`;

/** Where XID_SQL's row holds the position's two fields (after `xid` and `standby`). */
export const XID_LSN_FIELD = 2;
export const XID_TLI_FIELD = 3;

/** What the id read told us: a text id, null (nothing written so far), or nothing yet. */
export type XidReading = string | null | undefined;

/** The parts of pg's Query a Submittable that wraps one uses (pg 8's query.js). */
export interface PgQuery {
  text: string;
  name?: string;
  binary?: boolean;
  rows?: number;
  callback: ((err: Error | null, res?: unknown) => void) | undefined;
  _result?: { _types?: unknown };
  submit(connection: unknown): Error | null | undefined;
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
  binary?: boolean;
  pipeline?: boolean;
  _queryQueue?: unknown[];
  queryQueue?: unknown[];
}

interface PgConnection {
  query(text: string): void;
  stream?: { cork?(): void; uncork?(): void };
}

type Part = 'app' | 'xid';

/**
 * A pg Submittable (the interface pg-cursor uses) carrying two statements: pg's client routes the
 * server's messages for the active query here, and each statement ends with a ReadyForQuery.
 * pg ends a query at the first one, so there this puts itself back at the head of pg's queue and
 * pg makes it active again (its second `submit` writes nothing). The application's statement is
 * a real pg Query, so its result is exactly what pg gives; it is delivered when both are done
 * (nothing the application sends next waits in pg's queue behind the id read). Emits 'end' once,
 * when settled (the pool's statement bookkeeping listens for it).
 */
class WithXid extends EventEmitter {
  xid: XidReading = undefined;
  at: WalPosition | undefined;
  /** A FATAL error from the server came before anything of the second statement: it never ran. */
  secondNotRun = false;
  readonly #client: PgClientInternals;
  readonly #inner: PgQuery;
  readonly #order: readonly [Part, Part];
  #at = 0; // index in #order of the statement whose messages come now; 2 = done
  #submitted = false;
  #settled = false;
  #completions = 0;
  #appOutcome: { err: Error | null; res?: unknown } | undefined;
  #xidError: Error | undefined;
  readonly #settle: (err: Error | undefined, result?: QueryResult) => void;

  constructor(client: PgClientInternals, inner: PgQuery, xidFirst: boolean, settle: (err: Error | undefined, result?: QueryResult) => void) {
    super();
    this.#client = client;
    this.#inner = inner;
    this.#order = xidFirst ? ['xid', 'app'] : ['app', 'xid'];
    this.#settle = settle;
    inner.callback = (err, res) => {
      this.#appOutcome = { err, res };
    };
  }

  // pg reads these of its active query (parsed statement bookkeeping).
  get text(): string {
    return this.#inner.text;
  }

  /** CommandCompletes received of both statements: what a FATAL's evidence counts (src/pool/fatal-evidence.ts). */
  get completedStatements(): number {
    return this.#completions;
  }

  get name(): string | undefined {
    return this.#inner.name;
  }

  submit(connection: PgConnection): Error | null | undefined {
    if (this.#submitted) return undefined; // made active again after the first ReadyForQuery
    this.#submitted = true;
    const stream = connection.stream;
    stream?.cork?.();
    try {
      for (const part of this.#order) {
        if (part === 'xid') {
          connection.query(XID_SQL);
          continue;
        }
        const err = this.#inner.submit(connection);
        if (err) {
          // pg refused the application's statement before sending it (it reports such errors
          // through the query): nothing is sent.
          return err;
        }
      }
    } finally {
      stream?.uncork?.();
    }
    return undefined;
  }

  get #part(): Part | undefined {
    return this.#order[this.#at];
  }

  handleRowDescription(msg: unknown): void {
    if (this.#part === 'app') this.#inner.handleRowDescription(msg);
  }

  handleDataRow(msg: { fields: (string | Buffer | null)[] }): void {
    if (this.#part === 'app') this.#inner.handleDataRow(msg);
    else if (this.#part === 'xid') {
      const v = msg.fields[0];
      this.xid = v === null || v === undefined ? null : String(v);
      this.at = positionOf(msg.fields[XID_LSN_FIELD]?.toString(), msg.fields[XID_TLI_FIELD]?.toString());
    }
  }

  handleCommandComplete(msg: unknown, con: unknown): void {
    this.#completions += 1;
    if (this.#part === 'app') this.#inner.handleCommandComplete(msg, con);
    else if (this.#part === 'xid') this.xid ??= null;
  }

  handleEmptyQuery(con: unknown): void {
    if (this.#part === 'app') this.#inner.handleEmptyQuery(con);
  }

  handlePortalSuspended(con: unknown): void {
    if (this.#part === 'app') this.#inner.handlePortalSuspended(con);
  }

  handleCopyInResponse(con: unknown): void {
    if (this.#part === 'app') this.#inner.handleCopyInResponse(con);
  }

  handleCopyData(msg: unknown, con: unknown): void {
    if (this.#part === 'app') this.#inner.handleCopyData(msg, con);
  }

  handleError(err: Error, con: unknown): void {
    if (this.#at >= 2) return;
    const severity = (err as { severity?: unknown }).severity;
    if (severity === 'ERROR') {
      // The server refused this statement. pg has dropped us as its active query and will take
      // the statement's ReadyForQuery itself; the next statement's messages come after it.
      if (this.#part === 'app') this.#inner.handleError(err, con);
      else this.#xidError = err;
      this.#at += 1;
      if (this.#at >= 2) this.#finish(undefined);
      else this.#requeue();
      return;
    }
    // The connection is gone (a FATAL from the server, or the socket). A server's FATAL before
    // the first statement's answer: the second one was never run.
    if (this.#at === 0 && (severity === 'FATAL' || severity === 'PANIC') && (err as { code?: unknown }).code !== '08P01') this.secondNotRun = true;
    if (this.#part === 'app') this.#inner.handleError(err, con);
    this.#finish(err);
  }

  handleReadyForQuery(con: unknown): void {
    if (this.#at >= 2) return;
    if (this.#part === 'app') this.#inner.handleReadyForQuery(con);
    this.#at += 1;
    // pg ends its active query at each ReadyForQuery: be first in line for the next statement's.
    if (this.#at >= 2) this.#finish(undefined);
    else this.#requeue();
  }

  #requeue(): void {
    const queue = this.#client._queryQueue ?? this.#client.queryQueue;
    if (queue !== undefined && !queue.includes(this)) queue.unshift(this);
  }

  #finish(lost: Error | undefined): void {
    if (this.#settled) return;
    this.#settled = true;
    this.#at = 2;
    // Taken off pg's queue if a lost connection failed us while we waited there.
    const queue = this.#client._queryQueue ?? this.#client.queryQueue;
    const i = queue?.indexOf(this) ?? -1;
    if (i >= 0) queue!.splice(i, 1);
    const app = this.#appOutcome;
    if (lost !== undefined) this.#settle(app?.err ?? lost);
    else if (app?.err) this.#settle(app.err);
    // The application's statement ran, but the id read failed and took the transaction with it.
    else if (this.#xidError !== undefined) this.#settle(this.#xidError);
    else this.#settle(undefined, app?.res as QueryResult);
    this.emit('end');
  }
}

/** A statement sent with the id read in the same round trip. */
export interface WithXidCall {
  /** Settles as the application's statement does (pg's result or error). */
  readonly done: Promise<QueryResult>;
  /** The id as read so far (undefined until its answer arrived). */
  xid(): XidReading;
  /** Where the primary's WAL stood when the id was read (undefined until then, or on a standby). */
  at(): WalPosition | undefined;
  /** With the id read first: the server ended the session before answering it, so the statement never ran. */
  notRun(): boolean;
}

/**
 * Sends `config` with the id read before it (`xidFirst`, for COMMIT) or after it. Null when that
 * is not possible here (a client in pg's pipeline mode or without pg's queue; with the id first,
 * a statement that is not a plain simple-protocol text): the caller sends it as it is.
 */
export function sendWithXid(client: Client, config: QueryConfig, xidFirst: boolean): WithXidCall | null {
  const internals = client as unknown as PgClientInternals;
  if (internals.pipeline === true || (internals._queryQueue ?? internals.queryQueue) === undefined) return null;
  if (xidFirst) {
    const extended = (config.values !== undefined && config.values.length > 0) || config.name !== undefined
      || (config as { queryMode?: unknown }).queryMode === 'extended' || (config as { rows?: unknown }).rows !== undefined;
    if (extended) return null;
  }
  const QueryClass = (pg as unknown as { Query: new (config: QueryConfig) => PgQuery }).Query;
  const inner = new QueryClass(xidFirst ? { ...config, values: undefined } : config);
  // What pg's client.query does for its own queries: its type parsers, binary mode.
  if (inner._result !== undefined && inner._result._types === undefined) inner._result._types = internals._types;
  if (internals.binary === true && inner.binary !== true) inner.binary = true;
  let query!: WithXid;
  const done = new Promise<QueryResult>((resolve, reject) => {
    query = new WithXid(internals, inner, xidFirst, (err, result) => (err === undefined ? resolve(result!) : reject(err)));
  });
  (client as unknown as { query(q: object): unknown }).query(query);
  return { done, xid: () => query.xid, at: () => query.at, notRun: () => xidFirst && query.secondNotRun };
}
