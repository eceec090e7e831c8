import { splitStatements, underBothSettings, type Token } from './sql-lexer.ts';

/**
 * May a statement share a connection with others in flight (pipelining, src/pool/pipeline.ts)?
 *
 * Pipelined statements are written behind each other before the first is answered; each ends
 * in its own Sync (or is its own simple-protocol Query), so each is still its own implicit
 * transaction and an error in one skips none of the others. What pipelining must never do is
 * put a statement behind one that leaves the session inside a transaction block: it would run
 * inside somebody else's transaction, and be rolled back with it after reporting success. Nor
 * behind COPY, whose protocol sub-mode takes over the connection.
 *
 * The rule: cut as PostgreSQL's lexer cuts it (src/classify/sql-lexer.ts), the text is one
 * statement (a trailing `;` is allowed; a backslash in a plain string must give the same answer
 * under both settings of standard_conforming_strings) that starts, after any `(`, with SELECT, WITH, VALUES, TABLE, SHOW, INSERT, UPDATE, DELETE or
 * MERGE. Everything else (BEGIN, START TRANSACTION, COMMIT, COPY, SET, DDL, CALL, DO, several
 * statements in one text, …) runs alone on its connection, as it always did. A function
 * cannot open a transaction block, so what a SELECT calls does not matter here.
 */
export function mayPipeline(text: string): boolean {
  const known = cache.get(text);
  if (known !== undefined) return known;
  const answer = judge(text);
  if (text.length <= 4096) {
    if (cache.size >= CACHE_SIZE) cache.delete(cache.keys().next().value!);
    cache.set(text, answer);
  }
  return answer;
}

const PIPELINABLE = new Set(['select', 'with', 'values', 'table', 'show', 'insert', 'update', 'delete', 'merge']);
const CACHE_SIZE = 1000;
const cache = new Map<string, boolean>();

function judge(text: string): boolean {
  if (typeof text !== 'string') return false;
  // A backslash in a plain string: both settings of standard_conforming_strings must agree.
  const readings = underBothSettings(text, pipelinable);
  return readings.length > 0 && readings.every((ok) => ok);
}

function pipelinable(tokens: readonly Token[]): boolean {
  const statements = splitStatements(tokens);
  if (statements.length !== 1) return false;
  const statement = statements[0]!;
  // A parenthesised query, `(SELECT 1) UNION (SELECT 2)`, starts with its first keyword too.
  let first = 0;
  while (statement[first]?.kind === 'punct' && statement[first]!.value === '(') first += 1;
  const head = statement[first];
  return head !== undefined && head.kind === 'word' && PIPELINABLE.has(head.value);
}
