// The evidence the failover-read policy (failover-reads.ts) judges a standby by: what one probe
// of a standby says, the primary positions read after writes, and the pure rule that decides
// whether the standby may serve a read. Pure, so every case is table-tested.

/** The bounds a standby must meet to serve a read while the primary is unavailable. */
export interface FailoverReadBounds {
  /** WAL (bytes) the standby may lack, as far as known. */
  readonly maxLagBytes: number;
  /** The read must include every write acknowledged more than this long ago. */
  readonly maxStalenessMs: number;
}

/** A write seen acknowledged, and the primary's WAL position read after it. */
export interface WriteMark {
  /** Clock time the write was acknowledged. */
  readonly ackAt: number;
  /** `pg_current_wal_insert_lsn()` after the write, once known: at or past the write's commit. */
  lsn: bigint | undefined;
  /** Clock time that position was asked for: every commit acknowledged before then is at or below it. */
  lsnAt: number | undefined;
}

/** What one round trip on a standby connection says about it. */
export interface StandbyProbe {
  readonly standby: boolean;
  readonly replayLsn: bigint | undefined;
  /** WAL received and flushed (pg_last_wal_receive_lsn()). */
  readonly receiveLsn: bigint | undefined;
  /** Clock time of the last commit it replayed (a lower bound: sent time minus its age on the server). */
  readonly replayCommitAt: number | undefined;
  /** Clock time the probe was sent. */
  readonly sentAt: number;
}

export type RefusalReason = 'lag' | 'staleness' | 'read-your-writes';

export type StandbyVerdict =
  | { readonly ok: true; readonly primary: boolean; readonly stalenessMs: number; readonly lagBytes: number | undefined }
  | { readonly ok: false; readonly reason: RefusalReason; readonly stalenessMs: number; readonly lagBytes: number | undefined };

// One round trip: position replayed and received, and the age of the last replayed commit on
// the server's own clock (so only the standby's and the primary's clocks need to agree, as for
// any replication-delay figure). NULLs on a primary.
export const STANDBY_PROBE_SQL = 'SELECT pg_is_in_recovery() AS standby, pg_last_wal_replay_lsn()::text AS replay, '
  + 'pg_last_wal_receive_lsn()::text AS receive, '
  + '(extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp()) * 1000)::float8 AS replay_age_ms';

/**
 * After a write: the primary's WAL insert position (NULL on a standby, where the function fails).
 * The insert position, not the write position (`pg_current_wal_lsn()`): with synchronous_commit
 * off a commit is acknowledged before its record is written, but never before it is inserted.
 */
export const WRITE_LSN_SQL = 'SELECT CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_insert_lsn()::text END AS lsn';

/** Parses `16/B374D848` into a byte position. */
export function parseLsn(text: unknown): bigint | undefined {
  if (typeof text !== 'string') return undefined;
  const m = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/.exec(text);
  return m === null ? undefined : (BigInt(`0x${m[1]}`) << 32n) + BigInt(`0x${m[2]}`);
}

/**
 * The end of the last WAL record at or before an insert position. `pg_current_wal_insert_lsn()`
 * on a page boundary points past the new page's header (24 bytes, 40 on a segment's first page
 * with the default 8 kB pages and 16 MB segments), where no record ends: a standby that replayed
 * everything reports the boundary itself. No record can end inside a header, so this is exact.
 */
export function recordEnd(lsn: bigint): bigint {
  if (lsn % WAL_SEGMENT_BYTES === LONG_PAGE_HEADER_BYTES) return lsn - LONG_PAGE_HEADER_BYTES;
  if (lsn % WAL_PAGE_BYTES === SHORT_PAGE_HEADER_BYTES) return lsn - SHORT_PAGE_HEADER_BYTES;
  return lsn;
}

const WAL_PAGE_BYTES = 8192n;
const WAL_SEGMENT_BYTES = 16n * 1024n * 1024n;
const SHORT_PAGE_HEADER_BYTES = 24n;
const LONG_PAGE_HEADER_BYTES = 40n;

