import assert from 'node:assert/strict';
import { after, before, describe } from 'node:test';
import type pg from 'pg';
import { differential, outcome } from '../helpers/differential.ts';
import { startPgServer, type PgServer } from '../helpers/pg-server.ts';

// TLS exactly as pg does it (issue 26, item 4): the connection string's sslmode, sslrootcert
// and uselibpqcompat, and their precedence over the `ssl` option, mean to pg-resilient what they
// mean to pg.Pool. Three real TLS servers: a self-signed certificate, one signed by a throwaway
// CA for 127.0.0.1/localhost, and one signed by that kind of CA for another name. Our pool must
// connect exactly when pg.Pool does, and when pg refuses, refuse with pg's error as the cause,
// at once (a certificate that does not verify is a configuration error, not an outage).

type Kind = 'self-signed' | 'ca-signed' | 'wrong-name';

interface Seen {
  connected: boolean;
  /** The code (else message) of pg's error: for ours, of the first non-PGR error in the cause chain. */
  cause: string | undefined;
}

/** How long ours may take to refuse: far below retry.maxElapsedMs (15 s), so not retried as an outage. */
const FAIL_FAST_MS = 5000;

function rootCause(err: unknown): { code: string | undefined; message: string } {
  let e: unknown = err;
  for (let i = 0; i < 10 && e instanceof Error; i += 1) {
    const code = (e as { code?: unknown }).code;
    if (!(typeof code === 'string' && code.startsWith('PGR_')) && !(e as { name?: string }).name?.startsWith('PgResilient')) {
      return { code: typeof code === 'string' ? code : undefined, message: e.message };
    }
    e = (e as { cause?: unknown }).cause;
  }
  return { code: undefined, message: e instanceof Error ? e.message : String(e) };
}

