import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ConnectGate } from '../../src/policy/connect-gate.ts';
import { CONNECT_GATE_DEFAULTS, type ConnectOutcome } from '../../src/policy/connect-gate-options.ts';
import { paceWarmUp } from '../../src/policy/warm-up.ts';
import type { Clock } from '../../src/policy/clock.ts';
import { ErrorCodes, PgResilientError } from '../../src/errors.ts';
import { sequence } from '../helpers/fake-clock.ts';

// The connect gate with an injected clock and random source: every delay below is exact.

/** Timers fire only when the test advances time, in order of their due time. */
class ManualClock implements Clock {
  #now = 0;
  #seq = 0;
  #timers: Array<{ due: number; seq: number; fn: () => void; cancelled: boolean }> = [];

  now(): number {
    return this.#now;
  }

  setTimeout(fn: () => void, ms: number): { cancel(): void } {
    const t = { due: this.#now + Math.max(0, ms), seq: this.#seq++, fn, cancelled: false };
    this.#timers.push(t);
    return { cancel: () => { t.cancelled = true; } };
  }

  /** Timers not cancelled and not yet fired. */
  get pending(): number {
    return this.#timers.filter((t) => !t.cancelled).length;
  }

  async advance(ms: number): Promise<void> {
    const target = this.#now + ms;
    for (;;) {
      await settle();
      const due = this.#timers.filter((t) => !t.cancelled && t.due <= target).sort((a, b) => a.due - b.due || a.seq - b.seq)[0];
      if (due === undefined) break;
      this.#timers.splice(this.#timers.indexOf(due), 1);
      this.#now = due.due;
      due.fn();
    }
    this.#now = target;
    await settle();
  }
}

/** Lets every pending promise callback run. */
const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

interface Deferred<T> {
  promise: Promise<T>;
  resolve(value: T): void;
  reject(err: unknown): void;
}
function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<T>((res, rej) => { resolve = res; reject = rej; });
  return { promise, resolve, reject };
}

// Shaped like what pg and sockets throw; the predicate stands in for classify()'s serverBusy.
const refused = (): Error => Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' });
const tooMany = (): Error => Object.assign(new Error('sorry, too many clients already'), { code: '53300', severity: 'FATAL' });
const isBusyFailure = (err: unknown): boolean => ['53300', '57P03'].includes((err as { code?: string }).code ?? '');

function make(random: () => number = () => 0.5, clock = new ManualClock(), maxInFlight?: number): { gate: ConnectGate; clock: ManualClock } {
  return { gate: new ConnectGate({ clock, random, isBusyFailure, ...(maxInFlight === undefined ? {} : { maxInFlight }) }), clock };
}

/** Starts an attempt whose connect is controlled by the test; records when it began. */
function start(gate: ConnectGate, clock: ManualClock, host: string, log: string[], opts: { deadline?: number; signal?: AbortSignal } = {}) {
  const connect = deferred<string>();
  let startedAt: number | undefined;
  const outcome = gate.attempt(host, opts.signal, opts.deadline ?? clock.now() + 10_000, () => {
    startedAt = clock.now();
    log.push(host);
    return connect.promise;
  });
  return { connect, outcome, startedAt: () => startedAt };
}

