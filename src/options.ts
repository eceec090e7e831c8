import pg from 'pg';
import type { Client, ClientConfig, PoolConfig } from 'pg';
import { invalidOption } from './errors.ts';
import { systemClock, systemRandom, type Clock, type Random } from './policy/clock.ts';
import { parseHosts, type HostTarget, type TargetSessionAttrs, TARGET_SESSION_ATTRS } from './topology/hosts.ts';
import { resolvePatroni, type PatroniOptions, type ResolvedPatroni } from './topology/patroni-options.ts';
import type { Logger } from './observe/logger.ts';
import { silentLogger } from './observe/logger.ts';
import { boolean, duration, functionOption, integer, logToFunction, number, objectOption } from './option-checks.ts';
import { checkDurability, resolveLostCommits, resolveReplicationTimeout, type Durability, type LostCommitsOptions } from './transactions/durability-options.ts';
import type { ResolvedLostCommits } from './transactions/durability-options.ts';

import type { BreakerOptions, ResolvedBreaker, ResolvedRetry, RetryOptions } from './policy/policy-options.ts';
import { resolveReplay, type ResolvedReplay, type TransactionReplayOptions } from './transactions/replay-options.ts';

/**
 * Everything `pg.Pool` takes, plus the resilience options. Every option has a default; a bad
 * value throws `InvalidOptionError` (code PGR_INVALID_OPTION) naming it, at construction.
 */
