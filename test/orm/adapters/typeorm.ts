// TypeORM 1.1: `new DataSource({ type: 'postgres', driver: <pg module>, extra: {…} })`
// (typeorm.io, "Data Source Options", postgres: `driver`, `extra`). TypeORM builds the pool itself
// with `new driver.Pool({ …credentials, …extra })`; the raw control leaves `driver` out (pg).
// Every repository call checks a client out with pool.connect(cb) for its query runner.
import { DataSource, EntitySchema } from 'typeorm';
import pgResilient from '../../../src/pg.ts';
import type { OrmAdapter, OrmDb, OrmSetup } from '../adapter.ts';

interface Item {
  id: number;
  name: string;
}

export const adapter: OrmAdapter = {
  async setup({ kind, conn, table, max, poolOptions }: OrmSetup): Promise<OrmDb> {
    // An EntitySchema rather than a decorated class: decorators are not erasable TypeScript.
    const items = new EntitySchema<Item>({
      name: 'Item',
      tableName: table,
      columns: { id: { type: 'int', primary: true }, name: { type: 'text' } },
    });
    const ds = new DataSource({
      type: 'postgres',
      ...(kind === 'resilient' ? { driver: pgResilient } : {}),
      host: conn.host,
      port: conn.port,
      username: conn.user,
      password: conn.password,
      database: conn.database,
      entities: [items],
      extra: { max, ...(kind === 'resilient' ? poolOptions : undefined) },
      logging: false,
    });
    await ds.initialize();
    const repo = ds.getRepository(items);
    return {
      // TypeORM's pool is reachable as the driver's `master`.
      pool: kind === 'resilient' ? (ds.driver as unknown as { master: unknown }).master : undefined,
      async read(id) {
        return (await repo.findOneBy({ id })) ?? undefined;
      },
      async upsert(id, name) {
        await repo.upsert({ id, name }, ['id']);
      },
      close: () => ds.destroy(),
    };
  },
};
