// Every time option refuses Infinity, NaN and values longer than a timer can wait (issue 26): a
// longer delay reaches setTimeout, which fires at once. The pool's options are enumerated from
// the options module (TIME_OPTIONS), and the module's source is scanned so that an option
// named …Ms, …Millis or …Seconds cannot be added without its check; per-call options likewise.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { InvalidOptionError, Pool, retryable } from '../../src/index.ts';
import { MAX_TIMER_MS } from '../../src/option-checks.ts';
import { PG_CLIENT_TIME_OPTIONS, TIME_OPTIONS, resolveOptions } from '../../src/options.ts';

// The sources, from test/unit (type stripping) or dist/test/unit (compiled).
const here = path.dirname(fileURLToPath(import.meta.url));
const root = [path.resolve(here, '../..'), path.resolve(here, '../../..')].find((r) => existsSync(path.join(r, 'src', 'options.ts')))!;
const source = (file: string): string => readFileSync(path.join(root, file), 'utf8');

const BASE = { host: '127.0.0.1', port: 1 };
/** Options with `value` at `path`, and what that option's parents need to be valid. */
const withOption = (path: string, value: unknown): Record<string, unknown> => {
  const o: Record<string, unknown> = { ...BASE };
  const parts = path.split('.');
  if (parts[0] === 'patroni') o.patroni = { urls: ['http://127.0.0.1:8008'] };
  let at = o;
  for (const part of parts.slice(0, -1)) {
    at[part] = { ...(at[part] as object | undefined) };
    at = at[part] as Record<string, unknown>;
  }
  at[parts.at(-1)!] = value;
  // retry.initialDelayMs may not exceed retry.maxDelayMs.
  if (path === 'retry.initialDelayMs') (o.retry as Record<string, unknown>).maxDelayMs = MAX_TIMER_MS;
  return o;
};
const refuses = (fn: () => unknown, option: string, value: unknown): void => {
  assert.throws(fn, (e: unknown) => e instanceof InvalidOptionError && e.option === option && e.message.includes(option), `${option} = ${String(value)}`);
};

test('every time option of the pool refuses Infinity, NaN, and more than 2³¹−1 ms, naming the option', () => {
  for (const path of [...TIME_OPTIONS, ...PG_CLIENT_TIME_OPTIONS]) {
    const seconds = path === 'maxLifetimeSeconds';
    const tooLong = seconds ? Math.ceil(MAX_TIMER_MS / 1000) + 1 : MAX_TIMER_MS + 1;
    for (const bad of [Infinity, -Infinity, Number.NaN, tooLong, '1000']) {
      refuses(() => resolveOptions(withOption(path, bad)), path, bad);
      refuses(() => new Pool(withOption(path, bad)), path, bad);
    }
    // The longest timer Node takes is accepted.
    const longest = seconds ? Math.floor(MAX_TIMER_MS / 1000) : MAX_TIMER_MS;
    assert.doesNotThrow(() => resolveOptions(withOption(path, longest)), path);
  }
});

// Every module that declares pool options (options.ts and the per-concern ones it resolves through).
const OPTION_MODULES = ['src/options.ts', 'src/policy/policy-options.ts', 'src/topology/patroni-options.ts', 'src/transactions/durability-options.ts', 'src/transactions/replay-options.ts'];

test('no time option escapes the list: every …Ms, …Millis, …Seconds option of the option modules is on TIME_OPTIONS', () => {
  // Input options are optional (`name?:`); resolved ones are not.
  const names = new Set(OPTION_MODULES.flatMap((file) => [...source(file).matchAll(/\b(\w+(?:Ms|Millis|Seconds))\?:/g)].map((m) => m[1]!)));
  assert.ok(names.size >= 10, [...names].join());
  const leaves = new Set(TIME_OPTIONS.map((p) => p.split('.').at(-1)!));
  for (const name of names) assert.ok(leaves.has(name), `${name} is a time option missing from TIME_OPTIONS`);
});

// Per-call options: each file's …Ms options, and how to pass one.
const CALLS: Record<string, (value: unknown) => Promise<unknown>> = {
  'src/pool/query-args.ts:deadlineMs': (v) => new Pool(BASE).query({ text: 'SELECT 1', deadlineMs: v as number }),
  'src/pool/query-args.ts:maxStalenessMs': (v) => new Pool({ ...BASE, failoverReads: true }).query({ text: 'SELECT 1', failoverReads: { maxStalenessMs: v as number } }),
  'src/transactions/pool-transaction.ts:maxElapsedMs': (v) => new Pool(BASE).transaction(async () => 1, { maxElapsedMs: v as number }),
  'src/transactions/retryable.ts:maxElapsedMs': (v) => retryable(() => 1, { maxElapsedMs: v as number }),
};
const CALL_OPTION: Record<string, string> = {
  'src/pool/query-args.ts:deadlineMs': 'query.deadlineMs',
  'src/pool/query-args.ts:maxStalenessMs': 'query.failoverReads.maxStalenessMs',
  'src/transactions/pool-transaction.ts:maxElapsedMs': 'transaction.maxElapsedMs',
  'src/transactions/retryable.ts:maxElapsedMs': 'retryable.maxElapsedMs',
};

test('every per-call time option is refused at the call with InvalidOptionError (pool.query, transaction, retryable)', async () => {
  for (const file of ['src/pool/query-args.ts', 'src/transactions/pool-transaction.ts', 'src/transactions/retryable.ts']) {
    for (const m of source(file).matchAll(/\b(\w+(?:Ms|Millis|Seconds))\?:/g)) assert.ok(CALLS[`${file}:${m[1]}`] !== undefined, `${file}: ${m[1]} has no row in this test`);
  }
  for (const [key, call] of Object.entries(CALLS)) {
    for (const bad of [Infinity, Number.NaN, MAX_TIMER_MS + 1, -1]) {
      await assert.rejects(call(bad), (e: unknown) => e instanceof InvalidOptionError && e.option === CALL_OPTION[key], `${key} = ${bad}`);
    }
  }
});
