import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { inspect } from 'node:util';
import * as promClient from 'prom-client';
import { MeterProvider, MetricReader } from '@opentelemetry/sdk-metrics';
import pg from 'pg';
import { Pool } from '../../src/index.ts';
import { instrumentPool } from '../../src/observe/metrics.ts';
import { defaultPoolName, instrumentPoolOtel } from '../../src/observe/otel.ts';
import { capturingLogger, type LogCall } from '../helpers/logger.ts';
import { startPgServer, type PgServer } from '../helpers/pg-server.ts';

// No error, event, log line, metric label, OpenTelemetry attribute or enumeration of
// pool.options holds any part of a password, whatever characters it has (issue 26, item 6):
// passwords with / ? @ # % (and a mix, and a literal percent-encoding), given as the `password`
// option and in connection strings, encoded and unencoded. Each password is made of distinctive
// tokens between those characters; no token may appear anywhere. Real server: the right password
// connects (so the forms are read as pg reads them), a wrong one and a refused port fail.

class Reader extends MetricReader {
  protected onShutdown(): Promise<void> {
    return Promise.resolve();
  }
  protected onForceFlush(): Promise<void> {
    return Promise.resolve();
  }
}

const PASSWORDS: ReadonlyArray<[string, string]> = [
  ['slash', 'Ab1cDx/eF2gHy'],
  ['question mark', 'Qz7xWk?mN4vBj'],
  ['at sign', 'Lk9jHq@gF5dSw'],
  ['hash', 'Po3iUz#yT6rEe'],
  ['percent', 'Wq2eRc%tY8uIo'],
  ['a literal percent-encoding', 'Mn7bVf%41cX9zp'],
  ['a mix', 'Zx4cVa/bN6mKq?Kj8hGs@Gf1dRt#Sa3pLm%Oi5uYh'],
];

/** The pieces of `password` between special characters: none may show anywhere. */
function tokens(password: string): string[] {
  return [password, encodeURIComponent(password), ...password.split(/[/?@#%]/).filter((t) => t.length >= 4)];
}

function leaks(text: string, password: string): string[] {
  return tokens(password).filter((t) => text.includes(t));
}

describe('no part of a password in errors, events, logs, metrics, OTel or pool.options', () => {
  let server: PgServer;
  let refusedPort = 0;
  before(async () => {
    server = await startPgServer();
    for (const [i, [, password]] of PASSWORDS.entries()) {
      await server.admin(`CREATE ROLE redact_${i} LOGIN PASSWORD '${password.replace(/'/g, "''")}'`);
    }
    const closed = net.createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', () => r()));
    refusedPort = (closed.address() as net.AddressInfo).port;
    await new Promise<void>((r) => closed.close(() => r()));
  });
  after(async () => {
    await server.destroy();
  });

  for (const [i, [label, password]] of PASSWORDS.entries()) {
    const user = `redact_${i}`;
    const forms: Array<[string, (port: number, pw: string) => Record<string, unknown>]> = [
      ['the password option', (port, pw) => ({ host: '127.0.0.1', port, user, database: 'postgres', password: pw })],
      ['an encoded connection string', (port, pw) => ({ connectionString: `postgresql://${user}:${encodeURIComponent(pw)}@127.0.0.1:${port}/postgres` })],
      ['an unencoded connection string', (port, pw) => ({ connectionString: `postgresql://${user}:${pw}@127.0.0.1:${port}/postgres` })],
    ];
    for (const [form, config] of forms) {
      test(`${label} in ${form}: right password, wrong password, refused port, parse errors`, async () => {
        const out: string[] = [];
        const record = (...args: unknown[]): void => {
          out.push(args.map((a) => (typeof a === 'string' ? a : inspect(a, { depth: 10 }))).join(' '));
        };
        const rows: string[] = [];
        for (const [row, port, pw] of [
          ['right', server.port, password],
          ['wrong', server.port, `${password}Wrong`],
          ['refused', refusedPort, password],
        ] as const) {
          const calls: LogCall[] = [];
          let pool: Pool;
          try {
            pool = new Pool({ ...config(port, pw), logger: capturingLogger(calls), retry: { maxElapsedMs: 400 }, max: 1 } as never);
          } catch (err) {
            // The unencoded forms pg's parser refuses: refused here too, at construction.
            record('construction', err, (err as Error).message, String((err as Error).stack));
            rows.push(`${row}: refused at construction`);
            continue;
          }
          for (const e of ['retry', 'giveUp', 'failover', 'connectionRetired', 'failoverReport', 'error', 'breaker', 'callEnd', 'connectionCreated'] as const) {
            pool.on(e, (...args: unknown[]) => record(e, ...args));
          }
          const registry = new promClient.Registry();
          const metrics = instrumentPool(pool, { client: promClient, registry });
          const reader = new Reader();
          const provider = new MeterProvider({ readers: [reader] });
          const otel = instrumentPoolOtel(pool, { meterProvider: provider });
          try {
            const result = await pool.query('SELECT current_user AS u').then((r) => `connected as ${r.rows[0].u}`, (err: unknown) => {
              record('query error', err, (err as Error).message, String((err as Error).stack));
              return `failed: ${(err as { code?: string }).code ?? (err as Error).message.slice(0, 60)}`;
            });
            rows.push(`${row}: ${result}`);
            record('options', JSON.stringify(pool.options), inspect(pool.options, { depth: 6 }), Object.keys(pool.options).join(','));
            record('pool', pool);
            record('defaultPoolName', defaultPoolName(pool.options as never));
            record('metrics', await registry.metrics());
            const { resourceMetrics } = await reader.collect();
            record('otel', JSON.stringify(resourceMetrics.scopeMetrics.map((s) => s.metrics.map((m) => m.dataPoints.map((p) => p.attributes)))));
            record('logs', calls.map((c) => `${c.level} ${c.message} ${inspect(c.fields, { depth: 8 })}`).join('\n'));
          } finally {
            otel.close();
            metrics.close();
            await pool.end();
            await provider.shutdown();
          }
        }
        const text = out.join('\n');
        console.log(`# ${label} / ${form}: ${rows.join('; ')}; ${text.length} characters checked`);
        if (form !== 'an unencoded connection string') {
          assert.equal(rows[0], `right: connected as ${user}`, 'the password was read as given');
          assert.match(rows[1]!, /28P01/, 'a wrong password fails with pg\'s error');
        }
        if (form === 'an unencoded connection string') {
          // Read as pg.Pool reads it (a literal %41 is an "A" to pg too), or refused where pg refuses.
          const control = new pg.Pool({ ...config(server.port, password), max: 1 } as pg.PoolConfig);
          const seen = await Promise.resolve().then(() => control.query('SELECT 1')).then(() => 'connected', (err: Error & { code?: string }) => (err.code === '28P01' ? '28P01' : 'refused'));
          await control.end();
          const ours = rows[0]!.includes('connected') ? 'connected' : rows[0]!.includes('28P01') ? '28P01' : 'refused';
          assert.equal(ours, seen, `pg.Pool: ${seen}; pg-resilient: ${rows[0]}`);
        }
        assert.deepEqual(leaks(text, password), [], `a part of the password leaked:\n${text.slice(0, 3000)}`);
      });
    }
  }
});
