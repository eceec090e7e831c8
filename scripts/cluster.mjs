#!/usr/bin/env node
// Driver for the test cluster: etcd + three PostgreSQL 15 nodes run by Patroni + HAProxy.
//
//   node scripts/cluster.mjs <verb> [args]   (or: npm run -s cluster -- <verb> [args]; without -s,
//                                             npm prints its own banner on stdout before the JSON)
//
// Verbs: up, down, status, kill-primary [--wait], switchover, start <node>, stop-postgres-primary,
//        blackhole-primary, heal, wait-healthy [--timeout ms], logs [service] [--lines n]
//
// Backend, chosen by PG_CLUSTER_BACKEND:
//   docker (default)  docker-compose.yml at the repository root; the engine is installed and started
//                     when `docker info` fails, the base image is made with debootstrap when it
//                     cannot be pulled.
//   native            the same services from the same files in cluster/ as local processes.
//   auto              docker, falling back (loudly) to native when the engine cannot start.
//
// Results are printed as JSON on stdout; progress and diagnostics go to stderr. Every wait has a
// timeout; any failure exits non-zero with a message. Plain ESM, Node builtins only, no build step.

import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const CLUSTER_DIR = path.join(REPO, 'cluster');
const COMPOSE_FILE = path.join(REPO, 'docker-compose.yml');
const LOCAL_DIR = path.join(REPO, '.cluster');
const PROJECT = 'pg-resilient';
const IMAGE = 'pg-resilient-cluster:latest';
const BASE_IMAGE = 'debian:bookworm';
const BASE_PACKAGES = [
  'postgresql-15', 'patroni', 'etcd-server', 'etcd-client', 'python3-etcd', 'python3-psycopg2',
  'haproxy', 'iproute2', 'procps', 'ca-certificates',
];
const NATIVE_DIR = process.env.PG_CLUSTER_NATIVE_DIR || '/tmp/pg-resilient-cluster';
const IPTABLES_COMMENT = 'pg-resilient-blackhole';
const HOST = '127.0.0.1';
const HAPROXY_RW_PORT = 5000;
const HAPROXY_RO_PORT = 5001;

const NODES = [
  { name: 'pg1', port: 5433, restPort: 8008 },
  { name: 'pg2', port: 5434, restPort: 8009 },
  { name: 'pg3', port: 5435, restPort: 8010 },
];
const NODE_BY_NAME = new Map(NODES.map((n) => [n.name, n]));
const SERVICES = ['etcd', 'pg1', 'pg2', 'pg3', 'haproxy'];

// ---------------------------------------------------------------------------------------------
// small utilities

class ClusterError extends Error {}

