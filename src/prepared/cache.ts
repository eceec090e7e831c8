/**
 * Server-side prepared statements for one connection, so the server parses and plans a hot
 * statement once per connection instead of once per call.
 *
 * `config(text, values)` turns a statement with values into pg's `{ name, text, values }`: pg
 * sends Parse only the first time it sees the name on this connection, then Bind/Execute only,
 * and the server reuses the parse tree and (after five executions, if it is not costlier than
 * the custom ones) a generic plan. The cache keeps at most `max` statements (least recently used
 * out first) and closes an evicted one on the server with a protocol Close written just before
 * the query that needed the room: no round trip of its own. Texts longer than `maxTextLength`
 * (4096) run unnamed: the server's memory for a statement grows with its text.
 *
 * Names are content addressed, `pgr_` + 132 bits of SHA-256 of the text: behind a pooler two
 * connections or processes can never mean different statements by one name (the worst is
 * 26000 "does not exist", recovered below), and a name the server already holds (42P05) holds
 * this very text.
 *
 * What invalidates a prepared statement is a rejection before any effect, and `recover(config,
 * err)` repairs the cache and pg's record and returns the config to run once more:
 * - 0A000 "cached plan must not change result type" (an ALTER TABLE or a search_path change
 *   gave the statement another row type): Close it, run again (Parse, Bind, Execute);
 * - 26000 "prepared statement … does not exist" (DISCARD ALL, DEALLOCATE ALL, another server
 *   session behind a pooler): forget every statement of this connection, run again;
 * - 42P05 "prepared statement … already exists" (the server has a statement pg lost track of):
 *   Close it, run again.
 * Inside a transaction block the error has already aborted the transaction, so `recover` mends
 * the cache (the next use works) but returns undefined: the caller must surface the error,
 * and only a retry of the whole transaction may run it again.
 *
 * pg's `types` (type parsers), `rowMode` and `binary` act on results, not on the statement, so
 * the cache key is the text alone and one server statement serves every combination.
 */
import { createHash } from 'node:crypto';
import type { QueryConfig } from 'pg';
import { StampLru } from './lru.ts';
import { pgSession, type PgSession } from './pg-session.ts';

/**
 * Statements kept per connection when the pool's option does not say otherwise: 100.
 * Measured on PostgreSQL 15 (examples/bench/prepared-costs.ts): a cached statement costs the
 * backend 6–17 KiB after its first run and 10–25 KiB once PostgreSQL keeps a generic plan (the
 * benchmark's insert, PK lookup and two-table join), and the client about 100 bytes. So 100
 * statements hold a backend to ~1–2.5 MiB of plan memory: inside what pgjdbc allows by default
 * (256 statements or 5 MiB), below pgx's 512 and half of PgBouncer's `max_prepared_statements`
 * 200 (Zalando's pooler setting), which a pooler needs for the union of all its clients. A
 * service's hot path rarely has more than a few dozen distinct statements, and a miss costs no
 * more than an unnamed statement does.
 */
export const DEFAULT_MAX_PREPARED_STATEMENTS = 100;

/**
 * Longest text cached, in characters (UTF-16 units): 4096. A statement's backend memory grows
 * with its text, 55–75 bytes a character (measured: a 1,000-row multi-VALUES insert of 14,938
 * characters holds 840 KiB, a 1,000-value IN list of 5,932 characters 315 KiB), and generated
 * statements of that kind come in many lengths, each a new text. Longer statements run unnamed,
 * as without the cache. At this bound one statement holds at most ~300 KiB, so a full default
 * cache could reach ~30 MiB in the worst case; ordinary statements keep it to ~1–3 MiB.
 */
export const DEFAULT_MAX_PREPARED_TEXT_LENGTH = 4096;

/** Bounds of one connection's cache. */
export interface StatementCacheOptions {
  /** Statements kept; 0 turns preparing off. Defaults to `DEFAULT_MAX_PREPARED_STATEMENTS` (100). */
  max?: number;
  /** Longer texts run unnamed. Defaults to `DEFAULT_MAX_PREPARED_TEXT_LENGTH` (4096). */
  maxTextLength?: number;
}

/** Every name this module gives a statement starts with this; user-named statements are never touched. */
export const PREPARED_NAME_PREFIX = 'pgr_';

/** The SQLSTATEs that prove a prepared statement was rejected before it had any effect. */
export const INVALIDATION_SQLSTATES = {
  /** cached plan must not change result type */
  cachedPlanChanged: '0A000',
  /** prepared statement "…" does not exist */
  missing: '26000',
  /** prepared statement "…" already exists */
  exists: '42P05',
} as const;

/** Counters of one cache (monotonic, for metrics). */
export interface PreparedStats {
  /** Calls answered from the cache: Bind/Execute only. */
  hits: number;
  /** Calls with values whose text was not cached (a Parse is sent, or the call runs unnamed). */
  misses: number;
  /** Statements closed on the server to make room. */
  evictions: number;
  /** Misses run unnamed because the cache was full and the client busy (no safe moment to Close). */
  uncached: number;
  /** Calls run unnamed because their text is longer than `maxTextLength`. */
  tooLong: number;
  /** Invalidations repaired by `recover` (run again or, inside a transaction, mended only). */
  recovered: number;
}

