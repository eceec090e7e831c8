// Kysely 0.28: `new PostgresDialect({ pool })` (kysely.dev, "Getting started", PostgreSQL).
// Every statement runs on a client checked out with pool.connect(), reads included.
import { Kysely, PostgresDialect } from 'kysely';
import { makePool, type OrmAdapter, type OrmDb, type OrmSetup } from '../adapter.ts';

interface Db {
  [table: string]: { id: number; name: string };
}

export const adapter: OrmAdapter = {
  async setup({ kind, conn, table, max, poolOptions }: OrmSetup): Promise<OrmDb> {
    const pool = makePool(kind, conn, max, poolOptions);
    const db = new Kysely<Db>({ dialect: new PostgresDialect({ pool }) });
    return {
      pool: kind === 'resilient' ? pool : undefined,
      read: (id) => db.selectFrom(table).select(['id', 'name']).where('id', '=', id).executeTakeFirst(),
      async upsert(id, name) {
        await db.insertInto(table).values({ id, name }).onConflict((oc) => oc.column('id').doUpdateSet({ name })).execute();
      },
      close: () => db.destroy(), // ends the pool, as Kysely does
    };
  },
};
