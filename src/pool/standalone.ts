import { EventEmitter } from 'node:events';
import pg from 'pg';
import type { ClientConfig, QueryResult, Submittable } from 'pg';
import type { PoolOptions } from '../options.ts';
import { deliver } from './callbacks.ts';
import { Pool } from './pool.ts';
import type { Callback, QueryArgs } from './query-args.ts';
import { SESSIONS_OK, type Session } from './session.ts';

/**
 * pg's `Client` for libraries that build their own pool of clients (Sequelize, Knex's own
 * pool): one Session standing alone. It connects with the same topology rules as the Pool
 * (multi-host, target_session_attrs, Patroni, retries within the deadline) and, while clean,
 * moves to a new connection when its connection is lost, under the same rule as a checked-out
 * client. A failure it cannot hide (inside a transaction, with state bound to the connection)
 * is reported as pg reports it: 'error', and the client ends.
 *
 * Under the hood it is a pool of one connection, which it holds from `connect()` to `end()`.
 */
export class Client extends EventEmitter {
  /**
   * Stands in for pg's Connection, which exists before `connect()` in pg: libraries listen on
   * it (Sequelize: 'parameterStatus'). Messages of every connection the client uses arrive here.
   */
  readonly connection = new EventEmitter();
  readonly #options: PoolOptions;
  #pool: Pool | undefined;
  #session: Session | undefined;
  #connecting: Promise<void> | undefined;
  #ending = false;
  #ended = false;

  constructor(config?: string | (ClientConfig & PoolOptions)) {
    super();
    const given: ClientConfig & PoolOptions = typeof config === 'string' ? { connectionString: config } : { ...(config ?? {}) };
    // Read directly: callers hide it from enumeration too (Knex), so a spread loses it. Kept
    // hidden here, as pg keeps it.
    const password = typeof config === 'object' ? config.password : undefined;
    delete given.password;
    if (password !== undefined) Object.defineProperty(given, 'password', { value: password, enumerable: false, writable: true });
    this.#options = given;
  }

  get processID(): number | null {
    return this.#session?.processID ?? null;
  }

  get database(): string | undefined {
    return this.#session?.database ?? this.#options.database;
  }

  get user(): string | undefined {
    return this.#session?.user ?? this.#options.user;
  }

  get host(): string | undefined {
    return this.#session?.host ?? this.#options.host;
  }

  get port(): number | undefined {
    return this.#session?.port ?? this.#options.port;
  }

  /** pg's flags, read by libraries to tell a usable client (Sequelize's validate()). */
  get _ending(): boolean {
    return this.#ending;
  }

  get _ended(): boolean {
    return this.#ended;
  }

  escapeIdentifier(value: string): string {
    return pg.escapeIdentifier(value);
  }

  escapeLiteral(value: string): string {
    return pg.escapeLiteral(value);
  }

  getTransactionStatus(): string | null {
    return this.#session?.getTransactionStatus() ?? null;
  }

  connect(): Promise<void>;
  connect(callback: (err: Error | undefined) => void): void;
  connect(callback?: (err: Error | undefined) => void): Promise<void> | void {
    if (this.#connecting !== undefined) {
      const err = new Error('Client has already been connected. You cannot reuse a client.');
      if (callback === undefined) return Promise.reject(err);
      return void process.nextTick(callback, err);
    }
    this.#connecting = this.#open();
    if (callback === undefined) return this.#connecting;
    this.#connecting.then(() => process.nextTick(callback, undefined), (err: Error) => process.nextTick(callback, err));
  }

  async #open(): Promise<void> {
    const standIn = this.connection;
    // pg's Client, with its connection's messages also sent to the stand-in.
    class ForwardingClient extends pg.Client {
      constructor(config: ClientConfig) {
        super(config);
        const connection = (this as unknown as { connection: EventEmitter }).connection;
        connection.on('parameterStatus', (msg: unknown) => standIn.emit('parameterStatus', msg));
      }
    }
    (ForwardingClient as unknown as Record<symbol, unknown>)[SESSIONS_OK] = true;
    const pool = new Pool({ ...this.#options, password: (this.#options as { password?: string }).password, max: 1, min: 0, idleTimeoutMillis: 0, Client: ForwardingClient } as unknown as PoolOptions);
    // The connection's own failures are the client's to report (below); the pool's 'error'
    // for idle connections never applies (the one connection is always lent).
    pool.on('error', () => undefined);
    this.#pool = pool;
    try {
      const session = await pool.connect() as unknown as Session;
      this.#session = session;
      session.on('notice', (msg: unknown) => this.emit('notice', msg));
      session.on('notification', (msg: unknown) => this.emit('notification', msg));
      // Only what the session cannot hide reaches here: pg's way, 'error' then 'end'.
      session.on('error', (err: unknown) => {
        if (this.listenerCount('error') > 0) this.emit('error', err);
        void this.#close(err);
      });
    } catch (err) {
      this.#ended = true;
      await pool.end().catch(() => undefined);
      throw err;
    }
    this.emit('connect');
  }

  query<T extends Submittable>(submittable: T): T;
  query(...args: QueryArgs): Promise<QueryResult> | undefined;
  query(...args: QueryArgs): unknown {
    const session = this.#session;
    if (session !== undefined && !this.#ending) return session.query(...(args as [unknown, unknown?, unknown?]));
    const callback = args.find((a) => typeof a === 'function') as Callback<QueryResult> | undefined;
    const fail = (err: Error): undefined | Promise<never> => {
      if (callback !== undefined) return void process.nextTick(callback, err, undefined);
      return Promise.reject(err);
    };
    if (this.#ending) return fail(new Error('Client was closed and is not queryable'));
    if (this.#connecting === undefined) return fail(new Error('Client has not been connected'));
    // pg queues statements sent while it connects; so does this client.
    const queued = this.#connecting.then(() => this.#session!.query(...(args.filter((a) => typeof a !== 'function') as [unknown, unknown?])) as Promise<QueryResult>);
    if (callback === undefined) return queued;
    deliver(queued, callback as (err: Error | null, res: QueryResult) => void, null);
    return undefined;
  }

  end(): Promise<void>;
  end(callback: (err?: Error) => void): void;
  end(callback?: (err?: Error) => void): Promise<void> | void {
    const closed = this.#close(undefined);
    if (callback === undefined) return closed;
    closed.then(() => process.nextTick(callback), (err: Error) => process.nextTick(callback, err));
  }

  async #close(cause: unknown): Promise<void> {
    if (this.#ending) return;
    this.#ending = true;
    await this.#connecting?.catch(() => undefined);
    const session = this.#session;
    this.#session = undefined;
    if (session !== undefined) {
      try {
        session.release(cause !== undefined ? true : undefined);
      } catch {
        // already released
      }
    }
    await this.#pool?.end().catch(() => undefined);
    this.#ended = true;
    this.emit('end');
  }
}
