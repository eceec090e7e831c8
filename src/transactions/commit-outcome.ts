import type { Client } from 'pg';
import { classify } from '../classify/classify.ts';
import { ErrorCodes, PgResilientError, TransactionOutcomeUnknownError, describeError } from '../errors.ts';
import type { ResolvedOptions } from '../options.ts';
import { fullJitterDelay } from '../policy/backoff.ts';
import type { Deadline } from '../policy/deadline.ts';
import { AttemptFailure } from '../policy/retry.ts';

/** The outcome of a COMMIT whose connection was lost, as the primary tells it. */
export type CommitOutcome = 'committed' | 'aborted' | 'unknown';

/** What asking the primary needs: a connection to it (one attempt), and a way to give it back. */
export interface CommitLookup {
  readonly options: ResolvedOptions;
  /** One attempt to take a connection to the primary; throws AttemptFailure (phase 'connect'). */
  checkout(deadline: Deadline): Promise<Client>;
  /** Gives the connection back; with `failure`, it failed (reported, then closed). */
  giveBack(client: Client, failure?: unknown): void;
}

/**
 * The backend that was running the transaction: while the primary reports it 'in progress' (the
 * old connection is stuck in a partition, not reset, so its backend waits for a COMMIT that may
 * still arrive), terminating that backend decides the outcome at once. It is terminated only if
 * it still runs this very transaction, so a reused process id is left alone.
 */
export interface CommitFence {
  readonly pid: number;
}

/**
 * Asks the primary whether transaction `xid` committed, until the deadline. A standby's answer
 * is not trusted (it may lag); an id "in the future" on a new primary never reached it.
 */
export async function resolveCommit(host: CommitLookup, xid: string, deadline: Deadline, fence?: CommitFence): Promise<CommitOutcome> {
  for (let attempt = 0; !deadline.expired(); attempt += 1) {
    let client: Client | undefined;
    try {
      client = await host.checkout(deadline);
      const res = await client.query<{ standby: boolean; status: string | null }>(
        'SELECT pg_is_in_recovery() AS standby, txid_status($1::bigint) AS status',
        [xid],
      );
      const row = res.rows[0];
      if (row !== undefined && !row.standby && row.status === 'in progress' && fence !== undefined) {
        // The xid's low 32 bits are what pg_stat_activity shows (txid_current adds the epoch).
        await client.query(
          'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid = $1 AND backend_xid::text::bigint = ($2::bigint % 4294967296)',
          [fence.pid, xid],
        ).catch(() => undefined); // not allowed (another role's backend): wait for it instead
      }
      host.giveBack(client);
      client = undefined;
      if (row !== undefined && !row.standby) {
        if (row.status === 'committed') return 'committed';
        if (row.status === 'aborted') return 'aborted';
        if (row.status === null) return 'unknown'; // too old to know (wraparound horizon)
        // 'in progress': the old primary is still finishing COMMIT; ask again shortly.
      }
    } catch (err) {
      const failure = err instanceof AttemptFailure ? err.failure : err;
      if (client !== undefined) host.giveBack(client, failure);
      if ((failure as { code?: unknown }).code === '22023' && /in the future/.test(String((failure as Error).message))) {
        return 'aborted'; // the new primary never saw this transaction
      }
      const c = classify(failure);
      if (!c.transient && c.category !== 'pool') return 'unknown';
    }
    const delay = fullJitterDelay(attempt, host.options.retry, host.options.random);
    if (deadline.remainingMs() <= delay) break;
    await deadline.sleep(delay);
  }
  return 'unknown';
}

/** A server ERROR (not FATAL): the server answered, the connection lives, the transaction is rolled back. */
export function isServerRejection(err: unknown): boolean {
  const e = err as { severity?: unknown };
  return typeof e === 'object' && e !== null && e.severity === 'ERROR';
}

export function outcomeUnknownError(xid: string | undefined, failure: unknown): TransactionOutcomeUnknownError {
  const lookUp = xid === undefined
    ? 'its id had not reached us either, so it cannot be looked up'
    : `look it up with SELECT txid_status(${xid})`;
  return new TransactionOutcomeUnknownError(
    `pg-resilient: the connection was lost during COMMIT${xid === undefined ? '' : ` of transaction ${xid}`} and the primary could not be asked in time (${describeError(failure)}); ${lookUp}`,
    xid,
    failure,
  );
}

/**
 * PGR_TRANSACTION_ROLLED_BACK. The code is in the message too: some ORMs keep only the message
 * of a driver's error (`retryable` looks there as well).
 */
export function rolledBackError(why: string, cause: unknown, fields: Record<string, unknown> = {}): PgResilientError {
  return new PgResilientError(
    ErrorCodes.TRANSACTION_ROLLED_BACK,
    `pg-resilient: ${ErrorCodes.TRANSACTION_ROLLED_BACK}: the transaction did not commit (${why}; ${describeError(cause)}); nothing of it was applied, and running it again is safe`,
    { cause, ...fields },
  );
}
