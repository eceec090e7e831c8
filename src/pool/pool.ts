import { EventEmitter, setMaxListeners } from 'node:events';
import pg from 'pg';
import type { PoolClient, QueryArrayConfig, QueryArrayResult, QueryConfigValues, QueryResult, QueryResultRow, Submittable } from 'pg';
import type { PoolEventMap } from '../observe/events.ts';
import { publisher } from '../observe/publish.ts';
import type { FailoverEvent, FailoverReport } from '../observe/types.ts';
import { FailoverReporter } from '../observe/report.ts';
import { resolveOptions, type PoolOptions } from '../options.ts';
import { classify } from '../classify/classify.ts';
import { Breaker } from '../policy/breaker.ts';
import { ConnectGate } from '../policy/connect-gate.ts';
import { Deadline } from '../policy/deadline.ts';
import { PatroniDiscovery } from '../topology/patroni.ts';
import { Topology } from '../topology/topology.ts';
import { idempotent } from '../policy/idempotency.ts';
import { runTransaction, type TransactionOptions } from '../transactions/pool-transaction.ts';
import { runRetryable, type RetryableOptions } from '../transactions/retryable.ts';
import { checkLabel } from '../transactions/durability-options.ts';
import { withLabel } from '../transactions/labels.ts';
import type { ReplicationWatch } from '../topology/replication-watch.ts';
import { Bags } from './bags.ts';
import { poolEndedError } from '../errors.ts';
import { connectionHooks } from './connection-hooks.ts';
import { entryOf } from './pool-entry.ts';
import { Failures } from './failures.ts';
import { ConnectionHealth } from './health.ts';
import { Housekeeping } from './housekeeping.ts';
import { Lender } from './lent-client.ts';
import { normalizeQuery, type Callback, type QueryArgs, type ResilienceQueryOptions, type ResilientQueryConfig } from './query-args.ts';
import { deliver } from './callbacks.ts';
import { StatementRunner } from './runner.ts';
import { transactionHost, wireCommitTracking } from './transaction-wiring.ts';
import { PreparedStatements } from '../prepared/prepared-statements.ts';
import { sessionOf, usesSessions } from './session.ts';
import type { PoolShared } from './shared.ts';
import { shutdown } from './shutdown.ts';
import { handleErrors } from './error-handlers.ts';
import { publicOptions, type PublicOptions } from './public-options.ts';

/**
 * A drop-in replacement for `pg.Pool`: the same constructor options, methods, properties and
 * events, plus retries that know what is safe to retry, a circuit breaker, topology awareness
 * (multi-host, target_session_attrs, Patroni) and transactions that survive failover.
 *
 * This class is pg.Pool's surface and the wiring of the parts: the bags (hand-off of idle
 * connections to waiting callers, `bag.ts`), the statement runner (`runner.ts`), lent clients
 * (`lent-client.ts`), failure handling (`failures.ts`), housekeeping and shutdown.
 *
 * @example
 * import { Pool } from 'pg-resilient'; // was: import { Pool } from 'pg'
 * const pool = new Pool({ connectionString: process.env.DATABASE_URL, retry: { maxElapsedMs: 20000 } });
 * const { rows } = await pool.query('SELECT * FROM products WHERE id = $1', [id]);
 */
export class Pool extends EventEmitter {
  /** The options as given, with pg.Pool's defaults filled in (password hidden from enumeration). */
  readonly options: PublicOptions;
  readonly #s: PoolShared;
  readonly #bags: Bags;
  readonly #runner: StatementRunner;
  readonly #lender: Lender;
  readonly #failures: Failures;
  readonly #housekeeping: Housekeeping;
  readonly #end = new AbortController();
  readonly #connectGate: ConnectGate;
  #ended = false;