const fail = (msg) => {
  throw new ClusterError(msg);
};
const log = (msg) => process.stderr.write(`[cluster] ${msg}\n`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const out = (obj) => process.stdout.write(`${JSON.stringify(obj)}\n`);
const secs = (ms) => `${(ms / 1000).toFixed(1)} s`;

/** Run a command synchronously. By default output is captured; `inherit` sends it to our stderr. */
function run(cmd, args, opts = {}) {
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

function must(cmd, args, opts = {}) {
  const r = run(cmd, args, opts);
  if (!r.ok) {
    const detail = `${r.stderr}\n${r.stdout}`.trim().split('\n').slice(-15).join('\n');
    fail(`command failed (exit ${r.status}): ${cmd} ${args.join(' ')}${detail ? `\n${detail}` : ''}`);
  }
  return r;
}

const have = (cmd) => run('sh', ['-c', `command -v ${cmd}`], { timeoutMs: 5000 }).ok;

async function waitFor(what, timeoutMs, fn, intervalMs = 500) {
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

async function httpJson(url, timeoutMs = 1500) {
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
function pgAnswers(port, timeoutMs = 1500) {
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

function parseEnvFile(file) {
  const env = {};
  for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
    const t = line.trim();
    if (!t || t.startsWith('#')) continue;
    const i = t.indexOf('=');
    if (i > 0) env[t.slice(0, i).trim()] = t.slice(i + 1).trim();
  }
  return env;
}

function parseArgs(argv) {
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

function numberFlag(flags, name, dflt) {
  if (flags[name] === undefined || flags[name] === true) return dflt;
  const n = Number(flags[name]);
  if (!Number.isFinite(n) || n <= 0) fail(`--${name} needs a positive number, got ${flags[name]}`);
  return n;
}

// ---------------------------------------------------------------------------------------------
// Patroni REST: cluster view and health

/** GET /cluster from the first node that answers. */
async function fetchCluster() {
  let lastErr;
  for (const n of NODES) {
    try {
      const r = await httpJson(`http://${HOST}:${n.restPort}/cluster`);
      if (r.status === 200 && r.body && Array.isArray(r.body.members)) return r.body;
      lastErr = new Error(`${n.name}: HTTP ${r.status}`);
    } catch (e) {
      lastErr = new Error(`${n.name}: ${e.message}`);
    }
  }
  throw lastErr ?? new Error('no Patroni REST endpoint answered');
}

function restPortOf(m) {
  const known = NODE_BY_NAME.get(m.name);
  if (m.api_url) {
    try {
      return Number(new URL(m.api_url).port);
    } catch {
      /* fall through */
    }
  }
  return known ? known.restPort : null;
}

function summarize(cluster, backend) {
  const members = (cluster?.members ?? [])
    .map((m) => ({
      name: m.name,
      role: m.role,
      state: m.state,
      host: m.host ?? HOST,
      port: m.port ?? NODE_BY_NAME.get(m.name)?.port ?? null,
      restPort: restPortOf(m),
      timeline: typeof m.timeline === 'number' ? m.timeline : null,
      lagBytes: m.role === 'leader' ? 0 : typeof m.lag === 'number' ? m.lag : null,
    }))
    .sort((a, b) => a.name.localeCompare(b.name));
  const leader = members.find((m) => m.role === 'leader' || m.role === 'master' || m.role === 'standby_leader');
  return { backend, leader: leader ? leader.name : null, members };
}

async function currentLeader() {
  const c = await fetchCluster();
  const m = c.members.find((x) => x.role === 'leader' || x.role === 'master');
  if (!m) fail('the cluster has no leader right now');
  return m;
}

/** Returns null when healthy, otherwise a reason string. */
async function unhealthyReason({ checkHaproxy = true } = {}) {
  let c;
  try {
    c = await fetchCluster();
  } catch (e) {
    return `Patroni REST not answering (${e.message})`;
  }
  const leaders = c.members.filter((m) => m.role === 'leader' || m.role === 'master');
  if (leaders.length !== 1) return `${leaders.length} leaders`;
  const leader = leaders[0];
  if (leader.state !== 'running') return `leader ${leader.name} is ${leader.state}`;
  const replicas = c.members.filter((m) => m !== leader);
  if (replicas.length !== NODES.length - 1) return `${replicas.length} replicas in the cluster view`;
  for (const r of replicas) {
    if (r.role !== 'replica' && r.role !== 'sync_standby') return `${r.name} has role ${r.role}`;
    if (r.state !== 'running' && r.state !== 'streaming') return `${r.name} is ${r.state}`;
    if (typeof leader.timeline === 'number' && typeof r.timeline === 'number' && r.timeline !== leader.timeline) {
      return `${r.name} on timeline ${r.timeline}, leader on ${leader.timeline}`;
    }
    if (typeof r.lag !== 'number') return `${r.name} lag is ${r.lag}`;
  }
  if (!replicas.some((r) => r.role === 'sync_standby')) return 'no synchronous standby yet';
  // The leader's own view: both replicas streaming from it.
  try {
    const port = restPortOf(leader);
    const p = await httpJson(`http://${HOST}:${port}/patroni`);
    const repl = Array.isArray(p.body?.replication) ? p.body.replication : [];
    const streaming = repl.filter((x) => x.state === 'streaming').map((x) => x.application_name);
    for (const r of replicas) {
      if (!streaming.includes(r.name)) return `${r.name} not streaming from ${leader.name}`;
    }
  } catch (e) {
    return `leader REST /patroni failed (${e.message})`;
  }
  if (checkHaproxy && !(await pgAnswers(HAPROXY_RW_PORT))) return `HAProxy :${HAPROXY_RW_PORT} does not reach a server`;
  return null;
}

async function waitHealthy(timeoutMs) {
  const start = Date.now();
  let reason = 'not checked yet';
  let lastLogged = 0;
  for (;;) {
    reason = await unhealthyReason();
    if (reason === null) return Date.now() - start;
    if (Date.now() - lastLogged > 5000) {
      log(`waiting for a healthy cluster: ${reason}`);
      lastLogged = Date.now();
    }
    if (Date.now() - start > timeoutMs) fail(`cluster not healthy after ${secs(timeoutMs)}: ${reason}`);
    await sleep(500);
  }
}

// ---------------------------------------------------------------------------------------------
// system packages

function ensurePackages(commands) {
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

// ---------------------------------------------------------------------------------------------
// iptables blackhole (shared by both backends: with host networking the rules apply to both)

function blackholeRules() {
  const r = run('iptables', ['-S', 'INPUT'], { timeoutMs: 15_000 });
  if (!r.ok) return [];
  return r.stdout.split('\n').filter((l) => l.includes(IPTABLES_COMMENT));
}

function healRules() {
  const removed = [];
  for (const rule of blackholeRules()) {
    // "-A INPUT -p tcp ... -j DROP" -> delete the same spec
    const spec = rule.replace(/^-A INPUT /, '');
    const args = ['-D', 'INPUT', ...splitRule(spec)];
    const r = run('iptables', args, { timeoutMs: 15_000 });
    if (!r.ok) fail(`could not remove iptables rule "${rule}": ${r.stderr.trim()}`);
    const m = rule.match(/--dport (\d+)/);
    if (m) removed.push(Number(m[1]));
  }
  return removed;
}

function splitRule(spec) {
  const parts = [];
  const re = /"([^"]*)"|(\S+)/g;
  let m;
  while ((m = re.exec(spec))) parts.push(m[1] ?? m[2]);
  return parts;
}

// ---------------------------------------------------------------------------------------------
// Docker backend

function compose(args, opts = {}) {
  return run('docker-compose', ['-p', PROJECT, '-f', COMPOSE_FILE, ...args], opts);
}
function mustCompose(args, opts = {}) {
  return must('docker-compose', ['-p', PROJECT, '-f', COMPOSE_FILE, ...args], opts);
}

const dockerWorks = () => run('docker', ['info'], { timeoutMs: 20_000 }).ok;

async function ensureDockerEngine() {
  if (dockerWorks()) return;
  ensurePackages(['docker', 'dockerd', 'docker-compose']);
  if (dockerWorks()) return;
  fs.mkdirSync(LOCAL_DIR, { recursive: true });
  const logFile = path.join(LOCAL_DIR, 'dockerd.log');
  log(`docker engine not running: starting dockerd in the background (log: ${logFile})`);
  const fd = fs.openSync(logFile, 'a');
  // No default bridge and no iptables changes: every service uses the host's network.
  const child = spawn('dockerd', ['--bridge=none', '--iptables=false', '--ip-masq=false'], {
    detached: true,
    stdio: ['ignore', fd, fd],
  });
  child.unref();
  fs.closeSync(fd);
  let exited = null;
  child.on('exit', (code) => {
    exited = code;
  });
  await waitFor('the docker engine (docker info)', 60_000, () => {
    if (exited !== null) {
      const tail = fs.readFileSync(logFile, 'utf8').split('\n').slice(-10).join('\n');
      fail(`dockerd exited with code ${exited}:\n${tail}`);
    }
    return dockerWorks();
  }, 1000);
  log('docker engine is up');
}

const imageExists = (name) => run('docker', ['image', 'inspect', name], { timeoutMs: 20_000 }).ok;

function debianMirror() {
  const candidates = [];
  const dir = '/etc/apt/sources.list.d';
  try {
    for (const f of fs.readdirSync(dir)) {
      if (f.endsWith('.sources') || f.endsWith('.list')) candidates.push(path.join(dir, f));
    }
  } catch {
    /* none */
  }
  candidates.unshift('/etc/apt/sources.list');
  for (const f of candidates) {
    let text;
    try {
      text = fs.readFileSync(f, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n')) {
      const t = line.trim();
      if (t.startsWith('#')) continue;
      let m = t.match(/^URIs:\s*(\S+)/);
      if (!m) m = t.match(/^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+bookworm\s/);
      if (m && /\/debian\/?$/.test(m[1])) return m[1];
    }
  }
  return 'http://deb.debian.org/debian';
}

async function ensureBaseImage() {
  if (imageExists(BASE_IMAGE)) return;
  log(`base image ${BASE_IMAGE} missing: trying docker pull`);
  const pull = run('docker', ['pull', BASE_IMAGE], { timeoutMs: 120_000 });
  if (pull.ok) return;
  log(`pull failed (${pull.stderr.trim().split('\n').pop()}): making ${BASE_IMAGE} locally with debootstrap`);
  ensurePackages(['debootstrap']);
  const rootfs = path.join(LOCAL_DIR, 'rootfs');
  fs.rmSync(rootfs, { recursive: true, force: true });
  fs.mkdirSync(LOCAL_DIR, { recursive: true });
  const mirror = debianMirror();
  let t = Date.now();
  log(`debootstrap --variant=minbase bookworm from ${mirror} (takes a minute or two)`);
  must(
    'debootstrap',
    ['--variant=minbase', `--include=${BASE_PACKAGES.join(',')}`, 'bookworm', rootfs, mirror],
    { timeoutMs: 1_200_000, env: { DEBIAN_FRONTEND: 'noninteractive' } },
  );
  log(`debootstrap took ${secs(Date.now() - t)}`);
  t = Date.now();
  // Leave a clean tree: no apt lists, no cluster made by postgresql-common.
  for (const p of ['var/lib/apt/lists', 'var/cache/apt/archives']) {
    run('sh', ['-c', `rm -rf ${path.join(rootfs, p)}/* 2>/dev/null; true`]);
  }
  must('sh', ['-c', `tar -C '${rootfs}' -c . | docker import - ${BASE_IMAGE}`], { timeoutMs: 600_000 });
  log(`docker import took ${secs(Date.now() - t)}`);
  fs.rmSync(rootfs, { recursive: true, force: true });
}

function containerName(service) {
  return `${PROJECT}-${service}`;
}

function dockerExec(service, args, opts = {}) {
  return must('docker', ['exec', containerName(service), ...args], opts);
}

const docker = {
  name: 'docker',

  async prepare() {
    await ensureDockerEngine();
  },

  isRunning() {
    if (!dockerWorks()) return false;
    const r = run('docker', ['ps', '-q', '--filter', `name=^${PROJECT}-`], { timeoutMs: 20_000 });
    return r.ok && r.stdout.trim() !== '';
  },

  async up() {
    try {
      await ensureDockerEngine();
    } catch (e) {
      fail(`docker engine unavailable: ${e.message}\nSet PG_CLUSTER_BACKEND=native (or auto) to run the same cluster as local processes.`);
    }
    if (native.isRunning()) fail('a native cluster is running on the same ports: run `PG_CLUSTER_BACKEND=native npm run cluster -- down` first');
    const hadImage = imageExists(IMAGE);
    await ensureBaseImage();
    const t = Date.now();
    mustCompose(['build'], { inherit: true, timeoutMs: 1_200_000 });
    if (!hadImage) log(`image ${IMAGE} built in ${secs(Date.now() - t)}`);
    // Containers that exist but none of which runs were left by an engine that died (e.g. a
    // previous session): start from scratch rather than resume a half-remembered cluster.
    const all = run('docker', ['ps', '-aq', '--filter', `name=^${PROJECT}-`], { timeoutMs: 20_000 }).stdout.split('\n').filter(Boolean);
    const running = run('docker', ['ps', '-q', '--filter', `name=^${PROJECT}-`], { timeoutMs: 20_000 }).stdout.split('\n').filter(Boolean);
    if (all.length > 0 && running.length === 0) {
      log(`removing ${all.length} stopped containers of an earlier cluster`);
      must('docker', ['rm', '-f', ...all], { timeoutMs: 120_000 });
    }
    mustCompose(['up', '-d'], { inherit: true, timeoutMs: 300_000 });
    // old images of ours left dangling by a rebuild
    run('docker', ['image', 'prune', '-f', '--filter', 'label=pg-resilient.cluster=1'], { timeoutMs: 60_000 });
  },

  async down() {
    if (!dockerWorks()) {
      log('docker engine not running: no containers to remove');
      return;
    }
    mustCompose(['down', '--volumes', '--remove-orphans', '--timeout', '5'], { inherit: true, timeoutMs: 300_000 });
    // containers left by a run from another directory (same fixed container names)
    const r = run('docker', ['ps', '-aq', '--filter', `name=^${PROJECT}-`], { timeoutMs: 20_000 });
    const ids = r.stdout.split('\n').filter(Boolean);
    if (ids.length) must('docker', ['rm', '-f', ...ids], { timeoutMs: 120_000 });
  },

  async killNode(name) {
    mustCompose(['kill', '-s', 'SIGKILL', name], { timeoutMs: 60_000 });
  },

  async startNode(name) {
    mustCompose(['start', name], { timeoutMs: 120_000 });
  },

  async killPostmaster(name) {
    const r = dockerExec(name, ['sh', '-c', 'pid=$(head -1 "$PATRONI_POSTGRESQL_DATA_DIR/postmaster.pid") && kill -9 "$pid" && echo "$pid"']);
    return Number(r.stdout.trim());
  },

  async patronictl(args, leaderName) {
    return dockerExec(leaderName, ['patronictl', '-c', '/etc/pg-resilient/patroni.yml', ...args], { timeoutMs: 120_000 });
  },

  logs(service, lines) {
    const args = ['logs', '--no-color', '--tail', String(lines)];
    if (service) args.push(service);
    mustCompose(args, { inherit: true, timeoutMs: 60_000 });
  },
};

// ---------------------------------------------------------------------------------------------
// Native backend: same files, local processes under NATIVE_DIR

const N = {
  conf: path.join(NATIVE_DIR, 'conf'),
  run: path.join(NATIVE_DIR, 'run'),
  logs: path.join(NATIVE_DIR, 'log'),
  data: path.join(NATIVE_DIR, 'data'),
  etcd: path.join(NATIVE_DIR, 'etcd'),
};

function pidAlive(pid) {
  if (!pid) return false;
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  // a zombie counts as dead
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0];
    return state !== 'Z';
  } catch {
    return false;
  }
}

function readPid(service) {
  try {
    const pid = Number(fs.readFileSync(path.join(N.run, `${service}.pid`), 'utf8').trim());
    return Number.isInteger(pid) && pid > 0 ? pid : null;
  } catch {
    return null;
  }
}

function servicePid(service) {
  const pid = readPid(service);
  return pidAlive(pid) ? pid : null;
}

function childrenOf(pid) {
  const kids = [];
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) kids.push(Number(d));
    } catch {
      /* gone */
    }
  }
  return kids;
}

