import { statementSkeletons } from './sql-lexer.ts';

/**
 * What a statement does to the state of its session (its connection), beyond its transaction:
 * the rule that decides whether a checked-out client may move to a new connection after its
 * connection failed ("clean") or must end with it.
 *
 * - `none`: nothing that outlives the statement (queries, DML, DDL, BEGIN/COMMIT, SET LOCAL,
 *   transaction-scoped advisory locks).
 * - `replayable`: a session setting (`SET name …`, `RESET name`, `RESET ALL`, `SET SESSION …`,
 *   `SET TIME ZONE …`, `SET search_path …`), alone or with other settings and SHOWs in one text:
 *   the session keeps the last such text per setting (`settingKey`) and runs them again on a
 *   new connection, so it stays clean.
 * - `bound`: state the server keeps for this connection only and that cannot be moved:
 *   `PREPARE`, `LISTEN`, temporary tables, sequences and views, session-level advisory locks,
 *   `DECLARE … WITH HOLD`, `set_config(…)` unless its third argument is a plain `true` (wherever
 *   it is called, nested in another call too), `LOAD`, `DISCARD` (what it resets is unknown to
 *   us), and a setting sent in one text with a statement that is not a setting (running the
 *   text again on a new connection would run that statement again). A session that ran one is
 *   no longer clean until it is released.
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
  /^\s*set\s+(session\s+)?(role|session\s+authorization)\b/i,
  /^\s*select\b.*\bpg_try_advisory_lock(_shared)?\s*\(/is,
  /\bpg_advisory_lock(_shared)?\s*\(/i,
  /\bpg_try_advisory_lock(_shared)?\s*\(/i,
];

const REPLAYABLE = /^\s*(set\s+(?!local\b|transaction\b|constraints\b)|reset\s+)/i;

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
  let other = false;
  // Each statement without its literals and comments; text the server cannot lex runs nothing.
  const statements = statementSkeletons(text) ?? [];
  if (hasSessionSetConfig(statements.join(' ; '))) return 'bound';
  for (const statement of statements) {
    if (statement.trim() === '') continue;
    if (BOUND_PATTERNS.some((p) => p.test(statement))) return 'bound';
    if (REPLAYABLE.test(statement)) effect = 'replayable';
    else if (!/^\s*show\b/i.test(statement)) other = true;
  }
  // `SET x = 1; INSERT …`: the text cannot be run again on a new connection.
  return effect === 'replayable' && other ? 'bound' : effect;
}

/**
 * A `set_config(name, value, is_local)` call, at any depth, whose `is_local` is not a plain
 * `true`: a session-level setting we cannot replay by its text. Read on a text without literals
 * or comments; arguments are split at depth 0 of their parentheses.
 */
export function hasSessionSetConfig(stripped: string): boolean {
  const call = /\bset_config\s*\(/gi;
  for (let m = call.exec(stripped); m !== null; m = call.exec(stripped)) {
    const args: string[] = [];
    let depth = 0;
    let start = m.index + m[0].length;
    let i = start;
    for (; i < stripped.length; i += 1) {
      const ch = stripped[i];
      if (ch === '(') depth += 1;
      else if (ch === ')') {
        if (depth === 0) break;
        depth -= 1;
      } else if (ch === ',' && depth === 0) {
        args.push(stripped.slice(start, i));
        start = i + 1;
      }
    }
    args.push(stripped.slice(start, i));
    if (args.length !== 3 || !/^\s*true\s*$/i.test(args[2]!)) return true;
  }
  return false;
}

/**
 * Which settings a `replayable` text sets, as a key: of texts with the same key only the last
 * one run matters (it decides the values), so the session keeps one per key. `*` is RESET ALL:
 * every setting back to what a new connection has, so nothing needs to be run again. Names are
 * case-insensitive unless quoted; a text whose names cannot be read gets itself as its key.
 */
export function settingKey(text: string): string {
  const names: string[] = [];
  const statements = (statementSkeletons(text) ?? []).filter((s) => s.trim() !== '');
  for (const statement of statements) {
    const m = /^\s*(?:set\s+(?:session\s+(?!characteristics\b|authorization\b))?|reset\s+)(.*)$/is.exec(statement);
    if (m === null) continue; // SHOW
    // The skeleton spaces every token (`app . user`): qualified names are joined again.
    const rest = m[1]!.trim().toLowerCase().replace(/\s*\.\s*/g, '.');
    const name = /^time\s+zone\b/.test(rest) ? 'timezone'
      : /^schema\b/.test(rest) ? 'search_path'
        : /^names\b/.test(rest) ? 'client_encoding'
          : /^xml\s+option\b/.test(rest) ? 'xmloption'
            : /^session\s+characteristics\b/.test(rest) ? 'session characteristics'
              : /^all\b/.test(rest) && /^\s*reset\b/i.test(statement) ? '*'
                : /^[a-z_][a-z0-9_$]*(\.[a-z_][a-z0-9_$]*)?(?=\s|=|$)/.exec(rest)?.[0];
    // A quoted name (the skeleton says only "") or anything unexpected.
    if (name === undefined) return `=${text}`;
    names.push(name);
  }
  if (names.includes('*')) return names.length === 1 ? '*' : `=${text}`;
  return [...new Set(names)].sort().join(',');
}

/** Ends the transaction without committing anything: safe to "complete" on a lost connection. */
export function isRollback(text: string): boolean {
  return /^\s*(rollback|abort)\s*(work|transaction)?\s*;?\s*$/i.test(text);
}
