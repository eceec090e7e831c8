import type { HostTarget } from '../topology/hosts.ts';
import { probeServer, unresponsiveError } from '../topology/liveness.ts';
import { entryOf } from './pool-entry.ts';
import type { Failures } from './failures.ts';
import type { PoolShared } from './shared.ts';

/**
 * The liveness watchdog for statements stuck on a server that stopped answering (one unref'ed
 * timer, from the first connection on). Keeping `min` open is the bags' (min-connections.ts).
 */
export class Housekeeping {
  readonly #s: PoolShared;
  readonly #failures: Failures;
  readonly #probing = new Set<string>();
  #timer: ReturnType<typeof setInterval> | undefined;

  constructor(shared: PoolShared, failures: Failures) {
    this.#s = shared;
    this.#failures = failures;
  }

  /** From the first connection on (idle expiry has its own timer per bag). */
  start(): void {
    const o = this.#s.o;
    if (this.#timer !== undefined || this.#s.ending || o.livenessCheckAfterMs === 0) return;
    this.#timer = setInterval(() => this.#checkLiveness(o.clock.now()), Math.min(500, o.livenessCheckAfterMs));
    this.#timer.unref();
  }

  stop(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
  }

  /**
   * A statement busy for `livenessCheckAfterMs` may be a slow query or a server that stopped
   * answering (a partition sends no RST): a TCP connect to the same server tells them apart.
   */
  #checkLiveness(now: number): void {
    const s = this.#s;
    const suspects = new Map<string, HostTarget>();
    for (const client of s.clients) {
      const entry = entryOf(client);
      if (entry?.busySince !== undefined && now - entry.busySince >= s.o.livenessCheckAfterMs) {
        suspects.set(`${entry.target.host}:${entry.target.port}`, entry.target);
      }
    }
    for (const [key, target] of suspects) {
      if (this.#probing.has(key)) continue;
      this.#probing.add(key);
      void probeServer(target, s.o.livenessTimeoutMs).then((alive) => {
        this.#probing.delete(key);
        if (alive || s.ending) return;
        const err = unresponsiveError(target, s.o.livenessCheckAfterMs + s.o.livenessTimeoutMs);
        s.o.logger.warn({ host: key }, err.message);
        s.topology.markFailed(target);
        // Every connection to that server is presumed dead; closing them fails their statements
        // now (with a transient, classified error) instead of after minutes of TCP retransmits.
        for (const client of s.clients) {
          const entry = entryOf(client);
          if (entry === undefined || entry.target.host !== target.host || entry.target.port !== target.port) continue;
          entry.abandon(err, err);
        }
        this.#failures.signalFailover('connection-lost', undefined);
      });
    }
  }
}
