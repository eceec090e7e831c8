import type { Client } from 'pg';
import type { Purpose } from '../topology/topology.ts';
import { Bag } from './bag.ts';
import type { ConnectionHooks } from './connection-factory.ts';
import type { RetireRules } from './entry-state.ts';
import type { ConnectionHealth } from './health.ts';
import { MinConnections } from './min-connections.ts';
import { entryOf } from './pool-entry.ts';
import type { PoolShared } from './shared.ts';

/**
 * One bag per purpose (the default route made at construction, reads to standbys on first
 * use), and the return of a lent connection to the bag it came from.
 */
export class Bags {
  /** The default purpose's bag (the fast path needs no lookup). */
  readonly default: Bag;
  readonly #s: PoolShared;
  readonly #health: ConnectionHealth;
  readonly #hooks: ConnectionHooks;
  readonly #onRemoved: () => void;
  readonly #all = new Map<Purpose, Bag>();
  /** Keeps `min` of the default bag open. */
  readonly #min: MinConnections;
  /** At release: broken, failover, lifetime and uses (no role check). */
  readonly #rules: RetireRules;

  constructor(shared: PoolShared, health: ConnectionHealth, hooks: ConnectionHooks) {
    this.#s = shared;
    this.#health = health;
    this.#hooks = hooks;
    this.#onRemoved = () => {
      if (!shared.ending) queueMicrotask(() => void this.#min.ensure());
    };
    this.#rules = { failed: true, roles: undefined, lifetime: true, maxUses: shared.o.maxUses };
    this.default = this.for('default');
    this.#min = new MinConnections(shared, this.default);
    // A failover generation began: idle connections of older ones are closed now (validation
    // would catch them at the next take; closing them at once gets counts and sockets right),
    // and `min` is opened again on the new primary.
    shared.topology.onGeneration((generation) => {
      this.evictStale(generation);
      void this.#min.ensure();
    });
  }

  /** Opens `min` connections (paced), from construction and after connections left. */
  warm(): Promise<void> {
    return this.#min.ensure();
  }

  /** Closes idle connections that are broken or of an older generation than `generation`. */
  evictStale(generation = this.#s.topology.generation): void {
    const retired = (client: Client): void => {
      const meta = entryOf(client)!;
      this.#s.publish('connectionRetired', { host: meta.server ?? meta.target, reason: 'failover' });
    };
    for (const bag of this.#all.values()) bag.evictStale(generation, retired);
  }

  for(purpose: Purpose): Bag {
    let bag = this.#all.get(purpose);
    if (bag === undefined) {
      bag = new Bag(this.#s, this.#health, purpose, this.#hooks, {
        onRemoved: this.#onRemoved,
        returnUnused: (client) => this.release(client, undefined),
        onIdleBroken: () => this.evictStale(),
      });
      this.#all.set(purpose, bag);
    }
    return bag;
  }

  all(): IterableIterator<Bag> {
    return this.#all.values();
  }

  sum(count: (bag: Bag) => number): number {
    let n = 0;
    for (const bag of this.#all.values()) n += count(bag);
    return n;
  }

  /** Lends a connection taken from a bag to application code (`pool.connect()`, a transaction). */
  lend(client: Client): void {
    entryOf(client)?.move('lend');
  }

  /**
   * An 'error' emitted on a released session (src/pool/session.ts): the application ended the
   * connection, which is closed gracefully. False when it is lent or already broken (nothing to do).
   */
  endedByApplication(client: Client): boolean {
    const entry = entryOf(client);
    if (entry === undefined || entry.state === 'lent' || entry.brokenBy !== undefined) return false;
    entry.markEndedByApplication('application-error');
    return true;
  }

  /**
   * Returns a lent connection to its bag, or closes it if it must not be reused: released with
   * an error, broken, ended by the application, from before a failover, past its lifetime or
   * uses, or inside a transaction. A second release of the same lending is ignored.
   */
  release(client: Client, err: unknown, now = this.#s.o.clock.now()): void {
    const entry = entryOf(client);
    const bag = entry === undefined ? undefined : this.#all.get(entry.purpose);
    if (entry === undefined || bag === undefined || !bag.isLent(client)) return;
    const { o, topology } = this.#s;
    entry.returned(now);
    const status = (client as unknown as { getTransactionStatus?: () => string | null }).getTransactionStatus?.();
    const destroy = (err !== undefined && err !== false && err !== null)
      || entry.retireReason(now, topology.generation, this.#rules) !== undefined
      // Released inside a transaction: reusing it would leak the transaction to the next caller.
      || status === 'T' || status === 'E';
    if (destroy && entry.generation < topology.generation) this.#s.publish('connectionRetired', { host: entry.server ?? entry.target, reason: 'failover' });
    // pg-pool's own words for it, which code watching its `log` matches.
    if (entry.uses >= o.maxUses) o.logger.debug({ uses: entry.uses }, 'remove expended client');
    bag.release(client, destroy);
  }
}