export interface PoolOptions extends PoolConfig {
  /** Retries, backoff and the deadline of a call. */
  retry?: RetryOptions;
  /** The circuit breaker. */
  breaker?: BreakerOptions;
  /** pg-pool's legacy name for `max`, honoured when `max` is not given. */
  poolSize?: number;
  /**
   * Longest wait for a free connection in one attempt (pg's `connectionTimeoutMillis` plays this
   * role for pg.Pool). Defaults to `connectionTimeoutMillis`, else 5000.
   */
  acquireTimeoutMs?: number;
  /**
   * Calls allowed to wait for a connection (in the queue or backing off during an outage) at
   * once: calls in progress are bounded by `max + maxWaitingClients`; one more is rejected at
   * once with PGR_QUEUE_FULL, so a burst during an outage cannot grow memory without limit.
   * Defaults to 1000.
   */
  maxWaitingClients?: number;
  /** A connection idle for longer is checked with a round trip before it is handed out. Defaults to 5000. */
  validateAfterIdleMs?: number;
  /** Randomises `maxLifetimeSeconds` by up to this fraction so a fleet does not reconnect at once. Defaults to 0.2. */
  maxLifetimeJitter?: number;
  /**
   * A statement in flight for longer than this makes the pool check that its server still
   * answers (an SSLRequest round trip on a new socket); 0 disables. With the probe timeout this
   * bounds how long a partitioned server (packets dropped, no reset) can hold a connection:
   * about checkAfter + timeout + 0.5 s. Defaults to 2000.
   */
  livenessCheckAfterMs?: number;
  /** Time the liveness probe waits for the server's answer. Defaults to 2000. */
  livenessTimeoutMs?: number;
  /** Hosts to try, libpq-style (`'h:port'` strings or objects). Overrides `host`/`port`. */
  hosts?: Array<string | {
    /** Host name or IP address. */
    host: string;
    /** Defaults to the pool's `port`, else 5432. */
    port?: number;
  }>;
  /**
   * Role the connection's server must have (libpq's target_session_attrs). Defaults to 'any',
   * or 'read-write' with `patroni` discovery (which exists to find the leader: a standby is then
   * used only for `readOnly` calls and through `failoverReads`).
   */
  targetSessionAttrs?: TargetSessionAttrs;
  /** Try hosts in random order (libpq's load_balance_hosts=random). Defaults to false. */
  loadBalanceHosts?: boolean;
  /** A host that failed or had the wrong role goes to the end of the list for this long. Defaults to 500. */
  hostRecheckMs?: number;
  /** Patroni REST discovery of the primary and replicas. */
  patroni?: PatroniOptions;
  /** Largest replication lag (bytes) of a standby that may serve `readOnly` queries. Defaults to Infinity. */
  maxLagBytes?: number;
  /**
   * Reads keep flowing while the primary is unavailable (a failover under way, the breaker
   * open, Patroni naming no leader): a `pool.query` the read rule recognises (or marked
   * `readOnly`) goes to a standby within these bounds instead of waiting; with none in bounds it
   * waits for the primary as before. `maxStalenessMs`: the read includes every write
   * acknowledged more than this long ago, and a context's own writes (`readYourWrites`, else the
   * pool's) of the last `maxStalenessMs`. `maxLagBytes`: WAL the standby may lack. Costs one
   * round trip (`pg_current_wal_insert_lsn()`) after each write. `true` takes the defaults
   * (`{ maxStalenessMs: 5000, maxLagBytes: Infinity }`). Defaults to off.
   */
  failoverReads?: boolean | {
    /** WAL (bytes) the standby may lack. Defaults to Infinity. */
    maxLagBytes?: number;
    /** Staleness bound of a read, in ms. Defaults to 5000. */
    maxStalenessMs?: number;
  };
  /**
   * Remembers each acknowledged commit's transaction id and WAL position (read in the same round
   * trip), so that after a failover that forked the timeline (asynchronous replication) the pool
   * emits `lostCommits` with the commits the new primary lacks. Defaults to false (off): it costs
   * writes outside transactions the extended protocol and one extra statement in their round trip:
   * about 20 % of insert throughput (docs/performance.md).
   */
  lostCommits?: boolean | LostCommitsOptions;
  /**
   * When a write resolves: 'local' once the primary committed it (pg's behaviour), 'replicated'
   * once a standby has also received its commit (the pool must know a standby: multi-host or
   * Patroni mode), so an asynchronous failover cannot lose it. A call or transaction may choose
   * its own. Defaults to 'local'.
   */
  durability?: Durability;
  /** How long `durability: 'replicated'` waits for a standby before PGR_NOT_REPLICATED. Defaults to 5000. */
  replicationTimeoutMs?: number;
  /** pino-style logger; silent by default. Never receives credentials. */
  logger?: Logger;
  /**
   * Server-side prepared statements for `query(text, values)` and config queries with values:
   * each connection keeps up to this many (least recently used closed first), so a hot
   * statement is parsed and planned once per connection. `false` or 0 turns it off (e.g.
   * behind PgBouncer < 1.21 in transaction mode). Defaults to 100.
   */
  prepare?: boolean | number;
  /**
   * Pipelining when every connection is busy and none can be opened: a `pool.query` is written
   * behind the statements in flight on the least loaded connection (up to `depth` per
   * connection, never behind one running longer than `behindSlowMs`) instead of waiting for a
   * connection to come back. Only plain statements (SELECT, WITH, VALUES, TABLE, SHOW, INSERT,
   * UPDATE, DELETE, MERGE; one per text) are pipelined, each still its own transaction;
   * clients lent by `connect()` never are. Needs pg ≥ 8.23. `false` turns it off. Defaults to
   * `{ depth: 8, behindSlowMs: 10 }`.
   */
  pipelining?: boolean | {
    /** Statements in flight per connection, at most. Defaults to 8. */
    depth?: number;
    /** Never queue behind a statement running longer than this. Defaults to 10. */
    behindSlowMs?: number;
  };
  /**
   * Recognises statements of yours that are harmless to run twice (by their text), so they are
   * retried after a lost connection like reads: e.g. `(t) => t.startsWith('INSERT INTO kv')`.
   * Defaults to none. See also `idempotent(fn)` and the per-call `idempotent` option.
   */
  isIdempotent?: (text: string) => boolean;
  /**
   * Verified replay of transactions on checked-out clients (`pool.connect()`, what ORMs run
   * their transactions on): each statement inside a transaction is recorded with a digest of
   * its result, and when the connection is lost before COMMIT the transaction is run again on
   * a new connection and continues there if every result is the same (else PGR_REPLAY_DIVERGED;
   * nothing is committed either way). Beyond `maxStatements` statements or `maxBytes` of
   * statement text and values in one transaction, that transaction is not recorded (a lost
   * connection then fails it with PGR_TRANSACTION_ROLLED_BACK). `false` turns recording off;
   * the resolution of a COMMIT whose answer was lost stays on.
   * Defaults to `{ maxStatements: 1000, maxBytes: 1048576 }`.
   */
  transactionReplay?: boolean | TransactionReplayOptions;
  /** Injected clock, for tests. */
  clock?: Clock;
  /** Injected random source, for tests. */
  random?: Random;
}