function nodeDataDir(name) {
  return path.join(N.data, name);
}

function postmasterPid(name) {
  try {
    const pid = Number(fs.readFileSync(path.join(nodeDataDir(name), 'postmaster.pid'), 'utf8').split('\n')[0]);
    return pidAlive(pid) ? pid : null;
  } catch {
    return null;
  }
}

function killHard(pids) {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
  }
}

function nativeEnv(service) {
  const base = {
    PATH: process.env.PATH || '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
    LANG: 'C.UTF-8',
    LC_ALL: 'C.UTF-8',
    PG_RESILIENT_CONF_DIR: N.conf,
  };
  if (service === 'etcd') {
    return { ...base, ...parseEnvFile(path.join(CLUSTER_DIR, 'etcd.env')), ETCD_DATA_DIR: N.etcd };
  }
  if (NODE_BY_NAME.has(service)) {
    return {
      ...base,
      ...parseEnvFile(path.join(CLUSTER_DIR, `${service}.env`)),
      PATRONI_POSTGRESQL_DATA_DIR: nodeDataDir(service),
      PATRONI_POSTGRESQL_PGPASS: path.join(N.data, `${service}.pgpass`),
      PG_RESILIENT_POSTGRES_HOME: N.data,
    };
  }
  return base;
}

function nativeSpawn(service) {
  const logFile = path.join(N.logs, `${service}.log`);
  const fd = fs.openSync(logFile, 'a');
  const child = spawn('sh', [path.join(N.conf, 'entrypoint.sh'), service === 'etcd' || service === 'haproxy' ? service : 'patroni'], {
    detached: true,
    stdio: ['ignore', fd, fd],
    env: nativeEnv(service),
    cwd: NATIVE_DIR,
  });
  child.unref();
  fs.closeSync(fd);
  // entrypoint.sh execs the program, so the child's pid is the program's
  fs.writeFileSync(path.join(N.run, `${service}.pid`), `${child.pid}\n`);
  return child.pid;
}

