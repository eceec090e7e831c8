// The driver's verbs: each takes the chosen backend, does one thing, and prints one JSON line.
import {
  NODES, NODE_BY_NAME, PGBOUNCER_PORT, SERVICES, fail, log, numberFlag, out, pgAnswers, secs, waitFor,
} from './common.mjs';
import { docker } from './docker.mjs';
import { blackholePort, healRules } from './faults.mjs';
import { cmdLogStats, cmdSetParams } from './fleet.mjs';
import { native } from './native.mjs';
import { cmdFreezeSenders, cmdReplication, cmdThawSenders } from './replication.mjs';
import { currentLeader, fetchCluster, summarize, waitHealthy } from './patroni.mjs';
import { forgetPause, pausePgbouncer, pgbouncerStatus, resumePgbouncer } from './pgbouncer.mjs';

/** Restarts a node whose Patroni hung (see waitHealthy). */
const restartStuckWith = (b) => async (name) => {
  await b.killNode(name).catch((e) => log(`killing ${name}: ${e.message}`));
  await b.startNode(name);
};

export async function cmdUp(b, flags) {
  const start = Date.now();
  await b.up();
  const timeout = numberFlag(flags, 'timeout', 180_000);
  await waitHealthy(timeout, { restartStuck: restartStuckWith(b) });
  const status = { ...summarize(await fetchCluster(), b.name), pgbouncer: await pgbouncerStatus() };
  const tookMs = Date.now() - start;
  log(`cluster up and healthy in ${secs(tookMs)}: leader ${status.leader}`);
  out({ ...status, tookMs });
}

export async function cmdDown(b) {
  const start = Date.now();
  // Remove everything whatever the backend: both use the same ports and the same iptables rules.
  const removed = healRules();
  if (removed.length) log(`removed blackhole rules for ports ${removed.join(', ')}`);
  await docker.down().catch((e) => {
    if (b === docker) throw e;
    log(`docker down: ${e.message}`);
  });
  await native.down();
  forgetPause();
  log(`down in ${secs(Date.now() - start)}`);
  out({ backend: b.name, down: true, tookMs: Date.now() - start });
}

export async function cmdStatus(b) {
  const c = await fetchCluster().catch((e) => fail(`cluster not reachable: ${e.message}`));
  out({ ...summarize(c, b.name), pgbouncer: await pgbouncerStatus() });
}

