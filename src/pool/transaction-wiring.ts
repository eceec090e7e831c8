import type { TransactionHost } from '../transactions/pool-transaction.ts';
import { commitTracking, untilReplicated } from '../transactions/commit-tracking.ts';
import type { Bags } from './bags.ts';
import { entryOf } from './pool-entry.ts';
import type { Failures } from './failures.ts';
import type { Lender } from './lent-client.ts';
import type { StatementRunner } from './runner.ts';
import type { PoolShared } from './shared.ts';

/**
 * Sets the pool's commit tracking (`lostCommits`) and replication watch (`durability`) on
 * `shared`, once, at construction: they take connections from the bags, so they are made after
 * them.
 */
export function wireCommitTracking(shared: PoolShared, bags: Bags): void {
  const o = shared.o;
  const made = commitTracking(o.lostCommits, {
    clock: o.clock,
    logger: o.logger,
    acquire: (deadline) => bags.for('default').acquire(deadline),
    acquireStandby: (deadline) => bags.for('read').acquire(deadline),
    release: (client, failure) => bags.release(client, failure),
    history: () => shared.topology.timelineHistory(),
    published: (event) => {
      shared.reporter.noteLostCommits(event.count);
      shared.publish('lostCommits', event);
    },
  });
  shared.commits = made.commits;
  shared.replication = made.replication;
}

/** What `pool.transaction` (src/transactions/pool-transaction.ts) gets of the pool. */
export function transactionHost(s: PoolShared, lender: Lender, runner: StatementRunner, failures: Failures): TransactionHost {
  return {
    options: s.o,
    checkout: (deadline) => lender.attemptCheckout(deadline),
    lend: (client) => lender.lend(client),
    afterFailure: (client, err, classification) => failures.statementFailed(client, err, classification),
    observeSuccess: (client) => {
      const meta = entryOf(client);
      if (meta !== undefined) s.topology.observeSuccess(meta.generation, meta.server ?? meta.target);
    },
    policy: runner.policy,
    onCommitResolved: (xid, { outcome, currentTimeline, forkLsn }, durationMs) => {
      s.o.logger.warn({ xid, outcome, durationMs, currentTimeline, forkLsn }, `pg-resilient: connection lost during COMMIT of transaction ${xid}; the primary says: ${outcome}`);
      s.publish('commitResolved', { xid, outcome, durationMs });
    },
    patroniHistory: () => s.topology.timelineHistory(),
    noteCommit: (mark, label) => s.commits?.note(mark, label),
    replicated: (ackAt) => untilReplicated(s.replication, s.o.clock, ackAt, s.o.replicationTimeoutMs),
  };
}
