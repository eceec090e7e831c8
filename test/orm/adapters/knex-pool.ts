// Knex 3.3's `connectionPool` option: an existing pg.Pool (or tarn pool) instead of `connection`
// (new in 3.3; knex/types/index.d.ts `PgPoolLike`). Knex wraps it with the pg client's
// wrapNativePool(): `pool.connect()` per statement, `client.release(destroy)` after it. Knex does
// not end a pool it was given.
import knex from 'knex';
import { makePool, type OrmAdapter, type OrmDb, type OrmSetup } from '../adapter.ts';

export const adapter: OrmAdapter = {
  async setup({ kind, conn, table, max }: OrmSetup): Promise<OrmDb> {
    const pool = makePool(kind, conn, max);
    const db = knex({ client: 'pg', connectionPool: pool });
    return {
      pool: kind === 'resilient' ? pool : undefined,
      async read(id) {
        return (await db(table).select('id', 'name').where({ id }).first()) as { id: number; name: string } | undefined;
      },
      async upsert(id, name) {
        await db(table).insert({ id, name }).onConflict('id').merge();
      },
      async close() {
        await db.destroy();
        await pool.end();
      },
    };
  },
};
