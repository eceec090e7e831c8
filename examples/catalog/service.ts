// The example `catalog` service: a small HTTP API over PostgreSQL, as in the incident we
// reproduce (frontend → catalog → PostgreSQL). It runs on either driver so the two can be
// compared under the same load and the same fault:
//   resilient  pg-resilient's Pool (retries, breaker, failover handling, pool.transaction)
//   pg         a plain pg.Pool with the hand-written BEGIN/COMMIT most services have
//
// In-process:     const c = await startCatalog({ port: 0, driver: 'pg', connection });
// As a process:   CATALOG_DRIVER=resilient CATALOG_PORT=8081 PGHOST=127.0.0.1 PGPORT=5000 \
//                 PGUSER=postgres PGPASSWORD=postgres node dist/examples/catalog/service.js
// The process prints JSON lines on stdout: {"event":"ready",…}, {"event":"failover",…},
// {"event":"failoverReport",…}; logs go to stderr.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import type { PoolClient, QueryResult, QueryResultRow } from 'pg';
import { Pool as ResilientPool, isPgResilientError } from '../../src/index.ts';
import type { FailoverEvent, FailoverReport, PoolOptions } from '../../src/index.ts';

export type Driver = 'resilient' | 'pg';

export interface Connection {
  host: string;
  port: number;
  user: string;
  password: string;
  database: string;
}

export interface CatalogOptions {
  /** 0 picks a free port. */
  port: number;
  driver: Driver;
  connection: Connection;
  /** Defaults to 127.0.0.1: nothing in the examples listens beyond the loopback. */
  listenHost?: string;
  /** pg-resilient's retry.maxElapsedMs. Defaults to 20000: above Patroni's ttl (10 s here) plus HAProxy's detection. */
  maxElapsedMs?: number;
  /** Connections per pool, the same for both drivers. Defaults to 20. */
  poolSize?: number;
  /**
   * More options for pg-resilient's Pool, applied last: Patroni discovery (`hosts`, `patroni`),
   * `failoverReads` (reads served by a standby while the primary is away), …
   */
  poolOptions?: PoolOptions;
  onFailover?: (event: FailoverEvent) => void;
  onFailoverReport?: (report: FailoverReport) => void;
  /** Where operational log lines go. Defaults to stderr. */
  log?: (line: string) => void;
}

export interface CatalogStats {
  driver: Driver;
  requests: number;
  responsesByStatus: Record<string, number>;
  /** pg-resilient only: retries made and calls given up on. */
  retries: number;
  giveUps: number;
  failoverReports: number;
}

export interface Catalog {
  readonly port: number;
  readonly driver: Driver;
  stats(): CatalogStats;
  close(): Promise<void>;
}

/** The two operations the handlers need, over either driver. */
interface Db {
  query<R extends QueryResultRow>(text: string, values: unknown[]): Promise<QueryResult<R>>;
  transaction<T>(fn: (client: PoolClient) => Promise<T>): Promise<T>;
  ping(): Promise<void>;
  end(): Promise<void>;
}

