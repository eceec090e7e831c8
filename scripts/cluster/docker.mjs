// Docker backend: docker-compose.yml at the repository root, every service on the host network.
import {
  COMPOSE_FILE, IMAGE, PROJECT, fail, log, must, run, secs,
} from './common.mjs';
import { dockerClusterRunning, dockerWorks, ensureBaseImage, ensureDockerEngine, imageExists } from './image.mjs';
import { native } from './native.mjs';

export function compose(args, opts = {}) {
  return run('docker-compose', ['-p', PROJECT, '-f', COMPOSE_FILE, ...args], opts);
}
export function mustCompose(args, opts = {}) {
  return must('docker-compose', ['-p', PROJECT, '-f', COMPOSE_FILE, ...args], opts);
}

export function containerName(service) {
  return `${PROJECT}-${service}`;
}

export function dockerExec(service, args, opts = {}) {
  return must('docker', ['exec', containerName(service), ...args], opts);
}

export const docker = {
  name: 'docker',

  async prepare() {
    await ensureDockerEngine();
  },

  isRunning() {
    return dockerClusterRunning();
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

  /** The pooler's pod deleted: SIGKILL, then the container removed (a new pod starts afresh). */
  async killPgbouncer() {
    const r = run('docker', ['kill', '-s', 'KILL', containerName('pgbouncer')], { timeoutMs: 30_000 });
    if (!r.ok) fail(`pgbouncer is not running: ${r.stderr.trim()}`);
    run('docker', ['rm', '-f', containerName('pgbouncer')], { timeoutMs: 30_000 });
  },

  async startPgbouncer() {
    mustCompose(['up', '-d', '--no-deps', 'pgbouncer'], { timeoutMs: 120_000 });
  },

  logs(service, lines) {
    const args = ['logs', '--no-color', '--tail', String(lines)];
    if (service) args.push(service);
    mustCompose(args, { inherit: true, timeoutMs: 60_000 });
  },
};