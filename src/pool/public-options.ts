import type { PoolOptions, ResolvedOptions } from '../options.ts';

/** `pool.options`: the options as given, with pg.Pool's defaults filled in (password hidden from enumeration). */
export type PublicOptions = PoolOptions & { max: number; min: number; idleTimeoutMillis: number; maxUses: number; allowExitOnIdle: boolean; maxLifetimeSeconds: number };

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
  return options;
}
