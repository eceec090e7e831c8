import type { Client, QueryConfig } from 'pg';
import type { HostRef } from '../observe/types.ts';
import type { ConnectGate } from '../policy/connect-gate.ts';
import type { StatementCache } from '../prepared/cache.ts';
import type { HostTarget } from '../topology/hosts.ts';
import type { Purpose, ServerRole } from '../topology/topology.ts';
import type { PreparedStatements } from '../prepared/prepared-statements.ts';

// One connection's state, as the pool keeps it (PoolEntry, in HikariCP's terms), and what the
// connection factory reports to the pool. Types and the registry only: every part of the pool
// reads these, so this module imports none of them.

/** What the pool knows about one of its connections. */
export interface ConnectionMeta {
  readonly id: number;
  readonly target: HostTarget;
  readonly purpose: Purpose;
  /** Topology generation at creation; older generations are retired after a failover. */
  readonly generation: number;
  readonly createdAt: number;
  /** Clock time after which the connection is closed instead of reused (maxLifetime with jitter). */
  readonly expiresAt: number;
  /** Server behind the target (differs from the target behind a proxy such as HAProxy). */
  server: HostRef | undefined;
  role: ServerRole | undefined;
  uses: number;
  releasedAt: number;
  /** Set when the connection failed; the client is destroyed instead of reused. */
  broken: Error | undefined;
  /** Checked out by `pool.connect()` (the error listener then reports, not just evicts). */
  checkedOut: boolean;
  released: boolean;
  /** Clock time the oldest statement now in flight was sent; undefined when none is. */
  busySince: number | undefined;
  inFlight: number;
  /**
   * While the pool's fast path runs statements on it: what pipelining needs to know
   * (src/pool/pipeline.ts); undefined otherwise.
   */
  pipe: PipeState | undefined;
  /** In the pool's idle stack (borrowed from generic-pool, ready for the next caller). */
  idle: boolean;
  /** closeQuietly ran. */
  closing: boolean;
  /** generic-pool destroyed it (its `clear()` and validation may both try). */
  removed: boolean;
  /** The pool's 'error' event was emitted for it (pg.Pool emits one per client). */
  errorReported: boolean;
  /**
   * Why it must not be reused came from the application, not its socket: an 'error' emitted on
   * its released session, or `client.end()`. Its socket still works, so it is closed gracefully;
   * after `client.end()` a statement that failed on it is not retried (the application's choice).
   */
  endedBy?: 'application-error' | 'application-end';
  /** Its Session (src/pool/session.ts): what the application and the pool's events see. */
  session: object | undefined;
  /**
   * pg's own `query`, without the wrapper below: the pool's fast path does the wrapper's
   * bookkeeping itself (a client it runs a statement on is never lent or broken).
   */
  rawQuery: (textOrConfig: string | QueryConfig, values?: unknown) => Promise<unknown>;
  /** Its prepared statements (none when preparing is off). */
  prepared: StatementCache | undefined;
}

/** A connection's part in pipelining, while the fast path uses it. */
export interface PipeState {
  /** Statements in flight that nothing may follow (a BEGIN, a COPY, several statements in one text). */
  solo: number;
  /** Handed to callers in line who have not yet sent their statement. */
  promised: number;
}

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

const metas = new WeakMap<Client, ConnectionMeta>();

export function metaOf(client: Client): ConnectionMeta | undefined {
  return metas.get(client);
}

/** Made by the connection factory, once per pg Client. */
export function attachMeta(client: Client, meta: ConnectionMeta): void {
  metas.set(client, meta);
}

export interface ConnectionHooks {
  /** A connection broke while idle or checked out (after the pool's bookkeeping). */
  onBroken(client: Client, meta: ConnectionMeta, err: Error): void;
  /**
   * A statement failed on a client lent to application code (`pool.connect()`, query builders):
   * the pool's own statements report through their retry loop instead.
   */
  onStatementFailure(client: Client, meta: ConnectionMeta, err: unknown): void;
  /** A server reported a role change on an open connection (promotion of a standby). */
  onRoleChange(client: Client, meta: ConnectionMeta, role: ServerRole): void;
  /** A connection attempt to one host failed (for events/logs). */
  onConnectFailure(target: HostTarget, err: unknown): void;
  /** A new connection is ready: `durationMs` from its TCP connect to ready, `waitedMs` for the connect gate before. */
  onConnected(client: Client, meta: ConnectionMeta, timing: { durationMs: number; waitedMs: number }): void;
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
