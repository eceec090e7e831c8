import type { Client } from 'pg';
import { ErrorCodes, PgResilientError } from '../errors.ts';
import { isServerRejection } from './commit-outcome.ts';
import { digestError, digestResult } from './digest.ts';
import type { RecordedStatement } from './record.ts';

/**
 * Runs a recorded transaction again on `client` (a fresh connection, session settings applied),
 * statement by statement from the one that began it, and compares each result with what the
 * application was given. Returns the index of the first statement whose result differs, or -1
 * when all are the same (the transaction is then open on `client`, in the state the application
 * left it). A lost connection is thrown as it comes (the caller tries again elsewhere).
 */
export async function replayOn(client: Client, entries: readonly RecordedStatement[]): Promise<number> {
  for (let i = 0; i < entries.length; i += 1) {
    const entry = entries[i]!;
    let digest: string | undefined;
    try {
      digest = digestResult(await client.query(entry.config));
    } catch (err) {
      if (!isServerRejection(err)) throw err;
      digest = digestError(err);
    }
    if (digest !== entry.digest) return i;
  }
  return -1;
}

/** PGR_REPLAY_DIVERGED (the code is in the message too, for ORMs that keep only the message). */
export function divergedError(index: number, text: string | undefined, cause: unknown): PgResilientError {
  // Only the statement's first word: its text may hold values that must not reach logs.
  const command = /^\s*([a-z]+)/i.exec(text ?? '')?.[1]?.toUpperCase() ?? '?';
  return new PgResilientError(
    ErrorCodes.REPLAY_DIVERGED,
    `pg-resilient: ${ErrorCodes.REPLAY_DIVERGED}: the connection was lost inside a transaction, and replayed on a new connection its statement #${index} (${command} …) returned something other than what the application had been given; the replay was rolled back, nothing of the transaction was applied, and running it again is safe`,
    { cause, statementIndex: index },
  );
}
