import type { ClientConfig } from 'pg';
import { InvalidOptionError } from '../errors.ts';

/** Which servers a connection may go to, as libpq's `target_session_attrs`. */
export type TargetSessionAttrs = 'any' | 'read-write' | 'read-only' | 'primary' | 'standby' | 'prefer-standby';
// The type is spelled out for readers of the declarations; the list must match it both ways:
// `satisfies` admits only its values, and `allListed` fails to compile if one is missing.
export const TARGET_SESSION_ATTRS = ['any', 'read-write', 'read-only', 'primary', 'standby', 'prefer-standby'] as const satisfies readonly TargetSessionAttrs[];
const allListed: [TargetSessionAttrs] extends [(typeof TARGET_SESSION_ATTRS)[number]] ? true : never = true;
void allListed;

/** One host:port to connect to. */
export interface HostTarget {
  /** Host name or IP address. */
  readonly host: string;
  /** TCP port. */
  readonly port: number;
}

export interface ParsedHosts {
  /** Connection settings found in the connection string (user, database, ssl, …), minus hosts. */
  readonly clientConfig: ClientConfig;
  readonly targets: readonly HostTarget[];
  readonly targetSessionAttrs: TargetSessionAttrs | undefined;
  readonly loadBalanceHosts: boolean | undefined;
}

export interface HostInput {
  connectionString?: string | undefined;
  hosts?: Array<string | { host: string; port?: number }> | undefined;
  host?: string | undefined;
  port?: number | undefined;
}

const DEFAULT_PORT = 5432;

/**
 * Reads the hosts and settings of a libpq-style configuration: a connection string
 * (`postgres://u:p@h1:5433,h2:5434/db?target_session_attrs=read-write`), a `hosts` array, or
 * pg's `host`/`port`. Errors name the part that is wrong and never echo the string itself,
 * which may hold a password.
 */
export function parseHosts(input: HostInput): ParsedHosts {
  let fromString: ParsedHosts | undefined;
  if (input.connectionString !== undefined) {
    if (typeof input.connectionString !== 'string') {
      throw new InvalidOptionError('connectionString', `expected a string, got ${typeof input.connectionString}`);
    }
    fromString = parseConnectionString(input.connectionString);
  }

  let targets: readonly HostTarget[] | undefined;
  if (input.hosts !== undefined) {
    if (!Array.isArray(input.hosts) || input.hosts.length === 0) {
      throw new InvalidOptionError('hosts', 'expected a non-empty array of "host:port" strings or { host, port } objects');
    }
    targets = input.hosts.map((h, i) => {
      if (typeof h === 'string') return parseHostPort(h, `hosts[${i}]`, input.port ?? DEFAULT_PORT);
      if (typeof h === 'object' && h !== null && typeof h.host === 'string') {
        return validTarget(h.host, h.port ?? input.port ?? DEFAULT_PORT, `hosts[${i}]`);
      }
      throw new InvalidOptionError(`hosts[${i}]`, 'expected "host:port" or { host, port }');
    });
  } else if (input.host !== undefined) {
    if (typeof input.host !== 'string') throw new InvalidOptionError('host', `expected a string, got ${typeof input.host}`);
    // pg accepts a comma-free host only; a list in `host` is read the libpq way.
    const port = input.port ?? fromString?.targets[0]?.port ?? DEFAULT_PORT;
    targets = input.host.split(',').map((h, i) => parseHostPort(h, input.host!.includes(',') ? `host[${i}]` : 'host', port));
  } else if (fromString !== undefined && fromString.targets.length > 0) {
    targets = input.port !== undefined && fromString.targets.length === 1
      ? [validTarget(fromString.targets[0]!.host, input.port, 'port')]
      : fromString.targets;
  } else {
    targets = [validTarget(process.env.PGHOST ?? 'localhost', input.port ?? numberEnv('PGPORT') ?? DEFAULT_PORT, 'port')];
  }

  const seen = new Set<string>();
  for (const t of targets) {
    const key = `${t.host.toLowerCase()}:${t.port}`;
    if (seen.has(key)) throw new InvalidOptionError(input.hosts !== undefined ? 'hosts' : 'connectionString', `lists ${t.host}:${t.port} twice`);
    seen.add(key);
  }

  return {
    clientConfig: fromString?.clientConfig ?? {},
    targets: Object.freeze(targets),
    targetSessionAttrs: fromString?.targetSessionAttrs,
    loadBalanceHosts: fromString?.loadBalanceHosts,
  };
}

function numberEnv(name: string): number | undefined {
  const v = process.env[name];
  return v === undefined || v === '' ? undefined : Number(v);
}

