import genericPool from 'generic-pool';
import type { Client } from 'pg';
import { describeError } from '../errors.ts';
import type { Deadline } from '../policy/deadline.ts';
import { WaitQueue } from '../policy/waits.ts';
import type { Purpose } from '../topology/topology.ts';
import { acquireTimeoutError, deadlineError, poolEndedError, queueFullError } from '../errors.ts';
import { ConnectionFactory, CreateFailure, type ConnectionHooks, type Resource } from './connection-factory.ts';
import type { RetireRules } from './entry-state.ts';
import type { ConnectionHealth } from './health.ts';
import { entryOf } from './pool-entry.ts';
import { ignore, type PoolShared } from './shared.ts';

/** What a bag tells the bags it belongs to. */
export interface BagCallbacks {
  /** A connection left (closed): `min` may need opening again. */
  onRemoved(): void;
  /** Returns a connection taken from generic-pool that no caller took (with the full release rule). */
  returnUnused(client: Client): void;
  /** A connection broke while idle. */
  onIdleBroken(): void;
}

/** The idle timer's part of the retire rule: a connection's age only. */
const AGE_ONLY: RetireRules = { failed: false, roles: undefined, lifetime: true, maxUses: Infinity };
/** A failover's eviction: broken or from an older generation (age and uses wait for the next take). */
const FAILED_ONLY: RetireRules = { failed: true, roles: undefined, lifetime: false, maxUses: Infinity };

/**
 * The connections for one purpose (the default route, or reads routed to standbys), and their
 * hand-off to callers.
 *
 * generic-pool opens and closes connections and enforces `max`; everything else is here, as
 * in HikariCP's ConcurrentBag: a stack of released connections (still borrowed from
 * generic-pool, so its list of available ones stays empty) and a queue of waiting callers. A
 * release hands the connection straight to the first waiter, or onto the stack for the next
 * caller, with no promise in between: going through generic-pool's promises on every query
 * cost more than pg-pool's whole hand-off. Keeping idle connections out of generic-pool also
 * keeps them away from its `clear()`, which ends idle connections but leaves them in its
 * available list, where a borrow could still find one. One timer per bag closes idle
 * connections past `idleTimeoutMillis` (above `min`) or past their lifetime, on time.
 */
export class Bag {
  readonly purpose: Purpose;
  readonly #s: PoolShared;
  readonly #health: ConnectionHealth;
  readonly #gp: genericPool.Pool<Resource>;
  /** Released connections, most recent last. */
  readonly #idle: Client[] = [];
  /** Callers waiting for a connection of this purpose. */
  readonly #queue: WaitQueue<Resource>;
  /** generic-pool acquires in flight on behalf of waiting callers. */
  #pumping = 0;
  /** The idle timer and the clock time it is due. */
  #timer: ReturnType<typeof setTimeout> | undefined;
  #timerDue = Infinity;
  /** How many connections of this bag the idle timeout keeps open (`min` for the default bag). */
  readonly #keep: number;
  /** Returns a connection taken from generic-pool that no caller took (with the full release rule). */
  readonly #returnUnused: (client: Client) => void;

