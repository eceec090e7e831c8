import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { InvalidOptionError, Pool } from '../../src/index.ts';
import { resolveOptions } from '../../src/options.ts';
import { parseConnectionString, parseHosts } from '../../src/topology/hosts.ts';

const SECRET = 'hunter2-s3cret';

describe('options: defaults and validation in one place', () => {
  test('defaults', () => {
    const o = resolveOptions({});
    assert.equal(o.max, 10);
    assert.equal(o.min, 0);
    assert.equal(o.retry.maxElapsedMs, 15000);
    assert.equal(o.connectTimeoutMs, 5000);
    assert.equal(o.targetSessionAttrs, 'any');
    assert.equal(o.breaker.enabled, true);
    assert.deepEqual(o.pipelining, { depth: 8, behindSlowMs: 10 });
  });

  test('pipelining: off with false or a depth of 1, tunable otherwise', () => {
    assert.equal(resolveOptions({ pipelining: false }).pipelining, undefined);
    assert.equal(resolveOptions({ pipelining: { depth: 1 } }).pipelining, undefined);
    assert.deepEqual(resolveOptions({ pipelining: true }).pipelining, { depth: 8, behindSlowMs: 10 });
    assert.deepEqual(resolveOptions({ pipelining: { depth: 2, behindSlowMs: 0 } }).pipelining, { depth: 2, behindSlowMs: 0 });
    // pg's own Client option of a similar name still goes to each Client, as pg.Pool passes it.
    assert.equal((resolveOptions({ pipeline: false } as never).clientConfig as { pipeline?: unknown }).pipeline, false);
  });

  const bad: Array<[string, object, RegExp]> = [
    ['max', { max: 0 }, /`max`/],
    ['max', { max: 'ten' }, /`max`: expected a number, got the string "ten"/],
    ['min', { min: 5, max: 2 }, /`min`: must not exceed max/],
    ['retry.maxElapsedMs', { retry: { maxElapsedMs: -1 } }, /`retry.maxElapsedMs`/],
    ['retry.maxDelayMs', { retry: { initialDelayMs: 100, maxDelayMs: 10 } }, /`retry.maxDelayMs`/],
    ['retry', { retry: 5 }, /`retry`: expected an object/],
    ['breaker.errorThresholdPercentage', { breaker: { errorThresholdPercentage: 150 } }, /errorThresholdPercentage/],
    ['targetSessionAttrs', { targetSessionAttrs: 'master' }, /`targetSessionAttrs`: expected one of/],
    ['patroni.urls', { patroni: { urls: [] } }, /`patroni.urls`/],
    ['patroni.urls[0]', { patroni: { urls: ['ftp://x'] } }, /`patroni.urls\[0\]`: expected http/],
    ['patroni.allowInsecureAuth', { patroni: { urls: [`http://u:${SECRET}@127.0.0.1:8008`] } }, /plain http/],
    ['patroni.allowInsecureAuth', { patroni: { urls: ['http://127.0.0.1:8008'], auth: { username: 'u', password: SECRET } } }, /plain http/],
    ['patroni.urls[1]', { patroni: { urls: ['https://u:a@h:1', `https://u:${SECRET}@h:2`] } }, /patroni.auth/],
    ['hosts', { hosts: [] }, /`hosts`/],
    ['hosts', { hosts: ['127.0.0.1:5433', '127.0.0.1:5433'] }, /twice/],
    ['hosts[1]', { hosts: ['127.0.0.1:5433', '127.0.0.1:99999'] }, /`hosts\[1\]`: has an invalid port/],
    ['connectionString', { connectionString: `mysql://u:${SECRET}@h/db` }, /postgres:\/\//],
    ['connectionString', { connectionString: `postgres://u:${SECRET}@h:5432/db?target_session_attrs=master` }, /target_session_attrs must be one of/],
    ['logger', { logger: {} }, /`logger`/],
    ['pipelining', { pipelining: 'on' }, /`pipelining`: expected an object/],
    ['pipelining.depth', { pipelining: { depth: 0 } }, /`pipelining.depth`/],
    ['pipelining.depth', { pipelining: { depth: 2.5 } }, /`pipelining.depth`: expected an integer/],
    ['pipelining.behindSlowMs', { pipelining: { behindSlowMs: -1 } }, /`pipelining.behindSlowMs`/],
  ];
  for (const [name, input, message] of bad) {
    test(`bad ${name} throws InvalidOptionError naming it, at construction`, () => {
      assert.throws(() => new Pool(input as never), (e: unknown) => {
        assert.ok(e instanceof InvalidOptionError);
        assert.ok(e instanceof TypeError, 'a TypeError, as pg and Node throw for bad arguments');
        assert.equal(e.code, 'PGR_INVALID_OPTION');
        assert.match(e.message, message);
        assert.ok(!e.message.includes(SECRET), 'the message must not echo a credential');
        return true;
      });
    });
  }

  test('the password is hidden from enumeration in pool.options and the client config', () => {
    const pool = new Pool({ connectionString: `postgres://app:${SECRET}@127.0.0.1:5432/db` });
    assert.ok(!JSON.stringify(pool.options).includes(SECRET));
    assert.ok(!JSON.stringify(resolveOptions({ password: SECRET }).clientConfig).includes(SECRET));
    void pool.end();
  });
});

describe('hosts: libpq-style multi-host parsing', () => {
  test('a multi-host connection string', () => {
    const p = parseConnectionString(`postgresql://app:p%40ss@127.0.0.1:5433,127.0.0.1:5434,[::1]:5435/shop?target_session_attrs=read-write&application_name=catalog&sslmode=disable`);
    assert.deepEqual(p.targets, [{ host: '127.0.0.1', port: 5433 }, { host: '127.0.0.1', port: 5434 }, { host: '::1', port: 5435 }]);
    assert.equal(p.targetSessionAttrs, 'read-write');
    assert.equal(p.clientConfig.user, 'app');
    assert.equal(p.clientConfig.password, 'p@ss');
    assert.equal(p.clientConfig.database, 'shop');
    assert.equal(p.clientConfig.application_name, 'catalog');
    assert.equal(p.clientConfig.ssl, false);
  });
  test('default port, load balancing, connect_timeout', () => {
    const p = parseConnectionString('postgres://h1,h2:6000/db?load_balance_hosts=random&connect_timeout=3');
    assert.deepEqual(p.targets, [{ host: 'h1', port: 5432 }, { host: 'h2', port: 6000 }]);
    assert.equal(p.loadBalanceHosts, true);
    assert.equal(p.clientConfig.connectionTimeoutMillis, 3000);
  });
  test('hosts option overrides, with a default port', () => {
    const p = parseHosts({ hosts: ['a', 'b:1', { host: 'c', port: 2 }], port: 7 });
    assert.deepEqual(p.targets, [{ host: 'a', port: 7 }, { host: 'b', port: 1 }, { host: 'c', port: 2 }]);
  });

  test('property: any string gives a result or an InvalidOptionError, never another error or a leak', () => {
    fc.assert(fc.property(fc.string({ maxLength: 80 }), fc.string({ maxLength: 80 }), (a, b) => {
      for (const text of [a, `postgres://u:${SECRET}@${a}/${b}`, `postgresql://${a}?${b}`]) {
        try {
          const r = parseConnectionString(text);
          for (const t of r.targets) assert.ok(Number.isInteger(t.port) && t.port >= 1 && t.port <= 65535);
        } catch (e) {
          assert.ok(e instanceof InvalidOptionError, `unexpected ${String(e)} for ${JSON.stringify(text)}`);
          assert.ok(!e.message.includes(SECRET));
        }
      }
    }), { numRuns: 2000 });
  });

  test('property: host lists round-trip', () => {
    const host = fc.stringMatching(/^[a-z][a-z0-9.-]{0,20}$/);
    const port = fc.integer({ min: 1, max: 65535 });
    fc.assert(fc.property(fc.uniqueArray(fc.tuple(host, port), { minLength: 1, maxLength: 5, selector: ([h, p]) => `${h}:${p}` }), (list) => {
      const text = `postgres://u@${list.map(([h, p]) => `${h}:${p}`).join(',')}/db`;
      assert.deepEqual(parseConnectionString(text).targets.map((t) => [t.host, t.port]), list);
    }), { numRuns: 500 });
  });

  test('property: option validation never throws anything but InvalidOptionError', () => {
    const value = fc.oneof(fc.integer(), fc.double(), fc.string(), fc.boolean(), fc.constant(null), fc.constant(undefined), fc.array(fc.integer(), { maxLength: 3 }), fc.object({ maxDepth: 1 }));
    const keys = ['max', 'min', 'idleTimeoutMillis', 'connectionTimeoutMillis', 'acquireTimeoutMs', 'maxWaitingClients', 'retry', 'breaker', 'hosts', 'targetSessionAttrs', 'loadBalanceHosts', 'patroni', 'maxLagBytes', 'maxUses', 'maxLifetimeSeconds'];
    fc.assert(fc.property(fc.dictionary(fc.constantFrom(...keys), value, { maxKeys: 4 }), (input) => {
      try {
        resolveOptions(input as never);
      } catch (e) {
        assert.ok(e instanceof InvalidOptionError, `unexpected ${String(e)} for ${JSON.stringify(input)}`);
      }
    }), { numRuns: 3000 });
  });
});
