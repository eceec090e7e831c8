import { isRecognisedRead } from '../classify/read-rule.ts';
import { statementSkeletons } from '../classify/sql-lexer.ts';

/**
 * How a text ends a transaction by committing it:
 * - `plain`: it is one COMMIT (`COMMIT`, `END`, `COMMIT WORK`, `COMMIT TRANSACTION`, with or
 *   without `;`), as every ORM sends it;
 * - `within`: one of several statements in the text is a COMMIT or END (`UPDATE …; COMMIT`);
 * - `none`: no COMMIT (COMMIT AND CHAIN and PREPARE TRANSACTION are not taken for one: the
 *   first keeps a transaction open, the second is bound to its connection).
 */
export type CommitKind = 'plain' | 'within' | 'none';

const PLAIN_COMMIT = /^\s*(commit|end)(\s+(work|transaction))?(\s+and\s+no\s+chain)?\s*;?\s*$/i;
const COMMIT_STATEMENT = /^\s*(commit|end)(\s+(work|transaction))?(\s+and\s+no\s+chain)?\s*$/i;

export function commitKind(text: string): CommitKind {
  if (PLAIN_COMMIT.test(text)) return 'plain';
  // Most texts mention neither word: one cheap test before any parsing.
  if (!/\b(commit|end)\b/i.test(text) || !text.includes(';')) return 'none';
  return (statementSkeletons(text) ?? []).some((s) => COMMIT_STATEMENT.test(s)) ? 'within' : 'none';
}

/**
 * A text that only opens a transaction (`BEGIN`, `START TRANSACTION`, with its modes): lost in
 * flight, it changed nothing (the server rolls back what it opened), so it may be sent again.
 */
export function isBeginOnly(text: string): boolean {
  return /^\s*(begin|start\s+transaction)(\s+(work|transaction))?(\s+[a-z ,]*)?\s*;?\s*$/i.test(text);
}

/**
 * What a text does to the transaction it runs in, beyond what the session follows already
 * (BEGIN, one COMMIT or ROLLBACK, a text that ends with its COMMIT):
 * - `chain-commit` / `chain-rollback`: it is one `COMMIT AND CHAIN` / `ROLLBACK AND CHAIN` (or
 *   END / ABORT …): the transaction ends and a new one with the same characteristics begins, so
 *   a replay must start at that point, never before it;
 * - `uncertain`: it may end the transaction and go on (`PREPARE TRANSACTION`, `COMMIT/ROLLBACK
 *   PREPARED`; several statements where something follows a COMMIT/ROLLBACK, or with an AND
 *   CHAIN): what of the transaction committed is not known to the recorder, so it is not
 *   replayed past this text;
 * - `routine`: a `CALL` or `DO` (no transaction control otherwise): what its body did is not in
 *   its result, so a replay could not be verified; it cannot commit (PostgreSQL refuses
 *   COMMIT/ROLLBACK in a procedure or DO block run inside a transaction block: 2D000);
 * - `none`: it stays within the transaction (or is one of the texts followed already).
 * Pure and cheap: one test for the key words before any parsing.
 */
export type TransactionControl = 'none' | 'chain-commit' | 'chain-rollback' | 'uncertain' | 'routine';

const CONTROL_WORDS = /\b(commit|end|rollback|abort|prepare|call|do)\b/i;
const CHAIN = /^\s*(commit|end|rollback|abort)(\s+(work|transaction))?\s+and\s+chain\s*$/i;
const ROUTINE = /^\s*(call|do)\b/i;
const TWO_PHASE = /^\s*(prepare\s+transaction|commit\s+prepared|rollback\s+prepared)\b/i;
const ENDS = /^\s*(commit|end|rollback|abort)\b/i;
const ROLLBACK_TO = /^\s*rollback(\s+(work|transaction))?\s+to\b/i;

export function transactionControl(text: string): TransactionControl {
  if (!CONTROL_WORDS.test(text)) return 'none';
  // `DO UPDATE`, `CASE … END` pass the cheap test: the parsed answer is cached for repeated texts.
  const known = controlCache.get(text);
  if (known !== undefined) return known;
  const answer = judgeControl(text);
  if (text.length <= 4096) {
    if (controlCache.size >= 1000) controlCache.delete(controlCache.keys().next().value!);
    controlCache.set(text, answer);
  }
  return answer;
}

const controlCache = new Map<string, TransactionControl>();

function judgeControl(text: string): TransactionControl {
  const statements = (statementSkeletons(text) ?? []).filter((s) => s.trim() !== '');
  if (statements.length === 1) {
    const s = statements[0]!;
    const chain = CHAIN.exec(s);
    if (chain !== null) return /^(commit|end)$/i.test(chain[1]!) ? 'chain-commit' : 'chain-rollback';
    return TWO_PHASE.test(s) ? 'uncertain' : ROUTINE.test(s) ? 'routine' : 'none';
  }
  let ended = false;
  let routine = false;
  for (const s of statements) {
    if (ended || TWO_PHASE.test(s) || CHAIN.test(s)) return 'uncertain';
    if (ENDS.test(s) && !ROLLBACK_TO.test(s)) ended = true;
    if (ROUTINE.test(s)) routine = true;
  }
  return routine ? 'routine' : 'none';
}

/**
 * A text that may change the characteristics a chained transaction inherits (isolation level,
 * read only, deferrable): a transaction chained after it cannot be begun again by its BEGIN
 * alone. Read on the raw text (a setting's name may be a string literal): a false alarm only
 * costs the replay of a chained transaction.
 */
export function mayChangeCharacteristics(text: string): boolean {
  return /transaction_(isolation|read_only|deferrable)|\bset\s+(session\s+characteristics|transaction)\b/i.test(text);
}

/** The first two words of a statement, for messages (its text may hold values). */
export function firstWords(text: string): string {
  const words = text.trim().split(/\s+/).slice(0, 2).join(' ').replace(/[^a-z_ ]/gi, '').toUpperCase();
  return words === '' ? 'a statement' : `a text beginning ${words}`;
}

/**
 * May this statement write (and so give the transaction its id)? Not for the texts the read rule
 * recognises, nor BEGIN, savepoints, SET and SHOW. A read that writes after all (a function
 * with side effects) leaves the id unknown; COMMIT then reads it in its own round trip.
 */
export function mayWrite(text: string): boolean {
  if (/^\s*(savepoint|release|rollback\s+to|set|show|reset)\b/i.test(text) || isBeginOnly(text)) return false;
  return !isRecognisedRead(text);
}
