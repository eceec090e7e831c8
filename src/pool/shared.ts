import type { Client } from 'pg';
import type { Publisher } from '../observe/publish.ts';
import type { FailoverReporter } from '../observe/report.ts';
import type { ResolvedOptions } from '../options.ts';
import type { Breaker } from '../policy/breaker.ts';
import type { Topology } from '../topology/topology.ts';
import type { LostCommits } from '../transactions/lost-commits.ts';
import type { ReplicationWatch } from '../topology/replication-watch.ts';

/**
 * What the pool's parts share: the resolved options, the policies, the pool-wide counters and
 * the way out to the application (events). The public `Pool` makes one and hands it to each
 * part, so the parts depend on this small surface and not on each other's internals.
 */
export interface PoolShared extends Publisher {
  readonly o: ResolvedOptions;
  readonly topology: Topology;
  readonly breaker: Breaker;
  readonly reporter: FailoverReporter;
  /** Aborted by `end()`: every wait for a connection listens to it. */
  readonly endSignal: AbortSignal;
  /** Every open connection, idle or lent (the liveness watchdog and `expiredCount` walk it). */
  readonly clients: Set<Client>;
  /** `end()` was called: new calls are refused. */
  ending: boolean;
  /** Calls (query, connect, transaction) started and not settled; bounded by max + maxWaitingClients. */
  inProgress: number;
  /** Set by a graceful end(): called when the last call in progress settles. */
  onSettled: (() => void) | undefined;
  /** The last failed connection attempt, given as `cause` when a wait times out. */
  lastConnectError: unknown;
  /** When it failed (clock time): a wait with no connect failure in it timed out only because the pool was full. */
  lastConnectErrorAt: number;
  /** Acknowledged commits, for lost-commit detection (`lostCommits`); undefined when off. Set once, at construction. */
  commits: LostCommits | undefined;
  /** Has a standby received a commit? (`durability: 'replicated'`, lost-commit pruning.) Set once, at construction. */
  replication: ReplicationWatch;
  /** The object that stands for a physical connection outside the pool: its Session. */
  present(client: Client): object;
}

export const ignore = (): void => undefined;

/** A call in progress settled (the one place that counts down `inProgress`). */
export function callEnded(shared: PoolShared): void {
  shared.inProgress -= 1;
  if (shared.inProgress === 0 && shared.onSettled !== undefined) shared.onSettled();
}
