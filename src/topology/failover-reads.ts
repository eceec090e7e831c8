import { AsyncLocalStorage } from 'node:async_hooks';
import { isRecognisedRead } from '../classify/read-rule.ts';
import type { HostRef, StandbyReadEvent } from '../observe/types.ts';
import type { Clock } from '../policy/clock.ts';
import { Deadline } from '../policy/deadline.ts';
import type { HostTarget } from './hosts.ts';
import { STANDBY_PROBE_SQL, WRITE_LSN_SQL, judgeStandby, maxLsn, parseLsn, parseProbe, recordEnd, type FailoverReadBounds, type StandbyProbe, type StandbyVerdict, type WriteMark } from './standby-evidence.ts';
import type { ServerRole } from './topology.ts';

export {
  STANDBY_PROBE_SQL, WRITE_LSN_SQL, completeUpTo, judgeStandby, parseLsn, parseProbe, recordEnd,
  type FailoverReadBounds, type JudgeInput, type RefusalReason, type StandbyProbe, type StandbyVerdict, type WriteMark,
} from './standby-evidence.ts';

// ---- read-your-writes scope ---------------------------------------------------------------------

interface ScopeState {
  last: WriteMark | undefined;
}

const scope = new AsyncLocalStorage<ScopeState>();

/**
 * Runs `fn` as one reader-writer (a request, a job): its reads served by a standby while the
 * primary is unavailable (`failoverReads`) include its own writes, whatever the bound. Outside
 * such a scope the pool's last write stands for everybody's (stricter). Writes through
 * `pool.query` are tracked; nested scopes share the outer one.
 *
 * @example
 * app.use((req, res, next) => readYourWrites(next));
 */
export function readYourWrites<T>(fn: () => T): T {
  if (typeof fn !== 'function') throw new TypeError('pg-resilient: readYourWrites(fn) expects a function');
  const current = scope.getStore();
  return current === undefined ? scope.run({ last: undefined }, fn) : fn();
}

// ---- the policy ---------------------------------------------------------------------------------

/** How the policy reaches the pool's standby connections (its 'read' bag) and reports. */
export interface StandbyLink<C> {
  acquire(deadline: Deadline): Promise<C>;
  describe(c: C): { server: HostRef; role: ServerRole | undefined };
  query(c: C, text: string): Promise<Array<Record<string, unknown>>>;
  /** 'keep': back to the bag; 'close': closed; { failed }: reported as a failure and closed. */
  release(c: C, how: 'keep' | 'close' | { failed: unknown }): void;
  /** The read bag reached a primary (a new one, or the old one back): normal success bookkeeping. */
  servedByPrimary(c: C): void;
  publish(event: StandbyReadEvent): void;
}

/** What the policy needs of the topology and the breaker. */
export interface PrimaryWatch {
  readonly failingOver: boolean;
  readonly leaderless: boolean;
  /** A failover completed moments ago (see RECOVERING_MS). */
  readonly recovering: boolean;
  /** No idle connection to the primary: a read sent there now waits in line while they are opened. */
  primaryCold(): boolean;
  breakerState(): string;
  knownStandbys(): HostTarget[];
  /** The leader Patroni names now, if any. */
  readonly leader: HostRef | undefined;
  standbyInfo(server: HostRef): { sync: boolean; lagBytes: number | undefined } | undefined;
  setAsideForReads(server: HostRef, until: number): void;
}

/** Per-call option: `false` opts out, an object tightens or loosens the pool's bounds. */
export type CallFailoverReads = boolean | { maxLagBytes?: number; maxStalenessMs?: number } | undefined;

/**
 * A standby found out of bounds is left aside this long before it is tried again (each try may
 * cost a connection: an asynchronous standby behind a dead primary stays out of bounds).
 */
