import type { Client } from 'pg';
import type { PreparedStatements } from '../prepared/prepared-statements.ts';
import { wrapQuery } from './client-query.ts';
import { watchForFatalEvidence } from './fatal-evidence.ts';
import { PoolEntry, attachEntry, entryOf } from './pool-entry.ts';
import { describeConnection } from './call-errors.ts';
import { classify } from '../classify/classify.ts';
import { describeError, noSuitableHostError, poolEndedError } from '../errors.ts';
import type { ResolvedOptions } from '../options.ts';
import type { HostRef } from '../observe/types.ts';
import type { ConnectGate } from '../policy/connect-gate.ts';
import type { HostTarget } from '../topology/hosts.ts';
import type { Purpose, ServerRole, Topology } from '../topology/topology.ts';

/**
 * A creation that failed: handed to the acquirer, who destroys it and sees the error. One that
 * was `unneeded` (skipped because the callers waiting were already covered by other connects)
 * is no failure of anyone's and is handed to nobody.
 */
export class CreateFailure {
  readonly error: unknown;
  readonly target: HostTarget | undefined;
  readonly unneeded: boolean;

  constructor(error: unknown, target: HostTarget | undefined, unneeded = false) {
    this.error = error;
    this.target = target;
    this.unneeded = unneeded;
  }
}

export type Resource = Client | CreateFailure;

export interface ConnectionHooks {
  /** A connection broke while idle or checked out (after the pool's bookkeeping). */
  onBroken(client: Client, entry: PoolEntry, err: Error): void;
  /**
   * A statement failed on a client lent to application code (`pool.connect()`, query builders):
   * the pool's own statements report through their retry loop instead.
   */
  onStatementFailure(client: Client, entry: PoolEntry, err: unknown): void;
  /** A server reported a role change on an open connection (promotion of a standby). */
  onRoleChange(client: Client, entry: PoolEntry, role: ServerRole): void;
  /** A connection attempt to one host failed (for events/logs). */
  onConnectFailure(target: HostTarget, err: unknown): void;
  /** A new connection is ready: `durationMs` from its TCP connect to ready, `waitedMs` for the connect gate before. */
  onConnected(client: Client, entry: PoolEntry, timing: { durationMs: number; waitedMs: number }): void;
  /** The pool's prepared statements (a cache per connection). */
  readonly prepared: PreparedStatements;
  /** What the user's hooks are given for a connection (its Session, as the pool's events name it). */
  present(client: Client): object;
  /** The user's onConnect or verify failed on a new connection (it is closed, never counted). */
  onSetupFailed(client: Client, stage: 'onConnect' | 'verify', err: unknown): void;
  /**
   * The pool's one connect gate, shared by every purpose's factory: it caps the attempts in
   * flight and spaces attempts to a host that failed (src/policy/connect-gate.ts).
   */
  readonly connectGate: ConnectGate;
  /**
   * Is a new connection for `purpose` still wanted, with `connecting` of them being opened now?
   * (A caller still waits, or the pool holds fewer than `min`.) Asked when an attempt's turn comes;
   * without it every attempt is made.
   */
  wanted?(purpose: Purpose, connecting: number): boolean;
}

/** A host in create()'s list: `patient` waits for its backoff or its attempt in flight. */
interface Pass {
  readonly target: HostTarget;
  readonly patient: boolean;
  /** Why the first pass put it off. */
  readonly why: 'backoff' | 'busy' | 'misfit';
}

/**
 * The order in which create() waits for the hosts its first pass put off: those backing off
 * (a short wait), then those busy with an attempt, the most recent attempt first (one that has
 * been hanging for long is likely partitioned away), then hosts known to have the wrong role.
 */
function secondPass(deferred: Pass[], gate: ConnectGate): Pass[] {
  const rank = { backoff: 0, busy: 1, misfit: 2 } as const;
  const since = (p: Pass): number => gate.attemptStartedAt(`${p.target.host}:${p.target.port}`) ?? Infinity;
  return deferred.sort((a, b) => rank[a.why] - rank[b.why] || (a.why === 'busy' && b.why === 'busy' ? since(b) - since(a) : 0));
}

/** A connection made, before the role check and the user's set-up. */
interface Made {
  readonly client: Client;
  readonly entry: PoolEntry;
  readonly startedAt: number;
}

let nextId = 1;

/**
 * Makes pg Clients for generic-pool: picks a host with the topology, connects, learns the
 * server's role, and checks it against target_session_attrs. Never rejects: a failure comes
 * back as a CreateFailure, because generic-pool answers a rejected create by creating again at
 * once (a hot loop against a down server) and hides the error from the waiting caller.
 */
export class ConnectionFactory {
  readonly #options: ResolvedOptions;
  readonly #topology: Topology;
  readonly #hooks: ConnectionHooks;
  readonly #purpose: Purpose;
  readonly #ending: AbortSignal;
  /** host:port of hosts whose role did not fit at their last connect (fits 'no'). */
  readonly #misfits = new Set<string>();
  /** Attempts of this factory connecting now. */
  #connecting = 0;

