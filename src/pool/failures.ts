import type { Client } from 'pg';
import { classify, type Classification } from '../classify/classify.ts';
import { describeError } from '../errors.ts';
import type { HostRef } from '../observe/types.ts';
import { classificationOf } from '../policy/retry.ts';
import type { HostTarget } from '../topology/hosts.ts';
import type { ServerRole } from '../topology/topology.ts';
import { describeConnection } from './call-errors.ts';
import { entryOf, type PoolEntry } from './pool-entry.ts';
import type { PoolShared } from './shared.ts';

/** After a success on the current primary, connect failures within this time start no failover. */
const CONNECT_FAILURE_GRACE_MS = 1000;

/**
 * The one place failures reach the pool: a statement that failed (on the pool's own attempts
 * and on lent clients alike), a connection that broke, a connection attempt that failed. Each
 * is counted for the failover report, may retire the connection, and may start a failover
 * generation (idle connections of the old one closed, `min` warmed again).
 */
export class Failures {
  readonly #s: PoolShared;

  /**
   * Knows nothing of the bags: a new generation reaches them through the topology
   * (`onGeneration`), and a connection broken while idle is closed by its own bag.
   */
  constructor(shared: PoolShared) {
    this.#s = shared;
  }

  /**
   * A statement failed on `client`: evict it if unusable, signal a failover if the topology is
   * changing. `c`: the failure's classification where it was first caught (else made here, once).
   */
  statementFailed(client: Client, err: unknown, c: Classification = classificationOf(err)): void {
    const meta = entryOf(client);
    if (meta !== undefined && !c.connectionUsable) meta.markBroken(err);
    if (c.transient) this.#s.reporter.noteFailure(c.category, c.code);
    // A connection from before the last failover is already known to be stale: its failure is
    // not news, and must not start another generation (and retire the new connections).
    if (c.topologyChanging && meta !== undefined && meta.generation === this.#s.topology.generation) this.signalFailover(c.category, meta.server);
  }

  /** A connection broke (its socket closed or errored), idle or lent. */
  connectionBroken(client: Client, meta: PoolEntry, err: Error): void {
    const c = classify(err);
    // A statement in flight reports this failure itself (statementFailed); count it once.
    if (meta.inFlight === 0) this.#s.reporter.noteFailure(c.category, c.code);
    const idle = meta.state !== 'lent';
    if (idle) {
      this.#s.o.logger.info({ host: describeConnection(meta), error: describeError(err) }, 'pg-resilient: an idle connection was closed by the server or the network');
      // pg.Pool emits 'error' for idle clients, then 'remove' (once: pg's later "Connection
      // terminated" after the server's FATAL is not news); with nobody listening that would
      // crash the process, so it is only emitted to listeners.
      if (meta.state !== 'removed' && !meta.errorReported) {
        meta.errorReported = true;
        (err as Error & { client?: unknown }).client = this.#s.present(client);
        this.#s.publish('error', err, client);
      }
    }
    if (c.topologyChanging && meta.generation === this.#s.topology.generation) this.signalFailover(c.category, meta.server);
  }

  /** A connection attempt to one host failed. */
  connectFailed(target: HostTarget, err: unknown): void {
    const s = this.#s;
    s.lastConnectError = err;
    s.lastConnectErrorAt = s.o.clock.now();
    s.o.logger.debug({ host: target.host, port: target.port, error: describeError(err) }, 'pg-resilient: connect failed');
    const c = classify(err);
    s.reporter.noteFailure(c.category, c.code);
    // Just after statements succeeded on the current primary, a failed connect says more about
    // the route than the primary: a proxy whose health checks lag a switchover by a second or
    // two, a standby host that is down. It is retried, but starts no failover: a new
    // generation would close the good idle connections (and file a report for nothing). A dead
    // primary still shows at once, through its connections' failures. A target may be a proxy
    // (HAProxy): the report names the last primary seen instead.
    // A server that says it is full (53300, a pooler's client limit) is up and is the primary: no
    // failover, whatever else. 57P03 stays a signal (see CANNOT_CONNECT_NOW in classify/tables.ts).
    if (c.serverBusy && c.category !== 'cannot-connect-now') return;
    if (c.topologyChanging && !s.topology.servedWithin(CONNECT_FAILURE_GRACE_MS)) this.signalFailover(c.category, undefined);
  }

  /** A server reported a role change on an open connection (a promoted standby). */
  roleChanged(meta: PoolEntry, role: ServerRole): void {
    if (this.#s.topology.fits(role, meta.purpose) === 'no') this.signalFailover('role-change', meta.server);
  }

  /**
   * Starts a failover generation unless one is already under way (the bags, subscribed to the
   * topology, then close their idle connections of older generations and warm up again).
   */
  signalFailover(trigger: string, at: HostRef | undefined): void {
    if (this.#s.ending) return;
    this.#s.topology.signalFailover(trigger, at);
  }
}
