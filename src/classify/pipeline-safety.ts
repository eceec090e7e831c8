import { stripLiteralsAndComments } from './retry-safety.ts';

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
 * The rule: after removing comments and literals the text is one statement (a trailing `;` is
 * allowed) that starts with SELECT, WITH, VALUES, TABLE, SHOW, INSERT, UPDATE, DELETE or
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
  const bare = stripLiteralsAndComments(text).trim().replace(/;\s*$/, '');
  if (bare.includes(';')) return false;
  // A parenthesised query, `(SELECT 1) UNION (SELECT 2)`, starts with its first keyword too.
  const first = /^\(*\s*([a-z]+)/i.exec(bare)?.[1]?.toLowerCase();
  return first !== undefined && PIPELINABLE.has(first);
}
