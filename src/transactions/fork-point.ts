import type { Client } from 'pg';
import { readPosition } from './primary-position.ts';
import { forkPointOf, historyFileName, parseHistoryFile, type TimelineSwitch } from './timeline.ts';

/** The primary's timeline, or undefined when the server is a standby. */
export async function primaryTimeline(client: Client): Promise<number | undefined> {
  return (await readPosition(client)).at?.timeline;
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
