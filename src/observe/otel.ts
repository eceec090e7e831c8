import { createRequire } from 'node:module';
import { invalidOption } from '../errors.ts';
import { parseConnectionString } from '../topology/hosts.ts';
import type { GiveUpEvent, RetryEvent } from '../policy/retry.ts';
import type {
  BreakerEvent,
  CallEndEvent,
  CommitResolvedEvent,
  LostCommitsEvent,
  ConnectionCreatedEvent,
  ConnectionRetiredEvent,
  FailoverEvent,
  FailoverReport,
  StandbyReadEvent,
} from './types.ts';

// @opentelemetry/api is an optional peer dependency, like prom-client: the library loads
// without it, and its .d.ts names none of its types (a consumer without it must still
// typecheck). The few parts used are described structurally; @opentelemetry/api 1.7+ fits.

/** Attribute values as OpenTelemetry takes them. */
export type OtelAttributes = Record<string, string | number | boolean>;

/** Options of an OpenTelemetry instrument (the fields we pass). */
export interface InstrumentOptions {
  /** What the instrument measures. */
  description?: string;
  /** UCUM unit, e.g. `s`. */
  unit?: string;
  /** 0: INT, 1: DOUBLE (the api's ValueType). */
  valueType?: number;
  /** Histogram bucket boundaries advised to the SDK. */
  advice?: {
    /** Bucket upper bounds. */
    explicitBucketBoundaries?: number[];
  };
}

/** What an observable instrument's callback is handed. */
export interface OtelObservableResultLike {
  /** Reports the current value for `attributes`. */
  observe(value: number, attributes?: OtelAttributes): void;
}

/** Reports an observable instrument's values at collection. */
export type ObservableCallback = (result: OtelObservableResultLike) => void;

/** The parts of an OpenTelemetry observable instrument we use. */
export interface ObservableLike {
  /** Registers a callback run at each collection. */
  addCallback(callback: ObservableCallback): void;
  /** Unregisters it. */
  removeCallback(callback: ObservableCallback): void;
}

/** The parts of an OpenTelemetry `Meter` we use. */
export interface OtelMeterLike {
  /** Creates a histogram. */
  createHistogram(name: string, options?: InstrumentOptions): {
    /** Records one value. */
    record(value: number, attributes?: OtelAttributes): void;
  };
  /** Creates a counter. */
  createCounter(name: string, options?: InstrumentOptions): {
    /** Adds to the count. */
    add(value: number, attributes?: OtelAttributes): void;
  };
  /** Creates an observable up-down counter. */
  createObservableUpDownCounter(name: string, options?: InstrumentOptions): ObservableLike;
  /** Creates an observable gauge. */
  createObservableGauge(name: string, options?: InstrumentOptions): ObservableLike;
}

/** An OpenTelemetry `MeterProvider` (the SDK's, or `metrics.getMeterProvider()`). */
export interface OtelMeterProviderLike {
  /** The meter of an instrumentation scope. */
  getMeter(name: string, version?: string): OtelMeterLike;
}

/** What is read from the pool: its events and counts. A pg-resilient `Pool` fits. */
export interface OtelPoolLike {
  /** Adds an event listener. */
  on(event: string, listener: (...args: any[]) => void): unknown;
  /** Removes it. */
  off(event: string, listener: (...args: any[]) => void): unknown;
  /** Connections open. */
  readonly totalCount: number;
  /** Connections idle. */
  readonly idleCount: number;
  /** Callers waiting for a connection. */
  readonly waitingCount: number;
  /** `closed`, `open` or `half-open`. */
  readonly breakerState: string;
  /** The options read for attributes and limits. */
  readonly options: {
    /** Pool size limit. */
    readonly max: number;
    /** Connections kept open. */
    readonly min: number;
    /** Server host. */
    readonly host?: string | undefined;
    /** Server port. */
    readonly port?: number | undefined;
    /** Database name. */
    readonly database?: string | undefined;
    /** Several servers, when configured. */
    readonly hosts?: ReadonlyArray<string | {
      /** Host name or IP address. */
      host: string;
      /** TCP port. */
      port?: number;
    }> | undefined;
  };
}