function nativeKillNode(name) {
  const patroni = servicePid(name);
  const pm = postmasterPid(name);
  const victims = [];
  if (patroni) victims.push(patroni);
  if (pm) victims.push(pm, ...childrenOf(pm));
  killHard(victims);
  return victims;
}

const native = {
  name: 'native',

  async prepare() {
    ensurePackages(['etcd', 'patroni', 'patronictl', 'haproxy', 'setpriv']);
    if (!fs.existsSync('/usr/lib/postgresql/15/bin/postgres')) ensurePackagesForce();
  },

  isRunning() {
    return SERVICES.some((s) => servicePid(s) !== null);
  },

  async up() {
    await this.prepare();
    if (dockerWorks() && docker.isRunning()) fail('the docker cluster is running on the same ports: run `npm run cluster -- down` first');
    for (const d of [NATIVE_DIR, N.conf, N.run, N.logs]) fs.mkdirSync(d, { recursive: true });
    fs.mkdirSync(N.data, { recursive: true });
    must('chown', ['postgres:postgres', N.data]);
    fs.chmodSync(N.data, 0o700);
    fs.chmodSync(NATIVE_DIR, 0o755);
    for (const f of ['patroni.yml', 'haproxy.cfg', 'entrypoint.sh']) {
      fs.copyFileSync(path.join(CLUSTER_DIR, f), path.join(N.conf, f));
      fs.chmodSync(path.join(N.conf, f), 0o755);
    }
    if (!servicePid('etcd')) {
      log('starting etcd');
      nativeSpawn('etcd');
    }
    await waitFor('etcd health on :2379', 30_000, async () => {
      if (!servicePid('etcd')) fail(`etcd exited; see ${path.join(N.logs, 'etcd.log')}`);
      const r = await httpJson(`http://${HOST}:2379/health`);
      return r.status === 200 && String(r.body?.health) === 'true';
    });
    for (const n of NODES) {
      if (!servicePid(n.name)) {
        log(`starting patroni ${n.name}`);
        nativeSpawn(n.name);
      }
    }
    if (!servicePid('haproxy')) {
      log('starting haproxy');
      nativeSpawn('haproxy');
    }
    await sleep(300);
    for (const s of SERVICES) {
      if (!servicePid(s)) fail(`${s} exited right after start; see ${path.join(N.logs, `${s}.log`)}`);
    }
  },

  async down() {
    for (const n of NODES) nativeKillNode(n.name);
    for (const s of ['haproxy', 'etcd']) {
      const pid = servicePid(s);
      if (pid) killHard([pid]);
    }
    // stray postgres processes whose data dir is ours (e.g. pid files lost)
    for (const d of fs.readdirSync('/proc')) {
      if (!/^\d+$/.test(d)) continue;
      try {
        const cmd = fs.readFileSync(`/proc/${d}/cmdline`, 'utf8');
        if (cmd.includes(NATIVE_DIR)) killHard([Number(d)]);
      } catch {
        /* gone */
      }
    }
    await sleep(300);
    fs.rmSync(NATIVE_DIR, { recursive: true, force: true });
  },

  async killNode(name) {
    const victims = nativeKillNode(name);
    if (victims.length === 0) fail(`${name} has no running processes`);
  },

  async startNode(name) {
    if (!fs.existsSync(N.conf)) fail('the native cluster was never brought up: run `up` first');
    if (servicePid(name)) {
      log(`${name}'s patroni is already running`);
      return;
    }
    // a postmaster orphaned by a killed patroni would block the restart
    const pm = postmasterPid(name);
    if (pm) killHard([pm, ...childrenOf(pm)]);
    nativeSpawn(name);
  },

  async killPostmaster(name) {
    const pm = postmasterPid(name);
    if (!pm) fail(`${name} has no running postmaster`);
    killHard([pm]);
    return pm;
  },

  async patronictl(args) {
    return must('patronictl', ['-c', path.join(N.conf, 'patroni.yml'), ...args], { timeoutMs: 120_000, env: nativeEnv('pg1') });
  },

  logs(service, lines) {
    const services = service ? [service] : SERVICES;
    for (const s of services) {
      const f = path.join(N.logs, `${s}.log`);
      if (!fs.existsSync(f)) continue;
      process.stderr.write(`==> ${s} <==\n`);
      process.stderr.write(fs.readFileSync(f, 'utf8').split('\n').slice(-lines).join('\n') + '\n');
    }
  },
};

