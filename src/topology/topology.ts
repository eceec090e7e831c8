import type { ResolvedOptions } from '../options.ts';
import type { FailoverEvent, HostRef } from '../observe/types.ts';
import { fullJitterDelay } from '../policy/backoff.ts';
import type { HostTarget, TargetSessionAttrs } from './hosts.ts';
import type { TimelineSwitch } from '../transactions/timeline.ts';
import type { Discovery } from './discovery.ts';

/** What we know of a server from a connection we made to it. */
export type ServerRole = 'primary' | 'standby';

/** Which connections a pool needs: its writes/default path, or standby-routed reads. */
export type Purpose = 'default' | 'read';

interface HostHealth {
  failures: number;
  /** Don't try this host before this time (clock ms) unless nothing else is left. */
  skipUntil: number;
  role: ServerRole | undefined;
  lagBytes: number | undefined;
}

interface PendingFailover {
  generation: number;
  detectedAt: number;
  oldPrimary: HostRef | undefined;
  trigger: string;
}

/**
 * Where connections should go, and whether the cluster is in the middle of a failover.
 * Knowledge comes from three places: the configured host list, the role each connection
 * reports when it is made, and (optionally) Patroni discovery. A failover signal starts a new
 * *generation*: every connection made before it is retired (idle ones closed at once,
 * checked-out ones destroyed on release).
 */
export class Topology {
  readonly #options: ResolvedOptions;
  readonly #health = new Map<string, HostHealth>();
  readonly #onFailover: (event: FailoverEvent) => void;
  #generation = 0;
  #primary: HostRef | undefined;
  #pending: PendingFailover | undefined;
  /** Clock time of the last statement that succeeded on a current-generation connection. */
  #lastSuccessAt = -Infinity;
  #discovery: Discovery | undefined;
  /** Backoffs to cut short at the next primary change (each removes itself when it ends). */
  readonly #primaryWaiters = new Set<() => void>();
  readonly #generationListeners: Array<(generation: number) => void> = [];
  /** Clock time the last failover completed. */
  #completedAt = -Infinity;
  /** Standbys the failover-read policy found out of bounds: new read connections go elsewhere until then. */
  readonly #readAsideUntil = new Map<string, number>();
  /** The discovery answer the health map was last pruned for. */
  #prunedFor: object | undefined;

  constructor(options: ResolvedOptions, onFailover: (event: FailoverEvent) => void) {
    this.#options = options;
    this.#onFailover = onFailover;
    for (const t of options.targets) this.#health.set(key(t), { failures: 0, skipUntil: 0, role: undefined, lagBytes: undefined });
  }

  setDiscovery(discovery: Discovery): void {
    this.#discovery = discovery;
  }

  get generation(): number {
    return this.#generation;
  }

  get primary(): HostRef | undefined {
    return this.#primary;
  }


  /** The session attributes a connection for `purpose` must satisfy. */
  attrsFor(purpose: Purpose): TargetSessionAttrs {
    return purpose === 'read' ? 'prefer-standby' : this.#options.targetSessionAttrs;
  }

