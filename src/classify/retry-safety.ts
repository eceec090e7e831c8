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

// Functions that change state even when called from a SELECT.
const SIDE_EFFECT_FUNCTIONS = /\b(nextval|setval|pg_advisory_(?:xact_)?lock\w*|pg_try_advisory\w*|pg_notify|set_config|pg_terminate_backend|pg_cancel_backend|pg_reload_conf|pg_switch_wal|lo_\w+|dblink\w*|txid_current|pg_current_xact_id)\s*\(/i;
const READ_KEYWORDS = new Set(['select', 'show', 'values', 'table', 'with', 'explain']);
const WRITE_WORDS = /\b(insert|update|delete|merge|into|create|drop|alter|truncate|grant|revoke|copy|call|do|lock|vacuum|analyze|refresh|cluster|reindex|listen|notify|set|reset|discard|prepare|execute|begin|commit|rollback|savepoint)\b/i;

/**
 * The documented rule for recognising a read (retried like an idempotent statement when the
 * connection is lost mid-flight): after removing comments, string literals and quoted
 * identifiers, the text is one statement that starts with SELECT, SHOW, VALUES, TABLE, WITH or
 * EXPLAIN (without ANALYZE), contains none of the words of writes or transaction control
 * (INSERT, UPDATE, DELETE, MERGE, INTO, CREATE, …, SET, BEGIN, COMMIT), and calls no function
 * known to change state (nextval, setval, advisory locks, pg_notify, set_config, …).
 * A SELECT calling your own function with side effects is not detectable: pass
 * `idempotent: false` for it.
 */
export function isRecognisedRead(text: string): boolean {
  // Statement texts repeat (parameterised queries): remember the answer for the common ones.
  const known = readCache.get(text);
  if (known !== undefined) return known;
  const answer = judgeRead(text);
  if (text.length <= 4096) {
    if (readCache.size >= READ_CACHE_SIZE) readCache.delete(readCache.keys().next().value!);
    readCache.set(text, answer);
  }
  return answer;
}

const READ_CACHE_SIZE = 1000;
const readCache = new Map<string, boolean>();

function judgeRead(text: string): boolean {
  const bare = stripLiteralsAndComments(text).trim().replace(/;\s*$/, '');
  if (bare.includes(';')) return false; // several statements: not one read
  const first = /^[a-z]+/i.exec(bare)?.[0]?.toLowerCase();
  if (first === undefined || !READ_KEYWORDS.has(first)) return false;
  if (first === 'explain' && /\banalyze\b/i.test(bare)) return false;
  if (WRITE_WORDS.test(bare)) return false;
  return !SIDE_EFFECT_FUNCTIONS.test(bare);
}

/** Removes '…', E'…', $tag$…$tag$, "…", -- and /* *\/ comments; keeps everything else. */
export function stripLiteralsAndComments(text: string): string {
  let out = '';
  let i = 0;
  while (i < text.length) {
    const ch = text[i];
    const next = text[i + 1];
    if (ch === '-' && next === '-') {
      const end = text.indexOf('\n', i);
      i = end === -1 ? text.length : end;
    } else if (ch === '/' && next === '*') {
      const end = text.indexOf('*/', i + 2);
      i = end === -1 ? text.length : end + 2;
      out += ' ';
    } else if (ch === "'" || ch === '"') {
      // Doubled quotes escape themselves, so scanning to the next quote pair works for both.
      let j = i + 1;
      while (j < text.length) {
        if (text[j] === ch) {
          if (text[j + 1] === ch) j += 2;
          else break;
        } else if (ch === "'" && text[j] === '\\') j += 2; // E'' strings; harmless otherwise
        else j += 1;
      }
      i = j + 1;
      out += ch === '"' ? ' ident ' : ' lit ';
    } else if (ch === '$') {
      const tag = /^\$[A-Za-z_]*\$/.exec(text.slice(i))?.[0];
      if (tag === undefined) {
        out += ch;
        i += 1;
      } else {
        const end = text.indexOf(tag, i + tag.length);
        i = end === -1 ? text.length : end + tag.length;
        out += ' lit ';
      }
    } else {
      out += ch;
      i += 1;
    }
  }
  return out;
}
