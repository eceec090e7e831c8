import type { Client, QueryConfig } from 'pg';
import type { HostRef } from '../observe/types.ts';
import type { StatementCache } from '../prepared/cache.ts';
import type { PreparedStatements } from '../prepared/prepared-statements.ts';
import type { HostTarget } from '../topology/hosts.ts';
import type { Purpose, ServerRole } from '../topology/topology.ts';
import type { MarkedPreparing } from '../transactions/commit-tracking.ts';
import { nextState, retireReason, type EntryEvent, type EntryState, type RetireReason, type RetireRules } from './entry-state.ts';

/** A connection's part in pipelining, while the fast path uses it. */
export interface PipeState {
  /** Statements in flight that nothing may follow (a BEGIN, a COPY, several statements in one text). */
  solo: number;
  /** Handed to callers in line who have not yet sent their statement. */
  promised: number;
}

/** What a PoolEntry is made from (by the connection factory, once per pg Client). */
export interface EntryInit {
  readonly id: number;
  readonly target: HostTarget;
  readonly purpose: Purpose;
  readonly generation: number;
  readonly createdAt: number;
  readonly expiresAt: number;
  /** The pool's prepared statements (the naming and repair rules); the cache is the connection's. */
  readonly statements: PreparedStatements;
  readonly prepared: StatementCache | undefined;
}

type RawQuery = (textOrConfig: unknown, values?: unknown) => Promise<unknown>;
type Socket = { destroy(e?: Error): void; destroyed?: boolean; ref?(): void; unref?(): void };

/**
 * One connection as the pool keeps it (HikariCP's PoolEntry): one lifecycle state, the reason
 * it broke, the socket operations, and the one path every statement on it takes (`send`).
 *
 * The state moves only through the methods below, called by the bag (src/pool/bag.ts,
 * bags.ts) and the failure path (failures.ts, the factory's listeners, `abandon`); what the
 * application holds (its Session or the Client) never moves it. test/unit/pool-entry-state.test.ts
 * checks that no other module assigns the state or the broken reason.
 */
export class PoolEntry {
  readonly client: Client;
  readonly id: number;
  readonly target: HostTarget;
  readonly purpose: Purpose;
  /** Topology generation at creation; older generations are retired after a failover. */
  readonly generation: number;
  readonly createdAt: number;
  /** Clock time after which the connection is closed instead of reused (maxLifetime with jitter). */
  readonly expiresAt: number;
  /** Its prepared statements (none when preparing is off). */
  readonly prepared: StatementCache | undefined;
  /** Server behind the target (differs from the target behind a proxy such as HAProxy). */
  server: HostRef | undefined = undefined;
  role: ServerRole | undefined = undefined;
  uses = 0;
  releasedAt: number;
  /** Clock time the oldest statement now in flight was sent; undefined when none is. */
  busySince: number | undefined = undefined;
  inFlight = 0;
  /** While the pool's fast path runs statements on it: what pipelining needs (src/pool/pipeline.ts). */
  pipe: PipeState | undefined = undefined;
  /** The pool's 'error' event was emitted for it (pg.Pool emits one per client). */
  errorReported = false;
  /** Its Session (src/pool/session.ts): what the application and the pool's events see. */
  session: object | undefined = undefined;

  #state: EntryState = 'busy';
  #brokenBy: Error | undefined = undefined;
  #endedBy: 'application-error' | 'application-end' | undefined = undefined;
  /** close() ran (once per connection: pg's end() adds an 'end' listener on every call). */
  #closeStarted = false;
  readonly #statements: PreparedStatements;
  /** pg's own `query`, without the wrapper of src/pool/client-query.ts. */
  readonly #raw: RawQuery;
  #marking: MarkedPreparing | undefined;

  constructor(client: Client, init: EntryInit) {
    this.client = client;
    this.id = init.id;
    this.target = init.target;
    this.purpose = init.purpose;
    this.generation = init.generation;
    this.createdAt = init.createdAt;
    this.expiresAt = init.expiresAt;
    this.releasedAt = init.createdAt;
    this.prepared = init.prepared;
    this.#statements = init.statements;
    this.#raw = (typeof client.query === 'function' ? client.query.bind(client) : () => Promise.reject(new TypeError('the Client class has no query()'))) as RawQuery;
  }

