// Pools for the tests of transactions on checked-out clients: counted replays and COMMIT
// resolutions, and an end() that first releases what a failed assertion left checked out
// (end() waits for every lent client).
import type pg from 'pg';
import { Pool, type CommitResolvedEvent, type PoolOptions } from '../../src/index.ts';

export interface Replay {
  outcome: 'replayed' | 'diverged';
  statements: number;
}

export interface SessionPools {
  /** A pool (options from `options`) that counts replays and COMMIT resolutions. */
  resilient(extra?: PoolOptions): { pool: Pool; replays: Replay[]; resolved: CommitResolvedEvent[] };
  /** A checked-out client, remembered until `end`. */
  connect(pool: Pool): Promise<pg.PoolClient>;
  end(pool: { end(): Promise<void> }): Promise<void>;
}

export function sessionPools(options: (extra: PoolOptions) => PoolOptions): SessionPools {
  const lent = new Set<{ release(err?: boolean): void }>();
  return {
    resilient(extra = {}) {
      const pool = new Pool(options({ max: 2, ...extra }));
      const replays: Replay[] = [];
      const resolved: CommitResolvedEvent[] = [];
      pool.on('transactionReplay', (e: Replay) => replays.push(e));
      pool.on('commitResolved', (e) => resolved.push(e));
      return { pool, replays, resolved };
    },
    async connect(pool) {
      const c = await pool.connect();
      lent.add(c);
      return c;
    },
    async end(pool) {
      for (const c of lent) {
        try {
          c.release(true);
        } catch {
          // released already
        }
      }
      lent.clear();
      await pool.end();
    },
  };
}
