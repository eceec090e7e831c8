import { createRequire } from 'node:module';
import { invalidOption } from '../errors.ts';
import type { Pool } from '../pool/pool.ts';
import type { GiveUpEvent, RetryEvent } from '../policy/retry.ts';
import type { CallEndEvent, ConnectionRetiredEvent, FailoverEvent, FailoverReport, LostCommitsEvent, StandbyReadEvent } from './types.ts';

// prom-client is an optional peer dependency: the library must load without it, and its .d.ts
// must not name it (a consumer without prom-client would fail to typecheck). So we describe the
// few parts we use structurally; prom-client 14 and 15 both fit.

/** Label names to values, for one series. */
export type Labels = Record<string, string>;

/** What a prom-client metric constructor takes (the fields we pass). */
export interface MetricConfig {
  /** Metric name, prefix included. */
  name: string;
  /** One-line description. */
  help: string;
  /** Label names of its series. */
  labelNames: string[];
  // `any`: prom-client's constructors demand its own Registry class here, which a structural
  // type cannot name without importing prom-client; the registry passed is the caller's own.
  /** Registries to register it in. */
  registers: any[];
}

/** The parts of a prom-client Counter we use. */
export interface PromCounterLike {
  /** Adds `value` (default 1) to the series of `labels`. */
  inc(labels: Labels, value?: number): void;
}

/** The parts of a prom-client Gauge we use. */
export interface PromGaugeLike {
  /** Sets the series of `labels`. */
  set(labels: Labels, value: number): void;
  /** Drops the series of `labels`. */
  remove(labels: Labels): void;
}

/** The parts of a prom-client Histogram we use. */
export interface PromHistogramLike {
  /** Records one observation in the series of `labels`. */
  observe(labels: Labels, value: number): void;
}

/** The parts of a prom-client Registry we use. */
export interface PromRegistryLike {
  /** The metric registered under `name`, if any. */
  getSingleMetric(name: string): unknown;
  /** Unregisters the metric `name`. */
  removeSingleMetric(name: string): void;
}

/** The prom-client module (`import * as client from 'prom-client'`), or anything shaped like it. */
export interface PromClientLike {
  /** prom-client `Counter`. */
  Counter: {
    /** Creates a counter. */
    new (config: MetricConfig): PromCounterLike;
  };
  /** prom-client `Gauge` (`collect` runs on each scrape). */
  Gauge: {
    /** Creates a gauge; `collect` runs before each scrape. */
    new (config: MetricConfig & { collect?: () => void }): PromGaugeLike;
  };
  /** prom-client `Histogram`. */
  Histogram: {
    /** Creates a histogram with these bucket upper bounds. */
    new (config: MetricConfig & { buckets: number[] }): PromHistogramLike;
  };
  /** prom-client's global registry. */
  register: PromRegistryLike;
}

/** Options of `instrumentPool`; all optional. */
export interface InstrumentPoolOptions {
  /**
   * The prom-client module. Optional: when absent, `prom-client` is loaded with `require` at
   * this call (never when pg-resilient itself loads). Pass it to be sure the metrics land in the
   * same prom-client copy as your registry.
   */
  client?: PromClientLike;
  /** Defaults to prom-client's global registry (`client.register`). */
  registry?: PromRegistryLike;
  /** Metric name prefix. Defaults to `pg_resilient_`. */
  prefix?: string;
  /**
   * Constant labels for this pool's series, e.g. `{ pool: 'orders' }`. Required to tell pools
   * apart when several are instrumented into one registry with one prefix; every pool sharing
   * a registry and prefix must use the same label names.
   */
  labels?: Record<string, string>;
}

/** What `instrumentPool` returns. */
export interface PoolInstrumentation {
  /** Stops observing the pool and drops its gauges; the last one out unregisters the metrics. */
  close(): void;
}

/** Default buckets of the recovery histogram, in seconds: a restart takes ~1 s, a failover 5–30 s. */
export const RECOVERY_BUCKETS_SECONDS = [0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120];

/** Buckets of the standby-read staleness histogram, in seconds (bounds are typically 1–30 s). */
export const STALENESS_BUCKETS_SECONDS = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60];