function ensurePackagesForce() {
  log('PostgreSQL 15 missing: running scripts/setup-system.sh');
  must('bash', [path.join(REPO, 'scripts', 'setup-system.sh')], { inherit: true, timeoutMs: 900_000 });
}

// ---------------------------------------------------------------------------------------------
// backend choice

function loudFallback(reason) {
  const bar = '!'.repeat(78);
  process.stderr.write(`\n${bar}\n[cluster] DOCKER ENGINE UNAVAILABLE: ${reason}\n[cluster] PG_CLUSTER_BACKEND=auto: FALLING BACK TO THE NATIVE BACKEND (local processes)\n${bar}\n\n`);
}

async function chooseBackend(verb) {
  const want = (process.env.PG_CLUSTER_BACKEND || 'docker').toLowerCase();
  if (want === 'docker') return docker;
  if (want === 'native') return native;
  if (want !== 'auto') fail(`PG_CLUSTER_BACKEND must be docker, native or auto (got "${want}")`);
  if (verb !== 'up') {
    // use whichever is running
    if (native.isRunning()) return native;
    if (dockerWorks()) return docker;
    return native;
  }
  try {
    await ensureDockerEngine();
    return docker;
  } catch (e) {
    loudFallback(e.message.split('\n')[0]);
    return native;
  }
}

