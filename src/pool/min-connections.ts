import { paceWarmUp } from '../policy/warm-up.ts';
import type { Bag } from './bag.ts';
import type { PoolShared } from './shared.ts';

/**
 * Keeps `min` connections of the default bag open. Paced (paceWarmUp): one at a time, each
 * after a jittered delay, so that after a failover a fleet of pools does not open `min` each
 * at once on the new primary; after a failed open it pauses `hostRecheckMs` and goes on.
 * Owned by the bags: they ask it after a connection left and after a new generation began.
 */
export class MinConnections {
  readonly #s: PoolShared;
  readonly #bag: Bag;
  #warming = false;

  constructor(shared: PoolShared, bag: Bag) {
    this.#s = shared;
    this.#bag = bag;
  }

  async ensure(): Promise<void> {
    const s = this.#s;
    if (this.#warming || s.ending || s.o.min === 0) return;
    this.#warming = true;
    try {
      const bag = this.#bag;
      let rounds = 0;
      while (!s.ending && bag.size < s.o.min && rounds < 1000) {
        rounds += 1;
        const result = await paceWarmUp({
          count: s.o.min - bag.size,
          open: () => bag.fillOne(s.o.min),
          clock: s.o.clock,
          random: s.o.random,
          signal: s.endSignal,
        });
        if (result.stoppedBy === 'failure') {
          await new Promise<void>((resolve) => s.o.clock.setTimeout(resolve, s.o.hostRecheckMs, { background: true }));
        }
      }
    } finally {
      this.#warming = false;
    }
  }
}
