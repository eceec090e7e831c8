import type { Client, PoolClient, Submittable } from 'pg';
import { Deadline } from '../policy/deadline.ts';
import type { Purpose } from '../topology/topology.ts';
import type { Bags } from './bags.ts';
import { poolEndedError } from '../errors.ts';
import { entryOf } from './pool-entry.ts';
import { sessionOf, usesSessions } from './session.ts';
import type { StatementRunner } from './runner.ts';
import type { PoolShared } from './shared.ts';

/**
 * Connections lent to application code: `pool.connect()` (what ORMs and query builders run
 * on), as Sessions that survive their connection, and submittables (streams, cursors), which
 * hold one connection until they end.
 */
export class Lender {
  readonly #s: PoolShared;
  readonly #bags: Bags;
  readonly #runner: StatementRunner;

  constructor(shared: PoolShared, bags: Bags, runner: StatementRunner) {
    this.#s = shared;
    this.#bags = bags;
    this.#runner = runner;
  }

  /** Waits (and retries failed connects) within the deadline for a connection, then lends it. */
  async checkout(options: { readOnly?: boolean; signal?: AbortSignal }): Promise<PoolClient> {
    const s = this.#s;
    if (s.ending) throw poolEndedError();
    const deadline = new Deadline(s.o.clock, s.o.retry.maxElapsedMs, options.signal);
    const purpose: Purpose = options.readOnly === true ? 'read' : 'default';
    const { attempts, policy } = this.#runner;
    const client = await attempts.tracked('connect', deadline, (count) => policy.run({ deadline, repeat: true }, async () => {
      count();
      return attempts.acquire(purpose, deadline);
    }));
    return this.lend(client);
  }

  /**
   * Hands a connection to application code as its Session (pg's PoolClient surface). With a
   * custom `Client` class the application gets that class's object itself (it may rely on its
   * type and fields), which cannot move to a new connection.
   */
  lend(client: Client): PoolClient {
    const meta = entryOf(client)!;
    this.#bags.lend(client);
    if (!usesSessions(this.#s)) {
      const pooled = client as PoolClient;
      pooled.release = (err?: Error | boolean) => {
        if (meta.state !== 'lent') throw new Error('Release called on client which has already been released to the pool.');
        this.#s.publish('release', err, pooled);
        this.#bags.release(client, err);
      };
      this.#s.publish('acquire', pooled);
      return pooled;
    }
    const session = sessionOf({ shared: this.#s, bags: this.#bags, runner: this.#runner }, client).lend();
    this.#s.publish('acquire', session);
    return session as unknown as PoolClient;
  }

  /** Streams and cursors are stateful: they run once, on one connection, without retries. */
  submit<T extends Submittable>(query: T): T {
    const deadline = new Deadline(this.#s.o.clock, this.#s.o.retry.maxElapsedMs);
    const q = query as T & { handleError?: (err: Error) => void; once?: (event: string, fn: () => void) => void };
    this.#bags.default.acquire(deadline).then((client) => {
      q.once?.('end', () => this.#bags.release(client, undefined));
      q.once?.('error', () => this.#bags.release(client, true));
      client.query(query);
    }, (err: Error) => {
      if (typeof q.handleError === 'function') q.handleError(err);
    });
    return query;
  }

  /** One attempt to take a connection to the primary for a transaction (phase 'connect' on failure). */
  attemptCheckout(deadline: Deadline): Promise<Client> {
    return this.#runner.attempts.acquire('default', deadline);
  }
}
