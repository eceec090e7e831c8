import { SIDE_EFFECT_FUNCTIONS, calledFunctions, type FunctionName } from './function-calls.ts';
import { splitStatements, underBothSettings, type Token } from './sql-lexer.ts';

const READ_FIRST = new Set(['select', 'show', 'values', 'table', 'with', 'explain']);
/**
 * Words of writes, locks and transaction control. Seen anywhere in the statement as a keyword
 * (unquoted word; a quoted "insert" is a name) they make it "not a read". SHARE and UPDATE catch
 * every locking clause (FOR UPDATE, FOR NO KEY UPDATE, FOR SHARE, FOR KEY SHARE). Statements
 * that can only be first in a text (START, END, ABORT, FETCH, …) are refused by the first word.
 */
const WRITE_WORDS = new Set([
  'insert', 'update', 'delete', 'merge', 'into', 'create', 'drop', 'alter', 'truncate', 'grant', 'revoke', 'copy',
  'call', 'do', 'lock', 'share', 'vacuum', 'analyze', 'analyse', 'refresh', 'cluster', 'reindex', 'listen',
  'notify', 'set', 'reset', 'discard', 'prepare', 'execute', 'begin', 'commit', 'rollback', 'savepoint',
]);

/**
 * The documented rule for recognising a read from its text alone (a read is retried like an
 * idempotent statement when the connection is lost mid-flight). The text, cut as PostgreSQL's
 * lexer cuts it (src/classify/sql-lexer.ts), is one statement (a trailing `;` is allowed) that
 * starts, after any `(`, with SELECT, SHOW, VALUES, TABLE, WITH or EXPLAIN (without ANALYZE); no
 * keyword in it is one of writes, locks or transaction control (INSERT, UPDATE, DELETE, MERGE,
 * INTO, CREATE, …, SHARE, SET, BEGIN, COMMIT), and it calls no function known to change state
 * (nextval, setval, advisory locks, pg_notify, set_config, txid_current, …). A text with a
 * backslash in a plain string must be a read under both settings of standard_conforming_strings.
 *
 * The pool goes one step further before it runs a read again: every function the read calls
 * must be STABLE or IMMUTABLE on the server (or a documented volatile built-in without side
 * effects); see `readFunctions` and docs/retry-safety.md.
 */
export function isRecognisedRead(text: string): boolean {
  return readFunctions(text) !== undefined;
}

/**
 * For a text the read rule recognises, the functions it calls (empty: none); undefined for any
 * other text. Statement texts repeat (parameterised queries): the answer is remembered for
 * the common ones.
 */
export function readFunctions(text: string): readonly FunctionName[] | undefined {
  const known = readCache.get(text);
  if (known !== undefined) return known === false ? undefined : known;
  const answer = judgeRead(text);
  if (typeof text === 'string' && text.length <= 4096) {
    if (readCache.size >= READ_CACHE_SIZE) readCache.delete(readCache.keys().next().value!);
    readCache.set(text, answer ?? false);
  }
  return answer;
}

const READ_CACHE_SIZE = 1000;
const readCache = new Map<string, readonly FunctionName[] | false>();
const NONE: readonly FunctionName[] = Object.freeze([]);

function judgeRead(text: string): readonly FunctionName[] | undefined {
  if (typeof text !== 'string') return undefined;
  // A backslash in a plain string: a read only if it is one with standard_conforming_strings
  // off too (a setting under which the server cannot lex the text runs nothing).
  const readings = underBothSettings(text, readIn);
  if (readings.length === 0 || readings.some((r) => r === undefined)) return undefined;
  if (readings.length === 1) return readings[0];
  const functions = [...readings[0]!];
  for (const f of readings[1]!) if (!functions.some((g) => g.name === f.name && g.schema === f.schema)) functions.push(f);
  return functions;
}

function readIn(tokens: readonly Token[]): readonly FunctionName[] | undefined {
  const statements = splitStatements(tokens);
  if (statements.length !== 1) return undefined;
  const statement = statements[0]!;
  if (!isReadStatement(statement)) return undefined;
  const functions = calledFunctions(statement);
  if (functions.some((f) => SIDE_EFFECT_FUNCTIONS.test(f.name))) return undefined;
  return functions.length === 0 ? NONE : functions;
}

function isReadStatement(tokens: readonly Token[]): boolean {
  let first = 0;
  while (tokens[first]?.kind === 'punct' && tokens[first]!.value === '(') first += 1;
  const head = tokens[first];
  if (head === undefined || head.kind !== 'word' || !READ_FIRST.has(head.value)) return false;
  // A `(` can only open a query: `(SHOW x)` or `(EXPLAIN …)` is not one.
  if (first > 0 && head.value !== 'select' && head.value !== 'values' && head.value !== 'table' && head.value !== 'with') return false;
  for (const t of tokens) if (t.kind === 'word' && WRITE_WORDS.has(t.value)) return false;
  return true;
}
