import type { Client, QueryConfig } from 'pg';
import type { Logger } from '../observe/logger.ts';
import type { Clock } from '../policy/clock.ts';
import { classify } from '../classify/classify.ts';
import { namedStatementRecovery } from '../classify/retry-safety.ts';
import { PREPARED_NAME_PREFIX, StatementCache, preparedInvalidation } from './cache.ts';

/**
 * Prepared statements for one pool: each connection's StatementCache (src/prepared/), and the
 * pool-wide switch that turns them off behind a transaction-mode pooler.
 *
 * Behind PgBouncer < 1.21 in transaction mode (or `max_prepared_statements = 0`) consecutive
 * statements of one client land on different server connections, so a statement prepared on
 * one is missing (26000) on the next. Every such miss is repaired and the statement run again,
 * so no error reaches the caller, but each costs a round trip. When misses keep coming
 * (`MISSES_TO_TURN_OFF` within `MISS_WINDOW_MS`, far more than DISCARD ALL or a failover
 * produce), the pool stops preparing and says so once in its log. `prepare: false` does the
 * same from the start.
 */
export class PreparedStatements {
  readonly #size: number;
  readonly #clock: Clock;
  readonly #logger: Logger;
  #off: boolean;
  #misses: number[] = [];
  /** Names chosen by the application are dropped: the pool is behind a transaction pooler. */
  #namesOff = false;

  constructor(size: number, clock: Clock, logger: Logger) {
    this.#size = size;
    this.#clock = clock;
    this.#logger = logger;
    this.#off = size === 0;
  }

  get enabled(): boolean {
    return !this.#off;
  }

  /** A cache for a new pg Client, or none (off, or a Client class without pg's internals). */
  cacheFor(client: Client): StatementCache | undefined {
    if (this.#off) return undefined;
    try {
      return new StatementCache(client, { max: this.#size });
    } catch {
      return undefined;
    }
  }

  /** pg's config for a statement on a connection with `cache`: named when cached. */
  config(cache: StatementCache | undefined, text: string, values: unknown[] | undefined): QueryConfig | undefined {
    if (cache === undefined || this.#off || values === undefined || values.length === 0) return undefined;
    const cfg = cache.config(text, values);
    return cfg.name === undefined ? undefined : cfg;
  }

  configFrom(cache: StatementCache | undefined, input: QueryConfig): QueryConfig {
    if (cache === undefined || this.#off) return input;
    return cache.configFrom(input);
  }

  /**
   * A named statement failed: the config to run once more on the same connection when the
   * failure was an invalidation that proves nothing ran (0A000 cached plan, 26000, 42P05).
   */
  #rerun(cache: StatementCache | undefined, config: QueryConfig, err: unknown): QueryConfig | undefined {
    if (cache === undefined || config.name === undefined) return undefined;
    const kind = preparedInvalidation(err);
    // 26000 and 42P05 behind a transaction pooler: the statement met another server session.
    if (kind === 'missing' || kind === 'exists') this.#noteMiss();
    return cache.recover(config, err);
  }

  /** `query({ name, text })` with a name of the application's: as given, or unnamed behind a transaction pooler. */
  applicationNamed(config: QueryConfig): QueryConfig {
    if (!this.#namesOff) return config;
    const { name: _dropped, ...unnamed } = config;
    return unnamed;
  }

  /**
   * A statement named by the application failed with 26000/42P05 outside a transaction: behind
   * a transaction pooler another client's statement of that name may sit on the server
   * connection (a Bind meeting it runs the wrong text without error), so from now on this pool
   * sends such statements unnamed, and this one runs again unnamed (nothing ran).
   */
  #rerunApplicationNamed(config: QueryConfig, err: unknown, inTransaction: boolean): QueryConfig | undefined {
    if (config.name === undefined || config.name.startsWith(PREPARED_NAME_PREFIX)) return undefined;
    if (namedStatementRecovery({ classification: classify(err), nameFromText: false, inTransaction }) !== 'send-unnamed') return undefined;
    if (!this.#namesOff) {
      this.#namesOff = true;
      this.#logger.warn({ code: (err as { code?: string }).code }, 'pg-resilient: a statement named by the application met another server session (a transaction-mode pooler?); this pool sends such statements unnamed from now on');
    }
    return this.applicationNamed(config);
  }

  /**
   * After a named statement failed: the config to run once more, or undefined. The cache's own
   * repair first (named again, once); if that is spent or the name is not the cache's, and the
   * failure was an invalidation outside a transaction, unnamed (a pooler may keep handing the
   * statement to server connections that lack it, or hold another of its name); an unnamed
   * statement is never repaired. Application-named statements follow `#rerunApplicationNamed`.
   */
  repair(cache: StatementCache | undefined, config: QueryConfig, err: unknown, inTransaction: boolean): QueryConfig | undefined {
    const name = config.name;
    if (name === undefined || inTransaction) return undefined;
    if (!name.startsWith(PREPARED_NAME_PREFIX)) return this.#rerunApplicationNamed(config, err, inTransaction);
    const again = this.#rerun(cache, config, err);
    if (again !== undefined) return again;
    if (preparedInvalidation(err) === undefined) return undefined;
    const { name: _dropped, ...unnamed } = config;
    return unnamed;
  }

  #noteMiss(): void {
    const now = this.#clock.now();
    this.#misses = this.#misses.filter((t) => now - t < MISS_WINDOW_MS);
    this.#misses.push(now);
    if (!this.#off && this.#misses.length >= MISSES_TO_TURN_OFF) {
      this.#off = true;
      this.#namesOff = true;
      this.#logger.warn({ misses: this.#misses.length, windowMs: MISS_WINDOW_MS },
        'pg-resilient: prepared statements keep disappearing between statements (a transaction-mode pooler such as PgBouncer < 1.21?); this pool stops preparing them. Set prepare: false to skip this detection.');
    }
  }
}

export const MISSES_TO_TURN_OFF = 5;
export const MISS_WINDOW_MS = 10_000;
