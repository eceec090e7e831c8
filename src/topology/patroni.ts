import http from 'node:http';
import https from 'node:https';
import { discoveryFailedError } from '../errors.ts';
import type { ResolvedPatroni } from './patroni-options.ts';
import type { Logger } from '../observe/logger.ts';
import type { Clock } from '../policy/clock.ts';
import type { HostTarget } from './hosts.ts';
import type { Discovery } from './discovery.ts';
import { parsePatroniHistory, type TimelineSwitch } from '../transactions/timeline.ts';

/** One member as Patroni's `GET /cluster` reports it (the fields we use). */
export interface PatroniMember {
  /** Member name. */
  readonly name: string;
  /** `leader`, `replica`, `sync_standby`, … */
  readonly role: string;
  /** `running`, `streaming`, `stopped`, … */
  readonly state: string;
  /** PostgreSQL host. */
  readonly host: string;
  /** PostgreSQL port. */
  readonly port: number;
  /** Replication lag in bytes, if reported. */
  readonly lagBytes: number | undefined;
  /** Timeline, if reported. */
  readonly timeline: number | undefined;
}

/** What `parseCluster` reads from Patroni's `/cluster`. */
export interface ClusterView {
  /** The leader (primary), if there is one. */
  readonly leader: HostTarget | undefined;
  /** Running replicas, with their lag when Patroni reports it. */
  readonly standbys: Array<HostTarget & {
    /** Replication lag in bytes, if reported. */
    lagBytes: number | undefined;
  }>;
  /**
   * Running standbys Patroni names synchronous (role sync_standby, with synchronous_mode): every
   * commit the primary acknowledged was flushed on them first (the failover-read policy's
   * evidence that such a standby, once it replayed what it received, misses no acknowledged write).
   */
  readonly syncStandbys: HostTarget[];
  /** Every member as reported. */
  readonly members: readonly PatroniMember[];
}

/**
 * Parses Patroni's `/cluster` document. Pure, so malformed answers are table-tested; throws
 * PGR_DISCOVERY_FAILED naming what is wrong.
 */
export function parseCluster(body: unknown): ClusterView {
  if (typeof body !== 'object' || body === null || !Array.isArray((body as { members?: unknown }).members)) {
    throw discoveryFailedError('it has no members array');
  }
  const members: PatroniMember[] = [];
  for (const [i, raw] of ((body as { members: unknown[] }).members).entries()) {
    const m = raw as Record<string, unknown>;
    if (typeof m !== 'object' || m === null || typeof m.name !== 'string' || typeof m.role !== 'string') {
      throw discoveryFailedError(`member #${i} lacks a name or role`);
    }
    const port = Number(m.port);
    if (typeof m.host !== 'string' || m.host === '' || !Number.isInteger(port) || port < 1 || port > 65535) {
      throw discoveryFailedError(`member ${m.name} has no usable host/port`);
    }
    const lag = m.lag;
    members.push({
      name: m.name,
      role: m.role,
      state: typeof m.state === 'string' ? m.state : 'unknown',
      host: m.host,
      port,
      // Patroni reports lag in bytes, or "unknown" while a replica is not streaming.
      lagBytes: typeof lag === 'number' ? lag : undefined,
      timeline: typeof m.timeline === 'number' ? m.timeline : undefined,
    });
  }
  const running = (m: PatroniMember): boolean => m.state === 'running' || m.state === 'streaming';
  const leaders = members.filter((m) => (m.role === 'leader' || m.role === 'standby_leader') && running(m));
  const leader = leaders.length === 1 ? { host: leaders[0]!.host, port: leaders[0]!.port } : undefined;
  const standbys = members
    .filter((m) => (m.role === 'replica' || m.role === 'sync_standby') && running(m))
    .map((m) => ({ host: m.host, port: m.port, lagBytes: m.lagBytes }));
  const syncStandbys = members.filter((m) => m.role === 'sync_standby' && running(m)).map((m) => ({ host: m.host, port: m.port }));
  return { leader, standbys, syncStandbys, members };
}

/**
 * Reads Patroni's REST API to learn the leader and the replicas: on a timer, and at once (one
 * request in flight, never one per failed query) when the pool signals a failover. Endpoints
 * that are down are skipped; the first that answers wins.
 */
