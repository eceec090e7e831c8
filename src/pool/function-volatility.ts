import { readOnlyFunction, type FunctionName } from '../classify/function-calls.ts';
import { AttemptFailure, classificationOf } from '../policy/retry.ts';

/** Runs one catalog query (on the pool's connection) and gives its rows. */
export type CatalogQuery = (sql: string, values: unknown[]) => Promise<ReadonlyArray<Record<string, unknown>>>;

// Every overload in every schema: an unqualified name may reach any of them through search_path.
const LOOKUP = 'SELECT n.nspname AS schema, p.proname AS name, p.provolatile AS volatility'
  + ' FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace'
  + ' WHERE p.proname = ANY($1::text[])';

/** How long a verdict is trusted: a function may be replaced (CREATE OR REPLACE, a new overload). */
const VERDICT_TTL_MS = 60_000;
const MAX_VERDICTS = 1000;

const keyOf = (f: FunctionName): string => `${f.schema ?? ''}.${f.name}`;

/**
 * May the functions a read calls run twice? The server's own answer, from pg_proc: each name
 * looked up once (all its overloads, in every schema unless qualified) and the verdict kept per
 * pool for a minute (see `readOnlyFunction` for the rule: STABLE, IMMUTABLE or an allowed
 * volatile built-in; a name not found is not read-only).
 *
 * Asked only when a read was lost in flight and is about to run again, on the connection that
 * would run it: the statement's fast path pays nothing (measured in docs/retry-safety.md).
 * Concurrent callers asking for the same names (a failover retries many reads at once) share
 * one lookup.
 */
export class FunctionVolatility {
  readonly #now: () => number;
  readonly #verdicts = new Map<string, { readOnly: boolean; at: number }>();
  readonly #inFlight = new Map<string, Promise<boolean>>();

  constructor(now: () => number) {
    this.#now = now;
  }

  /** The cached answer for all of `functions`: false if any is not read-only, undefined if any is unknown. */
  known(functions: readonly FunctionName[]): boolean | undefined {
    const now = this.#now();
    let all = true;
    for (const f of functions) {
      const v = this.#verdicts.get(keyOf(f));
      if (v === undefined || now - v.at > VERDICT_TTL_MS) all = false;
      else if (!v.readOnly) return false;
    }
    return all ? true : undefined;
  }

  /** Whether every one of `functions` is read-only, looking up the unknown ones with `query`. */
  readOnly(functions: readonly FunctionName[], query: CatalogQuery): Promise<boolean> {
    const known = this.known(functions);
    if (known !== undefined) return Promise.resolve(known);
    const key = functions.map(keyOf).sort().join(',');
    let pending = this.#inFlight.get(key);
    if (pending === undefined) {
      pending = this.#lookUp(functions, query).finally(() => this.#inFlight.delete(key));
      this.#inFlight.set(key, pending);
    }
    return pending;
  }

  /**
   * `readOnly` for the retry loop (`RetryRun.confirmIdempotent`): a lookup that failed for good
   * answers no; one worth another attempt rejects as an AttemptFailure of phase 'connect' (the
   * statement itself was not sent again).
   */
  async confirm(functions: readonly FunctionName[], query: CatalogQuery): Promise<boolean> {
    try {
      return await this.readOnly(functions, query);
    } catch (err) {
      const failure = err instanceof AttemptFailure ? err.failure : err;
      if (!classificationOf(failure).transient) return false;
      throw new AttemptFailure(failure, 'connect');
    }
  }

  async #lookUp(functions: readonly FunctionName[], query: CatalogQuery): Promise<boolean> {
    const names = [...new Set(functions.map((f) => f.name))];
    const rows = (await query(LOOKUP, [names])).map((r) => ({ schema: String(r['schema']), name: String(r['name']), volatility: String(r['volatility']) }));
    const at = this.#now();
    let all = true;
    for (const f of functions) {
      const readOnly = readOnlyFunction(f, rows);
      all &&= readOnly;
      if (this.#verdicts.size >= MAX_VERDICTS) this.#verdicts.delete(this.#verdicts.keys().next().value!);
      this.#verdicts.set(keyOf(f), { readOnly, at });
    }
    return all;
  }
}
