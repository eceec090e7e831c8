import { EventEmitter, setMaxListeners } from 'node:events';
import genericPool from 'generic-pool';
import type { Client, PoolClient, QueryArrayConfig, QueryArrayResult, QueryConfig, QueryConfigValues, QueryResult, QueryResultRow, Submittable } from 'pg';
import { classify } from './classify/classify.ts';
import { isRecognisedRead } from './classify/retry-safety.ts';
import {
  ConnectionFactory,
  CreateFailure,
  closeQuietly,
  metaOf,
  type ConnectionMeta,
  type Resource,
} from './connection.ts';
import { ErrorCodes, PgResilientError, describeError } from './errors.ts';
import { CHANNELS, type CallEndEvent, type ConnectionRetiredEvent, type FailoverEvent, type PoolEventMap } from './observe/events.ts';
import { FailoverReporter, type FailoverReport } from './observe/report.ts';
import { resolveOptions, type PoolOptions, type ResolvedOptions } from './options.ts';
import { Breaker } from './policy/breaker.ts';
import { Deadline } from './policy/deadline.ts';
import { WaitQueue } from './policy/waits.ts';
import { AttemptFailure, retryAfterFailure, runWithRetry, type GiveUpEvent, type RetryEvent } from './policy/retry.ts';
import { PatroniDiscovery } from './topology/patroni.ts';
import { Topology, type Purpose } from './topology/topology.ts';
import { probeServer, unresponsiveError } from './topology/liveness.ts';
import type { HostTarget } from './topology/hosts.ts';
import { runTransaction, type TransactionOptions } from './transaction.ts';

/** Per-call options, accepted on the query config next to pg's own fields. */
export interface ResilienceQueryOptions {
  /**
   * The statement may run more than once without harm (an upsert with a unique key, a SET of a
   * fixed value, …): it is then retried even when the connection was lost mid-flight. Defaults to
   * true for statements the documented read rule recognises (see `isRecognisedRead`), else false.
   */
  idempotent?: boolean;
  /** Route to a standby within `maxLagBytes`, falling back to the primary. Defaults to false. */
  readOnly?: boolean;
  /** Abort waiting, retrying and the statement in flight. */
  signal?: AbortSignal;
  /**
   * Hard deadline of this call in ms, including the statement in flight (the connection is
   * closed when it passes). Defaults to `retry.maxElapsedMs`, which bounds waiting and retrying
   * but not a statement that is running.
   */
  deadlineMs?: number;
}

export type ResilientQueryConfig<I = unknown[]> = QueryConfig<I> & ResilienceQueryOptions;

type Callback<R> = (err: Error | undefined, result: R) => void;

// pg.Pool accepts these forms; see `#normalize`.
type QueryArgs = [unknown, unknown?, unknown?];

/**
 * The connections for one purpose (the default route, or reads routed to standbys).
 *
 * generic-pool owns them: it opens and closes them, enforces `max`, evicts idle ones and
 * validates them on borrow. In front of it, like HikariCP's ConcurrentBag in front of its
 * shared list, sit a stack of recently released connections (still borrowed from
 * generic-pool) and a queue of waiting callers: a release hands the connection straight to
 * the first waiter, or onto the stack for the next caller, with no promise in between. Going
 * through generic-pool's promises on every query cost more than pg-pool's whole hand-off, and
 * kept pg-resilient under 0.9 of pg.Pool's throughput. A connection left on the stack for
 * `IDLE_LINGER_MS` goes back to generic-pool, whose idle timeout and validation then apply.
 */
interface PoolParts {
  readonly gp: genericPool.Pool<Resource>;
  readonly factory: ConnectionFactory;
  /** Released connections, most recent last. */
  readonly idle: Client[];
  /** Callers waiting for a connection of this purpose. */
  readonly queue: WaitQueue<Resource>;
  /** generic-pool acquires in flight on behalf of waiting callers. */
  pumping: number;
}

/** How long a released connection waits on the idle stack before going back to generic-pool. */
const IDLE_LINGER_MS = 1000;

/** After a success on the current primary, connect failures within this time start no failover. */
const CONNECT_FAILURE_GRACE_MS = 1000;

/**
 * A drop-in replacement for `pg.Pool`: the same constructor options, methods, properties and
 * events, plus retries that know what is safe to retry, a circuit breaker, topology awareness
 * (multi-host, target_session_attrs, Patroni) and transactions that survive failover.
 *
 * @example
 * import { Pool } from 'pg-resilient'; // was: import { Pool } from 'pg'
 * const pool = new Pool({ connectionString: process.env.DATABASE_URL, retry: { maxElapsedMs: 20000 } });
 * const { rows } = await pool.query('SELECT * FROM products WHERE id = $1', [id]);
 */
export class Pool extends EventEmitter {
  /** The options as given, with pg.Pool's defaults filled in (password hidden from enumeration). */
  readonly options: PoolOptions & { max: number; min: number; idleTimeoutMillis: number; maxUses: number; allowExitOnIdle: boolean; maxLifetimeSeconds: number };
  readonly #o: ResolvedOptions;
  readonly #topology: Topology;
  readonly #breaker: Breaker;
  readonly #reporter: FailoverReporter;
  readonly #parts = new Map<Purpose, PoolParts>();
  readonly #clients = new Set<Client>();
  readonly #end = new AbortController();
  /** The default purpose's parts, made at construction (the fast path needs no lookup). */
  readonly #default: PoolParts;
  /** Calls (query, connect, transaction) started and not settled; bounded by max + maxWaitingClients. */
  #inProgress = 0;
  #ending = false;
  #ended = false;
  #endPromise: Promise<void> | undefined;
  #warming = false;
  #lastConnectError: unknown;
  #housekeepingTimer: ReturnType<typeof setInterval> | undefined;
  readonly #probing = new Set<string>();

