// The Node clients the overhead benchmark compares, each reduced to "run this workload once".
import { Kysely, PostgresDialect } from 'kysely';
import { pathToFileURL } from 'node:url';
import pg from 'pg';
import postgres from 'postgres';
import { Pool as ResilientPool } from '../../src/index.ts';
import type { PoolOptions } from '../../src/index.ts';
import { runPrepared, statementCacheFor } from '../../src/prepared/cache.ts';
import type { PgServer } from '../../test/helpers/pg-server.ts';
import { STATEMENTS, type Workload } from './workloads.ts';

export const POOL_MAX = 10;

export type Lib =
  | 'pg'
  | 'pg+name'
  | 'pg+cache'
  | 'pg-resilient'
  | 'pg-resilient+prepare'
  | 'pg-resilient+lostCommits'
  | 'postgres.js'
  | 'kysely/pg'
  | 'kysely/pg-resilient+prepare'
  | 'baseline+prepare';

export const LIBS: readonly Lib[] = ['pg', 'pg+name', 'pg+cache', 'pg-resilient', 'pg-resilient+prepare', 'pg-resilient+lostCommits', 'postgres.js', 'kysely/pg', 'kysely/pg-resilient+prepare', 'baseline+prepare'];

/**
 * `baseline+prepare`: another build of pg-resilient (an earlier commit's `dist/src/index.js`,
 * named by PGR_BASELINE), run beside this one in the same process with rounds interleaved: a
 * before/after comparison of a change in one sitting, on the same server.
 */
const BASELINE = process.env.PGR_BASELINE;
const BaselinePool: (new (options: PoolOptions) => ResilientPool) | undefined = BASELINE === undefined || BASELINE === ''
  ? undefined
  : ((await import(pathToFileURL(BASELINE).href)) as { Pool: new (options: PoolOptions) => ResilientPool }).Pool;

/** Which workloads a library runs (Kysely: the PK lookup, as a query builder writes it). */
export function runsWorkload(lib: Lib, w: Workload): boolean {
  return lib.startsWith('kysely') ? w === 'pk' : true;
}

export interface Runner {
  run(r: number): Promise<unknown>;
  end(): Promise<void>;
}

interface BenchDb {
  bench_items: { id: number; name: string; price: number; category_id: number };
}

type PrepareOption = PoolOptions & { prepare?: boolean };

function connOf(srv: PgServer): { host: string; port: number; user: string; password: string; database: string } {
  return { host: srv.host, port: srv.port, user: srv.user, password: srv.password, database: srv.database };
}

/**
 * pg-resilient with its `prepare` option (issue 17). Until the pool knows the option it ignores
 * it, and both pg-resilient rows run unnamed: `resilientPrepares()` tells which is the case.
 */
function resilientPool(srv: PgServer, prepare: boolean, max = POOL_MAX, extra: PoolOptions = {}): ResilientPool {
  const options: PrepareOption = { ...connOf(srv), ...extra, max, prepare };
  const pool = new ResilientPool(options);
  pool.on('error', () => undefined);
  return pool;
}

/** True when pg-resilient with `prepare: true` leaves a prepared statement on its connection. */
export async function resilientPrepares(srv: PgServer): Promise<boolean> {
  const pool = resilientPool(srv, true, 1);
  try {
    const pk = STATEMENTS.pk;
    for (let i = 0; i < 3; i++) await pool.query(pk.text, pk.values(i));
    const client = await pool.connect();
    try {
      const r = await client.query<{ n: number }>('SELECT count(*)::int AS n FROM pg_prepared_statements');
      return (r.rows[0]?.n ?? 0) > 0;
    } finally {
      client.release();
    }
  } finally {
    await pool.end();
  }
}