const BREAKER_VALUE: Record<string, number> = { closed: 0, 'half-open': 1, open: 2 };
const OWN_LABELS = ['outcome', 'category', 'code', 'reason', 'trigger'];
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const METRIC_PREFIX = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
// Label values we derive from errors: SQLSTATEs, errno names, PGR_ codes. Anything else (an
// arbitrary `code` on a foreign error) becomes 'other', so no free text and no unbounded series.
const SAFE_CODE = /^[A-Za-z0-9_]{1,40}$/;
const SAFE_WORD = /^[a-z][a-z0-9-]{0,40}$/;

interface Metrics {
  queries: PromCounterLike;
  errors: PromCounterLike;
  retries: PromCounterLike;
  giveUps: PromCounterLike;
  failovers: PromCounterLike;
  retired: PromCounterLike;
  recovery: PromHistogramLike;
  standbyReads: PromCounterLike;
  standbyStaleness: PromHistogramLike;
  lostCommits: PromCounterLike;
  breaker: PromGaugeLike;
  total: PromGaugeLike;
  idle: PromGaugeLike;
  waiting: PromGaugeLike;
}

interface Member {
  readonly pool: Pool;
  readonly labels: Labels;
  readonly key: string;
}

interface Shared {
  readonly labelKeys: string[];
  readonly names: string[];
  readonly members: Map<string, Member>;
  readonly metrics: Metrics;
}

// One set of metric objects per registry and prefix: prom-client refuses a second metric with
// the same name, and several pools (told apart by their labels) share each series family.
const sharedByRegistry = new WeakMap<PromRegistryLike, Map<string, Shared>>();

/**
 * Exposes a pool's behaviour as Prometheus metrics through prom-client. Label values are only
 * failure classes, codes (SQLSTATE / errno / PGR_), reasons and your constant labels: never
 * hosts, credentials or query text.
 *
 * Series (with the default prefix):
 * - `pg_resilient_queries_total{outcome}`: calls through the pool. `ok` counts connections
 *   handed back without error (a successful `pool.query()`, or a checkout the application
 *   released cleanly); `error` counts calls that failed for the application (after retries).
 * - `pg_resilient_errors_total{category,code}`: failed attempts (connect or statement).
 * - `pg_resilient_retries_total{category}`, `pg_resilient_give_ups_total{reason}`
 * - `pg_resilient_breaker_state` (0 closed, 1 half-open, 2 open)
 * - `pg_resilient_pool_connections`, `…_pool_idle_connections`, `…_pool_waiting_clients`
 * - `pg_resilient_failovers_total{trigger}`, `pg_resilient_failover_recovery_seconds` (histogram)
 * - `pg_resilient_connections_retired_total{reason}`
 * - `pg_resilient_standby_reads_total{outcome,reason}` (`failoverReads`: served, or refused as
 *   lag/staleness/read-your-writes), `pg_resilient_standby_read_staleness_seconds` (histogram of
 *   the staleness bound of the reads served)
 * - `pg_resilient_lost_commits_total` (`lostCommits`: acknowledged commits a failover lost)
 *
 * @example
 * import * as client from 'prom-client';
 * const metrics = instrumentPool(pool, { client, labels: { pool: 'orders' } });
 * // on shutdown: metrics.close();
 */
