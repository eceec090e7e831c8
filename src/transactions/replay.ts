import type { Client } from 'pg';
import { PgResilientError, replayDivergedError } from '../errors.ts';
import { isServerRejection } from './commit-outcome.ts';
import { digestError, digestResult } from './digest.ts';
import type { RecordedStatement } from './record.ts';

/** Where a replay came out different: the statement, and the SQLSTATE if it failed this time. */
export interface Divergence {
  readonly index: number;
  readonly sqlstate: string | undefined;
}

/**
 * Runs a recorded transaction again on `client` (a fresh connection, session settings applied),
 * statement by statement from the one that began it, and compares each result with what the
 * application was given. Returns the first statement whose result differs, or undefined when all
 * are the same (the transaction is then open on `client`, in the state the application left it).
 * A lost connection is thrown as it comes (the caller tries again elsewhere), and so is a write
 * refused by a server that is not the primary (25006: a standby, or a primary being demoted):
 * that says where the replay ran, not what the transaction sees.
 */
export async function replayOn(client: Client, entries: readonly RecordedStatement[]): Promise<Divergence | undefined> {
  for (let i = 0; i < entries.length; i += 1) {
    const entry = entries[i]!;
    let digest: string | undefined;
    let sqlstate: string | undefined;
    try {
      digest = digestResult(await client.query(entry.config));
    } catch (err) {
      if (!isServerRejection(err)) throw err;
      digest = digestError(err);
      sqlstate = String((err as { code?: unknown }).code);
      if (sqlstate === '25006' && digest !== entry.digest) throw err;
    }
    if (digest !== entry.digest) return { index: i, sqlstate };
  }
  return undefined;
}

/** PGR_REPLAY_DIVERGED (the code is in the message too, for ORMs that keep only the message). */
export function divergedError(index: number, text: string | undefined, cause: unknown): PgResilientError {
  // Only the statement's first word: its text may hold values that must not reach logs.
  const command = /^\s*([a-z]+)/i.exec(text ?? '')?.[1]?.toUpperCase() ?? '?';
  return replayDivergedError(index, command, cause);
}
