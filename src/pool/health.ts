import type { ConnectionRetiredEvent } from '../observe/types.ts';
import { CreateFailure, type Resource } from './connection-factory.ts';
import type { RetireRules } from './entry-state.ts';
import { entryOf, type PoolEntry } from './pool-entry.ts';
import type { PoolShared } from './shared.ts';

const VALID = Promise.resolve(true);
const INVALID = Promise.resolve(false);

/**
 * Whether a connection may be handed out again: the rule generic-pool applies on borrow and
 * the idle stack applies on every take (the entry's retire rule, then the idle ping).
 */
export class ConnectionHealth {
  readonly #s: PoolShared;
  /** Every part of the retire rule: broken, failover, role, lifetime, uses. */
  readonly #rules: RetireRules;

  constructor(shared: PoolShared) {
    this.#s = shared;
    this.#rules = { failed: true, roles: shared.topology, lifetime: true, maxUses: shared.o.maxUses };
  }

  /** Hot path: a healthy connection used recently needs no more than these comparisons. */
  fresh(entry: PoolEntry, now: number): boolean {
    return entry.retireReason(now, this.#s.topology.generation, this.#rules) === undefined
      && now - entry.releasedAt <= this.#s.o.validateAfterIdleMs;
  }

  /** generic-pool's validate-on-borrow. */
  validate(resource: Resource): Promise<boolean> {
    if (resource instanceof CreateFailure) return VALID; // delivered so the caller sees the error
    const entry = entryOf(resource);
    if (entry === undefined) return INVALID;
    const now = this.#s.o.clock.now();
    if (this.fresh(entry, now)) return VALID;
    return this.#validateSlow(entry, now);
  }

  async #validateSlow(entry: PoolEntry, now: number): Promise<boolean> {
    const o = this.#s.o;
    const retire = (reason: ConnectionRetiredEvent['reason']): boolean => {
      this.#s.publish('connectionRetired', { host: entry.server ?? entry.target, reason });
      return false;
    };
    const reason = entry.retireReason(now, this.#s.topology.generation, this.#rules);
    if (reason !== undefined) return retire(reason);
    if (now - entry.releasedAt > o.validateAfterIdleMs) {
      // An idle connection may have died silently (node-postgres #2112): one round trip, bounded.
      const ok = await entry.ping(Math.min(1000, o.connectTimeoutMs));
      if (!ok) {
        entry.markBroken(new Error('liveness check failed'));
        return retire('stale');
      }
    }
    return true;
  }
}