describe('connect gate: attempts in flight', () => {
  test('at most maxInFlight (default 2) at once; the others wait in line and start first come, first served', async () => {
    const { gate, clock } = make();
    assert.equal(CONNECT_GATE_DEFAULTS.maxInFlight, 2);
    const log: string[] = [];
    const calls = ['a', 'b', 'c', 'd', 'e'].map((h) => start(gate, clock, h, log));
    await settle();
    assert.deepEqual(log, ['a', 'b']);
    assert.equal(gate.inFlight, 2);
    assert.equal(gate.waiting, 3);
    calls[1]!.connect.resolve('B');
    await settle();
    assert.deepEqual(log, ['a', 'b', 'c']);
    calls[0]!.connect.resolve('A');
    calls[2]!.connect.resolve('C');
    await settle();
    assert.deepEqual(log, ['a', 'b', 'c', 'd', 'e']);
    assert.equal(gate.inFlight, 2);
    assert.equal(gate.waiting, 0);
    calls[3]!.connect.resolve('D');
    calls[4]!.connect.resolve('E');
    const outcomes = await Promise.all(calls.map((c) => c.outcome));
    assert.deepEqual(outcomes.map((o) => o.kind === 'connected' && o.value), ['A', 'B', 'C', 'D', 'E']);
    assert.equal(gate.inFlight, 0);
    assert.equal(clock.pending, 0, 'no timer left behind');
  });

  test('a caller arriving while others wait goes behind them even when a slot is free for a moment', async () => {
    const { gate, clock } = make(() => 0.5, new ManualClock(), 1);
    const log: string[] = [];
    const first = start(gate, clock, 'a', log);
    const second = start(gate, clock, 'b', log);
    await settle();
    first.connect.resolve('A');
    const third = start(gate, clock, 'c', log); // same tick as the release
    await settle();
    assert.deepEqual(log, ['a', 'b']);
    second.connect.resolve('B');
    await settle();
    assert.deepEqual(log, ['a', 'b', 'c']);
    third.connect.resolve('C');
    await third.outcome;
  });

  test('the wait in line ends at the deadline, exactly, and the caller leaves the line', async () => {
    const { gate, clock } = make(() => 0.5, new ManualClock(), 1);
    const log: string[] = [];
    const holder = start(gate, clock, 'a', log);
    const late = start(gate, clock, 'b', log, { deadline: 300 });
    await clock.advance(299);
    assert.equal(gate.waiting, 1);
    await clock.advance(1);
    const o = await late.outcome;
    assert.equal(o.kind, 'skipped');
    assert.ok(o.kind === 'skipped' && o.reason === 'deadline' && o.waitedMs === 300);
    assert.ok(o.kind === 'skipped' && o.error.code === ErrorCodes.ACQUIRE_TIMEOUT);
    assert.equal(gate.waiting, 0);
    holder.connect.resolve('A');
    await holder.outcome;
    assert.deepEqual(log, ['a'], 'the timed-out caller never connects');
    assert.equal(gate.inFlight, 0);
  });

  test('an abort while waiting in line ends the wait at once with PGR_ABORTED', async () => {
    const { gate, clock } = make(() => 0.5, new ManualClock(), 1);
    const log: string[] = [];
    const holder = start(gate, clock, 'a', log);
    const ac = new AbortController();
    const waiting = start(gate, clock, 'b', log, { signal: ac.signal });
    await clock.advance(40);
    ac.abort(new Error('client went away'));
    const o = await waiting.outcome;
    assert.ok(o.kind === 'skipped' && o.reason === 'aborted' && o.error.code === ErrorCodes.ABORTED && o.waitedMs === 40);
    assert.equal(gate.waiting, 0);
    holder.connect.resolve('A');
    await holder.outcome;
    const already = await gate.attempt('c', ac.signal, clock.now() + 1000, () => Promise.resolve('never'));
    assert.ok(already.kind === 'skipped' && already.reason === 'aborted');
  });

  test('end(): callers in line and in backoff get PGR_POOL_ENDED now; an attempt in flight finishes; later attempts end at once', async () => {
    const { gate, clock } = make(() => 0.5, new ManualClock(), 1);
    const log: string[] = [];
    const failing = start(gate, clock, 'down', log);
    await settle();
    failing.connect.reject(refused());
    await failing.outcome;
    const sleeping = start(gate, clock, 'down', log); // 25 ms of backoff
    const holder = start(gate, clock, 'a', log);
    const inLine = start(gate, clock, 'b', log);
    await settle();
    assert.equal(gate.waiting, 1);
    gate.end();
    for (const o of [await sleeping.outcome, await inLine.outcome]) {
      assert.ok(o.kind === 'skipped' && o.reason === 'ended' && o.error.code === ErrorCodes.POOL_ENDED);
    }
    holder.connect.resolve('A');
    assert.equal((await holder.outcome).kind, 'connected');
    const after = await gate.attempt('a', undefined, clock.now() + 1000, () => Promise.resolve('x'));
    assert.ok(after.kind === 'skipped' && after.reason === 'ended');
    assert.deepEqual(log, ['down', 'a']);
    assert.equal(clock.pending, 0);
  });

  test('drain() (a graceful end began): callers sleeping through a backoff get PGR_POOL_ENDED now; attempts needing no wait still run', async () => {
    const { gate, clock } = make(() => 0.99);
    await gate.attempt('down', undefined, 10_000, () => Promise.reject(refused())); // 49 ms
    const sleeping = gate.attempt('down', undefined, 10_000, () => Promise.resolve('never'));
    await clock.advance(5);
    gate.drain();
    const o = await sleeping;
    assert.ok(o.kind === 'skipped' && o.reason === 'ended' && o.error.code === ErrorCodes.POOL_ENDED && o.waitedMs === 5);
    const healthy = await gate.attempt('up', undefined, clock.now() + 1000, () => Promise.resolve('ok'));
    assert.ok(healthy.kind === 'connected');
    const later = await gate.attempt('down', undefined, clock.now() + 1000, () => Promise.resolve('never'));
    assert.ok(later.kind === 'skipped' && later.reason === 'ended');
    assert.equal(clock.pending, 0);
  });

  test('a finite deadline is required: nothing may wait forever', async () => {
    const { gate } = make();
    await assert.rejects(gate.attempt('a', undefined, Infinity, () => Promise.resolve(1)), RangeError);
    assert.throws(() => new ConnectGate({ clock: new ManualClock(), random: Math.random, isBusyFailure, maxInFlight: 0 }), RangeError);
  });
});

