import { EventEmitter } from 'node:events';
import pg from 'pg';
import type { Client, QueryConfig, QueryResult, Submittable } from 'pg';
import { isRollback, sessionEffect } from '../classify/session-state.ts';
import { ErrorCodes, PgResilientError, brokenClientError } from '../errors.ts';
import { Deadline } from '../policy/deadline.ts';
import { mayRepeat } from '../policy/idempotency.ts';
import { AttemptFailure } from '../policy/retry.ts';
import { isBeginOnly } from '../transactions/transaction-control.ts';
import type { Purpose } from '../topology/topology.ts';
import type { Bags } from './bags.ts';
import { describeConnection } from './call-errors.ts';
import { deliver } from './callbacks.ts';
import { entryOf } from './pool-entry.ts';
import { normalizeQuery, validateCallOptions, withoutResilienceOptions, type Callback, type QueryArgs, type ResilientQueryConfig } from './query-args.ts';
import type { StatementRunner } from './runner.ts';
import { completed } from '../transactions/session-commit.ts';
import { SessionSettings } from './session-settings.ts';
import { SessionTransaction } from '../transactions/session-transaction.ts';
import { defineClientProperties, type ClientProperties } from './session-surface.ts';
import type { PoolShared } from './shared.ts';

/** What a session needs from the pool. */
export interface SessionHost {
  readonly shared: PoolShared;
  readonly bags: Bags;
  readonly runner: StatementRunner;
}

const FORWARDED = ['notice', 'notification'] as const;

/**
 * The client `pool.connect()` lends: pg's PoolClient surface over a physical pg Client that
 * it can swap. While the session is clean (no transaction open, no state bound to its
 * connection: see `sessionEffect`), a statement that failed is handled as `pool.query`
 * handles it: same classification, retry-safety rule and deadline, re-run on a fresh
 * connection swapped in underneath (session settings it ran are run there again first).
 *
 * Inside a transaction (where ORMs' transaction APIs run) `SessionTransaction` takes over
 * (session-transaction.ts): statements are recorded for a verified replay on a new connection when the
 * connection is lost before COMMIT, COMMIT goes out with the transaction's id so a lost answer
 * can be resolved, and ROLLBACK on a lost connection completes. A session bound to its
 * connection (outside a transaction) ends with it: PGR_CLIENT_BROKEN on the next use.
 *
 * One session belongs to each physical connection and is what the pool's events carry, so
 * `connect`, `acquire`, `release` and `remove` name the same object, as with pg.Pool. After a
 * swap the application's session drives another connection; that one's own session is used
 * when it is lent next.
 */
export class Session extends EventEmitter {
  readonly #host: SessionHost;
  readonly #purpose: Purpose;
  #client: Client;
  #released = true;
  /** State bound to the connection (LISTEN, PREPARE, temp tables, …): no swap until released. */
  #bound = false;
  /** Session settings (SET/RESET outside SET LOCAL) to run again on a swapped-in connection. */
  readonly #settings = new SessionSettings();
  /** The transaction of a lost connection was rolled back by the application (ROLLBACK completed). */
  #transactionEnded = false;
  /** The open transaction, if any (session-transaction.ts). */
  readonly #tx: SessionTransaction;
  #swapping: Promise<Client> | undefined;
  readonly #forward = new Map<string, (...args: unknown[]) => void>();

