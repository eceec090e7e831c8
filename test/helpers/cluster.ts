// Typed wrapper around scripts/cluster.mjs, the driver of the Patroni test cluster
// (etcd + pg1/pg2/pg3 under Patroni + HAProxy, and PgBouncer in front of HAProxy, all on 127.0.0.1).
//
// Each function runs `node scripts/cluster.mjs <verb>` asynchronously (the event loop keeps
// running, so a test can drive load while a fault is injected) and returns the JSON the driver
// prints on stdout. The backend follows PG_CLUSTER_BACKEND (docker, native or auto).
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

export interface Endpoint {
  host: string;
  port: number;
}

export interface ClusterNode {
  name: string;
  host: string;
  port: number;
  restPort: number;
}

export const CLUSTER_USER = 'postgres';
export const CLUSTER_PASSWORD = 'postgres';
export const CLUSTER_DATABASE = 'postgres';

/** HAProxy read-write endpoint: always the current primary. */
export const HAPROXY_RW: Endpoint = { host: '127.0.0.1', port: 5000 };
/** HAProxy read-only endpoint: the replicas, round robin. */
export const HAPROXY_RO: Endpoint = { host: '127.0.0.1', port: 5001 };
/**
 * PgBouncer 1.18 in transaction mode in front of HAProxy's read-write port, as the Zalando
 * operator's connection pooler sits in front of the primary's Service (cluster/pgbouncer.ini).
 */
export const PGBOUNCER: Endpoint = { host: '127.0.0.1', port: 6432 };

export const NODES: readonly ClusterNode[] = [
  { name: 'pg1', host: '127.0.0.1', port: 5433, restPort: 8008 },
  { name: 'pg2', host: '127.0.0.1', port: 5434, restPort: 8009 },
  { name: 'pg3', host: '127.0.0.1', port: 5435, restPort: 8010 },
];

export const PATRONI_URLS: readonly string[] = NODES.map((n) => `http://127.0.0.1:${n.restPort}`);

export const ETCD_URL = 'http://127.0.0.1:2379';

export type MemberRole = 'leader' | 'replica' | 'sync_standby' | (string & {});

export interface ClusterMember {
  name: string;
  role: MemberRole;
  state: string;
  host: string;
  port: number;
  restPort: number;
  timeline: number | null;
  lagBytes: number | null;
}

export interface PgBouncerStatus {
  port: number;
  answering: boolean;
  /** PAUSEd by the driver (PgBouncer 1.18 cannot tell), or its database paused. */
  paused?: boolean;
  /** SHOW POOLS for the cluster's database, null before its first client. */
  pool?: { clActive: number; clWaiting: number; svActive: number; svIdle: number; svUsed: number; svLogin: number } | null;
  error?: string;
}

export interface ClusterStatus {
  backend: 'docker' | 'native';
  leader: string | null;
  members: ClusterMember[];
  pgbouncer?: PgBouncerStatus;
}

export interface TimedClusterStatus extends ClusterStatus {
  tookMs: number;
}

export interface KillResult {
  killed: string;
  at: number;
  newLeader?: string;
  failoverMs?: number;
}

export interface SwitchoverResult {
  from: string;
  to: string;
  at: number;
  completedAt: number;
  tookMs: number;
}

export interface StartResult {
  started: string;
  at: number;
}

export interface StopPostgresResult {
  node: string;
  killedPostmaster: boolean;
  pid: number;
  at: number;
}

export interface BlackholeResult {
  node: string;
  port: number;
  at: number;
}

export interface HealResult {
  healed: number[];
  at: number;
}

export interface PgBouncerKillResult {
  killed: 'pgbouncer';
  at: number;
}

export interface PgBouncerStartResult {
  started: 'pgbouncer';
  /** When the start command returned; `readyAt` when PgBouncer answered on its port. */
  at: number;
  readyAt: number;
  readyMs: number;
}

export interface PgBouncerPauseResult {
  paused: true;
  at: number;
  pausedAt: number;
  tookMs: number;
}

export interface PgBouncerResumeResult {
  /** False when it was not paused. */
  resumed: boolean;
  at: number;
}

function findRepoRoot(): string {
  // Works from test/helpers/ (sources) and from dist/test/helpers/ (compiled).
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (fs.existsSync(path.join(dir, 'package.json')) && fs.existsSync(path.join(dir, 'docker-compose.yml'))) {
      return dir;
    }
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error('cluster helper: repository root (package.json + docker-compose.yml) not found');
    dir = parent;
  }
}

export const REPO_ROOT: string = findRepoRoot();
const DRIVER = path.join(REPO_ROOT, 'scripts', 'cluster.mjs');

/** Run a driver verb and parse the JSON it prints. Rejects with the driver's stderr on failure. */
export function runCluster<T>(args: readonly string[], timeoutMs = 300_000): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    execFile(
      process.execPath,
      [DRIVER, ...args],
      { cwd: REPO_ROOT, timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024, env: process.env },
      (err, stdout, stderr) => {
        if (err) {
          const tail = String(stderr).trim().split('\n').slice(-20).join('\n');
          reject(new Error(`cluster ${args.join(' ')} failed: ${err.message}\n${tail}`));
          return;
        }
        const line = String(stdout).trim().split('\n').filter((l) => l.trim() !== '').pop();
        if (line === undefined) {
          reject(new Error(`cluster ${args.join(' ')} printed no JSON`));
          return;
        }
        try {
          resolve(JSON.parse(line) as T);
        } catch {
          reject(new Error(`cluster ${args.join(' ')} printed invalid JSON: ${line}`));
        }
      },
    );
  });
}

