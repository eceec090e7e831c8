import type { Token } from './sql-lexer.ts';

/** A function a statement calls, as written: `name(…)` or `schema.name(…)` (unquoted names lower-cased). */
export interface FunctionName {
  readonly schema?: string;
  readonly name: string;
}

/**
 * Words that may stand before `(` without being a function call, because the server's grammar
 * never reads them as a function's name there: its reserved and column-name keywords
 * (pg_get_keywords() catcodes R and C, PostgreSQL 15, plus those added up to 18), which can
 * never name a function unquoted (CAST, COALESCE, EXISTS, IN, ANY, ARRAY, ROW, VALUES, numeric(…)
 * as a type, …), and the type/function-name keywords that are syntax before `(` (JOIN, LIKE,
 * IS, OVERLAPS, TABLESAMPLE, …). LEFT, RIGHT and CURRENT_SCHEMA are functions and are kept.
 */
const NOT_FUNCTIONS = new Set(`
all analyse analyze and any array as asc asymmetric both case cast check collate column constraint create
current_catalog current_date current_role current_time current_timestamp current_user default deferrable desc
distinct do else end except false fetch for foreign from grant group having in initially intersect into lateral
leading limit localtime localtimestamp not null offset on only or order placing primary references returning
select session_user some symmetric system_user table then to trailing true union unique user using variadic
when where window with
between bigint bit boolean char character coalesce dec decimal exists extract float greatest grouping inout int
integer interval json json_array json_arrayagg json_exists json_object json_objectagg json_query json_scalar
json_serialize json_table json_value least merge_action national nchar none normalize nullif numeric out overlay
position precision real row setof smallint substring time timestamp treat trim values varchar xmlattributes
xmlconcat xmlelement xmlexists xmlforest xmlnamespaces xmlparse xmlpi xmlroot xmlserialize xmltable
authorization binary collation concurrently cross freeze full ilike inner is isnull join like natural notnull
outer overlaps similar tablesample verbose
`.trim().split(/\s+/));

const isOpen = (t: Token | undefined): boolean => t !== undefined && t.kind === 'punct' && t.value === '(';
const isPunct = (t: Token | undefined, v: string): boolean => t !== undefined && t.kind === 'punct' && t.value === v;
const isWord = (t: Token | undefined, v: string): boolean => t !== undefined && t.kind === 'word' && t.value === v;
const isName = (t: Token | undefined): boolean => t !== undefined && (t.kind === 'word' || t.kind === 'quoted');

/**
 * The functions a statement's tokens call: every name (or dotted name) followed by `(`, except
 * where the grammar makes it something else. Sound before exact: a name wrongly taken for a
 * function is only looked up (and, not found, makes the statement "not a read"); a function
 * missed would be a write run twice, so a name is left out only where it cannot be a call:
 * - a keyword of NOT_FUNCTIONS, unqualified;
 * - a name right after `)` (`FROM f() AS g(a)`, `agg(x) FILTER (…)`, `OVER (…)`: no call can
 *   follow a closing parenthesis directly), after `AS` (an alias's or a type's parentheses:
 *   `AS g(a)`, `CAST(x AS numeric(10,2))`) or after `::` (a type: `x::varchar(20)`);
 * - a CTE's name with its column list, `name(a, b) AS (` / `AS [NOT] MATERIALIZED`;
 * - `EXPLAIN (…)` first in a statement, `CHARACTER/CHAR/BIT VARYING(n)`, `GROUPING SETS (…)`,
 *   `ORDER/GROUP/PARTITION BY (…)`, `AS [NOT] MATERIALIZED (…)`, `FETCH FIRST (n)`,
 *   `AT TIME ZONE (…)`, `OPERATOR(schema.+)`.
 * Functions reached without a call in the text (through a view, a user-defined operator or
 * cast, a column default, a row-security policy) are not seen: see docs/retry-safety.md.
 */
export function calledFunctions(tokens: readonly Token[]): FunctionName[] {
  const out: FunctionName[] = [];
  const seen = new Set<string>();
  for (let i = 0; i < tokens.length; i += 1) {
    const t = tokens[i]!;
    if (!isName(t)) continue;
    // The dotted name starting here: a.b.c(…).
    let j = i;
    while (isPunct(tokens[j + 1], '.') && isName(tokens[j + 2])) j += 2;
    if (!isOpen(tokens[j + 1])) {
      i = j;
      continue;
    }
    const parts: string[] = [];
    for (let k = i; k <= j; k += 2) parts.push(tokens[k]!.value);
    const before = tokens[i - 1];
    const call = parts.length === 1 && t.kind === 'word' ? isCall(tokens, i, t.value, before) : !notCallAfter(tokens, i, before);
    if (call && !cteColumns(tokens, j + 1)) {
      const name = parts[parts.length - 1]!;
      const schema = parts.length >= 2 ? parts[parts.length - 2] : undefined;
      const key = `${schema ?? ''}.${name}`;
      if (!seen.has(key)) {
        seen.add(key);
        out.push(schema === undefined ? { name } : { schema, name });
      }
    }
    i = j;
  }
  return out;
}