/** Options of `instrumentPoolOtel`; all optional. */
export interface InstrumentPoolOtelOptions {
  /**
   * Where the instruments are created. Defaults to the global provider of `@opentelemetry/api`
   * (`metrics.getMeterProvider()`), loaded with `require` at this call, never when
   * pg-resilient itself loads.
   */
  meterProvider?: OtelMeterProviderLike;
  /**
   * `db.client.connection.pool.name`, unique within the application. Defaults to
   * `host:port/database` from the pool's options (every host of a multi-host list, comma
   * separated); never a user or password.
   */
  poolName?: string;
}

/** What `instrumentPoolOtel` returns. */
export interface PoolOtelInstrumentation {
  /** Stops observing the pool: its listeners and observable callbacks are removed. */
  close(): void;
}

/** `db.client.operation.duration` and `…create_time` buckets, in seconds, as the conventions advise. */
export const DB_DURATION_BUCKETS_SECONDS = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10];
/** Failover recovery, in seconds: a restart takes ~1 s, a failover 5–40 s. */
export const FAILOVER_BUCKETS_SECONDS = [0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120];
/** `pg_resilient.attempts` stops counting here ("10" means ten or more), to bound the series. */
export const ATTEMPTS_ATTRIBUTE_CAP = 10;

// Attribute values derived from errors: SQLSTATEs, errno names, PGR_ codes, failure classes.
// Anything else (an arbitrary `code` on a foreign error) becomes _OTHER: no free text, bounded.
const SAFE_CODE = /^[A-Za-z0-9_]{1,40}$/;
const SAFE_WORD = /^[a-z][a-z0-9-]{0,40}$/;
// A SQLSTATE: PostgreSQL's classes start with a digit, or are F0, HV, P0, XX ('EPIPE' is not one).
const SQLSTATE = /^(?:[0-9][0-9A-Z]|F0|HV|P0|XX)[0-9A-Z]{3}$/;

const namesInUse = new WeakMap<object, Set<string>>();

/**
 * Reports a pool's behaviour as OpenTelemetry metrics, named and attributed per the database
 * client semantic conventions, plus pg-resilient's own failover, retry and breaker counters.
 * Attribute values are codes, classes and reasons only: never hosts' credentials or query text.
 *
 * - `db.client.operation.duration` (histogram, s): one per `pool.query()` or
 *   `pool.transaction()` call, retries inside it; `db.system.name`, `error.type` and
 *   `db.response.status_code` (final SQLSTATE) on failures, `pg_resilient.attempts`.
 * - `db.client.connection.count` {connection} by `db.client.connection.state` (idle/used),
 *   `…pending_requests` {request}, `…max`, `…idle.min` {connection}, `…timeouts` {timeout},
 *   `…create_time` (s), `…wait_time` (s, `pool.connect()` calls).
 * - `pg_resilient.failovers`, `pg_resilient.failover.duration`, `pg_resilient.retries`,
 *   `pg_resilient.give_ups`, `pg_resilient.breaker.state`, `pg_resilient.breaker.transitions`,
 *   `pg_resilient.connections.retired`, `pg_resilient.commits.resolved`,
 *   `pg_resilient.standby_reads`, `pg_resilient.standby_read.staleness` (s) (`failoverReads`).
 *
 * @example
 * import { metrics } from '@opentelemetry/api';
 * const otel = instrumentPoolOtel(pool, { poolName: 'orders' }); // global MeterProvider
 * // on shutdown: otel.close();
 */
