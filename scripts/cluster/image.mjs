// The Docker engine and the cluster's base image: start dockerd when it is not running, and make
// debian:bookworm from Debian's packages with debootstrap when no registry can be reached.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import {
  BASE_IMAGE, BASE_PACKAGES, LOCAL_DIR, PROJECT, ensurePackages, fail, log, must, run, secs, waitFor,
} from './common.mjs';

export const dockerWorks = () => run('docker', ['info'], { timeoutMs: 20_000 }).ok;

export async function ensureDockerEngine() {
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

/** True when a container of this project runs (either backend checks it before starting). */
export function dockerClusterRunning() {
  if (!dockerWorks()) return false;
  const r = run('docker', ['ps', '-q', '--filter', `name=^${PROJECT}-`], { timeoutMs: 20_000 });
  return r.ok && r.stdout.trim() !== '';
}

export const imageExists = (name) => run('docker', ['image', 'inspect', name], { timeoutMs: 20_000 }).ok;

export function debianMirror() {
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

export async function ensureBaseImage() {
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