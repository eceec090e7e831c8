// The set-up every fault test shares: a throwaway PostgreSQL and a fault proxy in front of it,
// started before the suite's tests and torn down after them.
import { after, before } from 'node:test';
import type { PoolOptions } from '../../src/index.ts';
import { startFaultProxy, type FaultProxy, type FaultProxyTarget } from './fault-proxy.ts';
import { startPgServer, type PgServer, type StartPgServerOptions } from './pg-server.ts';

/** Anything that sits between the client and the server and can be closed. */
export interface ProxyLike {
  readonly port: number;
  close(): Promise<void>;
}

export interface FaultFixture<P extends ProxyLike> {
  readonly server: PgServer;
  readonly proxy: P;
  /** Options for a pool (or pg.Pool) that connects through the proxy; `extra` overrides. */
  via(extra?: PoolOptions): PoolOptions;
}

export interface FaultFixtureOptions<P extends ProxyLike> {
  server?: StartPgServerOptions;
  /** Starts the proxy in front of the server; the fault proxy from fault-proxy.ts by default. */
  proxy?: (target: FaultProxyTarget) => Promise<P>;
  /** Runs once the server and the proxy are up (tables, roles). */
  setup?: (server: PgServer) => Promise<void>;
}

/**
 * Registers `before`/`after` hooks in the enclosing `describe` and returns the fixture, whose
 * fields can be read from the tests (not before the hooks ran).
 *
 * @example
 * describe('partitions', () => {
 *   const f = useFaultFixture();
 *   test('…', async () => { await f.proxy.blackhole(); const pool = new Pool(f.via({ max: 2 })); … });
 * });
 */
export function useFaultFixture(): FaultFixture<FaultProxy>;
export function useFaultFixture<P extends ProxyLike>(options: FaultFixtureOptions<P> & { proxy: (target: FaultProxyTarget) => Promise<P> }): FaultFixture<P>;
export function useFaultFixture(options: FaultFixtureOptions<FaultProxy>): FaultFixture<FaultProxy>;
export function useFaultFixture<P extends ProxyLike>(options: FaultFixtureOptions<P> = {}): FaultFixture<P> {
  let server: PgServer | undefined;
  let proxy: P | undefined;
  const startProxy = options.proxy ?? ((target: FaultProxyTarget) => startFaultProxy(target) as unknown as Promise<P>);
  before(async () => {
    server = await startPgServer(options.server);
    proxy = await startProxy({ host: server.host, port: server.port });
    await options.setup?.(server);
  });
  after(async () => {
    await proxy?.close();
    await server?.destroy();
  });
  const ready = <T>(v: T | undefined, what: string): T => {
    if (v === undefined) throw new Error(`fault fixture: ${what} is not started yet (read it inside a test)`);
    return v;
  };
  return {
    get server() {
      return ready(server, 'the server');
    },
    get proxy() {
      return ready(proxy, 'the proxy');
    },
    via(extra: PoolOptions = {}) {
      const s = ready(server, 'the server');
      return { ...s.config, host: '127.0.0.1', port: ready(proxy, 'the proxy').port, ...extra };
    },
  };
}
