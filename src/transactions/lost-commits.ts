import type { Client } from 'pg';
import type { Logger } from '../observe/logger.ts';
import type { LostCommit, LostCommitsEvent } from '../observe/types.ts';
import type { Clock } from '../policy/clock.ts';
import { Deadline } from '../policy/deadline.ts';
import type { CommitMark } from './commit-position.ts';
import type { ResolvedLostCommits } from './durability-options.ts';
import { forkPoint, primaryTimeline } from './fork-point.ts';
import { forkVerdict, formatLsn, type TimelineSwitch, type WalPosition } from './timeline.ts';


/** What the tracker needs of the pool: a primary connection, Patroni's history, a way out. */
export interface LostCommitsHost {
  readonly clock: Clock;
  readonly logger: Logger;
  /** One attempt to take a connection to the primary (throws when it cannot). */
  checkout(deadline: Deadline): Promise<Client>;
  giveBack(client: Client, failure?: unknown): void;
  patroniHistory(): Promise<readonly TimelineSwitch[] | undefined>;
  publish(event: LostCommitsEvent): void;
  /** A commit was remembered (the wiring asks a standby now and then, to forget what it has). */
  noted?(): void;
}

interface Tracked {
  readonly xid: string;
  readonly at: WalPosition;
  readonly ackAt: number;
  /** Wall-clock time of the acknowledgement, for the event. */
  readonly wallAt: number;
  readonly label: string | undefined;
}

const CHECK_WINDOW_MS = 60_000;

/**
 * The pool's acknowledged commits, each with its id and the position read in its own
 * transaction (commit-position.ts, or XID_SQL before a COMMIT), until a standby is known to
 * have it or the window passes. After a failover, the new primary's history says which of them
 * it lacks (timeline.ts): a fork at or before a commit's position proves it lost; a fork after
 * it lets `txid_status` on the new primary answer. Those it lacks are published once, as
 * `lostCommits`. Commits whose fork point cannot be learned are counted as `unverified`, never
 * guessed. One owner: only this class changes the list.
 */
export class LostCommits {
  readonly #o: ResolvedLostCommits;
  readonly #host: LostCommitsHost;
  #pending: Tracked[] = [];
  #forgotten = 0;
  #checking: Promise<void> | undefined;
  #again = false;

  constructor(options: ResolvedLostCommits, host: LostCommitsHost) {
    this.#o = options;
    this.#host = host;
  }

  /** Commits remembered now (for tests and metrics). */
  get tracked(): number {
    return this.#pending.length;
  }

  /** An acknowledged commit: remembered. A commit on a newer timeline than those remembered is itself news of a failover. */
  note(mark: CommitMark | undefined, label: string | undefined): void {
    if (mark === undefined || mark.xid === null || mark.at === undefined) return; // wrote nothing, or not on a primary
    const now = this.#host.clock.now();
    this.#prune(now);
    const first = this.#pending[0];
    this.#pending.push({ xid: mark.xid, at: mark.at, ackAt: now, wallAt: Date.now(), label });
    if (first !== undefined && first.at.timeline !== mark.at.timeline) this.primaryChanged();
    else this.#host.noted?.();
  }

  /** A standby received the WAL up to a position read at `readAt` on `timeline`: commits acknowledged before are safe. */
  confirmReplicated(readAt: number, timeline: number): void {
    this.#pending = this.#pending.filter((c) => !(c.ackAt <= readAt && c.at.timeline === timeline));
  }

  /** A failover completed (or a new timeline was seen): compare what is remembered with the new primary. */
  primaryChanged(): void {
    if (this.#pending.length === 0) return;
    if (this.#checking !== undefined) {
      this.#again = true;
      return;
    }
    this.#checking = this.#check().catch((err: unknown) => {
      this.#host.logger.warn({ err: (err as Error).message }, 'pg-resilient: could not compare acknowledged commits with the new primary');
    }).finally(() => {
      this.#checking = undefined;
      if (this.#again) {
        this.#again = false;
        this.primaryChanged();
      }
    });
  }

  /** Resolves when a check in progress is done (tests, end()). */
  settled(): Promise<void> {
    return this.#checking ?? Promise.resolve();
  }

  #prune(now: number): void {
    const keepFrom = now - this.#o.windowMs;
    let drop = 0;
    while (drop < this.#pending.length && this.#pending[drop]!.ackAt < keepFrom) drop += 1;
    const over = this.#pending.length - drop - (this.#o.maxTracked - 1);
    if (over > 0) {
      drop += over;
      this.#forgotten += over;
    }
    if (drop > 0) this.#pending.splice(0, drop);
  }

  async #check(): Promise<void> {
    const host = this.#host;
    const deadline = new Deadline(host.clock, CHECK_WINDOW_MS);
    while (!deadline.expired()) {
      let client: Client | undefined;
      try {
        client = await host.checkout(deadline);
        const current = await primaryTimeline(client);
        if (current === undefined) {
          host.giveBack(client);
          client = undefined;
        } else {
          await this.#compare(client, current);
          host.giveBack(client);
          return;
        }
      } catch (err) {
        if (client !== undefined) host.giveBack(client, err);
      }
      await deadline.sleep(Math.min(500, Math.max(0, deadline.remainingMs())));
    }
  }

  /** Decides every remembered commit of an older timeline on the primary now on `current`. */
  async #compare(client: Client, current: number): Promise<void> {
    const older = this.#pending.filter((c) => c.at.timeline !== current);
    if (older.length === 0) return;
    this.#pending = this.#pending.filter((c) => c.at.timeline === current);
    const byTimeline = new Map<number, Tracked[]>();
    for (const c of older) {
      const list = byTimeline.get(c.at.timeline);
      if (list === undefined) byTimeline.set(c.at.timeline, [c]);
      else list.push(c);
    }
    for (const [timeline, commits] of byTimeline) {
      const fork = await forkPoint(this.#host, client, timeline, current);
      const lost: Tracked[] = [];
      const ask: Tracked[] = [];
      let unverified = 0;
      for (const c of commits) {
        const verdict = forkVerdict(c.at, current, fork);
        if (verdict === 'absent') lost.push(c);
        else if (verdict === 'ask') ask.push(c);
        else unverified += 1;
      }
      if (ask.length > 0) {
        const res = await client.query<{ x: string; s: string | null }>('SELECT x::text AS x, txid_status(x) AS s FROM unnest($1::bigint[]) AS x', [ask.map((c) => c.xid)]);
        const status = new Map(res.rows.map((r) => [r.x, r.s]));
        for (const c of ask) {
          const s = status.get(c.xid);
          if (s === 'aborted') lost.push(c);
          else if (s !== 'committed') unverified += 1;
        }
      }
      lost.sort((a, b) => a.ackAt - b.ackAt);
      const forgotten = this.#forgotten;
      this.#forgotten = 0;
      const event: LostCommitsEvent = {
        count: lost.length,
        forkLsn: fork === undefined ? undefined : formatLsn(fork),
        oldTimeline: timeline,
        newTimeline: current,
        checked: commits.length,
        unverified,
        forgotten,
        commits: lost.map((c): LostCommit => ({ xid: c.xid, lsn: c.at.lsn, at: new Date(c.wallAt), ...(c.label === undefined ? {} : { label: c.label }) })),
      };
      this.#host.logger.warn({ count: event.count, checked: event.checked, unverified, forkLsn: event.forkLsn, oldTimeline: timeline, newTimeline: current },
        `pg-resilient: a failover lost ${event.count} of ${event.checked} acknowledged commits${unverified > 0 ? ` (${unverified} could not be verified)` : ''}`);
      this.#host.publish(event);
    }
  }
}
