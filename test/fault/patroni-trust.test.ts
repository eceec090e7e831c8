import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { InvalidOptionError, Pool } from '../../src/index.ts';
import { resolveOptions } from '../../src/options.ts';
import { PatroniDiscovery } from '../../src/topology/patroni.ts';
import { systemClock } from '../../src/policy/clock.ts';
import { capturingLogger, type LogCall } from '../helpers/logger.ts';
import { startPgServer, type PgServer } from '../helpers/pg-server.ts';

// Patroni answers are trusted only within what the operator named (issue 26, item 5). The REST
// API may be plain http: anyone on the path can forge a /cluster answer, and the pool would send
// the database password to whatever leader it names. Real sockets throughout: a forged Patroni
// endpoint, a trap "PostgreSQL" that asks for a cleartext password, a REST server that trickles.

const PASSWORD = 'trap-me-if-you-can-7731';

/** Speaks enough of the PostgreSQL protocol to ask for a cleartext password, and records what arrives. */
function trapServer(): { server: net.Server; connections: number; passwords: string[] } {
  const state = { server: undefined as unknown as net.Server, connections: 0, passwords: [] as string[] };
  state.server = net.createServer((socket) => {
    state.connections += 1;
    let buf = Buffer.alloc(0);
    let startup = true;
    socket.on('error', () => undefined);
    socket.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      for (;;) {
        if (startup) {
          if (buf.length < 8) return;
          const len = buf.readInt32BE(0);
          if (buf.length < len) return;
          const code = buf.readInt32BE(4);
          buf = buf.subarray(len);
          if (code === 80877103) {
            socket.write('N'); // SSLRequest: no TLS here
            continue;
          }
          startup = false;
          // AuthenticationCleartextPassword: 'R', length 8, code 3.
          const r = Buffer.alloc(9);
          r.write('R', 0);
          r.writeInt32BE(8, 1);
          r.writeInt32BE(3, 5);
          socket.write(r);
          continue;
        }
        if (buf.length < 5) return;
        const len = buf.readInt32BE(1);
        if (buf.length < len + 1) return;
        if (buf[0] === 0x70 /* 'p' */) state.passwords.push(buf.subarray(5, len).toString('utf8').replace(/\0$/, ''));
        buf = buf.subarray(len + 1);
        socket.destroy();
        return;
      }
    });
  });
  return state;
}

const listen = (s: net.Server, host = '127.0.0.1'): Promise<number> => new Promise((resolve) => {
  s.listen(0, host, () => resolve((s.address() as net.AddressInfo).port));
});

