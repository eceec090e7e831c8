import { PgResilientError, abortedError, acquireTimeoutError, describeError, poolEndedError } from '../errors.ts';
import { fullJitterDelay, type BackoffOptions } from './backoff.ts';
import type { Clock, Random } from './clock.ts';
import { CONNECT_GATE_DEFAULTS, type AttemptOptions, type ConnectGateOptions, type ConnectOutcome, type SkipReason } from './connect-gate-options.ts';

interface HostState {
  failures: number;
  busyFailures: number;
  notBefore: number;
  lastError: unknown;
}

type WaitEnd = 'time' | 'woken' | 'aborted' | 'ended' | 'granted' | 'deadline' | 'host-busy';

interface Waiter {
  readonly finish: (end: WaitEnd) => void;
  live: boolean;
  /** In line for a slot: the host it is for, and its AttemptOptions. */
  host?: string;
  options?: AttemptOptions;
}

/**
 * Restraint when connecting: at most `maxInFlight` connection attempts at once (callers beyond
 * that wait in line, first come first served), and after a failed attempt a jittered,
 * growing backoff before the next attempt to the same host. Every wait is bounded by the
 * caller's deadline and AbortSignal, and ends when the gate ends (pool end).
 *
 * Pure apart from the injected clock and random source; it knows nothing of pg.
 *
 * @example
 * const gate = new ConnectGate({ clock, random, isBusyFailure: (e) => classify(e).serverBusy });
 * const outcome = await gate.attempt('db1:5432', signal, clock.now() + 5000, () => connectOnce());
 * if (outcome.kind === 'connected') use(outcome.value);
 */
export class ConnectGate {
  readonly #clock: Clock;
  readonly #random: Random;
  readonly #isBusy: (err: unknown) => boolean;
  readonly #maxInFlight: number;
  readonly #failureBackoff: BackoffOptions;
  readonly #busyBackoff: BackoffOptions;
  readonly #hosts = new Map<string, HostState>();
  readonly #line: Waiter[] = [];
  /** Callers sleeping through a host's backoff: woken by clearBackoff, ended by end. */
  readonly #sleepers = new Set<Waiter>();
  #inFlight = 0;
  /** Attempts in flight per host (only hosts with one or more). */
  readonly #hostInFlight = new Map<string, number>();
  /** When the latest attempt in flight to each host started. */
  readonly #hostStartedAt = new Map<string, number>();
  /** The last attempt anywhere ended "server busy": one attempt at a time until a success. */
  #busy = false;
  #ended = false;
  /** The pool is ending gracefully: attempts still run, but nobody waits out a backoff. */
  #draining = false;