/** Parses `postgres[ql]://[user[:password]@][host[:port][,host[:port]]…][/database][?params]`. */
export function parseConnectionString(text: string): ParsedHosts {
  const scheme = /^(postgres|postgresql):\/\//i.exec(text);
  if (scheme === null) {
    throw new InvalidOptionError('connectionString', 'expected a URL starting with postgres:// or postgresql://');
  }
  const rest = text.slice(scheme[0].length);
  const pathStart = indexOfAny(rest, ['/', '?']);
  const authority = pathStart === -1 ? rest : rest.slice(0, pathStart);
  const tail = pathStart === -1 ? '' : rest.slice(pathStart);
  const at = authority.lastIndexOf('@');
  const userinfo = at === -1 ? '' : authority.slice(0, at);
  const hostList = at === -1 ? authority : authority.slice(at + 1);

  // WHATWG URL does the percent-decoding of everything but the host list.
  let url: URL;
  try {
    url = new URL(`postgres://${userinfo}${userinfo === '' ? '' : '@'}placeholder${tail}`);
  } catch {
    throw new InvalidOptionError('connectionString', 'is not a valid URL (check the user, password, database and parameters for characters that need percent-encoding)');
  }
  const config: Record<string, unknown> = {};
  if (url.username !== '') config.user = decode(url.username, 'user');
  if (url.password !== '') config.password = decode(url.password, 'password');
  const database = url.pathname.replace(/^\//, '');
  if (database !== '') config.database = decode(database, 'database');

  const params = url.searchParams;
  const defaultPort = params.has('port') ? portNumber(params.get('port')!, 'connectionString parameter port') : DEFAULT_PORT;
  let targetSessionAttrs: TargetSessionAttrs | undefined;
  let loadBalanceHosts: boolean | undefined;
  for (const [key, value] of params) {
    switch (key) {
      case 'target_session_attrs':
        if (!(TARGET_SESSION_ATTRS as readonly string[]).includes(value)) {
          throw new InvalidOptionError('connectionString', `target_session_attrs must be one of ${TARGET_SESSION_ATTRS.join(', ')}, got ${JSON.stringify(value)}`);
        }
        targetSessionAttrs = value as TargetSessionAttrs;
        break;
      case 'load_balance_hosts':
        if (value !== 'random' && value !== 'disable') {
          throw new InvalidOptionError('connectionString', `load_balance_hosts must be random or disable, got ${JSON.stringify(value)}`);
        }
        loadBalanceHosts = value === 'random';
        break;
      case 'sslmode':
        config.ssl = sslFromMode(value);
        break;
      case 'connect_timeout': {
        const seconds = Number(value);
        if (!Number.isFinite(seconds) || seconds < 0) throw new InvalidOptionError('connectionString', `connect_timeout must be seconds ≥ 0, got ${JSON.stringify(value)}`);
        if (seconds > 0) config.connectionTimeoutMillis = seconds * 1000;
        break;
      }
      case 'application_name':
      case 'fallback_application_name':
      case 'options':
      case 'client_encoding':
        config[key] = value;
        break;
      case 'port':
      case 'host':
        break;
      default:
        // Unknown parameters are passed to pg as it does itself (it ignores what it doesn't know).
        config[key] = value;
    }
  }

  let targets: HostTarget[];
  if (hostList === '') {
    const hostParam = params.get('host');
    targets = hostParam === null ? [] : hostParam.split(',').map((h, i) => parseHostPort(h, `connectionString host #${i + 1}`, defaultPort));
  } else {
    targets = hostList.split(',').map((h, i) => parseHostPort(decodeHost(h), `connectionString host #${i + 1}`, defaultPort));
  }
  return { clientConfig: config as ClientConfig, targets, targetSessionAttrs, loadBalanceHosts };
}

function sslFromMode(mode: string): ClientConfig['ssl'] {
  switch (mode) {
    case 'disable':
      return false;
    case 'prefer':
    case 'require':
    case 'no-verify':
      // libpq's "require" encrypts without verifying the certificate.
      return { rejectUnauthorized: false };
    case 'verify-ca':
    case 'verify-full':
      return true;
    default:
      throw new InvalidOptionError('connectionString', `sslmode must be disable, prefer, require, verify-ca or verify-full, got ${JSON.stringify(mode)}`);
  }
}

function decode(value: string, what: string): string {
  try {
    return decodeURIComponent(value);
  } catch {
    throw new InvalidOptionError('connectionString', `the ${what} has a malformed percent-encoding`);
  }
}

function decodeHost(value: string): string {
  return decode(value, 'host list');
}

/** Parses `host`, `host:port`, `[v6]` or `[v6]:port`. */
export function parseHostPort(text: string, where: string, defaultPort: number): HostTarget {
  const trimmed = text.trim();
  if (trimmed === '') throw new InvalidOptionError(where, 'is an empty host');
  if (trimmed.startsWith('[')) {
    const close = trimmed.indexOf(']');
    if (close === -1) throw new InvalidOptionError(where, `has an unclosed "[" in ${JSON.stringify(trimmed)}`);
    const host = trimmed.slice(1, close);
    const after = trimmed.slice(close + 1);
    if (after !== '' && !after.startsWith(':')) throw new InvalidOptionError(where, `has unexpected text after "]" in ${JSON.stringify(trimmed)}`);
    return validTarget(host, after === '' ? defaultPort : portNumber(after.slice(1), where), where);
  }
  const colon = trimmed.lastIndexOf(':');
  if (colon !== -1 && trimmed.indexOf(':') !== colon) {
    // Several colons and no brackets: a bare IPv6 address without a port.
    return validTarget(trimmed, defaultPort, where);
  }
  if (colon === -1) return validTarget(trimmed, defaultPort, where);
  return validTarget(trimmed.slice(0, colon), portNumber(trimmed.slice(colon + 1), where), where);
}

function portNumber(text: string, where: string): number {
  if (!/^\d{1,5}$/.test(text)) throw new InvalidOptionError(where, `has an invalid port ${JSON.stringify(text.slice(0, 12))}`);
  return Number(text);
}

function validTarget(host: string, port: unknown, where: string): HostTarget {
  if (typeof host !== 'string' || host.trim() === '') throw new InvalidOptionError(where, 'is an empty host');
  if (/[\s/@?#]/.test(host) && !host.startsWith('/')) {
    throw new InvalidOptionError(where, `has an invalid host name ${JSON.stringify(host.slice(0, 64))}`);
  }
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new InvalidOptionError(where, `has an invalid port ${JSON.stringify(port)} (expected 1-65535)`);
  }
  return Object.freeze({ host, port });
}

function indexOfAny(text: string, chars: string[]): number {
  let best = -1;
  for (const c of chars) {
    const i = text.indexOf(c);
    if (i !== -1 && (best === -1 || i < best)) best = i;
  }
  return best;
}
