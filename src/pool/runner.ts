import type { Client, QueryConfig, QueryResult } from 'pg';
import type { Classification } from '../classify/classify.ts';
import { mayPipeline } from '../classify/pipeline-safety.ts';
import { deadlineError, poolEndedError, queueFullError } from '../errors.ts';
import { callStarted } from '../observe/publish.ts';
import type { Call, CallPolicy } from '../policy/call-policy.ts';
import { Deadline } from '../policy/deadline.ts';
import { mayRepeat, type Repeatable } from '../policy/idempotency.ts';
import { AttemptFailure } from '../policy/retry.ts';
import { FailoverReads, RECOVERING_MS, type FailoverReadBounds } from '../topology/failover-reads.ts';
import type { Purpose } from '../topology/topology.ts';
import type { Bags } from './bags.ts';
import { Attempts, poolCallPolicy } from './attempts.ts';
import { isOwnCancel } from './call-errors.ts';
import { entryOf, type PoolEntry } from './pool-entry.ts';
import { Pipeline } from './pipeline.ts';
import type { Failures } from './failures.ts';
import { validateCallOptions, withoutResilienceOptions, type ResilientQueryConfig } from './query-args.ts';
import { callEnded, type PoolShared } from './shared.ts';
import { isRecognisedRead } from '../classify/read-rule.ts';
import { sendMarked, untilReplicated, type MarkedPreparing } from '../transactions/commit-tracking.ts';
import { checkDurability } from '../transactions/durability-options.ts';
import { currentLabel } from '../transactions/labels.ts';

/**
 * Runs the pool's own statements: the fast path for `query(text, values?)`, and attempts
 * through the pool's call policy (breaker and retry loop, policy/call-policy.ts; the attempts
 * themselves in attempts.ts) for everything else and for any call whose first attempt failed.
 * Every attempt's end goes through `statementEnded`, the pool's one way of reporting a
 * statement's outcome.
 */
export class StatementRunner {
  readonly #s: PoolShared;
  readonly #bags: Bags;
  readonly #failures: Failures;
  /** The `failoverReads` policy, when on: reads go to a standby in bounds while the primary is unavailable. */
  readonly #reads: FailoverReads<Client> | undefined;
  /** Pipelining on the default bag's busy connections (src/pool/pipeline.ts); undefined when off. */
  readonly #pipe: Pipeline | undefined;
  /** The pool's one composition of deadline, breaker and retry, for every caller that retries. */
  readonly policy: CallPolicy;
  /** Slow-path calls: counted and published (`tracked`), attempts on the pool's connections. */
  readonly attempts: Attempts;

  constructor(shared: PoolShared, bags: Bags, failures: Failures) {
    this.#s = shared;
    this.#bags = bags;
    this.#failures = failures;
    this.#reads = shared.o.failoverReads === undefined ? undefined : this.#standbyReads(shared.o.failoverReads);
    const topology = shared.topology;
    this.#pipe = shared.o.pipelining === undefined ? undefined : new Pipeline(shared.o.pipelining, () => topology.generation);
    this.policy = poolCallPolicy(shared);
    this.attempts = new Attempts(shared, bags, this.policy, (c, m, f, e, n, k) => this.statementEnded(c, m, f, e, n, k));
  }

  /** Statements the fast path wrote behind others on a busy connection (pipelining), so far. */
  get pipelined(): number {
    return this.#pipe?.pipelined ?? 0;
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
    // With failoverReads or lostCommits on, a write takes the path that records its WAL position
    // (read-your-writes; lost-commit detection). Off, this costs two comparisons.
    if (!s.breaker.healthyAt(startedAt) || s.inProgress >= s.o.max + s.o.maxWaitingClients || this.tracksWrite(text)) {
      return this.runQuery(values === undefined ? { text } : { text, values });
    }
    const bag = this.#bags.default;
    s.inProgress += 1;
    const callId = callStarted(s, 'query');
    const pipe = this.#pipe;
    // May this statement share a busy connection (pipelining), or must it have one to itself?
    const follows = pipe !== undefined && mayPipeline(text);
    const client = bag.takeIdle(startedAt) ?? (follows && bag.queued === 0 && bag.saturated ? pipe.behind(startedAt) : undefined);
    if (client !== undefined) return this.#runFast(client, text, values, startedAt, startedAt, !follows, false, callId);
    const deadline = new Deadline(s.o.clock, s.o.retry.maxElapsedMs, undefined, startedAt);
    return bag.obtain(deadline, follows).then(
      (resource) => {
        let c: Client;
        try {
          c = bag.delivered(resource);
        } catch (err) {
          return this.#continueQuery(new AttemptFailure(err, 'connect'), text, values, startedAt, callId);
        }
        return this.#runFast(c, text, values, startedAt, s.o.clock.now(), !follows, true, callId);
      },
      (err: unknown) => this.#continueQuery(new AttemptFailure(err, 'connect'), text, values, startedAt, callId),
    );
  }

