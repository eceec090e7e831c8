import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { Pool } from '../../src/index.ts';
import { startPgServer, type PgServer } from '../helpers/pg-server.ts';

// The pool's own error handlers (issue 28): graphile-worker warns "Your pool doesn't have all of
// the error handlers!" for a pool without an 'error' and a 'connect' listener (its lib.js
// assertPool: `pgPool.listeners('error')`, `pgPool.listeners('connect')`), because with pg.Pool an
// idle or checked-out client's 'error' with no listener crashes the process. pg-resilient's
// handlers are real listeners that log those errors (src/pool/error-handlers.ts); these tests
// check they do their work, and that graphile-worker finds them.

const NODE_MAJOR = Number(process.versions.node.split('.')[0]);

describe('the pool\'s own error handlers', () => {
  let server: PgServer;

  before(async () => {
    server = await startPgServer();
  });

  after(async () => {
    await server?.destroy();
  });

  test('an idle connection killed by the server: logged by the pool\'s handler, no crash, no listener of the application needed', async () => {
    const lines: string[] = [];
    const app = 'pgr-error-handlers-idle';
    const pool = new Pool({ ...server.config, application_name: app, log: (msg: unknown) => lines.push(String(msg)) });
    try {
      assert.equal(pool.listenerCount('error'), 1);
      assert.equal(pool.listenerCount('connect'), 1);
      await pool.query('SELECT 1');
      await server.terminateBackends({ applicationName: app });
      for (let i = 0; i < 100 && !lines.some((l) => l.includes('pool error event')); i++) await new Promise((r) => setTimeout(r, 20));
      assert.ok(lines.some((l) => l.includes('pool error event')), `the handler logged nothing: ${lines.join(' | ')}`);
      assert.deepEqual((await pool.query('SELECT 1 AS n')).rows, [{ n: 1 }]);
    } finally {
      await pool.end();
    }
  });

  test('a checked-out client bound to its connection (LISTEN) whose connection dies: the client\'s error is logged by the pool\'s handler', async () => {
    const lines: string[] = [];
    const app = 'pgr-error-handlers-lent';
    const pool = new Pool({ ...server.config, application_name: app, log: (msg: unknown) => lines.push(String(msg)) });
    try {
      const client = await pool.connect();
      await client.query('LISTEN pgr_error_handlers');
      await server.terminateBackends({ applicationName: app });
      for (let i = 0; i < 100 && !lines.some((l) => l.includes('checked-out client reported an error')); i++) await new Promise((r) => setTimeout(r, 20));
      assert.ok(lines.some((l) => l.includes('checked-out client reported an error')), `the handler logged nothing: ${lines.join(' | ')}`);
      client.release(true);
    } finally {
      await pool.end();
    }
  });

  const skip = NODE_MAJOR < 22 ? `graphile-worker 0.18 needs Node >= 22 (this is Node ${process.versions.node}); it runs in the Node 24 pass` : false;
  test('graphile-worker finds the handlers: no warning, and a job runs on pg-resilient\'s Pool (raw pg.Pool as the control)', { skip, timeout: 60_000 }, async () => {
    const { runMigrations, makeWorkerUtils, runOnce } = await import('graphile-worker');
    const warnings = async (pool: pg.Pool): Promise<string[]> => {
      const seen: string[] = [];
      const warn = console.warn;
      console.warn = (...args: unknown[]) => void seen.push(args.map(String).join(' '));
      try {
        await runMigrations({ pgPool: pool });
      } finally {
        console.warn = warn;
      }
      return seen.filter((w) => w.includes('error handlers'));
    };
    const raw = new pg.Pool(server.config);
    raw.on('error', () => undefined); // as applications do; graphile-worker still wants a 'connect' one
    try {
      assert.equal((await warnings(raw)).length, 1, 'graphile-worker warns for a raw pg.Pool without a connect listener: the control');
    } finally {
      await raw.end();
    }
    const pool = new Pool({ ...server.config });
    try {
      assert.deepEqual(await warnings(pool as unknown as pg.Pool), []);
      const utils = await makeWorkerUtils({ pgPool: pool as unknown as pg.Pool });
      const done: unknown[] = [];
      await utils.addJob('note', { n: 1 });
      await runOnce({ pgPool: pool as unknown as pg.Pool, taskList: { note: async (payload) => void done.push(payload) } });
      await utils.release();
      assert.deepEqual(done, [{ n: 1 }]);
    } finally {
      await pool.end();
    }
  });
});