describe('connect gate: backoff per host', () => {
  test('failed attempts to a host are spaced by full-jitter delays: 50·2ⁿ ms ceilings capped at 500, times the random draw', async () => {
    // Draws 0.5, 0.25, 0.9, 0.99, 0.99 → delays 25, 25, 180, 396, 495 (ceilings 50, 100, 200, 400, 500).
    const { gate, clock } = make(sequence(0.5, 0.25, 0.9, 0.99, 0.99));
    const starts: number[] = [];
    const backoffs: number[] = [];
    for (let i = 0; i < 5; i += 1) {
      const o = gate.attempt('db1:5432', undefined, clock.now() + 10_000, async () => {
        starts.push(clock.now());
        throw refused();
      });
      // Advance in steps so the attempt starts exactly when its backoff ends.
      while (starts.length === i) await clock.advance(1);
      const out = await o;
      assert.ok(out.kind === 'failed' && !out.busy);
      backoffs.push(out.kind === 'failed' ? out.backoffMs : -1);
    }
    assert.deepEqual(backoffs, [25, 25, 180, 396, 495]);
    // First attempt at once; then each one after the previous one's backoff (+1 ms: the step above).
    const gaps = starts.slice(1).map((t, i) => t - starts[i]!);
    assert.deepEqual(gaps, [25, 25, 180, 396]);
    console.log(`# failure backoffs (ms): ${backoffs.join(', ')}; gaps between attempts: ${gaps.join(', ')}`);
  });

  test('other hosts are not held up by one host in backoff; a success forgets the backoff', async () => {
    const { gate, clock } = make(() => 0.5);
    const bad = await gate.attempt('db1', undefined, 10_000, () => Promise.reject(refused()));
    assert.ok(bad.kind === 'failed' && bad.backoffMs === 25);
    assert.equal(gate.backoffRemainingMs('db1'), 25);
    const other = await gate.attempt('db2', undefined, 10_000, () => Promise.resolve('ok'));
    assert.ok(other.kind === 'connected' && other.waitedMs === 0);
    const retried = gate.attempt('db1', undefined, 10_000, () => Promise.resolve('back'));
    await clock.advance(25);
    const r = await retried;
    assert.ok(r.kind === 'connected' && r.waitedMs === 25);
    assert.equal(gate.backoffRemainingMs('db1'), 0);
    const next = await gate.attempt('db1', undefined, 10_000, () => Promise.reject(refused()));
    assert.ok(next.kind === 'failed' && next.backoffMs === 25, 'the exponent started again from 0');
  });

  test('a backoff that ends past the deadline skips the host at once (PGR_ACQUIRE_TIMEOUT, cause = its last failure)', async () => {
    const { gate, clock } = make(() => 0.99);
    const err = refused();
    await gate.attempt('db1', undefined, 10_000, () => Promise.reject(err)); // backoff 49 ms
    let ran = false;
    const o = await gate.attempt('db1', undefined, clock.now() + 30, async () => { ran = true; });
    assert.equal(ran, false);
    assert.ok(o.kind === 'skipped' && o.reason === 'backoff' && o.waitedMs === 0);
    assert.ok(o.kind === 'skipped' && o.error.code === ErrorCodes.ACQUIRE_TIMEOUT && o.error.cause === err);
    assert.match(o.kind === 'skipped' ? o.error.message : '', /db1 is backing off for 49 ms.*ECONNREFUSED/);
  });

  test('an abort during a backoff ends it at once', async () => {
    const { gate, clock } = make(() => 0.99);
    await gate.attempt('db1', undefined, 10_000, () => Promise.reject(refused()));
    const ac = new AbortController();
    const o = gate.attempt('db1', ac.signal, 10_000, () => Promise.resolve('never'));
    await clock.advance(10);
    ac.abort();
    const out = await o;
    assert.ok(out.kind === 'skipped' && out.reason === 'aborted' && out.waitedMs === 10);
    assert.equal(clock.pending, 0);
  });

  test('two attempts failing together: the second does not shorten the backoff the first set', async () => {
    const { gate } = make(sequence(0.9, 0.1));
    const a = deferred<never>();
    const b = deferred<never>();
    const oa = gate.attempt('db1', undefined, 10_000, () => a.promise);
    const ob = gate.attempt('db1', undefined, 10_000, () => b.promise);
    await settle();
    a.reject(refused()); // ceiling 50 × 0.9 → 45
    const ra = await oa;
    b.reject(refused()); // ceiling 100 × 0.1 → 10, shorter: the 45 ms stays
    const rb = await ob;
    assert.ok(ra.kind === 'failed' && ra.backoffMs === 45);
    assert.ok(rb.kind === 'failed' && rb.backoffMs === 45);
  });

  test('clearBackoff (a new primary was seen) wakes the callers sleeping through a backoff', async () => {
    const { gate, clock } = make(() => 0.99);
    await gate.attempt('db1', undefined, 10_000, () => Promise.reject(refused())); // 49 ms
    const o = gate.attempt('db1', undefined, 10_000, () => Promise.resolve('new primary'));
    await clock.advance(5);
    gate.clearBackoff('db1');
    const out = await o;
    assert.ok(out.kind === 'connected' && out.waitedMs === 5);
    assert.equal(clock.pending, 0);
  });

  test('an attempt that waited in line while its host went into backoff waits that backoff too', async () => {
    const { gate, clock } = make(() => 0.5, new ManualClock(), 1);
    const log: string[] = [];
    const first = start(gate, clock, 'db1', log);
    const second = start(gate, clock, 'db1', log);
    await settle();
    first.connect.reject(refused()); // 25 ms
    await first.outcome;
    await settle();
    assert.deepEqual(log, ['db1'], 'not started while the host backs off');
    await clock.advance(25);
    assert.deepEqual(log, ['db1', 'db1']);
    assert.equal(second.startedAt(), 25);
    second.connect.resolve('ok');
    await second.outcome;
  });
});