// ---------------------------------------------------------------------------------------------
// verbs

async function cmdUp(b, flags) {
  const start = Date.now();
  await b.up();
  const timeout = numberFlag(flags, 'timeout', 180_000);
  await waitHealthy(timeout);
  const status = summarize(await fetchCluster(), b.name);
  const tookMs = Date.now() - start;
  log(`cluster up and healthy in ${secs(tookMs)}: leader ${status.leader}`);
  out({ ...status, tookMs });
}

async function cmdDown(b) {
  const start = Date.now();
  // Remove everything whatever the backend: both use the same ports and the same iptables rules.
  const removed = healRules();
  if (removed.length) log(`removed blackhole rules for ports ${removed.join(', ')}`);
  await docker.down().catch((e) => {
    if (b === docker) throw e;
    log(`docker down: ${e.message}`);
  });
  await native.down();
  log(`down in ${secs(Date.now() - start)}`);
  out({ backend: b.name, down: true, tookMs: Date.now() - start });
}

async function cmdStatus(b) {
  const c = await fetchCluster().catch((e) => fail(`cluster not reachable: ${e.message}`));
  out(summarize(c, b.name));
}

async function cmdKillPrimary(b, flags) {
  const leader = await currentLeader();
  await b.killNode(leader.name);
  const at = Date.now();
  log(`killed ${leader.name} (SIGKILL)`);
  const result = { killed: leader.name, at };
  if (flags.wait) {
    const timeout = numberFlag(flags, 'timeout', 60_000);
    const newLeader = await waitFor('a replica to be promoted', timeout, async () => {
      const c = await fetchCluster();
      const l = c.members.find((m) => (m.role === 'leader' || m.role === 'master') && m.name !== leader.name && m.state === 'running');
      return l ? l.name : null;
    }, 200);
    result.newLeader = newLeader;
    result.failoverMs = Date.now() - at;
    log(`${newLeader} promoted ${secs(result.failoverMs)} after the kill`);
  }
  out(result);
}

