// pg-resilient/pg's Client: one Session standing alone, for libraries that pool pg Clients
// themselves (Sequelize, Knex's own pool). Against a real PostgreSQL, next to pg's own Client.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import pgResilient from '../../src/pg.ts';
import { startPgServer, type PgServer } from '../helpers/pg-server.ts';

let server: PgServer;
before(async () => {
  server = await startPgServer();
});
after(async () => {
  await server.destroy();
});

test('connects, reports parameterStatus on client.connection, survives a terminated session with its SETs, calls back pg-style', async () => {
  const client = new pgResilient.Client({ ...server.config, application_name: 'standalone-ours' });
  const params: string[] = [];
  // Libraries attach this before connect (Sequelize: standard_conforming_strings).
  client.connection.on('parameterStatus', (m: { parameterName: string }) => params.push(m.parameterName));
  await client.connect();
  assert.ok(params.includes('standard_conforming_strings'));
  await client.query("SET TIME ZONE '+03:00'");
  const before = (await client.query('SELECT pg_backend_pid() AS pid')).rows[0].pid as number;
  assert.equal(await server.terminateBackends({ applicationName: 'standalone-ours' }), 1);
  await new Promise((r) => setTimeout(r, 100));
  const moved = await client.query('SELECT pg_backend_pid() AS pid, current_setting($1) AS tz', ['TimeZone']);
  assert.notEqual(moved.rows[0].pid, before, 'moved to a new connection');
  assert.equal(moved.rows[0].tz, '+03:00', 'its session setting was run again there');
  const viaCallback = await new Promise<unknown[]>((resolve) => client.query('SELECT 1 AS n', (err: unknown, res: { rows: unknown[] }) => resolve([err, res.rows])));
  assert.deepEqual(viaCallback, [null, [{ n: 1 }]]);
  let ended = false;
  client.on('end', () => {
    ended = true;
  });
  await client.end();
  assert.equal(ended, true);
  assert.equal((client as unknown as { _ending: boolean })._ending, true);
  await assert.rejects(client.query('SELECT 1'), /not queryable/);
});

test("control: pg's own Client loses the terminated session", async () => {
  const client = new pg.Client({ ...server.config, application_name: 'standalone-raw' });
  const errors: unknown[] = [];
  client.on('error', (e) => errors.push(e));
  await client.connect();
  await server.terminateBackends({ applicationName: 'standalone-raw' });
  await new Promise((r) => setTimeout(r, 100));
  await assert.rejects(client.query('SELECT 1'));
  assert.ok(errors.length >= 1);
  await client.end().catch(() => undefined);
});

test('inside a transaction a lost connection is replayed on a new one; with replay off the next statement fails typed and ROLLBACK completes', async () => {
  const client = new pgResilient.Client({ ...server.config, application_name: 'standalone-tx' });
  await client.connect();
  await client.query('CREATE TABLE IF NOT EXISTS standalone_tx (id int PRIMARY KEY)');
  await client.query('BEGIN');
  await client.query('INSERT INTO standalone_tx VALUES (1)');
  await server.terminateBackends({ applicationName: 'standalone-tx' });
  await new Promise((r) => setTimeout(r, 200));
  // Replayed (same results) on a new connection: the transaction goes on there.
  await client.query('INSERT INTO standalone_tx VALUES (2)');
  await client.query('COMMIT');
  assert.deepEqual((await client.query('SELECT id FROM standalone_tx ORDER BY id')).rows, [{ id: 1 }, { id: 2 }]);
  await client.end();

  // Replay off: the transaction cannot move; its next statement says so, typed, and ROLLBACK
  // completes (the client stays usable, as a clean session).
  const off = new pgResilient.Client({ ...server.config, application_name: 'standalone-tx-off', transactionReplay: false } as never);
  await off.connect();
  const events: string[] = [];
  off.on('error', () => events.push('error'));
  off.on('end', () => events.push('end'));
  await off.query('BEGIN');
  await off.query('INSERT INTO standalone_tx VALUES (3)');
  await server.terminateBackends({ applicationName: 'standalone-tx-off' });
  await new Promise((r) => setTimeout(r, 200));
  await assert.rejects(off.query('SELECT 1'), (e: unknown) => (e as { code?: string }).code === 'PGR_TRANSACTION_ROLLED_BACK');
  await off.query('ROLLBACK');
  assert.deepEqual((await off.query('SELECT count(*)::int AS n FROM standalone_tx WHERE id = 3')).rows, [{ n: 0 }]);
  assert.deepEqual(events, []);
  await off.end();
});