class HttpError extends Error {
  readonly status: number;
  readonly code: string;
  constructor(status: number, code: string, message: string) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function rawPgDb(o: CatalogOptions, log: (line: string) => void): Db {
  const pool = new pg.Pool({
    ...o.connection,
    max: o.poolSize ?? 20,
    // pg's default (0) waits forever for a connection; 5 s is what services usually set.
    connectionTimeoutMillis: 5000,
  });
  // Without this listener an idle client killed by the server (57P01 at switchover) emits
  // 'error' on the pool with nobody listening, and the process crashes (node-postgres #2762).
  pool.on('error', (err) => log(`pg pool: idle client error: ${describe(err, o.connection.password)}`));
  return {
    query: (text, values) => pool.query(text, values),
    async transaction(fn) {
      const client = await pool.connect();
      // A checked-out client whose connection dies emits 'error' on itself, not on the pool;
      // unhandled, it crashes the process (node-postgres #2439: it did, in a demo run). This
      // guard is what a careful pg.Pool service has; the comparison is of errors, not crashes.
      const onError = (err: Error): void => log(`pg: checked-out client error: ${describe(err, o.connection.password)}`);
      client.on('error', onError);
      try {
        await client.query('BEGIN');
        const result = await fn(client);
        await client.query('COMMIT');
        client.removeListener('error', onError);
        client.release();
        return result;
      } catch (err) {
        // The connection may be dead; a failed ROLLBACK must not hide the real error.
        await client.query('ROLLBACK').catch(() => undefined);
        client.removeListener('error', onError);
        client.release(err instanceof Error ? err : true);
        throw err;
      }
    },
    async ping() {
      await pool.query('SELECT 1');
    },
    end: () => pool.end(),
  };
}

function resilientDb(o: CatalogOptions, log: (line: string) => void, counters: { retries: number; giveUps: number; reports: number }): Db {
  const poolSize = o.poolSize ?? 20;
  const pool = new ResilientPool({
    ...o.connection,
    max: poolSize,
    connectionTimeoutMillis: 5000,
    retry: { maxElapsedMs: o.maxElapsedMs ?? 20_000 },
    // During a failover every request waits, at 50 req/s that is hundreds of callers; the
    // default cap (8 × max) would turn the wait into PGR_QUEUE_FULL errors.
    maxWaitingClients: 5000,
    ...o.poolOptions,
  });
  pool.on('error', (err) => log(`pg-resilient: idle client error: ${describe(err, o.connection.password)}`));
  pool.on('retry', () => {
    counters.retries += 1;
  });
  pool.on('giveUp', () => {
    counters.giveUps += 1;
  });
  pool.on('failover', (event) => o.onFailover?.(event));
  pool.on('failoverReport', (report) => {
    counters.reports += 1;
    log(report.summary);
    o.onFailoverReport?.(report);
  });
  return {
    query: (text, values) => pool.query({ text, values }),
    transaction: (fn) => pool.transaction(fn),
    async ping() {
      await pool.query({ text: 'SELECT 1', deadlineMs: 2000 });
    },
    end: () => pool.end(),
  };
}

/** Starts the HTTP service; resolves once it listens. */
export async function startCatalog(o: CatalogOptions): Promise<Catalog> {
  const log = o.log ?? ((line: string) => process.stderr.write(`[catalog ${o.driver}] ${line}\n`));
  const counters = { retries: 0, giveUps: 0, reports: 0 };
  const db = o.driver === 'resilient' ? resilientDb(o, log, counters) : rawPgDb(o, log);
  const byStatus = new Map<number, number>();
  let requests = 0;

  const server = http.createServer((req, res) => {
    requests += 1;
    handle(db, req)
      .then(({ status, body }) => send(res, status, body))
      .catch((err: unknown) => {
        if (err instanceof HttpError) {
          send(res, err.status, { code: err.code, message: err.message });
          return;
        }
        const code = errorCode(err);
        const message = describe(err, o.connection.password);
        log(`${req.method} ${req.url} → 500 ${message}`);
        send(res, 500, { code, message });
      });
    res.on('finish', () => byStatus.set(res.statusCode, (byStatus.get(res.statusCode) ?? 0) + 1));
  });
  // Longer than any client's idle keep-alive, so the server never closes a socket the frontend
  // is about to reuse (that race shows up as a spurious ECONNRESET).
  server.keepAliveTimeout = 65_000;
  server.headersTimeout = 66_000;

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, o.listenHost ?? '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;

  return {
    port,
    driver: o.driver,
    stats: () => ({
      driver: o.driver,
      requests,
      responsesByStatus: Object.fromEntries([...byStatus].map(([k, v]) => [String(k), v])),
      retries: counters.retries,
      giveUps: counters.giveUps,
      failoverReports: counters.reports,
    }),
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await db.end();
    },
  };
}

interface Reply {
  status: number;
  body: unknown;
}

