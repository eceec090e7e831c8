import type { Client } from 'pg';
import type { Bag } from './bag.ts';
import type { RetireRules } from './entry-state.ts';
import { entryOf, type PoolEntry } from './pool-entry.ts';

/** Pipelining's part of the retire rule: broken, failover, lifetime (uses and role wait for the release). */
const OPEN: RetireRules = { failed: true, roles: undefined, lifetime: true, maxUses: Infinity };

/**
 * Pipelining on the pool's own connections: when every connection is busy and none can be
 * opened, a `pool.query(text, values?)` is written behind the statements already in flight on
 * the least loaded connection instead of waiting for one to come back.
 *
 * Why: on a small machine the client's cost per statement is dominated by system calls and
 * wake-ups (a write, a read, a context switch on each side, per statement). Statements written
 * behind each other share them: measured here, pg with pipelining served 2.6x the PK lookups of
 * pg.Pool at 32 callers on 10 connections, at half the client CPU per statement. postgres.js
 * pipelines the same way; pg.Pool cannot.
 *
 * What keeps it safe:
 * - Only the fast path pipelines, on connections the pool itself holds (never on one lent by
 *   `connect()`), and only statements `mayPipeline` accepts, behind statements it accepts: each
 *   is its own implicit transaction (its own Sync), so an error in one skips no other, and no
 *   statement ever runs inside a transaction block another opened.
 * - At most `depth` statements per connection, and none behind a statement that has run
 *   longer than `behindSlowMs` (a slow query would hold up everything written after it).
 * - A connection that failed, dates from before a failover or is past its lifetime takes no
 *   more statements; it returns to its bag (and is closed there) once its last statement ended.
 * - Callers in line are served in order: a connection with a free slot goes to the first one if
 *   it may pipeline; a caller waiting for a connection of its own (`connect()`, a transaction)
 *   is never overtaken, and gets the connection once it is drained.
 *
 * pg does the protocol work (its `pipeline` mode, pg ≥ 8.23): the pool turns that mode on for a
 * connection while it pipelines on it and off once it is drained, so a connection lent later
 * behaves exactly as pg.Pool's. A pg without it (or a custom Client class) is not pipelined.
 */
export class Pipeline {
  readonly #depth: number;
  readonly #behindSlowMs: number;
  readonly #generation: () => number;
  /** Connections running fast-path statements now (at most `max`: a linear scan is the cheapest). */
  readonly #busy: Client[] = [];
  #pipelined = 0;

  constructor(settings: { depth: number; behindSlowMs: number }, generation: () => number) {
    this.#depth = settings.depth;
    this.#behindSlowMs = settings.behindSlowMs;
    this.#generation = generation;
  }

  /** Statements written behind others so far. */
  get pipelined(): number {
    return this.#pipelined;
  }

  /**
   * The busy connection a statement may be written behind now (the fewest statements in flight
   * or promised), or undefined. Ask only for a statement `mayPipeline` accepts, with none idle,
   * the bag saturated and nobody in line.
   */
  behind(now: number): Client | undefined {
    let best: Client | undefined;
    let bestLoad = this.#depth;
    for (const client of this.#busy) {
      const entry = entryOf(client)!;
      const load = entry.inFlight + entry.pipe!.promised;
      if (load < bestLoad && this.#open(client, entry, now)) {
        best = client;
        bestLoad = load;
      }
    }
    return best;
  }

  /**
   * A fast-path statement is about to be sent on `client`. `solo`: nothing may be written behind
   * it; `offered`: the caller was handed this connection by `ended` from the line.
   */
  starting(client: Client, entry: PoolEntry, solo: boolean, offered: boolean): void {
    let pipe = entry.pipe;
    if (pipe === undefined) {
      pipe = entry.pipe = { solo: 0, promised: 0 };
      this.#busy.push(client);
    } else if (offered && pipe.promised > 0) {
      pipe.promised -= 1;
    }
    if (solo) pipe.solo += 1;
    // Behind a statement in flight: pg must write this one now rather than queue it.
    if (entry.inFlight > 0) {
      (client as PgPipelineMode).pipeline = true;
      this.#pipelined += 1;
    }
  }

  /**
   * A fast-path statement on `client` ended (`entry.inFlight` already counts it out). True when
   * the connection is drained: the caller returns it to its bag. Otherwise it keeps running the
   * others, and its free slots go to the first callers in line while they may pipeline.
   */
  ended(client: Client, entry: PoolEntry, solo: boolean, bag: Bag, now: number): boolean {
    const pipe = entry.pipe;
    if (pipe === undefined) return true;
    if (solo) pipe.solo -= 1;
    if (entry.inFlight > 0 || pipe.promised > 0) {
      this.fill(client, entry, bag, now);
      return false;
    }
    entry.pipe = undefined;
    const busy = this.#busy;
    const i = busy.indexOf(client);
    if (i !== -1) {
      busy[i] = busy[busy.length - 1]!;
      busy.pop();
    }
    // Drained: pg's queues are empty, so leaving its pipeline mode is safe, and a connection
    // lent by connect() later runs one statement at a time, as pg.Pool's do (cursors need it).
    (client as PgPipelineMode).pipeline = false;
    return true;
  }

  /**
   * Hands the free slots of a busy connection to the first callers in line while they may
   * pipeline: when a statement starts on it (callers who queued while every connection was
   * busy would otherwise never pipeline) and when one ends (a slot freed one at a time would
   * never refill a pipeline the line has thinned).
   */
  fill(client: Client, entry: PoolEntry, bag: Bag, now: number): void {
    const pipe = entry.pipe;
    // Only a saturated pool pipelines: while connections are being opened for the callers in
    // line, each gets its own, as with pg.Pool (statements run in parallel on the server).
    if (pipe === undefined || bag.queued === 0 || !bag.saturated || !this.#open(client, entry, now)) return;
    while (entry.inFlight + pipe.promised < this.#depth && bag.offerShared(client)) pipe.promised += 1;
  }

  /** May statements be written behind those in flight on `client`? */
  #open(client: Client, entry: PoolEntry, now: number): boolean {
    return entry.pipe!.solo === 0
      // Past its lifetime it must drain, to be closed at its release (under steady load it
      // would otherwise never be released, and never replaced).
      && entry.retireReason(now, this.#generation(), OPEN) === undefined
      && (entry.busySince === undefined || now - entry.busySince <= this.#behindSlowMs)
      && supportsPipelining(client);
  }
}

interface PgPipelineMode {
  pipeline?: unknown;
  _sentQueryQueue?: unknown;
}

/** pg's pipeline mode (pg ≥ 8.23): a `pipeline` flag and a queue of statements sent but not answered. */
function supportsPipelining(client: Client): boolean {
  const c = client as unknown as PgPipelineMode;
  return typeof c.pipeline === 'boolean' && Array.isArray(c._sentQueryQueue);
}
