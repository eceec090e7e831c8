// Drizzle 0.45: `drizzle(pool)` from drizzle-orm/node-postgres (orm.drizzle.team, "Drizzle <> PostgreSQL").
// Statements outside a transaction go through pool.query(config, values).
import { drizzle } from 'drizzle-orm/node-postgres';
import { integer, pgTable, text } from 'drizzle-orm/pg-core';
import { eq } from 'drizzle-orm';
import { makePool, type OrmAdapter, type OrmDb, type OrmSetup } from '../adapter.ts';

export const adapter: OrmAdapter = {
  async setup({ kind, conn, table, max }: OrmSetup): Promise<OrmDb> {
    const pool = makePool(kind, conn, max);
    const items = pgTable(table, { id: integer('id').primaryKey(), name: text('name').notNull() });
    const db = drizzle(pool);
    return {
      pool: kind === 'resilient' ? pool : undefined,
      async read(id) {
        const rows = await db.select().from(items).where(eq(items.id, id));
        return rows[0];
      },
      async upsert(id, name) {
        await db.insert(items).values({ id, name }).onConflictDoUpdate({ target: items.id, set: { name } });
      },
      close: () => pool.end(),
    };
  },
};
