// Shared by every part of the cluster driver: the topology's constants, process helpers (run,
// must, waitFor), small network probes, argument parsing and the system-package check.
// Plain ESM, Node builtins only.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const CLUSTER_DIR = path.join(REPO, 'cluster');
export const COMPOSE_FILE = path.join(REPO, 'docker-compose.yml');
export const LOCAL_DIR = path.join(REPO, '.cluster');
export const PROJECT = 'pg-resilient';
export const IMAGE = 'pg-resilient-cluster:latest';
export const BASE_IMAGE = 'debian:bookworm';
export const BASE_PACKAGES = [
  'postgresql-15', 'patroni', 'etcd-server', 'etcd-client', 'python3-etcd', 'python3-psycopg2',
  'haproxy', 'pgbouncer', 'iproute2', 'procps', 'ca-certificates',
];
export const NATIVE_DIR = process.env.PG_CLUSTER_NATIVE_DIR || '/tmp/pg-resilient-cluster';
export const IPTABLES_COMMENT = 'pg-resilient-blackhole';
export const HOST = '127.0.0.1';
export const HAPROXY_RW_PORT = 5000;
export const HAPROXY_RO_PORT = 5001;
export const PGBOUNCER_PORT = 6432;

export const NODES = [
  { name: 'pg1', port: 5433, restPort: 8008 },
  { name: 'pg2', port: 5434, restPort: 8009 },
  { name: 'pg3', port: 5435, restPort: 8010 },
];
export const NODE_BY_NAME = new Map(NODES.map((n) => [n.name, n]));
export const SERVICES = ['etcd', 'pg1', 'pg2', 'pg3', 'haproxy', 'pgbouncer'];

// ---------------------------------------------------------------------------------------------
// small utilities

export class ClusterError extends Error {}

export const fail = (msg) => {
  throw new ClusterError(msg);
};
export const log = (msg) => process.stderr.write(`[cluster] ${msg}\n`);
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
export const out = (obj) => process.stdout.write(`${JSON.stringify(obj)}\n`);
export const secs = (ms) => `${(ms / 1000).toFixed(1)} s`;

/** Run a command synchronously. By default output is captured; `inherit` sends it to our stderr. */
export function run(cmd, args, opts = {}) {
  const { inherit = false, timeoutMs = 120_000, env, input, cwd = REPO } = opts;
  const res = spawnSync(cmd, args, {
    cwd,
    env: env ? { ...process.env, ...env } : process.env,
    input,
    encoding: 'utf8',
    timeout: timeoutMs,
    maxBuffer: 64 * 1024 * 1024,
    stdio: inherit ? [input === undefined ? 'ignore' : 'pipe', 2, 2] : ['pipe', 'pipe', 'pipe'],
  });
  const status = res.error ? -1 : res.status ?? -1;
  return {
    ok: status === 0,
    status,
    stdout: res.stdout ?? '',
    stderr: (res.stderr ?? '') + (res.error ? String(res.error.message) : ''),
  };
}

export function must(cmd, args, opts = {}) {
  const r = run(cmd, args, opts);
  if (!r.ok) {
    const detail = `${r.stderr}\n${r.stdout}`.trim().split('\n').slice(-15).join('\n');
    fail(`command failed (exit ${r.status}): ${cmd} ${args.join(' ')}${detail ? `\n${detail}` : ''}`);
  }
  return r;
}

export const have = (cmd) => run('sh', ['-c', `command -v ${cmd}`], { timeoutMs: 5000 }).ok;

export async function waitFor(what, timeoutMs, fn, intervalMs = 500) {
  const start = Date.now();
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() - start > timeoutMs) {
      fail(`timed out after ${secs(timeoutMs)} waiting for ${what}${last ? ` (last error: ${last.message})` : ''}`);
    }
    await sleep(intervalMs);
  }
}

export async function httpJson(url, timeoutMs = 1500) {
  const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  const text = await res.text();
  let body = null;
  try {
    body = JSON.parse(text);
  } catch {
    body = text;
  }
  return { status: res.status, body };
}

/** True when a PostgreSQL server answers an SSLRequest through `port` (works through HAProxy). */
export function pgAnswers(port, timeoutMs = 1500) {
  return new Promise((resolve) => {
    const sock = net.connect({ host: HOST, port });
    const done = (v) => {
      sock.destroy();
      resolve(v);
    };
    sock.setTimeout(timeoutMs, () => done(false));
    sock.on('error', () => done(false));
    sock.on('close', () => done(false));
    sock.on('connect', () => {
      const req = Buffer.alloc(8);
      req.writeInt32BE(8, 0);
      req.writeInt32BE(80877103, 4); // SSLRequest code
      sock.write(req);
    });
    sock.on('data', (d) => done(d.length > 0 && (d[0] === 0x4e || d[0] === 0x53))); // 'N' or 'S'
  });
}

export function parseEnvFile(file) {
  const env = {};
  for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
    const t = line.trim();
    if (!t || t.startsWith('#')) continue;
    const i = t.indexOf('=');
    if (i > 0) env[t.slice(0, i).trim()] = t.slice(i + 1).trim();
  }
  return env;
}

export function parseArgs(argv) {
  const positional = [];
  const flags = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a.startsWith('--')) {
      const [k, v] = a.slice(2).split('=', 2);
      if (v !== undefined) flags[k] = v;
      else if (argv[i + 1] !== undefined && !argv[i + 1].startsWith('--')) flags[k] = argv[++i];
      else flags[k] = true;
    } else positional.push(a);
  }
  return { positional, flags };
}

export function numberFlag(flags, name, dflt) {
  if (flags[name] === undefined || flags[name] === true) return dflt;
  const n = Number(flags[name]);
  if (!Number.isFinite(n) || n <= 0) fail(`--${name} needs a positive number, got ${flags[name]}`);
  return n;
}

// ---------------------------------------------------------------------------------------------
// system packages

export function ensurePackages(commands) {
  const missing = commands.filter((c) => !have(c));
  if (missing.length === 0) return;
  if (process.getuid && process.getuid() !== 0) {
    fail(`missing ${missing.join(', ')}; run scripts/setup-system.sh as root`);
  }
  log(`missing ${missing.join(', ')}: running scripts/setup-system.sh`);
  must('bash', [path.join(REPO, 'scripts', 'setup-system.sh')], { inherit: true, timeoutMs: 900_000 });
  const still = commands.filter((c) => !have(c));
  if (still.length) fail(`still missing after setup-system.sh: ${still.join(', ')}`);
}

export function ensurePackagesForce() {
  log('PostgreSQL 15 missing: running scripts/setup-system.sh');
  must('bash', [path.join(REPO, 'scripts', 'setup-system.sh')], { inherit: true, timeoutMs: 900_000 });
}