describe('Patroni answers are trusted only within the allowlist', () => {
  let server: PgServer;
  const servers: net.Server[] = [];
  before(async () => {
    server = await startPgServer({ password: PASSWORD });
  });
  after(async () => {
    for (const s of servers) {
      (s as http.Server).closeAllConnections?.();
      s.close();
    }
    await server.destroy();
  });

  test('a forged /cluster naming a leader on a host named nowhere gets no connection, and no password', async () => {
    const trap = trapServer();
    servers.push(trap.server);
    // 127.0.0.9: loopback, but named by no option: only the forged answer points there.
    const trapPort = await listen(trap.server, '127.0.0.9');
    const forged = http.createServer((_req, res) => {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ members: [{ name: 'evil', role: 'leader', state: 'running', host: '127.0.0.9', port: trapPort, timeline: 9 }] }));
    });
    servers.push(forged);
    const restPort = await listen(forged);
    const calls: LogCall[] = [];
    const pool = new Pool({
      ...server.config,
      logger: capturingLogger(calls),
      patroni: { urls: [`http://127.0.0.1:${restPort}`], requestTimeoutMs: 500, refreshIntervalMs: 100 },
      retry: { maxElapsedMs: 4000 },
    });
    try {
      // The configured host is the real server: with the answer refused, the pool keeps to it.
      const outcome = await pool.query('SELECT inet_server_port() AS port').then((r) => r.rows[0].port as number, (e: Error) => e);
      await new Promise((r) => setTimeout(r, 300)); // a few more refreshes of the forged answer
      console.log(`# patroni trust: trap connections=${trap.connections}, passwords received=${trap.passwords.length}; query -> ${outcome instanceof Error ? outcome.message : `port ${outcome}`}`);
      assert.deepEqual(trap.passwords, [], 'the password went to the host the forged answer named');
      assert.equal(trap.connections, 0, 'no connection to a host outside the allowlist');
      assert.equal(outcome, server.port, 'the pool kept to the configured host');
      const refused = calls.filter((c) => c.level === 'warn' && /not in the allowlist|allowedHosts/.test(c.message));
      assert.ok(refused.length > 0, 'the refusal is logged');
      const logged = calls.map((c) => `${c.message} ${JSON.stringify(c.fields)}`).join('\n');
      assert.ok(logged.includes('127.0.0.9'), 'the log names the refused host');
      assert.ok(!logged.includes(PASSWORD), 'no credential in the log');
    } finally {
      await pool.end();
    }
  });

  test('patroni.allowedHosts admits a host named explicitly (the same answer is then followed)', async () => {
    const forged = http.createServer((_req, res) => {
      res.end(JSON.stringify({ members: [{ name: 'a', role: 'leader', state: 'running', host: 'localhost', port: server.port }] }));
    });
    servers.push(forged);
    const restPort = await listen(forged);
    const calls: LogCall[] = [];
    const restricted = new Pool({ ...server.config, hosts: ['127.0.0.1:1'], logger: capturingLogger(calls), patroni: { urls: [`http://127.0.0.1:${restPort}`], requestTimeoutMs: 500 }, retry: { maxElapsedMs: 800 } });
    const allowed = new Pool({ ...server.config, hosts: ['127.0.0.1:1'], patroni: { urls: [`http://127.0.0.1:${restPort}`], requestTimeoutMs: 500, allowedHosts: ['LOCALHOST'] } });
    try {
      await assert.rejects(restricted.query('SELECT 1'), 'localhost is named by no option: refused, and the static host is dead');
      assert.equal((await allowed.query('SELECT 1 AS ok')).rows[0].ok, 1);
    } finally {
      await restricted.end();
      await allowed.end();
    }
  });

  test('basic auth over plain http is refused at construction unless allowInsecureAuth', () => {
    const secret = 'rest-secret-over-http-5150';
    const cases: Array<[string, object]> = [
      ['auth option', { urls: ['http://127.0.0.1:8008'], auth: { username: 'patroni', password: secret } }],
      ['credentials in the URL', { urls: [`http://patroni:${secret}@127.0.0.1:8008`] }],
    ];
    for (const [label, patroni] of cases) {
      assert.throws(() => resolveOptions({ patroni } as never), (e: unknown) => {
        assert.ok(e instanceof InvalidOptionError, label);
        assert.match(e.message, /allowInsecureAuth/, label);
        assert.ok(!e.message.includes(secret), `${label}: the secret is not echoed`);
        return true;
      });
      const ok = resolveOptions({ patroni: { ...patroni, allowInsecureAuth: true } } as never);
      assert.equal(ok.patroni?.auth?.username, 'patroni', label);
      assert.equal(ok.patroni?.auth?.password, secret, label);
      assert.ok(!JSON.stringify(ok.patroni).includes(secret), `${label}: the secret is hidden from enumeration`);
      assert.ok(!ok.patroni!.urls.join(' ').includes(secret), `${label}: not left in the URL`);
    }
    assert.throws(() => resolveOptions({ patroni: { urls: ['https://h:1'], allowInsecureAuth: 'yes' } } as never), /patroni.allowInsecureAuth/);
    assert.throws(() => resolveOptions({ patroni: { urls: ['https://h:1'], allowedHosts: [] } } as never), /patroni.allowedHosts/);
    assert.throws(() => resolveOptions({ patroni: { urls: ['https://h:1'], allowedHosts: ['a b'] } } as never), /patroni.allowedHosts\[0\]/);
    // https with basic auth needs no permission.
    assert.equal(resolveOptions({ patroni: { urls: ['https://127.0.0.1:8008'], auth: { username: 'u', password: secret } } }).patroni?.auth?.username, 'u');
  });

  test('a REST server that trickles bytes is cut at the request deadline (a total deadline, not an idle timeout)', async () => {
    let trickling = 0;
    const timers = new Set<NodeJS.Timeout>();
    const trickle = http.createServer((_req, res) => {
      trickling += 1;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('{"members": [');
      const t = setInterval(() => res.write(' '), 40);
      timers.add(t);
      res.on('close', () => {
        clearInterval(t);
        timers.delete(t);
      });
    });
    servers.push(trickle);
    const restPort = await listen(trickle);
    const calls: LogCall[] = [];
    const resolved = resolveOptions({ patroni: { urls: [`http://127.0.0.1:${restPort}`], requestTimeoutMs: 300, refreshIntervalMs: 60_000 } });
    const started = performance.now();
    const discovery = new PatroniDiscovery(resolved.patroni!, systemClock, capturingLogger(calls), () => undefined);
    try {
      await discovery.ready(5000);
      const took = Math.round(performance.now() - started);
      console.log(`# patroni trust: trickling endpoint cut after ${took} ms (deadline 300 ms)`);
      assert.ok(trickling > 0);
      assert.ok(took < 2000, `the round took ${took} ms: the trickle kept the request alive past its deadline`);
      assert.ok(calls.some((c) => c.level === 'warn' && JSON.stringify(c.fields).includes('300 ms')), 'the deadline is named in the log');
      assert.equal(discovery.snapshot(), undefined);
    } finally {
      discovery.close();
      for (const t of timers) clearInterval(t);
    }
  });

  test('a body larger than the bound is refused (read in linear time)', async () => {
    const big = http.createServer((_req, res) => {
      res.writeHead(200);
      const chunk = Buffer.alloc(1024, 0x20);
      let sent = 0;
      const pump = (): void => {
        while (sent < 3000 && res.write(chunk)) sent += 1;
        if (sent < 3000) res.once('drain', pump);
        else res.end();
      };
      pump();
    });
    servers.push(big);
    const restPort = await listen(big);
    const calls: LogCall[] = [];
    const resolved = resolveOptions({ patroni: { urls: [`http://127.0.0.1:${restPort}`], requestTimeoutMs: 3000, refreshIntervalMs: 60_000 } });
    const discovery = new PatroniDiscovery(resolved.patroni!, systemClock, capturingLogger(calls), () => undefined);
    try {
      await discovery.ready(5000);
      assert.ok(calls.some((c) => c.level === 'warn' && JSON.stringify(c.fields).includes('larger than')), JSON.stringify(calls.map((c) => c.fields)));
    } finally {
      discovery.close();
    }
  });
});
