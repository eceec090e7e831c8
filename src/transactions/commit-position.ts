import { EventEmitter } from 'node:events';
import pg from 'pg';
import type { Client, QueryConfig, QueryResult } from 'pg';
import { splitStatements, underBothSettings } from '../classify/sql-lexer.ts';
import type { WalPosition } from './timeline.ts';
import { positionOf } from './primary-position.ts';
import { XID_LSN_FIELD, XID_SQL, XID_TLI_FIELD, type PgQuery } from './xid-reading.ts';

/**
 * An autocommit write and the reading of its transaction's id and WAL position, in one implicit
 * transaction and one round trip: Parse/Bind/Describe/Execute of the write, the same of XID_SQL,
 * then a single Sync. With the extended protocol everything before a Sync is one transaction, so
 * the reading sees the write's id and a position after its records and before its commit
 * record: what lost-commit detection compares a failover's fork point with (timeline.ts), with
 * no round trip of its own.
 *
 * If the reading itself failed, the implicit transaction would roll back with it: the caller
 * then gets that error, and the write did not happen (a server's refusal, never a silent loss).
 * The reading is written so it cannot fail on a primary (public functions, NULLs on a standby).
 */
export interface CommitMark {
  /** The write's transaction id; null when it wrote nothing (no row matched). */
  readonly xid: string | null;
  readonly at: WalPosition | undefined;
}

interface PgConnection {
  parsedStatements?: Record<string, string>;
  parse(msg: { text: string; name?: string }): void;
  bind(msg: { statement?: string; portal?: string; values?: unknown[] }): void;
  describe(msg: { type: 'P' | 'S'; name?: string }): void;
  execute(msg: { portal?: string; rows?: number }): void;
  sync(): void;
  stream?: { cork?(): void; uncork?(): void };
}

/** The reading's name on connections that prepare statements. */
export const MARK_STATEMENT = 'pgr_commit_mark';

/** One statement of the write, then the reading; demultiplexes the server's answers. */
class WithPosition extends EventEmitter {
  mark: CommitMark | undefined;
  readonly #inner: PgQuery;
  readonly #named: boolean;
  #phase: 'write' | 'reading' | 'done' = 'write';
  #failed = false;
  #settled = false;
  #completions = 0;
  readonly #settle: (err: Error | undefined, result?: QueryResult) => void;

  constructor(inner: PgQuery, named: boolean, settle: (err: Error | undefined, result?: QueryResult) => void) {
    super();
    this.#inner = inner;
    this.#named = named;
    this.#settle = settle;
    inner.callback = (err, res) => this.#finish(err ?? undefined, res as QueryResult | undefined);
  }

  // pg reads these of its active query (parsed statement bookkeeping).
  get text(): string {
    return this.#inner.text;
  }

  /**
   * CommandCompletes received, the write's and the reading's: what a FATAL's evidence counts
   * (src/pool/fatal-evidence.ts). With the extended protocol the commit point is the Sync, after
   * them, so a FATAL after any of them proves nothing.
   */
  get completedStatements(): number {
    return this.#completions;
  }

  get name(): string | undefined {
    return this.#inner.name;
  }

  submit(connection: PgConnection): Error | null | undefined {
    const stream = connection.stream;
    stream?.cork?.();
    try {
      // The write, without its Sync: the reading joins its implicit transaction.
      const withoutSync = Object.create(connection) as PgConnection;
      withoutSync.sync = () => undefined;
      const err = this.#inner.submit(withoutSync);
      if (err) return err; // refused by pg before anything was written
      if (!this.#failed) {
        // Named once per connection where the pool prepares statements: parsed and planned once.
        const parsed = connection.parsedStatements ??= {};
        const name = this.#named ? MARK_STATEMENT : '';
        if (name === '' || parsed[name] === undefined) connection.parse({ text: XID_SQL, name });
        if (name !== '') parsed[name] = XID_SQL;
        connection.bind({ statement: name });
        connection.describe({ type: 'P' });
        connection.execute({});
      }
      connection.sync();
    } finally {
      stream?.uncork?.();
    }
    return undefined;
  }

