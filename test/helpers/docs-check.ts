// The docs check: README.md and docs/*.md against the names the code exports (options, events,
// diagnostics channels, error codes, Prometheus and OpenTelemetry metrics). The lists are made
// from the code itself: by importing the modules and asking them (the option resolver, ErrorCodes,
// the channels, the two metric instrumentations), and, for what exists only as a type (the event
// map, the per-call query options), by reading the declarations with TypeScript's parser.
//
//   Node 24:  node test/helpers/docs-check.ts            (or: bash scripts/check-docs.sh)
//   Node 20:  npm run build && node dist/test/helpers/docs-check.js
//
// Exit status 1 and one line per problem when the docs and the code disagree.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import pg from 'pg';
import * as promClient from 'prom-client';
import ts from 'typescript';
import { ErrorCodes, Pool, diagnosticsChannels, instrumentPool, instrumentPoolOtel } from '../../src/index.ts';
import type { OtelMeterLike, PoolOptions } from '../../src/index.ts';
import { resolveOptions } from '../../src/options.ts';
import { PREPARED_NAME_PREFIX } from '../../src/prepared/cache.ts';
import { ROOT, sourceFiles } from './src-tree.ts';

/** Everything the docs are checked against, made from the code. */
export interface CodeNames {
  /** Pool options the resolver reads: top level (`max`, `retry`) and nested (`retry.maxElapsedMs`). */
  readonly options: ReadonlySet<string>;
  /**
   * Option sets that exist only as types, by the docs/options.md section that lists them:
   * per-call options of `pool.query({ … })`, `pool.transaction`'s and `retryable`'s.
   */
  readonly typedOptions: ReadonlyMap<string, ReadonlySet<string>>;
  /** pg's own option names (pg.defaults and the few Client options it has no default for). */
  readonly pgOptions: ReadonlySet<string>;
  /** Pool events: the typed map, the diagnostics channels' events, and every name emitted. */
  readonly events: ReadonlySet<string>;
  /** The keys of the typed `PoolEventMap`. */
  readonly typedEvents: ReadonlySet<string>;
  /** Events emitted but missing from the typed `PoolEventMap` (said, not failed: code, not docs). */
  readonly untypedEvents: ReadonlySet<string>;
  /** `pg-resilient:…` diagnostics channel names. */
  readonly channels: ReadonlySet<string>;
  readonly errorCodes: ReadonlySet<string>;
  /** Prometheus series names with the default prefix. */
  readonly promMetrics: ReadonlySet<string>;
  /** OpenTelemetry instrument names. */
  readonly otelMetrics: ReadonlySet<string>;
  readonly preparedNamePrefix: string;
  /** Files and folders (`src/pool/`) of the repository's own trees, relative to its root. */
  readonly files: ReadonlySet<string>;
  /** Files at the repository's root (README.md, CHANGELOG.md, package.json, …). */
  readonly rootFiles: ReadonlySet<string>;
  /** The source files, `src/…/*.ts`. */
  readonly srcFiles: ReadonlySet<string>;
}

/** The trees whose paths the docs name; a backticked path into one of them must exist. */
const TREES = ['src', 'test', 'scripts', 'examples', 'docs', 'cluster'];
const REPO_PATH = new RegExp(`^(?:${TREES.join('|')})/[\\w./-]*$`);
/**
 * PostgreSQL's own source tree, which pages cite (`src/backend/tcop/postgres.c`): its top-level
 * folders under src/, none of which this repository's src/ has. Only these are exempt, so a
 * missing path into our own folders (`src/pool/…`) is still caught.
 */
const POSTGRES_SRC = /^src\/(?:backend|include|interfaces|bin|common|port|pl|fe_utils|timezone)\//;

function repoFiles(root: string): Set<string> {
  const found = new Set<string>();
  const walk = (rel: string): void => {
    for (const name of readdirSync(path.join(root, rel))) {
      const child = `${rel}/${name}`;
      if (statSync(path.join(root, child)).isDirectory()) {
        found.add(`${child}/`);
        walk(child);
      } else {
        found.add(child);
      }
    }
  };
  for (const tree of TREES) {
    found.add(`${tree}/`);
    walk(tree);
  }
  return found;
}


// ---------------------------------------------------------------------------------------------
// Names from the code

/** A proxy that notes every property read; the resolver reads each option it knows once. */
function recording<T extends object>(target: T, seen: Set<string>): T {
  return new Proxy(target, {
    get(t, key, receiver) {
      if (typeof key === 'string') seen.add(key);
      return Reflect.get(t, key, receiver);
    },
  });
}

