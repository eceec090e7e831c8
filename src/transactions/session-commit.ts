import type { Client, QueryConfig, QueryResult } from 'pg';
import type { Deadline } from '../policy/deadline.ts';
import { AttemptFailure, classificationOf } from '../policy/retry.ts';
import { positionOf } from './primary-position.ts';
import { sendWithXid, XID_SQL, type XidReading } from './xid-reading.ts';
import type { WalPosition } from './timeline.ts';
import { currentLabel } from './labels.ts';
import { fatalProvesRollback } from '../classify/fatal-proof.ts';
import { untilReplicated } from './commit-tracking.ts';
import { rolledBackError } from '../errors.ts';
import { outcomeUnknownError, resolveCommit, type CommitLookup } from './commit-outcome.ts';
import type { CommitKind } from './transaction-control.ts';
import type { Bags } from '../pool/bags.ts';
import { entryOf } from '../pool/pool-entry.ts';
import type { StatementRunner } from '../pool/runner.ts';
import type { PoolShared } from '../pool/shared.ts';

/**
 * What a checked-out client's transaction needs to continue after its connection was lost
 * (`runReplayed`) and to send and resolve its COMMIT (`commitAndResolve`): see session-transaction.ts.
 */
export interface TxPort {
  readonly shared: PoolShared;
  readonly bags: Bags;
  readonly runner: StatementRunner;
  /** The physical client under the session now. */
  current(): Client;
  /**
   * A working client with the transaction open on it: the current one, or a fresh one on which
   * the recorded transaction was replayed (PGR_REPLAY_DIVERGED if it came out different).
   */
  replayed(deadline: Deadline): Promise<Client>;
}

/** A failure that says the connection is gone (not a refusal by a live server). */
export function isLost(client: Client, err: unknown): boolean {
  const meta = entryOf(client);
  if (meta === undefined || meta.brokenBy !== undefined) return true;
  return !classificationOf(err).connectionUsable;
}

/** Closes a connection found lost (a FATAL may come before the socket's end), so nothing runs on it again. */
export function dropLost(client: Client, err: unknown): void {
  const meta = entryOf(client);
  if (meta !== undefined && meta.brokenBy === undefined) meta.abandon(err);
}

/**
 * Runs `config` after the transaction's connection was lost: each attempt takes a connection
 * with the transaction replayed and runs the statement there; lost again, it tries again within
 * the deadline (nothing has committed, so repeating is safe). A refusal by the server is the
 * statement's own outcome and is returned as such (`rejected`), not retried.
 */
export async function runReplayed(port: TxPort, config: QueryConfig, deadline: Deadline): Promise<{ result: QueryResult } | { rejected: unknown }> {
  let rejected: { rejected: unknown } | undefined;
  const result = await port.runner.policy.runGuarded({ deadline, repeat: true }, async () => {
    const client = await port.replayed(deadline);
    try {
      return await (client.query(config) as Promise<QueryResult>);
    } catch (err) {
      if (!isLost(client, err)) {
        rejected = { rejected: err };
        return undefined;
      }
      dropLost(client, err);
      throw new AttemptFailure(err, 'query');
    }
  });
  return rejected ?? { result: result! };
}

/** The answer a COMMIT, END or ROLLBACK gets from the server, for one we complete ourselves. */
export function completed(command: 'COMMIT' | 'ROLLBACK'): QueryResult {
  return { command, rowCount: null, oid: 0, rows: [], fields: [] } as unknown as QueryResult;
}

/**
 * Sends the COMMIT of a transaction in progress on `client` — as it is when the transaction's id
 * is known (`knownXid`, read with its first write), else with the id read in the same round trip
 * (src/transactions/xid-reading.ts) — and when the connection is lost with it in flight, asks
 * the primary what became of the transaction:
 * - committed → the COMMIT's answer, as if nothing happened;
 * - it wrote nothing (no id) and the text was one COMMIT → committed too: nothing was at stake;
 * - aborted, unknown to the primary, or the server ended the session before it read the COMMIT
 *   → PGR_TRANSACTION_ROLLED_BACK (safe to run again);
 * - no answer within the deadline, or the id never reached us → PGR_TRANSACTION_OUTCOME_UNKNOWN.
 * A refusal by the server (a deferred constraint, a serialization failure) comes back unchanged.
 */
