import { invalidOption } from '../errors.ts';
import { boolean, describe, duration, objectOption } from '../option-checks.ts';
import type { HostTarget } from './hosts.ts';

// Patroni discovery's options, defaults and validation (src/options.ts re-exports the types and
// calls resolvePatroni): who may be trusted is a policy of its own.

/** Patroni REST discovery. */
export interface PatroniOptions {
  /** REST endpoints of the Patroni members, e.g. `['http://127.0.0.1:8008']`. Required. */
  urls: string[];
  /** Refresh period of `/cluster` while nothing happens. Defaults to 5000. */
  refreshIntervalMs?: number;
  /**
   * Total deadline of one REST request, from connect to the last byte of the answer (a server
   * that trickles bytes is cut at it). Defaults to 1000.
   */
  requestTimeoutMs?: number;
  /**
   * Basic auth for the REST API (credentials in a URL are taken as this); never logged, hidden
   * from enumeration. Over plain `http:` it is refused unless `allowInsecureAuth`.
   */
  auth?: {
    /** User name. */
    username: string;
    /** Password; never logged. */
    password: string;
  };
  /**
   * Sends Basic auth over plain `http:`, where anyone on the path reads the credentials (and can
   * forge the answers). Defaults to false: `auth` (or credentials in a URL) with an `http:`
   * endpoint throws InvalidOptionError at construction.
   */
  allowInsecureAuth?: boolean;
  /**
   * Hosts a Patroni answer may name as leader or standby (case-insensitive, exact names or IP
   * addresses as Patroni reports them). An answer naming any other host is refused and logged,
   * and discovery keeps its previous view: a forged or misconfigured answer never gets the
   * database password. Defaults to the hosts of `urls` and of the connection string / `host` /
   * `hosts` options. Give it when Patroni reports members under other names (e.g. IPs while the
   * connection string names DNS hosts).
   */
  allowedHosts?: string[];
  /** Extra TLS options for https endpoints (ca, rejectUnauthorized, …). */
  tls?: {
    /** CA certificate(s), PEM. */
    ca?: string | Buffer;
    /** Defaults to Node's default (true). */
    rejectUnauthorized?: boolean;
  };
}

export interface ResolvedPatroni {
  readonly urls: readonly string[];
  readonly refreshIntervalMs: number;
  readonly requestTimeoutMs: number;
  readonly auth: { readonly username: string; readonly password: string } | undefined;
  /** Lower-cased hosts a /cluster answer may name (see `PatroniOptions.allowedHosts`). */
  readonly allowedHosts: ReadonlySet<string>;
  readonly tls: { ca?: string | Buffer; rejectUnauthorized?: boolean } | undefined;
}

export function resolvePatroni(p: PatroniOptions, targets: readonly HostTarget[]): ResolvedPatroni {
  objectOption('patroni', p);
  if (!Array.isArray(p.urls) || p.urls.length === 0) {
    throw invalidOption('patroni.urls', 'expected a non-empty array of http(s) URLs of Patroni REST endpoints');
  }
  if (p.auth !== undefined && (typeof p.auth !== 'object' || p.auth === null || typeof p.auth.username !== 'string' || typeof p.auth.password !== 'string')) {
    throw invalidOption('patroni.auth', 'expected { username: string, password: string }');
  }
  const allowInsecureAuth = boolean('patroni.allowInsecureAuth', p.allowInsecureAuth, false);
  let credentials: { username: string; password: string } | undefined = p.auth;
  const parsed = p.urls.map((u, i) => {
    let url: URL;
    try {
      url = new URL(String(u));
    } catch {
      // Never quoted: the URL may hold credentials.
      throw invalidOption(`patroni.urls[${i}]`, 'not a valid URL');
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      throw invalidOption(`patroni.urls[${i}]`, `expected http: or https:, got ${url.protocol}`);
    }
    if (url.username !== '' || url.password !== '') {
      const fromUrl = { username: safeDecode(url.username), password: safeDecode(url.password) };
      if (credentials !== undefined && (credentials.username !== fromUrl.username || credentials.password !== fromUrl.password)) {
        throw invalidOption(`patroni.urls[${i}]`, 'has credentials other than patroni.auth (or another URL): give them once, in patroni.auth');
      }
      credentials = fromUrl;
    }
    return url;
  });
  if (credentials !== undefined && !allowInsecureAuth) {
    const plain = parsed.findIndex((u) => u.protocol === 'http:');
    if (plain !== -1) {
      throw invalidOption('patroni.allowInsecureAuth', `patroni.urls[${plain}] is plain http: Basic auth there would send the REST credentials in clear, and anyone on the path could forge the answers; use https:, or set patroni.allowInsecureAuth: true to accept that`);
    }
  }
  const urls = parsed.map((u) => u.origin);
  if (new Set(urls).size !== urls.length) throw invalidOption('patroni.urls', 'contains the same endpoint twice');
  let auth: ResolvedPatroni['auth'];
  if (credentials !== undefined) {
    const a = { username: credentials.username } as { username: string; password: string };
    // Hidden from enumeration (logging the options never prints it), then frozen.
    Object.defineProperty(a, 'password', { value: credentials.password, enumerable: false });
    auth = Object.freeze(a);
  }
  return Object.freeze({
    urls: Object.freeze(urls),
    refreshIntervalMs: duration('patroni.refreshIntervalMs', p.refreshIntervalMs, 5000, 50),
    requestTimeoutMs: duration('patroni.requestTimeoutMs', p.requestTimeoutMs, 1000, 10),
    auth,
    allowedHosts: resolveAllowedHosts(p.allowedHosts, parsed, targets),
    tls: p.tls,
  });
}

/** The explicit list, else the hosts the operator named: the REST endpoints' and the connection targets'. */
function resolveAllowedHosts(given: unknown, urls: readonly URL[], targets: readonly HostTarget[]): ReadonlySet<string> {
  if (given === undefined) {
    return new Set([...urls.map((u) => unbracket(u.hostname)), ...targets.map((t) => t.host)].map((h) => h.toLowerCase()));
  }
  if (!Array.isArray(given) || given.length === 0) {
    throw invalidOption('patroni.allowedHosts', `expected a non-empty array of host names or addresses, got ${describe(given)}`);
  }
  return new Set(given.map((h, i) => {
    if (typeof h !== 'string' || h.trim() === '' || /[\s/@?#,]/.test(h)) {
      throw invalidOption(`patroni.allowedHosts[${i}]`, `expected a host name or address, got ${describe(h)}`);
    }
    return unbracket(h.trim()).toLowerCase();
  }));
}

function unbracket(host: string): string {
  return host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
}

function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}
