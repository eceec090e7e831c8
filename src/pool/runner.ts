import type { Client, QueryConfig, QueryResult } from 'pg';
import { classify } from '../classify/classify.ts';
import { ErrorCodes, PgResilientError } from '../errors.ts';
import type { CallEndEvent } from '../observe/events.ts';
import { Deadline } from '../policy/deadline.ts';
import { mayRepeat } from '../policy/idempotency.ts';
import { AttemptFailure, retryAfterFailure, runWithRetry, type GiveUpEvent, type RetryEvent, type RetryRun } from '../policy/retry.ts';
import type { Purpose } from '../topology/topology.ts';
import type { Bags } from './bags.ts';
import { inFlightDeadlineError, isOwnCancel, poolEndedError, queueFullError } from './call-errors.ts';
import { abandon, metaOf, settleStatement, type ConnectionMeta } from './connection.ts';
import type { Failures } from './failures.ts';
import { validateCallOptions, withoutResilienceOptions, type ResilientQueryConfig } from './query-args.ts';
import { callEnded, type PoolShared } from './shared.ts';
import type { PreparedStatements } from './statements.ts';

/**
 * Runs the pool's own statements: the fast path for `query(text, values?)`, and attempts
 * through the breaker and the retry loop for everything else and for any call whose first
 * attempt failed. Every attempt's end goes through `statementEnded`, the pool's one way of
 * reporting a statement's outcome.
 */
export class StatementRunner {
  readonly #s: PoolShared;
  readonly #bags: Bags;
  readonly #failures: Failures;

  readonly #prepared: PreparedStatements;

  constructor(shared: PoolShared, bags: Bags, failures: Failures, prepared: PreparedStatements) {
    this.#s = shared;
    this.#bags = bags;
    this.#failures = failures;
    this.#prepared = prepared;
  }

  /**
   * `query(text, values?)`, the common call, made with as little as possible on top of pg's
   * own: an idle connection taken synchronously (or a place in line), the statement sent, the
   * connection handed to the next caller. No deadline, breaker or retry machinery runs unless
   * the statement fails; then the call continues in the retry loop, exactly as a call on the
   * slow path would.
   */
  queryText(text: string, values: unknown[] | undefined): Promise<QueryResult> {
    const s = this.#s;
    if (s.ending) return Promise.reject(poolEndedError());
    // One reading of the clock serves the whole call until its result (they are ~40 ns each).
    const startedAt = s.o.clock.now();
    if (!s.breaker.healthyAt(startedAt) || s.inProgress >= s.o.max + s.o.maxWaitingClients) {
      return this.runQuery(values === undefined ? { text } : { text, values });
    }
    const bag = this.#bags.default;
    s.inProgress += 1;
    const client = bag.takeIdle(startedAt);
    if (client !== undefined) return this.#runFast(client, text, values, startedAt, startedAt);
    const deadline = new Deadline(s.o.clock, s.o.retry.maxElapsedMs, undefined, startedAt);
    return bag.obtain(deadline).then(
      (resource) => {
        let c: Client;
        try {
          c = bag.delivered(resource);
        } catch (err) {
          return this.#continueQuery(new AttemptFailure(err, 'connect'), text, values, startedAt);
        }
        return this.#runFast(c, text, values, startedAt, s.o.clock.now());
      },
      (err: unknown) => this.#continueQuery(new AttemptFailure(err, 'connect'), text, values, startedAt),
    );
  }

