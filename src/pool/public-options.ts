import type { PoolOptions, ResolvedOptions } from '../options.ts';

/** `pool.options`: the options as given, with pg.Pool's defaults filled in (password hidden from enumeration). */
export type PublicOptions = PoolOptions & {
  /** Connections at most. Defaults to 10. */
  max: number;
  /** Connections kept open when idle. Defaults to 0. */
  min: number;
  /** An idle connection is closed after this; 0: never. Defaults to 10000. */
  idleTimeoutMillis: number;
  /** A connection is closed after this many checkouts. Defaults to Infinity. */
  maxUses: number;
  /** Idle connections do not keep the process alive. Defaults to false. */
  allowExitOnIdle: boolean;
  /** A connection is closed after this age; 0: never. Defaults to 0. */
  maxLifetimeSeconds: number;
};

/** `pool.options`: as given, with pg.Pool's defaults filled in, credentials hidden from enumeration. */
export function publicOptions(config: PoolOptions | undefined, o: ResolvedOptions): PublicOptions {
  const options = { ...(config ?? {}), max: o.max, min: o.min, idleTimeoutMillis: o.idleTimeoutMillis, maxUses: o.maxUses, allowExitOnIdle: o.allowExitOnIdle, maxLifetimeSeconds: o.maxLifetimeMs / 1000 };
  // Like pg-pool's password: kept, but hidden from enumeration so logging or serialising the
  // options never prints a credential (a connection string may hold one too).
  for (const secret of ['password', 'connectionString'] as const) {
    if (secret in options) {
      const value = options[secret];
      delete options[secret];
      Object.defineProperty(options, secret, { value, enumerable: false, writable: true });
    }
  }
  // The Patroni REST credentials likewise: a copy whose auth password is hidden and whose URLs
  // carry no user info (the resolved options hold both).
  if (options.patroni !== undefined && options.patroni !== null && typeof options.patroni === 'object') {
    options.patroni = { ...options.patroni, urls: o.patroni === undefined ? options.patroni.urls : [...o.patroni.urls] };
    if (o.patroni?.auth !== undefined) options.patroni.auth = o.patroni.auth;
  }
  return options;
}