  constructor(options: ConnectGateOptions) {
    this.#clock = options.clock;
    this.#random = options.random;
    this.#isBusy = options.isBusyFailure;
    this.#maxInFlight = options.maxInFlight ?? CONNECT_GATE_DEFAULTS.maxInFlight;
    this.#failureBackoff = options.failureBackoff ?? CONNECT_GATE_DEFAULTS.failureBackoff;
    this.#busyBackoff = options.busyBackoff ?? CONNECT_GATE_DEFAULTS.busyBackoff;
    if (!Number.isInteger(this.#maxInFlight) || this.#maxInFlight < 1) {
      throw new RangeError(`pg-resilient: the connect gate's maxInFlight must be an integer ≥ 1, got ${this.#maxInFlight}`);
    }
  }

  /** Attempts running now. */
  get inFlight(): number {
    return this.#inFlight;
  }

  /** Callers waiting in line for an attempt slot. */
  get waiting(): number {
    return this.#line.length;
  }

  /** Attempts allowed at once right now: 1 while the server says it is busy. */
  get capacity(): number {
    return this.#busy ? 1 : this.#maxInFlight;
  }

  /** Attempts to `hostKey` running now. */
  inFlightTo(hostKey: string): number {
    return this.#hostInFlight.get(hostKey) ?? 0;
  }

  /** Clock time the latest attempt to `hostKey` now in flight started; undefined when none is. */
  attemptStartedAt(hostKey: string): number | undefined {
    return this.#hostStartedAt.get(hostKey);
  }

  /** Milliseconds until `hostKey` may be tried again (0: now). */
  backoffRemainingMs(hostKey: string): number {
    const h = this.#hosts.get(hostKey);
    return h === undefined ? 0 : Math.max(0, h.notBefore - this.#clock.now());
  }

  /**
   * Runs `connectOnce` for `hostKey` (host:port, never credentials) when the host's backoff has
   * passed and a slot is free, and records its success or failure for that host. Waits at most
   * until `deadline` (clock time, finite) and never after `signal` fires or the gate ends. A
   * host whose backoff ends after the deadline is skipped at once (reason 'backoff'), so a
   * caller with several hosts can try the next one (see AttemptOptions for not waiting at all).
   */
  async attempt<T>(hostKey: string, signal: AbortSignal | undefined, deadline: number, connectOnce: () => Promise<T>, options: AttemptOptions = {}): Promise<ConnectOutcome<T>> {
    if (!Number.isFinite(deadline)) throw new RangeError('pg-resilient: a connect attempt needs a finite deadline');
    const startedAt = this.#clock.now();
    const skipped = (reason: SkipReason): ConnectOutcome<T> => ({
      kind: 'skipped', reason, error: this.#skipError(reason, hostKey, signal), waitedMs: this.#clock.now() - startedAt,
    });
    // Bounded: each pass either returns or waits (for time to pass, a slot, or a wake-up).
    for (;;) {
      if (this.#ended) return skipped('ended');
      if (aborted(signal)) return skipped('aborted');
      const now = this.#clock.now();
      const readyAt = this.#hosts.get(hostKey)?.notBefore ?? 0;
      if (readyAt > now) {
        if (this.#draining) return skipped('ended');
        if (readyAt >= deadline || options.skipIfHostBusy === true) return skipped('backoff');
        const end = await this.#sleepUntil(readyAt, signal);
        if (end === 'aborted' || end === 'ended') return skipped(end);
        continue;
      }
      if (options.skipIfHostBusy === true && this.inFlightTo(hostKey) > 0) return skipped('host-busy');
      if (now >= deadline) return skipped('deadline');
      const end = await this.#takeSlot(hostKey, options, signal, deadline);
      if (end !== 'granted') return skipped(end === 'time' || end === 'woken' ? 'deadline' : end);
      // The gate may have ended, or another attempt to this host failed, while we stood in line.
      if (this.#ended || aborted(signal) || (this.#hosts.get(hostKey)?.notBefore ?? 0) > this.#clock.now()) {
        this.#releaseSlot(hostKey);
        continue;
      }
      if (options.stillWanted?.() === false) {
        this.#releaseSlot(hostKey);
        return skipped('unwanted');
      }
      break;
    }
    const sentAt = this.#clock.now();
    const waitedMs = sentAt - startedAt;
    try {
      const value = await connectOnce();
      const durationMs = this.#clock.now() - sentAt;
      this.#succeeded(hostKey);
      return { kind: 'connected', value, waitedMs, durationMs };
    } catch (error) {
      const durationMs = this.#clock.now() - sentAt;
      const busy = this.#isBusy(error);
      const backoffMs = this.#failed(hostKey, error, busy);
      return { kind: 'failed', error, busy, backoffMs, waitedMs, durationMs };
    } finally {
      this.#releaseSlot(hostKey);
    }
  }

  /**
   * Forgets the backoff of `hostKey` (of every host when omitted) and wakes the callers
   * sleeping through it: a new primary was seen, so waiting out old failures is pointless.
   */
  clearBackoff(hostKey?: string): void {
    if (hostKey === undefined) this.#hosts.clear();
    else this.#hosts.delete(hostKey);
    for (const s of [...this.#sleepers]) s.finish('woken');
  }

  /**
   * The pool began a graceful end: calls accepted before it still connect, but a host's backoff
   * is no longer waited out (as the pool retries nothing once ending); those sleeping through
   * one get PGR_POOL_ENDED now.
   */
  drain(): void {
    this.#draining = true;
    for (const s of [...this.#sleepers]) s.finish('ended');
  }

  /** The pool is ending: every waiting caller gets PGR_POOL_ENDED now; attempts in flight finish. */
  end(): void {
    this.#ended = true;
    for (const s of [...this.#sleepers]) s.finish('ended');
    for (const w of [...this.#line]) w.finish('ended');
  }

  #succeeded(hostKey: string): void {
    const hadBackoff = this.#hosts.delete(hostKey);
    this.#busy = false;
    // Callers sleeping through this host's backoff (set by an attempt that failed beside this
    // one) may go now; the others look at their own host's backoff again and sleep on.
    if (hadBackoff) for (const s of [...this.#sleepers]) s.finish('woken');
  }

  #failed(hostKey: string, error: unknown, busy: boolean): number {
    let h = this.#hosts.get(hostKey);
    if (h === undefined) {
      h = { failures: 0, busyFailures: 0, notBefore: 0, lastError: undefined };
      this.#hosts.set(hostKey, h);
    }
    h.lastError = error;
    let delay: number;
    if (busy) {
      // The host is up: its count of real failures is left alone (it is not down).
      h.busyFailures += 1;
      delay = fullJitterDelay(h.busyFailures - 1, this.#busyBackoff, this.#random);
      this.#busy = true;
    } else {
      h.failures += 1;
      h.busyFailures = 0;
      delay = fullJitterDelay(h.failures - 1, this.#failureBackoff, this.#random);
    }
    // Two attempts failing together must not shorten a backoff the first one set.
    h.notBefore = Math.max(h.notBefore, this.#clock.now() + delay);
    return h.notBefore - this.#clock.now();
  }

  /**
   * A slot now (room, and nobody in line who could take it), or a place at the back of the
   * line. Waiters are served first come, first served, except that one that may not run beside
   * its host's attempt in flight (onePerHost) lets those behind it pass.
   */
  #takeSlot(hostKey: string, options: AttemptOptions, signal: AbortSignal | undefined, deadline: number): Promise<WaitEnd> {
    if (this.#inFlight < this.capacity && this.#mayStart(hostKey, options) && !this.#line.some((w) => this.#mayStart(w.host!, w.options!))) {
      this.#start(hostKey);
      return Promise.resolve('granted');
    }
    return this.#wait(signal, deadline, (w) => {
      w.host = hostKey;
      w.options = options;
      this.#line.push(w);
    }, (w) => {
      const i = this.#line.indexOf(w);
      if (i >= 0) this.#line.splice(i, 1);
    });
  }

  #mayStart(hostKey: string, options: AttemptOptions): boolean {
    return options.onePerHost !== true || this.inFlightTo(hostKey) === 0;
  }

  /** Counts an attempt to `hostKey` as started; callers in line who would rather skip a busy host are told. */
  #start(hostKey: string, starting?: Waiter): void {
    this.#inFlight += 1;
    this.#hostInFlight.set(hostKey, this.inFlightTo(hostKey) + 1);
    this.#hostStartedAt.set(hostKey, this.#clock.now());
    for (const w of [...this.#line]) {
      if (w !== starting && w.host === hostKey && w.options?.skipIfHostBusy === true) w.finish('host-busy');
    }
  }

  #releaseSlot(hostKey: string): void {
    this.#inFlight -= 1;
    const left = this.inFlightTo(hostKey) - 1;
    if (left > 0) this.#hostInFlight.set(hostKey, left);
    else {
      this.#hostInFlight.delete(hostKey);
      this.#hostStartedAt.delete(hostKey);
    }
    while (this.#inFlight < this.capacity) {
      const next = this.#line.find((w) => this.#mayStart(w.host!, w.options!));
      if (next === undefined) break;
      // Counted before it is told: leaves the line through its delist.
      this.#start(next.host!, next);
      next.finish('granted');
    }
  }

  #sleepUntil(until: number, signal: AbortSignal | undefined): Promise<WaitEnd> {
    return this.#wait(signal, until, (w) => this.#sleepers.add(w), (w) => this.#sleepers.delete(w), 'time');
  }

  /** One wait, ended by the timer at `until` (as `onTime`), the signal, or whoever holds the waiter. */
  #wait(signal: AbortSignal | undefined, until: number, enlist: (w: Waiter) => void, delist: (w: Waiter) => void, onTime: WaitEnd = 'deadline'): Promise<WaitEnd> {
    return new Promise<WaitEnd>((resolve) => {
      const onAbort = (): void => waiter.finish('aborted');
      const waiter: Waiter = {
        live: true,
        finish: (end) => {
          if (!waiter.live) return;
          waiter.live = false;
          timer.cancel();
          signal?.removeEventListener('abort', onAbort);
          delist(waiter);
          resolve(end);
        },
      };
      const timer = this.#clock.setTimeout(() => waiter.finish(onTime), Math.max(0, until - this.#clock.now()));
      signal?.addEventListener('abort', onAbort, { once: true });
      enlist(waiter);
    });
  }

  #skipError(reason: SkipReason, hostKey: string, signal: AbortSignal | undefined): PgResilientError {
    if (reason === 'ended') return poolEndedError('it was ended while waiting to connect');
    if (reason === 'aborted') return abortedError(signal);
    const last = this.#hosts.get(hostKey)?.lastError;
    const after = last === undefined ? '' : `; last failure: ${describeError(last)}`;
    const message = reason === 'backoff'
      ? `${hostKey} is backing off for ${Math.round(this.backoffRemainingMs(hostKey))} ms after a failed connect${after}`
      : reason === 'host-busy'
        ? `${hostKey} has a connection attempt in flight already${after}`
        : reason === 'unwanted'
          ? `the connection to ${hostKey} was no longer needed when its turn came (no caller waits for it)`
        : `no connection attempt could start before the deadline (${this.#inFlight} in flight, at most ${this.capacity} at once)${after}`;
    return acquireTimeoutError(message, { cause: last });
  }
}

// A function, not an inline check: TypeScript would keep `signal.aborted` narrowed across awaits.
function aborted(signal: AbortSignal | undefined): boolean {
  return signal?.aborted === true;
}