/** `pgr_` + 22 base64url characters (132 bits) of SHA-256 over the text. */
export function statementName(text: string): string {
  return PREPARED_NAME_PREFIX + createHash('sha256').update(text).digest('base64url').slice(0, 22);
}

export type Invalidation = 'stale' | 'missing' | 'exists';

/**
 * Which invalidation of a prepared statement `err` is, if any: 'stale' (0A000 cached plan must
 * not change result type), 'missing' (26000), 'exists' (42P05). For callers that see the error
 * after `recover` declined to re-run (inside a transaction): the whole transaction may be run
 * again, nothing of it took effect.
 */
export function preparedInvalidation(err: unknown): Invalidation | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const e = err as { code?: unknown; routine?: unknown; message?: unknown };
  switch (e.code) {
    case INVALIDATION_SQLSTATES.missing:
      return 'missing';
    case INVALIDATION_SQLSTATES.exists:
      return 'exists';
    case INVALIDATION_SQLSTATES.cachedPlanChanged:
      // 0A000 is "feature not supported" at large; only this one comes from plan revalidation.
      // `routine` is the server's C function (not translated); the message is the fallback for
      // servers or proxies that drop the field.
      return e.routine === 'RevalidateCachedQuery' || e.message === 'cached plan must not change result type' ? 'stale' : undefined;
    default:
      return undefined;
  }
}

// Configs `recover` handed out: a second invalidation on a re-run is returned, not re-run again.
const reruns = new WeakSet<object>();

export class StatementCache {
  readonly #lru: StampLru<string>;
  readonly #session: PgSession;
  readonly #stats: PreparedStats = { hits: 0, misses: 0, evictions: 0, uncached: 0, tooLong: 0, recovered: 0 };
  readonly #maxTextLength: number;

  /**
   * One per connection, made when the pg Client is (before `connect()`, so that on pg < 8.21 it
   * sees every transaction status). `max: 0` turns preparing off (every call runs unnamed).
   * Throws a RangeError for a bound that is not an integer ≥ 0, a TypeError for a client that
   * is not a node-postgres Client.
   */
  constructor(client: object, options: StatementCacheOptions = {}) {
    const maxTextLength = options.maxTextLength ?? DEFAULT_MAX_PREPARED_TEXT_LENGTH;
    if (!Number.isInteger(maxTextLength) || maxTextLength < 0) throw new RangeError(`maxTextLength must be an integer ≥ 0, got ${String(maxTextLength)}`);
    this.#maxTextLength = maxTextLength;
    this.#lru = new StampLru<string>(options.max ?? DEFAULT_MAX_PREPARED_STATEMENTS);
    this.#session = pgSession(client);
  }

  /** Statements cached now (each held by the server under its name, or about to be). */
  get size(): number {
    return this.#lru.size;
  }

  get max(): number {
    return this.#lru.capacity;
  }