export class PatroniDiscovery implements Discovery {
  readonly #options: ResolvedPatroni;
  readonly #clock: Clock;
  readonly #logger: Logger;
  readonly #onLeaderChange: (leader: HostTarget) => void;
  #view: ClusterView | undefined;
  #inFlight: Promise<void> | undefined;
  #timer: { cancel(): void } | undefined;
  #closed = false;
  #fastUntil = 0;
  /** The leader when the last failover signal came: polling stays fast until another one shows. */
  #leaderAtSignal: string | undefined;
  /** Last leader seen (a view without a leader, mid-election, doesn't reset it). */
  #lastLeader: HostTarget | undefined;
  /** The hosts of the last refused answer, so a forged answer repeated on every poll is logged once. */
  #lastRefused: string | undefined;

  constructor(options: ResolvedPatroni, clock: Clock, logger: Logger, onLeaderChange: (leader: HostTarget) => void) {
    this.#options = options;
    this.#clock = clock;
    this.#logger = logger;
    this.#onLeaderChange = onLeaderChange;
    void this.refresh('start');
  }

  snapshot(): ClusterView | undefined {
    return this.#view;
  }

  /**
   * Patroni's `GET /history` (the timeline switches, as the DCS keeps them), from the first
   * endpoint that answers; undefined when none does. Asked only to resolve a COMMIT in doubt or
   * to count lost commits after a failover, so not cached.
   */
  async history(): Promise<readonly TimelineSwitch[] | undefined> {
    for (const url of this.#options.urls) {
      if (this.#closed) return undefined;
      try {
        return parsePatroniHistory(await this.#get(`${url}/history`));
      } catch {
        // the next endpoint
      }
    }
    return undefined;
  }

  /** Coalesced: while a refresh runs, callers share it. */
  refresh(reason: string): Promise<void> {
    if (this.#closed) return Promise.resolve();
    if (reason !== 'timer' && reason !== 'start' && reason !== 'ready') {
      // After a failover signal, poll fast until a different leader shows up.
      this.#fastUntil = this.#clock.now() + 30_000;
      this.#leaderAtSignal = this.#lastLeader === undefined ? undefined : `${this.#lastLeader.host}:${this.#lastLeader.port}`;
    }
    this.#inFlight ??= this.#load().finally(() => {
      this.#inFlight = undefined;
      this.#schedule();
    });
    return this.#inFlight;
  }

  /**
   * Resolves once the first round of requests has answered (or failed), or after `ms`. One
   * round only: with no usable answer the pool falls back to its static host list.
   */
  async ready(ms: number): Promise<void> {
    if (this.#view !== undefined || this.#closed) return;
    let timer: { cancel(): void } | undefined;
    await Promise.race([
      this.refresh('ready'),
      new Promise<void>((resolve) => { timer = this.#clock.setTimeout(resolve, ms); }),
    ]);
    timer?.cancel();
  }

  close(): void {
    this.#closed = true;
    this.#timer?.cancel();
  }

  /** After a failover signal, until a different leader shows up (or 30 s pass). */
  #hunting(): boolean {
    const leader = this.#view?.leader;
    return this.#clock.now() < this.#fastUntil
      && (leader === undefined || `${leader.host}:${leader.port}` === this.#leaderAtSignal);
  }

  #schedule(): void {
    if (this.#closed) return;
    this.#timer?.cancel();
    const interval = this.#hunting() ? Math.min(100, this.#options.refreshIntervalMs) : this.#options.refreshIntervalMs;
    this.#timer = this.#clock.setTimeout(() => void this.refresh('timer'), interval, { background: true });
  }

  async #load(): Promise<void> {
    const errors: string[] = [];
    if (this.#hunting() && this.#options.urls.length > 1) {
      // During a failover ask every endpoint at once. A member's /cluster is its own copy of
      // the DCS, refreshed once per Patroni loop (loop_wait): a replica can name the old leader
      // for up to a second after the new leader took the key and promoted, while the new
      // leader already names itself. Any answer naming a leader other than the one at the
      // signal is the newer one.
      const answers = await Promise.all(this.#options.urls.map((url) => this.#get(`${url}/cluster`).then(
        (body) => parseCluster(body),
        (err: unknown) => {
          errors.push(`${url}: ${(err as Error).message}`);
          return undefined;
        },
      )));
      if (this.#closed) return;
      const views = answers.filter((v): v is ClusterView => v !== undefined && this.#trusted(v));
      const moved = views.find((v) => v.leader !== undefined && `${v.leader.host}:${v.leader.port}` !== this.#leaderAtSignal);
      const view = moved ?? views[0];
      if (view !== undefined) return this.#accept(view);
    } else {
      // Ask the endpoints in turn; most of the time the first one answers.
      for (const url of this.#options.urls) {
        if (this.#closed) return;
        let view: ClusterView;
        try {
          view = parseCluster(await this.#get(`${url}/cluster`));
        } catch (err) {
          errors.push(`${url}: ${(err as Error).message}`);
          continue;
        }
        if (this.#closed) return;
        if (this.#trusted(view)) return this.#accept(view);
        errors.push(`${url}: answer refused (names a host outside the allowlist)`);
      }
    }
    this.#logger.warn({ errors }, 'pg-resilient: no Patroni REST endpoint answered');
  }

  /**
   * Does the answer name only hosts the operator named (patroni.allowedHosts, by default the
   * REST endpoints' and the connection targets' hosts)? A forged answer over plain http could
   * otherwise send the pool, and the database password, anywhere. Refused answers are logged
   * (once per distinct set of hosts) and the previous view is kept.
   */
  #trusted(view: ClusterView): boolean {
    const named = [...(view.leader === undefined ? [] : [view.leader]), ...view.standbys, ...view.syncStandbys];
    const outside = [...new Set(named.map((m) => m.host).filter((h) => !this.#options.allowedHosts.has(h.toLowerCase())))];
    if (outside.length === 0) {
      this.#lastRefused = undefined;
      return true;
    }
    const key = outside.sort().join(',');
    if (key !== this.#lastRefused) {
      this.#lastRefused = key;
      this.#logger.warn(
        { refusedHosts: outside.map((h) => h.slice(0, 255)), allowedHosts: [...this.#options.allowedHosts] },
        'pg-resilient: Patroni answer refused: it names a host not in the allowlist (patroni.allowedHosts); keeping the previous view',
      );
    }
    return false;
  }

  #accept(view: ClusterView): void {
    const previous = this.#lastLeader;
    this.#view = view;
    if (view.leader === undefined) return;
    this.#lastLeader = view.leader;
    if (previous !== undefined && (previous.host !== view.leader.host || previous.port !== view.leader.port)) {
      this.#logger.info({ from: previous, to: view.leader }, 'pg-resilient: Patroni reports a new leader');
      this.#onLeaderChange(view.leader);
    }
  }

  #get(url: string): Promise<unknown> {
    const u = new URL(url);
    const lib = u.protocol === 'https:' ? https : http;
    const headers: Record<string, string> = { accept: 'application/json' };
    if (this.#options.auth !== undefined) {
      headers.authorization = `Basic ${Buffer.from(`${this.#options.auth.username}:${this.#options.auth.password}`).toString('base64')}`;
    }
    const deadlineMs = this.#options.requestTimeoutMs;
    return new Promise((resolve, reject) => {
      // A total deadline, from connect to the answer's last byte: a socket timeout is an idle
      // timeout, which a server trickling a byte now and then never trips.
      const timer = setTimeout(() => req.destroy(new Error(`no complete answer within ${deadlineMs} ms`)), deadlineMs);
      timer.unref();
      const fail = (err: Error): void => {
        clearTimeout(timer);
        reject(err);
      };
      const req = lib.get(u, { headers, ...(this.#options.tls ?? {}) }, (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length; // a running total: linear in the answer's size
          if (size > MAX_ANSWER_BYTES) {
            req.destroy(new Error(`answer larger than ${MAX_ANSWER_BYTES} bytes`));
            return;
          }
          chunks.push(c);
        });
        res.on('end', () => {
          clearTimeout(timer);
          if (res.statusCode !== 200) return reject(new Error(`HTTP ${res.statusCode}`));
          try {
            resolve(JSON.parse(Buffer.concat(chunks, size).toString('utf8')));
          } catch {
            reject(new Error('answer is not JSON'));
          }
        });
        res.on('error', fail);
      });
      req.on('error', fail);
    });
  }
}

/** Largest /cluster answer read (a real one is a few KB per member). */
const MAX_ANSWER_BYTES = 1_000_000;