  constructor(config?: PoolOptions) {
    super();
    const o = resolveOptions(config);
    this.options = publicOptions(config, o);
    // Every waiting caller listens to this signal; their number is bounded by maxWaitingClients.
    setMaxListeners(Infinity, this.#end.signal);
    const reporter = new FailoverReporter(o.clock, (report) => this.#onReport(report));
    // One per pool, shared by every purpose's factory (src/policy/connect-gate.ts).
    const connectGate = new ConnectGate({ clock: o.clock, random: o.random, isBusyFailure: (e) => classify(e).serverBusy });
    this.#connectGate = connectGate;
    const topology = new Topology(o, (event) => {
      // A new failover generation: backoffs from before it say nothing about the new primary.
      if (event.phase === 'detected') connectGate.clearBackoff();
      this.#onFailover(event);
    });
    const breaker = new Breaker(o.breaker, o.clock, (state) => this.#s.publish('breaker', { state }));
    const out = publisher(this, (args) => this.#present(args), o.logger);
    const shared: PoolShared = {
      o, topology, breaker, reporter,
      endSignal: this.#end.signal,
      clients: new Set(),
      ending: false,
      inProgress: 0,
      onSettled: undefined,
      lastConnectError: undefined,
      lastConnectErrorAt: -Infinity,
      commits: undefined,
      replication: undefined as unknown as ReplicationWatch, // set below, once the bags exist
      publish: out.publish,
      listening: out.listening,
      present: (client) => usesSessions(this.#s) ? sessionOf({ shared: this.#s, bags: this.#bags, runner: this.#runner }, client) : client,
    };
    this.#s = shared;
    // Built in dependency order, each part given what it needs: failure handling knows nothing
    // of the bags (a new generation reaches them through the topology), the watchdog reports to
    // failure handling, the bags' connection factory reports to both.
    const failures = new Failures(shared);
    const housekeeping = new Housekeeping(shared, failures);
    const prepared = new PreparedStatements(o.prepareCacheSize, o.clock, o.logger);
    const hooks = connectionHooks(shared, failures, housekeeping, prepared, connectGate);
    this.#housekeeping = housekeeping;
    this.#failures = failures;
    this.#bags = new Bags(shared, new ConnectionHealth(shared), hooks);
    wireCommitTracking(shared, this.#bags);
    this.#runner = new StatementRunner(shared, this.#bags, failures);
    this.#lender = new Lender(shared, this.#bags, this.#runner);
    if (o.patroni !== undefined) {
      topology.setDiscovery(new PatroniDiscovery(o.patroni, o.clock, o.logger, () => {
        // Discovery saw a new leader, maybe before any query failed: a failover signal, and
        // callers backing off can go to the new leader now.
        failures.signalFailover('patroni-leader-change', undefined);
        breaker.reset();
        connectGate.clearBackoff();
        topology.primaryChanged();
      }));
    }
    handleErrors(this, o.logger);
    if (o.min > 0) queueMicrotask(() => void this.#bags.warm());
  }

  // ---- pg.Pool's surface --------------------------------------------------------------------

  /** All connections, idle, checked out or being opened. */
  get totalCount(): number {
    return this.#bags.sum((bag) => bag.size);
  }

  /** Connections open and not checked out. */
  get idleCount(): number {
    return this.#bags.sum((bag) => bag.available);
  }

  /** Callers waiting for a connection (as in pg.Pool, not those a connection is being opened for). */
  get waitingCount(): number {
    return this.#bags.sum((bag) => bag.waiting);
  }

  /** Checked-out connections past their lifetime, to be closed on release. */
  get expiredCount(): number {
    const now = this.#s.o.clock.now();
    let n = 0;
    for (const c of this.#s.clients) if ((entryOf(c)?.expiresAt ?? Infinity) <= now) n += 1;
    return n;
  }

  /** Statements written behind others on a busy connection (option `pipelining`), since the pool was made. */
  get pipelinedCount(): number {
    return this.#runner.pipelined;
  }

  /**
   * pg-pool's `_clients` (private there, read by tests and diagnostics): every open connection,
   * as the object the pool lends for it. A copy: changing it changes nothing.
   */
  get _clients(): object[] {
    return [...this.#s.clients].map((client) => this.#s.present(client));
  }

  /** True once `end()` was called. */
  get ending(): boolean {
    return this.#s.ending;
  }

  /** True once `end()` has finished. */
  get ended(): boolean {
    return this.#ended;
  }

  /** Submits a `Submittable` (a cursor, a query stream) on a pooled connection, as pg.Pool does. */
  query<T extends Submittable>(queryStream: T): T;
  /** Runs a query whose rows are arrays (`rowMode: 'array'`); retried only when that is safe. */
  query<R extends unknown[] = unknown[], I = unknown[]>(queryConfig: QueryArrayConfig<I> & ResilienceQueryOptions, values?: QueryConfigValues<I>): Promise<QueryArrayResult<R>>;
  /**
   * Runs a query given as a config object (`text`, `values`, and the per-call resilience options).
   */
  query<R extends QueryResultRow = any, I = unknown[]>(queryConfig: ResilientQueryConfig<I>): Promise<QueryResult<R>>;
  /**
   * Runs a query, as pg.Pool does. A failure is retried within the call's deadline only when the
   * statement cannot run twice: never sent, rejected without effect, a read, or `idempotent`.
   */
  query<R extends QueryResultRow = any, I = unknown[]>(queryTextOrConfig: string | ResilientQueryConfig<I>, values?: QueryConfigValues<I>): Promise<QueryResult<R>>;
  /** Callback form of the array-rows query. */
  query<R extends unknown[] = unknown[], I = unknown[]>(queryConfig: QueryArrayConfig<I> & ResilienceQueryOptions, callback: (err: Error, result: QueryArrayResult<R>) => void): void;
  /** Callback form of `query(text or config)`. */
  query<R extends QueryResultRow = any, I = unknown[]>(queryTextOrConfig: string | ResilientQueryConfig<I>, callback: (err: Error, result: QueryResult<R>) => void): void;
  /** Callback form of `query(text, values)`. */
  query<R extends QueryResultRow = any, I = unknown[]>(queryText: string, values: QueryConfigValues<I>, callback: (err: Error, result: QueryResult<R>) => void): void;
  query(...args: QueryArgs): unknown {
    const first = args[0];
    if (typeof first === 'object' && first !== null && typeof (first as Submittable).submit === 'function') {
      return this.#lender.submit(first as Submittable);
    }
    if (typeof first === 'function') {
      // pg.Pool's answer: the function is taken as the callback and told so.
      setImmediate(() => (first as (err: Error) => void)(new Error('Passing a function as the first parameter to pool.query is not supported')));
      return undefined;
    }
    let promise: Promise<QueryResult>;
    let callback: Callback<QueryResult> | undefined;
    const [, second, third] = args;
    if (typeof first === 'string' && (second === undefined || Array.isArray(second) || typeof second === 'function')
      && (third === undefined || typeof third === 'function')) {
      // query(text[, values][, callback]): the common form, on the fast path.
      callback = (typeof second === 'function' ? second : third) as Callback<QueryResult> | undefined;
      promise = this.#runner.queryText(first, Array.isArray(second) ? second : undefined);
    } else {
      callback = (typeof third === 'function' ? third : typeof second === 'function' ? second : undefined) as Callback<QueryResult> | undefined;
      // Bad arguments are reported the way pg.Pool reports them: through the callback or the promise.
      // (pg's own messages, so code that matches them keeps working.)
      try {
        promise = first === null || first === undefined
          ? Promise.reject(new TypeError('Client was passed a null or undefined query'))
          : typeof first !== 'string' && typeof first !== 'object'
            ? Promise.reject(new Error('A query must have either text or a name. Supplying neither is unsupported.'))
            : this.#runner.runQuery(normalizeQuery(args).config);
      } catch (err) {
        promise = Promise.reject(err);
      }
    }
    if (callback === undefined) return promise;
    deliver(promise, callback);
    return undefined;
  }

  /** Checks out a client, as pg.Pool does; give it back with `client.release()`. */
  connect(): Promise<PoolClient>;
  /** Callback form of `connect()`; call `done()` to give the client back. */
  connect(callback: (err: Error | undefined, client: PoolClient | undefined, done: (release?: any) => void) => void): void;
  connect(callback?: (err: Error | undefined, client: PoolClient | undefined, done: (release?: any) => void) => void): Promise<PoolClient> | void {
    const promise = this.#lender.checkout({});
    if (callback === undefined) return promise;
    deliver(promise, (err, client) => {
      if (err !== undefined) callback(err, undefined, () => undefined);
      else callback(undefined, client, (e?: unknown) => client.release(e as Error | undefined));
    });
  }

  /** Ends the pool, as pg.Pool's `end()`: new calls are refused and the connections closed. */
  end(): Promise<void>;
  /** Callback form of `end()`. */
  end(callback: () => void): void;
  end(callback?: () => void): Promise<void> | void {
    if (this.#s.ending) {
      // pg.Pool's answer to a second end().
      const err = new Error('Called end on pool more than once');
      if (callback !== undefined) return void queueMicrotask(() => (callback as (e?: Error) => void)(err));
      return Promise.reject(err);
    }
    const ended = shutdown(this.#s, this.#bags, this.#housekeeping, this.#end, this.#connectGate).then(() => {
      this.#ended = true;
    });
    if (callback === undefined) return ended;
    deliver(ended, () => callback());
  }

  /** Adds a listener for one of the pool's typed events (see `PoolEventMap`). */
  override on<K extends keyof PoolEventMap>(event: K, listener: (...args: PoolEventMap[K]) => void): this;
  /** Adds a listener for any event. */
  override on(event: string | symbol, listener: (...args: any[]) => void): this;
  override on(event: string | symbol, listener: (...args: any[]) => void): this {
    return super.on(event, listener);
  }

  /** Adds a one-time listener for one of the pool's typed events. */
  override once<K extends keyof PoolEventMap>(event: K, listener: (...args: PoolEventMap[K]) => void): this;
  /** Adds a one-time listener for any event. */
  override once(event: string | symbol, listener: (...args: any[]) => void): this;
  override once(event: string | symbol, listener: (...args: any[]) => void): this {
    return super.once(event, listener);
  }

  // ---- beyond pg.Pool -----------------------------------------------------------------------

  /**
   * Runs `fn` in a transaction and returns its result, applying the work exactly once across
   * failovers: it re-runs `fn` on serialization failures, deadlocks and connections lost before
   * COMMIT, and resolves a connection lost during COMMIT with `txid_status`. `fn` may therefore
   * run more than once: it must not have effects outside the database. An error thrown by `fn`
   * itself rolls back and is rethrown unchanged.
   */
  transaction<T>(fn: (client: PoolClient) => Promise<T>, options: TransactionOptions = {}): Promise<T> {
    if (this.#s.ending) return Promise.reject(poolEndedError());
    const deadline = new Deadline(this.#s.o.clock, options.maxElapsedMs ?? this.#s.o.retry.maxElapsedMs);
    return this.#runner.attempts.tracked('transaction', deadline, () => runTransaction(transactionHost(this.#s, this.#lender, this.#runner, this.#failures), fn, options));
  }

  /**
   * Runs `fn` — typically one call of an ORM's transaction API (`prisma.$transaction`,
   * `db.transaction().execute`, `dataSource.transaction`, …) — and runs it again, within
   * `maxElapsedMs` (default `retry.maxElapsedMs`), when it failed only because its transaction
   * did not commit: PGR_TRANSACTION_ROLLED_BACK or PGR_REPLAY_DIVERGED, found on the error or
   * its causes (ORMs wrap errors). Both guarantee nothing of that transaction was applied.
   * `fn` may therefore run more than once: keep effects outside the database out of it.
   */
  retryable<T>(fn: (attempt: number) => Promise<T> | T, options: RetryableOptions = {}): Promise<T> {
    const o = this.#s.o;
    return runRetryable(fn, { clock: o.clock, random: o.random, retry: o.retry }, options);
  }

  /**
   * Runs `fn` with every statement it issues marked idempotent (retried after a lost connection),
   * through any ORM: `await pool.idempotent(() => prisma.product.upsert(…))`. The same as the
   * module's `idempotent(fn)`; see there for what is safe to mark.
   */
  idempotent<T>(fn: () => PromiseLike<T>): Promise<T>;
  idempotent<T>(fn: () => T): T;
  idempotent<T>(fn: () => T): T | Promise<unknown> {
    return idempotent(fn);
  }

  /** Labels every write `fn` makes, through any ORM, for `lostCommits` events (option `lostCommits`). */
  withLabel<T>(label: string, fn: () => T): T {
    return withLabel(checkLabel(label, 'withLabel(label)')!, fn);
  }

  /** A client routed to a standby (within `maxLagBytes`), falling back to the primary. */
  connectReadOnly(options: { signal?: AbortSignal } = {}): Promise<PoolClient> {
    return this.#lender.checkout({ readOnly: true, ...options });
  }

  /** The last failover report, if any (also emitted as `failoverReport`). */
  get lastFailoverReport(): FailoverReport | undefined {
    return this.#s.reporter.last;
  }

  /** The breaker's state: 'closed', 'open' or 'half-open'. */
  get breakerState(): string {
    return this.#s.breaker.state;
  }

  /** The primary as last seen (host:port of the server, also behind HAProxy), if known. */
  get primary(): {
    /** Host name or IP address. */
    host: string;
    /** TCP port. */
    port: number;
  } | undefined {
    return this.#s.topology.primary;
  }

  // ---- internals -----------------------------------------------------------------------------

  #onFailover(event: FailoverEvent): void {
    const commits = this.#s.commits;
    if (event.phase === 'completed' && commits !== undefined && commits.tracked > 0) {
      // The new primary's history first, so the report can say what the failover lost.
      commits.primaryChanged();
      void commits.settled().then(() => this.#s.reporter.onFailover(event));
    } else {
      this.#s.reporter.onFailover(event);
    }
    this.#s.o.logger.warn({ phase: event.phase, generation: event.generation, trigger: event.trigger, oldPrimary: event.oldPrimary, newPrimary: event.newPrimary, durationMs: event.durationMs }, `pg-resilient: failover ${event.phase}`);
    this.#s.publish('failover', event);
  }

  #onReport(report: FailoverReport): void {
    this.#s.o.logger.warn({ report }, report.summary);
    this.#s.publish('failoverReport', report);
  }

  /** A physical connection is named by its Session, the object the application is lent. */
  #present(args: unknown[]): void {
    for (let i = 0; i < args.length; i += 1) {
      const arg = args[i];
      if (typeof arg === 'object' && arg !== null && !(arg instanceof Error) && entryOf(arg as never) !== undefined) {
        args[i] = this.#s.present(arg as never);
      }
    }
  }
}

// `instanceof pg.Pool` holds for pg-resilient's Pool (@prisma/adapter-pg, among others, only
// uses a pool it is given when it passes that check, and silently builds its own raw pg.Pool
// otherwise). Only the prototype chain is shared: every method and property pg.Pool offers is
// defined here, pg-pool's constructor never runs, and its private helpers are never called.
Object.setPrototypeOf(Pool.prototype, pg.Pool.prototype);
