import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { inspect } from 'node:util';
import { Pool } from '../../src/index.ts';
import { startPgServer, type PgServer } from '../helpers/pg-server.ts';

const PASSWORD = 'Sup3r-Secret-Pw-4711';

describe('TLS and credentials', () => {
  let server: PgServer;
  before(async () => {
    server = await startPgServer({ ssl: true, password: PASSWORD });
  });
  after(async () => {
    await server.destroy();
  });

  test('TLS with a self-signed certificate: verified with the CA, refused without it (not retried)', async () => {
    const pool = new Pool({ ...server.config, ssl: { ca: server.caCertPem, rejectUnauthorized: true } });
    const bare = new Pool({ ...server.config, ssl: { rejectUnauthorized: true }, retry: { maxElapsedMs: 10000 } });
    try {
      const { rows } = await pool.query('SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()');
      assert.equal(rows[0].ssl, true);
      const started = Date.now();
      await assert.rejects(bare.query('SELECT 1'), (e: { code?: string }) => e.code === 'DEPTH_ZERO_SELF_SIGNED_CERT');
      assert.ok(Date.now() - started < 2000, 'a certificate problem is not worth waiting for');
    } finally {
      await pool.end();
      await bare.end();
    }
  });

  test('the password never appears in errors, events, log lines or the pool object', async () => {
    const captured: string[] = [];
    const record = (...args: unknown[]): void => {
      captured.push(args.map((a) => inspect(a, { depth: 8, showHidden: false })).join(' '));
    };
    const logger = { debug: record, info: record, warn: record, error: record };
    const url = `postgres://postgres:${encodeURIComponent(PASSWORD)}@127.0.0.1:${server.port}/postgres`;
    const pool = new Pool({ connectionString: url, ssl: { ca: server.caCertPem }, logger, retry: { maxElapsedMs: 3000 } });
    for (const e of ['retry', 'giveUp', 'failover', 'connectionRetired', 'failoverReport', 'error', 'breaker'] as const) {
      pool.on(e, (...args: unknown[]) => record(e, ...args));
    }
    try {
      await pool.query('SELECT 1');
      // Failures of every kind: a restart under load, a refused server, a bad statement.
      const load = Array.from({ length: 4 }, async () => {
        for (let i = 0; i < 40; i += 1) {
          await pool.query('SELECT 1').catch((err: unknown) => record('query error', err));
          await new Promise((r) => setTimeout(r, 25));
        }
      });
      await server.restart('fast');
      await Promise.all(load);
      await pool.query('SELEC 1').catch((err: unknown) => record('syntax', err));
      await server.stop('fast');
      await pool.query('SELECT 1').catch((err: unknown) => record('down', err));
      await server.start();
      record('pool', pool);
      record('json', JSON.stringify(pool.options));
      const text = captured.join('\n');
      assert.ok(captured.length > 5, 'failures were recorded');
      assert.ok(text.includes('PGR_RETRIES_EXHAUSTED') || text.includes('ECONNREFUSED'), 'the outage was seen');
      assert.ok(!text.includes(PASSWORD), 'the password leaked');
      assert.ok(!text.includes(encodeURIComponent(PASSWORD)), 'the encoded password leaked');
      console.log(`# credentials: ${captured.length} errors/events/log lines checked, password absent`);
    } finally {
      await pool.end();
    }
  });
});