export function instrumentPool(pool: Pool, options: InstrumentPoolOptions = {}): PoolInstrumentation {
  const client = options.client ?? loadPromClient();
  const registry = options.registry ?? client.register;
  const prefix = options.prefix ?? 'pg_resilient_';
  if (!METRIC_PREFIX.test(prefix)) throw invalidOption('prefix', 'must be a valid Prometheus metric name prefix');
  const labels = validateLabels(options.labels ?? {});
  const labelKeys = Object.keys(labels).sort();

  let byPrefix = sharedByRegistry.get(registry);
  if (byPrefix === undefined) {
    byPrefix = new Map();
    sharedByRegistry.set(registry, byPrefix);
  }
  let shared = byPrefix.get(prefix);
  if (shared === undefined) {
    shared = createShared(client, registry, prefix, labelKeys);
    byPrefix.set(prefix, shared);
  } else if (shared.labelKeys.join(',') !== labelKeys.join(',')) {
    throw invalidOption('labels', `pools instrumented into one registry with prefix ${prefix} must use the same label names (${shared.labelKeys.join(', ') || 'none'})`);
  }
  const key = JSON.stringify(labelKeys.map((k) => labels[k]));
  if (shared.members.has(key)) {
    throw invalidOption('labels', 'another pool is already instrumented with these labels in this registry; give each pool distinct `labels`');
  }
  const member: Member = { pool, labels, key };
  shared.members.set(key, member);

  const m = shared.metrics;
  const with_ = (extra: Labels): Labels => ({ ...labels, ...extra });
  // Present from the start, so rate() and absent-series alerts work before the first error.
  m.queries.inc(with_({ outcome: 'ok' }), 0);
  m.queries.inc(with_({ outcome: 'error' }), 0);

  const listeners = {
    // One per query/connect/transaction call, after its retries: the exact count of calls.
    callEnd: (e: CallEndEvent): void => {
      m.queries.inc(with_({ outcome: e.outcome }));
    },
    retry: (e: RetryEvent): void => {
      m.retries.inc(with_({ category: safeWord(e.category) }));
      m.errors.inc(with_({ category: safeWord(e.category), code: safeCode(e.code) }));
    },
    giveUp: (e: GiveUpEvent): void => {
      m.giveUps.inc(with_({ reason: safeWord(e.reason) }));
      // Every failed attempt is followed by exactly one retry or one give-up, so the two together
      // count failures of connects and statements alike (connect failures emit no 'release').
      m.errors.inc(with_({ category: safeWord(e.category), code: safeCode(e.code) }));
    },
    failover: (e: FailoverEvent): void => {
      if (e.phase === 'detected') m.failovers.inc(with_({ trigger: safeWord(e.trigger) }));
    },
    failoverReport: (r: FailoverReport): void => {
      m.recovery.observe(labels, r.recoveryMs / 1000);
    },
    connectionRetired: (e: ConnectionRetiredEvent): void => {
      m.retired.inc(with_({ reason: safeWord(e.reason) }));
    },
    standbyRead: (e: StandbyReadEvent): void => {
      m.standbyReads.inc(with_({ outcome: safeWord(e.outcome), reason: e.reason === undefined ? 'none' : safeWord(e.reason) }));
      if (e.outcome === 'served' && e.stalenessMs !== undefined) m.standbyStaleness.observe(labels, e.stalenessMs / 1000);
    },
    lostCommits: (e: LostCommitsEvent): void => {
      m.lostCommits.inc(labels, e.count);
    },
  };
  // Each listener takes its own event's payload; the table is typed loosely only to subscribe it.
  const subscriptions = Object.entries(listeners) as Array<[string, (...args: any[]) => void]>;
  for (const [event, listener] of subscriptions) pool.on(event, listener);

  let closed = false;
  return {
    close(): void {
      if (closed) return;
      closed = true;
      for (const [event, listener] of subscriptions) pool.off(event, listener);
      const s = byPrefix.get(prefix);
      if (s === undefined || s.members.get(key) !== member) return;
      s.members.delete(key);
      if (s.members.size === 0) {
        for (const name of s.names) registry.removeSingleMetric(name);
        byPrefix.delete(prefix);
        return;
      }
      // Gauges describe live pools only; counters keep their history until the process ends.
      for (const g of [s.metrics.breaker, s.metrics.total, s.metrics.idle, s.metrics.waiting]) g.remove(labels);
    },
  };
}