/** Reads the probe's row; `sentAt` is when it was sent (clock time). */
export function parseProbe(row: Record<string, unknown> | undefined, sentAt: number): StandbyProbe {
  const age = row?.replay_age_ms;
  const ageMs = typeof age === 'number' ? age : typeof age === 'string' ? Number(age) : undefined;
  return {
    standby: row?.standby === true,
    replayLsn: parseLsn(row?.replay),
    receiveLsn: parseLsn(row?.receive),
    // A primary clock ahead of the standby's gives a negative age: never later than the probe itself.
    replayCommitAt: ageMs === undefined || Number.isNaN(ageMs) ? undefined : sentAt - Math.max(0, ageMs),
    sentAt,
  };
}

export interface JudgeInput {
  readonly now: number;
  readonly bounds: FailoverReadBounds;
  readonly probe: StandbyProbe;
  /** Patroni lists it as a synchronous standby. */
  readonly sync: boolean;
  /** Patroni's lag figure (leader's last position minus what it received), if any. */
  readonly patroniLagBytes: number | undefined;
  /** Primary positions this pool read after its writes (evidence of completeness). */
  readonly marks: readonly WriteMark[];
  /** Newest primary position known: the furthest of our marks and of the standbys' received WAL. */
  readonly referenceLsn: bigint | undefined;
  /** The caller's context's last write (or the pool's, outside a context). */
  readonly lastWrite: WriteMark | undefined;
}

/**
 * The clock time up to which the standby certainly holds every acknowledged commit: its last
 * replayed commit; a position this pool read on the primary that it replayed past; and, for a
 * synchronous standby that replayed all it received, the probe itself (the primary acknowledged
 * nothing before the standby flushed it). -Infinity when nothing is known.
 */
export function completeUpTo(i: Pick<JudgeInput, 'probe' | 'sync' | 'marks'>): number {
  const p = i.probe;
  let x = p.replayCommitAt ?? -Infinity;
  if (p.replayLsn === undefined) return x;
  for (const m of i.marks) {
    if (m.lsn !== undefined && m.lsnAt !== undefined && m.lsn <= p.replayLsn && m.lsnAt > x) x = m.lsnAt;
  }
  if (i.sync && p.receiveLsn !== undefined && p.replayLsn >= p.receiveLsn) x = Math.max(x, p.sentAt);
  return x;
}

/**
 * May this standby serve a read now? Pure. Staleness is real time: the read must include every
 * write acknowledged before `now - maxStalenessMs` (so it grows during an outage unless the
 * standby is known complete), and the context's own writes of the last `maxStalenessMs`.
 */
export function judgeStandby(i: JudgeInput): StandbyVerdict {
  const { probe, bounds, now } = i;
  if (!probe.standby) return { ok: true, primary: true, stalenessMs: 0, lagBytes: 0 };
  const x = completeUpTo(i);
  const stalenessMs = Math.max(0, now - x);
  const lagBytes = lagOf(i);
  if (lagBytes === undefined ? bounds.maxLagBytes !== Infinity : lagBytes > bounds.maxLagBytes) {
    return { ok: false, reason: 'lag', stalenessMs, lagBytes };
  }
  if (stalenessMs > bounds.maxStalenessMs) return { ok: false, reason: 'staleness', stalenessMs, lagBytes };
  const w = i.lastWrite;
  if (w !== undefined && now - w.ackAt <= bounds.maxStalenessMs) {
    const replayed = w.lsn !== undefined && probe.replayLsn !== undefined ? probe.replayLsn >= w.lsn : x >= w.ackAt;
    if (!replayed) return { ok: false, reason: 'read-your-writes', stalenessMs, lagBytes };
  }
  return { ok: true, primary: false, stalenessMs, lagBytes };
}

function lagOf(i: JudgeInput): number | undefined {
  const p = i.probe;
  if (p.replayLsn === undefined) return i.patroniLagBytes;
  const unreplayed = p.receiveLsn !== undefined && p.receiveLsn > p.replayLsn ? Number(p.receiveLsn - p.replayLsn) : 0;
  let lag = i.patroniLagBytes === undefined ? undefined : i.patroniLagBytes + unreplayed;
  const ref = maxLsn(i.referenceLsn, p.receiveLsn);
  if (ref !== undefined) lag = Math.max(lag ?? 0, ref > p.replayLsn ? Number(ref - p.replayLsn) : 0);
  return lag;
}

/** The further of two positions (either may be unknown). */
export function maxLsn(a: bigint | undefined, b: bigint | undefined): bigint | undefined {
  if (a === undefined) return b;
  if (b === undefined) return a;
  return a > b ? a : b;
}
