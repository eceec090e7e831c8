import { statementSkeletons } from './sql-lexer.ts';

/**
 * What a statement does to the state of its session (its connection), beyond its transaction:
 * the rule that decides whether a checked-out client may move to a new connection after its
 * connection failed ("clean") or must end with it.
 *
 * - `none`: nothing that outlives the statement (queries, DML, DDL, BEGIN/COMMIT, SET LOCAL,
 *   transaction-scoped advisory locks).
 * - `replayable`: a session setting (`SET name …`, `RESET name`, `SET SESSION …`,
 *   `SET TIME ZONE …`, `SET search_path …`): the session records the text and runs it again on
 *   a new connection, so it stays clean.
 * - `bound`: state the server keeps for this connection only and that cannot be moved:
 *   `PREPARE`, `LISTEN`, temporary tables, sequences and views, session-level advisory locks,
 *   `DECLARE … WITH HOLD`, `set_config(…, false)`, `LOAD`, `RESET ALL`/`DISCARD` (what they reset is
 *   unknown to us). A session that ran one is no longer clean until it is released.
 */
export type SessionEffect = 'none' | 'replayable' | 'bound';

const BOUND_PATTERNS: readonly RegExp[] = [
  /^\s*prepare\b/i,
  /^\s*(listen|unlisten)\b/i,
  /^\s*create\s+(global\s+|local\s+)?(temp|temporary)\b/i,
  /^\s*create\s+(or\s+replace\s+)?(temp|temporary)\b/i,
  /^\s*declare\b[^;]*\bwith\s+hold\b/i,
  /^\s*load\b/i,
  /^\s*discard\b/i,
  /^\s*reset\s+all\b/i,
  /^\s*set\s+(session\s+)?(role|session\s+authorization)\b/i,
  /^\s*select\b.*\bpg_try_advisory_lock(_shared)?\s*\(/is,
  /\bpg_advisory_lock(_shared)?\s*\(/i,
  /\bpg_try_advisory_lock(_shared)?\s*\(/i,
  /\bset_config\s*\([^)]*,\s*false\s*\)/i,
];

const REPLAYABLE = /^\s*(set\s+(?!local\b|transaction\b|constraints\b)|reset\s+(?!all\b))/i;

/** The effect of a whole text (several statements: the strongest). Cached for repeated texts. */
export function sessionEffect(text: string): SessionEffect {
  const known = cache.get(text);
  if (known !== undefined) return known;
  const answer = judge(text);
  if (text.length <= 4096) {
    if (cache.size >= CACHE_SIZE) cache.delete(cache.keys().next().value!);
    cache.set(text, answer);
  }
  return answer;
}

const CACHE_SIZE = 1000;
const cache = new Map<string, SessionEffect>();

function judge(text: string): SessionEffect {
  // Most statements mention none of the words: one cheap test before any parsing.
  if (!/(set|reset|prepare|listen|temp|declare|load|discard|advisory|set_config)/i.test(text)) return 'none';
  let effect: SessionEffect = 'none';
  // Each statement without its literals and comments; text the server cannot lex runs nothing.
  for (const statement of statementSkeletons(text) ?? []) {
    if (BOUND_PATTERNS.some((p) => p.test(statement))) return 'bound';
    if (REPLAYABLE.test(statement)) effect = 'replayable';
  }
  return effect;
}

/** Ends the transaction without committing anything: safe to "complete" on a lost connection. */
export function isRollback(text: string): boolean {
  return /^\s*(rollback|abort)\s*(work|transaction)?\s*;?\s*$/i.test(text);
}