function createShared(client: PromClientLike, registry: PromRegistryLike, prefix: string, labelKeys: string[]): Shared {
  const members = new Map<string, Member>();
  const names: string[] = [];
  const config = (suffix: string, help: string, own: string[]): MetricConfig => {
    const name = prefix + suffix;
    if (registry.getSingleMetric(name) !== undefined) {
      throw invalidOption('registry', `a metric named ${name} is already registered (use another prefix, or close() the previous instrumentation)`);
    }
    names.push(name);
    return { name, help, labelNames: [...labelKeys, ...own], registers: [registry] };
  };
  // Gauges of pool state are read at scrape time: always current, nothing to keep in sync.
  const gauge = (suffix: string, help: string, read: (pool: Pool) => number): PromGaugeLike => {
    const g: PromGaugeLike = new client.Gauge({
      ...config(suffix, help, []),
      collect: () => {
        for (const { pool, labels } of members.values()) g.set(labels, read(pool));
      },
    });
    return g;
  };
  const metrics: Metrics = {
    queries: new client.Counter(config('queries_total', 'Calls through the pool by outcome: ok = connection handed back without error, error = failed for the application after retries.', ['outcome'])),
    errors: new client.Counter(config('errors_total', 'Failed attempts (connect or statement), by failure class and code.', ['category', 'code'])),
    retries: new client.Counter(config('retries_total', 'Attempts retried after a failure, by failure class.', ['category'])),
    giveUps: new client.Counter(config('give_ups_total', 'Calls that failed for the application, by why retrying stopped.', ['reason'])),
    failovers: new client.Counter(config('failovers_total', 'Failovers detected (restarts, switchovers, failovers), by the failure class that revealed them.', ['trigger'])),
    retired: new client.Counter(config('connections_retired_total', 'Connections closed by the pool, by reason.', ['reason'])),
    recovery: new client.Histogram({
      ...config('failover_recovery_seconds', 'Time from the first failure of a failover to the first successful statement afterwards.', []),
      buckets: RECOVERY_BUCKETS_SECONDS,
    }),
    standbyReads: new client.Counter(config('standby_reads_total', 'Reads judged for a standby while the primary was unavailable (failoverReads): served, or refused by reason.', ['outcome', 'reason'])),
    standbyStaleness: new client.Histogram({
      ...config('standby_read_staleness_seconds', 'Staleness bound of the reads standbys served while the primary was unavailable.', []),
      buckets: STALENESS_BUCKETS_SECONDS,
    }),
    lostCommits: new client.Counter(config('lost_commits_total', 'Acknowledged commits a failover lost (the new primary lacks them; lostCommits).', [])),
    breaker: gauge('breaker_state', 'Circuit breaker state: 0 closed, 1 half-open, 2 open.', (pool) => BREAKER_VALUE[pool.breakerState] ?? 0),
    total: gauge('pool_connections', 'Connections open or being opened (pg.Pool totalCount).', (pool) => pool.totalCount),
    idle: gauge('pool_idle_connections', 'Open connections not checked out (pg.Pool idleCount).', (pool) => pool.idleCount),
    waiting: gauge('pool_waiting_clients', 'Callers waiting for a connection (pg.Pool waitingCount).', (pool) => pool.waitingCount),
  };
  return { labelKeys, names, members, metrics };
}

function validateLabels(labels: Record<string, string>): Labels {
  if (typeof labels !== 'object' || labels === null) throw invalidOption('labels', 'expected an object of label names to values');
  const out: Labels = {};
  for (const [name, value] of Object.entries(labels)) {
    if (!LABEL_NAME.test(name) || name.startsWith('__')) throw invalidOption('labels', `${JSON.stringify(name)} is not a valid Prometheus label name`);
    if (OWN_LABELS.includes(name)) throw invalidOption('labels', `${JSON.stringify(name)} is used by pg-resilient's own series`);
    if (typeof value !== 'string') throw invalidOption('labels', `the value of ${name} must be a string`);
    out[name] = value;
  }
  return out;
}

function safeCode(code: string | undefined): string {
  if (code === undefined) return 'none';
  return SAFE_CODE.test(code) ? code : 'other';
}

function safeWord(word: string): string {
  return SAFE_WORD.test(word) ? word : 'other';
}

function loadPromClient(): PromClientLike {
  try {
    // Deliberately at call time: pg-resilient must load without its optional peer.
    return createRequire(import.meta.url)('prom-client') as PromClientLike;
  } catch (err) {
    throw invalidOption('client', `prom-client could not be loaded (${(err as { code?: string }).code ?? 'error'}); install it, or pass the module as \`client\``);
  }
}
