import assert from 'node:assert/strict';
import { once } from 'node:events';
import * as net from 'node:net';
import { describe } from 'node:test';
import pg from 'pg';
import { freePort } from '../helpers/pg-server.ts';
import { Trace, differential, outcome, type Outcome } from '../helpers/differential.ts';

// connectionTimeoutMillis on a saturated but healthy pool (issue #13, point 6: fail fast, as
// services use it to shed load), and the failures pg.Pool hands over at once while pg-resilient
// retries them within its deadline (a deliberate difference).

const TIMEOUT_MS = 300;

function rejectedAt(o: Outcome<unknown>): { message: string; code: string | undefined; ms: number } | string {
  return o.status === 'rejected' ? { message: o.error.message, code: o.error.code, ms: o.ms } : o.status;
}

/** A TCP server that accepts connections and never answers: a connect that hangs. */
async function silentServer(): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const srv = net.createServer((sock) => {
    sockets.add(sock);
    sock.on('error', () => {});
    sock.on('close', () => sockets.delete(sock));
  });
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const addr = srv.address() as net.AddressInfo;
  return {
    port: addr.port,
    async close() {
      for (const sock of sockets) sock.destroy();
      srv.close();
      await once(srv, 'close');
    },
  };
}

export function timeoutCases(): void {
  describe('differential: timeouts and connection failures', () => {
    differential(`connectionTimeoutMillis ${TIMEOUT_MS} on a saturated healthy pool: the waiting call fails after about that long`, async (s) => {
      const pool = s.pool({ max: 1, connectionTimeoutMillis: TIMEOUT_MS });
      const t = new Trace(pool);
      const held = await pool.connect();
      const started = performance.now();
      const waitingConnect = pool.connect();
      const waitingQuery = pool.query('SELECT 1');
      await new Promise((resolve) => setTimeout(resolve, TIMEOUT_MS / 3));
      t.countsNow('two calls waiting');
      // Should the wait outlast the bound, the late client must not stay checked out forever.
      void waitingConnect.then((client) => client.release(), () => undefined);
      const [c, q] = await Promise.all([outcome(waitingConnect, 3000, started), outcome(waitingQuery, 3000, started)]);
      t.countsNow('both timed out');
      held.release();
      const after = await pool.query('SELECT 1 AS n');
      await t.step('released; the pool still serves');
      return { connect: rejectedAt(c), query: rejectedAt(q), rows: after.rows, steps: t.steps };
    }, {
      expectPg: (o) => {
        for (const r of [o.connect, o.query]) {
          assert.ok(typeof r === 'object', `pg.Pool rejected: ${JSON.stringify(r)}`);
          assert.equal(r.message, 'timeout exceeded when trying to connect');
          assert.ok(r.ms >= TIMEOUT_MS - 20 && r.ms < TIMEOUT_MS + 700, `after ${r.ms} ms`);
        }
        assert.equal(o.steps[0]?.counts, 'total=1 idle=0 waiting=2 expired=0');
        assert.equal(o.steps[1]?.counts, 'total=1 idle=0 waiting=0 expired=0');
      },
      compare: (ours, pgObs) => {
        // Deliberate difference in class only: PGR_ACQUIRE_TIMEOUT (a typed error), at about the same time.
        for (const key of ['connect', 'query'] as const) {
          const r = ours[key];
          const p = pgObs[key] as { ms: number };
          assert.ok(typeof r === 'object', `pg-resilient's ${key} did not fail within 3 s (pg.Pool: ${p.ms} ms): ${JSON.stringify(r)}`);
          assert.equal(r.code, 'PGR_ACQUIRE_TIMEOUT', `${key}: ${r.message}`);
          assert.ok(r.ms >= TIMEOUT_MS - 20 && r.ms < TIMEOUT_MS + 700, `${key} failed after ${r.ms} ms (pg.Pool: ${p.ms} ms)`);
        }
        assert.deepEqual(ours.steps, pgObs.steps);
        assert.deepEqual(ours.rows, pgObs.rows);
      },
    });

    differential('a server that never answers the connect: pg.Pool fails after connectionTimeoutMillis, pg-resilient retries until its deadline', async (s) => {
      const silent = await silentServer();
      try {
        const pool = s.rawPool({ ...s.server.config, port: silent.port, connectionTimeoutMillis: TIMEOUT_MS }, { retry: { maxElapsedMs: 1200 } });
        const o = await outcome(pool.query('SELECT 1'), 4000);
        return { result: rejectedAt(o), cause: o.status === 'rejected' ? String((o.raw as { cause?: { message?: string } }).cause?.message) : undefined, total: pool.totalCount };
      } finally {
        await silent.close();
      }
    }, {
      expectPg: (o) => {
        assert.ok(typeof o.result === 'object');
        assert.equal(o.result.message, 'Connection terminated due to connection timeout');
        assert.ok(o.result.ms < TIMEOUT_MS + 700, `after ${o.result.ms} ms`);
      },
      deliberate: {
        reason: 'a connect that fails is retried with backoff until retry.maxElapsedMs: an outage shorter than the deadline never reaches the caller',
        expectOurs: (o) => {
          assert.ok(typeof o.result === 'object', JSON.stringify(o.result));
          assert.ok(o.result.code === 'PGR_RETRIES_EXHAUSTED' || o.result.code === 'PGR_DEADLINE_EXCEEDED', `${o.result.code}: ${o.result.message}`);
          // It gives up once the next backoff (up to retry.maxDelayMs, 500) would pass the deadline.
          assert.ok(o.result.ms >= 600 && o.result.ms < 3000, `after ${o.result.ms} ms, deadline 1200 ms`);
          assert.match(o.cause ?? '', /timeout/i);
        },
      },
    });

    differential('connection refused: pg.Pool rejects at once with ECONNREFUSED, pg-resilient retries until its deadline', async (s) => {
      const port = await freePort();
      const pool = s.rawPool({ ...s.server.config, port }, { retry: { maxElapsedMs: 1000 } });
      const o = await outcome(pool.query('SELECT 1'), 4000);
      return { result: rejectedAt(o), causeCode: o.status === 'rejected' ? (o.raw as { cause?: { code?: string } }).cause?.code : undefined };
    }, {
      expectPg: (o) => {
        assert.ok(typeof o.result === 'object');
        assert.equal(o.result.code, 'ECONNREFUSED');
        assert.ok(o.result.ms < 500);
      },
      deliberate: {
        reason: 'a refused connect (a restart, a failover in progress) is retried until retry.maxElapsedMs',
        expectOurs: (o) => {
          assert.ok(typeof o.result === 'object', JSON.stringify(o.result));
          assert.equal(o.result.code, 'PGR_RETRIES_EXHAUSTED', o.result.message);
          assert.equal(o.causeCode, 'ECONNREFUSED');
          // It gives up once the next backoff (up to retry.maxDelayMs, 500) would pass the deadline.
          assert.ok(o.result.ms >= 400 && o.result.ms < 2500, `after ${o.result.ms} ms, deadline 1000 ms`);
        },
      },
    });

    differential('a wrong password fails at once with the server\'s 28P01, never retried', async (s) => {
      const pool = s.pool({ password: 'not-the-password' });
      const t = new Trace(pool);
      const o = await outcome(pool.query('SELECT 1'), 4000);
      await t.step('failed');
      const r = rejectedAt(o);
      return { result: typeof r === 'object' ? { message: r.message, code: r.code, fast: r.ms < 1500 } : r, steps: t.steps };
    }, {
      expectPg: (o) => assert.deepEqual(o.result, { message: 'password authentication failed for user "postgres"', code: '28P01', fast: true }),
    });

    differential('the error a failed connect hands over is pg\'s DatabaseError class', async (s) => {
      const pool = s.pool({ database: 'no_such_database' });
      const o = await outcome(pool.connect(), 4000);
      return { class: o.status === 'rejected' ? o.error.class : o.status, isDatabaseError: o.status === 'rejected' && o.raw instanceof pg.DatabaseError, code: o.status === 'rejected' ? o.error.code : undefined };
    }, {
      expectPg: (o) => assert.deepEqual(o, { class: 'DatabaseError', isDatabaseError: true, code: '3D000' }),
    });
  });
}