async function handle(db: Db, req: http.IncomingMessage): Promise<Reply> {
  const url = new URL(req.url ?? '/', 'http://catalog');
  const method = req.method ?? 'GET';
  const productMatch = /^\/products\/([^/]+)$/.exec(url.pathname);

  if (method === 'GET' && productMatch !== null) {
    const id = positiveInt(productMatch[1], 'product id');
    const { rows } = await db.query('SELECT id, name, category, price_cents, stock FROM products WHERE id = $1', [id]);
    if (rows.length === 0) throw new HttpError(404, 'NOT_FOUND', `no product ${id}`);
    return { status: 200, body: rows[0] };
  }
  if (method === 'GET' && url.pathname === '/products') {
    const category = url.searchParams.get('category');
    if (category === null || category === '') throw new HttpError(400, 'BAD_REQUEST', 'query parameter `category` is required');
    const { rows } = await db.query(
      'SELECT id, name, price_cents, stock FROM products WHERE category = $1 ORDER BY id LIMIT 50',
      [category],
    );
    return { status: 200, body: { category, products: rows } };
  }
  if (method === 'POST' && url.pathname === '/orders') {
    return placeOrder(db, await readJson(req));
  }
  if (method === 'GET' && url.pathname === '/orders/latest') {
    // The newest order: how current the data a read returns is (the failover-read test checks it
    // against the orders it saw acknowledged).
    const { rows } = await db.query<{ id: string | null }>('SELECT max(id) AS id FROM orders', []);
    return { status: 200, body: { id: rows[0]?.id === null || rows[0] === undefined ? 0 : Number(rows[0].id) } };
  }
  if (method === 'GET' && url.pathname === '/health') {
    try {
      await db.ping();
      return { status: 200, body: { status: 'ok' } };
    } catch (err) {
      return { status: 503, body: { status: 'unavailable', code: errorCode(err) } };
    }
  }
  throw new HttpError(404, 'NOT_FOUND', `no route ${method} ${url.pathname}`);
}

class OutOfStock extends Error {}

async function placeOrder(db: Db, body: unknown): Promise<Reply> {
  if (typeof body !== 'object' || body === null) throw new HttpError(400, 'BAD_REQUEST', 'expected a JSON object');
  const b = body as Record<string, unknown>;
  const productId = positiveInt(b['productId'], 'productId');
  const quantity = positiveInt(b['quantity'], 'quantity');
  const key = b['idempotencyKey'];
  if (typeof key !== 'string' || key.length === 0 || key.length > 200) {
    throw new HttpError(400, 'BAD_REQUEST', '`idempotencyKey` must be a string of 1-200 characters');
  }
  try {
    return await db.transaction(async (client) => {
      // ON CONFLICT DO NOTHING: a request repeated with the same key (frontend retry, or the
      // pool re-running the transaction) finds its order instead of ordering twice.
      const inserted = await client.query<{ id: string }>(
        `INSERT INTO orders (idempotency_key, product_id, quantity) VALUES ($1, $2, $3)
         ON CONFLICT (idempotency_key) DO NOTHING RETURNING id`,
        [key, productId, quantity],
      );
      if (inserted.rows.length === 0) {
        const { rows } = await client.query('SELECT id, product_id, quantity FROM orders WHERE idempotency_key = $1', [key]);
        return { status: 200, body: { order: rows[0], replayed: true } };
      }
      const updated = await client.query<{ stock: number }>(
        'UPDATE products SET stock = stock - $2 WHERE id = $1 AND stock >= $2 RETURNING stock',
        [productId, quantity],
      );
      if (updated.rows.length === 0) throw new OutOfStock(); // rolls the order back
      return { status: 201, body: { order: { id: inserted.rows[0]?.id, productId, quantity }, stockLeft: updated.rows[0]?.stock } };
    });
  } catch (err) {
    if (err instanceof OutOfStock) throw new HttpError(409, 'OUT_OF_STOCK', `product ${productId} has fewer than ${quantity} in stock`);
    if ((err as { code?: unknown }).code === '23503') throw new HttpError(404, 'NOT_FOUND', `no product ${productId}`);
    throw err;
  }
}

function positiveInt(value: unknown, what: string): number {
  const n = typeof value === 'string' ? Number(value) : value;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > 2 ** 31 - 1) {
    throw new HttpError(400, 'BAD_REQUEST', `${what} must be a positive integer`);
  }
  return n;
}

async function readJson(req: http.IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > 64 * 1024) throw new HttpError(413, 'TOO_LARGE', 'request body over 64 KiB');
    chunks.push(chunk as Buffer);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new HttpError(400, 'BAD_REQUEST', 'body is not valid JSON');
  }
}