export function instrumentPoolOtel(pool: OtelPoolLike, options: InstrumentPoolOtelOptions = {}): PoolOtelInstrumentation {
  const provider = options.meterProvider ?? loadGlobalMeterProvider();
  if (typeof provider?.getMeter !== 'function') throw invalidOption('meterProvider', 'expected an OpenTelemetry MeterProvider (with getMeter)');
  const poolName = options.poolName ?? defaultPoolName(pool.options);
  if (typeof poolName !== 'string' || poolName === '') throw invalidOption('poolName', 'must be a non-empty string');
  const names = namesInUse.get(provider) ?? new Set<string>();
  namesInUse.set(provider, names);
  if (names.has(poolName)) {
    throw invalidOption('poolName', `another pool is already instrumented as ${JSON.stringify(poolName)} on this MeterProvider; give each pool its own poolName`);
  }
  const meter = provider.getMeter('pg-resilient');
  const pooled: OtelAttributes = { 'db.client.connection.pool.name': poolName };
  const int = 0;

  const operationDuration = meter.createHistogram('db.client.operation.duration', {
    unit: 's', description: 'Duration of database client operations: one per pool.query() or pool.transaction() call, retries included.',
    advice: { explicitBucketBoundaries: DB_DURATION_BUCKETS_SECONDS },
  });
  const waitTime = meter.createHistogram('db.client.connection.wait_time', {
    unit: 's', description: 'The time it took to obtain an open connection from the pool (pool.connect() calls, retries included).',
    advice: { explicitBucketBoundaries: DB_DURATION_BUCKETS_SECONDS },
  });
  const createTime = meter.createHistogram('db.client.connection.create_time', {
    unit: 's', description: 'The time it took to create a new connection.', advice: { explicitBucketBoundaries: DB_DURATION_BUCKETS_SECONDS },
  });
  const timeouts = meter.createCounter('db.client.connection.timeouts', {
    unit: '{timeout}', valueType: int, description: 'The number of connection timeouts that have occurred trying to obtain a connection from the pool.',
  });
  const failovers = meter.createCounter('pg_resilient.failovers', {
    unit: '{failover}', valueType: int, description: 'Failovers detected (restarts, switchovers, failovers), by the failure class that revealed them.',
  });
  const failoverDuration = meter.createHistogram('pg_resilient.failover.duration', {
    unit: 's', description: 'From the first failure of a failover to the first successful statement afterwards.',
    advice: { explicitBucketBoundaries: FAILOVER_BUCKETS_SECONDS },
  });
  const retries = meter.createCounter('pg_resilient.retries', {
    unit: '{retry}', valueType: int, description: 'Attempts retried after a failure, by failure class and code.',
  });
  const giveUps = meter.createCounter('pg_resilient.give_ups', {
    unit: '{call}', valueType: int, description: 'Calls that failed for the application, by why retrying stopped.',
  });
  const transitions = meter.createCounter('pg_resilient.breaker.transitions', {
    unit: '{transition}', valueType: int, description: 'Circuit breaker state changes, by the state entered.',
  });
  const retired = meter.createCounter('pg_resilient.connections.retired', {
    unit: '{connection}', valueType: int, description: 'Connections closed by the pool, by reason.',
  });
  const commits = meter.createCounter('pg_resilient.commits.resolved', {
    unit: '{commit}', valueType: int, description: 'COMMITs whose connection was lost, resolved by asking the primary, by outcome.',
  });
  const lostCommits = meter.createCounter('pg_resilient.lost_commits', {
    unit: '{commit}', valueType: int, description: 'Acknowledged commits a failover lost: the new primary lacks them (lostCommits).',
  });
  const standbyReads = meter.createCounter('pg_resilient.standby_reads', {
    unit: '{read}', valueType: int, description: 'Reads judged for a standby while the primary was unavailable (failoverReads): served, or refused by reason.',
  });
  const standbyStaleness = meter.createHistogram('pg_resilient.standby_read.staleness', {
    unit: 's', description: 'Staleness bound of the reads standbys served while the primary was unavailable.',
  });

  const listeners: Record<string, (...args: any[]) => void> = {
    callEnd: (e: CallEndEvent) => {
      const failed = e.outcome === 'error';
      const attrs: OtelAttributes = { ...pooled };
      if (failed) Object.assign(attrs, errorAttributes(e));
      if (e.kind === 'connect') {
        waitTime.record(e.durationMs / 1000, attrs);
        return;
      }
      attrs['db.system.name'] = 'postgresql';
      attrs['pg_resilient.call.kind'] = e.kind;
      attrs['pg_resilient.attempts'] = Math.min(Math.max(1, Math.trunc(e.attempts)), ATTEMPTS_ATTRIBUTE_CAP);
      // Not parsed from the query text (the PostgreSQL conventions say not to): only when the
      // caller named it.
      const op = (e as { operation?: unknown }).operation;
      if (typeof op === 'string' && op !== '' && op.length <= 64) attrs['db.operation.name'] = op;
      operationDuration.record(e.durationMs / 1000, attrs);
    },
    connectionCreated: (e: ConnectionCreatedEvent) => {
      if (typeof e?.durationMs === 'number' && e.durationMs >= 0) createTime.record(e.durationMs / 1000, pooled);
    },
    retry: (e: RetryEvent) => {
      retries.add(1, { ...pooled, 'pg_resilient.failure.category': safeWord(e.category), 'error.type': safeCode(e.code ?? e.category) });
      if (e.code === 'PGR_ACQUIRE_TIMEOUT') timeouts.add(1, pooled);
    },
    giveUp: (e: GiveUpEvent) => {
      giveUps.add(1, { ...pooled, 'pg_resilient.give_up.reason': safeWord(e.reason), 'error.type': safeCode(e.code ?? e.category) });
      // Every failed attempt ends in one retry or one give-up: together they count the timeouts.
      if (e.code === 'PGR_ACQUIRE_TIMEOUT') timeouts.add(1, pooled);
    },
    failover: (e: FailoverEvent) => {
      if (e.phase === 'detected') failovers.add(1, { ...pooled, 'pg_resilient.failover.trigger': safeWord(e.trigger) });
    },
    failoverReport: (r: FailoverReport) => {
      failoverDuration.record(r.recoveryMs / 1000, pooled);
    },
    breaker: (e: BreakerEvent) => {
      transitions.add(1, { ...pooled, 'pg_resilient.breaker.state': safeWord(e.state) });
    },
    connectionRetired: (e: ConnectionRetiredEvent) => {
      retired.add(1, { ...pooled, 'pg_resilient.retire.reason': safeWord(e.reason) });
    },
    commitResolved: (e: CommitResolvedEvent) => {
      commits.add(1, { ...pooled, 'pg_resilient.commit.outcome': safeWord(e.outcome) });
    },
    lostCommits: (e: LostCommitsEvent) => {
      if (typeof e?.count === 'number' && e.count > 0) lostCommits.add(e.count, pooled);
    },
    standbyRead: (e: StandbyReadEvent) => {
      standbyReads.add(1, { ...pooled, 'pg_resilient.standby_read.outcome': safeWord(e.outcome), ...(e.reason === undefined ? {} : { 'pg_resilient.standby_read.reason': safeWord(e.reason) }) });
      if (e.outcome === 'served' && e.stalenessMs !== undefined) standbyStaleness.record(e.stalenessMs / 1000, pooled);
    },
  };
  for (const [event, listener] of Object.entries(listeners)) pool.on(event, listener);

  // Pool state is read at collection time: always current, nothing to keep in sync.
  const observed: Array<[ObservableLike, ObservableCallback]> = [];
  const observe = (instrument: ObservableLike, callback: ObservableCallback): void => {
    instrument.addCallback(callback);
    observed.push([instrument, callback]);
  };
  observe(meter.createObservableUpDownCounter('db.client.connection.count', {
    unit: '{connection}', valueType: int, description: 'The number of connections that are currently in state described by the state attribute.',
  }), (result) => {
    const total = pool.totalCount;
    const idle = Math.min(pool.idleCount, total);
    result.observe(idle, { ...pooled, 'db.client.connection.state': 'idle' });
    // Used: checked out, running a statement, or being opened (pg.Pool's totalCount counts those).
    result.observe(total - idle, { ...pooled, 'db.client.connection.state': 'used' });
  });
  observe(meter.createObservableUpDownCounter('db.client.connection.pending_requests', {
    unit: '{request}', valueType: int, description: 'The number of current pending requests for an open connection.',
  }), (result) => result.observe(pool.waitingCount, pooled));
  observe(meter.createObservableUpDownCounter('db.client.connection.max', {
    unit: '{connection}', valueType: int, description: 'The maximum number of open connections allowed.',
  }), (result) => result.observe(pool.options.max, pooled));
  observe(meter.createObservableUpDownCounter('db.client.connection.idle.min', {
    unit: '{connection}', valueType: int, description: 'The minimum number of idle open connections allowed.',
  }), (result) => result.observe(pool.options.min, pooled));
  observe(meter.createObservableGauge('pg_resilient.breaker.state', {
    unit: '1', valueType: int, description: 'Circuit breaker state: 1 for the current state (closed, half-open, open), 0 for the others.',
  }), (result) => {
    const now = pool.breakerState;
    for (const state of ['closed', 'half-open', 'open']) result.observe(state === now ? 1 : 0, { ...pooled, 'pg_resilient.breaker.state': state });
  });

  names.add(poolName);
  let closed = false;
  return {
    close(): void {
      if (closed) return;
      closed = true;
      for (const [event, listener] of Object.entries(listeners)) pool.off(event, listener);
      for (const [instrument, callback] of observed) instrument.removeCallback(callback);
      names.delete(poolName);
    },
  };
}