/** Start the cluster if needed and wait until it is healthy (idempotent). */
export function clusterUp(timeoutMs = 900_000): Promise<TimedClusterStatus> {
  return runCluster<TimedClusterStatus>(['up'], timeoutMs);
}

export function clusterDown(): Promise<{ down: boolean; tookMs: number }> {
  return runCluster(['down']);
}

export function clusterStatus(): Promise<ClusterStatus> {
  return runCluster<ClusterStatus>(['status'], 30_000);
}

/** SIGKILL the leader node. With `wait`, resolves once a replica has been promoted. */
export function killPrimary(wait = false): Promise<KillResult> {
  return runCluster<KillResult>(wait ? ['kill-primary', '--wait'] : ['kill-primary'], 120_000);
}

/** Planned switchover to the synchronous standby; resolves when the new leader runs. */
export function switchover(): Promise<SwitchoverResult> {
  return runCluster<SwitchoverResult>(['switchover'], 120_000);
}

export function startNode(name: string): Promise<StartResult> {
  return runCluster<StartResult>(['start', name], 120_000);
}

/** kill -9 the leader's postmaster only; Patroni keeps running and restarts it. */
export function stopPostgresPrimary(): Promise<StopPostgresResult> {
  return runCluster<StopPostgresResult>(['stop-postgres-primary'], 60_000);
}

/** Drop (no RST) every packet to the leader's PostgreSQL port. Undo with heal(). */
export function blackholePrimary(): Promise<BlackholeResult> {
  return runCluster<BlackholeResult>(['blackhole-primary'], 60_000);
}

export function heal(): Promise<HealResult> {
  return runCluster<HealResult>(['heal'], 60_000);
}

/** Wait for a leader and two streaming replicas on the same timeline, with a sync standby. */
export function waitHealthy(timeoutMs = 60_000): Promise<TimedClusterStatus & { healthy: true }> {
  return runCluster<TimedClusterStatus & { healthy: true }>(
    ['wait-healthy', '--timeout', String(timeoutMs)],
    timeoutMs + 30_000,
  );
}

/** SIGKILL PgBouncer and remove it, as when its pod is deleted; startPgbouncer() brings it back. */
export function killPgbouncer(): Promise<PgBouncerKillResult> {
  return runCluster<PgBouncerKillResult>(['kill-pgbouncer'], 60_000);
}

/** Start PgBouncer again; resolves once it answers on 6432. */
export function startPgbouncer(): Promise<PgBouncerStartResult> {
  return runCluster<PgBouncerStartResult>(['start-pgbouncer'], 120_000);
}

/** PAUSE through the admin console: resolves once PgBouncer holds every new query. */
export function pausePgbouncer(): Promise<PgBouncerPauseResult> {
  return runCluster<PgBouncerPauseResult>(['pause-pgbouncer'], 90_000);
}

export function resumePgbouncer(): Promise<PgBouncerResumeResult> {
  return runCluster<PgBouncerResumeResult>(['resume-pgbouncer'], 30_000);
}

/** Connection settings for the HAProxy read-write endpoint (pg.Pool / pg.Client options). */
export function rwConnectionConfig(): { host: string; port: number; user: string; password: string; database: string } {
  return { ...HAPROXY_RW, user: CLUSTER_USER, password: CLUSTER_PASSWORD, database: CLUSTER_DATABASE };
}

/** Connection settings for PgBouncer (6432), which forwards to the HAProxy read-write endpoint. */
export function pgbouncerConnectionConfig(): { host: string; port: number; user: string; password: string; database: string } {
  return { ...PGBOUNCER, user: CLUSTER_USER, password: CLUSTER_PASSWORD, database: CLUSTER_DATABASE };
}

export interface ReplicationResult {
  mode: 'async' | 'sync';
  leader: string;
  synchronousMode: boolean;
  syncStandbys: string[];
  senders: Array<{ replica: string; state: string; syncState: string }>;
  tookMs: number;
}

export interface FreezeResult {
  node: string;
  frozen: Array<{ pid: number; replica: string }>;
  at: number;
}

export interface ThawResult {
  thawed: Array<{ node: string; pids: number[] }>;
  at: number;
}

/**
 * Patroni's synchronous_mode off ('async') or on ('sync') through its REST API; resolves once the
 * leader replicates that way. The cluster's own setting (cluster/patroni.yml) is 'sync'.
 */
export function setReplication(mode: 'async' | 'sync'): Promise<ReplicationResult> {
  return runCluster<ReplicationResult>(['replication', mode], 90_000);
}

/** SIGSTOP the leader's WAL senders: the replicas fall behind while it acknowledges commits. */
export function freezeSenders(): Promise<FreezeResult> {
  return runCluster<FreezeResult>(['freeze-senders'], 60_000);
}

/** SIGCONT the WAL senders of every node that answers. */
export function thawSenders(): Promise<ThawResult> {
  return runCluster<ThawResult>(['thaw-senders'], 60_000);
}