// A nested object the resolver refuses without these (the rest of it is then read as usual).
const NESTED_REQUIRED: Record<string, object> = { patroni: { urls: ['http://127.0.0.1:8008'] } };

/**
 * Option names as `resolveOptions` reads them: the top level from an empty config, then each
 * top-level option given as an object whose reads are noted. An option the resolver refuses as an
 * object (a number, a function, a list) has no nested names.
 */
function optionNames(): Set<string> {
  const top = new Set<string>();
  resolveOptions(recording({}, top) as PoolOptions);
  const all = new Set(top);
  for (const name of top) {
    const nested = new Set<string>();
    try {
      resolveOptions({ [name]: recording({ ...NESTED_REQUIRED[name] }, nested) } as PoolOptions);
    } catch {
      continue;
    }
    for (const key of nested) all.add(`${name}.${key}`);
  }
  return all;
}

function parse(file: string): ts.SourceFile {
  return ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, true);
}


/** Member names of an interface declared somewhere in src/ (types have no runtime form to import). */
function interfaceMembers(files: readonly ts.SourceFile[], name: string): Set<string> {
  const found = new Set<string>();
  for (const sf of files) {
    for (const statement of sf.statements) {
      if (!ts.isInterfaceDeclaration(statement) || statement.name.text !== name) continue;
      for (const member of statement.members) {
        if (member.name !== undefined && (ts.isIdentifier(member.name) || ts.isStringLiteral(member.name))) found.add(member.name.text);
      }
    }
  }
  if (found.size === 0) throw new Error(`docs-check: interface ${name} not found in src/`);
  return found;
}

/** The first argument of every `publish('…')` call (src/observe/publish.ts is the one way out): the events the pool emits. */
function emittedEvents(files: readonly ts.SourceFile[]): Set<string> {
  const found = new Set<string>();
  const visit = (node: ts.Node): void => {
    if (ts.isCallExpression(node) && ts.isPropertyAccessExpression(node.expression)) {
      const method = node.expression.name.text;
      const first = node.arguments[0];
      if (method === 'publish' && first !== undefined && ts.isStringLiteral(first)) {
        found.add(first.text);
      }
    }
    ts.forEachChild(node, visit);
  };
  for (const sf of files) visit(sf);
  return found;
}

function promMetricNames(pool: Pool): Set<string> {
  const registry = new promClient.Registry();
  const metrics = instrumentPool(pool, { client: promClient, registry });
  const names = new Set(registry.getMetricsAsArray().map((m) => m.name));
  metrics.close();
  return names;
}

function otelMetricNames(pool: Pool): Set<string> {
  const names = new Set<string>();
  const observable = { addCallback: () => undefined, removeCallback: () => undefined };
  // Only the names are wanted: a meter that notes them (the library's own structural interface).
  const meter: OtelMeterLike = {
    createHistogram: (name) => (names.add(name), { record: () => undefined }),
    createCounter: (name) => (names.add(name), { add: () => undefined }),
    createObservableUpDownCounter: (name) => (names.add(name), observable),
    createObservableGauge: (name) => (names.add(name), observable),
  };
  instrumentPoolOtel(pool, { meterProvider: { getMeter: () => meter }, poolName: 'docs-check' }).close();
  return names;
}

/** docs/options.md sections that list an options type whole (section title → interface). */
export const TYPED_OPTION_SECTIONS: Record<string, string> = {
  'Per call': 'ResilienceQueryOptions',
  'pool.transaction(': 'TransactionOptions',
  'retryable(': 'RetryableOptions',
};

// pg's Client options with no entry in pg.defaults.
const PG_CLIENT_OPTIONS = ['keepAlive', 'keepAliveInitialDelayMillis', 'connectionTimeoutMillis', 'types', 'stream', 'Promise'];

