// Native backend: the same services from the same files in cluster/ as local processes under
// NATIVE_DIR (PG_CLUSTER_NATIVE_DIR), for machines where no Docker engine can start.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import {
  CLUSTER_DIR, HOST, NATIVE_DIR, NODES, NODE_BY_NAME, SERVICES, ensurePackages, ensurePackagesForce,
  fail, httpJson, log, must, parseEnvFile, sleep, waitFor,
} from './common.mjs';
import { dockerClusterRunning, dockerWorks } from './image.mjs';

export const N = {
  conf: path.join(NATIVE_DIR, 'conf'),
  run: path.join(NATIVE_DIR, 'run'),
  logs: path.join(NATIVE_DIR, 'log'),
  data: path.join(NATIVE_DIR, 'data'),
  etcd: path.join(NATIVE_DIR, 'etcd'),
};

export function pidAlive(pid) {
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

export function readPid(service) {
  try {
    const pid = Number(fs.readFileSync(path.join(N.run, `${service}.pid`), 'utf8').trim());
    return Number.isInteger(pid) && pid > 0 ? pid : null;
  } catch {
    return null;
  }
}

export function servicePid(service) {
  const pid = readPid(service);
  return pidAlive(pid) ? pid : null;
}

export function childrenOf(pid) {
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

export function nodeDataDir(name) {
  return path.join(N.data, name);
}

export function postmasterPid(name) {
  try {
    const pid = Number(fs.readFileSync(path.join(nodeDataDir(name), 'postmaster.pid'), 'utf8').split('\n')[0]);
    return pidAlive(pid) ? pid : null;
  } catch {
    return null;
  }
}

export function killHard(pids) {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
  }
}

export function nativeEnv(service) {
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

export function nativeSpawn(service) {
  const logFile = path.join(N.logs, `${service}.log`);
  const fd = fs.openSync(logFile, 'a');
  const role = NODE_BY_NAME.has(service) ? 'patroni' : service;
  const child = spawn('sh', [path.join(N.conf, 'entrypoint.sh'), role], {
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

export function nativeKillNode(name) {
  const patroni = servicePid(name);
  const pm = postmasterPid(name);
  const victims = [];
  if (patroni) victims.push(patroni);
  if (pm) victims.push(pm, ...childrenOf(pm));
  killHard(victims);
  return victims;
}

export const native = {
  name: 'native',

  async prepare() {
    ensurePackages(['etcd', 'patroni', 'patronictl', 'haproxy', 'pgbouncer', 'setpriv']);
    if (!fs.existsSync('/usr/lib/postgresql/15/bin/postgres')) ensurePackagesForce();
  },

  isRunning() {
    return SERVICES.some((s) => servicePid(s) !== null);
  },

  async up() {
    await this.prepare();
    if (dockerWorks() && dockerClusterRunning()) fail('the docker cluster is running on the same ports: run `npm run cluster -- down` first');
    for (const d of [NATIVE_DIR, N.conf, N.run, N.logs]) fs.mkdirSync(d, { recursive: true });
    fs.mkdirSync(N.data, { recursive: true });
    must('chown', ['postgres:postgres', N.data]);
    fs.chmodSync(N.data, 0o700);
    fs.chmodSync(NATIVE_DIR, 0o755);
    for (const f of ['patroni.yml', 'haproxy.cfg', 'pgbouncer.ini', 'pgbouncer-userlist.txt', 'entrypoint.sh']) {
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
    for (const s of ['haproxy', 'pgbouncer']) {
      if (!servicePid(s)) {
        log(`starting ${s}`);
        nativeSpawn(s);
      }
    }
    await sleep(300);
    for (const s of SERVICES) {
      if (!servicePid(s)) fail(`${s} exited right after start; see ${path.join(N.logs, `${s}.log`)}`);
    }
  },

  async down() {
    for (const n of NODES) nativeKillNode(n.name);
    for (const s of ['pgbouncer', 'haproxy', 'etcd']) {
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

  async killPgbouncer() {
    const pid = servicePid('pgbouncer');
    if (!pid) fail('pgbouncer is not running');
    killHard([pid]);
  },

  async startPgbouncer() {
    if (!fs.existsSync(N.conf)) fail('the native cluster was never brought up: run `up` first');
    if (servicePid('pgbouncer')) {
      log('pgbouncer is already running');
      return;
    }
    nativeSpawn('pgbouncer');
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