  constructor(shared: PoolShared, health: ConnectionHealth, purpose: Purpose, hooks: ConnectionHooks, callbacks: BagCallbacks) {
    this.#s = shared;
    this.#returnUnused = callbacks.returnUnused;
    this.#keep = purpose === 'default' ? shared.o.min : 0;
    const onRemoved = callbacks.onRemoved;
    this.#health = health;
    this.purpose = purpose;
    const o = shared.o;
    const factory = new ConnectionFactory(o, shared.topology, {
      ...hooks,
      onBroken: (client, meta, err) => {
        hooks.onBroken(client, meta, err);
        // Broken while idle: closed now rather than at the next take, so counts and sockets are right.
        if (meta.state !== 'lent') callbacks.onIdleBroken();
      },
      // Still wanted while a caller waits beyond the connections being opened, or below `min`.
      wanted: (_purpose, connecting) => this.#queue.size > connecting || this.#gp.size <= this.#keep,
    }, purpose, shared.endSignal);
    this.#gp = genericPool.createPool<Resource>({
      create: () => factory.create(),
      destroy: async (resource) => {
        if (resource instanceof CreateFailure) return;
        const entry = entryOf(resource);
        if (entry !== undefined && !entry.move('remove')) return;
        shared.clients.delete(resource);
        await entry?.close();
        shared.publish('remove', resource);
        onRemoved();
      },
      validate: (resource) => health.validate(resource),
    }, {
      max: o.max,
      min: 0, // warming is ours: generic-pool would retry failed creates in a tight loop
      testOnBorrow: true,
      fifo: false, // reuse the most recent connection; the others age out
      maxWaitingClients: o.maxWaitingClients,
      // Idle connections live on our stack, never in generic-pool's list: its evictor has nothing to do.
      evictionRunIntervalMillis: 0,
    });
    this.#gp.on('factoryDestroyError', (err: unknown) => o.logger.debug({ error: describeError(err) }, 'pg-resilient: closing a connection failed'));
    this.#queue = new WaitQueue<Resource>(o.clock);
  }

  /** All connections, idle, lent or being opened. */
  get size(): number {
    return this.#gp.size;
  }

  /** Connections open and not lent. */
  get available(): number {
    return this.#idle.length;
  }

  /** Callers waiting, not counting those a connection is being opened for (pg.Pool's count). */
  get waiting(): number {
    return Math.max(0, this.#queue.size - this.#pumping);
  }

  get queued(): number {
    return this.#queue.size;
  }

  /**
   * Every connection the bag may hold is open and none is being opened for a waiting caller: a
   * caller now waits for one to come back (while one is being opened, a waiter gets it instead).
   */
  get saturated(): boolean {
    return this.#gp.size >= this.#gp.max && this.#pumping === 0;
  }

  /** Is `client` one of this bag's, lent out (not idle, not already returned)? */
  isLent(client: Client): boolean {
    const entry = entryOf(client);
    return this.#gp.isBorrowedResource(client) && entry !== undefined && entry.state !== 'idle';
  }

  /** The most recently released connection, if fresh; the others are checked in the background. */
  takeIdle(now = this.#s.o.clock.now()): Client | undefined {
    const idle = this.#idle;
    while (idle.length > 0) {
      const client = idle.pop()!;
      const entry = entryOf(client)!;
      entry.move('take');
      if (this.#health.fresh(entry, now)) {
        if (this.#s.o.allowExitOnIdle) entry.ref(true);
        return client;
      }
      this.#check(client);
    }
    return undefined;
  }

  /**
   * A connection that is not fresh: retired (broken, older generation, expired, …) it is
   * closed; idle for a while it is pinged first, and then handed to the next caller.
   */
  #check(client: Client): void {
    void this.#health.validate(client).then((ok) => {
      if (!ok || this.#s.endSignal.aborted) {
        this.#destroy(client);
        return;
      }
      entryOf(client)!.releasedAt = this.#s.o.clock.now();
      this.release(client, false);
    });
  }

  /** One attempt to get a connection: the idle stack's, else a place in line. */
  async acquire(deadline: Deadline): Promise<Client> {
    // Calls accepted before end() still get connections until the pool closes.
    if (this.#s.endSignal.aborted) throw poolEndedError();
    const client = this.takeIdle();
    if (client !== undefined) return client;
    return this.delivered(await this.obtain(deadline));
  }

  /**
   * Waits in line for a connection: one released by another caller, or one generic-pool
   * hands out (validated) or opens for us while it has room. Bounded by the acquire timeout,
   * the call's deadline, its signal and the pool's end. A `shared` caller also takes a connection
   * still busy with pipelined statements (`offerShared`).
   */
  obtain(deadline: Deadline, shared = false): Promise<Resource> {
    const o = this.#s.o;
    if (this.#queue.size >= o.maxWaitingClients) return Promise.reject(queueFullError(o.maxWaitingClients));
    const remaining = deadline.remainingMs();
    const limitedByAcquireTimeout = o.acquireTimeoutMs < remaining;
    const since = o.clock.now();
    const waiting = this.#queue.wait(since + Math.min(o.acquireTimeoutMs, remaining), () => {
      if (!limitedByAcquireTimeout) return deadlineError(deadline, this.#s.lastConnectError);
      return o.failFastWhenSaturated && this.#saturatedSince(since)
        ? acquireTimeoutError(`every connection stayed busy for ${o.acquireTimeoutMs} ms (connectionTimeoutMillis/acquireTimeoutMs); the server is healthy, so this is load, not retried`, { saturated: true })
        : acquireTimeoutError(`no connection became available within ${o.acquireTimeoutMs} ms`, { cause: this.#s.lastConnectError });
    }, deadline.signal, shared);
    this.#pump();
    return waiting;
  }

  /** Every connection was busy since `since`, with no connect failing and no failover or open breaker. */
  #saturatedSince(since: number): boolean {
    const s = this.#s;
    return s.lastConnectErrorAt < since && !s.topology.failingOver && s.breaker.state === 'closed' && this.#gp.size >= s.o.max;
  }

  /**
   * Offers a connection that still has statements in flight to the first caller in line, if
   * that caller may pipeline behind them; false when the first caller wants a connection of
   * its own (it gets this one once it is idle) or nobody waits.
   */
  offerShared(client: Client): boolean {
    return this.#queue.deliverShared(client);
  }

  /** A resource from the line: a connection to use, or a failed creation to report. */
  delivered(resource: Resource): Client {
    if (resource instanceof CreateFailure) {
      this.#destroy(resource);
      throw resource.error;
    }
    if (this.#s.o.allowExitOnIdle) entryOf(resource)?.ref(true);
    return resource;
  }

  /** Asks generic-pool for connections while callers wait and it can give them without waiting itself. */
  #pump(): void {
    const gp = this.#gp;
    const queue = this.#queue;
    while (!this.#s.endSignal.aborted && queue.size > this.#pumping && (gp.available > 0 || gp.size < gp.max)) {
      this.#pumping += 1;
      gp.acquire().then(
        (resource) => {
          this.#pumping -= 1;
          if (resource instanceof CreateFailure && resource.unneeded) {
            // Skipped because the callers in line were covered by connects in flight (or a
            // released connection): nobody's failure. Handed to a waiter it would fail a call
            // whose connection is on its way (issue 28: lost during end()). Not re-pumped
            // either: those connects serve the line, and the acquire timeout bounds every wait.
            this.#gp.destroy(resource).catch(ignore);
            return;
          }
          if (!queue.deliver(resource)) this.giveBack(resource);
        },
        (err: unknown) => {
          // Only when generic-pool is draining (the pool is ending): the waiter hears why.
          this.#pumping -= 1;
          queue.deliver(new CreateFailure(this.#s.endSignal.aborted ? poolEndedError() : err, undefined));
        },
      );
    }
  }

  /** A resource nobody took: back to the idle stack (or destroyed if it is a failure). */
  giveBack(resource: Resource): void {
    if (resource instanceof CreateFailure) this.#destroy(resource);
    else this.#returnUnused(resource);
  }

  /** Closes a connection (or forgets a failed creation) and lets a waiting caller use the room. */
  #destroy(resource: Resource): void {
    // A CreateFailure made for a refused acquire was never generic-pool's: it says so, ignored.
    this.#gp.destroy(resource).catch(ignore);
    if (this.#queue.size > 0) this.#pump();
  }

  /**
   * Takes back a lent connection: to the first caller in line, onto the idle stack, or closed
   * when `destroy` says it must not be reused. Returns false when it was not lent from here.
   */
  release(client: Client, destroy: boolean): boolean {
    const entry = entryOf(client);
    if (entry === undefined || entry.state === 'idle' || !this.#gp.isBorrowedResource(client)) return false;
    if (destroy) {
      this.#destroy(client);
      return true;
    }
    // The first caller in line takes it as it is; nobody waiting: onto the idle stack (while
    // the pool ends, a connection nobody waits for is closed).
    if (this.#queue.size > 0 && this.#queue.deliver(client)) return true;
    if (this.#s.ending) {
      this.#destroy(client);
      return true;
    }
    if (this.#s.o.allowExitOnIdle) entry.ref(false);
    entry.move('park');
    this.#idle.push(client);
    this.#armIdleTimer(Math.min(entry.releasedAt + this.#idleTimeout(), entry.expiresAt));
    return true;
  }

  #idleTimeout(): number {
    const t = this.#s.o.idleTimeoutMillis;
    return t > 0 ? t : Infinity;
  }

  /** One timer for the bag, due at the earliest idle expiry (armed only when that moves earlier). */
  #armIdleTimer(due: number): void {
    if (due === Infinity || due >= this.#timerDue) return;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timerDue = due;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#timerDue = Infinity;
      this.#expireIdle(this.#s.o.clock.now());
    }, Math.max(0, due - this.#s.o.clock.now()));
    this.#timer.unref();
  }

  /**
   * Closes idle connections past their lifetime (whatever `min` says, as pg.Pool does; the
   * warm-up opens new ones) and those idle past `idleTimeoutMillis` while the bag holds more
   * than `min`; the oldest go first. Then re-arms for the next one due.
   */
  #expireIdle(now: number): void {
    const idle = this.#idle;
    const timeout = this.#idleTimeout();
    let next = Infinity;
    for (let i = 0; i < idle.length;) {
      const client = idle[i]!;
      const entry = entryOf(client)!;
      const expired = entry.retireReason(now, entry.generation, AGE_ONLY) !== undefined;
      const idleTooLong = now - entry.releasedAt >= timeout && this.#gp.size > this.#keep;
      if (expired || idleTooLong) {
        idle.splice(i, 1);
        entry.move('take');
        this.#s.publish('connectionRetired', { host: entry.server ?? entry.target, reason: expired ? 'lifetime' : 'idle' });
        this.#destroy(client);
        continue;
      }
      next = Math.min(next, entry.expiresAt, this.#gp.size > this.#keep ? entry.releasedAt + timeout : Infinity);
      i += 1;
    }
    this.#armIdleTimer(next);
  }

  /**
   * Closes idle connections that are broken or from before the current generation (validation
   * would catch them at the next take; closing them now gets counts and sockets right at once).
   */
  evictStale(generation: number, onRetired: (client: Client) => void): void {
    const keep: Client[] = [];
    for (const client of this.#idle.splice(0)) {
      const entry = entryOf(client)!;
      if (entry.retireReason(0, generation, FAILED_ONLY) === undefined) {
        keep.push(client);
        continue;
      }
      entry.move('take');
      if (entry.generation < generation) onRetired(client);
      this.#destroy(client);
    }
    this.#idle.push(...keep);
  }

  /** Opens connections until `min` are open (warm-up); false when every attempt failed. */
  async fill(min: number): Promise<boolean> {
    const needed = min - this.#gp.size;
    if (needed <= 0) return true;
    const got = await Promise.all(Array.from({ length: needed }, () => this.#gp.acquire().catch(() => undefined)));
    for (const r of got) if (r !== undefined) this.giveBack(r);
    return !got.every((r) => r instanceof CreateFailure || r === undefined);
  }

  /** Opens one connection if fewer than `min` are open (paced warm-up); false when it failed. */
  async fillOne(min: number): Promise<boolean> {
    if (this.#gp.size >= min) return true;
    const r = await this.#gp.acquire().catch(() => undefined);
    if (r !== undefined) this.giveBack(r);
    return r !== undefined && !(r instanceof CreateFailure);
  }

  /** Shutdown: waiters are refused, idle connections closed; resolves when every lent one came back. */
  async close(): Promise<void> {
    this.#queue.cancelAll(() => poolEndedError());
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    for (const client of this.#idle.splice(0)) {
      entryOf(client)!.move('take');
      this.#destroy(client);
    }
    // generic-pool's drain waits for everything borrowed (lent connections) to come back.
    await this.#gp.drain();
    await this.#gp.clear();
  }
}