/** Options after defaults and validation; frozen. */
export interface ResolvedOptions {
  /** What every pg Client is created with (host/port replaced per target). Password hidden from enumeration. */
  readonly clientConfig: ClientConfig;
  readonly targets: readonly HostTarget[];
  readonly targetSessionAttrs: TargetSessionAttrs;
  readonly loadBalanceHosts: boolean;
  readonly hostRecheckMs: number;
  readonly max: number;
  readonly min: number;
  readonly idleTimeoutMillis: number;
  readonly connectTimeoutMs: number;
  readonly acquireTimeoutMs: number;
  readonly maxWaitingClients: number;
  readonly validateAfterIdleMs: number;
  readonly maxLifetimeMs: number;
  readonly maxLifetimeJitter: number;
  readonly maxUses: number;
  readonly allowExitOnIdle: boolean;
  readonly livenessCheckAfterMs: number;
  readonly livenessTimeoutMs: number;
  readonly retry: ResolvedRetry;
  readonly breaker: ResolvedBreaker;
  readonly patroni: ResolvedPatroni | undefined;
  readonly maxLagBytes: number;
  /** Standby reads while the primary is unavailable; undefined when off. */
  readonly failoverReads: { readonly maxLagBytes: number; readonly maxStalenessMs: number } | undefined;
  /** Lost-commit detection; undefined when off. */
  readonly lostCommits: ResolvedLostCommits | undefined;
  readonly durability: Durability;
  readonly replicationTimeoutMs: number;
  readonly logger: Logger;
  readonly clock: Clock;
  readonly random: Random;
  /** pg's `Client` class, or the one given as `Client` (a subclass, an instrumented one). */
  readonly Client: ClientClass;
  /** pg.Pool's `onConnect`: run on every new connection before its first use (after a failover too). */
  readonly onConnect: ((client: Client) => unknown) | undefined;
  /** pg.Pool's `verify`: a callback check of every new connection before it is first lent. */
  readonly verify: ((client: Client, done: (err?: unknown) => void) => void) | undefined;
  /**
   * A wait for a connection that timed out only because every connection was busy (no connect
   * failed meanwhile) fails at `acquireTimeoutMs` instead of being retried: true when the user
   * set `connectionTimeoutMillis` or `acquireTimeoutMs` (services set them to shed load).
   */
  readonly failFastWhenSaturated: boolean;
  /** Prepared statements kept per connection; 0 = off. */
  readonly prepareCacheSize: number;
  /** Pipelining on busy connections; undefined = off. */
  readonly pipelining: { readonly depth: number; readonly behindSlowMs: number } | undefined;
  readonly isIdempotent: ((text: string) => boolean) | undefined;
  /** Limits of transaction replay on checked-out clients; undefined = off. */
  readonly transactionReplay: ResolvedReplay | undefined;
}

export type ClientClass = new (config: ClientConfig) => Client;

/**
 * Every time option of the pool, by its path: each is refused at construction when it is
 * Infinity, NaN or longer than a timer can wait (2³¹−1 ms; `maxLifetimeSeconds` in seconds).
 * The options test enumerates this list, and checks that every option named …Ms, …Millis or
 * …Seconds in this module is on it.
 */