  /**
   * Hosts to try for a new connection, best first. Hosts that failed recently or had the wrong
   * role are left out until their skip time passes, unless no other host is left; then the one
   * that may be retried soonest comes first, with the time to wait before trying it.
   */
  candidates(purpose: Purpose): { targets: HostTarget[]; waitMs: number } {
    const now = this.#options.clock.now();
    const attrs = this.attrsFor(purpose);
    const fromDiscovery = this.#fromDiscovery(purpose);
    let ordered = fromDiscovery ?? [...this.#options.targets];
    if (fromDiscovery === undefined && this.#options.loadBalanceHosts) ordered = shuffle(ordered, this.#options.random);
    // Known roles first: a host known to fit goes before unknown ones, known misfits last.
    const rank = (t: HostTarget): number => {
      const role = this.#health.get(key(t))?.role;
      if (role === undefined) return 1;
      return roleFits(role, attrs) === 'yes' ? 0 : roleFits(role, attrs) === 'fallback' ? 2 : 3;
    };
    ordered = ordered.map((t, i) => ({ t, i })).sort((a, b) => rank(a.t) - rank(b.t) || a.i - b.i).map((x) => x.t);
    if (purpose === 'read') {
      // Standbys the failover-read policy found out of bounds are left out while others remain:
      // prefer-standby would otherwise pick one over a (new) primary and the policy refuse it.
      const inBounds = ordered.filter((t) => (this.#readAsideUntil.get(key(t)) ?? 0) <= now);
      if (inBounds.length > 0) ordered = inBounds;
    }
    // While a failover is under way a standby may be promoted any moment: one that merely had
    // the wrong role is tried again (last), only hosts that failed to connect are skipped.
    const ready = ordered.filter((t) => {
      const h = this.#health.get(key(t));
      return (h?.skipUntil ?? 0) <= now || (this.#pending !== undefined && h?.failures === 0);
    });
    if (ready.length > 0) return { targets: ready, waitMs: 0 };
    const soonest = [...ordered].sort((a, b) => this.#skipUntil(a) - this.#skipUntil(b));
    return { targets: soonest.slice(0, 1), waitMs: Math.max(0, this.#skipUntil(soonest[0]!) - now) };
  }

  /** Does a server with `role` satisfy `purpose`? 'fallback': only when nothing better exists. */
  fits(role: ServerRole, purpose: Purpose): 'yes' | 'fallback' | 'no' {
    return roleFits(role, this.attrsFor(purpose));
  }

  /** Connected and the role is known. */
  markConnected(target: HostTarget, role: ServerRole): void {
    const h = this.#state(target);
    h.failures = 0;
    h.skipUntil = 0;
    const promoted = role === 'primary' && h.role !== 'primary' && this.#pending !== undefined;
    h.role = role;
    if (role === 'primary' && this.#options.targets.length > 1) this.#primary = { host: target.host, port: target.port };
    if (promoted) this.primaryChanged();
  }

  /**
   * Calls `wake` once at the next sign that a (new) primary is reachable; returns what
   * unsubscribes it. A subscription, not a shared promise: a backoff that ends without a failover
   * leaves nothing behind (a reaction on a shared promise lived until the next failover).
   */
  onPrimaryChange(wake: () => void): () => void {
    this.#primaryWaiters.add(wake);
    return () => this.#primaryWaiters.delete(wake);
  }

  /** Calls `listener` as each failover generation begins: the bags subscribe, to retire older connections. */
  onGeneration(listener: (generation: number) => void): void {
    this.#generationListeners.push(listener);
  }

  /** Backoffs waiting for a primary change now (for tests and metrics). */
  get primaryWaiters(): number {
    return this.#primaryWaiters.size;
  }

  /** Wakes every caller waiting in a backoff: a new primary is there to try. */
  primaryChanged(): void {
    const waiting = [...this.#primaryWaiters];
    this.#primaryWaiters.clear();
    for (const wake of waiting) wake();
  }

  /** Waits (bounded) for discovery's first answer, so the first connections go to the right node. */
  async ready(timeoutMs: number): Promise<void> {
    if (this.#discovery === undefined || this.#discovery.snapshot() !== undefined) return;
    await this.#discovery.ready(timeoutMs);
  }

  /** The host's role did not fit: skip it for `hostRecheckMs`, as libpq-style clients do. */
  markWrongRole(target: HostTarget, role: ServerRole): void {
    const h = this.#state(target);
    h.role = role;
    h.skipUntil = this.#options.clock.now() + this.#options.hostRecheckMs;
  }

  /** Connecting failed: skip the host for a jittered, growing time capped by `hostRecheckMs`. */
  markFailed(target: HostTarget): void {
    const h = this.#state(target);
    h.failures += 1;
    const backoff = fullJitterDelay(h.failures - 1, {
      initialDelayMs: this.#options.retry.initialDelayMs,
      maxDelayMs: Math.max(this.#options.retry.initialDelayMs, this.#options.hostRecheckMs),
      multiplier: this.#options.retry.multiplier,
    }, this.#options.random);
    h.skipUntil = this.#options.clock.now() + backoff;
    if (h.role === 'primary') h.role = undefined;
  }

  /**
   * A failure said the topology is probably changing. Starts one new generation per failover:
   * while one is pending, further signals only refresh discovery. Returns true when a new
   * generation started (the pool then retires older connections).
   */
  signalFailover(trigger: string, at?: HostRef): boolean {
    void this.#discovery?.refresh(trigger);
    if (this.#pending !== undefined) return false;
    this.#generation += 1;
    // The server where the failure happened; behind a proxy it may differ from the last primary seen.
    const oldPrimary = at ?? this.#primary;
    if (at !== undefined) {
      const h = this.#health.get(key(at));
      if (h !== undefined && h.role === 'primary') h.role = undefined;
    }
    this.#pending = { generation: this.#generation, detectedAt: this.#options.clock.now(), oldPrimary, trigger };
    this.#onFailover({ phase: 'detected', generation: this.#generation, oldPrimary, newPrimary: undefined, trigger });
    for (const listener of this.#generationListeners) listener(this.#generation);
    return true;
  }

  /** A statement succeeded on a connection of `generation` to `server`: a pending failover is over. */
  observeSuccess(generation: number, server: HostRef | undefined, now = this.#options.clock.now()): void {
    // A read served by a standby says nothing about the primary: it neither ends a failover nor
    // names the new primary, unless the attrs take standbys as servers (libpq's default 'any':
    // tested first, it spares the host lookup after every statement).
    if (server !== undefined && roleFits('standby', this.#options.targetSessionAttrs) === 'no' && this.#health.get(key(server))?.role === 'standby') return;
    if (generation === this.#generation) this.#lastSuccessAt = now;
    const pending = this.#pending;
    if (pending === undefined || generation < pending.generation) return;
    this.#pending = undefined;
    this.#completedAt = now;
    if (server !== undefined) this.#primary = server;
    this.#onFailover({
      phase: 'completed',
      generation: pending.generation,
      oldPrimary: pending.oldPrimary,
      newPrimary: server,
      trigger: pending.trigger,
      durationMs: Math.round(this.#options.clock.now() - pending.detectedAt),
    });
  }

  /** A failover generation is under way (detected, no statement has succeeded on the new primary yet). */
  get failingOver(): boolean {
    return this.#pending !== undefined;
  }

  /** A statement succeeded on a connection of the current generation within the last `ms`. */
  servedWithin(ms: number): boolean {
    return this.#pending === undefined && this.#options.clock.now() - this.#lastSuccessAt <= ms;
  }

  /** A failover completed within the last `ms`. */
  completedWithin(ms: number): boolean {
    return this.#pending === undefined && this.#options.clock.now() - this.#completedAt <= ms;
  }

  /** Patroni discovery answered and names no leader (an election under way, or none possible). */
  get leaderless(): boolean {
    const snap = this.#discovery?.snapshot();
    return snap !== undefined && snap.leader === undefined;
  }

  /** Standbys as far as known: Patroni's running replicas, and hosts our connections found in recovery. */
  knownStandbys(): HostTarget[] {
    const out = [...(this.#discovery?.snapshot()?.standbys ?? []).map((s) => ({ host: s.host, port: s.port }))];
    for (const t of this.#options.targets) if (this.#health.get(key(t))?.role === 'standby') out.push(t);
    return dedupe(out);
  }

  /** The cluster's timeline switches as Patroni tells them; undefined without Patroni. */
  timelineHistory(): Promise<readonly TimelineSwitch[] | undefined> {
    return this.#discovery?.history?.() ?? Promise.resolve(undefined);
  }

  /** The leader Patroni names now, if any. */
  get leader(): HostTarget | undefined {
    return this.#discovery?.snapshot()?.leader;
  }

  /** What Patroni says of `server` as a standby (synchronous? lag in bytes), if it lists it as one. */
  standbyInfo(server: HostRef): { sync: boolean; lagBytes: number | undefined } | undefined {
    const snap = this.#discovery?.snapshot();
    const k = key(server);
    const s = snap?.standbys.find((m) => key(m) === k);
    if (s === undefined) return undefined;
    return { sync: (snap?.syncStandbys ?? []).some((m) => key(m) === k), lagBytes: s.lagBytes };
  }

  /** The failover-read policy found `server` out of bounds: new read connections try other hosts first until `until`. */
  setAsideForReads(server: HostRef, until: number): void {
    this.#readAsideUntil.set(key(server), until);
  }

  /** Remember the primary seen through a proxy (HAProxy) for reports. */
  notePrimary(server: HostRef): void {
    if (this.#pending === undefined && this.#primary === undefined) this.#primary = server;
  }

  close(): void {
    this.#discovery?.close();
  }

  #fromDiscovery(purpose: Purpose): HostTarget[] | undefined {
    const snap = this.#discovery?.snapshot();
    if (snap === undefined) return undefined;
    if (snap !== this.#prunedFor) this.#prune(snap);
    const maxLag = this.#options.maxLagBytes;
    const standbys = snap.standbys.filter((s) => s.lagBytes === undefined || s.lagBytes <= maxLag);
    for (const s of snap.standbys) this.#state(s).lagBytes = s.lagBytes;
    if (snap.leader !== undefined) this.#state(snap.leader).role = 'primary';
    for (const s of snap.standbys) this.#state(s).role = 'standby';
    const leader = snap.leader === undefined ? [] : [snap.leader];
    const attrs = this.attrsFor(purpose);
    // During a failover Patroni's answer lags the cluster (the new leader shows up after it
    // already accepts writes): the leader goes first, the other members after it, and the role
    // check at connect decides. Outside a failover the answer is trusted as is.
    const everyone = dedupe([...leader, ...snap.standbys.map((s) => ({ host: s.host, port: s.port })), ...this.#options.targets]);
    switch (attrs) {
      case 'read-write':
      case 'primary':
        if (this.#pending !== undefined || leader.length === 0) return everyone;
        return leader;
      case 'read-only':
      case 'standby':
        return standbys.length > 0 ? standbys : undefined;
      case 'prefer-standby':
        return dedupe([...standbys, ...leader]);
      default:
        return dedupe([...leader, ...standbys]);
    }
  }

  /**
   * A new discovery answer: forget the health of members it no longer names (and that no option
   * names), so a cluster whose members come and go does not grow these maps without bound.
   */
  #prune(snap: NonNullable<ReturnType<Discovery['snapshot']>>): void {
    this.#prunedFor = snap;
    const keep = new Set<string>([...this.#options.targets, ...snap.standbys, ...(snap.leader === undefined ? [] : [snap.leader])].map(key));
    for (const k of this.#health.keys()) if (!keep.has(k)) this.#health.delete(k);
    for (const k of this.#readAsideUntil.keys()) if (!keep.has(k)) this.#readAsideUntil.delete(k);
  }

  /** Number of hosts whose health is tracked (bounded by the options' hosts and the last answer's members). */
  get trackedHosts(): number {
    return this.#health.size;
  }

  #skipUntil(t: HostTarget): number {
    return this.#health.get(key(t))?.skipUntil ?? 0;
  }

  #state(t: HostTarget): HostHealth {
    let h = this.#health.get(key(t));
    if (h === undefined) {
      h = { failures: 0, skipUntil: 0, role: undefined, lagBytes: undefined };
      this.#health.set(key(t), h);
    }
    return h;
  }
}

export function roleFits(role: ServerRole, attrs: TargetSessionAttrs): 'yes' | 'fallback' | 'no' {
  switch (attrs) {
    case 'any':
      return 'yes';
    case 'read-write':
    case 'primary':
      return role === 'primary' ? 'yes' : 'no';
    case 'read-only':
    case 'standby':
      return role === 'standby' ? 'yes' : 'no';
    case 'prefer-standby':
      return role === 'standby' ? 'yes' : 'fallback';
  }
}

function dedupe(targets: HostTarget[]): HostTarget[] {
  const seen = new Set<string>();
  return targets.filter((t) => {
    const k = key(t);
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

function key(t: HostRef): string {
  return `${t.host}:${t.port}`;
}

function shuffle<T>(items: T[], random: () => number): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i -= 1) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}
