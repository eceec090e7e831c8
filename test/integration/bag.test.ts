// The bag on its own (src/pool/bag.ts): the hand-off of idle connections to waiting callers and
// their expiry, against a real PostgreSQL, with no Pool around it.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Client } from 'pg';
import { classify } from '../../src/classify/classify.ts';
import { FailoverReporter } from '../../src/observe/report.ts';
import { resolveOptions, type PoolOptions } from '../../src/options.ts';
import { Breaker } from '../../src/policy/breaker.ts';
import { ConnectGate } from '../../src/policy/connect-gate.ts';
import { Deadline } from '../../src/policy/deadline.ts';
import { Topology } from '../../src/topology/topology.ts';
import { Bag } from '../../src/pool/bag.ts';
import type { ConnectionHooks } from '../../src/pool/connection-factory.ts';
import { entryOf } from '../../src/pool/pool-entry.ts';
import { ConnectionHealth } from '../../src/pool/health.ts';
import type { PoolShared } from '../../src/pool/shared.ts';
import { PreparedStatements } from '../../src/prepared/prepared-statements.ts';
import { startPgServer, type PgServer } from '../helpers/pg-server.ts';

let server: PgServer;
before(async () => {
  server = await startPgServer();
});
after(async () => {
  await server.destroy();
});

/** A bag with the least around it: shared state, health, and hooks that only record. */
function makeBag(options: PoolOptions): { bag: Bag; shared: PoolShared; events: string[]; end: AbortController } {
  const o = resolveOptions({ ...server.config, ...options });
  const end = new AbortController();
  const events: string[] = [];
  const shared: PoolShared = {
    o,
    topology: new Topology(o, () => undefined),
    breaker: new Breaker(o.breaker, o.clock, () => undefined),
    reporter: new FailoverReporter(o.clock, () => undefined),
    endSignal: end.signal,
    clients: new Set(),
    commits: undefined,
    replication: undefined as never,
    ending: false,
    inProgress: 0,
    onSettled: undefined,
    lastConnectError: undefined,
    lastConnectErrorAt: -Infinity,
    publish: (event, ...args) => {
      const reason = (args[0] as { reason?: string } | undefined)?.reason;
      events.push(reason === undefined ? event : `${event}:${reason}`);
    },
    listening: () => false,
    present: (client) => client,
  };
  const hooks: ConnectionHooks = {
    onBroken: () => undefined,
    onStatementFailure: () => undefined,
    onRoleChange: () => undefined,
    onConnectFailure: () => undefined,
    onConnected: (client) => shared.clients.add(client),
    prepared: new PreparedStatements(0, o.clock, o.logger),
    present: (client) => client,
    onSetupFailed: () => undefined,
    connectGate: new ConnectGate({ clock: o.clock, random: o.random, isBusyFailure: (e) => classify(e).serverBusy === true }),
  };
  let bag: Bag | undefined;
  bag = new Bag(shared, new ConnectionHealth(shared), 'default', hooks, {
    onRemoved: () => undefined,
    returnUnused: (client) => bag!.release(client, false),
    onIdleBroken: () => undefined,
  });
  return { bag, shared, events, end };
}

const deadline = (shared: PoolShared, ms = 2000): Deadline => new Deadline(shared.o.clock, ms);

test('a released connection goes to the first caller in line, else onto the idle stack for the next take', async () => {
  const { bag, shared, end } = makeBag({ max: 1 });
  try {
    const a = await bag.acquire(deadline(shared));
    assert.equal(bag.size, 1);
    // max 1: these wait, in order.
    const order: string[] = [];
    const w1 = bag.acquire(deadline(shared)).then((c) => { order.push('w1'); return c; });
    const w2 = bag.acquire(deadline(shared)).then((c) => { order.push('w2'); return c; });
    await new Promise((r) => setImmediate(r));
    assert.equal(bag.waiting, 2);
    entryOf(a)!.releasedAt = shared.o.clock.now();
    bag.release(a, false);
    const b = await w1;
    assert.equal(b, a, 'the same connection, handed over directly');
    bag.release(b, false);
    assert.equal(await w2, a);
    assert.deepEqual(order, ['w1', 'w2']);
    bag.release(a, false);
    assert.equal(bag.available, 1);
    assert.equal(bag.takeIdle(), a, 'the idle stack gives it back synchronously');
    assert.equal(bag.release(a, false), true);
    assert.equal(bag.release(a, false), false, 'a second release of the same lending is refused');
  } finally {
    end.abort();
    await bag.close();
  }
});

test('idle connections past idleTimeoutMillis are closed on time, down to min', async () => {
  const { bag, shared, events, end } = makeBag({ max: 3, min: 1, idleTimeoutMillis: 100 });
  try {
    const clients: Client[] = [];
    for (let i = 0; i < 3; i += 1) clients.push(await bag.acquire(deadline(shared)));
    for (const c of clients) {
      entryOf(c)!.releasedAt = shared.o.clock.now();
      bag.release(c, false);
    }
    assert.equal(bag.available, 3);
    await new Promise((r) => setTimeout(r, 400));
    assert.equal(bag.size, 1, 'min stays open');
    assert.equal(events.filter((e) => e === 'connectionRetired:idle').length, 2);
  } finally {
    end.abort();
    await bag.close();
  }
});

test('evictStale closes idle connections of an older generation; close() refuses waiters and closes the rest', async () => {
  const { bag, shared, events, end } = makeBag({ max: 1 });
  const a = await bag.acquire(deadline(shared));
  bag.release(a, false);
  bag.evictStale(shared.topology.generation + 1, () => events.push('retired'));
  assert.deepEqual(events.filter((e) => e === 'retired'), ['retired']);
  assert.equal(bag.available, 0);
  const b = await bag.acquire(deadline(shared));
  assert.notEqual(b, a);
  const waiter = bag.acquire(deadline(shared));
  await new Promise((r) => setImmediate(r));
  end.abort();
  const closed = bag.close();
  await assert.rejects(waiter, (e: unknown) => (e as { code?: string }).code === 'PGR_POOL_ENDED');
  bag.release(b, true);
  await closed;
  assert.equal(bag.size, 0);
});