  constructor(options: ResolvedOptions, topology: Topology, hooks: ConnectionHooks, purpose: Purpose, ending: AbortSignal) {
    this.#options = options;
    this.#topology = topology;
    this.#hooks = hooks;
    this.#purpose = purpose;
    this.#ending = ending;
  }

  async create(): Promise<Resource> {
    let lastError: unknown;
    let lastTarget: HostTarget | undefined;
    let fallback: Made | undefined;
    let waitedMs = 0;
    let unneeded = false;
    const { clock, acquireTimeoutMs } = this.#options;
    const gate = this.#hooks.connectGate;
    // Callers pace themselves (their own backoff); when every host failed recently we still try
    // the one due soonest rather than sleep here, so recovery is seen at the caller's next try.
    await this.#topology.ready(this.#options.patroni?.requestTimeoutMs ?? 0);
    const { targets } = this.#topology.candidates(this.#purpose);
    const deadline = clock.now() + acquireTimeoutMs;
    // With several hosts, attempts to one host hold at most one slot of the gate (one that hangs
    // in a partition cannot take the whole cap), and a first pass skips hosts backing off or busy
    // with an attempt, so that another host that answers is tried before they are waited for.
    const several = targets.length > 1;
    const queue: Pass[] = targets.map((target) => ({ target, patient: !several, why: 'busy' }));
    const deferred: Pass[] = [];
    for (let i = 0; i < queue.length; i += 1) {
      if (this.#ending.aborted) break;
      const pass = queue[i]!;
      const { target, patient } = pass;
      const key = `${target.host}:${target.port}`;
      lastTarget = target;
      if (!patient && this.#misfits.has(key) && !this.#topology.failingOver) {
        // Known to have the wrong role and no failover under way: only if nothing else serves.
        deferred.push({ target, patient: true, why: 'misfit' });
      } else {
        const outcome = await gate.attempt(key, this.#ending, deadline, () => this.#connectOnce(target), {
          skipIfHostBusy: !patient,
          onePerHost: several,
          // A caller served meanwhile (by a connection released or opened before this one) needs none.
          stillWanted: () => this.#hooks.wanted?.(this.#purpose, this.#connecting) ?? true,
        });
        waitedMs += outcome.waitedMs;
        if (outcome.kind === 'skipped') {
          if (!patient && (outcome.reason === 'backoff' || outcome.reason === 'host-busy')) {
            deferred.push({ target, patient: true, why: outcome.reason === 'backoff' ? 'backoff' : 'busy' });
          } else {
            lastError = outcome.reason === 'unwanted' ? outcome.error : lastError ?? outcome.error;
            unneeded = outcome.reason === 'unwanted';
            if (outcome.reason !== 'backoff') break; // unwanted, deadline, abort, end: no other host helps
          }
        } else if (outcome.kind === 'failed') {
          const err = outcome.error;
          lastError = err;
          // A busy server (53300, 57P03) is up: not marked down (the gate backs off from it).
          if (!outcome.busy) this.#topology.markFailed(target);
          this.#hooks.onConnectFailure(target, err);
          if (!classify(err).transient) break; // wrong password, no such database: same on every host
        } else {
          const made = outcome.value;
          const role = made.entry.role ?? 'primary';
          const fit = this.#topology.fits(role, this.#purpose);
          if (fit === 'no') this.#misfits.add(key);
          else this.#misfits.delete(key);
          if (fit === 'yes') {
            const failingOver = this.#topology.failingOver;
            this.#topology.markConnected(target, role);
            // A primary found during a failover: old backoffs say nothing about the new topology.
            if (failingOver && role === 'primary') gate.clearBackoff();
            if (fallback !== undefined) void fallback.entry.close();
            return await this.#ready(made, waitedMs);
          }
          this.#topology.markWrongRole(target, role);
          if (fit === 'fallback' && fallback === undefined) {
            fallback = made;
          } else {
            lastError = noSuitableHostError(this.#topology.attrsFor(this.#purpose), { ...target, role: made.entry.role });
            void made.entry.close();
          }
        }
      }
      if (i === queue.length - 1 && deferred.length > 0 && fallback === undefined) queue.push(...secondPass(deferred.splice(0), gate));
    }
    if (fallback !== undefined) return await this.#ready(fallback, waitedMs);
    if (this.#ending.aborted) {
      lastError = poolEndedError('it was ended while connecting');
      unneeded = false;
    }
    return new CreateFailure(lastError ?? noSuitableHostError(this.#topology.attrsFor(this.#purpose)), lastTarget, unneeded);
  }

  /** One attempt (run by the connect gate): connect and learn the server's role; closed again on failure. */
  async #connectOnce(target: HostTarget): Promise<Made> {
    const startedAt = this.#options.clock.now();
    this.#connecting += 1;
    try {
      const client = this.#newClient(target);
      try {
        // The callback form, as pg-pool calls it: minimal Client classes (pg-native, test doubles) have only that.
        await new Promise<void>((resolve, reject) => {
          (client as unknown as { connect(cb: (err?: Error | null) => void): unknown }).connect((err) => (err ? reject(err) : resolve()));
        });
        const entry = entryOf(client)!;
        await this.#learnServer(client, entry);
        return { client, entry, startedAt };
      } catch (err) {
        void entryOf(client)?.close();
        throw err;
      }
    } finally {
      this.#connecting -= 1;
    }
  }

  /**
   * The user's set-up (`onConnect`) and check (`verify`) run on every new connection, those
   * opened after a failover included, before it is counted or lent. A hook that fails closes
   * the connection and fails this connect with the hook's error (as pg.Pool does); it says
   * nothing about the host, so the host is not marked down.
   */
  async #ready(made: Made, waitedMs: number): Promise<Resource> {
    const { client, entry } = made;
    const { onConnect, verify } = this.#options;
    let stage: 'onConnect' | 'verify' = 'onConnect';
    try {
      const shown = this.#hooks.present(client) as Client;
      if (onConnect !== undefined) await onConnect(shown);
      stage = 'verify';
      if (verify !== undefined) {
        await new Promise<void>((resolve, reject) => {
          verify(shown, (err?: unknown) => (err === undefined || err === null || err === false ? resolve() : reject(err)));
        });
      }
    } catch (err) {
      // Never counted, so never reported: its socket's close must not reach the pool's 'error'.
      entry.move('remove');
      if (entry.brokenBy === undefined) entry.markBroken(new Error(`connection set-up (${stage}) failed`));
      void entry.close();
      this.#hooks.onSetupFailed(client, stage, err);
      return new CreateFailure(err, entry.target);
    }
    this.#options.logger.debug({ host: describeConnection(entry) }, 'pg-resilient: new connection');
    this.#hooks.onConnected(client, entry, { durationMs: this.#options.clock.now() - made.startedAt, waitedMs });
    return client;
  }

  #newClient(target: HostTarget): Client {
    const config = { ...this.#options.clientConfig, host: target.host, port: target.port };
    // The spread drops the non-enumerable password; pg needs it.
    const password = (this.#options.clientConfig as { password?: unknown }).password;
    if (password !== undefined) Object.defineProperty(config, 'password', { value: password, enumerable: false, writable: true });
    const client = new this.#options.Client(config);
    const now = this.#options.clock.now();
    const lifetime = this.#options.maxLifetimeMs;
    const entry = new PoolEntry(client, {
      id: nextId++,
      target,
      purpose: this.#purpose,
      generation: this.#topology.generation,
      createdAt: now,
      // Jitter below the lifetime so connections made together (after a failover) don't expire together.
      expiresAt: lifetime > 0 ? now + lifetime * (1 - this.#options.maxLifetimeJitter * this.#options.random()) : Infinity,
      statements: this.#hooks.prepared,
      prepared: this.#hooks.prepared.cacheFor(client),
    });
    attachEntry(entry);
    wrapQuery(client, entry, this.#hooks, this.#options.clock);
    // A client the application ended (`client.end()` before `release()`) must never be lent
    // again: marked at once, before its 'end' event, so release and validation see it.
    const end = (typeof client.end === 'function' ? client.end.bind(client) : () => undefined) as (...args: unknown[]) => unknown;
    (client as unknown as { end: (...args: unknown[]) => unknown }).end = (...args: unknown[]) => {
      entry.markEndedByApplication('application-end');
      return end(...args);
    };
    // Always listen: an unhandled 'error' on a pg Client crashes the process (node-postgres
    // #2762, #1707). The pool decides what to do; the client is never reused.
    client.on('error', (err: Error) => {
      entry.markBroken(err);
      this.#hooks.onBroken(client, entry, err);
    });
    client.on('end', () => {
      if (entry.brokenBy === undefined) entry.markBroken(new Error('Connection terminated'));
    });
    // What an ErrorResponse proves about the statement it ended (src/classify/fatal-proof.ts).
    watchForFatalEvidence(client);
    // PostgreSQL ≥ 14 reports in_hot_standby at startup and again when it changes (promotion).
    const connection = (client as unknown as { connection?: { on(event: string, fn: (msg: { parameterName: string; parameterValue: string }) => void): void } }).connection;
    connection?.on('parameterStatus', (msg) => {
      if (msg.parameterName !== 'in_hot_standby') return;
      const role: ServerRole = msg.parameterValue === 'on' ? 'standby' : 'primary';
      const changed = entry.role !== undefined && entry.role !== role;
      entry.role = role;
      if (changed) this.#hooks.onRoleChange(client, entry, role);
    });
    return client;
  }

  /** One round trip: the server behind the target (useful behind HAProxy) and its role if not yet reported. */
  async #learnServer(client: Client, entry: PoolEntry): Promise<void> {
    const res = await client.query<{ standby: boolean; port: number | null; ro: string }>(
      "SELECT pg_is_in_recovery() AS standby, inet_server_port() AS port, current_setting('default_transaction_read_only') AS ro",
    );
    const row = res.rows[0];
    if (row === undefined) return;
    entry.server = { host: entry.target.host, port: row.port ?? entry.target.port };
    // A primary with default_transaction_read_only=on is read-only for libpq's read-write check.
    entry.role = row.standby || row.ro === 'on' ? 'standby' : 'primary';
  }
}