export const STANDBY_RECHECK_MS = 1000;
/** … and a synchronous standby (or one behind the pool's last write) this long. */
const SYNC_RECHECK_MS = 100;
/** A probe that judged a standby out of bounds is repeated when older than this. */
const REPROBE_MS = 50;
/** A probe is forgotten after this (a node may be rebuilt behind the same address). */
const PROBE_MAX_AGE_MS = 10_000;
/** Standbys judged per attempt; idle connections to standbys already set aside are taken and closed up to TAKEN_TRIES. */
const JUDGED_TRIES = 3;
const TAKEN_TRIES = 24;
/** How long after a failover completed reads stay on a standby while the new primary has no idle connection. */
export const RECOVERING_MS = 3000;
/** Longest wait for a standby connection while recovering (the new primary is there, if cold). */
const RECOVERING_ACQUIRE_MS = 250;
const MARKS_KEPT = 32;

const hostKey = (h: HostRef): string => `${h.host}:${h.port}`;

/**
 * The failover-read policy of one pool: while the primary is unavailable, recognised reads go
 * to a standby that meets the bounds, instead of waiting. It keeps the evidence: what each
 * standby replayed (probed on its own connections), the primary positions read after this
 * pool's writes, and the last write of the pool and of each `readYourWrites` context.
 */
export class FailoverReads<C> {
  readonly bounds: FailoverReadBounds;
  readonly #clock: Clock;
  readonly #watch: PrimaryWatch;
  readonly #link: StandbyLink<C>;
  readonly #probes = new Map<string, StandbyProbe>();
  readonly #probing = new Map<string, Promise<StandbyProbe | undefined>>();
  readonly #asideUntil = new Map<string, number>();
  readonly #marks: WriteMark[] = [];
  #lastWrite: WriteMark | undefined;

  constructor(bounds: FailoverReadBounds, clock: Clock, watch: PrimaryWatch, link: StandbyLink<C>) {
    this.bounds = bounds;
    this.#clock = clock;
    this.#watch = watch;
    this.#link = link;
  }

  /** Why the primary is known to be unavailable now; undefined when it is not. */
  primaryUnavailable(): StandbyReadEvent['during'] | undefined {
    const w = this.#watch;
    if (w.failingOver) return 'failing-over';
    const breaker = w.breakerState();
    if (breaker !== 'closed') return 'breaker-open';
    if (w.leaderless) return 'no-leader';
    // Just after a failover every caller that waited goes to the new primary at once, and its
    // connections are opened a few at a time: until one is idle, reads stay on the standby.
    return w.recovering && w.primaryCold() ? 'recovering' : undefined;
  }

  /**
   * The bounds for a call a standby may serve (a read the rule recognises), else undefined.
   * `readOnly` calls keep their own routing (standbys within `maxLagBytes`, outage or not).
   */
  boundsFor(text: string, call: { readOnly?: boolean; idempotent?: boolean; failoverReads?: CallFailoverReads }): FailoverReadBounds | undefined {
    const own = call.failoverReads;
    if (own === false || call.readOnly === true) return undefined;
    // A SELECT with side effects is declared idempotent: false (README): not a read then.
    if (call.idempotent === false || !isRecognisedRead(text)) return undefined;
    if (own === undefined || own === true) return this.bounds;
    return { maxLagBytes: own.maxLagBytes ?? this.bounds.maxLagBytes, maxStalenessMs: own.maxStalenessMs ?? this.bounds.maxStalenessMs };
  }

  /** Is the call a write whose position must be remembered (anything not a read)? */
  isWrite(text: string, call: { readOnly?: boolean; idempotent?: boolean }): boolean {
    return call.readOnly !== true && (call.idempotent === false || !isRecognisedRead(text));
  }