  /**
   * Sends the statement on `client` (idle, or busy and open to pipelining) and reports its end.
   * `solo`: nothing may be pipelined behind it; `fromLine`: the caller waited in line for it.
   */
  #runFast(client: Client, text: string, values: unknown[] | undefined, startedAt: number, sentAt: number, solo: boolean, fromLine: boolean, callId: number): Promise<QueryResult> {
    const s = this.#s;
    const entry = entryOf(client)!;
    const pipe = this.#pipe;
    pipe?.starting(client, entry, solo, fromLine);
    s.publish('acquire', client);
    let pending: Promise<unknown>;
    try {
      // The entry's one statement path: counted in flight, prepared (named) when the connection
      // caches it (parsed and planned once per connection), repaired when invalidated.
      pending = entry.send(text, values, sentAt, true);
    } catch (err) {
      // pg reports its errors asynchronously; should one ever throw, the connection still goes back.
      pending = Promise.reject(err);
    }
    // Callers in line behind this statement may be written after it (pipelining).
    if (pipe !== undefined && !solo) pipe.fill(client, entry, this.#bags.default, sentAt);
    return pending.then(
      (result) => {
        const now = s.o.clock.now();
        entry.settled(now);
        this.#fastEnded(client, entry, solo, false, undefined, now);
        callEnded(s);
        if (s.listening('callEnd')) s.publish('callEnd', { callId, kind: 'query', outcome: 'ok', attempts: 1, durationMs: now - startedAt });
        return result as QueryResult;
      },
      (err: unknown) => {
        const now = s.o.clock.now();
        entry.settled(now);
        this.#fastEnded(client, entry, solo, true, err, now);
        return this.#continueQuery(new AttemptFailure(err, 'query', entry.endedBy === 'application-end'), text, values, startedAt, callId);
      },
    );
  }

  /** A fast-path statement ended: reported; its connection goes back once no other statement runs on it. */
  #fastEnded(client: Client, entry: PoolEntry, solo: boolean, failed: boolean, err: unknown, now: number): void {
    // Reported first: a failure that retires the connection also closes it to pipelining.
    this.#report(client, entry, failed, err, now);
    if (this.#pipe === undefined || this.#pipe.ended(client, entry, solo, this.#bags.default, now)) this.#bags.release(client, undefined, now);
  }

  /**
   * A statement the pool ran on its own connection ended (fast path or retry loop): a success
   * may end a failover, a failure is reported (and may start one); then the connection goes back.
   */
  statementEnded(client: Client, entry: PoolEntry | undefined, failed: boolean, err: unknown, now: number, classification?: Classification): void {
    this.#report(client, entry, failed, err, now, classification);
    this.#bags.release(client, undefined, now);
  }

