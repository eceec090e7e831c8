import type { Classification } from './classify.ts';

/**
 * Where a failure happened, which decides what the server may have done:
 * - `connect`: before any statement was written (acquiring or opening a connection);
 * - `query`:   while a statement was in flight;
 * - `commit`:  while COMMIT was in flight (only `pool.transaction()` resolves this case).
 */
export type FailurePhase = 'connect' | 'query' | 'commit';

/** What `retrySafety` decides from. */
export interface RetrySafetyInput {
  /** The failure, as `classify` read it. */
  readonly classification: Classification;
  /** Where it happened. */
  readonly phase: FailurePhase;
  /** The caller said the statement may run twice (`idempotent: true`), or it is a read. */
  readonly idempotent: boolean;
}

/** `retrySafety`'s answer. */
export interface RetrySafetyDecision {
  /** May the work be attempted again? */
  readonly retry: boolean;
  /** Why, in a few words; shown in `retry`/`giveUp` events. */
  readonly reason:
    | 'not-transient'
    | 'never-sent'
    | 'rejected-without-effect'
    | 'idempotent'
    | 'may-have-taken-effect';
}

/**
 * "May this be retried?" — separate from "is it transient?", because it also needs where the
 * failure happened and whether the work may run twice. The rule, in order:
 * 1. a failure that is not worth waiting for is never retried;
 * 2. a failure before the statement was sent is retried (it cannot have run);
 * 3. a server rejection that proves the statement had no effect (57P03, 53300, 25006, 40001 in
 *    autocommit, PgBouncer's "server login has been failing" and query_wait_timeout, …) is
 *    retried, even when it came back after the statement was sent;
 * 4. anything that may have taken effect is retried only when the work is idempotent.
 * A plain write is therefore never run twice.
 */
export function retrySafety(input: RetrySafetyInput): RetrySafetyDecision {
  const { classification: c, phase, idempotent } = input;
  if (!c.transient) return { retry: false, reason: 'not-transient' };
  if (phase === 'connect') return { retry: true, reason: 'never-sent' };
  if (c.effect === 'none' && phase === 'query') return { retry: true, reason: 'rejected-without-effect' };
  if (idempotent) return { retry: true, reason: 'idempotent' };
  return { retry: false, reason: 'may-have-taken-effect' };
}

/** What `namedStatementRecovery` decides from. */
export interface NamedStatementInput {
  /** The failure, as `classify` read it. */
  readonly classification: Classification;
  /**
   * The statement's name is derived from its text (a hash), so one name means one text on
   * every connection. Names chosen by the application (`query({ name, text })`) are not.
   */
  readonly nameFromText: boolean;
  /** The connection was inside a transaction block: the failure aborted it. */
  readonly inTransaction: boolean;
}

/**
 * What to do when a named statement failed with 26000 (does not exist) or 42P05 (already
 * exists), which behind a transaction pooler (PgBouncer before 1.21, or later ones with
 * `max_prepared_statements = 0`) means the statement met a server connection other than the one
 * it was prepared on. Nothing ran, so running it again is safe even for a write, but only
 * outside a transaction block (inside one the error aborted the transaction: the whole
 * transaction must run again, which is `pool.transaction()`'s business). In order:
 * - `send-unnamed` for names chosen by the application: another client may have prepared a
 *   different text under the same name on that server connection, and a Bind that meets it runs
 *   that other text without any error (measured through PgBouncer 1.18: a client asking for
 *   `SELECT 2 AS b` got `{ a: 1 }`). The only safe course is to stop naming statements on
 *   this pool and run this one unnamed.
 * - `parse-again` on 26000 with text-derived names: forget pg's record of the name and send
 *   Parse+Bind+Execute again; they reach one server connection together (one Sync).
 * - `close-and-parse` on 42P05 with text-derived names: that server connection holds a statement
 *   of this name that pg lost track of; write a Close for it before the Parse (same Sync, same
 *   server connection). These two are what src/prepared/cache.ts `recover` does for its own
 *   `pgr_` statements.
 * Anything else: undefined (not a named-statement failure, or inside a transaction).
 */
export function namedStatementRecovery(input: NamedStatementInput): 'send-unnamed' | 'parse-again' | 'close-and-parse' | undefined {
  const { classification: c, nameFromText, inTransaction } = input;
  if (c.category !== 'prepared-statement' || !c.connectionUsable || inTransaction) return undefined;
  if (!nameFromText) return 'send-unnamed';
  if (c.code === '26000') return 'parse-again';
  if (c.code === '42P05') return 'close-and-parse';
  return undefined;
}
