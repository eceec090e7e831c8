import type { Client, PoolClient } from 'pg';
import type { Classification } from '../classify/classify.ts';
import { fatalProvesRollback } from '../classify/fatal-proof.ts';
import { duration } from '../option-checks.ts';
import { entryOf } from '../pool/pool-entry.ts';
import type { ResolvedOptions } from '../options.ts';
import type { CallPolicy } from '../policy/call-policy.ts';
import { Deadline } from '../policy/deadline.ts';
import { AttemptFailure, classificationOf } from '../policy/retry.ts';
import { isServerRejection, outcomeUnknownError, resolveCommit, type CommitLookup, type CommitResolution } from './commit-outcome.ts';
import type { TimelineSwitch, WalPosition } from './timeline.ts';
import { positionOf } from './primary-position.ts';
import { XID_SQL } from './xid-reading.ts';
import type { CommitMark } from './commit-position.ts';
import { checkDurability, checkLabel } from './durability-options.ts';
import { currentLabel } from './labels.ts';

/** Options of `pool.transaction(fn, options)`. */
export interface TransactionOptions {
  /** Defaults to the server's default (usually read committed). */
  isolationLevel?: 'read committed' | 'repeatable read' | 'serializable';
  /** BEGIN READ ONLY. Defaults to false. */
  readOnly?: boolean;
  /** BEGIN … DEFERRABLE (only meaningful with serializable + readOnly). Defaults to false. */
  deferrable?: boolean;
  /** Aborts waiting, retrying and the transaction in flight. */
  signal?: AbortSignal;
  /** Total time for all runs of the transaction, including resolving a lost COMMIT. Defaults to `retry.maxElapsedMs`. */
  maxElapsedMs?: number;
  /** Names the transaction in a `lostCommits` event (option `lostCommits`); defaults to the `withLabel` scope's. */
  label?: string;
  /** 'replicated': resolve only once a standby has received the COMMIT. Defaults to the pool's `durability`. */
  durability?: 'local' | 'replicated';
}

/** What `runTransaction` needs from the pool. */
export interface TransactionHost {
  readonly options: ResolvedOptions;
  /** One attempt to take a connection to the primary; throws AttemptFailure (phase 'connect'). */
  checkout(deadline: Deadline): Promise<Client>;
  lend(client: Client): PoolClient;
  /** A statement failed on `client`; `classification`: the failure's, when already made. */
  afterFailure(client: Client, err: unknown, classification?: Classification): void;
  observeSuccess(client: Client): void;
  /** The pool's call policy: each run of the transaction through the breaker, retried by its rule. */
  readonly policy: CallPolicy;
  onCommitResolved(xid: string, resolution: CommitResolution, durationMs: number): void;
  /** A commit was acknowledged (lost-commit detection; a no-op when off). */
  noteCommit(mark: CommitMark, label: string | undefined): void;
  /** Resolves once a standby received what was committed before `ackAt` (PGR_NOT_REPLICATED after the timeout). */
  replicated(ackAt: number): Promise<void>;
  /** Patroni's timeline history, in Patroni mode (commit-outcome.ts). */
  patroniHistory(): Promise<readonly TimelineSwitch[] | undefined>;
}

const ISOLATION = new Set(['read committed', 'repeatable read', 'serializable']);

/**
 * Runs `fn` inside BEGIN … COMMIT so that its work is applied exactly once:
 * - serialization failures, deadlocks, and connections lost (or primaries changed) before COMMIT
 *   was sent: the transaction did not commit, so `fn` runs again on a fresh connection;
 * - connection lost while COMMIT was in flight: the transaction's id and WAL position, read just
 *   before COMMIT, are looked up on the (possibly new) primary (commit-outcome.ts): committed →
 *   done; certainly not there (aborted, or a failover's fork before it) → run again; anything
 *   else → TransactionOutcomeUnknownError carrying the id and the timelines;
 * - anything `fn` throws that is not one of those: ROLLBACK, and the error is rethrown unchanged.
 * `fn` may run more than once: it must have no effects outside the database.
 */
export function runTransaction<T>(host: TransactionHost, fn: (client: PoolClient) => Promise<T>, options: TransactionOptions): Promise<T> {
  if (typeof fn !== 'function') return Promise.reject(new TypeError('pg-resilient: transaction(fn) expects a function'));
  let begin: string;
  let budgetMs: number;
  try {
    begin = beginStatement(options);
    budgetMs = duration('transaction.maxElapsedMs', options.maxElapsedMs, host.options.retry.maxElapsedMs, 0);
  } catch (err) {
    return Promise.reject(err);
  }
  const deadline = new Deadline(host.options.clock, budgetMs, options.signal);
  // The whole transaction is atomic: until COMMIT is sent, running it again is safe.
  let label: string | undefined;
  let durability: string;
  try {
    label = checkLabel(options.label, 'transaction option label');
    durability = checkDurability(options.durability, 'transaction option durability', host.options.durability);
  } catch (err) {
    return Promise.reject(err);
  }
  const committed = host.policy.runGuarded({ deadline, repeat: true }, () => once(host, fn, begin, deadline, label));
  if (durability !== 'replicated') return committed;
  return committed.then(async (result) => {
    await host.replicated(host.options.clock.now());
    return result;
  });
}

