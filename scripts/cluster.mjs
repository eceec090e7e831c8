#!/usr/bin/env node
// Driver for the test cluster: etcd + three PostgreSQL 15 nodes run by Patroni + HAProxy, and
// PgBouncer (127.0.0.1:6432, transaction pooling) in front of HAProxy's read-write port.
//
//   node scripts/cluster.mjs <verb> [args]   (or: npm run -s cluster -- <verb> [args]; without -s,
//                                             npm prints its own banner on stdout before the JSON)
//
// Verbs: up, down, status, kill-primary [--wait], switchover, start <node>, stop-postgres-primary,
//        blackhole-primary, heal, kill-pgbouncer, start-pgbouncer, pause-pgbouncer,
//        resume-pgbouncer, wait-healthy [--timeout ms], logs [service] [--lines n],
//        replication async|sync, freeze-senders, thaw-senders
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

// The parts live in scripts/cluster/: common (constants, process helpers), patroni (REST view and
// health), image (Docker engine, debootstrap base image), docker and native (the two backends),
// faults (iptables), pgbouncer (its admin console), backend (the choice), verbs (what each verb does).

import { chooseBackend } from './cluster/backend.mjs';
import { ClusterError, fail, log, parseArgs } from './cluster/common.mjs';
import { USAGE, VERBS } from './cluster/verbs.mjs';

async function main() {
  const [verb, ...rest] = process.argv.slice(2);
  if (!verb || verb === 'help' || verb === '--help' || verb === '-h') {
    process.stderr.write(`${USAGE}\n`);
    process.exit(verb ? 0 : 2);
  }
  const { positional, flags } = parseArgs(rest);
  const b = await chooseBackend(verb);
  log(`backend=${b.name}`);
  const handler = Object.hasOwn(VERBS, verb) ? VERBS[verb] : undefined;
  if (!handler) fail(`unknown verb "${verb}"\n${USAGE}`);
  return handler(b, { positional, flags });
}

main().catch((e) => {
  const msg = e instanceof ClusterError ? e.message : e?.stack || String(e);
  process.stderr.write(`[cluster] ERROR: ${msg}\n`);
  process.exit(1);
});
