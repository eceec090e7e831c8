import type { ClientConfig } from 'pg';
import { createRequire } from 'node:module';
import { invalidOption } from '../errors.ts';

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
      throw invalidOption('connectionString', `expected a string, got ${typeof input.connectionString}`);
    }
    fromString = parseConnectionString(input.connectionString);
  }

  let targets: readonly HostTarget[] | undefined;
  if (input.hosts !== undefined) {
    if (!Array.isArray(input.hosts) || input.hosts.length === 0) {
      throw invalidOption('hosts', 'expected a non-empty array of "host:port" strings or { host, port } objects');
    }
    targets = input.hosts.map((h, i) => {
      if (typeof h === 'string') return parseHostPort(h, `hosts[${i}]`, input.port ?? DEFAULT_PORT);
      if (typeof h === 'object' && h !== null && typeof h.host === 'string') {
        return validTarget(h.host, h.port ?? input.port ?? DEFAULT_PORT, `hosts[${i}]`);
      }
      throw invalidOption(`hosts[${i}]`, 'expected "host:port" or { host, port }');
    });
  } else if (input.host !== undefined) {
    if (typeof input.host !== 'string') throw invalidOption('host', `expected a string, got ${typeof input.host}`);
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
    if (seen.has(key)) throw invalidOption(input.hosts !== undefined ? 'hosts' : 'connectionString', `lists ${t.host}:${t.port} twice`);
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

/**
 * Parses `postgres[ql]://[user[:password]@][host[:port][,host[:port]]…][/database][?params]`.
 * The host list is ours (pg takes one host); everything else, TLS included (`sslmode`,
 * `sslrootcert`, `sslcert`, `sslkey`, `uselibpqcompat`), is read by pg's own parser, so it means
 * exactly what it means to pg.Pool. No error quotes the string: it may hold a password, and a
 * password with an unencoded `/`, `?`, `#` or `@` would move the boundaries any quote relies on.
 */
export function parseConnectionString(text: string): ParsedHosts {
  const scheme = /^(postgres|postgresql):\/\//i.exec(text);
  if (scheme === null) {
    throw invalidOption('connectionString', 'expected a URL starting with postgres:// or postgresql://');
  }
  const rest = text.slice(scheme[0].length);
  // Where WHATWG URL (pg's parser) ends the authority, and takes the last "@" in it as the end of
  // the user info: the same split here, so the host list we read is the one pg would see.
  const pathStart = indexOfAny(rest, ['/', '?']);
  const authority = pathStart === -1 ? rest : rest.slice(0, pathStart);
  const tail = pathStart === -1 ? '' : rest.slice(pathStart);
  const at = authority.lastIndexOf('@');
  const userinfo = at === -1 ? '' : authority.slice(0, at);
  const hostList = at === -1 ? authority : authority.slice(at + 1);

  // pg's parser sees one host: a placeholder it accepts, whose host and port are then dropped.
  const single = `${scheme[0]}${userinfo}${at === -1 ? '' : '@'}${PLACEHOLDER_HOST}${tail}`;
  const parsed = parseWithPg(single, userinfo);

  const params = new Map<string, string>();
  for (const [k, v] of Object.entries(parsed)) if (typeof v === 'string') params.set(k, v);
  const defaultPort = params.has('port') && params.get('port') !== '' ? portNumber(params.get('port')!, 'connectionString parameter port') : DEFAULT_PORT;
  let targetSessionAttrs: TargetSessionAttrs | undefined;
  let loadBalanceHosts: boolean | undefined;
  const tsa = params.get('target_session_attrs');
  if (tsa !== undefined) {
    if (!(TARGET_SESSION_ATTRS as readonly string[]).includes(tsa)) {
      throw invalidOption('connectionString', `target_session_attrs must be one of ${TARGET_SESSION_ATTRS.join(', ')}, got ${JSON.stringify(tsa.slice(0, 20))}`);
    }
    targetSessionAttrs = tsa as TargetSessionAttrs;
  }
  const lbh = params.get('load_balance_hosts');
  if (lbh !== undefined) {
    if (lbh !== 'random' && lbh !== 'disable') {
      throw invalidOption('connectionString', `load_balance_hosts must be random or disable, got ${JSON.stringify(lbh.slice(0, 20))}`);
    }
    loadBalanceHosts = lbh === 'random';
  }

  let targets: HostTarget[];
  const hostParam = parsed.host !== PLACEHOLDER_HOST && typeof parsed.host === 'string' ? parsed.host : undefined;
  if (hostList === '' || hostParam !== undefined) {
    // libpq's `?host=a,b` (pg's parser gives the parameter precedence over the authority too).
    targets = hostParam === undefined ? [] : hostParam.split(',').map((h, i) => parseHostPort(h, `connectionString host #${i + 1}`, defaultPort, false));
  } else {
    targets = hostList.split(',').map((h, i) => parseHostPort(decodeHost(h), `connectionString host #${i + 1}`, defaultPort, false));
  }
  // What pg.Client takes from the string: everything pg's parser produced but the host and port,
  // which are ours (per target), and the multi-host parameters pg does not know.
  const config: Record<string, unknown> = { ...parsed };
  delete config.host;
  delete config.port;
  const ssl = config.ssl;
  if (typeof ssl === 'object' && ssl !== null && 'key' in ssl) {
    // The client key read from sslkey, hidden from enumeration as pg hides it.
    Object.defineProperty(ssl, 'key', { enumerable: false });
  }
  const connectTimeout = params.get('connect_timeout');
  if (connectTimeout !== undefined) {
    // libpq's seconds (pg itself ignores the parameter and reads connectionTimeoutMillis).
    const seconds = Number(connectTimeout);
    if (!Number.isFinite(seconds) || seconds < 0) throw invalidOption('connectionString', `connect_timeout must be seconds ≥ 0, got ${JSON.stringify(connectTimeout.slice(0, 20))}`);
    if (seconds > 0) config.connectionTimeoutMillis = seconds * 1000;
  }
  // pg's parser reads the password the way pg does (a `password` parameter wins over the user
  // info), and keeps it; it is hidden from enumeration where the options are resolved.
  return { clientConfig: config as ClientConfig, targets, targetSessionAttrs, loadBalanceHosts };
}

/** Accepted by WHATWG URL and pg's parser alike; never connected to (its host and port are dropped). */
const PLACEHOLDER_HOST = 'pgr-host-placeholder.invalid';

type PgParse = (text: string, options?: Record<string, unknown>) => Record<string, unknown>;
let pgParse: PgParse | undefined;

/**
 * pg-connection-string as pg itself resolves it (pg's dependency, not ours: the same version
 * pg.Pool parses with). Loaded from pg's own location so a nested copy under pg is the one used.
 */
function loadPgParse(): PgParse {
  if (pgParse === undefined) {
    const fromHere = createRequire(import.meta.url);
    const fromPg = createRequire(fromHere.resolve('pg'));
    const mod = fromPg('pg-connection-string') as PgParse & { parse?: PgParse };
    pgParse = typeof mod.parse === 'function' ? mod.parse : mod;
  }
  return pgParse;
}

function parseWithPg(single: string, userinfo: string): Record<string, unknown> {
  try {
    // pg's ConnectionParameters calls parse(connectionString) with no options: so do we.
    return loadPgParse()(single);
  } catch (err) {
    const e = err instanceof Error ? err : new Error(String(err));
    // pg's own messages (an invalid URL, its SECURITY WARNING for verify-ca, a certificate file
    // it could not read) name no credential; any part of the user info is cut all the same.
    const message = redactUserinfo(e.message, userinfo);
    const code = (e as { code?: unknown }).code;
    const what = e instanceof TypeError && /url/i.test(message)
      ? 'is not a valid URL to pg\'s parser (check the user, password, database and parameters for characters that need percent-encoding: / ? # @ % and spaces)'
      : `was refused by pg's parser: ${message}${typeof code === 'string' ? ` (${code})` : ''}`;
    throw invalidOption('connectionString', what, e);
  }
}

/** Removes the user info and each of its parts (decoded too) from a message. */
function redactUserinfo(message: string, userinfo: string): string {
  if (userinfo === '') return message;
  const parts = new Set<string>([userinfo, ...userinfo.split(/[:@/?#]/)]);
  for (const p of [...parts]) {
    try {
      parts.add(decodeURIComponent(p));
    } catch {
      // a malformed encoding: the raw form is cut
    }
  }
  let out = message;
  for (const p of [...parts].filter((x) => x.length >= 3).sort((a, b) => b.length - a.length)) out = out.split(p).join('***');
  return out;
}

function decode(value: string, what: string): string {
  try {
    return decodeURIComponent(value);
  } catch {
    throw invalidOption('connectionString', `the ${what} has a malformed percent-encoding`);
  }
}

function decodeHost(value: string): string {
  return decode(value, 'host list');
}

/**
 * Parses `host`, `host:port`, `[v6]` or `[v6]:port`. `quote`: errors may show the text (not for
 * text from a connection string, where a misplaced boundary could make it part of a password).
 */
export function parseHostPort(text: string, where: string, defaultPort: number, quote = true): HostTarget {
  const show = (t: string): string => (quote ? ` in ${JSON.stringify(t)}` : '');
  const trimmed = text.trim();
  if (trimmed === '') throw invalidOption(where, 'is an empty host');
  if (trimmed.startsWith('[')) {
    const close = trimmed.indexOf(']');
    if (close === -1) throw invalidOption(where, `has an unclosed "["${show(trimmed)}`);
    const host = trimmed.slice(1, close);
    const after = trimmed.slice(close + 1);
    if (after !== '' && !after.startsWith(':')) throw invalidOption(where, `has unexpected text after "]"${show(trimmed)}`);
    return validTarget(host, after === '' ? defaultPort : portNumber(after.slice(1), where, quote), where, quote);
  }
  const colon = trimmed.lastIndexOf(':');
  if (colon !== -1 && trimmed.indexOf(':') !== colon) {
    // Several colons and no brackets: a bare IPv6 address without a port.
    return validTarget(trimmed, defaultPort, where, quote);
  }
  if (colon === -1) return validTarget(trimmed, defaultPort, where, quote);
  return validTarget(trimmed.slice(0, colon), portNumber(trimmed.slice(colon + 1), where, quote), where, quote);
}

function portNumber(text: string, where: string, quote = true): number {
  if (!/^\d{1,5}$/.test(text)) throw invalidOption(where, `has an invalid port${quote ? ` ${JSON.stringify(text.slice(0, 12))}` : ' (not 1-65535; a password with an unencoded "/", "?" or "#" also ends up here: percent-encode it)'}`);
  return Number(text);
}

function validTarget(host: string, port: unknown, where: string, quote = true): HostTarget {
  if (typeof host !== 'string' || host.trim() === '') throw invalidOption(where, 'is an empty host');
  if (/[\s/@?#]/.test(host) && !host.startsWith('/')) {
    throw invalidOption(where, `has an invalid host name${quote ? ` ${JSON.stringify(host.slice(0, 64))}` : ''}`);
  }
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw invalidOption(where, `has an invalid port ${quote ? JSON.stringify(port) : ''} (expected 1-65535)`);
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