describe('connect gate: several hosts (onePerHost, skipIfHostBusy)', () => {
  test('onePerHost: attempts to a host that hangs hold one slot; the other slot serves the hosts that answer', async () => {
    const { gate, clock } = make();
    const log: string[] = [];
    const one = { onePerHost: true };
    const hanging = gate.attempt('dead', undefined, 5000, () => { log.push('dead'); return new Promise<string>(() => undefined); }, one);
    const second = gate.attempt('dead', undefined, 5000, () => { log.push('dead'); return Promise.resolve('x'); }, one);
    const alive = [1, 2, 3].map((n) => gate.attempt('alive', undefined, 5000, () => { log.push(`alive${n}`); return Promise.resolve(n); }, one));
    const got = await Promise.all(alive);
    assert.deepEqual(got.map((o) => o.kind === 'connected' && o.value), [1, 2, 3]);
    assert.deepEqual(log, ['dead', 'alive1', 'alive2', 'alive3'], 'the second attempt to the hanging host waits for the first');
    assert.equal(gate.inFlightTo('dead'), 1);
    assert.equal(gate.waiting, 1);
    await clock.advance(5000);
    const s = await second;
    assert.ok(s.kind === 'skipped' && s.reason === 'deadline');
    void hanging;
  });

  test('without onePerHost two attempts may go to one host (a single-host pool keeps its cap of 2)', async () => {
    const { gate } = make();
    const a = deferred<string>();
    const b = deferred<string>();
    const oa = gate.attempt('db', undefined, 5000, () => a.promise);
    const ob = gate.attempt('db', undefined, 5000, () => b.promise);
    await settle();
    assert.equal(gate.inFlightTo('db'), 2);
    a.resolve('a');
    b.resolve('b');
    await Promise.all([oa, ob]);
    assert.equal(gate.inFlightTo('db'), 0);
  });

  test('skipIfHostBusy: a host backing off or with an attempt in flight is skipped at once, also while waiting in line', async () => {
    const { gate, clock } = make(() => 0.5, new ManualClock(), 1);
    const skip = { skipIfHostBusy: true, onePerHost: true };
    await gate.attempt('db1', undefined, 10_000, () => Promise.reject(refused()), skip); // 25 ms backoff
    const backingOff = await gate.attempt('db1', undefined, 10_000, () => Promise.resolve('no'), skip);
    assert.ok(backingOff.kind === 'skipped' && backingOff.reason === 'backoff' && backingOff.waitedMs === 0);
    const holder = deferred<string>();
    const h = gate.attempt('db2', undefined, 10_000, () => holder.promise, skip);
    await settle();
    const busy = await gate.attempt('db2', undefined, 10_000, () => Promise.resolve('no'), skip);
    assert.ok(busy.kind === 'skipped' && busy.reason === 'host-busy' && busy.error.code === ErrorCodes.ACQUIRE_TIMEOUT);
    // Two callers in line for db3 (the only slot is db2's): one that waits for its host, then one
    // that would rather skip it. When the first one's attempt starts, the second is told at once.
    const patient = gate.attempt('db3', undefined, 10_000, () => new Promise<string>(() => undefined));
    const waiting = gate.attempt('db3', undefined, 10_000, () => Promise.resolve('no'), skip);
    await settle();
    assert.equal(gate.waiting, 2);
    holder.resolve('db2');
    await h;
    const w = await waiting;
    assert.ok(w.kind === 'skipped' && w.reason === 'host-busy', 'told when the attempt to its host started');
    assert.equal(gate.inFlightTo('db3'), 1);
    assert.equal(gate.waiting, 0);
    void patient;
    await clock.advance(25);
    assert.equal(clock.pending, 0);
  });

  test('stillWanted: asked when the attempt could start; false skips it (\'unwanted\') and frees the slot at once', async () => {
    const { gate } = make(() => 0.5, new ManualClock(), 1);
    const holder = deferred<string>();
    const h = gate.attempt('db', undefined, 10_000, () => holder.promise);
    let wanted = true;
    let asked = 0;
    let ran = false;
    const queued = gate.attempt('db', undefined, 10_000, async () => { ran = true; return 'x'; }, { stillWanted: () => { asked += 1; return wanted; } });
    await settle();
    assert.equal(asked, 0, 'not asked while waiting in line');
    wanted = false; // the caller it was for got a released connection meanwhile
    holder.resolve('db');
    await h;
    const o = await queued;
    assert.ok(o.kind === 'skipped' && o.reason === 'unwanted' && o.error.code === ErrorCodes.ACQUIRE_TIMEOUT);
    assert.equal(ran, false);
    assert.equal(asked, 1);
    assert.equal(gate.inFlight, 0);
    const next = await gate.attempt('db', undefined, 10_000, () => Promise.resolve('y'), { stillWanted: () => true });
    assert.ok(next.kind === 'connected');
  });

  test('a success wakes the callers sleeping through the backoff an attempt beside it set', async () => {
    const { gate, clock } = make(() => 0.99);
    const ok = deferred<string>();
    const good = gate.attempt('db1', undefined, 10_000, () => ok.promise);
    await gate.attempt('db1', undefined, 10_000, () => Promise.reject(refused())); // 49 ms
    const sleeper = gate.attempt('db1', undefined, 10_000, () => Promise.resolve('woken'));
    await clock.advance(5);
    ok.resolve('ok');
    await good;
    const s = await sleeper;
    assert.ok(s.kind === 'connected' && s.waitedMs === 5);
  });
});

