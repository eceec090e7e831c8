import type { Client, QueryConfig, QueryResult } from 'pg';
import type { Logger } from '../observe/logger.ts';
import type { LostCommitsEvent } from '../observe/types.ts';
import type { Clock } from '../policy/clock.ts';
import type { Deadline } from '../policy/deadline.ts';
import { sendWithPosition } from './commit-position.ts';
import { LostCommits, type ResolvedLostCommits } from './lost-commits.ts';
import type { TimelineSwitch } from './timeline.ts';

/**
 * Sends an autocommit write with its commit's mark (commit-position.ts) and remembers the
 * commit once acknowledged; a statement that cannot carry the mark (several statements in one
 * text, a cursor) runs as it is, unmarked.
 */
export async function sendMarked(client: Client, config: QueryConfig, commits: LostCommits, label: string | undefined): Promise<QueryResult> {
  const call = sendWithPosition(client, config);
  if (call === null) return client.query(config) as Promise<QueryResult>;
  const result = await call.done;
  commits.note(call.mark(), label);
  return result;
}

/** What the pool lends the tracker. */
export interface CommitTrackingWiring {
  readonly clock: Clock;
  readonly logger: Logger;
  acquire(deadline: Deadline): Promise<Client>;
  release(client: Client, failure?: unknown): void;
  history(): Promise<readonly TimelineSwitch[] | undefined>;
  published(event: LostCommitsEvent): void;
}

/** The pool's tracker, or undefined when `lostCommits` is off. */
export function commitTracking(options: ResolvedLostCommits | undefined, w: CommitTrackingWiring): LostCommits | undefined {
  if (options === undefined) return undefined;
  return new LostCommits(options, {
    clock: w.clock,
    logger: w.logger,
    checkout: (deadline) => w.acquire(deadline),
    giveBack: (client, failure) => w.release(client, failure),
    patroniHistory: () => w.history(),
    publish: (event) => w.published(event),
  });
}
