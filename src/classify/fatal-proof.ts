/**
 * What a FATAL proves (docs/what-a-fatal-proves.md): when the server answers a statement that
 * started outside any transaction block with an ErrorResponse 57P01/57P02/57P03 (or 40001/40P01)
 * before the statement's first CommandComplete, the statement's implicit transaction did not
 * commit. PostgreSQL commits an implicit transaction in `finish_xact_command`, and:
 * - simple protocol: the commit is followed, with no interrupt check in between, by the
 *   statement's CommandComplete (exec_simple_query closes the transaction "before reporting
 *   command-complete"); a COMMIT inside a text sends its own CommandComplete the same way;
 * - extended protocol: a plain statement commits at Sync, after its Execute's CommandComplete;
 *   a transaction-control or immediate-commit statement commits before its CommandComplete,
 *   as in the simple protocol;
 * - while CommitTransaction runs, interrupts are held, so `die()` cannot turn into a FATAL
 *   between the commit record and the end of the commit; during a synchronous-replication wait
 *   a terminated backend sends a WARNING ("already committed locally") and closes without any
 *   ErrorResponse (syncrep.c sets whereToSendOutput to DestNone).
 * So a FATAL seen before any CommandComplete was emitted before any commit point. The rule
 * refuses texts whose first statement can commit in the middle of itself (CALL and DO run
 * procedures that may COMMIT; COMMIT PREPARED, VACUUM, CREATE INDEX CONCURRENTLY … commit on
 * their own) by accepting only statements that begin with a DML/query keyword.
 */

/** What pg handed us about the failed statement, read when its ErrorResponse arrived. */
export interface FatalEvidence {
  /** The statement's text as sent. */
  readonly text: string;
  /**
   * The transaction status of the ReadyForQuery before the statement ('I' idle, 'T' in a
   * transaction block, 'E' failed one; null when unknown). Only 'I' can prove anything: inside
   * a block the FATAL aborts the whole transaction, which is the transaction code's business.
   */
  readonly statusBefore: string | null;
  /** CommandComplete messages the statement received before the error. */
  readonly completions: number;
  /**
   * A notice on this connection said a commit had already happened locally (a terminated or
   * cancelled synchronous-replication wait: WARNING 57P01/57014, "already committed locally").
   */
  readonly committedLocally: boolean;
}

/** The server error, as pg's DatabaseError carries it. */
export interface ServerErrorFields {
  readonly code: string | undefined;
  readonly severity: string | undefined;
}

/** ErrorResponses sent by a backend that is going away (die(), crash, start-up/shut-down). */
const SESSION_ENDING_CODES = new Set(['57P01', '57P02', '57P03']);
/** Transaction rollbacks: the implicit transaction is aborted, whatever the severity. */
const ROLLBACK_CODES = new Set(['40001', '40P01']);
/**
 * First keywords of statements that run entirely inside the implicit transaction: nothing they
 * do commits before the transaction's own commit point. Everything else (CALL, DO, COMMIT
 * PREPARED, VACUUM, CREATE INDEX CONCURRENTLY, …) is refused: it may commit part of itself.
 */
const TRANSACTIONAL_FIRST_WORDS = new Set(['select', 'insert', 'update', 'delete', 'merge', 'with', 'values', 'table']);

export type FatalVerdict =
  | 'proven-no-effect'
  | 'not-a-proof-code' // not 57P01/57P02/57P03/40001/40P01
  | 'in-transaction-block' // the statement did not start idle
  | 'completed-before' // a CommandComplete came first: a commit point may have passed
  | 'committed-locally' // the sync-rep WARNING: the commit record is written
  | 'may-commit-itself'; // CALL, DO, or anything not plainly transactional

/**
 * Did this ErrorResponse prove that the statement's implicit transaction was aborted? Pure;
 * `err` must be an ErrorResponse the server sent for this very statement (before its
 * ReadyForQuery), which is what the evidence's presence says (src/pool/fatal-evidence.ts).
 */