export const TIME_OPTIONS: readonly string[] = Object.freeze([
  'retry.maxElapsedMs', 'retry.initialDelayMs', 'retry.maxDelayMs',
  'breaker.resetTimeoutMs', 'breaker.rollingWindowMs',
  'patroni.refreshIntervalMs', 'patroni.requestTimeoutMs',
  'hostRecheckMs', 'idleTimeoutMillis', 'connectionTimeoutMillis', 'acquireTimeoutMs', 'validateAfterIdleMs',
  'maxLifetimeSeconds', 'livenessCheckAfterMs', 'livenessTimeoutMs',
  'failoverReads.maxStalenessMs', 'pipelining.behindSlowMs',
  'lostCommits.windowMs', 'replicationTimeoutMs',
]);

/** pg's client options that are times in ms (its timers, or the server's timeouts): the same bound. */
export const PG_CLIENT_TIME_OPTIONS: readonly string[] = Object.freeze([
  'query_timeout', 'statement_timeout', 'lock_timeout', 'idle_in_transaction_session_timeout', 'keepAliveInitialDelayMillis',
]);

// Options that belong to the pool and must not be handed to each pg.Client.
const POOL_ONLY_KEYS = new Set([
  'max', 'min', 'idleTimeoutMillis', 'log', 'Promise', 'allowExitOnIdle', 'maxUses', 'maxLifetimeSeconds',
  'Client', 'onConnect', 'verify', 'retry', 'breaker', 'acquireTimeoutMs', 'maxWaitingClients',
  'validateAfterIdleMs', 'maxLifetimeJitter', 'hosts', 'targetSessionAttrs', 'loadBalanceHosts', 'hostRecheckMs',
  'patroni', 'maxLagBytes', 'logger', 'clock', 'random', 'connectionString', 'livenessCheckAfterMs', 'livenessTimeoutMs',
  'isIdempotent', 'poolSize', 'prepare', 'transactionReplay', 'failoverReads', 'pipelining', 'lostCommits', 'durability', 'replicationTimeoutMs',
]);