export async function commitAndResolve(port: TxPort, client: Client, config: QueryConfig, kind: CommitKind, deadline: Deadline, knownXid: string | undefined, knownAt: WalPosition | undefined): Promise<QueryResult> {
  const pid = (client as unknown as { processID?: number | null }).processID ?? undefined;
  let xid: XidReading = knownXid;
  let at = knownAt;
  let pending: Promise<QueryResult>;
  const call = knownXid === undefined ? sendWithXid(client, config, true) : null;
  if (call !== null) {
    pending = call.done;
  } else if (knownXid !== undefined) {
    pending = client.query(config) as Promise<QueryResult>;
  } else {
    // A COMMIT sent with values or by name (no ORM does): the id in a round trip of its own.
    pending = (client.query(XID_SQL) as Promise<QueryResult<{ xid: string | null; lsn: string | null; tli: string | null }>>).then((r) => {
      xid = r.rows[0]?.xid ?? null;
      at = positionOf(r.rows[0]?.lsn, r.rows[0]?.tli);
      return client.query(config) as Promise<QueryResult>;
    });
  }
  try {
    const result = await pending;
    if (call !== null) {
      xid = call.xid();
      at = call.at();
    }
    if (typeof xid === 'string' && result?.command === 'COMMIT') {
      const s = port.shared;
      s.commits?.note({ xid, at }, currentLabel());
      // The pool's durability: a checked-out client's COMMIT (ORM transactions) resolves once a standby has it.
      if (s.o.durability === 'replicated') await untilReplicated(s.replication, s.o.clock, s.o.clock.now(), s.o.replicationTimeoutMs);
    }
    return result;
  } catch (err) {
    if (!isLost(client, err)) throw err;
    dropLost(client, err);
    // Its slot goes back now: asking the primary takes a connection of this pool, and a pool of
    // one (the standalone Client of pg-resilient/pg) has no other. A later release is ignored.
    port.bags.release(client, err);
    if (call !== null) {
      if (call.notRun()) throw rolledBackError('the server ended the session before it read COMMIT', err);
      xid = call.xid();
      at = call.at();
    }
    // The server's FATAL came before COMMIT's CommandComplete, with no "committed locally"
    // warning: it never reached its commit point (docs/what-a-fatal-proves.md).
    if (fatalProvesRollback(err)) throw rolledBackError('the server ended the session before COMMIT reached its commit point', err);
    return await resolveLost(port, xid, at, kind, err, deadline, pid);
  }
}

async function resolveLost(port: TxPort, xid: XidReading, at: WalPosition | undefined, kind: CommitKind, failure: unknown, deadline: Deadline, pid: number | undefined): Promise<QueryResult> {
  const s = port.shared;
  if (xid === undefined) throw outcomeUnknownError(undefined, failure);
  if (xid === null) {
    // Nothing written before this text: a lone COMMIT changes nothing whether it ran or not.
    if (kind === 'plain') return completed('COMMIT');
    throw outcomeUnknownError(undefined, failure);
  }
  const askedAt = deadline.elapsedMs();
  const resolution = await resolveCommit(lookupOf(port), xid, at, deadline, pid === undefined ? undefined : { pid });
  const { outcome, currentTimeline, forkLsn } = resolution;
  const durationMs = Math.round(deadline.elapsedMs() - askedAt);
  s.o.logger.warn({ xid, outcome, durationMs, currentTimeline, forkLsn }, `pg-resilient: a checked-out client lost its connection during COMMIT of transaction ${xid}; the primary says: ${outcome}`);
  s.publish('commitResolved', { xid, outcome, durationMs });
  // Several statements with the COMMIT: their own results are lost with the connection.
  if (outcome === 'committed') return completed('COMMIT');
  if (outcome === 'aborted') {
    const why = forkLsn === undefined
      ? `the primary says transaction ${xid} did not commit`
      : `a failover forked the timeline at ${forkLsn}, before transaction ${xid} committed on timeline ${at?.timeline ?? '?'}`;
    throw rolledBackError(`the connection was lost during COMMIT and ${why}`, failure, { xid });
  }
  throw outcomeUnknownError(xid, failure, resolution, at);
}

function lookupOf(port: TxPort): CommitLookup {
  return {
    options: port.shared.o,
    checkout: (deadline) => port.runner.attempts.acquire('default', deadline),
    giveBack: (client, failure) => port.bags.release(client, failure),
    patroniHistory: () => port.shared.topology.timelineHistory(),
  };
}