export function judgeFatal(err: ServerErrorFields, ev: FatalEvidence): FatalVerdict {
  const code = err.code ?? '';
  const sessionEnding = SESSION_ENDING_CODES.has(code) && err.severity !== 'WARNING' && err.severity !== 'NOTICE';
  if (!sessionEnding && !ROLLBACK_CODES.has(code)) return 'not-a-proof-code';
  if (ev.statusBefore !== 'I') return 'in-transaction-block';
  if (ev.committedLocally) return 'committed-locally';
  if (ev.completions > 0) return 'completed-before';
  const first = firstKeyword(ev.text);
  if (first === undefined || !TRANSACTIONAL_FIRST_WORDS.has(first)) return 'may-commit-itself';
  return 'proven-no-effect';
}

/**
 * The first keyword of `text`, lower-cased, after whitespace and comments (`--` to the end of
 * the line; `/* … *\/` nested, as PostgreSQL's lexer nests them). Undefined when the text
 * starts with anything else (a parenthesis, a literal, a mis-closed comment).
 */
export function firstKeyword(text: string): string | undefined {
  let i = 0;
  const n = text.length;
  while (i < n) {
    const ch = text.charCodeAt(i);
    if (ch === 32 || (ch >= 9 && ch <= 13)) {
      i += 1;
    } else if (ch === 45 && text.charCodeAt(i + 1) === 45) {
      const end = text.indexOf('\n', i);
      if (end === -1) return undefined;
      i = end + 1;
    } else if (ch === 47 && text.charCodeAt(i + 1) === 42) {
      let depth = 1;
      i += 2;
      while (i < n && depth > 0) {
        if (text.charCodeAt(i) === 47 && text.charCodeAt(i + 1) === 42) {
          depth += 1;
          i += 2;
        } else if (text.charCodeAt(i) === 42 && text.charCodeAt(i + 1) === 47) {
          depth -= 1;
          i += 2;
        } else i += 1;
      }
      if (depth > 0) return undefined;
    } else break;
  }
  const word = /^[A-Za-z_]+/.exec(text.slice(i, i + 16))?.[0];
  // A keyword must end there: `selectx` is an identifier, not SELECT.
  if (word === undefined) return undefined;
  const next = text.charAt(i + word.length);
  if (/[A-Za-z0-9_$]/.test(next)) return undefined;
  return word.toLowerCase();
}

/** Where the evidence rides on pg's error object (non-enumerable, so it never shows in logs). */
export const FATAL_EVIDENCE: unique symbol = Symbol.for('pg-resilient.fatal-evidence') as never;

/** The evidence stamped on `err` when its ErrorResponse arrived, if any. */
export function evidenceOf(err: unknown): FatalEvidence | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  return (err as { [FATAL_EVIDENCE]?: FatalEvidence })[FATAL_EVIDENCE];
}

/** classify()'s question: does `err` carry evidence that proves the statement had no effect? */
export function provenNoEffect(err: unknown): boolean {
  const ev = evidenceOf(err);
  if (ev === undefined) return false;
  const e = err as { code?: unknown; severity?: unknown };
  return judgeFatal({ code: typeof e.code === 'string' ? e.code : undefined, severity: typeof e.severity === 'string' ? e.severity : undefined }, ev) === 'proven-no-effect';
}

/**
 * For the transaction code (commit resolution), not used by the pool itself: an ErrorResponse
 * 57P01/57P02/57P03 received for a COMMIT (of a transaction block) before its CommandComplete,
 * with no "committed locally" warning on the connection, proves the transaction rolled back.
 * CommitTransaction holds interrupts from before its commit record until it returns, and
 * finish_xact_command sends CommandComplete right after with no interrupt check in between; a
 * die() during the synchronous-replication wait sends only a WARNING and no ErrorResponse.
 */
export function commitFatalProvesRollback(err: ServerErrorFields, ev: FatalEvidence): boolean {
  if (!SESSION_ENDING_CODES.has(err.code ?? '') || err.severity === 'WARNING' || err.severity === 'NOTICE') return false;
  return ev.completions === 0 && !ev.committedLocally;
}

/** `commitFatalProvesRollback` for an error as it reached the caller (false without evidence). */
export function fatalProvesRollback(err: unknown): boolean {
  const ev = evidenceOf(err);
  if (ev === undefined) return false;
  const e = err as { code?: unknown; severity?: unknown };
  return commitFatalProvesRollback({ code: typeof e.code === 'string' ? e.code : undefined, severity: typeof e.severity === 'string' ? e.severity : undefined }, ev);
}
