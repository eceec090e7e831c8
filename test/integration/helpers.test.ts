// Exercises the test helpers against real servers and sockets: if these fail, every test built on
// the helpers is suspect.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import type { ClientConfig } from 'pg';
import { startFaultProxy } from '../helpers/fault-proxy.ts';
import { DEFAULT_TEST_PASSWORD, freePort, startPgServer } from '../helpers/pg-server.ts';
import type { PgServer } from '../helpers/pg-server.ts';
import { captureRealErrorsReport, checkAgainstExpected, EXPECTED_REAL_ERRORS, summarizeError } from '../helpers/real-errors.ts';

async function connect(config: ClientConfig): Promise<pg.Client> {
  const c = new pg.Client(config);
  // Errors are asserted through the promises; an unhandled 'error' event would crash the runner.
  c.on('error', () => {});
  await c.connect();
  return c;
}

async function connectFailure(config: ClientConfig): Promise<Error & { code?: string }> {
  const c = new pg.Client(config);
  c.on('error', () => {});
  try {
    await c.connect();
  } catch (e) {
    return e as Error & { code?: string };
  } finally {
    await c.end().catch(() => {});
  }
  throw new Error('connect unexpectedly succeeded');
}

async function queryFailure(p: Promise<unknown>): Promise<Error & { code?: string }> {
  try {
    await p;
  } catch (e) {
    return e as Error & { code?: string };
  }
  throw new Error('query unexpectedly succeeded');
}

