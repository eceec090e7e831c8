// Asynchronous replication for the cluster (issue 25): `replication async|sync` switches Patroni's
// synchronous_mode through its REST API, and `freeze-senders` / `thaw-senders` SIGSTOP / SIGCONT
// the leader's WAL senders, so that the replicas stay behind while the primary keeps acknowledging
// commits. Killed then, the primary takes those commits with it: the failover users of async
// replication get (Patroni's, CloudNativePG's and Crunchy's default).
//
// Both backends: the WAL senders to freeze are found in the leader's pg_stat_replication (psql over
// the node's unix socket, in its container or on this machine); those to thaw in each node's
// process table (a node shutting down takes no connection); signals go to the node's own pid
// namespace (docker exec, or directly). SIGKILL still ends a stopped process, so a frozen leader
// can be killed as usual.
import {
  HOST, NODES, NODE_BY_NAME, fail, httpJson, log, must, numberFlag, out, run, secs, waitFor,
} from './common.mjs';
import { containerName } from './docker.mjs';
import { childrenOf, postmasterPid } from './native.mjs';
import { currentLeader, fetchCluster, restPortOf } from './patroni.mjs';

/** Runs `script` (sh, with `args` as $1…) in the node's namespace: its container, or this machine. */
function nodeShell(b, node, script, args = [], { mustSucceed = true } = {}) {
  const argv = b.name === 'docker'
    ? ['docker', ['exec', containerName(node), 'sh', '-c', script, 'sh', ...args]]
    : ['sh', ['-c', script, 'sh', ...args]];
  return mustSucceed ? must(argv[0], argv[1], { timeoutMs: 30_000 }) : run(argv[0], argv[1], { timeoutMs: 30_000 });
}

/** `sql` on the node over its unix socket (trust for local connections, see cluster/patroni.yml). */
function psql(b, node, sql, opts) {
  const port = String(NODE_BY_NAME.get(node).port);
  return nodeShell(b, node, 'exec psql -h /tmp -p "$1" -U postgres -d postgres -X -Atc "$2"', [port, sql], opts);
}

/** The node's WAL senders: [{ pid, replica }] (pids in the node's namespace). */
function walSenders(b, node, opts) {
  const r = psql(b, node, "SELECT pid, application_name FROM pg_stat_replication", opts);
  if (!r.ok) return null;
  return r.stdout.split('\n').filter(Boolean).map((l) => {
    const [pid, replica] = l.split('|');
    return { pid: Number(pid), replica };
  });
}

/** Sends `signal` to `pids` on the node and returns each one's state letter afterwards (T: stopped). */
function signalAndState(b, node, signal, pids) {
  const script = 'sig=$1; shift; kill -"$sig" "$@"; for p; do echo "$p $(cut -d " " -f3 /proc/$p/stat 2>/dev/null || echo gone)"; done';
  const r = nodeShell(b, node, script, [signal, ...pids.map(String)]);
  return Object.fromEntries(r.stdout.split('\n').filter(Boolean).map((l) => l.split(' ')));
}

/** What Patroni runs now: synchronous_mode from /config, sync standbys from /cluster and the leader's /patroni. */
async function replicationView() {
  const c = await fetchCluster();
  const leader = c.members.find((m) => m.role === 'leader' || m.role === 'master');
  if (!leader) return { leader: null };
  const config = (await httpJson(`http://${HOST}:${restPortOf(leader)}/config`)).body ?? {};
  const p = (await httpJson(`http://${HOST}:${restPortOf(leader)}/patroni`)).body ?? {};
  const replication = Array.isArray(p.replication) ? p.replication : [];
  return {
    leader: leader.name,
    synchronousMode: config.synchronous_mode === true,
    syncStandbys: c.members.filter((m) => m.role === 'sync_standby').map((m) => m.name),
    senders: replication.map((x) => ({ replica: x.application_name, state: x.state, syncState: x.sync_state })),
  };
}