  /** A snapshot of the counters. */
  get stats(): PreparedStats {
    return { ...this.#stats };
  }

  /**
   * pg's query config for `text` with `values`: named when the text is (or now becomes) cached,
   * unnamed without values (the simple protocol, as pg does) or when it cannot be cached. Run the
   * returned config on this cache's client at once (in the same tick): an eviction has just
   * written a Close, and the statement it made room for must follow it.
   */
  config(text: string, values: readonly unknown[] | undefined): QueryConfig {
    // pg itself rejects values that are not an array; the cache stays out of that.
    if (!Array.isArray(values) || values.length === 0) return values === undefined ? { text } : { text, values: values as unknown[] };
    const name = this.#lru.get(text);
    if (name !== undefined) {
      this.#stats.hits += 1;
      return { name, text, values: values as unknown[] };
    }
    return this.#miss(text, values);
  }

  /**
   * The same for a config object (`types`, `rowMode`, `binary` … are kept): a copy with a
   * `name`, or the config itself when it has a name of its own, no values, or reads with a
   * row limit (`rows`, a portal kept open across round trips).
   */
  configFrom<C extends QueryConfig>(input: C): C {
    const values = input.values;
    if (input.name !== undefined || typeof input.text !== 'string' || !Array.isArray(values) || values.length === 0 || (input as { rows?: unknown }).rows !== undefined) return input;
    const named = this.config(input.text, values);
    return named.name === undefined ? input : { ...input, name: named.name };
  }

  /**
   * Call when a config from this cache failed. For an invalidation (0A000 cached plan, 26000,
   * 42P05) the cache and pg's record are repaired and the config to run once more on the same
   * client is returned, unless the statement ran inside a transaction block (the error aborted
   * it) or was already a re-run: then undefined, and the error goes to the caller. For any other
   * error: undefined, after dropping an entry the server does not hold (its Parse failed).
   */
  recover(config: QueryConfig, err: unknown): QueryConfig | undefined {
    const name = config.name;
    if (name === undefined || !name.startsWith(PREPARED_NAME_PREFIX)) return undefined;
    const text = config.text;
    const mine = this.#lru.peek(text) === name || statementName(text) === name;
    if (!mine) return undefined;
    const kind = preparedInvalidation(err);
    const session = this.#session;
    if (kind === undefined) {
      const code = (err as { code?: unknown } | null)?.code;
      // A failed Parse leaves nothing on the server; an error from pg itself (a value it could
      // not serialise: it then closes the statement) leaves pg's record wrong. Both: forget it.
      if (!session.isParsed(name) || typeof code !== 'string') {
        if (this.#lru.peek(text) === name) this.#lru.delete(text);
        session.forgetParsed(name);
      }
      return undefined;
    }
    this.#stats.recovered += 1;
    const writable = session.canWriteNow();
    // Run again under the name only while the cache tracks it (the server's copy stays bounded).
    let tracked = this.#lru.peek(text) === name;
    if (kind === 'missing') {
      // The server lost this statement, most likely all of them (DISCARD ALL, DEALLOCATE ALL,
      // another backend): make pg parse each again on next use. A Close for the others keeps
      // that from meeting 42P05 where one did survive; this one is known to be gone.
      for (const [, other] of this.#lru.entries()) {
        session.forgetParsed(other);
        if (writable && other !== name) session.closeStatement(other);
      }
      session.forgetParsed(name);
    } else {
      // 0A000 / 42P05: the server holds a statement of this name that must go before a new Parse.
      session.forgetParsed(name);
      if (writable) {
        session.closeStatement(name);
      } else if (tracked) {
        // No safe moment to Close: run unnamed; the next use meets 42P05 and closes it then.
        this.#lru.delete(text);
        tracked = false;
      }
    }
    const { name: _drop, ...unnamed } = config;
    const again: QueryConfig = tracked ? { ...config } : unnamed;
    if (reruns.has(config) || session.transactionStatus() !== 'I') return undefined;
    reruns.add(again);
    return again;
  }

  /**
   * Forgets every statement (the connection closed, or its session was reset). With `close`
   * true and the client idle, also closes them on the server.
   */
  clear(close = false): void {
    const writable = close && this.#session.canWriteNow();
    for (const [, name] of this.#lru.clear()) {
      this.#session.forgetParsed(name);
      if (writable) this.#session.closeStatement(name);
    }
  }

  /** Cached texts and names, least recently used first (a copy, for tests and diagnostics). */
  entries(): Array<{ text: string; name: string }> {
    return this.#lru.entries().map(([text, name]) => ({ text, name }));
  }

  #miss(text: string, values: readonly unknown[]): QueryConfig {
    this.#stats.misses += 1;
    const lru = this.#lru;
    if (lru.capacity === 0) return { text, values: values as unknown[] };
    if (text.length > this.#maxTextLength) {
      this.#stats.tooLong += 1;
      return { text, values: values as unknown[] };
    }
    const victim = lru.victim();
    if (victim !== undefined) {
      // Closing a statement a queued query still needs would fail that query: evict only when
      // nothing is in flight on the client.
      if (!this.#session.canWriteNow()) {
        this.#stats.uncached += 1;
        return { text, values: values as unknown[] };
      }
      lru.delete(victim[0]);
      this.#session.forgetParsed(victim[1]);
      this.#session.closeStatement(victim[1]);
      this.#stats.evictions += 1;
    }
    const name = statementName(text);
    // pg may still record this name from an earlier life of the entry; it must send Parse.
    this.#session.forgetParsed(name);
    lru.set(text, name);
    return { name, text, values: values as unknown[] };
  }
}

const caches = new WeakMap<object, StatementCache>();

/**
 * The cache of `client`, made on first use with `options` (later calls ignore them).
 * For clients the pool does not make itself; the pool keeps its own next to each connection.
 */
export function statementCacheFor(client: object, options?: StatementCacheOptions): StatementCache {
  let cache = caches.get(client);
  if (cache === undefined) {
    cache = new StatementCache(client, options);
    caches.set(client, cache);
  }
  return cache;
}

/** `statementCacheFor(client, options).config(text, values)`. */
export function preparedConfig(client: object, text: string, values: readonly unknown[] | undefined, options?: StatementCacheOptions): QueryConfig {
  return statementCacheFor(client, options).config(text, values);
}

/** `recover` on the client's cache; undefined when it has none. */
export function recoverFromPreparedError(client: object, config: QueryConfig, err: unknown): QueryConfig | undefined {
  return caches.get(client)?.recover(config, err);
}

/**
 * Runs `config` (from `cache.config`/`configFrom`) with `run`, and once more with the repaired
 * config when `recover` says the failure was an invalidation outside a transaction: the whole
 * protocol in one place, for callers that own no bookkeeping of their own (checked-out clients).
 */
export function runPrepared<R>(cache: StatementCache, config: QueryConfig, run: (config: QueryConfig) => Promise<R>): Promise<R> {
  return run(config).then(undefined, (err: unknown) => {
    const again = cache.recover(config, err);
    if (again === undefined) throw err;
    return run(again);
  });
}

/** Drops the client's cache (its connection closed). */
export function forgetPrepared(client: object): void {
  caches.get(client)?.clear(false);
  caches.delete(client);
}