  #report(client: Client, entry: PoolEntry | undefined, failed: boolean, err: unknown, now: number, classification?: Classification): void {
    if (failed) this.#failures.statementFailed(client, err, classification);
    else if (entry !== undefined) this.#s.topology.observeSuccess(entry.generation, entry.server ?? entry.target, now);
    this.#s.publish('release', failed ? err as Error : undefined, client);
  }

  /** A fast-path call whose first attempt failed: the retry loop takes over (the call is still counted in progress). */
  async #continueQuery(first: AttemptFailure, text: string, values: unknown[] | undefined, startedAt: number, callId: number): Promise<QueryResult> {
    const s = this.#s;
    const config: QueryConfig = values === undefined ? { text } : { text, values };
    const deadline = new Deadline(s.o.clock, s.o.retry.maxElapsedMs, undefined, startedAt);
    const reads = this.#reads;
    const bounds = reads?.boundsFor(text, {});
    const execute = (client: Client): Promise<QueryResult> => client.query(config) as Promise<QueryResult>;
    const run = reads !== undefined && reads.isWrite(text, {}) ? this.#noting(execute) : execute;
    return this.attempts.tracked('query', deadline, (count) => {
      count();
      return this.policy.continueAfter(first, this.#call(deadline, mayRepeat(text, undefined, s.o.isIdempotent), bounds, 'default'), () => {
        count();
        return bounds === undefined ? this.attempts.attempt('default', deadline, run) : this.#readAnywhere(bounds, 'default', deadline, run);
      });
    }, true, callId);
  }

  /** Any query config: per-call options, routing, hard deadlines; attempts through the retry loop. */
  async runQuery(input: ResilientQueryConfig): Promise<QueryResult> {
    const s = this.#s;
    if (s.ending) throw poolEndedError();
    const { idempotent, readOnly, signal, deadlineMs, failoverReads, label } = input;
    const durability = checkDurability(input.durability, 'durability', s.o.durability);
    // pg ignores fields it doesn't know, but ours are removed (copying only when present).
    const pgConfig = idempotent === undefined && readOnly === undefined && signal === undefined && deadlineMs === undefined && failoverReads === undefined && label === undefined && input.durability === undefined
      ? input
      : withoutResilienceOptions(input);
    validateCallOptions(input);
    const purpose: Purpose = readOnly === true ? 'read' : 'default';
    const reads = this.#reads;
    if (reads === undefined && failoverReads !== undefined && failoverReads !== false) {
      throw new TypeError('pg-resilient: query option `failoverReads` needs the pool option `failoverReads` (writes are tracked for read-your-writes only then)');
    }
    // While the primary is unavailable a recognised read may go to a standby within bounds.
    const bounds = reads?.boundsFor(pgConfig.text ?? '', input);
    const deadline = new Deadline(s.o.clock, deadlineMs ?? s.o.retry.maxElapsedMs, signal);
    const hardDeadline = deadlineMs !== undefined;
    const commits = s.commits;
    const marked = commits !== undefined && readOnly !== true && !isRecognisedRead(pgConfig.text ?? '');
    const execute = async (client: Client): Promise<QueryResult> => {
      const running = marked ? sendMarked(client, pgConfig as QueryConfig, commits, currentLabel(label), this.#preparing(client)) : client.query(pgConfig as QueryConfig) as Promise<QueryResult>;
      if (signal === undefined && !hardDeadline) return running;
      // The statement is bounded too: on abort or deadline its connection is closed.
      return deadline.race(running, () => deadlineError(deadline, undefined, true)).catch((err: unknown) => {
        if (isOwnCancel(err)) entryOf(client)?.abandon(err);
        throw err;
      });
    };
    const run = reads !== undefined && reads.isWrite(pgConfig.text ?? '', input) ? this.#noting(execute) : execute;
    const result = await this.attempts.tracked('query', deadline, (count) => this.policy.run(this.#call(deadline, mayRepeat(pgConfig.text ?? '', idempotent, s.o.isIdempotent), bounds, purpose), () => {
      count();
      return bounds === undefined ? this.attempts.attempt(purpose, deadline, run) : this.#readAnywhere(bounds, purpose, deadline, run);
    }));
    // Committed; with durability 'replicated', resolved only once a standby has it too.
    if (durability === 'replicated' && readOnly !== true && !isRecognisedRead(pgConfig.text ?? '')) {
      await untilReplicated(s.replication, s.o.clock, s.o.clock.now(), s.o.replicationTimeoutMs);
    }
    return result;
  }

  /**
   * Is `text` a write the failover-read policy must see (its position read after it)? The fast
   * path sends those to `runQuery` when the policy is on.
   */
  tracksWrite(text: string): boolean {
    return (this.#reads !== undefined || this.#s.commits !== undefined || this.#s.o.durability === 'replicated') && !isRecognisedRead(text);
  }

  /** A transaction (or a checked-out client's write) committed on `client`: remembered for read-your-writes. */
  async noteCommitted(client: Client): Promise<void> {
    await this.#reads?.noteWrite(async (sql) => (await client.query(sql)).rows as Array<Record<string, unknown>>);
  }

  /** The connection's prepared statements for a marked write (undefined when it has none). */
  #preparing(client: Client): MarkedPreparing | undefined {
    return entryOf(client)?.marking();
  }

  /** `execute`, then the write remembered for read-your-writes (one round trip on the same connection). */
  #noting(execute: (client: Client) => Promise<QueryResult>): (client: Client) => Promise<QueryResult> {
    return async (client) => {
      const result = await execute(client);
      await this.#reads!.noteWrite(async (sql) => (await client.query(sql)).rows as Array<Record<string, unknown>>);
      return result;
    };
  }

  /** While the primary is unavailable, a standby in bounds first; else (or none) the usual attempt. */
  async #readAnywhere(bounds: FailoverReadBounds, purpose: Purpose, deadline: Deadline, run: (client: Client) => Promise<QueryResult>): Promise<QueryResult> {
    const reads = this.#reads!;
    if (reads.primaryUnavailable() !== undefined) {
      let served: { value: QueryResult } | undefined;
      try {
        served = await reads.tryRead(bounds, deadline, run);
      } catch (err) {
        throw err instanceof AttemptFailure ? err : new AttemptFailure(err, 'query');
      }
      if (served !== undefined) return served.value;
    }
    return this.attempts.attempt(purpose, deadline, run);
  }

  /**
   * The policy, wired to the read bag (standby connections), the topology and the breaker.
   * Standby connections bypass the breaker (it guards the primary) and never end a failover.
   */
  #standbyReads(bounds: FailoverReadBounds): FailoverReads<Client> {
    const s = this.#s;
    const bags = this.#bags;
    const t = s.topology;
    return new FailoverReads<Client>(bounds, s.o.clock, {
      get failingOver() { return t.failingOver; },
      get leaderless() { return t.leaderless; },
      get recovering() { return t.completedWithin(RECOVERING_MS); },
      primaryCold: () => bags.default.available === 0,
      breakerState: () => s.breaker.state,
      knownStandbys: () => t.knownStandbys(),
      get leader() { return t.leader; },
      standbyInfo: (server) => t.standbyInfo(server),
      setAsideForReads: (server, until) => t.setAsideForReads(server, until),
    }, {
      acquire: async (deadline) => {
        const client = await bags.for('read').acquire(deadline);
        s.publish('acquire', client);
        return client;
      },
      describe: (c) => {
        const meta = entryOf(c)!;
        return { server: meta.server ?? meta.target, role: meta.role };
      },
      query: async (c, text) => (await c.query(text)).rows as Array<Record<string, unknown>>,
      release: (c, how) => {
        const failed = typeof how === 'object' ? how.failed : undefined;
        // A failure on a standby says nothing about the primary (no failover signal from it).
        if (failed !== undefined && entryOf(c)?.role === 'primary') this.#failures.statementFailed(c, failed);
        s.publish('release', failed as Error | undefined, c);
        bags.release(c, how === 'keep' ? undefined : failed ?? true);
      },
      servedByPrimary: (c) => this.statementEnded(c, entryOf(c), false, undefined, s.o.clock.now()),
      publish: (event) => {
        if (event.outcome === 'served') s.reporter.noteStandbyRead(event.stalenessMs);
        s.publish('standbyRead', event);
      },
    });
  }

  /**
   * A pool statement as a call of the policy. A read that calls functions is idempotent once they
   * are found read-only in pg_proc, looked up the way its next attempt runs (through the breaker,
   * or a standby in bounds) only when it was lost in flight and is about to run again.
   */
  #call(deadline: Deadline, repeat: Repeatable, bounds: FailoverReadBounds | undefined, purpose: Purpose): Call {
    return typeof repeat !== 'object' ? { deadline, repeat } : {
      deadline,
      repeat,
      lookUp: async (sql, values) => {
        const q = (c: Client): Promise<QueryResult> => c.query(sql, values) as Promise<QueryResult>;
        return (await (bounds === undefined ? this.attempts.attempt(purpose, deadline, q) : this.#readAnywhere(bounds, purpose, deadline, q))).rows;
      },
    };
  }
}