describe('connect gate: "server busy" (53300, 57P03)', () => {
  test('its own gentler schedule (100 → 1000 ms), no count as a down host, one attempt at a time until a success', async () => {
    const { gate, clock } = make(() => 0.5);
    const busy = await gate.attempt('db1', undefined, 10_000, () => Promise.reject(tooMany()));
    assert.ok(busy.kind === 'failed' && busy.busy && busy.backoffMs === 50, 'ceiling 100 × 0.5');
    assert.equal(gate.capacity, 1, 'serialised while the server is full');
    const log: string[] = [];
    await clock.advance(50);
    const a = start(gate, clock, 'db1', log);
    const b = start(gate, clock, 'db2', log);
    await settle();
    assert.deepEqual(log, ['db1'], 'one at a time');
    a.connect.reject(tooMany());
    const again = await a.outcome;
    assert.ok(again.kind === 'failed' && again.busy && again.backoffMs === 100, 'ceiling 200 × 0.5');
    await settle();
    assert.deepEqual(log, ['db1', 'db2']);
    b.connect.resolve('ok');
    await b.outcome;
    assert.equal(gate.capacity, 2, 'a success lifts it');
    // The host was never counted as down: a real failure now starts at the first step.
    await clock.advance(100);
    const down = await gate.attempt('db1', undefined, clock.now() + 10_000, () => Promise.reject(refused()));
    assert.ok(down.kind === 'failed' && !down.busy && down.backoffMs === 25, 'failure schedule, exponent 0');
  });

  test('busy backoffs grow to the 1000 ms cap', async () => {
    const { gate, clock } = make(() => 0.999);
    const got: number[] = [];
    for (let i = 0; i < 6; i += 1) {
      await clock.advance(gate.backoffRemainingMs('db1'));
      const o = await gate.attempt('db1', undefined, clock.now() + 10_000, () => Promise.reject(tooMany()));
      got.push(o.kind === 'failed' ? o.backoffMs : -1);
    }
    assert.deepEqual(got, [99, 199, 399, 799, 999, 999]);
    console.log(`# busy backoffs (ms): ${got.join(', ')}`);
  });
});