/** Applies defaults and validates; throws InvalidOptionError naming the first bad option. */
export function resolveOptions(input: PoolOptions | undefined): ResolvedOptions {
  const o: PoolOptions = input ?? {};
  if (typeof o !== 'object') throw invalidOption('config', `expected an object, got ${typeof o}`);

  const parsed = parseHosts({
    connectionString: o.connectionString,
    hosts: o.hosts,
    host: o.host,
    port: o.port,
  });
  // Patroni discovery exists to find the leader: with it, a standby is never taken for the
  // default path (libpq's 'any' would, once the leader is gone, with no bound on staleness).
  const targetSessionAttrs = o.targetSessionAttrs ?? parsed.targetSessionAttrs ?? (o.patroni === undefined ? 'any' : 'read-write');
  if (!TARGET_SESSION_ATTRS.includes(targetSessionAttrs)) {
    throw invalidOption('targetSessionAttrs', `expected one of ${TARGET_SESSION_ATTRS.join(', ')}, got ${JSON.stringify(targetSessionAttrs)}`);
  }

  const clientConfig: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(o)) {
    if (!POOL_ONLY_KEYS.has(key) && key !== 'poolSize' && key !== 'prepare' && value !== undefined && key !== 'host' && key !== 'port') clientConfig[key] = value;
  }
  // pg's precedence: what the connection string says overrides the options (pg's
  // ConnectionParameters assigns the parsed string over the config), `ssl` included: an sslmode
  // in the string wins over an `ssl` option; without TLS parameters in it, the option counts.
  Object.assign(clientConfig, parsed.clientConfig);
  // Like pg-pool: the password is kept but hidden from enumeration, so logging the config or an
  // object that holds it (JSON.stringify, util.inspect) never prints it.
  const password = clientConfig.password;
  delete clientConfig.password;
  if (password !== undefined) {
    Object.defineProperty(clientConfig, 'password', { value: password, enumerable: false, writable: true, configurable: true });
  }

  // pg-pool's legacy alias, honoured as it does (`max || poolSize || 10`).
  const max = integer(o.max === undefined && o.poolSize !== undefined ? 'poolSize' : 'max', o.max ?? o.poolSize, 10, 1);
  const min = integer('min', o.min, 0, 0);
  if (min > max) throw invalidOption('min', `must not exceed max (${max}), got ${min}`);
  const connectionTimeoutMillis = integer('connectionTimeoutMillis', duration('connectionTimeoutMillis', o.connectionTimeoutMillis, 0, 0), 0, 0);
  // pg's own timers and the server's timeouts given to every client: the same bound (false is pg's "none").
  for (const name of PG_CLIENT_TIME_OPTIONS) {
    const v = (o as Record<string, unknown>)[name];
    if (v !== false && v !== null) duration(name, v, 0, 0);
  }
  // pg's 0 means "wait forever"; a resilient pool never does, so 0 becomes our default.
  const connectTimeoutMs = connectionTimeoutMillis > 0 ? connectionTimeoutMillis : 5000;
  clientConfig.connectionTimeoutMillis = connectTimeoutMs;
  if (clientConfig.keepAlive === undefined) clientConfig.keepAlive = true;
  if (clientConfig.keepAliveInitialDelayMillis === undefined) clientConfig.keepAliveInitialDelayMillis = 1000;

  const maxLifetimeSeconds = duration('maxLifetimeSeconds', o.maxLifetimeSeconds, 0, 0, 1000);
  const maxUses = number('maxUses', o.maxUses, Infinity, 1);

  const r = o.retry ?? {};
  objectOption('retry', o.retry);
  const retry: ResolvedRetry = Object.freeze({
    maxElapsedMs: duration('retry.maxElapsedMs', r.maxElapsedMs, 15000, 0),
    initialDelayMs: duration('retry.initialDelayMs', r.initialDelayMs, 50, 0),
    maxDelayMs: duration('retry.maxDelayMs', r.maxDelayMs, 500, 0),
    multiplier: number('retry.multiplier', r.multiplier, 2, 1),
    maxAttempts: number('retry.maxAttempts', r.maxAttempts, Infinity, 1),
  });
  if (retry.maxDelayMs < retry.initialDelayMs) {
    throw invalidOption('retry.maxDelayMs', `must be ≥ retry.initialDelayMs (${retry.initialDelayMs}), got ${retry.maxDelayMs}`);
  }

  const b = o.breaker ?? {};
  objectOption('breaker', o.breaker);
  const breaker: ResolvedBreaker = Object.freeze({
    enabled: boolean('breaker.enabled', b.enabled, true),
    errorThresholdPercentage: number('breaker.errorThresholdPercentage', b.errorThresholdPercentage, 50, 1, 100),
    volumeThreshold: integer('breaker.volumeThreshold', b.volumeThreshold, 20, 0),
    resetTimeoutMs: duration('breaker.resetTimeoutMs', b.resetTimeoutMs, 500, 1),
    rollingWindowMs: duration('breaker.rollingWindowMs', b.rollingWindowMs, 10000, 10),
  });

  const patroni = o.patroni === undefined ? undefined : resolvePatroni(o.patroni, parsed.targets);
  const ClientOption = functionOption('Client', o.Client) as ClientClass | undefined;
  const logFn = functionOption('log', o.log) as ((...args: unknown[]) => void) | undefined;
  const prepare = o.prepare ?? true;
  if (typeof prepare !== 'boolean') integer('prepare', prepare, 100, 0);

  const resolved: ResolvedOptions = {
    clientConfig: Object.freeze(clientConfig) as ClientConfig,
    targets: parsed.targets,
    targetSessionAttrs,
    loadBalanceHosts: boolean('loadBalanceHosts', o.loadBalanceHosts ?? parsed.loadBalanceHosts, false),
    hostRecheckMs: duration('hostRecheckMs', o.hostRecheckMs, 500, 0),
    max,
    min,
    idleTimeoutMillis: o.idleTimeoutMillis === null ? 0 : duration('idleTimeoutMillis', o.idleTimeoutMillis, 10000, 0),
    connectTimeoutMs,
    acquireTimeoutMs: duration('acquireTimeoutMs', o.acquireTimeoutMs, connectionTimeoutMillis > 0 ? connectionTimeoutMillis : 5000, 1),
    maxWaitingClients: integer('maxWaitingClients', o.maxWaitingClients, 1000, 0),
    validateAfterIdleMs: duration('validateAfterIdleMs', o.validateAfterIdleMs, 5000, 0),
    maxLifetimeMs: maxLifetimeSeconds * 1000,
    maxLifetimeJitter: number('maxLifetimeJitter', o.maxLifetimeJitter, 0.2, 0, 1),
    maxUses,
    allowExitOnIdle: boolean('allowExitOnIdle', o.allowExitOnIdle, false),
    livenessCheckAfterMs: duration('livenessCheckAfterMs', o.livenessCheckAfterMs, 2000, 0),
    livenessTimeoutMs: duration('livenessTimeoutMs', o.livenessTimeoutMs, 2000, 1),
    retry,
    breaker,
    patroni,
    maxLagBytes: number('maxLagBytes', o.maxLagBytes, Infinity, 0),
    failoverReads: resolveFailoverReads(o.failoverReads),
    lostCommits: resolveLostCommits(o.lostCommits),
    durability: checkDurability(o.durability, 'durability', 'local'),
    replicationTimeoutMs: resolveReplicationTimeout(o.replicationTimeoutMs),
    logger: o.logger ?? (logFn === undefined ? silentLogger : logToFunction(logFn)),
    clock: o.clock ?? systemClock,
    random: o.random ?? systemRandom,
    Client: ClientOption ?? pg.Client,
    onConnect: functionOption('onConnect', o.onConnect) as ResolvedOptions['onConnect'],
    verify: functionOption('verify', o.verify) as ResolvedOptions['verify'],
    failFastWhenSaturated: o.acquireTimeoutMs !== undefined || connectionTimeoutMillis > 0,
    prepareCacheSize: prepare === true ? 100 : prepare === false ? 0 : prepare,
    pipelining: resolvePipelining(o.pipelining),
    isIdempotent: functionOption('isIdempotent', o.isIdempotent) as ResolvedOptions['isIdempotent'],
    transactionReplay: resolveReplay(o.transactionReplay),
  };
  if (typeof resolved.random !== 'function') throw invalidOption('random', 'expected a function returning [0, 1)');
  for (const level of ['debug', 'info', 'warn', 'error'] as const) {
    if (typeof resolved.logger[level] !== 'function') throw invalidOption('logger', `expected a function \`${level}\``);
  }
  return Object.freeze(resolved);
}

function resolvePipelining(p: PoolOptions['pipelining']): ResolvedOptions['pipelining'] {
  if (p === false) return undefined;
  if (p !== undefined && p !== true) objectOption('pipelining', p);
  const b = p === undefined || p === true ? {} : p;
  const depth = integer('pipelining.depth', b.depth, 8, 1, 1000);
  const behindSlowMs = duration('pipelining.behindSlowMs', b.behindSlowMs, 10, 0);
  // A depth of 1 is one statement per connection: no pipelining.
  return depth === 1 ? undefined : Object.freeze({ depth, behindSlowMs });
}

function resolveFailoverReads(f: PoolOptions['failoverReads']): ResolvedOptions['failoverReads'] {
  if (f === undefined || f === false) return undefined;
  if (f !== true) objectOption('failoverReads', f);
  const b = f === true ? {} : f;
  return Object.freeze({
    maxLagBytes: number('failoverReads.maxLagBytes', b.maxLagBytes, Infinity, 0),
    maxStalenessMs: duration('failoverReads.maxStalenessMs', b.maxStalenessMs, 5000, 0),
  });
}