async function cmdSwitchover(b, flags) {
  // Patroni silently ignores a switchover whose candidate is not the current synchronous
  // standby (e.g. right after a previous switchover), so start from a settled cluster.
  await waitHealthy(numberFlag(flags, 'settle-timeout', 30_000));
  const c = await fetchCluster();
  const leader = c.members.find((m) => m.role === 'leader' || m.role === 'master');
  if (!leader) fail('no leader to switch over from');
  const candidates = c.members.filter((m) => m !== leader && (m.state === 'running' || m.state === 'streaming'));
  // With synchronous_mode Patroni only accepts the synchronous standby as candidate.
  const candidate = (typeof flags.candidate === 'string' && flags.candidate) ||
    candidates.find((m) => m.role === 'sync_standby')?.name || candidates[0]?.name;
  if (!candidate) fail('no running replica to switch over to');
  const at = Date.now();
  const ctl = await b.patronictl(['switchover', '--leader', leader.name, '--candidate', candidate, '--force'], leader.name);
  const ctlOut = `${ctl.stdout}${ctl.stderr}`.trim();
  if (/fail|error/i.test(ctlOut)) fail(`patronictl switchover: ${ctlOut}`);
  const timeout = numberFlag(flags, 'timeout', 30_000);
  await waitFor(`${candidate} to become leader (patronictl said: ${ctlOut.split('\n').pop()})`, timeout, async () => {
    const now = await fetchCluster();
    return now.members.some((m) => m.name === candidate && (m.role === 'leader' || m.role === 'master') && m.state === 'running');
  }, 200);
  const doneAt = Date.now();
  log(`switchover ${leader.name} -> ${candidate} in ${secs(doneAt - at)}`);
  out({ from: leader.name, to: candidate, at, completedAt: doneAt, tookMs: doneAt - at });
}

