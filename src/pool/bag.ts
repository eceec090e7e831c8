import genericPool from 'generic-pool';
import type { Client } from 'pg';
import { describeError } from '../errors.ts';
import type { Deadline } from '../policy/deadline.ts';
import { WaitQueue } from '../policy/waits.ts';
import type { Purpose } from '../topology/topology.ts';
import { acquireTimeoutError, deadlineError, poolEndedError, queueFullError } from './call-errors.ts';
import { ConnectionFactory, CreateFailure, closeQuietly, metaOf, refSocket, type ConnectionHooks, type Resource } from './connection.ts';
import type { ConnectionHealth } from './health.ts';
import { ignore, type PoolShared } from './shared.ts';

/** How long a released connection waits on the idle stack before going back to generic-pool. */
export const IDLE_LINGER_MS = 1000;

/**
 * The connections for one purpose (the default route, or reads routed to standbys), and their
 * hand-off to callers.
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
  /** Returns a connection taken from generic-pool that no caller took (with the full release rule). */
  readonly #returnUnused: (client: Client) => void;

  constructor(shared: PoolShared, health: ConnectionHealth, purpose: Purpose, hooks: ConnectionHooks, callbacks: { onRemoved: () => void; returnUnused: (client: Client) => void }) {
    this.#s = shared;
    this.#returnUnused = callbacks.returnUnused;
    const onRemoved = callbacks.onRemoved;
    this.#health = health;
    this.purpose = purpose;
    const o = shared.o;
    const factory = new ConnectionFactory(o, shared.topology, hooks, purpose, shared.endSignal);
    const idle = o.idleTimeoutMillis;
    this.#gp = genericPool.createPool<Resource>({
      create: () => factory.create(),
      destroy: async (resource) => {
        if (resource instanceof CreateFailure) return;
        shared.clients.delete(resource);
        await closeQuietly(resource);
        shared.emitSafe('remove', resource);
        onRemoved();
      },
      validate: (resource) => health.validate(resource),
    }, {
      max: o.max,
      min: 0, // warming is ours: generic-pool would retry failed creates in a tight loop
      testOnBorrow: true,
      fifo: false, // reuse the most recent connection; the others age out
      maxWaitingClients: o.maxWaitingClients,
      // soft: evicts idle connections above `min`; our own warm-up keeps `min` (idle 0 = never).
      softIdleTimeoutMillis: idle > 0 ? idle : -1,
      idleTimeoutMillis: Number.MAX_SAFE_INTEGER,
      evictionRunIntervalMillis: idle > 0 ? Math.max(100, Math.min(idle / 2, 5000)) : 0,
      numTestsPerEvictionRun: o.max,
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
    return this.#gp.available + this.#idle.length;
  }

  /** Callers waiting, not counting those a connection is being opened for (pg.Pool's count). */
  get waiting(): number {
    return Math.max(0, this.#queue.size - this.#pumping);
  }

  get queued(): number {
    return this.#queue.size;
  }

  /** Is `client` one of this bag's, lent out (not idle, not already returned)? */
  isLent(client: Client): boolean {
    return this.#gp.isBorrowedResource(client) && metaOf(client)?.idle === false;
  }

  /** The most recently released connection, if fresh; others go back to generic-pool to be validated. */
  takeIdle(now = this.#s.o.clock.now()): Client | undefined {
    const idle = this.#idle;
    while (idle.length > 0) {
      const client = idle.pop()!;
      const meta = metaOf(client)!;
      meta.idle = false;
      if (this.#health.fresh(meta, now)) {
        if (this.#s.o.allowExitOnIdle) refSocket(client, true);
        return client;
      }
      // Stale, expired or retired: generic-pool's validation on borrow pings it or closes it.
      this.#gp.release(client).catch(ignore);
    }
    return undefined;
  }

  /** One attempt to get a connection: the idle stack's, else a place in line. */
  async acquire(deadline: Deadline): Promise<Client> {
    if (this.#s.ending) throw poolEndedError();
    const client = this.takeIdle();
    if (client !== undefined) return client;
    return this.delivered(await this.obtain(deadline));
  }

  /**
   * Waits in line for a connection: one released by another caller, or one generic-pool
   * hands out (validated) or opens for us while it has room. Bounded by the acquire timeout,
   * the call's deadline, its signal and the pool's end.
   */
  obtain(deadline: Deadline): Promise<Resource> {
    const o = this.#s.o;
    if (this.#queue.size >= o.maxWaitingClients) return Promise.reject(queueFullError(o.maxWaitingClients));
    const remaining = deadline.remainingMs();
    const limitedByAcquireTimeout = o.acquireTimeoutMs < remaining;
    const waiting = this.#queue.wait(o.clock.now() + Math.min(o.acquireTimeoutMs, remaining), () => limitedByAcquireTimeout
      ? acquireTimeoutError(o.acquireTimeoutMs, this.#s.lastConnectError)
      : deadlineError(deadline, this.#s.lastConnectError), deadline.signal);
    this.#pump();
    return waiting;
  }

  /** A resource from the line: a connection to use, or a failed creation to report. */
  delivered(resource: Resource): Client {
    if (resource instanceof CreateFailure) {
      this.#destroy(resource);
      throw resource.error;
    }
    if (this.#s.o.allowExitOnIdle) refSocket(resource, true);
    return resource;
  }

  /** Asks generic-pool for connections while callers wait and it can give them without waiting itself. */
  #pump(): void {
    const gp = this.#gp;
    const queue = this.#queue;
    while (!this.#s.ending && queue.size > this.#pumping && (gp.available > 0 || gp.size < gp.max)) {
      this.#pumping += 1;
      gp.acquire().then(
        (resource) => {
          this.#pumping -= 1;
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
    const meta = metaOf(client);
    if (meta === undefined || meta.idle || !this.#gp.isBorrowedResource(client)) return false;
    if (destroy) {
      this.#destroy(client);
      return true;
    }
    // The first caller in line takes it as it is; nobody waiting: onto the idle stack.
    if (this.#queue.size > 0 && this.#queue.deliver(client)) return true;
    if (this.#s.o.allowExitOnIdle) refSocket(client, false);
    meta.idle = true;
    this.#idle.push(client);
    return true;
  }

  /**
   * Connections idle on the stack for a while go back to generic-pool (its idle timeout applies
   * there), except the newest `keep`: generic-pool's evictor would close those too (its own
   * `min` is 0, warming is ours) and the warm-up would open them again, every idle period.
   */
  returnLingering(now: number, keep: number): void {
    const idle = this.#idle;
    const limit = idle.length - keep;
    let n = 0;
    while (n < limit && now - metaOf(idle[n]!)!.releasedAt > IDLE_LINGER_MS) n += 1;
    if (n === 0) return;
    for (const client of idle.splice(0, n)) {
      metaOf(client)!.idle = false;
      this.#gp.release(client).catch(ignore);
    }
  }

  /**
   * Closes idle connections that are broken or from before the current generation (validation
   * would catch them at the next borrow; closing them now gets counts and sockets right at
   * once), and every connection idle inside generic-pool.
   */
  evictStale(generation: number, onRetired: (client: Client) => void): Promise<void> {
    const keep: Client[] = [];
    for (const client of this.#idle.splice(0)) {
      const meta = metaOf(client)!;
      if (meta.broken === undefined && meta.generation === generation) {
        keep.push(client);
        continue;
      }
      meta.idle = false;
      if (meta.generation < generation) onRetired(client);
      this.#destroy(client);
    }
    this.#idle.push(...keep);
    // generic-pool can only drop its idle resources all at once.
    return this.#gp.clear().catch(ignore);
  }

  /** Opens connections until `min` are open (warm-up); false when every attempt failed. */
  async fill(min: number): Promise<boolean> {
    const needed = min - this.#gp.size;
    if (needed <= 0) return true;
    const got = await Promise.all(Array.from({ length: needed }, () => this.#gp.acquire().catch(() => undefined)));
    for (const r of got) if (r !== undefined) this.giveBack(r);
    return !got.every((r) => r instanceof CreateFailure || r === undefined);
  }

  /** Shutdown: waiters are refused, idle connections closed; resolves when every lent one came back. */
  async close(): Promise<void> {
    this.#queue.cancelAll(() => poolEndedError());
    // generic-pool's drain waits for everything borrowed, so the idle stack goes back first.
    for (const client of this.#idle.splice(0)) {
      metaOf(client)!.idle = false;
      this.#gp.release(client).catch(ignore);
    }
    await this.#gp.drain();
    await this.#gp.clear();
  }
}