describe('warm-up pacing', () => {
  test('opens one at a time (default), each after a jittered delay in [0, 250) ms', async () => {
    const clock = new ManualClock();
    let inFlight = 0;
    let most = 0;
    const startedAt: number[] = [];
    const run = paceWarmUp({
      count: 4,
      clock,
      random: sequence(0.1, 0.5, 0.9, 0.2),
      open: async () => {
        startedAt.push(clock.now());
        inFlight += 1;
        most = Math.max(most, inFlight);
        await Promise.resolve();
        inFlight -= 1;
        return true;
      },
    });
    for (let i = 0; i < 20 && startedAt.length < 4; i += 1) await clock.advance(50);
    const result = await run;
    assert.deepEqual(result, { opened: 4, failed: 0, stoppedBy: 'done' });
    assert.equal(most, 1);
    // Delays 25, 125, 225, 50, each after the previous open: starts at 25, 150, 375, 425.
    assert.deepEqual(startedAt, [25, 150, 375, 425]);
  });

  test('with concurrency 2 never more than 2 in flight; stops at the first failure; an abort ends it', async () => {
    const clock = new ManualClock();
    let inFlight = 0;
    let most = 0;
    let opens = 0;
    const result = paceWarmUp({
      count: 8,
      concurrency: 2,
      spreadMs: 100,
      clock,
      random: () => 0,
      open: async () => {
        const n = ++opens;
        inFlight += 1;
        most = Math.max(most, inFlight);
        await settle();
        inFlight -= 1;
        return n !== 3;
      },
    });
    for (let i = 0; i < 6; i += 1) await clock.advance(0);
    // Opens 1 and 2 together, then 3 (fails) and 4 together; the one in flight finishes, no 5th starts.
    assert.deepEqual(await result, { opened: 3, failed: 1, stoppedBy: 'failure' });
    assert.equal(opens, 4);
    assert.equal(most, 2);
    const ac = new AbortController();
    const aborted = paceWarmUp({ count: 3, clock, random: () => 0.5, signal: ac.signal, open: async () => true });
    ac.abort();
    assert.deepEqual(await aborted, { opened: 0, failed: 0, stoppedBy: 'aborted' });
  });
});

// Type-level: the outcome union is what the connection factory switches on.
const _exhaustive = (o: ConnectOutcome<unknown>): string => {
  switch (o.kind) {
    case 'connected': return 'ok';
    case 'failed': return o.busy ? 'busy' : 'down';
    case 'skipped': return o.reason;
  }
};
void _exhaustive;
void PgResilientError;
