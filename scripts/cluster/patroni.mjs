// Patroni's REST API: the cluster view (GET /cluster on the first node that answers), the
// summary printed by `status`, and the health rule every verb waits on.
import {
  HAPROXY_RW_PORT, HOST, NODES, NODE_BY_NAME, PGBOUNCER_PORT, fail, httpJson, log, pgAnswers, secs, sleep,
} from './common.mjs';


/** GET /cluster from the first node that answers. */
export async function fetchCluster() {
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

export function restPortOf(m) {
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

export function summarize(cluster, backend) {
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

export async function currentLeader() {
  const c = await fetchCluster();
  const m = c.members.find((x) => x.role === 'leader' || x.role === 'master');
  if (!m) fail('the cluster has no leader right now');
  return m;
}

/** Returns null when healthy, otherwise a reason string. */
export async function unhealthyReason({ checkHaproxy = true, checkPgbouncer = true } = {}) {
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
  if (!replicas.some((r) => r.role === 'sync_standby')) {
    // Left in async mode (`replication async`, e.g. by a test that failed half-way): say so.
    const config = await httpJson(`http://${HOST}:${restPortOf(leader)}/config`).catch(() => null);
    if (config?.body?.synchronous_mode === false) return 'synchronous_mode is off (run: npm run cluster -- replication sync)';
    return 'no synchronous standby yet';
  }
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
  if (checkPgbouncer && !(await pgAnswers(PGBOUNCER_PORT))) return `PgBouncer :${PGBOUNCER_PORT} does not answer`;
  return null;
}

// Patroni 3.0.2 (Debian bookworm's) can deadlock: seen here once after a switchover's demote
// ("manual failover: demote in progress", then nothing), as in patroni/patroni#2378 and #2738. Its
// REST API then times out (a killed node refuses at once instead) and its member key expires.
const STUCK_AFTER_MS = 20_000;

/** Nodes absent from the cluster view whose REST API times out (not refuses): a hung Patroni. */
async function silentNodes(cluster) {
  const present = new Set((cluster?.members ?? []).map((m) => m.name));
  const silent = [];
  for (const n of NODES) {
    if (present.has(n.name)) continue;
    try {
      await httpJson(`http://${HOST}:${n.restPort}/patroni`);
    } catch (e) {
      if (e?.name === 'TimeoutError') silent.push(n.name);
    }
  }
  return silent;
}

/**
 * Waits until the cluster is healthy. With `restartStuck`, a node whose Patroni has hung for
 * STUCK_AFTER_MS is restarted once (loudly), rather than failing the wait after its timeout.
 * @param {number} timeoutMs
 * @param {{ restartStuck?: (name: string) => Promise<void> }} [options]
 */
export async function waitHealthy(timeoutMs, { restartStuck } = {}) {
  const start = Date.now();
  let reason = 'not checked yet';
  let lastLogged = 0;
  const silentSince = new Map();
  const restarted = new Set();
  for (;;) {
    reason = await unhealthyReason();
    if (reason === null) return Date.now() - start;
    if (Date.now() - lastLogged > 5000) {
      log(`waiting for a healthy cluster: ${reason}`);
      lastLogged = Date.now();
    }
    if (restartStuck) {
      const silent = await silentNodes(await fetchCluster().catch(() => null));
      for (const name of [...silentSince.keys()]) if (!silent.includes(name)) silentSince.delete(name);
      for (const name of silent) {
        if (!silentSince.has(name)) silentSince.set(name, Date.now());
        if (Date.now() - silentSince.get(name) >= STUCK_AFTER_MS && !restarted.has(name)) {
          log(`!! Patroni on ${name} hung (REST API silent, member key expired for ${secs(Date.now() - silentSince.get(name))}; Patroni 3.0.2 deadlock): restarting ${name}`);
          restarted.add(name);
          await restartStuck(name);
        }
      }
    }
    if (Date.now() - start > timeoutMs) fail(`cluster not healthy after ${secs(timeoutMs)}: ${reason}`);
    await sleep(500);
  }
}
