// Knex 3.3 on `pg-resilient/pg`: Knex's pg client loads the driver in `_driver()` (`require('pg')`);
// a client class overriding it, as Knex's own pg-native client does, is passed as `client`
// (knexjs.org, "Configuration Options": `client` may be a Client class). Knex keeps its own pool
// (tarn) of `new driver.Client(connection)`, so only the module's Client can protect it. The raw
// control is `client: 'pg'`.
import { createRequire } from 'node:module';
import knex, { type Knex } from 'knex';
import pgResilient from '../../../src/pg.ts';
import type { OrmAdapter, OrmDb, OrmSetup } from '../adapter.ts';

// Knex ships no types for its dialect classes, and no export map: the file path is its API.
const ClientPG = createRequire(import.meta.url)('knex/lib/dialects/postgres/index.js') as new (config: Knex.Config) => object;

class ClientPgResilient extends ClientPG {
  _driver(): unknown {
    return pgResilient;
  }
}

export const adapter: OrmAdapter = {
  async setup({ kind, conn, table, max }: OrmSetup): Promise<OrmDb> {
    const db = knex({
      client: kind === 'resilient' ? (ClientPgResilient as unknown as typeof Knex.Client) : 'pg',
      connection: { ...conn },
      pool: { min: 0, max },
    });
    return {
      async read(id) {
        return (await db(table).select('id', 'name').where({ id }).first()) as { id: number; name: string } | undefined;
      },
      async upsert(id, name) {
        await db(table).insert({ id, name }).onConflict('id').merge();
      },
      close: () => db.destroy(),
    };
  },
};