/** `error.type` and `db.response.status_code` of a failed call. */
function errorAttributes(e: CallEndEvent): OtelAttributes {
  const attrs: OtelAttributes = { 'error.type': safeCode(e.code ?? e.category ?? undefined) };
  // The final SQLSTATE: carried by the event when the error wraps one (PGR_RETRIES_EXHAUSTED
  // after 57P03), else the code itself when it is one (23505 passed through unchanged).
  const carried = (e as { sqlstate?: unknown }).sqlstate;
  const sqlstate = typeof carried === 'string' && SQLSTATE.test(carried) ? carried
    : typeof e.code === 'string' && SQLSTATE.test(e.code) ? e.code : undefined;
  if (sqlstate !== undefined) attrs['db.response.status_code'] = sqlstate;
  return attrs;
}

function safeCode(code: string | undefined): string {
  return code !== undefined && SAFE_CODE.test(code) ? code : '_OTHER';
}

function safeWord(word: string): string {
  return SAFE_WORD.test(word) ? word : '_OTHER';
}

/**
 * `host:port/database` from the pool's options, as the conventions suggest for pools without a
 * name. Built from what the connection-string parser extracted (the hosts and the database),
 * never from the string's text: a password holding `@`, `/` or `?` cannot slip into the name.
 */
export function defaultPoolName(o: OtelPoolLike['options']): string {
  let hosts: string | undefined;
  let database: string | undefined;
  const cs = (o as { connectionString?: unknown }).connectionString;
  if (typeof cs === 'string') {
    try {
      const parsed = parseConnectionString(cs);
      if (parsed.targets.length > 0) hosts = parsed.targets.map((t) => `${t.host}:${t.port}`).join(',');
      const db = parsed.clientConfig.database;
      // A database name with "@" means the user info was split where the user did not mean it.
      if (typeof db === 'string' && db !== '' && !db.includes('@')) database = db;
    } catch {
      // An unparseable string makes the pool refuse it anyway; its name stays generic.
    }
  }
  // Hosts as the pool reads them (`hosts`, then `host`, over the string's); the database as pg
  // reads it (the string's over the option).
  if (Array.isArray(o.hosts) && o.hosts.length > 0) {
    hosts = o.hosts.map((h) => (typeof h === 'string' ? (/:\d+$/.test(h) ? h : `${h}:5432`) : `${h.host}:${h.port ?? 5432}`)).join(',');
  } else if (typeof o.host === 'string' && o.host !== '') {
    hosts = `${o.host}:${o.port ?? 5432}`;
  }
  if (database === undefined && typeof o.database === 'string' && o.database !== '') database = o.database;
  if (hosts === undefined) return 'pg-resilient';
  return database === undefined ? hosts : `${hosts}/${database}`;
}

function loadGlobalMeterProvider(): OtelMeterProviderLike {
  let api: { metrics?: { getMeterProvider(): OtelMeterProviderLike } };
  try {
    // Deliberately at call time: pg-resilient must load without its optional peer.
    api = createRequire(import.meta.url)('@opentelemetry/api') as typeof api;
  } catch (err) {
    throw invalidOption('meterProvider', `@opentelemetry/api could not be loaded (${(err as { code?: string }).code ?? 'error'}); install it, or pass a MeterProvider as \`meterProvider\``);
  }
  if (typeof api.metrics?.getMeterProvider !== 'function') throw invalidOption('meterProvider', '@opentelemetry/api has no metrics API (version 1.3 or later is needed)');
  return api.metrics.getMeterProvider();
}