function destroyClient(c: pg.Client): void {
  // end() can hang on a blackholed socket; tearing down the stream cannot.
  (c as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy();
}

describe('startPgServer', () => {
  let server: PgServer;
  before(async () => {
    server = await startPgServer();
  });
  after(async () => {
    await server.destroy();
  });

  test('runs a password-protected PostgreSQL 15 on 127.0.0.1', async () => {
    assert.equal(server.host, '127.0.0.1');
    assert.equal(server.password, DEFAULT_TEST_PASSWORD);
    const rows = await server.admin<{ v: string; la: string; mc: string; fs: string; ssl: string }>(
      `SELECT current_setting('server_version') AS v, current_setting('listen_addresses') AS la,
              current_setting('max_connections') AS mc, current_setting('fsync') AS fs, current_setting('ssl') AS ssl`,
    );
    assert.match(rows[0]!.v, /^15\./);
    assert.equal(rows[0]!.la, '127.0.0.1');
    assert.equal(rows[0]!.mc, '100');
    assert.equal(rows[0]!.fs, 'off');
    assert.equal(rows[0]!.ssl, 'off');
    const hba = await server.admin<{ auth_method: string }>(
      "SELECT DISTINCT auth_method FROM pg_hba_file_rules WHERE type = 'host'",
    );
    assert.deepEqual(hba.map((r) => r.auth_method), ['scram-sha-256']);

    const viaString = await connect({ connectionString: server.connectionString });
    assert.equal((await viaString.query('SELECT 1 AS x')).rows[0].x, 1);
    await viaString.end();
    const bad = await connectFailure({ ...server.config, password: 'nope' });
    assert.equal(bad.code, '28P01');
    assert.ok(!JSON.stringify(summarizeError(bad)).includes(DEFAULT_TEST_PASSWORD));
  });

  test('config is a fresh copy each time', () => {
    const a = server.config;
    a.port = 1;
    assert.equal(server.config.port, server.port);
  });

  test('terminateBackends kills other client sessions only', async () => {
    const a = await connect({ ...server.config, application_name: 'victim' });
    const b = await connect({ ...server.config, application_name: 'victim' });
    const bystander = await connect({ ...server.config, application_name: 'bystander' });
    const events: unknown[] = [];
    a.on('error', (e) => events.push(e));
    assert.equal(await server.terminateBackends({ applicationName: 'victim' }), 2);
    const err = await queryFailure(b.query('SELECT 1'));
    assert.ok(err.code === '57P01' || /terminated|not queryable/.test(err.message), err.message);
    assert.equal((await bystander.query('SELECT 1 AS x')).rows[0].x, 1);
    await bystander.end();
  });

  test('stop, start, restart and kill9 keep the data and the port', async () => {
    await server.admin('CREATE TABLE IF NOT EXISTS survives (x int); INSERT INTO survives VALUES (42)');
    const port = server.port;

    await server.stop('fast');
    assert.equal(server.pid, undefined);
    assert.equal((await connectFailure(server.config)).code, 'ECONNREFUSED');
    await server.start();
    assert.ok(server.pid !== undefined);

    await server.restart('immediate');
    const pidBefore = server.pid;
    assert.ok(pidBefore !== undefined);

    const held = await connect(server.config);
    await server.kill9();
    assert.equal(server.pid, undefined);
    // The orphaned backend may answer for a moment; new connections cannot be accepted.
    assert.equal((await connectFailure(server.config)).code, 'ECONNREFUSED');
    destroyClient(held);
    await server.start();
    assert.notEqual(server.pid, pidBefore);
    assert.equal(server.port, port);
    const rows = await server.admin<{ x: number }>('SELECT x FROM survives');
    assert.deepEqual(rows, [{ x: 42 }]);

    await server.kill9({ withChildren: true });
    await server.restart('smart');
    assert.deepEqual(await server.admin('SELECT x FROM survives'), [{ x: 42 }]);
  });

  test('settings, port and password are overridable; destroy is idempotent and cleans up', async () => {
    const port = await freePort();
    const s = await startPgServer({ port, password: 'other-pw', settings: { max_connections: 7 } });
    try {
      assert.equal(s.port, port);
      const rows = await s.admin<{ mc: string }>("SELECT current_setting('max_connections') AS mc");
      assert.equal(rows[0]!.mc, '7');
      assert.equal((await connectFailure({ ...s.config, password: DEFAULT_TEST_PASSWORD })).code, '28P01');
    } finally {
      await s.destroy();
    }
    await s.destroy();
    assert.equal(fs.existsSync(s.dataDir), false);
    assert.equal(s.pid, undefined);
    assert.equal((await connectFailure(s.config)).code, 'ECONNREFUSED');
  });

  test('ssl: true serves TLS with a self-signed cert clients can pin', async () => {
    const s = await startPgServer({ ssl: true });
    try {
      assert.match(s.caCertPem ?? '', /^-----BEGIN CERTIFICATE-----/);
      const key = fs.statSync(`${s.dataDir}/server.key`);
      assert.equal(key.mode & 0o777, 0o600);
      const c = await connect(s.config);
      const r = await c.query('SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()');
      assert.equal(r.rows[0].ssl, true);
      await c.end();
      const untrusted = await connectFailure({ ...s.config, ssl: { rejectUnauthorized: true } });
      assert.match(untrusted.message, /self[- ]signed/);
    } finally {
      await s.destroy();
    }
  });
});

describe('startFaultProxy', () => {
  let server: PgServer;
  before(async () => {
    server = await startPgServer();
  });
  after(async () => {
    await server.destroy();
  });

  test('pass forwards; refuse gives ECONNREFUSED; pass re-listens on the same port', async () => {
    const p = await startFaultProxy(server);
    try {
      const cfg = { ...server.config, port: p.port };
      const c = await connect(cfg);
      assert.equal(p.connectionCount, 1);
      assert.equal((await c.query('SELECT 2 AS x')).rows[0].x, 2);

      await p.refuse();
      assert.equal(p.mode, 'refuse');
      const refused = await connectFailure(cfg);
      assert.equal(refused.code, 'ECONNREFUSED');
      // Existing connections are not affected by refusing new ones.
      assert.equal((await c.query('SELECT 3 AS x')).rows[0].x, 3);

      const port = p.port;
      await p.pass();
      assert.equal(p.port, port);
      const c2 = await connect(cfg);
      assert.equal((await c2.query('SELECT 4 AS x')).rows[0].x, 4);
      // The refused attempt never reached the proxy.
      assert.equal(p.totalConnections, 2);
      await c.end();
      await c2.end();
    } finally {
      await p.close();
    }
  });

  test('resetAll gives ECONNRESET on a running query; closeAll gives "Connection terminated unexpectedly"', async () => {
    const p = await startFaultProxy(server);
    try {
      const cfg = { ...server.config, port: p.port };
      const a = await connect(cfg);
      const qa = queryFailure(a.query('SELECT pg_sleep(5)'));
      await new Promise((r) => setTimeout(r, 100));
      p.resetAll();
      const ea = await qa;
      assert.equal(ea.code, 'ECONNRESET');

      const b = await connect(cfg);
      const qb = queryFailure(b.query('SELECT pg_sleep(5)'));
      await new Promise((r) => setTimeout(r, 100));
      p.closeAll();
      const eb = await qb;
      assert.equal(eb.message, 'Connection terminated unexpectedly');
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(p.connectionCount, 0);
    } finally {
      await p.close();
    }
  });

  test('blackhole: queries and connects hang until the client-side timeout', async () => {
    const p = await startFaultProxy(server);
    try {
      const cfg = { ...server.config, port: p.port };
      const c = await connect({ ...cfg, query_timeout: 400 });
      await p.blackhole();
      let t0 = Date.now();
      const e = await queryFailure(c.query('SELECT 1'));
      const took = Date.now() - t0;
      assert.equal(e.message, 'Query read timeout');
      assert.ok(took >= 390, `failed after ${took} ms, should have hung until the timeout`);

      t0 = Date.now();
      const ce = await connectFailure({ ...cfg, connectionTimeoutMillis: 300 });
      assert.ok(Date.now() - t0 >= 290);
      assert.match(ce.message, /timeout/);
      destroyClient(c);

      // Healing the partition lets new connections through.
      await p.pass();
      const ok = await connect(cfg);
      assert.equal((await ok.query('SELECT 5 AS x')).rows[0].x, 5);
      await ok.end();
    } finally {
      await p.close();
    }
  });

  test('blackhole after refuse accepts connections that then hang', async () => {
    const p = await startFaultProxy(server);
    try {
      await p.refuse();
      await p.blackhole();
      const t0 = Date.now();
      const e = await connectFailure({ ...server.config, port: p.port, connectionTimeoutMillis: 200 });
      assert.notEqual(e.code, 'ECONNREFUSED');
      assert.ok(Date.now() - t0 >= 190);
    } finally {
      await p.close();
    }
  });

  test('delay adds latency per direction and close leaves no timers behind', async () => {
    const baseline = process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
    const p = await startFaultProxy(server);
    const c = await connect({ ...server.config, port: p.port });
    let t0 = Date.now();
    await c.query('SELECT 1');
    const fast = Date.now() - t0;
    await p.delay(150);
    assert.equal(p.mode, 'delay');
    t0 = Date.now();
    const r = await c.query('SELECT 6 AS x');
    const slow = Date.now() - t0;
    assert.equal(r.rows[0].x, 6);
    // One round trip = one delayed chunk each way.
    assert.ok(slow >= 290, `round trip took ${slow} ms with 150 ms each way`);
    assert.ok(slow < 2000);
    await p.pass();
    t0 = Date.now();
    await c.query('SELECT 1');
    assert.ok(Date.now() - t0 < fast + 100);

    // Leave chunks queued in the delay line, then close: their timers must go too.
    await p.delay(1000);
    const pending = queryFailure(c.query('SELECT 1'));
    await new Promise((res) => setTimeout(res, 50));
    await p.close();
    await p.close();
    await pending;
    destroyClient(c);
    await new Promise((res) => setTimeout(res, 20));
    const after = process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
    assert.ok(after <= baseline, `timers before ${baseline}, after close ${after}`);
    assert.equal(p.connectionCount, 0);
  });
});

describe('captureRealErrors', () => {
  test('reproduces every failure of the taxonomy from real servers and sockets', async () => {
    const report = await captureRealErrorsReport();
    const rows = [...report.errors].map(([name, entry]) => {
      const s = summarizeError(entry.error);
      const cause = s['cause'] as { message?: unknown } | undefined;
      return `${name.padEnd(38)} ${entry.phase.padEnd(7)} ${String(s['code'] ?? '-').padEnd(27)} ${String(s['message'])}${cause ? ` (cause: ${String(cause.message)})` : ''}`;
    });
    console.log(`captured ${report.errors.size} real errors in ${report.durationMs} ms\n${rows.join('\n')}`);
    for (const [name, why] of report.failures) console.log(`NOT REPRODUCED ${name}: ${why}`);

    assert.deepEqual(Object.fromEntries(report.failures), {});
    assert.equal(report.errors.size, Object.keys(EXPECTED_REAL_ERRORS).length);
    for (const [name, entry] of report.errors) {
      assert.equal(checkAgainstExpected(name, entry), undefined, name);
      if (entry.phase === 'notice') continue;
      assert.ok(entry.error instanceof Error, `${name} is a real Error`);
      // Server errors arrive as pg's DatabaseError with the SQLSTATE on .code.
      const code = (entry.error as { code?: unknown }).code;
      if (typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) && !code.startsWith('E')) {
        assert.ok(entry.error instanceof pg.DatabaseError, `${name} is a DatabaseError`);
      }
    }
    // Credentials never leak into what an application would log.
    for (const [name, entry] of report.errors) {
      const e = entry.error as Error;
      const text = [JSON.stringify(summarizeError(e)), String(e), e.stack ?? '', JSON.stringify(e)].join('\n');
      for (const pw of report.passwords) assert.ok(!text.includes(pw), `${name} leaks a password`);
    }
    assert.ok(report.durationMs < 30_000, `capture took ${report.durationMs} ms`);
  });
});
