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