  constructor(host: SessionHost, client: Client, purpose: Purpose) {
    super();
    this.#host = host;
    this.#client = client;
    this.#purpose = purpose;
    // A session never throws 'error' at the process: without a listener it is only logged.
    for (const event of FORWARDED) this.#forward.set(event, (...args: unknown[]) => this.emit(event, ...args));
    this.#forward.set('error', (err: unknown) => this.#onConnectionError(err));
    this.#tx = new SessionTransaction({
      shared: host.shared,
      bags: host.bags,
      runner: host.runner,
      current: () => this.#client,
      replayed: (deadline) => this.#connection(deadline, true),
      after: (config, result, before) => this.#after(config, result, before),
      ended: (settings) => {
        this.#settings.addAll(settings);
        this.#transactionEnded = true;
      },
      kept: (settings) => this.#settings.addAll(settings),
    });
  }

  // ---- pg's PoolClient surface ----------------------------------------------------------------

  escapeIdentifier(value: string): string {
    return this.#client.escapeIdentifier(value);
  }

  escapeLiteral(value: string): string {
    return this.#client.escapeLiteral(value);
  }

  /** PostgreSQL's transaction status of the session: 'I' idle, 'T' in a transaction, 'E' failed one. */
  getTransactionStatus(): string | null {
    if (this.#transactionEnded) return 'I';
    return (this.#client as unknown as { getTransactionStatus?: () => string | null }).getTransactionStatus?.() ?? null;
  }

  setTypeParser(...args: unknown[]): void {
    (this.#client as unknown as { setTypeParser(...a: unknown[]): void }).setTypeParser(...args);
  }

  getTypeParser(...args: unknown[]): unknown {
    return (this.#client as unknown as { getTypeParser(...a: unknown[]): unknown }).getTypeParser(...args);
  }

  /** Returns the connection to the pool; with an error (or `true`) it is closed instead. */
  release(err?: Error | boolean): void {
    if (this.#released) throw new Error('Release called on client which has already been released to the pool.');
    this.#released = true;
    const client = this.#client;
    this.#detach(client);
    this.#host.shared.publish('release', err, this);
    // A session that swapped gives back the connection it holds now; its own one came back earlier.
    this.#host.bags.release(client, err);
  }

  query<T extends Submittable>(submittable: T): T;
  query(...args: QueryArgs): Promise<QueryResult> | undefined;
  query(...args: QueryArgs): unknown {
    const first = args[0];
    if (typeof first === 'object' && first !== null && typeof (first as Submittable).submit === 'function') {
      // Streams and cursors hold server state while they run: no swap, no retry, no replay.
      this.#tx.stopReplay('a cursor, stream or COPY ran in the transaction');
      return this.#client.query(first as Submittable);
    }
    let promise: Promise<QueryResult>;
    let callback: Callback<QueryResult> | undefined;
    try {
      if (first === null || first === undefined) throw new TypeError('Client was passed a null or undefined query');
      const normalized = normalizeQuery(args);
      callback = normalized.callback;
      promise = this.#run(normalized.config);
    } catch (err) {
      callback = args.find((a) => typeof a === 'function') as Callback<QueryResult> | undefined;
      promise = Promise.reject(err);
    }
    if (callback === undefined) return promise;
    deliver(promise, callback as (err: Error | null, res: QueryResult) => void, null);
    return undefined;
  }

  /** Ends the connection (the application's choice): released afterwards, it is discarded. */
  end(callback?: (err?: Error) => void): Promise<void> | undefined {
    const client = this.#client as unknown as { end(cb?: (err?: Error) => void): Promise<void> | undefined };
    return callback === undefined ? client.end() : client.end(callback);
  }

  /**
   * An 'error' emitted on a released session (by the application or a library) is handled as
   * pg.Pool handles an idle client's error: the session's listeners hear it, the pool emits
   * 'error' with it (and `err.client`), and the connection is closed and removed at once.
   */
  override emit(event: string | symbol, ...args: any[]): boolean {
    if (event !== 'error' || !this.#released) return super.emit(event, ...args);
    // The pool first: pg-pool's idle listener was on the client before the application's.
    if (this.#host.bags.endedByApplication(this.#client)) {
      (this.#client as unknown as EventEmitter).emit('error', args[0]);
    }
    if (this.listenerCount('error') > 0) super.emit('error', ...args);
    return true;
  }

  // ---- the pool's side ------------------------------------------------------------------------

  /** Lent to the application on `client` (its own connection). */
  lend(): this {
    this.#released = false;
    this.#bound = false;
    this.#settings.clear();
    this.#transactionEnded = false;
    this.#tx.reset();
    this.#attach(this.#client);
    return this;
  }

  /** The physical client now under this session. */
  get physical(): Client {
    return this.#client;
  }

  /** Clean: a failed statement may move to a new connection. */
  #clean(): boolean {
    if (this.#bound) return false;
    if (this.#transactionEnded) return true;
    const status = this.getTransactionStatus();
    return status === 'I' || status === null;
  }

  async #run(input: ResilientQueryConfig): Promise<QueryResult> {
    const s = this.#host.shared;
    let config: QueryConfig = input;
    if (input.idempotent !== undefined || input.readOnly !== undefined || input.signal !== undefined || input.deadlineMs !== undefined) {
      validateCallOptions(input);
      config = withoutResilienceOptions(input);
    }
    const text = config.text ?? '';
    const status = this.getTransactionStatus();
    if (status === 'T' || status === 'E') return this.#tx.run(config, input, status);
    const meta = entryOf(this.#client);
    const broken = meta === undefined || meta.brokenBy !== undefined;
    if (this.#bound) {
      if (broken && isRollback(text)) {
        // The server rolled back whatever was open when the connection died: what was asked is done.
        this.#transactionEnded = true;
        return completed('ROLLBACK');
      }
      if (broken) throw brokenClientError(describeConnection(meta!), meta!.brokenBy);
      const result = await (this.#client.query(config) as Promise<QueryResult>);
      this.#after(config, result, status);
      return result;
    }
    const startedAt = s.o.clock.now();
    let first: AttemptFailure | undefined;
    if (!broken && this.#swapping === undefined) {
      // The common case costs one call to pg: retry machinery only after a failure.
      try {
        const result = await (this.#client.query(config) as Promise<QueryResult>);
        this.#after(config, result, status);
        return result;
      } catch (err) {
        first = new AttemptFailure(err, 'query');
      }
    }
    const deadline = new Deadline(s.o.clock, input.deadlineMs ?? s.o.retry.maxElapsedMs, input.signal, startedAt);
    // A lone BEGIN lost in flight opened nothing that outlives its connection.
    const repeatable = isBeginOnly(text) || mayRepeat(text, input.idempotent, s.o.isIdempotent);
    // A read calling functions is looked up on this session's connection (swapped in if needed):
    // the pool may have no other to give while this client holds one.
    const { policy } = this.#host.runner;
    const call = { deadline, repeat: repeatable, lookUp: (sql: string, values: unknown[]) => policy.guarded(async () => (await (await this.#connection(deadline)).query(sql, values)).rows) };
    const attempt = (): Promise<QueryResult> => this.#attempt(config, deadline);
    const result = first === undefined ? await policy.run(call, attempt) : await policy.continueAfter(first, call, attempt);
    this.#after(config, result, 'I');
    return result;
  }

  /** One attempt through the breaker: a connection (swapped in if needed), then the statement. */
  #attempt(config: QueryConfig, deadline: Deadline): Promise<QueryResult> {
    return this.#host.runner.policy.guarded(async () => {
      const client = await this.#connection(deadline);
      try {
        return await (client.query(config) as Promise<QueryResult>);
      } catch (err) {
        // The connection just swapped in was found broken before the statement went out (its
        // 'error' arrived while the session's settings ran): nothing was sent, try another.
        if (err instanceof PgResilientError && err.code === ErrorCodes.CLIENT_BROKEN) throw new AttemptFailure(err.cause ?? err, 'connect');
        throw new AttemptFailure(err, 'query');
      }
    });
  }

  /**
   * A statement succeeded: remember what it did to the session (settings, state bound to the
   * connection) and to the transaction (begun: a new record; inside: recorded; ended: dropped).
   */
  #after(config: QueryConfig, result: unknown, before: string | null): void {
    this.#transactionEnded = false;
    const text = config.text ?? '';
    const effect = sessionEffect(text);
    const now = this.getTransactionStatus();
    const inside = now === 'T' || now === 'E';
    if (effect === 'bound') {
      this.#bound = true;
      this.#tx.stopReplay('it put state on its connection that cannot move (see sessionEffect)');
    }
    if (before !== 'T' && before !== 'E') {
      if (effect === 'replayable' && !inside) this.#settings.add(text);
      // This statement began a transaction: it is the first one a replay runs.
      if (inside) this.#tx.began(config, result, !this.#bound);
    } else if (inside) {
      this.#settings.addAll(this.#tx.continued(config, result, effect === 'replayable'));
    } else {
      // Ended. SETs inside it outlive it only if it committed.
      const committed = (result as { command?: unknown } | undefined)?.command === 'COMMIT';
      this.#settings.addAll(this.#tx.finished(committed));
      if (effect === 'replayable' && committed) this.#settings.add(text);
    }
  }

  /**
   * The current connection if it works, else a new one swapped in (one swap at a time); with
   * `replay`, the open transaction is replayed on the new one before it is used.
   */
  #connection(deadline: Deadline, replay = false): Promise<Client> {
    const meta = entryOf(this.#client);
    if (meta !== undefined && meta.brokenBy === undefined) return Promise.resolve(this.#client);
    this.#swapping ??= this.#swap(deadline, replay).finally(() => {
      this.#swapping = undefined;
    });
    return this.#swapping;
  }

  async #swap(deadline: Deadline, replay: boolean): Promise<Client> {
    const { bags, runner, shared } = this.#host;
    const old = this.#client;
    this.#detach(old);
    bags.release(old, entryOf(old)?.brokenBy ?? true);
    const fresh = await runner.attempts.acquire(this.#purpose, deadline);
    bags.lend(fresh);
    // The session's settings, again, before its statement (nothing of the statement has run).
    try {
      for (const setting of this.#settings.texts()) await fresh.query(setting);
    } catch (err) {
      bags.release(fresh, err);
      throw new AttemptFailure(err, 'connect');
    }
    if (replay) await this.#tx.replayOn(fresh, entryOf(old)?.brokenBy);
    this.#client = fresh;
    this.#transactionEnded = false;
    this.#attach(fresh);
    shared.o.logger.debug({ processID: (fresh as unknown as { processID: number }).processID }, 'pg-resilient: a checked-out client moved to a new connection');
    return fresh;
  }

  #attach(client: Client): void {
    const emitter = client as unknown as EventEmitter;
    for (const [event, fn] of this.#forward) emitter.on(event, fn);
  }

  #detach(client: Client): void {
    const emitter = client as unknown as EventEmitter;
    for (const [event, fn] of this.#forward) emitter.removeListener(event, fn);
  }

  /**
   * The connection failed while lent. A clean session says nothing (its next statement moves
   * to a new connection); one bound to its connection tells the application, as pg does (ORMs
   * drop such a client), but never crashes the process.
   */
  #onConnectionError(err: unknown): void {
    // A transaction that can be replayed moves on too: nothing to tell. One that cannot is not
    // told here either: its next statement gets the typed error (PGR_TRANSACTION_ROLLED_BACK /
    // PGR_REPLAY_DIVERGED) that `retryable` recognises, and ROLLBACK completes. An 'error' now
    // would make ORMs drop the client mid-transaction (TypeORM releases its query runner) and
    // fail with their own error instead, which nothing can tell from a real failure.
    const status = this.getTransactionStatus();
    if (status === 'T' || status === 'E') return;
    if (this.#clean() || this.#tx.replayable || this.listenerCount('error') === 0) return;
    this.emit('error', err);
  }
}

// pg.Client's data properties (binary, pipeline, processID, connectionParameters, …), read
// through to the connection under the session (session-surface.ts).
export interface Session extends ClientProperties {}
defineClientProperties(Session.prototype, (self) => (self as Session).physical);

/** The session of a physical connection (made on first use, kept with the connection). */
export function sessionOf(host: SessionHost, client: Client): Session {
  const meta = entryOf(client)!;
  let session = meta.session as Session | undefined;
  if (session === undefined) {
    session = new Session(host, client, meta.purpose);
    meta.session = session;
  }
  return session;
}

/**
 * Sessions stand for pg's own Client; a custom `Client` class's objects are lent as they are,
 * unless the class says it is only an instrumented pg Client (`SESSIONS_OK`).
 */
export function usesSessions(shared: PoolShared): boolean {
  const C = shared.o.Client as unknown as Record<symbol, unknown>;
  return C === (pg.Client as unknown) || C[SESSIONS_OK] === true;
}

/** Marks a pg.Client subclass whose objects may stand behind Sessions. */
export const SESSIONS_OK = Symbol.for('pg-resilient.sessions-ok');
