import { test } from 'node:test';
import assert from 'node:assert/strict';
import { resolveOptions } from '../../src/options.ts';
import { Topology } from '../../src/topology/topology.ts';
import type { Discovery } from '../../src/topology/discovery.ts';
import type { HostTarget } from '../../src/topology/hosts.ts';

// The member-health map follows Patroni's answers: members that no longer appear are forgotten
// (a cluster whose members come and go, or a stream of answers naming new hosts, must not grow
// it without bound); the hosts the options name are always kept.
test('the health map is pruned of members the latest answer no longer names', () => {
  let snap: ReturnType<Discovery['snapshot']>;
  const discovery: Discovery = { snapshot: () => snap, refresh: async () => undefined, ready: async () => undefined, close: () => undefined };
  const topology = new Topology(resolveOptions({ hosts: ['10.0.0.1:5432'], patroni: { urls: ['https://10.0.0.1:8008'], allowedHosts: ['x'] } }), () => undefined);
  topology.setDiscovery(discovery);
  for (let i = 0; i < 200; i += 1) {
    const member = (n: number): HostTarget => ({ host: `m${n}`, port: 5432 });
    snap = { leader: member(i), standbys: [{ ...member(i + 1), lagBytes: 0 }, { ...member(i + 2), lagBytes: 0 }] };
    topology.candidates('default');
    topology.markFailed(member(i));
    topology.candidates('read');
  }
  console.log(`# topology: ${topology.trackedHosts} hosts tracked after 200 answers naming 202 distinct members`);
  assert.equal(topology.trackedHosts, 4, 'the configured host and the 3 members of the last answer');
});
