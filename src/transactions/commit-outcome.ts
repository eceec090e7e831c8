import type { Client } from 'pg';
import { ErrorCodes, PgResilientError, TransactionOutcomeUnknownError, describeError, transactionOutcomeUnknownError } from '../errors.ts';
import type { ResolvedOptions } from '../options.ts';
import { repeatWithBackoff } from '../policy/call-policy.ts';
import type { Deadline } from '../policy/deadline.ts';
import { AttemptFailure, classificationOf } from '../policy/retry.ts';
import { forkPoint } from './fork-point.ts';
import { readPosition } from './primary-position.ts';
import { forkVerdict, formatLsn, type TimelineSwitch, type WalPosition } from './timeline.ts';

/** The outcome of a COMMIT whose connection was lost, as the primary tells it. */
export type CommitOutcome = 'committed' | 'aborted' | 'unknown';

/** The outcome, with what it rests on: the timelines compared, and the fork point if one was used. */
export interface CommitResolution {
  readonly outcome: CommitOutcome;
  /** The asked primary's timeline (undefined when no primary answered). */
  readonly currentTimeline?: number | undefined;
  /** Where the transaction's timeline ended in the asked primary's history, after a failover. */
  readonly forkLsn?: string | undefined;
  /** Why the answer is 'unknown', for the error. */
  readonly why?: string | undefined;
}

/** What asking the primary needs: a connection to it (one attempt), and a way to give it back. */
export interface CommitLookup {
  readonly options: ResolvedOptions;
  /** One attempt to take a connection to the primary; throws AttemptFailure (phase 'connect'). */
  checkout(deadline: Deadline): Promise<Client>;
  /** Gives the connection back; with `failure`, it failed (reported, then closed). */
  giveBack(client: Client, failure?: unknown): void;
  /** Patroni's timeline history (`GET /history`), in Patroni mode. */
  patroniHistory?(): Promise<readonly TimelineSwitch[] | undefined>;
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
 * Asks the primary whether transaction `xid`, which wrote up to `at` (timeline.ts), committed,
 * until the deadline. A standby's answer is not trusted (it may lag). After a failover the
 * primary's own history decides whether its `txid_status` speaks of this transaction at all
 * (forkVerdict): a fork before `at` proves the transaction is not there, and an unknown fork
 * point makes the answer 'unknown', never a guess.
 */
export async function resolveCommit(host: CommitLookup, xid: string, at: WalPosition | undefined, deadline: Deadline, fence?: CommitFence): Promise<CommitResolution> {
  let why = 'no primary answered in time';
  // One question to the primary: its answer, or undefined to ask again after a pause.
  const ask = async (): Promise<CommitResolution | undefined> => {
    let client: Client | undefined;
    try {
      client = await host.checkout(deadline);
      const where = await readPosition(client);
      if (!where.standby) {
        const currentTimeline = where.at?.timeline;
        let forkLsn: bigint | undefined;
        if (at !== undefined && currentTimeline !== undefined && currentTimeline !== at.timeline) {
          forkLsn = await forkPoint(host, client, at.timeline, currentTimeline);
        }
        const verdict = forkVerdict(at, currentTimeline, forkLsn);
        const fork = forkLsn === undefined ? undefined : formatLsn(forkLsn);
        if (verdict === 'absent') {
          host.giveBack(client);
          return { outcome: 'aborted', currentTimeline, forkLsn: fork };
        }
        if (verdict === 'unknown') {
          host.giveBack(client);
          return {
            outcome: 'unknown',
            currentTimeline,
            why: at === undefined
              ? 'the transaction\'s timeline was not read'
              : `the primary is on timeline ${currentTimeline ?? '?'} and the point where timeline ${at.timeline} ended could not be learned (no Patroni /history, and the role may not read pg_wal)`,
          };
        }
        const status = await statusOf(client, xid, fence);
        host.giveBack(client);
        client = undefined;
        if (status === 'committed' || status === 'aborted') return { outcome: status, currentTimeline, forkLsn: fork };
        if (status === null) return { outcome: 'unknown', currentTimeline, why: 'the id is older than the server remembers' };
        // 'in progress': the old primary is still finishing COMMIT; ask again shortly.
        why = 'the transaction was still in progress';
      } else {
        host.giveBack(client);
        client = undefined;
        why = 'only a standby answered';
      }
    } catch (err) {
      const failure = err instanceof AttemptFailure ? err.failure : err;
      if (client !== undefined) host.giveBack(client, failure);
      if ((failure as { code?: unknown }).code === '22023' && /in the future/.test(String((failure as Error).message))) {
        return { outcome: 'aborted' }; // the new primary never saw this transaction
      }
      const c = classificationOf(failure);
      if (!c.transient && c.category !== 'pool') return { outcome: 'unknown', why: describeError(failure) };
    }
    return undefined;
  };
  // Asked until the deadline, with the policy's backoff between questions.
  const done = await repeatWithBackoff<CommitResolution>({ deadline, backoff: host.options.retry, random: host.options.random }, async () => {
    if (deadline.expired()) return { value: { outcome: 'unknown', why } };
    const answer = await ask();
    return answer === undefined ? 'again' : { value: answer };
  });
  return done === 'again' ? { outcome: 'unknown', why } : done.value;
}

/** `txid_status(xid)` on the primary, terminating the transaction's own backend if it still waits. */
async function statusOf(client: Client, xid: string, fence: CommitFence | undefined): Promise<string | null | undefined> {
  const status = (await client.query<{ status: string | null }>('SELECT txid_status($1::bigint) AS status', [xid])).rows[0]?.status;
  if (status === 'in progress' && fence !== undefined) {
    // The xid's low 32 bits are what pg_stat_activity shows (txid_current adds the epoch).
    await client.query(
      'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid = $1 AND backend_xid::text::bigint = ($2::bigint % 4294967296)',
      [fence.pid, xid],
    ).catch(() => undefined); // not allowed (another role's backend): wait for it instead
  }
  return status;
}

/** A server ERROR (not FATAL): the server answered, the connection lives, the transaction is rolled back. */
export function isServerRejection(err: unknown): boolean {
  const e = err as { severity?: unknown };
  return typeof e === 'object' && e !== null && e.severity === 'ERROR';
}

export function outcomeUnknownError(xid: string | undefined, failure: unknown, resolution?: CommitResolution, at?: WalPosition): TransactionOutcomeUnknownError {
  const lookUp = xid === undefined
    ? 'its id had not reached us either, so it cannot be looked up'
    : at !== undefined && resolution?.currentTimeline !== undefined && resolution.currentTimeline !== at.timeline
      ? `it ran on timeline ${at.timeline} up to ${at.lsn}; the primary is now on timeline ${resolution.currentTimeline}, where txid_status(${xid}) may name another transaction`
      : `look it up with SELECT txid_status(${xid})`;
  const why = resolution?.why ?? 'the primary could not be asked in time';
  return transactionOutcomeUnknownError('during COMMIT', why, lookUp, xid, failure, { timeline: at?.timeline, currentTimeline: resolution?.currentTimeline });
}
