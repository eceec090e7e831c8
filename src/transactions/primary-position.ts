import type { Client } from 'pg';
import { parseTimelineHex, type WalPosition } from './timeline.ts';

/**
 * Where the primary's WAL stands and on which timeline: one text for every reader (the id read
 * of a transaction, the commit mark of lostCommits, COMMIT resolution, the replication watch),
 * so that what is compared with a failover's fork point is always read the same way. On a
 * standby both are NULL: only a primary's insert position says where its history forks.
 *
 * The timeline is the first 8 hex digits of the WAL file name holding the insert position:
 * `pg_control_checkpoint()` would lag a promotion until the next checkpoint, and
 * `pg_walfile_name()` is readable by any role.
 */
export const POSITION_COLUMNS = 'pg_is_in_recovery() AS standby, '
  + 'CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_insert_lsn()::text END AS lsn, '
  + 'CASE WHEN pg_is_in_recovery() THEN NULL ELSE substr(pg_walfile_name(pg_current_wal_insert_lsn()), 1, 8) END AS tli';

/** The columns alone, for a server we ask only where it stands. */
export const POSITION_SQL = `SELECT ${POSITION_COLUMNS}`;

/** The position part of a row with POSITION_COLUMNS (text fields as the server sent them). */
export function positionOf(lsn: unknown, tli: unknown): WalPosition | undefined {
  const timeline = parseTimelineHex(tli === null || tli === undefined ? undefined : String(tli));
  if (timeline === undefined || lsn === null || lsn === undefined) return undefined;
  return { lsn: String(lsn), timeline };
}

/** Where `client`'s server stands: `at` undefined on a standby (or a row the server did not give). */
export async function readPosition(client: Client): Promise<{ standby: boolean; at: WalPosition | undefined }> {
  const row = (await client.query<{ standby: boolean; lsn: string | null; tli: string | null }>(POSITION_SQL)).rows[0];
  if (row === undefined) return { standby: false, at: undefined };
  return { standby: row.standby, at: row.standby ? undefined : positionOf(row.lsn, row.tli) };
}
