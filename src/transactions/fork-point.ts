import type { Client } from 'pg';
import { forkPointOf, historyFileName, parseHistoryFile, parseTimelineHex, type TimelineSwitch } from './timeline.ts';

/** Is the server a primary, and on which timeline (NULL on a standby: pg_walfile_name refuses there)? */
export const WHERE_SQL = 'SELECT pg_is_in_recovery() AS standby, CASE WHEN pg_is_in_recovery() THEN NULL ELSE substr(pg_walfile_name(pg_current_wal_insert_lsn()), 1, 8) END AS tli';

/** The primary's timeline, or undefined when the server is a standby. */
export async function primaryTimeline(client: Client): Promise<number | undefined> {
  const row = (await client.query<{ standby: boolean; tli: string | null }>(WHERE_SQL)).rows[0];
  return row === undefined || row.standby ? undefined : parseTimelineHex(row.tli);
}

/** Where the history comes from: Patroni's `/history` in Patroni mode. */
export interface HistorySource {
  patroniHistory?(): Promise<readonly TimelineSwitch[] | undefined>;
}

/**
 * Where timeline `from` ended in the history of the primary on `current`: Patroni's `/history`
 * in Patroni mode, else the server's own history file (readable by a superuser or a member of
 * pg_read_server_files). Undefined when neither can be read: the caller then says 'unknown'.
 */
export async function forkPoint(source: HistorySource, client: Client, from: number, current: number): Promise<bigint | undefined> {
  const patroni = await source.patroniHistory?.().catch(() => undefined);
  const viaPatroni = patroni === undefined ? undefined : forkPointOf(patroni, from);
  if (viaPatroni !== undefined) return viaPatroni;
  try {
    const res = await client.query<{ h: string }>("SELECT convert_from(pg_read_binary_file($1), 'UTF8') AS h", [`pg_wal/${historyFileName(current)}`]);
    return forkPointOf(parseHistoryFile(res.rows[0]?.h ?? ''), from);
  } catch {
    return undefined; // not allowed, or no such file
  }
}
