import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import knex, { type Knex } from 'knex';
import { DataTypes, Sequelize } from 'sequelize';
import pgResilient from '../../src/pg.ts';
import { startCommitHold, type CommitHold } from '../helpers/fork-pair.ts';
import { startPgServer, type PgServer } from '../helpers/pg-server.ts';

// Sequelize and Knex's pg client keep their own pools of `new Client(config)`: a COMMIT whose
// answer is lost is resolved by the standalone Client of pg-resilient/pg, a pool of one
// connection. Three COMMITs cut after the server committed: each transaction applied once, no
// error (the ORMs' own transaction APIs, as services use them).

const ClientPG = createRequire(import.meta.url)('knex/lib/dialects/postgres/index.js') as new (config: Knex.Config) => object;
class ClientPgResilient extends ClientPG {
  _driver(): unknown {
    return pgResilient;
  }
}

const CUTS = 3;

async function cutCommits(hold: CommitHold, run: (i: number) => Promise<void>): Promise<{ errors: string[]; ms: number[] }> {
  const errors: string[] = [];
  const ms: number[] = [];
  for (let i = 0; i < CUTS; i += 1) {
    const armed = hold.arm().then(() => hold.release()); // the server committed; the client hears a reset
    const t0 = Date.now();
    await run(i).catch((err: unknown) => errors.push(`${(err as { code?: string }).code ?? ''} ${(err as Error).message}`));
    ms.push(Date.now() - t0);
    await armed;
  }
  return { errors, ms };
}

describe('the standalone Client resolves a lost COMMIT (Sequelize, Knex)', () => {
  let server: PgServer;
  let hold: CommitHold;

  test('set-up', async () => {
    server = await startPgServer();
    hold = await startCommitHold({ host: server.host, port: server.port });
    await server.admin('CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL)');
  });

  test('Sequelize transactions: every cut COMMIT resolved as committed, each row once', async () => {
    const sequelize = new Sequelize({
      dialect: 'postgres', dialectModule: pgResilient, host: '127.0.0.1', port: hold.port,
      username: server.user, password: server.password, database: server.database, logging: false, pool: { max: 2, min: 0 },
    });
    const Item = sequelize.define('Item', { id: { type: DataTypes.INTEGER, primaryKey: true }, name: DataTypes.TEXT }, { tableName: 'items', timestamps: false });
    try {
      const { errors, ms } = await cutCommits(hold, (i) => sequelize.transaction(async (t) => {
        await Item.create({ id: 100 + i, name: 'sequelize' }, { transaction: t });
      }).then(() => undefined));
      const [row] = await server.admin<{ n: string }>("SELECT count(*) AS n FROM items WHERE name = 'sequelize'");
      console.log(`# Sequelize: ${CUTS} cut COMMITs, errors ${errors.length}, rows ${row!.n}, ms ${ms.join('/')}`);
      assert.deepEqual(errors, []);
      assert.equal(Number(row!.n), CUTS);
    } finally {
      await sequelize.close();
    }
  });

  test("Knex's pg client on pg-resilient/pg: every cut COMMIT resolved, each row once", async () => {
    const db = knex({
      client: ClientPgResilient as unknown as typeof Knex.Client,
      connection: { host: '127.0.0.1', port: hold.port, user: server.user, password: server.password, database: server.database },
      pool: { min: 0, max: 2 },
    });
    try {
      const { errors, ms } = await cutCommits(hold, (i) => db.transaction(async (trx) => {
        await trx('items').insert({ id: 200 + i, name: 'knex' });
      }));
      const [row] = await server.admin<{ n: string }>("SELECT count(*) AS n FROM items WHERE name = 'knex'");
      console.log(`# Knex (pg client): ${CUTS} cut COMMITs, errors ${errors.length}, rows ${row!.n}, ms ${ms.join('/')}`);
      assert.deepEqual(errors, []);
      assert.equal(Number(row!.n), CUTS);
    } finally {
      await db.destroy();
    }
  });

  test('tear-down', async () => {
    await hold.close();
    await server.destroy();
  });
});
