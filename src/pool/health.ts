import type { Client } from 'pg';
import type { ConnectionRetiredEvent } from '../observe/types.ts';
import { metaOf, pingWithin, type ConnectionMeta, type Resource } from './connection-factory.ts';
import { CreateFailure } from './connection-factory.ts';
import type { PoolShared } from './shared.ts';

const VALID = Promise.resolve(true);
const INVALID = Promise.resolve(false);

/**
 * Whether a connection may be handed out again (PoolEntry's state, in HikariCP's terms): the
 * rule generic-pool applies on borrow and the idle stack applies on every take.
 */
export class ConnectionHealth {
  readonly #s: PoolShared;

  constructor(shared: PoolShared) {
    this.#s = shared;
  }

  /** Hot path: a healthy connection used recently needs no more than these comparisons. */
  fresh(meta: ConnectionMeta, now: number): boolean {
    const { o, topology } = this.#s;
    return meta.broken === undefined && meta.generation === topology.generation && meta.expiresAt > now
      && meta.uses < o.maxUses && now - meta.releasedAt <= o.validateAfterIdleMs
      && (meta.role === undefined || topology.fits(meta.role, meta.purpose) !== 'no');
  }

  /** generic-pool's validate-on-borrow. */
  validate(resource: Resource): Promise<boolean> {
    if (resource instanceof CreateFailure) return VALID; // delivered so the caller sees the error
    const meta = metaOf(resource);
    if (meta === undefined) return INVALID;
    const now = this.#s.o.clock.now();
    if (this.fresh(meta, now)) return VALID;
    return this.#validateSlow(resource, meta, now);
  }

  async #validateSlow(resource: Client, meta: ConnectionMeta, now: number): Promise<boolean> {
    const { o, topology } = this.#s;
    const retire = (reason: ConnectionRetiredEvent['reason']): boolean => {
      this.#s.publish('connectionRetired', { host: meta.server ?? meta.target, reason });
      return false;
    };
    if (meta.broken !== undefined) return retire('broken');
    if (meta.generation < topology.generation) return retire('failover');
    if (meta.role !== undefined && topology.fits(meta.role, meta.purpose) === 'no') return retire('wrong-role');
    if (meta.expiresAt <= now) return retire('lifetime');
    if (meta.uses >= o.maxUses) return retire('max-uses');
    if (now - meta.releasedAt > o.validateAfterIdleMs) {
      // An idle connection may have died silently (node-postgres #2112): one round trip, bounded.
      const ok = await pingWithin(resource, Math.min(1000, o.connectTimeoutMs));
      if (!ok) {
        meta.broken ??= new Error('liveness check failed');
        return retire('stale');
      }
    }
    return true;
  }
}
