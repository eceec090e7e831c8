// A real streaming standby of a throwaway primary (test/helpers/pg-server.ts): pg_basebackup -R
// into a second server's data dir, so the standby streams from the primary over 127.0.0.1 and
// hot standby answers reads. Used by the failover-read tests (test/fault/failover-reads.test.ts).
import { execFile } from 'node:child_process';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseLsn, recordEnd } from '../../src/topology/failover-reads.ts';
import { PG_BIN_DIR, startPgServer, type PgServer, type StartPgServerOptions } from './pg-server.ts';

const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;

function run(bin: string, args: string[], timeoutMs: number): Promise<void> {
  const exe = path.join(PG_BIN_DIR, bin);
  const [file, argv] = isRoot ? ['runuser', ['-u', 'postgres', '--', exe, ...args]] : [exe, args];
  return new Promise((resolve, reject) => {
    execFile(file, argv, { timeout: timeoutMs, killSignal: 'SIGKILL', encoding: 'utf8' }, (err, _stdout, stderr) => {
      if (err) reject(new Error(`${bin} failed: ${err.message}\n${stderr}`.trim()));
      else resolve();
    });
  });
}

/**
 * Starts a hot standby streaming from `primary`. `settings` go into its postgresql.conf (e.g.
 * `recovery_min_apply_delay`). The standby is an ordinary PgServer: stop, kill9, admin, destroy.
 */
export async function startStandby(primary: PgServer, settings: StartPgServerOptions['settings'] = {}): Promise<PgServer> {
  // A server of its own (port, dirs, cleanup), whose data dir is then replaced by a base backup.
  const standby = await startPgServer({ password: primary.password });
  await standby.stop('fast');
  await fsp.rm(standby.dataDir, { recursive: true, force: true });
  const url = `postgresql://${primary.user}:${encodeURIComponent(primary.password)}@${primary.host}:${primary.port}/postgres`;
  await run('pg_basebackup', ['-d', url, '-D', standby.dataDir, '-X', 'stream', '-R', '--no-sync', '-c', 'fast'], 60_000);
  // The copied postgresql.conf is the primary's: the later lines win.
  await standby.appendConf({ port: standby.port, unix_socket_directories: standby.baseDir, hot_standby: 'on', ...settings });
  await standby.start();
  return standby;
}

/** Waits until `standby` has replayed everything `primary` has written so far. */
export async function waitReplayed(primary: PgServer, standby: PgServer, timeoutMs = 10_000): Promise<void> {
  const insert = parseLsn((await primary.admin<{ lsn: string }>('SELECT pg_current_wal_insert_lsn()::text AS lsn'))[0]!.lsn)!;
  const lsn = recordEnd(insert);
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const [row] = await standby.admin<{ lsn: string | null }>('SELECT pg_last_wal_replay_lsn()::text AS lsn');
    if ((parseLsn(row?.lsn) ?? -1n) >= lsn) return;
    await sleep(20);
  }
  throw new Error(`standby on ${standby.port} did not replay up to ${lsn} within ${timeoutMs} ms`);
}