  /**
   * A write was acknowledged: remembered for the pool and the caller's context at once, its
   * position read with `queryLsn` (one round trip on the connection it ran on) when given.
   */
  async noteWrite(queryLsn: ((text: string) => Promise<Array<Record<string, unknown>>>) | undefined): Promise<void> {
    const mark: WriteMark = { ackAt: this.#clock.now(), lsn: undefined, lsnAt: undefined };
    this.#lastWrite = mark;
    const ctx = scope.getStore();
    if (ctx !== undefined) ctx.last = mark;
    if (queryLsn === undefined) return;
    mark.lsnAt = this.#clock.now();
    try {
      const lsn = parseLsn((await queryLsn(WRITE_LSN_SQL))[0]?.lsn);
      mark.lsn = lsn === undefined ? undefined : recordEnd(lsn);
    } catch {
      // The write stands; without its position, time decides (the standby must have replayed a later commit).
      return;
    }
    if (mark.lsn === undefined) return;
    this.#marks.push(mark);
    if (this.#marks.length > MARKS_KEPT) this.#marks.shift();
  }

  /**
   * Serves the call on a standby within `bounds`, or returns undefined (none qualifies, none
   * reachable now): the caller then waits for the primary as usual. `run` failing is rethrown
   * after its connection was reported and closed.
   */
  async tryRead<T>(bounds: FailoverReadBounds, deadline: Deadline, run: (c: C) => Promise<T>): Promise<{ value: T } | undefined> {
    const during = this.primaryUnavailable();
    if (during === undefined) return undefined;
    // The context's own last write, or outside a context the pool's (stricter, never wrong).
    const ctx = scope.getStore();
    const lastWrite = ctx === undefined ? this.#lastWrite : ctx.last;
    const poolWide = ctx === undefined;
    let judged = 0;
    const startedAt = this.#clock.now();
    // With the primary gone, waiting for a standby connection (being opened, or busy) beats
    // waiting for a primary that is not there: the call's deadline bounds it (and each wait the
    // pool's acquire timeout). Just after a failover the primary is there: a short wait only.
    const budget = during === 'recovering' ? RECOVERING_ACQUIRE_MS : deadline.remainingMs();
    for (let taken = 0; judged < JUDGED_TRIES && taken < TAKEN_TRIES; taken += 1) {
      if (!this.#worthTrying()) return undefined;
      let c: C;
      const left = Math.min(deadline.remainingMs(), budget - (this.#clock.now() - startedAt));
      if (left <= 0) return undefined;
      try {
        c = await this.#link.acquire(new Deadline(this.#clock, left, deadline.signal));
      } catch {
        // A connection attempt skipped or refused (another caller took the connection, a
        // standby restarting): tried again within the budget; the primary is no better now.
        deadline.throwIfAborted();
        judged += 1;
        continue;
      }
      const { server, role } = this.#link.describe(c);
      // An idle connection to a standby set aside meanwhile (by another call): closed unjudged,
      // so the bag's stack of them drains at once instead of costing this call a backoff each.
      if (role !== 'primary' && (this.#asideUntil.get(hostKey(server)) ?? 0) > this.#clock.now()) {
        this.#link.release(c, 'close');
        continue;
      }
      judged += 1;
      const verdict = role === 'primary' ? PRIMARY : await this.#judge(c, server, bounds, lastWrite);
      if (verdict === undefined) return undefined; // the probe failed: its connection was reported
      if (!verdict.ok) {
        this.#link.publish({ host: server, outcome: 'refused', reason: verdict.reason, stalenessMs: finite(verdict.stalenessMs), lagBytes: verdict.lagBytes, during });
        // Out of bounds for everyone (not only for this context): new read connections go elsewhere.
        const forAll = verdict.reason !== 'read-your-writes' || poolWide;
        if (!forAll) {
          this.#link.release(c, 'keep');
          return undefined;
        }
        // A synchronous standby has every acknowledged commit and is only behind on replaying it
        // (or on the pool's last write): it is in bounds again in moments.
        const until = this.#clock.now() + (this.#complete(server) || verdict.reason === 'read-your-writes' ? SYNC_RECHECK_MS : STANDBY_RECHECK_MS);
        this.#asideUntil.set(hostKey(server), until);
        this.#watch.setAsideForReads(server, until);
        // Closed only when another standby may serve: the bag would hand this one out again.
        this.#link.release(c, this.#worthTrying() ? 'close' : 'keep');
        continue;
      }
      let value: T;
      try {
        value = await run(c);
      } catch (err) {
        this.#link.release(c, { failed: err });
        throw err;
      }
      if (verdict.primary) {
        this.#link.servedByPrimary(c);
      } else {
        this.#link.release(c, 'keep');
        this.#link.publish({ host: server, outcome: 'served', stalenessMs: finite(verdict.stalenessMs), lagBytes: verdict.lagBytes, during });
      }
      return { value };
    }
    return undefined;
  }

  /**
   * Some standby is not set aside (or none is known yet: the read bag will find out), or the
   * leader Patroni names is a standby we read from, promoted: the read bag's connections to it
   * are warm, and a read there is a read on the new primary.
   */
  #worthTrying(): boolean {
    const now = this.#clock.now();
    const standbys = this.#watch.knownStandbys();
    if (standbys.length === 0 || standbys.some((s) => (this.#asideUntil.get(hostKey(s)) ?? 0) <= now)) return true;
    const leader = this.#watch.leader;
    return leader !== undefined && this.#probes.has(hostKey(leader));
  }

  /** Judges with the last probe of the server if it says yes; probes (again) otherwise. */
  async #judge(c: C, server: HostRef, bounds: FailoverReadBounds, lastWrite: WriteMark | undefined): Promise<StandbyVerdict | undefined> {
    const k = hostKey(server);
    let probe = this.#probes.get(k);
    const now = this.#clock.now();
    if (probe !== undefined && now - probe.sentAt > PROBE_MAX_AGE_MS) probe = undefined;
    if (probe !== undefined) {
      const verdict = this.#verdict(probe, server, bounds, lastWrite);
      if (verdict.ok || now - probe.sentAt < REPROBE_MS) return verdict;
    }
    probe = await this.#probe(c, k);
    return probe === undefined ? undefined : this.#verdict(probe, server, bounds, lastWrite);
  }

  #verdict(probe: StandbyProbe, server: HostRef, bounds: FailoverReadBounds, lastWrite: WriteMark | undefined): StandbyVerdict {
    const info = this.#watch.standbyInfo(server);
    return judgeStandby({
      now: this.#clock.now(), bounds, probe, sync: this.#complete(server), patroniLagBytes: info?.lagBytes,
      marks: this.#marks, referenceLsn: this.#referenceLsn(), lastWrite,
    });
  }

  /**
   * Patroni names `server` the synchronous standby, or the leader: a standby being promoted is
   * still in recovery for a moment after Patroni names it (and leaves the standby list), and
   * what it holds is the new primary's data.
   */
  #complete(server: HostRef): boolean {
    const leader = this.#watch.leader;
    return this.#watch.standbyInfo(server)?.sync === true || (leader !== undefined && hostKey(leader) === hostKey(server));
  }

  /** One probe per server at a time: callers arriving meanwhile share it. */
  async #probe(c: C, k: string): Promise<StandbyProbe | undefined> {
    const inFlight = this.#probing.get(k);
    if (inFlight !== undefined) {
      const shared = await inFlight;
      if (shared !== undefined) return shared;
    }
    const sentAt = this.#clock.now();
    const running = this.#link.query(c, STANDBY_PROBE_SQL).then(
      (rows) => {
        const probe = parseProbe(rows[0], sentAt);
        this.#probes.set(k, probe);
        return probe;
      },
      (err: unknown) => {
        this.#link.release(c, { failed: err });
        return undefined;
      },
    ).finally(() => this.#probing.delete(k));
    this.#probing.set(k, running);
    return running;
  }

  /** The newest primary position known: our marks, and what any standby received. */
  #referenceLsn(): bigint | undefined {
    let ref: bigint | undefined;
    for (const m of this.#marks) ref = maxLsn(ref, m.lsn);
    for (const p of this.#probes.values()) ref = maxLsn(ref, p.receiveLsn);
    return ref;
  }
}

const PRIMARY: StandbyVerdict = { ok: true, primary: true, stalenessMs: 0, lagBytes: 0 };

function finite(ms: number): number | undefined {
  return Number.isFinite(ms) ? Math.round(ms) : undefined;
}
