// A timeline fork on demand: a throwaway primary streaming asynchronously to a hot standby, a
// COMMIT trap in front of the primary, and the moves of an asynchronous failover:
// - freezeSenders(): SIGSTOP the primary's WAL senders, so what it commits from then on stays on it;
// - failover(): SIGKILL the primary with its backends, promote the standby (a new timeline that
//   forks off before the frozen commits), then make the new primary hand out the transaction ids
//   of the lost commits to other transactions, as a loaded primary does within milliseconds.
// Used by test/fault/timeline-fork.test.ts.
import { execFile } from 'node:child_process';
import net from 'node:net';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { PG_BIN_DIR, startPgServer, type PgServer } from './pg-server.ts';
import { startStandby, waitReplayed } from './pg-standby.ts';

const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;

function promote(dataDir: string): Promise<void> {
  const exe = path.join(PG_BIN_DIR, 'pg_ctl');
  const args = ['-D', dataDir, '-w', '-t', '30', 'promote'];
  const [file, argv] = isRoot ? ['runuser', ['-u', 'postgres', '--', exe, ...args]] : [exe, args];
  return new Promise((resolve, reject) => {
    execFile(file, argv, { timeout: 40_000, encoding: 'utf8' }, (err, _out, stderr) => (err ? reject(new Error(`pg_ctl promote: ${err.message} ${stderr}`)) : resolve()));
  });
}

/**
 * A TCP proxy that, armed, forwards a simple-query COMMIT, swallows the server's answer and holds
 * the client's socket open until `release()` resets it: the transaction committed on the server,
 * the client has not heard, and the test decides what the world looks like before it does.
 */
export interface CommitHold {
  readonly port: number;
  /** Arms the trap; `held` resolves when a COMMIT's answer has been swallowed. */
  arm(): Promise<void>;
  /** Resets the held client connection. */
  release(): void;
  close(): Promise<void>;
}

export async function startCommitHold(target: { host: string; port: number }): Promise<CommitHold> {
  let armed: (() => void) | undefined;
  let held: net.Socket | undefined;
  const sockets = new Set<net.Socket>();
  // COMMIT as the ORMs send it: `COMMIT`, `commit`, `COMMIT;` (a simple query).
  const isCommit = (chunk: Buffer): boolean => chunk[0] === 0x51 /* 'Q' */ && /commit;?\0/i.test(chunk.toString('latin1'));
  const server = net.createServer((client) => {
    const upstream = net.connect(target);
    sockets.add(client);
    sockets.add(upstream);
    let swallowing: (() => void) | undefined;
    client.on('data', (chunk: Buffer) => {
      if (armed !== undefined && isCommit(chunk)) {
        swallowing = armed;
        armed = undefined;
      }
      upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => {
      if (swallowing !== undefined) {
        // The server answered COMMIT: it is done. The client hears nothing until release().
        held = client;
        const fire = swallowing;
        swallowing = undefined;
        upstream.destroy();
        fire();
        return;
      }
      if (held !== client) client.write(chunk);
    });
    for (const s of [client, upstream]) {
      s.on('error', () => undefined);
      s.on('close', () => {
        sockets.delete(s);
        if (s === upstream && held === client) return; // keep the held client waiting
        client.destroy();
        upstream.destroy();
      });
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    port: (server.address() as net.AddressInfo).port,
    arm: () => new Promise<void>((resolve) => { armed = resolve; }),
    release: () => {
      held?.resetAndDestroy();
      held = undefined;
    },
    close: () => new Promise<void>((r) => {
      for (const s of sockets) s.destroy();
      server.close(() => r());
    }),
  };
}

export interface ForkPair {
  readonly primary: PgServer;
  readonly standby: PgServer;
  readonly hold: CommitHold;
  /** The hosts a multi-host pool is given: the primary (through the trap), then the standby. */
  readonly hosts: string[];
  freezeSenders(): Promise<number>;
  /**
   * Kills the primary, promotes the standby and runs `reuse` committed transactions on it, each
   * with a transaction id of its own: the ids the lost commits had are handed out again.
   */
  failover(reuse?: number): Promise<void>;
  /** Timeline id of the (new) primary. */
  timeline(): Promise<number>;
  destroy(): Promise<void>;
}

export async function startForkPair(setupSql: string): Promise<ForkPair> {
  // synchronous_commit on, as in production (the test servers' default is off): a commit's WAL is
  // flushed, and so sent to the standby, when the commit returns.
  const primary = await startPgServer({ settings: { wal_level: 'replica', max_wal_senders: 5, wal_keep_size: '64MB', synchronous_commit: 'on' } });
  await primary.admin(setupSql);
  await primary.admin('CREATE TABLE IF NOT EXISTS pgr_fork_filler (n int)');
  const standby = await startStandby(primary);
  await waitReplayed(primary, standby);
  const hold = await startCommitHold({ host: primary.host, port: primary.port });
  let frozen: number[] = [];
  return {
    primary,
    standby,
    hold,
    hosts: [`127.0.0.1:${hold.port}`, `127.0.0.1:${standby.port}`],
    async freezeSenders() {
      const rows = await primary.admin<{ pid: number }>('SELECT pid FROM pg_stat_replication');
      if (rows.length === 0) throw new Error('fork pair: the primary has no WAL sender to freeze');
      frozen = rows.map((r) => r.pid);
      for (const pid of frozen) process.kill(pid, 'SIGSTOP');
      return frozen.length;
    },
    async failover(reuse = 200) {
      await primary.kill9({ withChildren: true });
      for (const pid of frozen) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // gone with its postmaster
        }
      }
      await promote(standby.dataDir);
      for (let i = 0; i < 100; i += 1) {
        const [row] = await standby.admin<{ r: boolean }>('SELECT pg_is_in_recovery() AS r');
        if (row?.r === false) break;
        await sleep(50);
      }
      for (let i = 0; i < reuse; i += 1) await standby.admin('INSERT INTO pgr_fork_filler VALUES ($1)', [i]);
    },
    async timeline() {
      const [row] = await standby.admin<{ t: string }>('SELECT substr(pg_walfile_name(pg_current_wal_insert_lsn()), 1, 8) AS t');
      return parseInt(row!.t, 16);
    },
    async destroy() {
      hold.release();
      await hold.close();
      await standby.destroy();
      await primary.destroy();
    },
  };
}