function send(res: http.ServerResponse, status: number, body: unknown): void {
  if (res.headersSent) return;
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

// pg's own client errors carry no code; these names keep the error body's `code` stable for them.
const PG_CLIENT_MESSAGES: ReadonlyArray<readonly [string, string]> = [
  ['Connection terminated unexpectedly', 'PG_CONNECTION_TERMINATED'],
  ['Connection terminated due to connection timeout', 'PG_CONNECT_TIMEOUT'],
  ['Connection terminated', 'PG_CONNECTION_TERMINATED'],
  ['timeout exceeded when trying to connect', 'PG_POOL_CONNECT_TIMEOUT'],
  ['Client has encountered a connection error and is not queryable', 'PG_CLIENT_NOT_QUERYABLE'],
  ['Query read timeout', 'PG_QUERY_READ_TIMEOUT'],
];

/** A stable code for the JSON error body: SQLSTATE, PGR_…, errno, or a name for pg's own client errors. */
function errorCode(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && code !== '') return code;
  if (isPgResilientError(err)) return err.code;
  const message = err instanceof Error ? err.message : '';
  return PG_CLIENT_MESSAGES.find(([prefix]) => message.startsWith(prefix))?.[1] ?? 'INTERNAL_ERROR';
}

/** Error text for responses and logs. Drivers don't put passwords in messages; this makes sure. */
function describe(err: unknown, password: string): string {
  const text = err instanceof Error ? err.message : String(err);
  return password === '' ? text : text.split(password).join('***');
}

function connectionFromEnv(env: NodeJS.ProcessEnv): Connection {
  return {
    host: env['PGHOST'] ?? '127.0.0.1',
    port: Number(env['PGPORT'] ?? 5000),
    user: env['PGUSER'] ?? 'postgres',
    password: env['PGPASSWORD'] ?? 'postgres',
    database: env['PGDATABASE'] ?? 'postgres',
  };
}

/**
 * pg-resilient's topology options from the environment: CATALOG_HOSTS (host:port,…) and
 * CATALOG_PATRONI_URLS (http://…,…) for Patroni discovery, CATALOG_FAILOVER_READS_MS for
 * `failoverReads: { maxStalenessMs }`.
 */
function poolOptionsFromEnv(env: NodeJS.ProcessEnv): PoolOptions {
  const list = (name: string): string[] | undefined => env[name]?.split(',').map((x) => x.trim()).filter((x) => x !== '');
  const hosts = list('CATALOG_HOSTS');
  const urls = list('CATALOG_PATRONI_URLS');
  const staleness = env['CATALOG_FAILOVER_READS_MS'];
  return {
    ...(hosts === undefined ? {} : { hosts }),
    ...(urls === undefined ? {} : { patroni: { urls } }),
    ...(staleness === undefined ? {} : { failoverReads: { maxStalenessMs: Number(staleness) } }),
  };
}

async function main(): Promise<void> {
  const driver = process.env['CATALOG_DRIVER'] ?? 'resilient';
  if (driver !== 'resilient' && driver !== 'pg') throw new Error(`CATALOG_DRIVER must be resilient or pg, got ${driver}`);
  const emit = (obj: Record<string, unknown>): void => void process.stdout.write(`${JSON.stringify({ ...obj, at: Date.now() })}\n`);
  const maxElapsed = process.env['CATALOG_MAX_ELAPSED_MS'];
  const catalog = await startCatalog({
    port: Number(process.env['CATALOG_PORT'] ?? 8080),
    driver,
    connection: connectionFromEnv(process.env),
    ...(maxElapsed !== undefined ? { maxElapsedMs: Number(maxElapsed) } : {}),
    poolOptions: poolOptionsFromEnv(process.env),
    onFailover: (event) => emit({ event: 'failover', failover: event }),
    onFailoverReport: (report) => emit({ event: 'failoverReport', report }),
  });
  emit({ event: 'ready', driver, port: catalog.port, pid: process.pid });
  // The parent asks for counters on stdin ("stats\n") so it needs no extra HTTP route.
  process.stdin.setEncoding('utf8');
  process.stdin.on('data', (chunk: string) => {
    if (chunk.includes('stats')) emit({ event: 'stats', stats: catalog.stats() });
  });
  const stop = (): void => {
    catalog.close().then(() => process.exit(0), () => process.exit(1));
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  main().catch((err: unknown) => {
    process.stderr.write(`catalog: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