export function makeRunner(lib: Lib, workload: Workload, srv: PgServer): Runner {
  const conn = connOf(srv);
  const st = STATEMENTS[workload];
  switch (lib) {
    case 'pg': {
      const pool = new pg.Pool({ ...conn, max: POOL_MAX });
      pool.on('error', () => undefined);
      return { run: (r) => pool.query(st.text, st.values(r)), end: () => pool.end() };
    }
    case 'pg+name': {
      // Named by hand, as the pg docs show: pg parses once per connection; no bound, no recovery.
      const pool = new pg.Pool({ ...conn, max: POOL_MAX });
      pool.on('error', () => undefined);
      const name = workload === 'select1' ? undefined : `bench_${workload}`;
      return { run: (r) => pool.query({ name, text: st.text, values: st.values(r) }), end: () => pool.end() };
    }
    case 'pg+cache': {
      // The cache applied by hand on raw pg.Pool: what the pool's wiring will do, minus the pool.
      const pool = new pg.Pool({ ...conn, max: POOL_MAX });
      pool.on('error', () => undefined);
      return {
        run: async (r) => {
          const client = await pool.connect();
          try {
            const cache = statementCacheFor(client);
            return await runPrepared(cache, cache.config(st.text, st.values(r)), (c) => client.query(c));
          } finally {
            client.release();
          }
        },
        end: () => pool.end(),
      };
    }
    case 'pg-resilient':
    case 'pg-resilient+prepare': {
      const pool = resilientPool(srv, lib === 'pg-resilient+prepare');
      return { run: (r) => pool.query(st.text, st.values(r)), end: () => pool.end() };
    }
    case 'pg-resilient+lostCommits': {
      // Lost-commit detection on: every write carries its id and WAL position (issue 25's cost).
      const pool = resilientPool(srv, true, POOL_MAX, { lostCommits: true });
      return { run: (r) => pool.query(st.text, st.values(r)), end: () => pool.end() };
    }
    case 'baseline+prepare': {
      if (BaselinePool === undefined) throw new Error('bench: baseline+prepare needs PGR_BASELINE=<path to an earlier build\'s dist/src/index.js>');
      const options: PrepareOption = { ...conn, max: POOL_MAX, prepare: true };
      const pool = new BaselinePool(options);
      pool.on('error', () => undefined);
      return { run: (r) => pool.query(st.text, st.values(r)), end: () => pool.end() };
    }
    case 'postgres.js':
      return postgresJs(workload, srv);
    case 'kysely/pg':
    case 'kysely/pg-resilient+prepare': {
      let pool: pg.Pool | ResilientPool;
      if (lib === 'kysely/pg') {
        const raw = new pg.Pool({ ...conn, max: POOL_MAX });
        raw.on('error', () => undefined);
        pool = raw;
      } else {
        pool = resilientPool(srv, true);
      }
      const db = new Kysely<BenchDb>({ dialect: new PostgresDialect({ pool }) });
      return {
        run: (r) => db.selectFrom('bench_items').select(['id', 'name', 'price']).where('id', '=', st.values(r)![0] as number).execute(),
        end: () => db.destroy(),
      };
    }
  }
}

/** postgres.js as its users write it: tagged templates, prepared statements (its default). */
function postgresJs(workload: Workload, srv: PgServer): Runner {
  const sql = postgres({ ...connOf(srv), pass: srv.password, max: POOL_MAX, onnotice: () => undefined });
  const st = STATEMENTS[workload];
  const end = (): Promise<void> => sql.end({ timeout: 5 });
  switch (workload) {
    case 'select1':
      return { run: () => sql`SELECT 1`, end };
    case 'pk':
      return { run: (r) => sql`SELECT id, name, price FROM bench_items WHERE id = ${st.values(r)![0] as number}`, end };
    case 'join':
      return {
        run: (r) => {
          const [id, cat] = st.values(r) as [number, number];
          return sql`SELECT i.id, i.name, i.price, c.name AS category FROM bench_items i JOIN bench_categories c ON c.id = i.category_id WHERE i.id = ${id} AND c.id = ${cat}`;
        },
        end,
      };
    case 'range':
      return {
        run: (r) => {
          const [lo, hi] = st.values(r) as [number, number];
          return sql`SELECT id, name, price FROM bench_items WHERE id >= ${lo} AND id < ${hi} ORDER BY id`;
        },
        end,
      };
    case 'insert':
      return {
        run: (r) => {
          const [item, qty] = st.values(r) as [number, number];
          return sql`INSERT INTO bench_events (item_id, qty) VALUES (${item}, ${qty})`;
        },
        end,
      };
  }
}
