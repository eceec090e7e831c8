import type { Client } from 'pg';
import type { Classification } from '../classify/classify.ts';
import { queueFullError } from '../errors.ts';
import { callStarted } from '../observe/publish.ts';
import type { CallEndEvent } from '../observe/types.ts';
import { CallPolicy } from '../policy/call-policy.ts';
import type { Deadline } from '../policy/deadline.ts';
import { AttemptFailure, classificationOf } from '../policy/retry.ts';
import type { Purpose } from '../topology/topology.ts';
import type { Bags } from './bags.ts';
import { entryOf, type PoolEntry } from './pool-entry.ts';
import { FunctionVolatility } from './function-volatility.ts';
import { callEnded, type PoolShared } from './shared.ts';

/** The pool's one way of reporting a statement's end (StatementRunner.statementEnded). */
export type StatementEnded = (client: Client, meta: PoolEntry | undefined, failed: boolean, err: unknown, now: number, classification?: Classification) => void;

/**
 * The pool's call policy (policy/call-policy.ts), wired to it: `retry` and `giveUp` counted and
 * published, a new primary cuts backoffs short, `end()` stops retries, and a read's functions
 * are confirmed read-only against this pool's server (pg_proc, cached per pool).
 */
export function poolCallPolicy(s: PoolShared): CallPolicy {
  const volatility = new FunctionVolatility(() => s.o.clock.now());
  return new CallPolicy({
    retry: s.o.retry,
    random: s.o.random,
    breaker: s.breaker,
    onRetry: (event) => {
      s.reporter.noteRetry();
      s.publish('retry', event);
    },
    onGiveUp: (event) => {
      s.reporter.noteGiveUp();
      s.publish('giveUp', event);
    },
    wakeUp: (wake) => s.topology.onPrimaryChange(wake),
    stopping: () => s.ending,
    readOnly: (functions, lookUp) => volatility.confirm(functions, lookUp),
  });
}

/**
 * The pieces of a call on the slow path: counting it in progress and publishing its `callEnd`
 * (`tracked`), and one attempt on one of the pool's connections through the breaker (`attempt`).
 */
export class Attempts {
  readonly #s: PoolShared;
  readonly #bags: Bags;
  readonly #policy: CallPolicy;
  readonly #ended: StatementEnded;

  constructor(shared: PoolShared, bags: Bags, policy: CallPolicy, ended: StatementEnded) {
    this.#s = shared;
    this.#bags = bags;
    this.#policy = policy;
    this.#ended = ended;
  }

  /**
   * Runs a call between `callStart` and `callEnd` (each built only when someone listens: hot
   * path). `counted`: the fast path already counted the call in progress and started it (`startedId`).
   */
  async tracked<T>(kind: CallEndEvent['kind'], deadline: Deadline, run: (countAttempt: () => void) => Promise<T>, counted = false, startedId?: number): Promise<T> {
    const s = this.#s;
    if (!counted) {
      if (s.inProgress >= s.o.max + s.o.maxWaitingClients) throw queueFullError(s.o.maxWaitingClients);
      s.inProgress += 1;
    }
    const callId = startedId ?? callStarted(s, kind);
    let attempts = 0;
    const count = (): void => {
      attempts += 1;
    };
    try {
      const result = await run(count);
      if (s.listening('callEnd')) s.publish('callEnd', { callId, kind, outcome: 'ok', attempts, durationMs: deadline.elapsedMs() });
      return result;
    } catch (err) {
      if (s.listening('callEnd')) {
        const c = classificationOf(err);
        // The server's SQLSTATE behind the error (PGR_RETRIES_EXHAUSTED after 53300 wraps it as its cause).
        let sqlstate: string | undefined;
        let e: unknown = err;
        for (let depth = 0; depth <= 4 && sqlstate === undefined && typeof e === 'object' && e !== null; depth += 1) {
          const code = (e as { code?: unknown }).code;
          if (typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) && typeof (e as { severity?: unknown }).severity === 'string') sqlstate = code;
          e = (e as { cause?: unknown }).cause;
        }
        s.publish('callEnd', { callId, kind, outcome: 'error', attempts, durationMs: deadline.elapsedMs(), category: c.category, code: c.code, ...(sqlstate === undefined ? {} : { sqlstate }) });
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
    return this.#policy.guarded(async () => {
      const client = await this.acquire(purpose, deadline);
      this.#s.publish('acquire', client);
      let result: T;
      try {
        result = await work(client);
      } catch (err) {
        const meta = entryOf(client);
        // Classified once, here: the pool's report and the retry rule read this answer.
        this.#ended(client, meta, true, err, this.#s.o.clock.now(), classificationOf(err));
        // The application ended this connection itself (`client.end()`): its choice, not an outage.
        throw new AttemptFailure(err, 'query', meta?.endedBy === 'application-end');
      }
      this.#ended(client, entryOf(client), false, undefined, this.#s.o.clock.now());
      return result;
    });
  }
}
