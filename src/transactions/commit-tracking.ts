import type { Client, QueryConfig, QueryResult } from 'pg';
import type { Logger } from '../observe/logger.ts';
import type { LostCommitsEvent } from '../observe/types.ts';
import type { Clock } from '../policy/clock.ts';
import { notReplicatedError } from '../errors.ts';
import { Deadline } from '../policy/deadline.ts';
import { ReplicationWatch } from '../topology/replication-watch.ts';
import { sendWithPosition } from './commit-position.ts';
import { LostCommits } from './lost-commits.ts';
import type { ResolvedLostCommits } from './durability-options.ts';
import type { TimelineSwitch } from './timeline.ts';

/**
 * Sends an autocommit write with its commit's mark (commit-position.ts) and remembers the
 * commit once acknowledged; a statement that cannot carry the mark (several statements in one
 * text, a cursor) runs as it is, unmarked.
 */
export async function sendMarked(client: Client, config: QueryConfig, commits: LostCommits, label: string | undefined, prepared?: MarkedPreparing): Promise<QueryResult> {
  // Prepared (named) on this connection when its cache allows, as the fast path would run it.
  let cfg = prepared?.name(config) ?? config;
  for (;;) {
    const call = sendWithPosition(client, cfg, prepared !== undefined);
    if (call === null) return client.query(config) as Promise<QueryResult>;
    try {
      const result = await call.done;
      commits.note(call.mark(), label);
      return result;
    } catch (err) {
      // An invalidated prepared statement ran nothing (the implicit transaction rolled back
      // with it): named again, then unnamed, as on every other path.
      const again = prepared?.repair(cfg, err);
      if (again === undefined) throw err;
      cfg = again;
    }
  }
}

/** The connection's prepared-statement cache, as the runner lends it to a marked write. */
export interface MarkedPreparing {
  name(config: QueryConfig): QueryConfig | undefined;
  repair(config: QueryConfig, err: unknown): QueryConfig | undefined;
}

/** What the pool lends the tracker and the replication watch. */
export interface CommitTrackingWiring {
  readonly clock: Clock;
  readonly logger: Logger;
  acquire(deadline: Deadline): Promise<Client>;
  acquireStandby(deadline: Deadline): Promise<Client>;
  release(client: Client, failure?: unknown): void;
  history(): Promise<readonly TimelineSwitch[] | undefined>;
  published(event: LostCommitsEvent): void;
}

/** How often remembered commits are checked against a standby (to forget those it received). */
const CONFIRM_EVERY_MS = 1000;

/**
 * The pool's tracker (undefined when `lostCommits` is off) and its replication watch (which
 * opens no connection until a write asks for `durability: 'replicated'` or the tracker asks):
 * the watch's rounds also tell the tracker which commits a standby has.
 */
export function commitTracking(options: ResolvedLostCommits | undefined, w: CommitTrackingWiring): { commits: LostCommits | undefined; replication: ReplicationWatch } {
  let commits: LostCommits | undefined;
  const replication = new ReplicationWatch({
    clock: w.clock,
    acquirePrimary: (deadline) => w.acquire(deadline),
    acquireStandby: (deadline) => w.acquireStandby(deadline),
    release: (client, failure) => w.release(client, failure),
    confirmed: (readAt, timeline) => commits?.confirmReplicated(readAt, timeline),
  });
  if (options === undefined) return { commits, replication };
  let lastConfirm = -Infinity;
  commits = new LostCommits(options, {
    clock: w.clock,
    logger: w.logger,
    checkout: (deadline) => w.acquire(deadline),
    giveBack: (client, failure) => w.release(client, failure),
    patroniHistory: () => w.history(),
    publish: (event) => w.published(event),
    noted: () => {
      const now = w.clock.now();
      if (now - lastConfirm < CONFIRM_EVERY_MS) return;
      lastConfirm = now;
      void replication.waitReplicated(now, new Deadline(w.clock, CONFIRM_EVERY_MS));
    },
  });
  return { commits, replication };
}

/**
 * `durability: 'replicated'`: resolves once a standby received the commit acknowledged at
 * `ackAt`; else PGR_NOT_REPLICATED (the commit stands).
 */
export async function untilReplicated(replication: ReplicationWatch, clock: Clock, ackAt: number, timeoutMs: number): Promise<void> {
  const why = await replication.waitReplicated(ackAt, new Deadline(clock, timeoutMs));
  if (why !== undefined) throw notReplicatedError(Math.round(clock.now() - ackAt), why);
}
