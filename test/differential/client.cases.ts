import assert from 'node:assert/strict';
import { inspect } from 'node:util';
import { describe } from 'node:test';
import pg from 'pg';
import { Trace, differential, outcome, settledAs } from '../helpers/differential.ts';

// The checked-out client's surface (issue 28): pg.Client's public properties as a library reads
// them, the pool options that reach each client (`binary`, `pipeline`), an 'error' emitted on a
// released client, a connection the application ends under a running pool.query, and the log
// line pg-pool writes for maxUses. Found by running node-postgres's pg-pool suite on this Pool.

/** pg.Client's data properties (pg 8.23.1, lib/client.js), as a library may read them off a checked-out client. */
const VALUES = ['binary', 'pipeline', 'host', 'port', 'database', 'user', 'ssl', 'sslNegotiation', 'replication', 'readyForQuery',
  'hasExecuted', 'enableChannelBinding', 'scramMaxIterations', '_ending', '_ended', '_connecting', '_connected', '_queryable'] as const;
const TYPES = ['processID', 'secretKey', 'connectionParameters', 'connection'] as const;

export function clientCases(): void {
  describe('differential: the checked-out client', () => {
    for (const config of [{}, { binary: true, pipeline: true }] as const) {
      differential(`pg.Client's properties read off a checked-out client (${JSON.stringify(config)})`, async (s) => {
        const pool = s.pool(config as pg.PoolConfig);
        const c = await pool.connect();
        await c.query('SELECT 1');
        const client = c as unknown as Record<string, unknown>;
        const values = Object.fromEntries(VALUES.map((name) => [name, client[name]]));
        const types = Object.fromEntries(TYPES.map((name) => [name, client[name] === null ? 'null' : typeof client[name]]));
        const params = client['connectionParameters'] as { user?: unknown; database?: unknown; port?: unknown };
        const password = {
          readable: client['password'] === s.server.password,
          enumerable: Object.keys(c).includes('password'),
          inInspect: inspect(c, { depth: 2 }).includes(s.server.password),
        };
        const sameAsPg = { processID: client['processID'] === (await c.query('SELECT pg_backend_pid() AS pid')).rows[0].pid };
        c.release();
        return { values, types, connectionParameters: { user: params.user, database: params.database, port: params.port }, password, sameAsPg };
      }, {
        expectPg: (o) => {
          assert.equal(o.values.binary, 'binary' in config);
          assert.equal(o.values.pipeline, 'pipeline' in config);
          assert.deepEqual(o.types, { processID: 'number', secretKey: 'number', connectionParameters: 'object', connection: 'object' });
          assert.deepEqual(o.password, { readable: true, enumerable: false, inInspect: false });
          assert.deepEqual(o.sameAsPg, { processID: true });
        },
      });
    }

    differential('pipeline: true, the pool option: a checked-out client pipelines concurrent queries', async (s) => {
      const pool = s.pool({ pipeline: true } as pg.PoolConfig);
      const c = await pool.connect();
      const rows = await Promise.all([1, 2, 3].map((n) => c.query('SELECT $1::int AS n', [n]).then((r) => r.rows[0])));
      const flag = (c as unknown as { pipeline: boolean }).pipeline;
      c.release();
      return { flag, rows };
    }, {
      expectPg: (o) => assert.deepEqual(o, { flag: true, rows: [{ n: 1 }, { n: 2 }, { n: 3 }] }),
    });

    differential('an "error" emitted on a released client: its listeners, then the pool\'s "error" (with err.client) and "remove", at once', async (s) => {
      const pool = s.pool();
      const t = new Trace(pool);
      const c = await pool.connect();
      c.release();
      await t.step('released');
      const heard: string[] = [];
      pool.once('error', (err: Error & { client?: unknown }, client) => heard.push(`pool: ${err.message}, err.client ${err.client === c ? 'is' : 'is not'} the client, client arg ${client === c ? 'is' : 'is not'}`));
      c.once('error', (err: Error) => heard.push(`client: ${err.message}`));
      c.emit('error', new Error('expected'));
      t.countsNow('emitted');
      await t.step('after', 'remove c1');
      const after = await pool.query('SELECT 1 AS n');
      return { heard, rows: after.rows, steps: t.steps };
    }, {
      expectPg: (o) => {
        assert.deepEqual(o.heard, ['pool: expected, err.client is the client, client arg is', 'client: expected']);
        assert.equal(o.steps[1]?.counts, 'total=0 idle=0 waiting=0 expired=0');
      },
    });

    differential('an "error" emitted on a checked-out client: its listeners only; the pool keeps it', async (s) => {
      const pool = s.pool();
      const t = new Trace(pool);
      const c = await pool.connect();
      const heard: string[] = [];
      pool.once('error', () => heard.push('pool'));
      c.once('error', (err: Error) => heard.push(`client: ${err.message}`));
      c.emit('error', new Error('expected'));
      t.countsNow('emitted');
      c.release();
      await t.step('released');
      return { heard, steps: t.steps };
    }, {
      expectPg: (o) => assert.deepEqual(o.heard, ['client: expected']),
    });

    differential('_clients, and a connection the application ends under a running pool.query: the query fails with pg\'s error, not retried', async (s) => {
      const pool = s.pool({ max: 1 });
      pool.on('error', () => undefined);
      const started = performance.now();
      const q = pool.query('SELECT pg_sleep(3)');
      await new Promise((resolve) => setTimeout(resolve, 500));
      const clients = (pool as unknown as { _clients: Array<{ end(): unknown }> })._clients;
      const count = clients.length;
      void clients[0]?.end();
      const o = await outcome(q, 6000, started);
      return { count, query: settledAs(o), fast: o.ms < 2500 };
    }, {
      expectPg: (o) => assert.deepEqual(o, { count: 1, query: 'rejected Error: Connection terminated', fast: true }),
    });

    differential('a checked-out client whose connection is lost (no transaction open): pg.Pool\'s client emits "error", pg-resilient\'s moves on', async (s) => {
      const pool = s.pool({ max: 1 });
      const t = new Trace(pool);
      const c = await pool.connect();
      const heard: string[] = [];
      c.on('error', (err: Error) => heard.push(err.message));
      // Severed under the client, as pg-pool's own suite does it (releasing-clients.js).
      (c as unknown as { connection: { end(): void } }).connection.end();
      await new Promise((resolve) => setTimeout(resolve, 300));
      const next = await outcome(c.query('SELECT 1 AS n'), 5000);
      c.release();
      await t.step('released');
      const after = await pool.query('SELECT 2 AS n');
      return { heard, next: next.status === 'resolved' ? next.value.rows : settledAs(next), after: after.rows, total: pool.totalCount };
    }, {
      expectPg: (o) => {
        assert.deepEqual(o.heard, ['Connection terminated unexpectedly']);
        assert.equal(o.next, 'rejected Error: Client has encountered a connection error and is not queryable');
        assert.deepEqual(o.after, [{ n: 2 }]);
      },
      deliberate: {
        reason: 'a checked-out client holding no transaction or session state survives its connection: its next statement runs on a new one',
        expectOurs: (o) => {
          assert.deepEqual(o.heard, []);
          assert.deepEqual(o.next, [{ n: 1 }]);
          assert.deepEqual(o.after, [{ n: 2 }]);
        },
      },
    });

    differential('a new pool: pg.Pool has no "error" or "connect" listener, pg-resilient has its own (they log)', async (s) => {
      const pool = s.pool();
      return { error: pool.listenerCount('error'), connect: pool.listenerCount('connect') };
    }, {
      expectPg: (o) => assert.deepEqual(o, { error: 0, connect: 0 }),
      deliberate: {
        reason: 'an idle or checked-out client\'s error never reaches the process unhandled; libraries that check for handlers (graphile-worker) find them',
        expectOurs: (o) => assert.deepEqual(o, { error: 1, connect: 1 }),
      },
    });

    differential('maxUses: pg-pool\'s log line "remove expended client", and the client is ending once released', async (s) => {
      const lines: unknown[] = [];
      const pool = s.pool({ maxUses: 1, log: (msg: unknown) => lines.push(msg) } as pg.PoolConfig);
      const c = await pool.connect();
      const before = (c as unknown as { _ending: boolean })._ending;
      c.release();
      const after = (c as unknown as { _ending: boolean })._ending;
      return { logged: lines.includes('remove expended client'), before, after };
    }, {
      expectPg: (o) => assert.deepEqual(o, { logged: true, before: false, after: true }),
    });
  });
}