export function tlsCases(): void {
  describe('differential: TLS as pg does it', () => {
    const servers = new Map<Kind, PgServer>();
    before(async () => {
      const [a, b, c] = await Promise.all([
        startPgServer({ ssl: true }),
        startPgServer({ ssl: { ca: true } }),
        startPgServer({ ssl: { ca: true, names: 'DNS:db.other.invalid' } }),
      ]);
      servers.set('self-signed', a).set('ca-signed', b).set('wrong-name', c);
    });
    after(async () => {
      await Promise.all([...servers.values()].map((s) => s.destroy()));
    });

    /** The pool `make` builds (ours may refuse a bad configuration at construction), then its first query. */
    const connect = async (make: () => pg.Pool, kind: 'pg' | 'ours'): Promise<Seen> => {
      // pg.Pool throws its parser's errors synchronously from query(); ours from the constructor.
      const o = await outcome(Promise.resolve().then(() => make().query('SELECT 1 AS one')), 12_000);
      if (o.status === 'resolved') return { connected: true, cause: undefined };
      if (o.status === 'pending') return { connected: false, cause: 'still pending after 12 s' };
      const root = rootCause(o.raw);
      if (kind === 'ours') {
        assert.ok(o.ms < FAIL_FAST_MS, `pg-resilient took ${o.ms} ms to refuse (retried a TLS configuration error?)`);
        assert.match(String((o.raw as Error).message), /TLS|SSL|certificate|CA|sslrootcert/i, 'our error names the TLS problem');
      }
      return { connected: false, cause: root.code ?? root.message };
    };

    const modes: Array<{ label: string; params: string }> = [
      { label: 'sslmode=disable', params: 'sslmode=disable' },
      { label: 'sslmode=prefer', params: 'sslmode=prefer' },
      { label: 'sslmode=require', params: 'sslmode=require' },
      { label: 'sslmode=verify-ca', params: 'sslmode=verify-ca' },
      { label: 'sslmode=verify-full', params: 'sslmode=verify-full' },
      { label: 'uselibpqcompat=true&sslmode=require', params: 'uselibpqcompat=true&sslmode=require' },
      { label: 'uselibpqcompat=true&sslmode=verify-ca', params: 'uselibpqcompat=true&sslmode=verify-ca' },
    ];

    /** docs/security.md's table: does pg connect? (checked on pg.Pool, so the table cannot drift) */
    const pgConnects = (kind: Kind, mode: string, rootcert: boolean): boolean => {
      if (mode === 'sslmode=disable') return true;
      if (mode === 'uselibpqcompat=true&sslmode=require') return true; // chain checked only with sslrootcert; never the name
      if (mode === 'uselibpqcompat=true&sslmode=verify-ca') return rootcert; // sslrootcert required; never the name
      // pg 8's prefer/require/verify-ca/verify-full: chain and host name, no plaintext fallback.
      return rootcert && kind !== 'wrong-name';
    };

    for (const kind of ['self-signed', 'ca-signed', 'wrong-name'] as const) {
      for (const mode of modes) {
        for (const rootcert of [false, true]) {
          const name = `${kind} certificate, ${mode.label}${rootcert ? ' with sslrootcert' : ''}: connects exactly when pg.Pool does`;
          differential(name, async (s): Promise<Seen> => {
            const srv = servers.get(kind)!;
            const params = rootcert ? `${mode.params}&sslrootcert=${encodeURIComponent(srv.caCertFile!)}` : mode.params;
            return connect(() => s.rawPool({ connectionString: `${srv.connectionString}?${params}`, max: 1 }, { retry: { maxElapsedMs: 15_000 } }), s.kind);
          }, { timeoutMs: 30_000, expectPg: (o) => assert.equal(o.connected, pgConnects(kind, mode.label, rootcert), `pg.Pool: ${JSON.stringify(o)}`) });
        }
      }
    }

    // pg: the connection string's TLS settings override the `ssl` option (ConnectionParameters
    // assigns the parsed string over the config), and without any in the string the option counts.
    differential('sslmode=require in the string overrides ssl: { rejectUnauthorized: false } (self-signed: refused)', async (s) => {
      const srv = servers.get('self-signed')!;
      return connect(() => s.rawPool({ connectionString: `${srv.connectionString}?sslmode=require`, ssl: { rejectUnauthorized: false }, max: 1 }, { retry: { maxElapsedMs: 15_000 } }), s.kind);
    }, { expectPg: (o) => assert.equal(o.connected, false), timeoutMs: 30_000 });

    differential('no TLS parameter in the string: the ssl option ({ ca }) is used (CA-signed: connects)', async (s) => {
      const srv = servers.get('ca-signed')!;
      const pool = s.rawPool({ connectionString: srv.connectionString, ssl: { ca: srv.caCertPem! }, max: 1 }, { retry: { maxElapsedMs: 15_000 } });
      const seen = await connect(() => pool, s.kind);
      const r = await pool.query<{ ssl: boolean }>('SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()').catch(() => undefined);
      return { ...seen, ssl: r?.rows[0]?.ssl };
    }, { expectPg: (o) => assert.deepEqual(o, { connected: true, cause: undefined, ssl: true }), timeoutMs: 30_000 });

    differential('sslmode=require against a server without TLS: refused as pg refuses, at once', async (s) => {
      const srv = s.server;
      return connect(() => s.rawPool({ connectionString: `${srv.connectionString}?sslmode=require`, max: 1 }, { retry: { maxElapsedMs: 15_000 } }), s.kind);
    }, { expectPg: (o) => assert.equal(o.connected, false), timeoutMs: 30_000 });

    differential('multi-host string: every host gets the string\'s TLS settings (self-signed, sslmode=verify-full: refused)', async (s) => {
      const srv = servers.get('self-signed')!;
      // pg.Pool takes one host; ours is given two, both the same server on two spellings.
      const cs = s.kind === 'pg'
        ? `${srv.connectionString}?sslmode=verify-full`
        : `postgresql://${srv.user}:${encodeURIComponent(srv.password)}@127.0.0.1:${srv.port},localhost:${srv.port}/${srv.database}?sslmode=verify-full`;
      return connect(() => s.rawPool({ connectionString: cs, max: 1 }, { retry: { maxElapsedMs: 15_000 } }), s.kind);
    }, { expectPg: (o) => assert.equal(o.connected, false), timeoutMs: 30_000 });
  });
}
