import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import https from 'node:https';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import net from 'node:net';
import { ErrorCodes, Pool, isPgResilientError, parseCluster } from '../../src/index.ts';
import { startPgServer, type PgServer } from '../helpers/pg-server.ts';

// Patroni REST endpoints that misbehave, served by real HTTP servers on loopback: one that
// refuses, one that never answers, one that answers garbage, one that answers well.
describe('Patroni discovery against bad REST endpoints', () => {
  let server: PgServer;
  const servers: Array<http.Server | net.Server> = [];
  let goodUrl = '';
  let hangUrl = '';
  let garbageUrl = '';
  let refusedUrl = '';
  let leaderless = false;
  let hits = 0;

  const listen = (s: http.Server | net.Server): Promise<string> => new Promise((resolve) => {
    servers.push(s);
    s.listen(0, '127.0.0.1', () => resolve(`http://127.0.0.1:${(s.address() as net.AddressInfo).port}`));
  });

  before(async () => {
    server = await startPgServer();
    goodUrl = await listen(http.createServer((req, res) => {
      hits += 1;
      assert.equal(req.url, '/cluster');
      const members = [
        // Leaderless: the only member is a replica nobody can reach (an election under way).
        { name: 'a', role: leaderless ? 'replica' : 'leader', state: 'running', host: '127.0.0.1', port: leaderless ? 1 : server.port, timeline: 3, lag: leaderless ? 0 : undefined },
      ];
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ members }));
    }));
    hangUrl = await listen(net.createServer(() => undefined)); // accepts, never answers
    garbageUrl = await listen(http.createServer((_req, res) => res.end('<html>not json')));
    const closed = net.createServer();
    refusedUrl = await listen(closed);
    await new Promise<void>((r) => closed.close(() => r()));
  });

  after(async () => {
    for (const s of servers) {
      (s as http.Server).closeAllConnections?.();
      s.close();
    }
    await server.destroy();
  });

  test('parseCluster names what is wrong', () => {
    const bad: Array<[unknown, RegExp]> = [
      [null, /no members array/],
      [{ members: 'x' }, /no members array/],
      [{ members: [{ role: 'leader' }] }, /member #0 lacks a name or role/],
      [{ members: [{ name: 'a', role: 'leader', host: '', port: 5432 }] }, /member a has no usable host\/port/],
      [{ members: [{ name: 'a', role: 'leader', host: 'h', port: 70000 }] }, /member a has no usable host\/port/],
    ];
    for (const [body, message] of bad) {
      assert.throws(() => parseCluster(body), (e: unknown) => isPgResilientError(e) && e.code === ErrorCodes.DISCOVERY_FAILED && message.test(e.message));
    }
    const two = parseCluster({ members: [
      { name: 'a', role: 'leader', state: 'running', host: 'h1', port: 1 },
      { name: 'b', role: 'leader', state: 'running', host: 'h2', port: 2 },
      { name: 'c', role: 'sync_standby', state: 'streaming', host: 'h3', port: 3, lag: 10 },
      { name: 'd', role: 'replica', state: 'stopped', host: 'h4', port: 4, lag: 'unknown' },
    ] });
    assert.equal(two.leader, undefined, 'two leaders (split brain in the answer): trust neither');
    assert.deepEqual(two.standbys, [{ host: 'h3', port: 3, lagBytes: 10 }]);
  });

  test('refused, hanging and garbage endpoints are skipped; the good one is used; nothing hangs', async () => {
    const pool = new Pool({
      ...server.config,
      hosts: ['127.0.0.1:1'], // a wrong static list: only discovery can find the server
      targetSessionAttrs: 'read-write',
      patroni: { urls: [refusedUrl, hangUrl, garbageUrl, goodUrl], requestTimeoutMs: 300 },
    });
    try {
      const started = Date.now();
      const { rows } = await pool.query('SELECT 1 AS ok');
      const tookMs = Date.now() - started;
      assert.equal(rows[0].ok, 1);
      console.log(`# patroni discovery: first query after ${tookMs} ms through 3 bad endpoints`);
      assert.ok(hits > 0);
      // The bound: the endpoints are asked at once, each given requestTimeoutMs (300 ms), so the
      // first query costs one round of discovery plus a connection. 2 s leaves a loaded machine
      // room and is far below the call's deadline (15 s by default), which an endpoint waited on
      // without a timeout would run into.
      assert.ok(tookMs < 2000, `the first query took ${tookMs} ms: the hanging endpoint held discovery up`);
    } finally {
      await pool.end();
    }
  });

  test('no leader in the cluster: calls wait within their deadline, then fail clearly', async () => {
    leaderless = true;
    const pool = new Pool({
      ...server.config,
      hosts: ['127.0.0.1:1'],
      targetSessionAttrs: 'read-write',
      patroni: { urls: [goodUrl], requestTimeoutMs: 300 },
      retry: { maxElapsedMs: 1500 },
    });
    try {
      const started = Date.now();
      await assert.rejects(pool.query('SELECT 1'), (e: unknown) => isPgResilientError(e) && e.code === ErrorCodes.RETRIES_EXHAUSTED);
      const took = Date.now() - started;
      assert.ok(took >= 1000 && took < 3000, `took ${took} ms`);
    } finally {
      leaderless = false;
      await pool.end();
    }
  });

  test('https with a self-signed certificate and basic auth; wrong credentials are refused, never logged', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pgr-rest-tls-'));
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-days', '1', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')], { stdio: 'ignore' });
    const cert = readFileSync(join(dir, 'cert.pem'));
    const expected = `Basic ${Buffer.from('patroni:rest-secret-42').toString('base64')}`;
    let authorized = 0;
    let refusedAuth = 0;
    const secure = https.createServer({ key: readFileSync(join(dir, 'key.pem')), cert }, (req, res) => {
      if (req.headers.authorization !== expected) {
        refusedAuth += 1;
        res.statusCode = 401;
        res.end();
        return;
      }
      authorized += 1;
      res.end(JSON.stringify({ members: [{ name: 'a', role: 'leader', state: 'running', host: '127.0.0.1', port: server.port }] }));
    });
    const url = (await listen(secure)).replace('http:', 'https:');
    const logs: string[] = [];
    const logger = { debug: () => undefined, info: () => undefined, warn: (f: object, m: string) => logs.push(`${m} ${JSON.stringify(f)}`), error: () => undefined };
    const good = new Pool({ ...server.config, hosts: ['127.0.0.1:1'], targetSessionAttrs: 'read-write', patroni: { urls: [url], auth: { username: 'patroni', password: 'rest-secret-42' }, tls: { ca: cert } } });
    const bad = new Pool({ ...server.config, hosts: ['127.0.0.1:1'], targetSessionAttrs: 'read-write', logger, retry: { maxElapsedMs: 800 }, patroni: { urls: [url], auth: { username: 'patroni', password: 'wrong-secret-99' }, tls: { ca: cert } } });
    try {
      assert.equal((await good.query('SELECT 1 AS ok')).rows[0].ok, 1);
      assert.ok(authorized > 0, 'discovery over https with basic auth');
      await assert.rejects(bad.query('SELECT 1'));
      assert.ok(refusedAuth > 0);
      assert.ok(logs.some((l) => l.includes('HTTP 401')), 'the refusal is logged');
      assert.ok(!logs.join('\n').includes('wrong-secret-99'), 'the REST password is never logged');
    } finally {
      await good.end();
      await bad.end();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('during a failover every endpoint is asked: a replica still naming the old leader does not hide the new one', async () => {
    // Two real servers, A (the old primary) and B (the new one), and two endpoints: the first
    // answers like a replica whose copy of the DCS still names A, the second like the new leader.
    const [a, b] = await Promise.all([startPgServer(), startPgServer()]);
    let leaderPort = a.port;
    const member = (port: number): unknown => ({ members: [{ name: `n${port}`, role: 'leader', state: 'running', host: '127.0.0.1', port, timeline: 2 }] });
    const staleUrl = await listen(http.createServer((_req, res) => res.end(JSON.stringify(member(a.port)))));
    const freshUrl = await listen(http.createServer((_req, res) => res.end(JSON.stringify(member(leaderPort)))));
    const pool = new Pool({
      ...a.config,
      hosts: ['127.0.0.1:1'],
      targetSessionAttrs: 'read-write',
      patroni: { urls: [staleUrl, freshUrl], requestTimeoutMs: 300, refreshIntervalMs: 60_000 },
      retry: { maxElapsedMs: 6000 },
    });
    try {
      assert.equal((await pool.query('SELECT inet_server_port() AS port')).rows[0].port, a.port);
      await a.stop('immediate');
      leaderPort = b.port;
      const started = Date.now();
      const { rows } = await pool.query('SELECT inet_server_port() AS port');
      const took = Date.now() - started;
      console.log(`# patroni discovery: new leader found past a stale endpoint, query answered by it after ${took} ms`);
      assert.equal(rows[0].port, b.port, 'the new leader answered');
      assert.equal(pool.primary?.port, b.port);
    } finally {
      await pool.end();
      await Promise.all([a.destroy(), b.destroy()]);
    }
  });

  test('readOnly calls fall back to the primary when no standby qualifies', async () => {
    const pool = new Pool({ ...server.config, maxLagBytes: 0 });
    try {
      const { rows } = await pool.query({ text: 'SELECT pg_is_in_recovery() AS standby', readOnly: true });
      assert.equal(rows[0].standby, false);
      const client = await pool.connectReadOnly();
      assert.equal((await client.query('SELECT 1 AS ok')).rows[0].ok, 1);
      client.release();
    } finally {
      await pool.end();
    }
  });
});
