import type { Client, PoolClient } from 'pg';
import { classify } from './classify/classify.ts';
import { duration } from './option-checks.ts';
import { metaOf } from './pool/connection.ts';
import type { ResolvedOptions } from './options.ts';
import type { Breaker } from './policy/breaker.ts';
import { Deadline } from './policy/deadline.ts';
import { AttemptFailure, runWithRetry, type RetryRun } from './policy/retry.ts';
import { isServerRejection, outcomeUnknownError, resolveCommit, type CommitLookup, type CommitOutcome } from './transactions/commit-outcome.ts';

export type { CommitOutcome } from './transactions/commit-outcome.ts';

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
}

/** What `runTransaction` needs from the pool. */
export interface TransactionHost {
  readonly options: ResolvedOptions;
  /** One attempt to take a connection to the primary; throws AttemptFailure (phase 'connect'). */
  checkout(deadline: Deadline): Promise<Client>;
  lend(client: Client): PoolClient;
  afterFailure(client: Client, err: unknown): void;
  observeSuccess(client: Client): void;
  retryRun(deadline: Deadline, idempotent: boolean): RetryRun;
  readonly breaker: Breaker;
  onCommitResolved(xid: string, outcome: CommitOutcome, durationMs: number): void;
}

const ISOLATION = new Set(['read committed', 'repeatable read', 'serializable']);

/**
 * Runs `fn` inside BEGIN … COMMIT so that its work is applied exactly once:
 * - serialization failures, deadlocks, and connections lost (or primaries changed) before COMMIT
 *   was sent: the transaction did not commit, so `fn` runs again on a fresh connection;
 * - connection lost while COMMIT was in flight: the transaction's id, read just before COMMIT,
 *   is looked up on the (possibly new) primary with `txid_status`: committed → done; aborted or
 *   unknown to the new primary → run again; no answer within the deadline →
 *   TransactionOutcomeUnknownError carrying the id;
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
  return runWithRetry(() => host.breaker.attempt(() => once(host, fn, begin, deadline)), host.retryRun(deadline, true));
}

async function once<T>(host: TransactionHost, fn: (client: PoolClient) => Promise<T>, begin: string, deadline: Deadline): Promise<T> {
  const client = await host.checkout(deadline);
  const pooled = host.lend(client);
  const meta = metaOf(client);
  let committing = false;
  let xid: string | null = null;
  const pid = (client as unknown as { processID?: number | null }).processID ?? undefined;
  let result: T;
  try {
    await client.query(begin);
    result = await fn(pooled);
    // Read the id only now: it exists only if the transaction wrote something, and then it is
    // what txid_status needs if COMMIT's answer is lost.
    const row = await client.query<{ xid: string | null }>('SELECT txid_current_if_assigned()::text AS xid');
    xid = row.rows[0]?.xid ?? null;
    committing = true;
    await client.query('COMMIT');
  } catch (err) {
    const broken = meta?.broken;
    const failure = broken !== undefined && !isServerRejection(err) ? broken : err;
    host.afterFailure(client, failure);
    const usable = broken === undefined && classify(failure).connectionUsable;
    if (usable && !committing) await client.query('ROLLBACK').catch(() => undefined);
    pooled.release(usable ? undefined : true);
    if (!committing || isServerRejection(err)) {
      // Before COMMIT, or COMMIT refused by the server (the transaction rolled back): the
      // retry rule decides — transient failures run again, fn's own errors come back unchanged.
      throw new AttemptFailure(failure, 'query');
    }
    // The connection died with COMMIT in flight.
    if (xid === null) return result!; // it wrote nothing: the outcome doesn't matter
    const askedAt = deadline.elapsedMs();
    const outcome = await resolveCommit(lookupOf(host), xid, deadline, pid === undefined ? undefined : { pid });
    host.onCommitResolved(xid, outcome, Math.round(deadline.elapsedMs() - askedAt));
    if (outcome === 'committed') return result!;
    if (outcome === 'aborted') throw new AttemptFailure(failure, 'query');
    throw outcomeUnknownError(xid, failure);
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