  #runFast(client: Client, text: string, values: unknown[] | undefined, startedAt: number, sentAt: number): Promise<QueryResult> {
    const s = this.#s;
    const meta = metaOf(client)!;
    meta.inFlight += 1;
    meta.busySince ??= sentAt;
    s.emitSafe('acquire', client);
    let pending: Promise<unknown>;
    try {
      // Prepared (named) when the connection caches it: parsed and planned once per connection.
      const named = this.#prepared.config(meta.prepared, text, values);
      pending = named === undefined ? meta.rawQuery(text, values) : this.#rerunIfInvalidated(meta, named, meta.rawQuery(named));
    } catch (err) {
      // pg reports its errors asynchronously; should one ever throw, the connection still goes back.
      pending = Promise.reject(err);
    }
    return pending.then(
      (result) => {
        const now = s.o.clock.now();
        settleStatement(meta, now);
        this.statementEnded(client, meta, false, undefined, now);
        callEnded(s);
        if (s.listening('callEnd')) s.publish('callEnd', { kind: 'query', outcome: 'ok', attempts: 1, durationMs: now - startedAt });
        return result as QueryResult;
      },
      (err: unknown) => {
        const now = s.o.clock.now();
        settleStatement(meta, now);
        this.statementEnded(client, meta, true, err, now);
        return this.#continueQuery(new AttemptFailure(err, 'query'), text, values, startedAt);
      },
    );
  }

  /** An invalidated prepared statement (0A000, 26000, 42P05) ran nothing: once more, on the same connection. */
  #rerunIfInvalidated(meta: ConnectionMeta, named: QueryConfig, pending: Promise<unknown>): Promise<unknown> {
    return pending.catch((err: unknown) => {
      const again = this.#prepared.rerun(meta.prepared, named, err);
      if (again === undefined) throw err;
      return meta.rawQuery(again);
    });
  }

  /**
   * A statement the pool ran on its own connection ended (fast path or retry loop): a success
   * may end a failover, a failure is reported (and may start one); then the connection goes back.
   */
  statementEnded(client: Client, meta: ConnectionMeta | undefined, failed: boolean, err: unknown, now: number): void {
    if (failed) this.#failures.statementFailed(client, err);
    else if (meta !== undefined) this.#s.topology.observeSuccess(meta.generation, meta.server ?? meta.target, now);
    this.#s.emitSafe('release', failed ? err as Error : undefined, client);
    this.#bags.release(client, undefined, now);
  }

  /** A fast-path call whose first attempt failed: the retry loop takes over (the call is still counted in progress). */
  async #continueQuery(first: AttemptFailure, text: string, values: unknown[] | undefined, startedAt: number): Promise<QueryResult> {
    const s = this.#s;
    const config: QueryConfig = values === undefined ? { text } : { text, values };
    const deadline = new Deadline(s.o.clock, s.o.retry.maxElapsedMs, undefined, startedAt);
    return this.tracked('query', deadline, async (count) => {
      count();
      await s.breaker.noteFailure(first);
      return retryAfterFailure(first, () => {
        count();
        return this.attempt('default', deadline, (client) => client.query(config) as Promise<QueryResult>);
      }, this.retryRun(deadline, mayRepeat(text, undefined, s.o.isIdempotent)));
    }, true);
  }

  /** Any query config: per-call options, routing, hard deadlines; attempts through the retry loop. */
  async runQuery(input: ResilientQueryConfig): Promise<QueryResult> {
    const s = this.#s;
    if (s.ending) throw poolEndedError();
    const { idempotent, readOnly, signal, deadlineMs } = input;
    // pg ignores fields it doesn't know, but ours are removed (copying only when present).
    const pgConfig = idempotent === undefined && readOnly === undefined && signal === undefined && deadlineMs === undefined
      ? input
      : withoutResilienceOptions(input);
    validateCallOptions(input);
    const purpose: Purpose = readOnly === true ? 'read' : 'default';
    const deadline = new Deadline(s.o.clock, deadlineMs ?? s.o.retry.maxElapsedMs, signal);
    const hardDeadline = deadlineMs !== undefined;
    const run = async (client: Client): Promise<QueryResult> => {
      const running = client.query(pgConfig as QueryConfig) as Promise<QueryResult>;
      if (signal === undefined && !hardDeadline) return running;
      // The statement is bounded too: on abort or deadline its connection is closed.
      return deadline.race(running, () => inFlightDeadlineError(deadline)).catch((err: unknown) => {
        if (isOwnCancel(err)) abandon(client, err);
        throw err;
      });
    };
    return this.tracked('query', deadline, (count) => runWithRetry(() => {
      count();
      return this.attempt(purpose, deadline, run);
    }, this.retryRun(deadline, mayRepeat(pgConfig.text ?? '', idempotent, s.o.isIdempotent))));
  }

  /**
   * Runs a call and publishes `callEnd` (only built when someone listens: hot path).
   * `counted`: the fast path already counted the call in progress.
   */
  async tracked<T>(kind: CallEndEvent['kind'], deadline: Deadline, run: (countAttempt: () => void) => Promise<T>, counted = false): Promise<T> {
    const s = this.#s;
    if (!counted) {
      if (s.inProgress >= s.o.max + s.o.maxWaitingClients) throw queueFullError(s.o.maxWaitingClients);
      s.inProgress += 1;
    }
    let attempts = 0;
    const count = (): void => {
      attempts += 1;
    };
    try {
      const result = await run(count);
      if (s.listening('callEnd')) s.publish('callEnd', { kind, outcome: 'ok', attempts, durationMs: deadline.elapsedMs() });
      return result;
    } catch (err) {
      if (s.listening('callEnd')) {
        const c = classify(err);
        // The server's SQLSTATE behind the error (PGR_RETRIES_EXHAUSTED after 53300 wraps it as its cause).
        let sqlstate: string | undefined;
        let e: unknown = err;
        for (let depth = 0; depth <= 4 && sqlstate === undefined && typeof e === 'object' && e !== null; depth += 1) {
          const code = (e as { code?: unknown }).code;
          if (typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) && typeof (e as { severity?: unknown }).severity === 'string') sqlstate = code;
          e = (e as { cause?: unknown }).cause;
        }
        s.publish('callEnd', { kind, outcome: 'error', attempts, durationMs: deadline.elapsedMs(), category: c.category, code: c.code, ...(sqlstate === undefined ? {} : { sqlstate }) });
      }
      throw err;
    } finally {
      callEnded(s);
    }
  }

  /** One attempt to take a connection; a failure is an AttemptFailure of phase 'connect'. */
  async acquire(purpose: Purpose, deadline: Deadline): Promise<Client> {
    try {
      return await this.#bags.for(purpose).acquire(deadline);
    } catch (err) {
      throw new AttemptFailure(err, 'connect');
    }
  }

  /** One attempt through the breaker: acquire (phase 'connect'), run, release. */
  attempt<T>(purpose: Purpose, deadline: Deadline, work: (client: Client) => Promise<T>): Promise<T> {
    return this.#s.breaker.run(async () => {
      const client = await this.acquire(purpose, deadline);
      this.#s.emitSafe('acquire', client);
      let result: T;
      try {
        result = await work(client);
      } catch (err) {
        this.statementEnded(client, metaOf(client), true, err, this.#s.o.clock.now());
        throw new AttemptFailure(err, 'query');
      }
      this.statementEnded(client, metaOf(client), false, undefined, this.#s.o.clock.now());
      return result;
    }).catch((err: unknown) => {
      // An open breaker refused the call before anything was sent.
      if (err instanceof PgResilientError && err.code === ErrorCodes.CIRCUIT_OPEN) throw new AttemptFailure(err, 'connect');
      throw err;
    });
  }

  /** The retry loop's settings for one call: its deadline, idempotency, events and wake-ups. */
  retryRun(deadline: Deadline, idempotent: boolean): RetryRun {
    const s = this.#s;
    return {
      deadline,
      idempotent,
      policy: s.o.retry,
      random: s.o.random,
      onRetry: (event: RetryEvent) => {
        s.reporter.noteRetry();
        s.publish('retry', event);
      },
      onGiveUp: (event: GiveUpEvent) => {
        s.reporter.noteGiveUp();
        s.publish('giveUp', event);
      },
      wakeUp: () => s.topology.nextPrimaryChange(),
      stopping: () => s.ending,
      minDelayFor: (failure: unknown) =>
        failure instanceof PgResilientError && failure.code === ErrorCodes.CIRCUIT_OPEN ? s.breaker.msUntilTrial() : 0,
    };
  }
}
