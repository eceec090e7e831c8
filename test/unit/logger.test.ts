import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import * as net from 'node:net';
import { inspect } from 'node:util';
import { Pool } from '../../src/index.ts';
import { capturingLogger, type LogCall } from '../helpers/logger.ts';

// The `logger` option: pino-style structured calls (fields object, message), and never the
// password, whatever goes wrong. The server here is a few lines of the wire protocol, so the
// pool really sends the password (the test checks the server received it) and then sees the
// server end an idle session, as in a restart.

const PASSWORD = 'logger-secret-pw-9151';
const PATRONI_PASSWORD = 'patroni-rest-secret-3307';


/** Everything the logger was given, rendered as deeply as it goes (hidden properties too). */
function rendered(calls: LogCall[]): string {
  return inspect(calls, { depth: 20, showHidden: true, maxArrayLength: null, maxStringLength: null, getters: true })
    + JSON.stringify(calls);
}

function assertStructured(calls: LogCall[]): void {
  for (const c of calls) {
    assert.ok(typeof c.fields === 'object' && c.fields !== null && !Array.isArray(c.fields), `fields of "${c.message}"`);
    assert.equal(typeof c.message, 'string');
    assert.ok(c.message.startsWith('pg-resilient'), c.message);
  }
}

// ---- a minimal PostgreSQL wire-protocol server ------------------------------------------------

function msg(type: string, body: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head.write(type, 0, 'latin1');
  head.writeInt32BE(body.length + 4, 1);
  return Buffer.concat([head, body]);
}
const int32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n);
  return b;
};
const int16 = (n: number): Buffer => {
  const b = Buffer.alloc(2);
  b.writeInt16BE(n);
  return b;
};
const cstr = (s: string): Buffer => Buffer.from(s + '\0', 'utf8');

function rows(columns: string[], values: string[]): Buffer {
  const desc = Buffer.concat([int16(columns.length), ...columns.map((c) => Buffer.concat([cstr(c), int32(0), int16(0), int32(25), int16(-1), int32(-1), int16(0)]))]);
  const data = Buffer.concat([int16(values.length), ...values.map((v) => Buffer.concat([int32(Buffer.byteLength(v)), Buffer.from(v)]))]);
  return Buffer.concat([msg('T', desc), msg('D', data), msg('C', cstr('SELECT 1')), msg('Z', Buffer.from('I'))]);
}

function fatal(code: string, text: string): Buffer {
  return msg('E', Buffer.concat([cstr('SFATAL'), cstr('VFATAL'), cstr('C' + code), cstr('M' + text), Buffer.from([0])]));
}

interface FakeServer {
  port: number;
  passwordsReceived: string[];
  sessions: Set<net.Socket>;
  /** Ends every session the way a fast shutdown does: FATAL 57P01, then close. */
  terminateAll(): void;
  close(): Promise<void>;
}

async function startFakeServer(): Promise<FakeServer> {
  const passwordsReceived: string[] = [];
  const sessions = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sessions.add(socket);
    socket.on('close', () => sessions.delete(socket));
    socket.on('error', () => undefined);
    let buf = Buffer.alloc(0);
    let started = false;
    socket.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      for (;;) {
        if (!started) {
          if (buf.length < 4) return;
          const len = buf.readInt32BE(0);
          if (buf.length < len) return;
          buf = buf.subarray(len);
          started = true;
          socket.write(msg('R', int32(3))); // AuthenticationCleartextPassword
          continue;
        }
        if (buf.length < 5) return;
        const type = String.fromCharCode(buf[0]!);
        const len = buf.readInt32BE(1);
        if (buf.length < len + 1) return;
        const body = buf.subarray(5, len + 1);
        buf = buf.subarray(len + 1);
        if (type === 'p') {
          passwordsReceived.push(body.toString('utf8').replace(/\0$/, ''));
          socket.write(Buffer.concat([msg('R', int32(0)), msg('S', Buffer.concat([cstr('in_hot_standby'), cstr('off')])), msg('K', Buffer.concat([int32(4242), int32(1)])), msg('Z', Buffer.from('I'))]));
        } else if (type === 'Q') {
          const text = body.toString('utf8');
          socket.write(text.includes('pg_is_in_recovery') ? rows(['standby', 'port', 'ro'], ['f', String(port), 'off']) : rows(['n'], ['1']));
        } else if (type === 'X') {
          socket.end();
        }
      }
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    passwordsReceived,
    sessions,
    terminateAll() {
      for (const s of sessions) s.end(fatal('57P01', 'terminating connection due to administrator command'));
    },
    async close() {
      for (const s of sessions) s.destroy();
      server.close();
      await once(server, 'close');
    },
  };
}