async function once<T>(host: TransactionHost, fn: (client: PoolClient) => Promise<T>, begin: string, deadline: Deadline, label: string | undefined): Promise<T> {
  const client = await host.checkout(deadline);
  const pooled = host.lend(client);
  const meta = entryOf(client);
  let committing = false;
  let xid: string | null = null;
  let at: WalPosition | undefined;
  const pid = (client as unknown as { processID?: number | null }).processID ?? undefined;
  let result: T;
  try {
    await client.query(begin);
    result = await fn(pooled);
    // Read the id only now: it exists only if the transaction wrote something, and then it is
    // what txid_status needs if COMMIT's answer is lost, with where the WAL stood (timeline.ts).
    const row = (await client.query<{ xid: string | null; lsn: string | null; tli: string | null }>(XID_SQL)).rows[0];
    xid = row?.xid ?? null;
    at = positionOf(row?.lsn, row?.tli);
    committing = true;
    await client.query('COMMIT');
    host.noteCommit({ xid, at }, currentLabel(label));
  } catch (err) {
    const broken = meta?.brokenBy;
    const failure = broken !== undefined && !isServerRejection(err) ? broken : err;
    // Classified once: the pool's report, this and the retry rule read the same answer.
    const classification = classificationOf(failure);
    host.afterFailure(client, failure, classification);
    const usable = broken === undefined && classification.connectionUsable;
    if (usable && !committing) await client.query('ROLLBACK').catch(() => undefined);
    pooled.release(usable ? undefined : true);
    if (!committing || isServerRejection(err)) {
      // Before COMMIT, or COMMIT refused by the server (the transaction rolled back): the
      // retry rule decides — transient failures run again, fn's own errors come back unchanged.
      throw new AttemptFailure(failure, 'query');
    }
    // The connection died with COMMIT in flight.
    if (xid === null) return result!; // it wrote nothing: the outcome doesn't matter
    // A FATAL before COMMIT's CommandComplete: it never reached its commit point; run it again.
    if (fatalProvesRollback(err)) throw new AttemptFailure(failure, 'query');
    const askedAt = deadline.elapsedMs();
    const resolution = await resolveCommit(lookupOf(host), xid, at, deadline, pid === undefined ? undefined : { pid });
    host.onCommitResolved(xid, resolution, Math.round(deadline.elapsedMs() - askedAt));
    if (resolution.outcome === 'committed') return result!;
    if (resolution.outcome === 'aborted') throw new AttemptFailure(failure, 'query');
    throw outcomeUnknownError(xid, failure, resolution, at);
  }
  host.observeSuccess(client);
  pooled.release();
  return result;
}

/** Asking the primary about a lost COMMIT, through the pool as the transaction helper sees it. */
function lookupOf(host: TransactionHost): CommitLookup {
  return {
    options: host.options,
    checkout: (deadline) => host.checkout(deadline),
    giveBack: (client, failure) => {
      if (failure === undefined) {
        host.lend(client).release();
        return;
      }
      host.afterFailure(client, failure);
      host.lend(client).release(true);
    },
    patroniHistory: () => host.patroniHistory(),
  };
}

function beginStatement(options: TransactionOptions): string {
  if (typeof options !== 'object' || options === null) throw new TypeError('pg-resilient: transaction options must be an object');
  const parts = ['BEGIN'];
  if (options.isolationLevel !== undefined) {
    if (!ISOLATION.has(options.isolationLevel)) {
      throw new TypeError(`pg-resilient: transaction option isolationLevel must be one of ${[...ISOLATION].join(', ')}, got ${JSON.stringify(options.isolationLevel)}`);
    }
    parts.push(`ISOLATION LEVEL ${options.isolationLevel.toUpperCase()}`);
  }
  if (options.readOnly !== undefined && typeof options.readOnly !== 'boolean') throw new TypeError('pg-resilient: transaction option readOnly must be a boolean');
  if (options.deferrable !== undefined && typeof options.deferrable !== 'boolean') throw new TypeError('pg-resilient: transaction option deferrable must be a boolean');
  if (options.readOnly === true) parts.push('READ ONLY');
  if (options.deferrable === true) parts.push('DEFERRABLE');
  return parts.join(' ');
}