async function cmdStart(b, positional) {
  const name = positional[0];
  if (!name || !NODE_BY_NAME.has(name)) fail(`usage: start <${NODES.map((n) => n.name).join('|')}>`);
  await b.startNode(name);
  const at = Date.now();
  log(`started ${name}`);
  out({ started: name, at });
}

async function cmdStopPostgresPrimary(b) {
  const leader = await currentLeader();
  const pid = await b.killPostmaster(leader.name);
  const at = Date.now();
  log(`killed the postmaster (pid ${pid} in its namespace) of ${leader.name}; patroni keeps running`);
  out({ node: leader.name, killedPostmaster: true, pid, at });
}

async function cmdBlackholePrimary() {
  const leader = await currentLeader();
  const port = leader.port ?? NODE_BY_NAME.get(leader.name).port;
  ensurePackages(['iptables']);
  const args = ['-I', 'INPUT', '-p', 'tcp', '--dport', String(port), '-m', 'comment', '--comment', IPTABLES_COMMENT, '-j', 'DROP'];
  const r = run('iptables', args, { timeoutMs: 15_000 });
  if (!r.ok) {
    fail(`iptables failed: ${r.stderr.trim()}\n(if this is the nf_tables variant without kernel support, try: update-alternatives --set iptables /usr/sbin/iptables-legacy)`);
  }
  const at = Date.now();
  log(`blackholed ${leader.name}'s PostgreSQL port ${port} (packets dropped, no RST)`);
  out({ node: leader.name, port, at });
}

async function cmdHeal() {
  const ports = healRules();
  const at = Date.now();
  log(ports.length ? `removed blackhole rules for ports ${ports.join(', ')}` : 'no blackhole rules to remove');
  out({ healed: ports, at });
}

async function cmdWaitHealthy(b, flags) {
  const timeout = numberFlag(flags, 'timeout', 60_000);
  const tookMs = await waitHealthy(timeout);
  const status = summarize(await fetchCluster(), b.name);
  out({ ...status, healthy: true, tookMs });
}

async function cmdLogs(b, positional, flags) {
  const service = positional[0];
  if (service && !SERVICES.includes(service)) fail(`unknown service ${service}; one of ${SERVICES.join(', ')}`);
  b.logs(service, numberFlag(flags, 'lines', 100));
}

const USAGE = `usage: node scripts/cluster.mjs <verb>
  up [--timeout ms]                start (idempotent) and wait for leader + 2 streaming replicas
  down                             remove containers / native processes, data and iptables rules
  status                           JSON view of the cluster from Patroni REST
  kill-primary [--wait]            SIGKILL the leader node (with --wait: until a replica is promoted)
  switchover [--candidate pgN]     planned switchover to the synchronous standby
  start <pg1|pg2|pg3>              start a node again
  stop-postgres-primary            kill -9 only the leader's postmaster (Patroni stays)
  blackhole-primary                DROP packets to the leader's PostgreSQL port (iptables)
  heal                             remove the blackhole rules
  wait-healthy [--timeout ms]      wait for leader + 2 replicas on one timeline, streaming
  logs [service] [--lines n]       tail service logs
env PG_CLUSTER_BACKEND=docker|native|auto (default docker)`;

async function main() {
  const [verb, ...rest] = process.argv.slice(2);
  if (!verb || verb === 'help' || verb === '--help' || verb === '-h') {
    process.stderr.write(`${USAGE}\n`);
    process.exit(verb ? 0 : 2);
  }
  const { positional, flags } = parseArgs(rest);
  const b = await chooseBackend(verb);
  log(`backend=${b.name}`);
  switch (verb) {
    case 'up': return cmdUp(b, flags);
    case 'down': return cmdDown(b);
    case 'status': return cmdStatus(b);
    case 'kill-primary': return cmdKillPrimary(b, flags);
    case 'switchover': return cmdSwitchover(b, flags);
    case 'start': return cmdStart(b, positional);
    case 'stop-postgres-primary': return cmdStopPostgresPrimary(b);
    case 'blackhole-primary': return cmdBlackholePrimary();
    case 'heal': return cmdHeal();
    case 'wait-healthy': return cmdWaitHealthy(b, flags);
    case 'logs': return cmdLogs(b, positional, flags);
    default:
      fail(`unknown verb "${verb}"\n${USAGE}`);
  }
}

main().catch((e) => {
  const msg = e instanceof ClusterError ? e.message : e?.stack || String(e);
  process.stderr.write(`[cluster] ERROR: ${msg}\n`);
  process.exit(1);
});