export async function cmdKillPrimary(b, flags) {
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

export async function cmdSwitchover(b, flags) {
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

export async function cmdStart(b, positional) {
  const name = positional[0];
  if (!name || !NODE_BY_NAME.has(name)) fail(`usage: start <${NODES.map((n) => n.name).join('|')}>`);
  await b.startNode(name);
  const at = Date.now();
  log(`started ${name}`);
  out({ started: name, at });
}

export async function cmdStopPostgresPrimary(b) {
  const leader = await currentLeader();
  const pid = await b.killPostmaster(leader.name);
  const at = Date.now();
  log(`killed the postmaster (pid ${pid} in its namespace) of ${leader.name}; patroni keeps running`);
  out({ node: leader.name, killedPostmaster: true, pid, at });
}

export async function cmdBlackholePrimary() {
  const leader = await currentLeader();
  const port = leader.port ?? NODE_BY_NAME.get(leader.name).port;
  blackholePort(port);
  const at = Date.now();
  log(`blackholed ${leader.name}'s PostgreSQL port ${port} (packets dropped, no RST)`);
  out({ node: leader.name, port, at });
}

export async function cmdHeal() {
  const ports = healRules();
  const at = Date.now();
  log(ports.length ? `removed blackhole rules for ports ${ports.join(', ')}` : 'no blackhole rules to remove');
  out({ healed: ports, at });
}

export async function cmdKillPgbouncer(b) {
  await b.killPgbouncer();
  const at = Date.now();
  forgetPause(); // a new PgBouncer starts unpaused
  log('killed pgbouncer (SIGKILL; its "pod" deleted)');
  out({ killed: 'pgbouncer', at });
}

export async function cmdStartPgbouncer(b, flags) {
  await b.startPgbouncer();
  const at = Date.now();
  await waitFor(`PgBouncer to answer on :${PGBOUNCER_PORT}`, numberFlag(flags, 'timeout', 30_000), () => pgAnswers(PGBOUNCER_PORT), 100);
  const readyAt = Date.now();
  log(`pgbouncer started, answering ${secs(readyAt - at)} later`);
  out({ started: 'pgbouncer', at, readyAt, readyMs: readyAt - at });
}

export async function cmdPausePgbouncer() {
  const at = Date.now();
  const command = await pausePgbouncer();
  const pausedAt = Date.now();
  log(`pgbouncer paused (${command}) in ${secs(pausedAt - at)}: new queries wait until resume-pgbouncer`);
  out({ paused: true, at, pausedAt, tookMs: pausedAt - at });
}

export async function cmdResumePgbouncer() {
  const resumed = await resumePgbouncer();
  const at = Date.now();
  log(resumed ? 'pgbouncer resumed' : 'pgbouncer was not paused');
  out({ resumed, at });
}

export async function cmdWaitHealthy(b, flags) {
  const timeout = numberFlag(flags, 'timeout', 60_000);
  const tookMs = await waitHealthy(timeout, { restartStuck: restartStuckWith(b) });
  const status = summarize(await fetchCluster(), b.name);
  out({ ...status, healthy: true, tookMs });
}

export async function cmdLogs(b, positional, flags) {
  const service = positional[0];
  if (service && !SERVICES.includes(service)) fail(`unknown service ${service}; one of ${SERVICES.join(', ')}`);
  b.logs(service, numberFlag(flags, 'lines', 100));
}

export const USAGE = `usage: node scripts/cluster.mjs <verb>
  up [--timeout ms]                start (idempotent) and wait for leader + 2 streaming replicas and PgBouncer
  down                             remove containers / native processes, data and iptables rules
  status                           JSON view of the cluster from Patroni REST, and PgBouncer's
  kill-primary [--wait]            SIGKILL the leader node (with --wait: until a replica is promoted)
  switchover [--candidate pgN]     planned switchover to the synchronous standby
  start <pg1|pg2|pg3>              start a node again
  stop-postgres-primary            kill -9 only the leader's postmaster (Patroni stays)
  blackhole-primary                DROP packets to the leader's PostgreSQL port (iptables)
  heal                             remove the blackhole rules
  kill-pgbouncer                   SIGKILL PgBouncer (:6432) and remove it, as its pod deleted
  start-pgbouncer [--timeout ms]   start PgBouncer again; resolves once it answers
  pause-pgbouncer                  PAUSE through its admin console: queries wait until resume
  resume-pgbouncer                 RESUME after pause-pgbouncer
  wait-healthy [--timeout ms]      wait for leader + 2 replicas on one timeline, streaming
  logs [service] [--lines n]       tail service logs
  set-params [--max-connections N] [--log-connections on|off]
                                   set through Patroni on every node (restarts as needed)
  log-stats <pgN> --since ms [--until ms]
                                   connection attempts per second (log_connections) and 53300s in a node's log
  replication <async|sync> [--timeout ms]
                                   Patroni's synchronous_mode off/on (REST PATCH /config); waits until the leader runs it
  freeze-senders                   SIGSTOP the leader's WAL senders: replicas fall behind (the leader can still be killed)
  thaw-senders                     SIGCONT the WAL senders of every node that answers
env PG_CLUSTER_BACKEND=docker|native|auto (default docker)`;

/** Verb name → handler; each gets the backend and the parsed arguments. */
export const VERBS = {
  up: (b, { flags }) => cmdUp(b, flags),
  down: (b) => cmdDown(b),
  status: (b) => cmdStatus(b),
  'kill-primary': (b, { flags }) => cmdKillPrimary(b, flags),
  switchover: (b, { flags }) => cmdSwitchover(b, flags),
  start: (b, { positional }) => cmdStart(b, positional),
  'stop-postgres-primary': (b) => cmdStopPostgresPrimary(b),
  'blackhole-primary': () => cmdBlackholePrimary(),
  heal: () => cmdHeal(),
  'kill-pgbouncer': (b) => cmdKillPgbouncer(b),
  'start-pgbouncer': (b, { flags }) => cmdStartPgbouncer(b, flags),
  'pause-pgbouncer': () => cmdPausePgbouncer(),
  'resume-pgbouncer': () => cmdResumePgbouncer(),
  'wait-healthy': (b, { flags }) => cmdWaitHealthy(b, flags),
  logs: (b, { positional, flags }) => cmdLogs(b, positional, flags),
  'set-params': (b, { flags }) => cmdSetParams(b, flags),
  'log-stats': (b, { positional, flags }) => cmdLogStats(b, positional, flags),
  replication: (b, { positional, flags }) => cmdReplication(b, positional, flags),
  'freeze-senders': (b) => cmdFreezeSenders(b),
  'thaw-senders': (b) => cmdThawSenders(b),
};
