// Prisma 7 with @prisma/adapter-pg: `new PrismaPg(pool)`, `new PrismaClient({ adapter })`
// (prisma.io, "Database drivers", node-postgres).
//
// `prisma generate` downloads a schema engine binary, which this machine cannot reach, so there is
// no generated PrismaClient here: the test drives the adapter through Prisma's driver-adapter
// interface (`connect()`, then `queryRaw` with the SQL and argument types Prisma's query compiler
// sends for `findUnique` and a native `upsert`). Everything below the PrismaClient — which pool
// object is used, how statements reach it, which errors come back — is the adapter's own code.
import pg from 'pg';
import { PrismaPg } from '@prisma/adapter-pg';
import { makePool, NotWiredError, type OrmAdapter, type OrmDb, type OrmSetup } from '../adapter.ts';

const INT = { scalarType: 'int', dbType: 'INTEGER', arity: 'scalar' } as const;
const TEXT = { scalarType: 'string', dbType: 'TEXT', arity: 'scalar' } as const;

export const adapter: OrmAdapter = {
  async setup({ kind, conn, table, max }: OrmSetup): Promise<OrmDb> {
    const pool = makePool(kind, conn, max);
    // The adapter's types want pg.Pool; ours is a drop-in with the same surface.
    const factory = new PrismaPg(pool as pg.Pool);
    const adapter = await factory.connect();
    if (adapter.underlyingDriver() !== pool) {
      // @prisma/adapter-pg takes an existing pool only if `instanceof pg.Pool`; anything else it
      // reads as a pool config and silently opens a pg.Pool of its own (here: to the defaults).
      await adapter.dispose().catch(() => undefined);
      await pool.end();
      throw new NotWiredError('@prisma/adapter-pg did not take this pool (it is not `instanceof pg.Pool`) and built its own pg.Pool');
    }
    const t = `"public"."${table}"`;
    const readSql = `SELECT ${t}."id", ${t}."name" FROM ${t} WHERE (${t}."id" = $1 AND 1=1) LIMIT $2 OFFSET $3`;
    const upsertSql = `INSERT INTO ${t} ("id","name") VALUES ($1,$2) ON CONFLICT ("id") DO UPDATE SET "name" = $3 ` +
      `WHERE (${t}."id" = $4 AND 1=1) RETURNING ${t}."id", ${t}."name"`;
    return {
      pool: kind === 'resilient' ? pool : undefined,
      async read(id) {
        const r = await adapter.queryRaw({ sql: readSql, args: [id, 1, 0], argTypes: [INT, INT, INT] });
        const row = r.rows[0];
        return row === undefined ? undefined : { id: Number(row[0]), name: String(row[1]) };
      },
      async upsert(id, name) {
        await adapter.queryRaw({ sql: upsertSql, args: [id, name, name, id], argTypes: [INT, TEXT, TEXT, INT] });
      },
      async close() {
        await adapter.dispose();
        await pool.end(); // an external pool stays open after dispose()
      },
    };
  },
};
