import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import knex, { type Knex } from 'knex';
import pg from 'pg';
import { PrismaPg } from '@prisma/adapter-pg';
import { Pool, idempotent } from '../../src/index.ts';
import pgResilient from '../../src/pg.ts';
import { startPgServer, type PgServer } from '../helpers/pg-server.ts';

// Issue 28: does the `idempotent(fn)` scope reach the statement through Prisma's adapter and
// Knex (on `pg-resilient/pg`, and on a pool via `connectionPool`)? An upsert that sleeps in the
// server is in flight when the server restarts (immediate shutdown: its session ends with a
// WARNING and a closed socket, which proves nothing about the statement; a fast shutdown's
// ErrorResponse before any CommandComplete would prove it had no effect, and then even the
// unscoped write is rightly run again: docs/what-a-fatal-proves.md). Inside
// the scope it must be retried on the restarted server and succeed; the same call outside the
// scope is the control: it must fail with PGR_STATEMENT_OUTCOME_UNKNOWN (a plain write is never
// run twice), so the test can tell a scope that reached the statement from one that did not.
//
// (PrismaClient itself cannot be generated here: see test/orm/adapters/prisma.ts. This drives
// @prisma/adapter-pg's queryRaw, which is what PrismaClient 7 calls for each statement.)

const UPSERT = 'INSERT INTO scope_kv (id, name) SELECT $1::int, $2::text FROM pg_sleep(0.8) ON CONFLICT (id) DO UPDATE SET name = excluded.name';

const ClientPG = createRequire(import.meta.url)('knex/lib/dialects/postgres/index.js') as new (config: Knex.Config) => object;
class ClientPgResilient extends ClientPG {
  _driver(): unknown {
    return pgResilient;
  }
}

interface Route {
  name: string;
  make(server: PgServer): Promise<{ upsert(id: number, name: string): Promise<unknown>; close(): Promise<void> }>;
}

const ROUTES: Route[] = [
  {
    name: 'pool.query (the reference)',
    async make(server) {
      const pool = new Pool({ ...server.config, max: 2 });
      pool.on('error', () => undefined);
      return { upsert: (id, name) => pool.query(UPSERT, [id, name]), close: () => pool.end() };
    },
  },
  {
    name: '@prisma/adapter-pg (new PrismaPg(pool)), queryRaw',
    async make(server) {
      const pool = new Pool({ ...server.config, max: 2 });
      pool.on('error', () => undefined);
      const adapter = await new PrismaPg(pool as unknown as pg.Pool).connect();
      assert.equal(adapter.underlyingDriver(), pool, 'the adapter uses our pool');
      const text = { scalarType: 'string', arity: 'scalar' } as const;
      const int = { scalarType: 'int', arity: 'scalar' } as const;
      return {
        upsert: (id, name) => adapter.queryRaw({ sql: UPSERT, args: [id, name], argTypes: [int, text] }),
        close: async () => {
          await adapter.dispose();
          await pool.end();
        },
      };
    },
  },
  {
    // PrismaClient's model calls return a PrismaPromise that starts the request only when `then`
    // is called (@prisma/client's createPrismaPromise: `then` runs the callback once, lazily).
    // Without a generated client, this is that contract in front of the real adapter.
    name: '@prisma/adapter-pg behind a lazy PrismaPromise-like thenable',
    async make(server) {
      const pool = new Pool({ ...server.config, max: 2 });
      pool.on('error', () => undefined);
      const adapter = await new PrismaPg(pool as unknown as pg.Pool).connect();
      const text = { scalarType: 'string', arity: 'scalar' } as const;
      const int = { scalarType: 'int', arity: 'scalar' } as const;
      const lazy = <T>(run: () => Promise<T>): PromiseLike<T> => {
        let started: Promise<T> | undefined;
        return { then: (onOk, onErr) => (started ??= run()).then(onOk, onErr) };
      };
      return {
        upsert: (id, name) => lazy(() => adapter.queryRaw({ sql: UPSERT, args: [id, name], argTypes: [int, text] })) as Promise<unknown>,
        close: async () => {
          await adapter.dispose();
          await pool.end();
        },
      };
    },
  },
  {
    name: 'Knex on pg-resilient/pg (its own tarn pool of our Clients)',
    async make(server) {
      const db = knex({ client: ClientPgResilient as unknown as typeof Knex.Client, connection: { ...server.config } as Knex.PgConnectionConfig, pool: { min: 0, max: 2 } });
      return { upsert: (id, name) => db.raw(UPSERT.replace('$1::int', '?::int').replace('$2::text', '?::text'), [id, name]), close: () => db.destroy() };
    },
  },
  {
    name: 'Knex with connectionPool: our Pool',
    async make(server) {
      const pool = new Pool({ ...server.config, max: 2 });
      pool.on('error', () => undefined);
      const db = knex({ client: 'pg', connectionPool: pool as unknown as pg.Pool } as Knex.Config);
      return {
        upsert: (id, name) => db.raw(UPSERT.replace('$1::int', '?::int').replace('$2::text', '?::text'), [id, name]),
        close: async () => {
          await db.destroy();
          await pool.end();
        },
      };
    },
  },
];

/** The codes on an error and its causes (ORMs wrap the pool's error). */
function codes(err: unknown): string[] {
  const out: string[] = [];
  for (let e = err, depth = 0; typeof e === 'object' && e !== null && depth < 6; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string') out.push(code);
    const message = (e as { message?: unknown }).message;
    if (typeof message === 'string' && message.includes('PGR_STATEMENT_OUTCOME_UNKNOWN')) out.push('PGR_STATEMENT_OUTCOME_UNKNOWN');
  }
  return out;
}

describe('idempotent(fn) through ORMs, across a real restart with the upsert in flight (issue 28)', () => {
  let server: PgServer;

  before(async () => {
    server = await startPgServer();
    await server.admin('CREATE TABLE scope_kv (id int PRIMARY KEY, name text NOT NULL)');
  });

  after(async () => {
    await server?.destroy();
  });

  let id = 0;
  for (const route of ROUTES) {
    for (const scoped of [true, false]) {
      test(`${route.name}: ${scoped ? 'inside idempotent(fn): retried, applied' : 'control, outside the scope: PGR_STATEMENT_OUTCOME_UNKNOWN'}`, { timeout: 30_000 }, async () => {
        const db = await route.make(server);
        try {
          id += 1;
          const name = `v${id}`;
          await db.upsert(id, 'warm-up'); // connections open before the fault
          // As an application writes it: the ORM's query object returned from fn, awaited outside.
          const call = scoped ? idempotent(() => db.upsert(id, name)) : db.upsert(id, name);
          const settled = Promise.resolve(call).then(() => 'resolved', (err: unknown) => err);
          // The statement is asleep in the server: the restart terminates its session.
          await new Promise((resolve) => setTimeout(resolve, 300));
          await server.restart('immediate');
          const got = await settled;
          if (scoped) {
            assert.equal(got, 'resolved', `the scoped upsert failed: ${String(got)}`);
            const rows = await server.admin<{ name: string }>('SELECT name FROM scope_kv WHERE id = $1', [id]);
            assert.deepEqual(rows, [{ name }]);
          } else {
            assert.notEqual(got, 'resolved', 'the unscoped upsert resolved: the restart did not catch it in flight, so this test proves nothing');
            assert.ok(codes(got).includes('PGR_STATEMENT_OUTCOME_UNKNOWN'), `expected PGR_STATEMENT_OUTCOME_UNKNOWN, got ${codes(got).join(', ')}: ${String(got)}`);
          }
        } finally {
          await db.close();
        }
      });
    }
  }
});