  constructor(config?: PoolOptions) {
    super();
    this.#o = resolveOptions(config);
    const options = { ...(config ?? {}), max: this.#o.max, min: this.#o.min, idleTimeoutMillis: this.#o.idleTimeoutMillis, maxUses: this.#o.maxUses, allowExitOnIdle: this.#o.allowExitOnIdle, maxLifetimeSeconds: this.#o.maxLifetimeMs / 1000 };
    // Like pg-pool's password: kept, but hidden from enumeration so logging or serialising the
    // options never prints a credential (a connection string may hold one too).
    for (const secret of ['password', 'connectionString'] as const) {
      if (secret in options) {
        const value = options[secret];
        delete options[secret];
        Object.defineProperty(options, secret, { value, enumerable: false, writable: true });
      }
    }
    this.options = options;
    this.#reporter = new FailoverReporter(this.#o.clock, (report) => this.#onReport(report));
    this.#topology = new Topology(this.#o, (event) => this.#onFailover(event));
    if (this.#o.patroni !== undefined) {
      const discovery = new PatroniDiscovery(this.#o.patroni, this.#o.clock, this.#o.logger, () => {
        // Discovery saw a new leader, maybe before any query failed: a failover signal, and
        // callers backing off can go to the new leader now.
        this.#signalFailover('patroni-leader-change', undefined);
        this.#breaker.reset();
        this.#topology.primaryChanged();
      });
      this.#topology.setDiscovery(discovery);
    }
    this.#breaker = new Breaker(this.#o.breaker, this.#o.clock, (state) => this.#publish('breaker', { state }));
    // Every waiting caller listens to this signal; their number is bounded by maxWaitingClients.
    setMaxListeners(Infinity, this.#end.signal);
    this.#default = this.#makeParts('default');
    this.#parts.set('default', this.#default);
    if (this.#o.min > 0) queueMicrotask(() => void this.#ensureMin());
  }

  // ---- pg.Pool's surface --------------------------------------------------------------------

  /** All connections, idle, checked out or being opened. */
  get totalCount(): number {
    let n = 0;
    for (const { gp } of this.#parts.values()) n += gp.size;
    return n;
  }

  /** Connections open and not checked out. */
  get idleCount(): number {
    let n = 0;
    for (const { gp, idle } of this.#parts.values()) n += gp.available + idle.length;
    return n;
  }

  /** Callers waiting for a connection (as in pg.Pool, not those a connection is being opened for). */
  get waitingCount(): number {
    let n = 0;
    for (const { queue, pumping } of this.#parts.values()) n += Math.max(0, queue.size - pumping);
    return n;
  }

  /** Checked-out connections past their lifetime, to be closed on release. */
  get expiredCount(): number {
    const now = this.#o.clock.now();
    let n = 0;
    for (const c of this.#clients) if ((metaOf(c)?.expiresAt ?? Infinity) <= now) n += 1;
    return n;
  }

  get ending(): boolean {
    return this.#ending;
  }

  get ended(): boolean {
    return this.#ended;
  }

  query<T extends Submittable>(queryStream: T): T;
  query<R extends unknown[] = unknown[], I = unknown[]>(queryConfig: QueryArrayConfig<I> & ResilienceQueryOptions, values?: QueryConfigValues<I>): Promise<QueryArrayResult<R>>;
  query<R extends QueryResultRow = any, I = unknown[]>(queryConfig: ResilientQueryConfig<I>): Promise<QueryResult<R>>;
  query<R extends QueryResultRow = any, I = unknown[]>(queryTextOrConfig: string | ResilientQueryConfig<I>, values?: QueryConfigValues<I>): Promise<QueryResult<R>>;
  query<R extends unknown[] = unknown[], I = unknown[]>(queryConfig: QueryArrayConfig<I> & ResilienceQueryOptions, callback: (err: Error, result: QueryArrayResult<R>) => void): void;
  query<R extends QueryResultRow = any, I = unknown[]>(queryTextOrConfig: string | ResilientQueryConfig<I>, callback: (err: Error, result: QueryResult<R>) => void): void;
  query<R extends QueryResultRow = any, I = unknown[]>(queryText: string, values: QueryConfigValues<I>, callback: (err: Error, result: QueryResult<R>) => void): void;
  query(...args: QueryArgs): unknown {
    const first = args[0];
    if (typeof first === 'object' && first !== null && typeof (first as Submittable).submit === 'function') {
      return this.#submit(first as Submittable);
    }
    let promise: Promise<QueryResult>;
    let callback: Callback<QueryResult> | undefined;
    const [, second, third] = args;
    if (typeof first === 'string' && (second === undefined || Array.isArray(second) || typeof second === 'function')
      && (third === undefined || typeof third === 'function')) {
      // query(text[, values][, callback]): the common form, on the fast path.
      callback = (typeof second === 'function' ? second : third) as Callback<QueryResult> | undefined;
      promise = this.#queryText(first, Array.isArray(second) ? second : undefined);
    } else {
      const normalized = normalizeQuery(args);
      callback = normalized.callback;
      promise = this.#runQuery(normalized.config);
    }
    if (callback === undefined) return promise;
    promise.then((res) => callback(undefined, res), (err: Error) => callback(err, undefined as unknown as QueryResult));
    return undefined;
  }

  connect(): Promise<PoolClient>;
  connect(callback: (err: Error | undefined, client: PoolClient | undefined, done: (release?: any) => void) => void): void;
  connect(callback?: (err: Error | undefined, client: PoolClient | undefined, done: (release?: any) => void) => void): Promise<PoolClient> | void {
    const promise = this.#checkout({});
    if (callback === undefined) return promise;
    promise.then(
      (client) => callback(undefined, client, (err?: unknown) => client.release(err as Error | undefined)),
      (err: Error) => callback(err, undefined, () => undefined),
    );
  }

  end(): Promise<void>;
  end(callback: () => void): void;
  end(callback?: () => void): Promise<void> | void {
    if (this.#ending) {
      // pg.Pool's answer to a second end().
      const err = new Error('Called end on pool more than once');
      if (callback !== undefined) return void queueMicrotask(() => (callback as (e?: Error) => void)(err));
      return Promise.reject(err);
    }
    this.#endPromise = this.#shutdown();
    if (callback === undefined) return this.#endPromise;
    this.#endPromise.then(() => callback(), () => callback());
  }

  override on<K extends keyof PoolEventMap>(event: K, listener: (...args: PoolEventMap[K]) => void): this;
  override on(event: string | symbol, listener: (...args: any[]) => void): this;
  override on(event: string | symbol, listener: (...args: any[]) => void): this {
    return super.on(event, listener);
  }

  override once<K extends keyof PoolEventMap>(event: K, listener: (...args: PoolEventMap[K]) => void): this;
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
    if (this.#ending) return Promise.reject(poolEndedError());
    const deadline = new Deadline(this.#o.clock, options.maxElapsedMs ?? this.#o.retry.maxElapsedMs);
    return this.#tracked('transaction', deadline, () => runTransaction(this.#transactionHost(), fn, options));
  }

  /** A client routed to a standby (within `maxLagBytes`), falling back to the primary. */
  connectReadOnly(options: { signal?: AbortSignal } = {}): Promise<PoolClient> {
    return this.#checkout({ readOnly: true, ...options });
  }

  /** The last failover report, if any (also emitted as `failoverReport`). */
  get lastFailoverReport(): FailoverReport | undefined {
    return this.#reporter.last;
  }

  /** The breaker's state: 'closed', 'open' or 'half-open'. */
  get breakerState(): string {
    return this.#breaker.state;
  }

  /** The primary as last seen (host:port of the server, also behind HAProxy), if known. */
  get primary(): { host: string; port: number } | undefined {
    return this.#topology.primary;
  }

  // ---- internals -----------------------------------------------------------------------------

  #makeParts(purpose: Purpose): PoolParts {
    const factory = new ConnectionFactory(this.#o, this.#topology, {
      onBroken: (client, meta, err) => this.#onBroken(client, meta, err),
      onLentStatementFailure: (client, _meta, err) => this.#afterFailure(client, err),
      onRoleChange: (_client, meta, role) => {
        if (this.#topology.fits(role, meta.purpose) === 'no') this.#signalFailover('role-change', meta.server);
      },
      onConnectFailure: (target, err) => {
        this.#lastConnectError = err;
        this.#o.logger.debug({ host: target.host, port: target.port, error: describeError(err) }, 'pg-resilient: connect failed');
        const c = classify(err);
        this.#reporter.noteFailure(c.category, c.code);
        // Just after statements succeeded on the current primary, a failed connect says more
        // about the route than the primary: a proxy whose health checks lag a switchover by a
        // second or two, a standby host that is down. It is retried, but starts no failover:
        // a new generation would close the good idle connections (and file a report for
        // nothing). A dead primary still shows at once, through its connections' failures.
        // A target may be a proxy (HAProxy): the report names the last primary seen instead.
        if (c.topologyChanging && !this.#topology.servedWithin(CONNECT_FAILURE_GRACE_MS)) this.#signalFailover(c.category, undefined);
      },
      onConnected: (client, meta) => {
        this.#clients.add(client);
        this.#startHousekeeping();
        if (meta.server !== undefined) this.#topology.notePrimary(meta.server);
        this.#emitSafe('connect', client as PoolClient);
      },
    }, purpose, this.#end.signal);
    const idle = this.#o.idleTimeoutMillis;
    const gp = genericPool.createPool<Resource>({
      create: () => factory.create(),
      destroy: async (resource) => {
        if (resource instanceof CreateFailure) return;
        this.#clients.delete(resource);
        await closeQuietly(resource);
        this.#emitSafe('remove', resource as PoolClient);
        if (!this.#ending) queueMicrotask(() => void this.#ensureMin());
      },
      validate: (resource) => this.#validate(resource),
    }, {
      max: this.#o.max,
      min: 0, // warming is ours: generic-pool would retry failed creates in a tight loop
      testOnBorrow: true,
      fifo: false, // reuse the most recent connection; the others age out
      maxWaitingClients: this.#o.maxWaitingClients,
      // soft: evicts idle connections above `min`; our own warm-up keeps `min` (idle 0 = never).
      softIdleTimeoutMillis: idle > 0 ? idle : -1,
      idleTimeoutMillis: Number.MAX_SAFE_INTEGER,
      evictionRunIntervalMillis: idle > 0 ? Math.max(100, Math.min(idle / 2, 5000)) : 0,
      numTestsPerEvictionRun: this.#o.max,
    });
    gp.on('factoryDestroyError', (err: unknown) => this.#o.logger.debug({ error: describeError(err) }, 'pg-resilient: closing a connection failed'));
    return { gp, factory, idle: [], queue: new WaitQueue<Resource>(this.#o.clock), pumping: 0 };
  }

  #partsFor(purpose: Purpose): PoolParts {
    let parts = this.#parts.get(purpose);
    if (parts === undefined) {
      parts = this.#makeParts(purpose);
      this.#parts.set(purpose, parts);
    }
    return parts;
  }

  #validate(resource: Resource): Promise<boolean> {
    if (resource instanceof CreateFailure) return VALID; // delivered so the caller sees the error
    const meta = metaOf(resource);
    if (meta === undefined) return INVALID;
    const now = this.#o.clock.now();
    if (this.#fresh(meta, now)) return VALID;
    return this.#validateSlow(resource, meta, now);
  }

  /** Hot path: a healthy connection used recently needs no more than these comparisons. */
  #fresh(meta: ConnectionMeta, now: number): boolean {
    return meta.broken === undefined && meta.generation === this.#topology.generation && meta.expiresAt > now
      && meta.uses < this.#o.maxUses && now - meta.releasedAt <= this.#o.validateAfterIdleMs
      && (meta.role === undefined || this.#topology.fits(meta.role, meta.purpose) !== 'no');
  }

  async #validateSlow(resource: Client, meta: ConnectionMeta, now: number): Promise<boolean> {
    const retire = (reason: ConnectionRetiredEvent['reason']): boolean => {
      this.#publish('connectionRetired', { host: meta.server ?? meta.target, reason });
      return false;
    };
    if (meta.broken !== undefined) return retire('broken');
    if (meta.generation < this.#topology.generation) return retire('failover');
    if (meta.role !== undefined && this.#topology.fits(meta.role, meta.purpose) === 'no') return retire('wrong-role');
    if (meta.expiresAt <= now) return retire('lifetime');
    if (meta.uses >= this.#o.maxUses) return retire('max-uses');
    if (now - meta.releasedAt > this.#o.validateAfterIdleMs) {
      // An idle connection may have died silently (node-postgres #2112): one round trip, bounded.
      const ok = await pingWithin(resource, Math.min(1000, this.#o.connectTimeoutMs));
      if (!ok) {
        meta.broken ??= new Error('liveness check failed');
        return retire('stale');
      }
    }
    return true;
  }

  /**
   * One attempt to get a connection: the most recently released one if it is fresh, else a
   * place in line, bounded by the acquire timeout, the call's deadline, its signal and the
   * pool's end.
   */
  async #acquire(purpose: Purpose, deadline: Deadline): Promise<Client> {
    if (this.#ending) throw poolEndedError();
    const parts = this.#partsFor(purpose);
    const client = this.#takeIdle(parts);
    if (client !== undefined) return client;
    return this.#delivered(parts, await this.#obtain(parts, deadline));
  }

  /** The most recently released connection, if fresh; others go back to generic-pool to be validated. */
  #takeIdle(parts: PoolParts, now = this.#o.clock.now()): Client | undefined {
    const idle = parts.idle;
    while (idle.length > 0) {
      const client = idle.pop()!;
      const meta = metaOf(client)!;
      meta.idle = false;
      if (this.#fresh(meta, now)) {
        if (this.#o.allowExitOnIdle) refSocket(client, true);
        return client;
      }
      // Stale, expired or retired: generic-pool's validation on borrow pings it or closes it.
      parts.gp.release(client).catch(ignore);
    }
    return undefined;
  }

  /**
   * Waits in line for a connection: one released by another caller, or one generic-pool
   * hands out (validated) or opens for us while it has room.
   */
  #obtain(parts: PoolParts, deadline: Deadline): Promise<Resource> {
    if (parts.queue.size >= this.#o.maxWaitingClients) {
      return Promise.reject(queueFullError(this.#o.maxWaitingClients));
    }
    const remaining = deadline.remainingMs();
    const limitedByAcquireTimeout = this.#o.acquireTimeoutMs < remaining;
    const waiting = parts.queue.wait(this.#o.clock.now() + Math.min(this.#o.acquireTimeoutMs, remaining), () => limitedByAcquireTimeout
      ? new PgResilientError(ErrorCodes.ACQUIRE_TIMEOUT, `pg-resilient: no connection became available within ${this.#o.acquireTimeoutMs} ms`, { cause: this.#recentConnectError() })
      : deadlineError(deadline, this.#recentConnectError()), deadline.signal);
    this.#pump(parts);
    return waiting;
  }

  /** Asks generic-pool for connections while callers wait and it can give them without waiting itself. */
  #pump(parts: PoolParts): void {
    const { gp, queue } = parts;
    while (!this.#ending && queue.size > parts.pumping && (gp.available > 0 || gp.size < gp.max)) {
      parts.pumping += 1;
      gp.acquire().then(
        (resource) => {
          parts.pumping -= 1;
          if (!queue.deliver(resource)) this.#giveBack(parts, resource);
        },
        (err: unknown) => {
          // Only when generic-pool is draining (the pool is ending): the waiter hears why.
          parts.pumping -= 1;
          queue.deliver(new CreateFailure(this.#end.signal.aborted ? poolEndedError() : err, undefined));
        },
      );
    }
  }

  #delivered(parts: PoolParts, resource: Resource): Client {
    if (resource instanceof CreateFailure) {
      this.#destroy(parts, resource);
      throw resource.error;
    }
    if (this.#o.allowExitOnIdle) refSocket(resource, true);
    return resource;
  }

  #recentConnectError(): unknown {
    return this.#lastConnectError;
  }

  #giveBack(parts: PoolParts, resource: Resource): void {
    if (resource instanceof CreateFailure) {
      this.#destroy(parts, resource);
      return;
    }
    this.#release(resource, undefined);
  }

  /** Closes a connection (or forgets a failed creation) and lets a waiting caller use the room. */
  #destroy(parts: PoolParts, resource: Resource): void {
    // A CreateFailure made for a refused acquire was never generic-pool's: it says so, ignored.
    parts.gp.destroy(resource).catch(ignore);
    if (parts.queue.size > 0) this.#pump(parts);
  }

  /** Returns a client to its pool, or destroys it if it must not be reused. */
  #release(client: Client, err: unknown, now = this.#o.clock.now()): void {
    const meta = metaOf(client);
    const parts = meta === undefined ? undefined : this.#parts.get(meta.purpose);
    if (meta === undefined || parts === undefined || meta.idle || !parts.gp.isBorrowedResource(client)) return;
    meta.checkedOut = false;
    meta.released = true;
    meta.uses += 1;
    meta.releasedAt = now;
    const status = (client as unknown as { getTransactionStatus?: () => string | null }).getTransactionStatus?.();
    const destroy = (err !== undefined && err !== false && err !== null)
      || meta.broken !== undefined
      || this.#ending
      || meta.generation < this.#topology.generation
      || meta.expiresAt <= meta.releasedAt
      || meta.uses >= this.#o.maxUses
      // Released inside a transaction: reusing it would leak the transaction to the next caller.
      || status === 'T' || status === 'E';
    if (destroy) {
      if (meta.generation < this.#topology.generation) this.#publish('connectionRetired', { host: meta.server ?? meta.target, reason: 'failover' });
      this.#destroy(parts, client);
      return;
    }
    // The first caller in line takes it as it is; nobody waiting: onto the idle stack.
    if (parts.queue.size > 0 && parts.queue.deliver(client)) return;
    if (this.#o.allowExitOnIdle) refSocket(client, false);
    meta.idle = true;
    parts.idle.push(client);
  }

  /**
   * Connections idle on the stack for a while go back to generic-pool (its idle timeout applies
   * there), except the newest `min`: generic-pool's evictor would close those too (its own `min`
   * is 0, warming is ours) and the warm-up would open them again, every idle period.
   */
  #returnLingering(now: number): void {
    for (const parts of this.#parts.values()) {
      const idle = parts.idle;
      const limit = idle.length - (parts === this.#default ? this.#o.min : 0);
      let n = 0;
      while (n < limit && now - metaOf(idle[n]!)!.releasedAt > IDLE_LINGER_MS) n += 1;
      if (n === 0) continue;
      for (const client of idle.splice(0, n)) {
        metaOf(client)!.idle = false;
        parts.gp.release(client).catch(ignore);
      }
    }
  }

  /**
   * `query(text, values?)`, the common call, made with as little as possible on top of pg's
   * own: an idle connection taken synchronously (or a place in line), the statement sent, the
   * connection handed to the next caller. No deadline, breaker or retry machinery runs unless
   * the statement fails; then the call continues in the retry loop, exactly as a call on the
   * slow path would.
   */
  #queryText(text: string, values: unknown[] | undefined): Promise<QueryResult> {
    if (this.#ending) return Promise.reject(poolEndedError());
    // One reading of the clock serves the whole call until its result (they are ~40 ns each).
    const startedAt = this.#o.clock.now();
    if (!this.#breaker.healthyAt(startedAt) || this.#inProgress >= this.#o.max + this.#o.maxWaitingClients) {
      return this.#runQuery(values === undefined ? { text } : { text, values });
    }
    const parts = this.#default;
    this.#inProgress += 1;
    const client = this.#takeIdle(parts, startedAt);
    if (client !== undefined) return this.#runFast(client, text, values, startedAt, startedAt);
    const deadline = new Deadline(this.#o.clock, this.#o.retry.maxElapsedMs, undefined, startedAt);
    return this.#obtain(parts, deadline).then(
      (resource) => {
        let c: Client;
        try {
          c = this.#delivered(parts, resource);
        } catch (err) {
          return this.#continueQuery(new AttemptFailure(err, 'connect'), text, values, startedAt);
        }
        return this.#runFast(c, text, values, startedAt, this.#o.clock.now());
      },
      (err: unknown) => this.#continueQuery(new AttemptFailure(err, 'connect'), text, values, startedAt),
    );
  }

  #runFast(client: Client, text: string, values: unknown[] | undefined, startedAt: number, sentAt: number): Promise<QueryResult> {
    const meta = metaOf(client)!;
    meta.inFlight += 1;
    meta.busySince ??= sentAt;
    this.#emitSafe('acquire', client as PoolClient);
    let pending: Promise<unknown>;
    try {
      pending = meta.rawQuery(text, values);
    } catch (err) {
      // pg reports its errors asynchronously; should one ever throw, the connection still goes back.
      pending = Promise.reject(err);
    }
    return pending.then(
      (result) => {
        const now = this.#o.clock.now();
        settleStatement(meta, now);
        this.#statementEnded(client, meta, false, undefined, now);
        this.#inProgress -= 1;
        if (CHANNELS.callEnd.hasSubscribers || this.listenerCount('callEnd') > 0) {
          this.#publish('callEnd', { kind: 'query', outcome: 'ok', attempts: 1, durationMs: now - startedAt });
        }
        return result as QueryResult;
      },
      (err: unknown) => {
        const now = this.#o.clock.now();
        settleStatement(meta, now);
        this.#statementEnded(client, meta, true, err, now);
        return this.#continueQuery(new AttemptFailure(err, 'query'), text, values, startedAt);
      },
    );
  }

  /**
   * A statement the pool ran on its own connection ended (fast path or retry loop): a success
   * may end a failover, a failure may start one; then the connection goes back.
   */
  #statementEnded(client: Client, meta: ConnectionMeta | undefined, failed: boolean, err: unknown, now: number): void {
    if (failed) this.#afterFailure(client, err);
    else if (meta !== undefined) this.#topology.observeSuccess(meta.generation, meta.server ?? meta.target, now);
    this.#emitSafe('release', failed ? err as Error : undefined, client as PoolClient);
    this.#release(client, undefined, now);
  }

  /** A fast-path call whose first attempt failed: the retry loop takes over (the call is still counted in progress). */
  async #continueQuery(first: AttemptFailure, text: string, values: unknown[] | undefined, startedAt: number): Promise<QueryResult> {
    const config: QueryConfig = values === undefined ? { text } : { text, values };
    const deadline = new Deadline(this.#o.clock, this.#o.retry.maxElapsedMs, undefined, startedAt);
    return this.#tracked('query', deadline, async (count) => {
      count();
      await this.#breaker.noteFailure(first);
      return retryAfterFailure(first, () => {
        count();
        return this.#attempt('default', deadline, (client) => client.query(config) as Promise<QueryResult>);
      }, this.#retryRun(deadline, isRecognisedRead(text)));
    }, true);
  }

  async #runQuery(input: ResilientQueryConfig): Promise<QueryResult> {
    if (this.#ending) throw poolEndedError();
    const { idempotent, readOnly, signal, deadlineMs } = input;
    // pg ignores fields it doesn't know, but ours are removed (copying only when present).
    const pgConfig = idempotent === undefined && readOnly === undefined && signal === undefined && deadlineMs === undefined
      ? input
      : withoutResilienceOptions(input);
    validateCallOptions(input);
    const purpose: Purpose = readOnly === true ? 'read' : 'default';
    const deadline = new Deadline(this.#o.clock, deadlineMs ?? this.#o.retry.maxElapsedMs, signal);
    const hardDeadline = deadlineMs !== undefined;
    const run = async (client: Client): Promise<QueryResult> => {
      const running = client.query(pgConfig as QueryConfig) as Promise<QueryResult>;
      if (signal === undefined && !hardDeadline) return running;
      // The statement is bounded too: on abort or deadline its connection is closed.
      return deadline.race(running, () => inFlightDeadlineError(deadline)).catch((err: unknown) => {
        if (isOwnCancel(err)) abandon(client, err);
        throw err;
      });
    };
    return this.#tracked('query', deadline, (count) => runWithRetry(() => {
      count();
      return this.#attempt(purpose, deadline, run);
    }, this.#retryRun(deadline, idempotent ?? isRecognisedRead(pgConfig.text ?? ''))));
  }

  /**
   * Runs a call and publishes `callEnd` (only built when someone listens: hot path).
   * `counted`: the fast path already counted the call in progress.
   */
  async #tracked<T>(kind: CallEndEvent['kind'], deadline: Deadline, run: (countAttempt: () => void) => Promise<T>, counted = false): Promise<T> {
    if (!counted) {
      if (this.#inProgress >= this.#o.max + this.#o.maxWaitingClients) {
        throw queueFullError(this.#o.maxWaitingClients);
      }
      this.#inProgress += 1;
    }
    let attempts = 0;
    const count = (): void => {
      attempts += 1;
    };
    const listening = (): boolean => CHANNELS.callEnd.hasSubscribers || this.listenerCount('callEnd') > 0;
    try {
      const result = await run(count);
      if (listening()) this.#publish('callEnd', { kind, outcome: 'ok', attempts, durationMs: deadline.elapsedMs() });
      return result;
    } catch (err) {
      if (listening()) {
        const c = classify(err);
        this.#publish('callEnd', { kind, outcome: 'error', attempts, durationMs: deadline.elapsedMs(), category: c.category, code: c.code });
      }
      throw err;
    } finally {
      this.#inProgress -= 1;
    }
  }

  /** One attempt through the breaker: acquire (phase 'connect'), run, release. */
  #attempt<T>(purpose: Purpose, deadline: Deadline, work: (client: Client) => Promise<T>): Promise<T> {
    return this.#breaker.run(async () => {
      let client: Client;
      try {
        client = await this.#acquire(purpose, deadline);
      } catch (err) {
        throw new AttemptFailure(err, 'connect');
      }
      this.#emitSafe('acquire', client as PoolClient);
      let result: T;
      try {
        result = await work(client);
      } catch (err) {
        this.#statementEnded(client, metaOf(client), true, err, this.#o.clock.now());
        throw new AttemptFailure(err, 'query');
      }
      this.#statementEnded(client, metaOf(client), false, undefined, this.#o.clock.now());
      return result;
    }).catch((err: unknown) => {
      // An open breaker refused the call before anything was sent.
      if (err instanceof PgResilientError && err.code === ErrorCodes.CIRCUIT_OPEN) throw new AttemptFailure(err, 'connect');
      throw err;
    });
  }

  #retryRun(deadline: Deadline, idempotent: boolean): Parameters<typeof runWithRetry>[1] {
    return {
      deadline,
      idempotent,
      policy: this.#o.retry,
      random: this.#o.random,
      onRetry: (event: RetryEvent) => {
        this.#reporter.noteRetry();
        this.#publish('retry', event);
      },
      onGiveUp: (event: GiveUpEvent) => {
        this.#reporter.noteGiveUp();
        this.#publish('giveUp', event);
      },
      wakeUp: () => this.#topology.nextPrimaryChange(),
      minDelayFor: (failure: unknown) =>
        failure instanceof PgResilientError && failure.code === ErrorCodes.CIRCUIT_OPEN ? this.#breaker.msUntilTrial() : 0,
    };
  }

  /** After a statement failed on `client`: evict it if unusable, signal a failover if the topology is changing. */
  #afterFailure(client: Client, err: unknown): void {
    const meta = metaOf(client);
    const c = classify(err);
    if (meta !== undefined && !c.connectionUsable && meta.broken === undefined) meta.broken = err instanceof Error ? err : new Error(String(err));
    if (c.transient) this.#reporter.noteFailure(c.category, c.code);
    // A connection from before the last failover is already known to be stale: its failure is
    // not news, and must not start another generation (and retire the new connections).
    if (c.topologyChanging && meta !== undefined && meta.generation === this.#topology.generation) this.#signalFailover(c.category, meta.server);
  }

  async #checkout(options: { readOnly?: boolean; signal?: AbortSignal }): Promise<PoolClient> {
    if (this.#ending) throw poolEndedError();
    const deadline = new Deadline(this.#o.clock, this.#o.retry.maxElapsedMs, options.signal);
    const purpose: Purpose = options.readOnly === true ? 'read' : 'default';
    const client = await this.#tracked('connect', deadline, (count) => runWithRetry(async () => {
      count();
      try {
        return await this.#acquire(purpose, deadline);
      } catch (err) {
        throw new AttemptFailure(err, 'connect');
      }
    }, this.#retryRun(deadline, true)));
    return this.#lend(client);
  }

  /** Hands a client to application code: pg's `release(err?)`, and a typed error once it broke. */
  #lend(client: Client): PoolClient {
    const meta = metaOf(client)!;
    meta.checkedOut = true;
    meta.released = false;
    const pooled = client as PoolClient;
    pooled.release = (err?: Error | boolean) => {
      if (meta.released) throw new Error('Release called on client which has already been released to the pool.');
      this.#emitSafe('release', err, pooled);
      this.#release(client, err);
    };
    this.#emitSafe('acquire', pooled);
    return pooled;
  }

  #submit<T extends Submittable>(query: T): T {
    // Streams and cursors are stateful: they run once, on one connection, without retries.
    const deadline = new Deadline(this.#o.clock, this.#o.retry.maxElapsedMs);
    const q = query as T & { handleError?: (err: Error) => void; on?: (event: string, fn: () => void) => void; once?: (event: string, fn: () => void) => void };
    this.#acquire('default', deadline).then((client) => {
      const done = (): void => this.#release(client, undefined);
      q.once?.('end', done);
      q.once?.('error', () => this.#release(client, true));
      client.query(query);
    }, (err: Error) => {
      if (typeof q.handleError === 'function') q.handleError(err);
    });
    return query;
  }

  #onBroken(client: Client, meta: ConnectionMeta, err: Error): void {
    const c = classify(err);
    // A statement in flight reports this failure itself (#afterFailure); count it once.
    if (meta.inFlight === 0) this.#reporter.noteFailure(c.category, c.code);
    if (c.topologyChanging && meta.generation === this.#topology.generation) this.#signalFailover(c.category, meta.server);
    if (!meta.checkedOut) {
      this.#o.logger.info({ host: describeHost(meta), error: describeError(err) }, 'pg-resilient: an idle connection was closed by the server or the network');
      // pg.Pool emits 'error' for idle clients; with nobody listening that would crash the process.
      if (this.listenerCount('error') > 0) this.emit('error', err, client as PoolClient);
      // Close it now rather than at the next borrow, so counts and sockets are right.
      void this.#evictIdle();
    }
  }

  #evictIdle(): Promise<unknown> {
    const generation = this.#topology.generation;
    for (const parts of this.#parts.values()) {
      // The idle stack: broken ones and those from before a failover (validation would catch
      // them at the next borrow; closing them now gets the counts and sockets right at once).
      const keep: Client[] = [];
      for (const client of parts.idle.splice(0)) {
        const meta = metaOf(client)!;
        if (meta.broken === undefined && meta.generation === generation) {
          keep.push(client);
          continue;
        }
        meta.idle = false;
        if (meta.generation < generation) this.#publish('connectionRetired', { host: meta.server ?? meta.target, reason: 'failover' });
        this.#destroy(parts, client);
      }
      parts.idle.push(...keep);
    }
    // generic-pool can only drop its idle resources all at once.
    return Promise.all([...this.#parts.values()].map(({ gp }) => gp.clear().catch(ignore)));
  }

  #signalFailover(trigger: string, at: { host: string; port: number } | undefined): void {
    if (this.#ending) return;
    if (!this.#topology.signalFailover(trigger, at)) return;
    void this.#evictIdle().then(() => this.#ensureMin());
  }

  #onFailover(event: FailoverEvent): void {
    this.#reporter.onFailover(event);
    this.#o.logger.warn({ phase: event.phase, generation: event.generation, trigger: event.trigger, oldPrimary: event.oldPrimary, newPrimary: event.newPrimary, durationMs: event.durationMs }, `pg-resilient: failover ${event.phase}`);
    this.#publish('failover', event);
  }

  #onReport(report: FailoverReport): void {
    this.#o.logger.warn({ report }, report.summary);
    CHANNELS.failoverReport.publish(report);
    this.#emitSafe('failoverReport', report);
  }

  /** Keeps `min` connections open, pacing itself through the factory's per-host backoff. */
  async #ensureMin(): Promise<void> {
    if (this.#warming || this.#ending || this.#o.min === 0) return;
    this.#warming = true;
    try {
      const parts = this.#default;
      const { gp } = parts;
      let rounds = 0;
      while (!this.#ending && gp.size < this.#o.min && rounds < 1000) {
        rounds += 1;
        const needed = this.#o.min - gp.size;
        const got = await Promise.all(Array.from({ length: needed }, () => gp.acquire().catch(() => undefined)));
        for (const r of got) if (r !== undefined) this.#giveBack(parts, r);
        if (got.every((r) => r instanceof CreateFailure || r === undefined)) {
          await new Promise<void>((resolve) => this.#o.clock.setTimeout(resolve, this.#o.hostRecheckMs, { background: true }));
        }
      }
    } finally {
      this.#warming = false;
    }
  }

  /**
   * One background timer from the first connection on: the watchdog for statements stuck on a
   * server that stopped answering (see livenessCheckAfterMs), and the idle stack's return of
   * lingering connections to generic-pool.
   */
  #startHousekeeping(): void {
    if (this.#housekeepingTimer !== undefined || this.#ending) return;
    const every = this.#o.livenessCheckAfterMs === 0 ? 500 : Math.min(500, this.#o.livenessCheckAfterMs);
    this.#housekeepingTimer = setInterval(() => {
      const now = this.#o.clock.now();
      this.#returnLingering(now);
      if (this.#o.livenessCheckAfterMs > 0) this.#checkLiveness(now);
    }, every);
    this.#housekeepingTimer.unref();
  }

  #checkLiveness(now: number): void {
    const suspects = new Map<string, HostTarget>();
    for (const client of this.#clients) {
      const meta = metaOf(client);
      if (meta?.busySince !== undefined && now - meta.busySince >= this.#o.livenessCheckAfterMs) {
        suspects.set(`${meta.target.host}:${meta.target.port}`, meta.target);
      }
    }
    for (const [key, target] of suspects) {
      if (this.#probing.has(key)) continue;
      this.#probing.add(key);
      void probeServer(target, this.#o.livenessTimeoutMs).then((alive) => {
        this.#probing.delete(key);
        if (alive || this.#ending) return;
        const err = unresponsiveError(target, this.#o.livenessCheckAfterMs + this.#o.livenessTimeoutMs);
        this.#o.logger.warn({ host: key }, err.message);
        this.#topology.markFailed(target);
        // Every connection to that server is presumed dead; closing them fails their statements
        // now (with a transient, classified error) instead of after minutes of TCP retransmits.
        for (const client of this.#clients) {
          const meta = metaOf(client);
          if (meta === undefined || meta.target.host !== target.host || meta.target.port !== target.port) continue;
          meta.broken ??= err;
          (client as unknown as { connection?: { stream?: { destroy(e?: Error): void } } }).connection?.stream?.destroy(err);
        }
        this.#signalFailover('connection-lost', undefined);
      });
    }
  }

  async #shutdown(): Promise<void> {
    this.#ending = true;
    this.#end.abort();
    if (this.#housekeepingTimer !== undefined) clearInterval(this.#housekeepingTimer);
    this.#topology.close();
    this.#breaker.shutdown();
    for (const parts of this.#parts.values()) {
      parts.queue.cancelAll(() => poolEndedError());
      // generic-pool's drain waits for everything borrowed, so the idle stack goes back first.
      for (const client of parts.idle.splice(0)) {
        metaOf(client)!.idle = false;
        parts.gp.release(client).catch(ignore);
      }
    }
    await Promise.all([...this.#parts.values()].map(async ({ gp }) => {
      await gp.drain();
      await gp.clear();
    }));
    this.#ended = true;
  }

  #transactionHost(): import('./transaction.ts').TransactionHost {
    return {
      options: this.#o,
      checkout: (deadline: Deadline) => this.#attemptCheckout(deadline),
      lend: (client: Client) => this.#lend(client),
      afterFailure: (client: Client, err: unknown) => this.#afterFailure(client, err),
      observeSuccess: (client: Client) => {
        const meta = metaOf(client);
        if (meta !== undefined) this.#topology.observeSuccess(meta.generation, meta.server ?? meta.target);
        },
      retryRun: (deadline: Deadline, idempotent: boolean) => this.#retryRun(deadline, idempotent),
      breaker: this.#breaker,
      onCommitResolved: (xid, outcome, durationMs) => {
        this.#o.logger.warn({ xid, outcome, durationMs }, `pg-resilient: connection lost during COMMIT of transaction ${xid}; the primary says: ${outcome}`);
        this.#publish('commitResolved', { xid, outcome, durationMs });
      },
    };
  }

  async #attemptCheckout(deadline: Deadline): Promise<Client> {
    try {
      return await this.#acquire('default', deadline);
    } catch (err) {
      throw new AttemptFailure(err, 'connect');
    }
  }

  #publish<K extends 'retry' | 'giveUp' | 'breaker' | 'failover' | 'connectionRetired' | 'callEnd' | 'commitResolved'>(event: K, payload: PoolEventMap[K][0]): void {
    const channel = CHANNELS[event];
    if (channel.hasSubscribers) channel.publish(payload);
    this.#emitSafe(event, payload);
  }

  /** Emits without letting a throwing listener break the pool's bookkeeping. */
  #emitSafe(event: string, ...args: unknown[]): void {
    if (this.listenerCount(event) === 0) return;
    try {
      this.emit(event, ...args);
    } catch (err) {
      this.#o.logger.error({ event, error: describeError(err) }, 'pg-resilient: an event listener threw');
    }
  }
}

const VALID = Promise.resolve(true);
const ignore = (): void => undefined;

/** A statement on `meta`'s connection finished (the liveness watchdog's bookkeeping). */
function settleStatement(meta: ConnectionMeta, now: number): void {
  meta.inFlight -= 1;
  meta.busySince = meta.inFlight > 0 ? now : undefined;
}
const INVALID = Promise.resolve(false);

function normalizeQuery(args: QueryArgs): { config: ResilientQueryConfig; callback: Callback<QueryResult> | undefined } {
  const [first, second, third] = args;
  let config: ResilientQueryConfig;
  if (typeof first === 'string') config = { text: first };
  else if (typeof first === 'object' && first !== null) config = first as ResilientQueryConfig;
  else throw new TypeError(`pg-resilient: query() expects a string or a query config object, got ${typeof first}`);
  let callback: Callback<QueryResult> | undefined;
  if (typeof second === 'function') callback = second as Callback<QueryResult>;
  // Values given apart from a config object: copy rather than change the caller's object.
  else if (second !== undefined) config = { ...config, values: second as unknown[] };
  if (typeof third === 'function') callback = third as Callback<QueryResult>;
  return { config, callback };
}

function withoutResilienceOptions(c: ResilientQueryConfig): QueryConfig {
  const { idempotent: _i, readOnly: _r, signal: _s, deadlineMs: _d, ...pgConfig } = c;
  return pgConfig;
}

function validateCallOptions(c: ResilientQueryConfig): void {
  if (c.idempotent !== undefined && typeof c.idempotent !== 'boolean') throw new TypeError('pg-resilient: query option `idempotent` must be a boolean');
  if (c.readOnly !== undefined && typeof c.readOnly !== 'boolean') throw new TypeError('pg-resilient: query option `readOnly` must be a boolean');
  if (c.deadlineMs !== undefined && (typeof c.deadlineMs !== 'number' || !(c.deadlineMs >= 0))) throw new TypeError('pg-resilient: query option `deadlineMs` must be a number ≥ 0');
  if (c.signal !== undefined && !(c.signal instanceof AbortSignal)) throw new TypeError('pg-resilient: query option `signal` must be an AbortSignal');
}

function isOwnCancel(err: unknown): boolean {
  return err instanceof PgResilientError && (err.code === ErrorCodes.ABORTED || err.code === ErrorCodes.DEADLINE_EXCEEDED);
}

/** Gives up on a statement in flight: the connection is closed so it can't deliver a late result. */
function abandon(client: Client, reason: unknown): void {
  const meta = metaOf(client);
  if (meta !== undefined && meta.broken === undefined) meta.broken = reason instanceof Error ? reason : new Error(String(reason));
  (client as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy();
}

function inFlightDeadlineError(deadline: Deadline): PgResilientError {
  return new PgResilientError(ErrorCodes.DEADLINE_EXCEEDED, `pg-resilient: the call's deadline passed after ${Math.round(deadline.elapsedMs())} ms with the statement in flight; its connection was closed, and the statement may or may not have taken effect`, { inFlight: true });
}

function queueFullError(maxWaitingClients: number): PgResilientError {
  return new PgResilientError(ErrorCodes.QUEUE_FULL, `pg-resilient: ${maxWaitingClients} callers are already waiting for a connection (maxWaitingClients)`);
}

function poolEndedError(): PgResilientError {
  return new PgResilientError(ErrorCodes.POOL_ENDED, 'pg-resilient: Cannot use a pool after calling end on the pool');
}

function deadlineError(deadline: Deadline, cause: unknown): PgResilientError {
  return new PgResilientError(ErrorCodes.DEADLINE_EXCEEDED, `pg-resilient: the call's deadline passed after ${Math.round(deadline.elapsedMs())} ms${cause === undefined ? '' : `; last error: ${describeError(cause)}`}`, { cause });
}

async function pingWithin(client: Client, ms: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      client.query('SELECT 1').then(() => true, () => false),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(false), ms);
        timer.unref();
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

function refSocket(client: Client, ref: boolean): void {
  const stream = (client as unknown as { connection?: { stream?: { ref?(): void; unref?(): void } } }).connection?.stream;
  if (ref) stream?.ref?.();
  else stream?.unref?.();
}

function describeHost(meta: ConnectionMeta): string {
  const s = meta.server ?? meta.target;
  return `${s.host}:${s.port}`;
}