/** replication async|sync: PATCH /config { synchronous_mode }, then wait until the leader runs it. */
export async function cmdReplication(b, positional, flags) {
  const mode = positional[0];
  if (mode !== 'async' && mode !== 'sync') fail('usage: replication <async|sync>');
  const start = Date.now();
  const want = mode === 'sync';
  const leader = await currentLeader();
  const url = `http://${HOST}:${restPortOf(leader)}/config`;
  const res = await fetch(url, {
    method: 'PATCH',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ synchronous_mode: want }),
    signal: AbortSignal.timeout(5000),
  });
  if (res.status !== 200) fail(`PATCH ${url}: HTTP ${res.status} ${(await res.text()).slice(0, 200)}`);
  const timeout = numberFlag(flags, 'timeout', 60_000);
  const view = await waitFor(`the leader to run ${mode} replication`, timeout, async () => {
    const v = await replicationView();
    if (v.leader === null || v.synchronousMode !== want) return null;
    const streaming = v.senders.filter((s) => s.state === 'streaming');
    const syncSenders = streaming.filter((s) => s.syncState === 'sync').length;
    if (want) return v.syncStandbys.length >= 1 && syncSenders >= 1 ? v : null;
    return v.syncStandbys.length === 0 && syncSenders === 0 && streaming.length > 0 ? v : null;
  }, 250);
  const tookMs = Date.now() - start;
  log(`replication ${mode} on ${view.leader} in ${secs(tookMs)}: ${view.senders.map((s) => `${s.replica} ${s.syncState}`).join(', ')}`);
  out({ mode, ...view, tookMs });
}

/** freeze-senders: SIGSTOP the leader's WAL senders; the replicas receive nothing until thaw-senders. */
export async function cmdFreezeSenders(b) {
  const leader = await currentLeader();
  const senders = walSenders(b, leader.name);
  if (senders.length === 0) fail(`${leader.name} has no WAL senders to freeze`);
  const states = signalAndState(b, leader.name, 'STOP', senders.map((s) => s.pid));
  const notStopped = senders.filter((s) => states[s.pid] !== 'T' && states[s.pid] !== 't');
  if (notStopped.length) fail(`WAL senders not stopped on ${leader.name}: ${JSON.stringify(states)}`);
  const at = Date.now();
  log(`froze ${leader.name}'s WAL senders (SIGSTOP) to ${senders.map((s) => `${s.replica} (pid ${s.pid})`).join(', ')}`);
  out({ node: leader.name, frozen: senders, at });
}

/**
 * The node's WAL sender processes from its process table, not from pg_stat_replication: a node
 * that is shutting down (a switchover waiting for its frozen senders) refuses new connections.
 */
function walSenderProcesses(b, node) {
  let candidates;
  if (b.name === 'docker') {
    const r = nodeShell(b, node, 'cd /proc && echo [0-9]*', [], { mustSucceed: false });
    if (!r.ok) return []; // the container is not running
    candidates = r.stdout.trim().split(/\s+/).map(Number);
  } else {
    const pm = postmasterPid(node);
    if (!pm) return [];
    candidates = childrenOf(pm);
  }
  if (candidates.length === 0) return [];
  // "postgres: <cluster>: walsender replicator 127.0.0.1(…) streaming …"
  const script = 'for p; do case "$(tr "\\0" " " < /proc/$p/cmdline 2>/dev/null)" in *walsender*) echo "$p";; esac; done';
  const r = nodeShell(b, node, script, candidates.map(String), { mustSucceed: false });
  return r.stdout.split('\n').filter(Boolean).map(Number);
}

/** thaw-senders: SIGCONT the WAL senders of every node (a killed one has none left). */
export async function cmdThawSenders(b) {
  const thawed = [];
  for (const n of NODES) {
    const pids = walSenderProcesses(b, n.name);
    if (pids.length === 0) continue;
    signalAndState(b, n.name, 'CONT', pids);
    thawed.push({ node: n.name, pids });
  }
  const at = Date.now();
  log(thawed.length ? `thawed WAL senders: ${thawed.map((t) => `${t.node} ${t.pids.join(',')}`).join('; ')}` : 'no WAL senders to thaw');
  out({ thawed, at });
}