  handleRowDescription(msg: unknown): void {
    if (this.#phase === 'write') this.#inner.handleRowDescription(msg);
  }

  handleDataRow(msg: { fields: (string | Buffer | null)[] }): void {
    if (this.#phase === 'write') return this.#inner.handleDataRow(msg);
    if (this.#phase !== 'reading') return;
    const v = msg.fields[0];
    this.mark = { xid: v === null || v === undefined ? null : String(v), at: positionOf(msg.fields[XID_LSN_FIELD]?.toString(), msg.fields[XID_TLI_FIELD]?.toString()) };
  }

  handleCommandComplete(msg: unknown, con: unknown): void {
    this.#completions += 1;
    if (this.#phase === 'write') {
      this.#inner.handleCommandComplete(msg, con);
      this.#phase = 'reading';
    } else {
      this.#phase = 'done';
    }
  }

  handleEmptyQuery(con: unknown): void {
    this.#completions += 1;
    if (this.#phase === 'write') {
      this.#inner.handleEmptyQuery(con);
      this.#phase = 'reading';
    }
  }

  handlePortalSuspended(con: unknown): void {
    this.#inner.handlePortalSuspended(con);
  }

  handleCopyInResponse(con: unknown): void {
    this.#inner.handleCopyInResponse(con);
  }

  handleCopyData(msg: unknown, con: unknown): void {
    this.#inner.handleCopyData(msg, con);
  }

  handleError(err: Error, con: unknown): void {
    // The write refused, the reading refused (the implicit transaction, write included, rolled
    // back), or the connection lost: the caller gets the error as pg gives it. The reading's
    // statement is parsed again next time if its name was refused (a DISCARD ALL ran).
    this.#failed = true;
    if (this.#phase === 'reading' && (err as { code?: unknown }).code === '26000') delete (con as PgConnection).parsedStatements?.[MARK_STATEMENT];
    this.#inner.handleError(err, con);
  }

  handleReadyForQuery(con: unknown): void {
    // After a successful Sync: the write's result goes to its caller now.
    this.#inner.handleReadyForQuery(con);
  }

  #finish(err: Error | undefined, result: QueryResult | undefined): void {
    if (this.#settled) return;
    this.#settled = true;
    this.#phase = 'done';
    if (err !== undefined) this.mark = undefined;
    this.#settle(err, result);
    this.emit('end');
  }
}

/** A statement sent with its commit's mark read in the same implicit transaction. */
export interface WithPositionCall {
  readonly done: Promise<QueryResult>;
  /** The mark, once the statement succeeded (undefined when it failed). */
  mark(): CommitMark | undefined;
}

/**
 * Sends `config` (one statement, outside a transaction) with its mark, or returns null when that
 * cannot be done on this client: pg's pipeline mode, a cursor (`rows`), a text of several
 * statements (the extended protocol takes one), or a client inside a transaction (the write's
 * commit is then the transaction's, marked at its COMMIT).
 */
export function sendWithPosition(client: Client, config: QueryConfig, named = false): WithPositionCall | null {
  const internals = client as unknown as { pipeline?: boolean; _types?: unknown; binary?: boolean; getTransactionStatus?: () => string | null };
  if (internals.pipeline === true || (config as { rows?: unknown }).rows !== undefined) return null;
  if ((internals.getTransactionStatus?.() ?? 'I') !== 'I') return null;
  if (typeof config.text !== 'string' || !isSingleStatement(config.text)) return null;
  const QueryClass = (pg as unknown as { Query: new (config: QueryConfig) => PgQuery }).Query;
  const inner = new QueryClass({ ...config, queryMode: 'extended' } as QueryConfig);
  if (inner._result !== undefined && inner._result._types === undefined) inner._result._types = internals._types;
  if (internals.binary === true && inner.binary !== true) inner.binary = true;
  let query!: WithPosition;
  const done = new Promise<QueryResult>((resolve, reject) => {
    query = new WithPosition(inner, named, (err, result) => (err === undefined ? resolve(result!) : reject(err)));
  });
  (client as unknown as { query(q: object): unknown }).query(query);
  return { done, mark: () => query.mark };
}

/** One statement (a trailing `;` allowed) under every reading of its strings: what the extended protocol accepts. */
export function isSingleStatement(text: string): boolean {
  const counts = underBothSettings(text, (tokens) => splitStatements(tokens).filter((s) => s.length > 0).length);
  return counts.length > 0 && counts.every((n) => n === 1);
}
