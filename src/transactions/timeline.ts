import { parseLsn } from '../topology/standby-evidence.ts';

/**
 * What a server's history proves about a transaction that ran on an earlier timeline: the rule
 * behind every answer pg-resilient gives about a COMMIT in doubt and about commits a failover
 * lost. Pure; the reading of positions and histories is in commit-outcome.ts and fork-point.ts.
 *
 * With asynchronous replication a promoted standby starts a new timeline at the last WAL position
 * it received (the fork point). Commits the old primary wrote after that point do not exist on
 * the new timeline, and the new primary hands their transaction ids out again, so
 * `txid_status(id)` there may answer for another transaction. It answers for ours only when the
 * new timeline contains a WAL record that carries our id.
 */

/** A WAL position on a timeline, as the server reported it while the transaction ran. */
export interface WalPosition {
  /** `pg_current_wal_insert_lsn()` as text (`16/B374D848`). */
  readonly lsn: string;
  /** The timeline the primary was writing. */
  readonly timeline: number;
}

/** One timeline switch of a server's history: timeline `timeline` ended at `switchLsn`. */
export interface TimelineSwitch {
  readonly timeline: number;
  readonly switchLsn: bigint;
}

/**
 * - `ask`: the server's history contains the transaction's first write, so the id is ours there
 *   and `txid_status` tells the truth;
 * - `absent`: the fork precedes the position read after the transaction's writes and before its
 *   COMMIT, so its commit record is not in the server's history: certainly not committed there;
 * - `unknown`: the fork point could not be learned (or the timeline is not an ancestor).
 */
export type ForkVerdict = 'ask' | 'absent' | 'unknown';

/** Formats a position as PostgreSQL does. */
export function formatLsn(lsn: bigint): string {
  return `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffffffffn).toString(16).toUpperCase()}`;
}

/** The timeline of a WAL file name's first 8 hex digits (`pg_walfile_name`); undefined when malformed. */
export function parseTimelineHex(text: string | null | undefined): number | undefined {
  if (typeof text !== 'string' || !/^[0-9A-Fa-f]{8}$/.test(text)) return undefined;
  const n = parseInt(text, 16);
  return n > 0 ? n : undefined;
}

/** The name of a timeline's history file in pg_wal (`00000003.history`). */
export function historyFileName(timeline: number): string {
  return `${timeline.toString(16).toUpperCase().padStart(8, '0')}.history`;
}

/**
 * Reads a timeline history file (`<parent timeline>\t<switch LSN>\t<reason>` a line, comments
 * with `#`). Lines that do not parse are skipped: a history is only ever used to prove absence
 * or to allow a question, and a missing switch makes the verdict `unknown`, never a guess.
 */
export function parseHistoryFile(text: string): TimelineSwitch[] {
  const out: TimelineSwitch[] = [];
  for (const line of text.split('\n')) {
    const m = /^\s*(\d+)\s+([0-9A-Fa-f]+\/[0-9A-Fa-f]+)/.exec(line);
    if (m === null) continue;
    const lsn = parseLsn(m[2]);
    if (lsn !== undefined) out.push({ timeline: Number(m[1]), switchLsn: lsn });
  }
  return out;
}

/**
 * Reads Patroni's `GET /history`: `[[timeline, switch_lsn_in_bytes, reason, timestamp, leader], …]`
 * (the first entry may lack the timestamp). Entries that do not have that shape are skipped.
 */
export function parsePatroniHistory(body: unknown): TimelineSwitch[] {
  if (!Array.isArray(body)) return [];
  const out: TimelineSwitch[] = [];
  for (const entry of body) {
    if (!Array.isArray(entry)) continue;
    const [tl, lsn] = entry as unknown[];
    if (typeof tl !== 'number' || !Number.isInteger(tl) || tl < 1) continue;
    if (typeof lsn === 'number' && Number.isSafeInteger(lsn) && lsn >= 0) out.push({ timeline: tl, switchLsn: BigInt(lsn) });
    else if (typeof lsn === 'string' && /^\d+$/.test(lsn)) out.push({ timeline: tl, switchLsn: BigInt(lsn) });
  }
  return out;
}

/** Where timeline `from` ended in a history, if it is there. */
export function forkPointOf(history: readonly TimelineSwitch[], from: number): bigint | undefined {
  return history.find((s) => s.timeline === from)?.switchLsn;
}

/**
 * The rule. `at` was read after the transaction's writes (its first write gives it its id, and
 * the position is read in the round trip of that write or of COMMIT), so every record carrying
 * the id starts before `at` and its commit record starts at or after `at`.
 * - Same timeline: no fork since; the server's history is the one the transaction ran on → ask.
 * - Fork point at or before `at`: the commit record is after the fork → absent.
 * - Fork point after `at`: the new timeline holds the transaction's WAL up to `at`, so the id is
 *   known there (it cannot be handed out again) → ask. The one exception is a transaction whose
 *   only writes were to temporary or unlogged tables, which write no WAL before COMMIT
 *   (docs/transactions.md says so).
 * - The fork point of the transaction's timeline unknown → unknown.
 */
export function forkVerdict(at: WalPosition | undefined, currentTimeline: number | undefined, forkLsn: bigint | undefined): ForkVerdict {
  if (at === undefined || currentTimeline === undefined) return 'unknown';
  if (currentTimeline === at.timeline) return 'ask';
  if (currentTimeline < at.timeline) return 'unknown'; // a server behind the transaction's timeline
  const position = parseLsn(at.lsn);
  if (position === undefined || forkLsn === undefined) return 'unknown';
  return forkLsn <= position ? 'absent' : 'ask';
}
