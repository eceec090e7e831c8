// Verbs for the fleet scenario (issue #18): PostgreSQL parameters set cluster-wide through
// Patroni (max_connections needs a restart of every node), and what a node's log says about
// connection attempts (log_connections) and 53300 refusals in a time window.
import fs from 'node:fs';
import path from 'node:path';
import {
  HOST, NATIVE_DIR, NODES, NODE_BY_NAME, fail, log, numberFlag, out, run, secs, sleep,
} from './common.mjs';
import { containerName } from './docker.mjs';
import { fetchCluster, waitHealthy } from './patroni.mjs';

const SUPERUSER_PASSWORD = 'postgres';

/** `SHOW name` on every node over TCP (psql, as the superuser): { pg1: '200', … } (null when down). */
function showOnEveryNode(name) {
  const values = {};
  for (const n of NODES) {
    const r = run('psql', ['-h', HOST, '-p', String(n.port), '-U', 'postgres', '-d', 'postgres', '-Atc', `SHOW ${name}`], {
      env: { PGPASSWORD: SUPERUSER_PASSWORD, PGCONNECT_TIMEOUT: '3' }, timeoutMs: 10_000,
    });
    values[n.name] = r.ok ? r.stdout.trim() : null;
  }
  return values;
}

/**
 * set-params --max-connections N [--log-connections on|off]: writes the parameters into
 * Patroni's cluster configuration, restarts the nodes that need it (max_connections is read at
 * start; a replica keeps the primary's value until it has replayed the change, hence rounds),
 * and returns once every node runs with them and the cluster is healthy.
 */
export async function cmdSetParams(b, flags) {
  const start = Date.now();
  const params = {};
  if (flags['max-connections'] !== undefined) params.max_connections = String(numberFlag(flags, 'max-connections', 200));
  if (typeof flags['log-connections'] === 'string') params.log_connections = flags['log-connections'];
  if (Object.keys(params).length === 0) fail('usage: set-params [--max-connections N] [--log-connections on|off]');
  await waitHealthy(numberFlag(flags, 'settle-timeout', 60_000));
  const leader = (await fetchCluster()).members.find((m) => m.role === 'leader' || m.role === 'master');
  if (!leader) fail('no leader');
  const pgArgs = Object.entries(params).flatMap(([k, v]) => ['-p', `${k}=${v}`]);
  await b.patronictl(['edit-config', '--force', '-q', ...pgArgs], leader.name);
  const timeout = numberFlag(flags, 'timeout', 180_000);
  const deadline = Date.now() + timeout;
  let rounds = 0;
  for (;;) {
    await sleep(2500); // Patroni's loop (loop_wait 1 s) applies the new configuration
    const running = Object.fromEntries(Object.keys(params).map((k) => [k, showOnEveryNode(k)]));
    const behind = NODES.filter((n) => Object.entries(params).some(([k, v]) => running[k][n.name] !== v));
    if (behind.length === 0) break;
    if (Date.now() > deadline) fail(`parameters not applied after ${secs(timeout)}: ${JSON.stringify(running)}`);
    if (rounds >= 4) fail(`parameters not applied after ${rounds} restarts: ${JSON.stringify(running)}`);
    rounds += 1;
    log(`restart round ${rounds}: ${behind.map((n) => n.name).join(', ')} not yet on ${JSON.stringify(params)}`);
    const l = (await fetchCluster()).members.find((m) => m.role === 'leader' || m.role === 'master');
    const ctl = await b.patronictl(['restart', 'pg-resilient', ...behind.map((n) => n.name), '--force'], l?.name ?? leader.name);
    log(ctl.stdout.trim().split('\n').slice(-3).join(' | '));
    await waitHealthy(Math.max(10_000, deadline - Date.now()));
  }
  await waitHealthy(Math.max(10_000, deadline - Date.now()));
  const tookMs = Date.now() - start;
  log(`set ${JSON.stringify(params)} on every node in ${secs(tookMs)} (${rounds} restart rounds)`);
  out({ params, restarts: rounds, tookMs });
}

/** A node's PostgreSQL log (stderr under Patroni) since `sinceMs` (wall clock). */
function serverLog(b, node, sinceMs) {
  if (b.name === 'docker') {
    const r = run('docker', ['logs', '--since', new Date(sinceMs - 1000).toISOString(), containerName(node)], { timeoutMs: 60_000 });
    if (!r.ok) fail(`docker logs ${node}: ${r.stderr.trim()}`);
    return `${r.stdout}\n${r.stderr}`;
  }
  const file = path.join(NATIVE_DIR, 'log', `${node}.log`);
  return fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '';
}

/** log_line_prefix '%m [%p] ': "2026-12-01 05:28:12.804 UTC [2362] …" → epoch ms. */
const STAMP = /^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) UTC \[\d+\] /;

/** The most timestamps (sorted) within any window of `ms`. */
function peakWithin(times, ms) {
  let best = 0;
  for (let i = 0, j = 0; j < times.length; j += 1) {
    while (times[j] - times[i] >= ms) i += 1;
    best = Math.max(best, j - i + 1);
  }
  return best;
}

/**
 * log-stats <node> --since ms [--until ms]: from the node's log in that window, connection
 * attempts (log_connections' "connection received"): per second, the most in any 1 s and any
 * 100 ms window; and the 53300 refusals ("too many clients already", "remaining connection
 * slots are reserved").
 */
export function cmdLogStats(b, positional, flags) {
  const node = positional[0];
  if (!node || !NODE_BY_NAME.has(node)) fail(`usage: log-stats <${NODES.map((n) => n.name).join('|')}> --since ms [--until ms]`);
  const since = numberFlag(flags, 'since', 0);
  const until = numberFlag(flags, 'until', Date.now());
  const perSecond = new Map();
  let attempts = 0;
  let tooMany = 0;
  const times = [];
  for (const line of serverLog(b, node, since).split('\n')) {
    const m = STAMP.exec(line);
    if (!m) continue;
    const t = Date.parse(`${m[1].replace(' ', 'T')}Z`);
    if (t < since || t > until) continue;
    if (line.includes('connection received:')) {
      attempts += 1;
      const s = Math.floor(t / 1000);
      perSecond.set(s, (perSecond.get(s) ?? 0) + 1);
      times.push(t);
    } else if (/too many clients already|remaining connection slots are reserved/.test(line)) tooMany += 1;
  }
  times.sort((a, c) => a - c);
  out({
    node, since, until, attempts, tooMany,
    peakPerSecond: peakWithin(times, 1000),
    peakPer100ms: peakWithin(times, 100),
    firstAttemptAt: times[0] ?? null,
    lastAttemptAt: times.at(-1) ?? null,
    perSecond: [...perSecond.entries()].sort((a, c) => a[0] - c[0]).map(([s, n]) => [s * 1000, n]),
  });
}