/** Before a name followed by `(`: positions where no function call can stand. */
function notCallAfter(tokens: readonly Token[], i: number, before: Token | undefined): boolean {
  if (before === undefined) return false;
  if (isPunct(before, ')') || isWord(before, 'as')) return true;
  return isPunct(before, ':') && isPunct(tokens[i - 2], ':');
}

function isCall(tokens: readonly Token[], i: number, word: string, before: Token | undefined): boolean {
  if (NOT_FUNCTIONS.has(word) || notCallAfter(tokens, i, before)) return false;
  switch (word) {
    case 'explain':
      return i !== 0;
    case 'varying':
      return !(isWord(before, 'character') || isWord(before, 'char') || isWord(before, 'bit'));
    case 'sets':
      return !isWord(before, 'grouping');
    case 'by':
      return !(isWord(before, 'order') || isWord(before, 'group') || isWord(before, 'partition'));
    case 'materialized':
      return !(isWord(before, 'as') || (isWord(before, 'not') && isWord(tokens[i - 2], 'as')));
    case 'first':
    case 'next':
      return !isWord(before, 'fetch');
    case 'zone':
      return !isWord(before, 'time');
    case 'operator':
      return !operatorName(tokens, i + 2);
    default:
      return true;
  }
}

/** `OPERATOR(` then `[schema .] opchars )` from `from`: an operator's name, not a call's arguments. */
function operatorName(tokens: readonly Token[], from: number): boolean {
  let k = from;
  if (isName(tokens[k]) && isPunct(tokens[k + 1], '.')) k += 2;
  let ops = 0;
  while (tokens[k]?.kind === 'punct' && '+-*/<>=~!@#%^&|`?'.includes(tokens[k]!.value)) {
    k += 1;
    ops += 1;
  }
  return ops > 0 && isPunct(tokens[k], ')');
}

/** `(` at `open` closes and is followed by `AS (` or `AS [NOT] MATERIALIZED`: a CTE's column list. */
function cteColumns(tokens: readonly Token[], open: number): boolean {
  let depth = 0;
  let k = open;
  for (; k < tokens.length; k += 1) {
    const t = tokens[k]!;
    if (t.kind !== 'punct') continue;
    if (t.value === '(') depth += 1;
    else if (t.value === ')') {
      depth -= 1;
      if (depth === 0) break;
    }
  }
  if (!isWord(tokens[k + 1], 'as')) return false;
  const after = tokens[k + 2];
  return isOpen(after) || isWord(after, 'materialized') || (isWord(after, 'not') && isWord(tokens[k + 3], 'materialized'));
}

/**
 * Built-in functions that pg_proc marks VOLATILE but that change nothing, so a statement calling
 * them may run twice: a second run only gives another value (randomness, clocks, a sequence's
 * current value, replication positions, sizes, a transaction's status) or waits again (pg_sleep). Each is checked against
 * a real server's pg_proc by test/integration/function-volatility.test.ts (volatile there, or
 * absent on that version). Only the pg_catalog functions of these names are allowed.
 */
export const VOLATILE_READS: ReadonlySet<string> = new Set([
  'random', 'random_normal', 'clock_timestamp', 'timeofday', 'gen_random_uuid',
  'currval', 'lastval',
  'pg_is_in_recovery', 'pg_is_wal_replay_paused', 'pg_current_wal_lsn', 'pg_current_wal_insert_lsn',
  'pg_current_wal_flush_lsn', 'pg_last_wal_receive_lsn', 'pg_last_wal_replay_lsn', 'pg_last_xact_replay_timestamp',
  'pg_database_size', 'pg_relation_size', 'pg_total_relation_size', 'pg_table_size', 'pg_indexes_size',
  'pg_xact_status', 'txid_status', 'pg_blocking_pids',
  'pg_sleep', 'pg_sleep_for', 'pg_sleep_until',
]);

/**
 * Functions that change state whatever pg_proc says of them (txid_current is STABLE, yet it
 * assigns a transaction id): a statement calling one is never a read, without any lookup.
 */
export const SIDE_EFFECT_FUNCTIONS = /^(?:nextval|setval|pg_advisory_(?:xact_)?lock\w*|pg_try_advisory\w*|pg_advisory_unlock\w*|pg_notify|set_config|pg_terminate_backend|pg_cancel_backend|pg_reload_conf|pg_switch_wal|pg_create_restore_point|lo_\w+|dblink\w*|txid_current|pg_current_xact_id|pg_export_snapshot)$/;

/**
 * The verdict on a function from its pg_proc rows (`schema` the row's pg_namespace.nspname,
 * `volatility` its provolatile): may a statement calling `fn` run twice? Unqualified names are
 * judged over every schema (search_path may reach any of them): any VOLATILE overload that is
 * not an allowed built-in makes it no; no row at all makes it no (unknown).
 */
export function readOnlyFunction(fn: FunctionName, rows: ReadonlyArray<{ schema: string; name: string; volatility: string }>): boolean {
  if (SIDE_EFFECT_FUNCTIONS.test(fn.name)) return false;
  const mine = rows.filter((r) => r.name === fn.name && (fn.schema === undefined || r.schema === fn.schema));
  if (mine.length === 0) return false;
  return mine.every((r) => r.volatility === 'i' || r.volatility === 's' || (r.schema === 'pg_catalog' && VOLATILE_READS.has(r.name)));
}