export async function codeNames(root: string = ROOT): Promise<CodeNames> {
  const files = sourceFiles(path.join(root, 'src')).map(parse);
  const typed = interfaceMembers(files, 'PoolEventMap');
  const emitted = emittedEvents(files);
  const channelEvents = Object.keys(diagnosticsChannels);
  const events = new Set([...typed, ...channelEvents, ...emitted]);
  // Port 1: nothing listens; the pool is never asked to connect.
  const pool = new Pool({ host: '127.0.0.1', port: 1, max: 1 });
  try {
    return {
      options: optionNames(),
      typedOptions: new Map(Object.entries(TYPED_OPTION_SECTIONS).map(([title, type]) => [title, interfaceMembers(files, type)])),
      pgOptions: new Set([...Object.keys(pg.defaults), ...PG_CLIENT_OPTIONS]),
      events,
      typedEvents: typed,
      untypedEvents: new Set([...events].filter((e) => !typed.has(e))),
      channels: new Set(Object.values(diagnosticsChannels).map((c) => String(c.name))),
      errorCodes: new Set(Object.values(ErrorCodes)),
      promMetrics: promMetricNames(pool),
      otelMetrics: otelMetricNames(pool),
      preparedNamePrefix: PREPARED_NAME_PREFIX,
      files: repoFiles(root),
      rootFiles: new Set(readdirSync(root).filter((name) => statSync(path.join(root, name)).isFile())),
      srcFiles: new Set(files.map((sf) => path.relative(root, sf.fileName).split(path.sep).join('/'))),
    };
  } finally {
    await pool.end();
  }
}

// ---------------------------------------------------------------------------------------------
// Names in the docs

/** README.md and docs/*.md (not the CHANGELOG: it names what existed then). */
export function readDocs(root: string = ROOT): Map<string, string> {
  const docs = new Map<string, string>([['README.md', readFileSync(path.join(root, 'README.md'), 'utf8')]]);
  for (const name of readdirSync(path.join(root, 'docs')).sort()) {
    if (name.endsWith('.md')) docs.set(`docs/${name}`, readFileSync(path.join(root, 'docs', name), 'utf8'));
  }
  return docs;
}

/** Text without fenced code blocks (code samples are checked by the compiler, not here). */
function prose(markdown: string): string {
  return markdown.replace(/^```[\s\S]*?^```/gm, '');
}

function backticked(text: string): string[] {
  return [...prose(text).matchAll(/`([^`\n]+)`/g)].map((m) => m[1]!.trim());
}

/**
 * The part of a page under the first heading whose text starts with `title`, up to the next
 * heading of the same or a higher level; undefined when there is no such heading.
 */
export function section(markdown: string, title: string): string | undefined {
  const lines = prose(markdown).split('\n');
  const start = lines.findIndex((l) => /^#{1,6} /.test(l) && l.replace(/^#+ /, '').startsWith(title));
  if (start < 0) return undefined;
  const level = lines[start]!.match(/^#+/)![0].length;
  const end = lines.findIndex((l, i) => i > start && /^#{1,6} /.test(l) && l.match(/^#+/)![0].length <= level);
  return lines.slice(start + 1, end < 0 ? undefined : end).join('\n');
}

/** Backticked names in the first column of every table row (header and separator rows skipped). */
export function firstColumnNames(text: string): string[] {
  const names: string[] = [];
  const lines = text.split('\n');
  lines.forEach((line, i) => {
    if (!line.startsWith('|')) return;
    const next = lines[i + 1] ?? '';
    if (/^\|[\s:|-]+$/.test(line) || /^\|[\s:|-]+$/.test(next)) return; // separator, or the header above it
    const cell = line.split('|')[1] ?? '';
    names.push(...[...cell.matchAll(/`([^`]+)`/g)].map((m) => m[1]!.trim()));
  });
  return names;
}

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens. */
export function anchorOf(heading: string): string {
  return heading.trim().toLowerCase().replace(/[^\p{L}\p{N} _-]/gu, '').replace(/ /g, '-');
}