async function refusedPort(): Promise<number> {
  const s = net.createServer().listen(0, '127.0.0.1');
  await once(s, 'listening');
  const port = (s.address() as net.AddressInfo).port;
  s.close();
  await once(s, 'close');
  return port;
}

describe('logger option', () => {
  test('connect failures: a debug call with host, port and error, without the password', async () => {
    const port = await refusedPort();
    const calls: LogCall[] = [];
    const pool = new Pool({ connectionString: `postgresql://app:${PASSWORD}@127.0.0.1:${port}/db`, logger: capturingLogger(calls), retry: { maxElapsedMs: 300 } });
    try {
      await assert.rejects(pool.query('SELECT 1'), (err: Error) => {
        assert.ok(!inspect(err, { depth: 10, showHidden: true }).includes(PASSWORD), 'nor in the error');
        return true;
      });
    } finally {
      await pool.end();
    }
    const connectFailed = calls.filter((c) => c.message === 'pg-resilient: connect failed');
    assert.ok(connectFailed.length >= 1, 'each refused connect is logged');
    assert.equal(connectFailed[0]!.level, 'debug');
    assert.deepEqual(connectFailed[0]!.fields, { host: '127.0.0.1', port, error: (connectFailed[0]!.fields as { error: string }).error });
    assert.match((connectFailed[0]!.fields as { error: string }).error, /ECONNREFUSED/);
    assertStructured(calls);
    assert.ok(!rendered(calls).includes(PASSWORD));
  });

  test('a session ended by the server: info, failover warnings and the report, without the password', async () => {
    const fake = await startFakeServer();
    const calls: LogCall[] = [];
    const pool = new Pool({ host: '127.0.0.1', port: fake.port, user: 'app', password: PASSWORD, database: 'db', logger: capturingLogger(calls), retry: { maxElapsedMs: 5000 } });
    try {
      const r = await pool.query('SELECT 1');
      assert.equal(r.rows[0].n, '1');
      assert.deepEqual(fake.passwordsReceived, [PASSWORD], 'the pool really had the password and sent it');
      assert.equal(pool.idleCount, 1);

      fake.terminateAll();
      const deadline = Date.now() + 3000;
      while (!calls.some((c) => c.message.includes('idle connection was closed')) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      // The next query reconnects; its success completes the failover and produces the report.
      await pool.query('SELECT 1');
      assert.equal(fake.passwordsReceived.length, 2);
    } finally {
      await pool.end();
      await fake.close();
    }
    const idle = calls.find((c) => c.message.includes('idle connection was closed'));
    assert.ok(idle !== undefined, 'the idle session end is logged');
    assert.equal(idle.level, 'info');
    assert.match((idle.fields as { error: string }).error, /57P01/);
    assert.equal((idle.fields as { host: string }).host, `127.0.0.1:${fake.port}`);
    const failover = calls.filter((c) => c.message.startsWith('pg-resilient: failover'));
    assert.deepEqual(failover.map((c) => [c.level, c.message]), [['warn', 'pg-resilient: failover detected'], ['warn', 'pg-resilient: failover completed']]);
    assert.equal((failover[0]!.fields as { trigger: string }).trigger, 'server-shutdown');
    const report = calls.find((c) => 'report' in c.fields);
    assert.ok(report !== undefined, 'the failover report is logged');
    assert.match(report.message, /first failure 57P01 \(server-shutdown\)/);
    assertStructured(calls);
    assert.ok(!rendered(calls).includes(PASSWORD));
  });

  // Regression: `patroni.auth` once made `new Pool()` throw (a frozen object redefined).
  test('Patroni endpoints that do not answer: a warning, without the REST password', async () => {
    const port = await refusedPort();
    const calls: LogCall[] = [];
    const pool = new Pool({
      host: '127.0.0.1',
      port,
      password: PASSWORD,
      logger: capturingLogger(calls),
      retry: { maxElapsedMs: 300 },
      patroni: { urls: [`http://127.0.0.1:${port}`], auth: { username: 'patroni', password: PATRONI_PASSWORD }, allowInsecureAuth: true },
    });
    try {
      await assert.rejects(pool.query('SELECT 1'));
      const deadline = Date.now() + 3000;
      while (!calls.some((c) => c.message.includes('Patroni')) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    } finally {
      await pool.end();
    }
    const warning = calls.find((c) => c.message === 'pg-resilient: no Patroni REST endpoint answered');
    assert.ok(warning !== undefined, 'the unreachable REST API is logged');
    assert.equal(warning.level, 'warn');
    assertStructured(calls);
    const text = rendered(calls);
    assert.ok(!text.includes(PASSWORD));
    assert.ok(!text.includes(PATRONI_PASSWORD));
    assert.ok(!text.includes(Buffer.from(`patroni:${PATRONI_PASSWORD}`).toString('base64')), 'nor its Basic auth header');
  });
});