  // ---- lifecycle ------------------------------------------------------------------------------

  get state(): EntryState {
    return this.#state;
  }

  /** Set when the connection failed; it is closed instead of reused. */
  get brokenBy(): Error | undefined {
    return this.#brokenBy;
  }

  /**
   * Why it must not be reused came from the application, not its socket: an 'error' emitted on
   * its released session, or `client.end()`. Its socket still works, so it is closed gracefully;
   * after `client.end()` a statement that failed on it is not retried (the application's choice).
   */
  get endedBy(): 'application-error' | 'application-end' | undefined {
    return this.#endedBy;
  }

  /** Moves the state; false when `event` does not apply in the current state (nothing moves). */
  move(event: EntryEvent): boolean {
    const next = nextState(this.#state, event);
    if (next === undefined) return false;
    this.#state = next;
    return true;
  }

  /** The connection failed: the first reason is kept. */
  markBroken(reason: unknown): void {
    this.#brokenBy ??= reason instanceof Error ? reason : new Error(String(reason));
  }

  /** The application ended it: `client.end()`, or an 'error' on its released session (only before anything broke it). */
  markEndedByApplication(how: 'application-error' | 'application-end'): void {
    if (how === 'application-end') {
      this.#brokenBy ??= new Error('the client was ended');
      this.#endedBy ??= how;
    } else if (this.#brokenBy === undefined) {
      this.#endedBy = how;
    }
  }

  /** The application returned it: one use more. */
  returned(now: number): void {
    this.move('giveBack');
    this.uses += 1;
    this.releasedAt = now;
  }

  /** Why it must not be used again (src/pool/entry-state.ts), under one site's `rules`; undefined when it may. */
  retireReason(now: number, generation: number, rules: RetireRules): RetireReason | undefined {
    return retireReason(this, now, generation, rules);
  }

  // ---- the socket -----------------------------------------------------------------------------

  /** pg's socket, which its public API does not expose. */
  get socket(): Socket | undefined {
    return (this.client as unknown as { connection?: { stream?: Socket } }).connection?.stream;
  }

  /** Closes the connection without waiting on a dead socket or throwing (once). */
  async close(): Promise<void> {
    if (this.#closeStarted) return;
    this.#closeStarted = true;
    this.move('close');
    const stream = this.socket;
    if (this.#brokenBy !== undefined && this.#endedBy === undefined) {
      // A broken connection can't say goodbye: a graceful end() would wait on it. (One retired
      // by the application still can: its socket is fine, and pg-pool ends such clients.)
      stream?.destroy();
      return;
    }
    try {
      const ended = this.client.end();
      // A half-open socket may never acknowledge; don't let end() hang the pool.
      const timer = setTimeout(() => stream?.destroy(), 1000);
      timer.unref();
      await ended.finally(() => clearTimeout(timer));
    } catch {
      stream?.destroy();
    }
  }

  /**
   * Gives up on a statement in flight: the connection is closed so it can't deliver a late
   * result. `socketError`: destroys the socket with it (pg then fails what is in flight with it).
   */
  abandon(reason: unknown, socketError?: Error): void {
    this.markBroken(reason);
    this.socket?.destroy(socketError);
  }

  /** One `SELECT 1` within `ms`: false when it fails or takes longer. */
  async ping(ms: number): Promise<boolean> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      return await Promise.race([
        this.client.query('SELECT 1').then(() => true, () => false),
        new Promise<boolean>((resolve) => {
          timer = setTimeout(() => resolve(false), ms);
          timer.unref();
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** With allowExitOnIdle, idle connections' sockets must not keep the process alive. */
  ref(ref: boolean): void {
    const stream = this.socket;
    if (ref) stream?.ref?.();
    else stream?.unref?.();
  }

  // ---- statements -----------------------------------------------------------------------------

  /**
   * The one statement path: the pool's fast path and the promise form of a lent client's
   * `query` both send through here. Counted in flight from `now` (the caller calls `settled`
   * when it ends); named when the connection caches the statement; an invalidated prepared
   * statement (0A000, 26000, 42P05) ran nothing, so it is sent again on this connection (named
   * again, then unnamed). `outsideTransaction`: the pool's own connection (no status to read).
   */
  send(first: unknown, second: unknown, now: number, outsideTransaction: boolean): Promise<unknown> {
    this.began(now);
    const named = this.name(first, second);
    if (named === undefined) return second === undefined ? this.#raw(first) : this.#raw(first, second);
    // Read before sending: right after an error pg's status may still say 'T' (its ReadyForQuery
    // comes later), and only a statement sent outside a transaction may run again.
    const inTransaction = !outsideTransaction && named.name !== undefined && this.inTransaction();
    const pending = typeof first === 'string' || second === undefined ? this.#raw(named) : this.#raw(named, second);
    return named.name !== undefined && pending instanceof Promise ? this.#repairing(named, pending, inTransaction) : pending;
  }

  #repairing(config: QueryConfig, pending: Promise<unknown>, inTransaction: boolean): Promise<unknown> {
    return pending.catch((err: unknown) => {
      const again = this.repair(config, err, inTransaction);
      if (again === undefined) throw err;
      return this.#repairing(again, this.#raw(again), inTransaction);
    });
  }

  /** A statement is sent now (in-flight accounting, for pipelining and the liveness watchdog). */
  began(now: number): void {
    this.inFlight += 1;
    this.busySince ??= now;
  }

  /** A statement sent on it ended. */
  settled(now: number): void {
    this.inFlight -= 1;
    this.busySince = this.inFlight > 0 ? now : undefined;
  }

  /**
   * The config to send instead of `first` (and `second`, when `first` is a text): statements
   * with values run prepared (named) when the connection has a cache; names the application
   * chose may have to go unnamed (behind a transaction pooler). Undefined: send as given.
   */
  name(first: unknown, second: unknown): QueryConfig | undefined {
    const statements = this.#statements;
    if (typeof first === 'string') {
      return Array.isArray(second) ? statements.config(this.prepared, first, second) : undefined;
    }
    if (typeof first !== 'object' || first === null) return undefined;
    if (typeof (first as QueryConfig).name === 'string') return statements.applicationNamed(first as QueryConfig);
    if (this.prepared === undefined || !statements.enabled || typeof second === 'object') return undefined;
    const cfg = statements.configFrom(this.prepared, first as QueryConfig);
    return cfg === first ? undefined : cfg;
  }

  /** After a named statement failed: the config to run once more (nothing ran), or undefined. */
  repair(config: QueryConfig, err: unknown, inTransaction: boolean): QueryConfig | undefined {
    return this.#statements.repair(this.prepared, config, err, inTransaction);
  }

  /** pg's transaction status says a transaction is open. */
  inTransaction(): boolean {
    const status = (this.client as unknown as { getTransactionStatus?: () => string | null }).getTransactionStatus?.();
    return status !== 'I' && status !== null && status !== undefined;
  }

  /** Naming and repair for a marked write (src/transactions/commit-tracking.ts); undefined when it has no cache. */
  marking(): MarkedPreparing | undefined {
    const cache = this.prepared;
    const statements = this.#statements;
    if (cache === undefined || !statements.enabled) return undefined;
    return this.#marking ??= {
      name: (config) => {
        const named = statements.configFrom(cache, config);
        return named === config ? undefined : named;
      },
      repair: (config, err) => statements.repair(cache, config, err, false),
    };
  }
}

const entries = new WeakMap<Client, PoolEntry>();

export function entryOf(client: Client): PoolEntry | undefined {
  return entries.get(client);
}

/** Made by the connection factory, once per pg Client. */
export function attachEntry(entry: PoolEntry): void {
  entries.set(entry.client, entry);
}