function anchors(markdown: string): Set<string> {
  return new Set(prose(markdown).split('\n').filter((l) => /^#{1,6} /.test(l)).map((l) => anchorOf(l.replace(/^#+ /, ''))));
}

/** A Prometheus name as written in the docs (`…_total{outcome}`, `…_seconds_bucket`) → the series family. */
function promFamily(token: string, known: ReadonlySet<string>): string {
  const name = token.replace(/\{.*$/, '');
  if (known.has(name)) return name;
  return name.replace(/_(bucket|sum|count)$/, '');
}

/** The pages and sections that must list a whole set; see `checkDocs`. */
export const COMPLETE_LISTS = {
  events: { page: 'docs/observability.md', section: 'Events' },
  channels: { page: 'docs/observability.md', section: 'Diagnostics channels' },
  promMetrics: { page: 'docs/observability.md', section: 'Prometheus' },
  otelMetrics: { page: 'docs/observability.md', section: 'OpenTelemetry' },
  options: { page: 'docs/options.md', section: undefined },
  errorCodes: { page: 'README.md', section: 'Errors' },
} as const;

/**
 * What the docs get wrong, one line each (empty: they agree with the code).
 *
 * Everywhere (README.md, docs/*.md), a backticked name must exist: `PGR_…` error codes,
 * `pgr_…` prepared-statement names, `pg-resilient:…` channels, `pg_resilient_…` Prometheus series.
 * In the lists below, every name must exist and none may be missing:
 * - docs/observability.md: the Events table (first column), the Diagnostics channels section, the
 *   Prometheus section and the OpenTelemetry section's tables (first column);
 * - docs/options.md: every pool option in the first column of its tables (nested ones as
 *   `retry.maxElapsedMs`); the tables outside "pg.Pool's options" name only pg-resilient's options,
 *   that one only pg's or pg-resilient's; the "Per call", "pool.transaction(…)" and "retryable(…)"
 *   tables exactly the members of their types;
 * - README.md: the Errors section names every error code; the Options section's table names only
 *   existing options;
 * - docs/architecture.md: a row for every file of src/.
 * A backticked path into src/, test/, scripts/, examples/, docs/ or cluster/ must exist (paths into
 * PostgreSQL's own tree, `src/backend/…`, `src/include/…`, are not ours and are let be), and so
 * must the file (and heading) of every relative link.
 */
export function checkDocs(docs: ReadonlyMap<string, string>, code: CodeNames): string[] {
  const problems: string[] = [];
  const need = (page: string): string => {
    const text = docs.get(page);
    if (text === undefined) throw new Error(`docs-check: ${page} is missing`);
    return text;
  };
  const needSection = (page: string, title: string): string => {
    const text = section(need(page), title);
    if (text === undefined) {
      problems.push(`${page}: no section "${title}"`);
      return '';
    }
    return text;
  };

  // Names that must exist wherever they appear.
  for (const [page, text] of docs) {
    for (const token of backticked(text)) {
      // `PGR_` alone is the codes' prefix; anything longer must be a code.
      for (const [name] of token.matchAll(/\bPGR_[A-Z0-9_]+/g)) {
        if (!code.errorCodes.has(name)) problems.push(`${page}: \`${name}\` is not an error code (ErrorCodes)`);
      }
      for (const [name] of token.matchAll(/\bpgr_[A-Za-z0-9_-]*/g)) {
        if (name !== code.preparedNamePrefix && !/^pgr_[A-Za-z0-9_-]{22}$/.test(name)) {
          problems.push(`${page}: \`${name}\` is neither the prepared-statement prefix \`${code.preparedNamePrefix}\` nor a name it makes`);
        }
      }
      for (const [name] of token.matchAll(/pg-resilient:[A-Za-z]+/g)) {
        if (!code.channels.has(name)) problems.push(`${page}: \`${name}\` is not a diagnostics channel`);
      }
      for (const [name] of token.matchAll(/\bpg_resilient_[a-z_]+/g)) {
        if (!code.promMetrics.has(promFamily(name, code.promMetrics))) problems.push(`${page}: \`${name}\` is not a Prometheus series of instrumentPool`);
      }
      if (REPO_PATH.test(token) && !POSTGRES_SRC.test(token) && !code.files.has(token)) problems.push(`${page}: \`${token}\` does not exist in the repository`);
    }
  }

  // Relative links lead to a file of the repository, and to a heading of it when they name one.
  for (const [page, text] of docs) {
    for (const [, target] of prose(text).matchAll(/\]\(([^)\s]+)\)/g)) {
      if (/^[a-z]+:/.test(target!)) continue; // https:, mailto:
      const [file, anchor] = target!.split('#') as [string, string | undefined];
      const resolved = file === '' ? page : path.posix.normalize(path.posix.join(path.posix.dirname(page), file));
      const exists = docs.has(resolved) || code.files.has(resolved) || code.files.has(`${resolved}/`) || code.rootFiles.has(resolved);
      if (!exists) {
        problems.push(`${page}: link to ${target}: no such file`);
        continue;
      }
      const linked = docs.get(resolved);
      if (anchor !== undefined && linked !== undefined && !anchors(linked).has(anchor)) problems.push(`${page}: link to ${target}: no such heading`);
    }
  }

  // Complete lists: nothing unknown, nothing missing.
  const compare = (where: string, documented: Iterable<string>, actual: ReadonlySet<string>, what: string): void => {
    const doc = new Set(documented);
    for (const name of doc) if (!actual.has(name)) problems.push(`${where}: \`${name}\` is not ${what} in the code`);
    for (const name of actual) if (!doc.has(name)) problems.push(`${where}: ${what} \`${name}\` is missing`);
  };
  const L = COMPLETE_LISTS;
  compare(`${L.events.page} § ${L.events.section}`, firstColumnNames(needSection(L.events.page, L.events.section)), code.events, 'an event');
  compare(`${L.channels.page} § ${L.channels.section}`, backticked(needSection(L.channels.page, L.channels.section)).filter((t) => t.startsWith('pg-resilient:')), code.channels, 'a diagnostics channel');
  compare(
    `${L.promMetrics.page} § ${L.promMetrics.section}`,
    backticked(needSection(L.promMetrics.page, L.promMetrics.section)).filter((t) => t.startsWith('pg_resilient_')).map((t) => promFamily(t, code.promMetrics)),
    code.promMetrics,
    'a Prometheus series',
  );
  compare(`${L.otelMetrics.page} § ${L.otelMetrics.section}`, firstColumnNames(needSection(L.otelMetrics.page, L.otelMetrics.section)), code.otelMetrics, 'an OpenTelemetry instrument');

  // Options: every one in some table of docs/options.md; pg's table may also name pg's own.
  const optionsPage = need(L.options.page);
  const pgTable = section(optionsPage, "pg.Pool's options") ?? '';
  if (pgTable === '') problems.push(`${L.options.page}: no section "pg.Pool's options"`);
  let ownTables = prose(optionsPage).replace(prose(pgTable), '');
  const typedSections = [...code.typedOptions].map(([title, members]) => {
    const text = needSection(L.options.page, title);
    ownTables = ownTables.replace(text, '');
    return { title, members, text };
  });
  const own = firstColumnNames(ownTables);
  const pgRows = firstColumnNames(pgTable);
  for (const name of own) if (!code.options.has(name)) problems.push(`${L.options.page}: \`${name}\` is not a pool option in the code`);
  for (const name of pgRows) {
    if (!code.options.has(name) && !code.pgOptions.has(name)) problems.push(`${L.options.page} § pg.Pool's options: \`${name}\` is an option of neither pg nor pg-resilient`);
  }
  const listed = new Set([...own, ...pgRows]);
  for (const name of code.options) if (!listed.has(name)) problems.push(`${L.options.page}: pool option \`${name}\` is missing`);
  for (const t of typedSections) compare(`${L.options.page} § ${t.title}`, firstColumnNames(t.text), t.members, 'an option of this call');

  // docs/architecture.md has a row for every source file (a mention in its prose, such as the
  // walk of a query, is not a row).
  const rows = new Set([...need('docs/architecture.md').matchAll(/^\| `([^`]+)` \|/gm)].map((m) => m[1]!));
  for (const file of code.srcFiles) if (!rows.has(file)) problems.push(`docs/architecture.md: source file \`${file}\` is missing`);

  // README: every error code in its Errors section; its options table names existing options.
  const errors = backticked(needSection(L.errorCodes.page, L.errorCodes.section));
  for (const codeName of code.errorCodes) if (!errors.includes(codeName)) problems.push(`README.md § Errors: error code \`${codeName}\` is missing`);
  for (const name of firstColumnNames(needSection('README.md', 'Options'))) {
    if (!code.options.has(name) && !code.pgOptions.has(name)) problems.push(`README.md § Options: \`${name}\` is not an option`);
  }
  return problems;
}

async function main(): Promise<void> {
  const code = await codeNames();
  const problems = checkDocs(readDocs(), code);
  for (const e of code.untypedEvents) process.stdout.write(`note: the pool emits '${e}', which PoolEventMap does not declare\n`);
  if (problems.length === 0) {
    process.stdout.write(
      `docs agree with the code: ${code.options.size} pool options, ${[...code.typedOptions.values()].reduce((n, m) => n + m.size, 0)} call options, ${code.events.size} events, ` +
        `${code.channels.size} channels, ${code.errorCodes.size} error codes, ${code.promMetrics.size} Prometheus series, ${code.otelMetrics.size} OpenTelemetry instruments\n`,
    );
    return;
  }
  for (const p of problems) process.stdout.write(`${p}\n`);
  process.exitCode = 1;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) await main();
