// MikroORM 7 (Node >= 22.17): it runs on Kysely; `driverOptions` may be a ready Kysely dialect
// (mikro-orm.io 7.0, configuration `driverOptions`; @mikro-orm/sql AbstractSqlConnection), so
// pg-resilient goes in as `new PostgresDialect({ pool })`. The raw control is MikroORM's default:
// its own pg.Pool, with the 'error' listeners it adds to the pool and to every client.
//
// MikroORM 7 depends on Kysely 0.29 (Node >= 22), while this repository pins 0.28 for Node 20; the
// dialect comes from MikroORM's own copy, as an application with one hoisted Kysely would have it.
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { EntitySchema, MikroORM } from '@mikro-orm/postgresql';
import { Pool } from '../../../src/index.ts';
import type { OrmAdapter, OrmDb, OrmSetup } from '../adapter.ts';

interface Item {
  id: number;
  name: string;
}

async function mikroKysely(): Promise<{ PostgresDialect: new (config: { pool: unknown }) => object }> {
  const fromMikro = createRequire(createRequire(import.meta.url).resolve('@mikro-orm/postgresql'));
  return import(pathToFileURL(fromMikro.resolve('kysely')).href) as Promise<{ PostgresDialect: new (config: { pool: unknown }) => object }>;
}

export const adapter: OrmAdapter = {
  async setup({ kind, conn, table, max }: OrmSetup): Promise<OrmDb> {
    const items = new EntitySchema<Item>({
      name: 'Item',
      tableName: table,
      properties: { id: { type: 'integer', primary: true }, name: { type: 'text' } },
    });
    let pool: Pool | undefined;
    let driverOptions: object | undefined;
    if (kind === 'resilient') {
      const { PostgresDialect } = await mikroKysely();
      pool = new Pool({ ...conn, max });
      driverOptions = new PostgresDialect({ pool });
    }
    const orm = await MikroORM.init({
      entities: [items],
      dbName: conn.database,
      host: conn.host,
      port: conn.port,
      user: conn.user,
      password: conn.password,
      pool: { min: 0, max },
      ...(driverOptions !== undefined ? { driverOptions } : {}),
      debug: false,
    });
    return {
      pool,
      async read(id) {
        // A fresh EntityManager per request, as in a web handler: no identity-map hits.
        const row = await orm.em.fork().findOne(items, { id });
        return row === null ? undefined : { id: row.id, name: row.name };
      },
      async upsert(id, name) {
        await orm.em.fork().upsert(items, { id, name });
      },
      close: () => orm.close(true), // ends the pool through Kysely
    };
  },
};
