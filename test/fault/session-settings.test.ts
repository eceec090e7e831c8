// A checked-out client's session settings through a lost connection (issue 26): the session
// runs on the new connection only the last text per setting (not every SET it ever ran),
// RESET ALL leaves nothing to run, and a session-level set_config nested in another call binds
// the session to its connection (it cannot be moved silently without the setting).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { ErrorCodes, InvalidOptionError, isPgResilientError } from '../../src/index.ts';
import { useFaultFixture } from '../helpers/fault-fixture.ts';
import { sessionPools } from '../helpers/session-pools.ts';
import { startProtocolProxy } from '../helpers/protocol-proxy.ts';

describe('session settings through a lost connection', () => {
  const f = useFaultFixture({ proxy: startProtocolProxy });
  const code = (e: unknown): string | undefined => (isPgResilientError(e) ? e.code : undefined);
  const { resilient, connect, end } = sessionPools((o) => f.via(o));
  /** Cuts every connection while the client is idle, and waits until pg has seen it. */
  const cut = async (): Promise<void> => {
    f.proxy.resetAll();
    await sleep(50);
  };

  test('2000 SETs of two settings: the new connection gets one SET each, the last values', async () => {
    const { pool } = resilient({ max: 1 });
    try {
      const client = await connect(pool);
      for (let i = 0; i < 1000; i += 1) {
        await client.query(`SET statement_timeout = ${10000 + i}`);
        await client.query(`SET app.tenant = 't${i}'`);
      }
      await cut();
      const before = f.proxy.statements.length;
      const res = await client.query("SELECT current_setting('statement_timeout') AS st, current_setting('app.tenant') AS t");
      const sent = f.proxy.statements.slice(before).filter((s) => /^SET /i.test(s));
      console.log(`# settings run again on the new connection: ${sent.length} (of 2000 run)`);
      assert.deepEqual(res.rows[0], { st: '10999ms', t: 't999' });
      assert.deepEqual(sent, ['SET statement_timeout = 10999', "SET app.tenant = 't999'"]);
      // A per-call time option is checked on a checked-out client too (issue 26).
      await assert.rejects(client.query({ text: 'SELECT 1', deadlineMs: Infinity } as never), (e) => e instanceof InvalidOptionError && e.option === 'query.deadlineMs');
      client.release();
    } finally {
      await end(pool);
    }
  });

  test('RESET ALL: nothing to run again, the session stays movable; RESET of one setting replaces its SET', async () => {
    const { pool } = resilient({ max: 1 });
    try {
      const client = await connect(pool);
      await client.query('SET statement_timeout = 12345');
      await client.query("SET app.tenant = 'x'");
      await client.query('RESET app.tenant');
      await client.query('RESET ALL');
      await client.query('SET lock_timeout = 4321');
      await client.query('RESET lock_timeout');
      await cut();
      const before = f.proxy.statements.length;
      const res = await client.query("SELECT current_setting('statement_timeout') AS st, current_setting('lock_timeout') AS lt");
      assert.deepEqual(res.rows[0], { st: '0', lt: '0' });
      assert.deepEqual(f.proxy.statements.slice(before).filter((s) => /^(SET|RESET) /i.test(s)), ['RESET lock_timeout']);
      client.release();
    } finally {
      await end(pool);
    }
  });

  test('set_config(…, false) nested in other calls binds the session: after a loss, PGR_CLIENT_BROKEN instead of a move without the setting', async () => {
    const { pool } = resilient({ max: 1 });
    try {
      const client = await connect(pool);
      await client.query("SELECT length(set_config('app.user', lower('BOB'), false)) AS n");
      await cut();
      await assert.rejects(client.query("SELECT current_setting('app.user', true) AS u"), (e) => code(e) === ErrorCodes.CLIENT_BROKEN);
      client.release();
      // A local one (is_local true) leaves nothing on the connection: the session moves on.
      const other = await connect(pool);
      await other.query('BEGIN');
      await other.query("SELECT set_config('app.user', lower('BOB'), true)");
      await other.query('COMMIT');
      await cut();
      assert.equal((await other.query('SELECT 1 AS one')).rows[0].one, 1);
      other.release();
    } finally {
      await end(pool);
    }
  });
});
