// Sequelize 6: `new Sequelize({ dialect: 'postgres', dialectModule: <pg module> })`
// (sequelize.org, "Connecting to a database", dialectModule). Sequelize keeps its own pool
// (sequelize-pool) of `new dialectModule.Client(config)`: it never uses the module's Pool, so only
// the Client of `pg-resilient/pg` can protect it. The raw control leaves dialectModule out (pg).
import { DataTypes, Sequelize } from 'sequelize';
import pgResilient from '../../../src/pg.ts';
import type { OrmAdapter, OrmDb, OrmSetup } from '../adapter.ts';

export const adapter: OrmAdapter = {
  async setup({ kind, conn, table, max }: OrmSetup): Promise<OrmDb> {
    const sequelize = new Sequelize({
      dialect: 'postgres',
      ...(kind === 'resilient' ? { dialectModule: pgResilient } : {}),
      host: conn.host,
      port: conn.port,
      username: conn.user,
      password: conn.password,
      database: conn.database,
      logging: false,
      pool: { max, min: 0 },
    });
    const Item = sequelize.define('Item', {
      id: { type: DataTypes.INTEGER, primaryKey: true },
      name: { type: DataTypes.TEXT, allowNull: false },
    }, { tableName: table, timestamps: false });
    await sequelize.authenticate();
    return {
      async read(id) {
        const row = await Item.findByPk(id, { raw: true });
        return (row ?? undefined) as { id: number; name: string } | undefined;
      },
      async upsert(id, name) {
        await Item.upsert({ id, name });
      },
      close: () => sequelize.close(),
    };
  },
};
