import type { Client } from 'pg';
import type { Clock } from '../policy/clock.ts';
import type { Deadline } from '../policy/deadline.ts';
import { readPosition } from '../transactions/primary-position.ts';
import { parseLsn } from './standby-evidence.ts';

/**
 * Has a standby received what the primary acknowledged? One shared wait serves every commit in
 * flight: a round reads the primary's insert position P (after every commit acknowledged before
 * the round began, so P is past their commit records), then asks a standby for
 * `pg_last_wal_receive_lsn()` (readable by any role) until it reaches P. Each round answers all
 * the commits acknowledged before it; commits acknowledged meanwhile wait for the next round.
 *
 * Used by `durability: 'replicated'` (a write resolves once a standby has its commit) and by
 * lost-commit detection (a commit a standby received cannot be lost by the next failover, so it
 * is forgotten).
 */
export interface ReplicationWatchHost {
  readonly clock: Clock;
  /** One attempt at a connection to the primary. */
  acquirePrimary(deadline: Deadline): Promise<Client>;
  /** One attempt at a connection to a standby if one is known (else whatever the pool has: checked here). */
  acquireStandby(deadline: Deadline): Promise<Client>;
  release(client: Client, failure?: unknown): void;
  /** A standby received everything up to a position read at `readAt` on `timeline`. */
  confirmed(readAt: number, timeline: number): void;
}

interface Waiter {
  readonly ackAt: number;
  readonly deadline: Deadline;
  readonly resolve: (outcome: string | undefined) => void;
}

const STANDBY_SQL = 'SELECT pg_is_in_recovery() AS standby, pg_last_wal_receive_lsn()::text AS lsn';
/** Between two questions to the standby: a commit reaches a healthy standby in about a millisecond. */
const POLL_MS = 2;

export class ReplicationWatch {
  readonly #host: ReplicationWatchHost;
  #waiters: Waiter[] = [];
  #running = false;

  constructor(host: ReplicationWatchHost) {
    this.#host = host;
  }

  /**
   * Resolves with undefined once a standby has received a commit acknowledged at `ackAt`, or with
   * why not when `deadline` passes first (no standby reachable, the standby behind).
   */
  waitReplicated(ackAt: number, deadline: Deadline): Promise<string | undefined> {
    return new Promise((resolve) => {
      this.#waiters.push({ ackAt, deadline, resolve });
      if (!this.#running) void this.#run();
    });
  }

  async #run(): Promise<void> {
    this.#running = true;
    const host = this.#host;
    let primary: Client | undefined;
    let standby: Client | undefined;
    let why = 'no standby answered';
    try {
      while (this.#waiters.length > 0) {
        const roundAt = host.clock.now();
        const latest = this.#waiters.reduce((d, w) => (w.deadline.remainingMs() > d.remainingMs() ? w.deadline : d), this.#waiters[0]!.deadline);
        try {
          primary ??= await host.acquirePrimary(latest);
          const { at } = await readPosition(primary);
          const target = parseLsn(at?.lsn);
          const timeline = at?.timeline;
          if (target === undefined || timeline === undefined) throw new Error('the primary is not a primary now');
          for (;;) {
            standby ??= await host.acquireStandby(latest);
            const r = (await standby.query<{ standby: boolean; lsn: string | null }>(STANDBY_SQL)).rows[0];
            if (r === undefined || !r.standby) {
              why = 'the pool knows no standby';
              break;
            }
            const received = parseLsn(r.lsn);
            if (received !== undefined && received >= target) {
              host.confirmed(roundAt, timeline);
              this.#settle((w) => w.ackAt <= roundAt, undefined);
              break;
            }
            why = 'the standby has not received it yet';
            if (this.#expire(why) === 0) break;
            await latest.sleep(POLL_MS).catch(() => undefined);
          }
        } catch (err) {
          why = (err as Error).message;
          for (const c of [primary, standby]) if (c !== undefined) host.release(c, err);
          primary = undefined;
          standby = undefined;
          await latest.sleep(Math.min(50, Math.max(0, latest.remainingMs()))).catch(() => undefined);
        }
        this.#expire(why);
        if (why === 'the pool knows no standby') this.#settle(() => true, why);
      }
    } finally {
      for (const c of [primary, standby]) if (c !== undefined) host.release(c);
      this.#running = false;
    }
  }

  /** Waiters whose deadline passed get `why`; returns how many still wait. */
  #expire(why: string): number {
    this.#settle((w) => w.deadline.expired(), why);
    return this.#waiters.length;
  }

  #settle(which: (w: Waiter) => boolean, outcome: string | undefined): void {
    const keep: Waiter[] = [];
    for (const w of this.#waiters) {
      if (which(w)) w.resolve(outcome);
      else keep.push(w);
    }
    this.#waiters = keep;
  }
}

