import { test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { StatementCache, statementName } from '../../src/prepared/cache.ts';

// The shapes `config`/`configFrom` hand to pg, on a Client that never connects: nothing is sent,
// and with no connection the cache never writes a Close (it runs a statement unnamed instead).

test('config: named with values, pg\'s own shape without', () => {
  const cache = new StatementCache(new pg.Client({}), { max: 2 });
  const t = 'SELECT $1::int AS n';
  assert.deepEqual(cache.config(t, [1]), { name: statementName(t), text: t, values: [1] });
  assert.deepEqual(cache.config('SELECT 1', undefined), { text: 'SELECT 1' });
  assert.deepEqual(cache.config('SELECT 1', []), { text: 'SELECT 1', values: [] });
  const notArray = { 0: 1, length: 1 } as unknown as unknown[];
  assert.equal(cache.config(t, notArray).name, undefined, 'values pg will reject are not cached');
  assert.deepEqual(cache.stats, { hits: 0, misses: 1, evictions: 0, uncached: 0, tooLong: 0, recovered: 0 });
});

test('configFrom keeps every option, and leaves named, text-less and cursor configs alone', () => {
  const cache = new StatementCache(new pg.Client({}), { max: 2 });
  const types = { getTypeParser: pg.types.getTypeParser };
  const input = { text: 'SELECT $1::int AS n', values: [1], rowMode: 'array' as const, types, binary: false };
  const out = cache.configFrom(input);
  assert.notEqual(out, input, 'a copy: the caller\'s object is not changed');
  assert.deepEqual(out, { ...input, name: statementName(input.text) });
  assert.equal((input as { name?: string }).name, undefined);
  const named = { name: 'mine', text: 'SELECT $1::int', values: [1] };
  assert.equal(cache.configFrom(named), named);
  const cursorLike = { text: 'SELECT $1::int', values: [1], rows: 10 };
  assert.equal(cache.configFrom(cursorLike), cursorLike);
  const noValues = { text: 'SELECT 1' };
  assert.equal(cache.configFrom(noValues), noValues);
});

test('a full cache on a client with nothing to write to runs new statements unnamed and keeps its hits', () => {
  const cache = new StatementCache(new pg.Client({}), { max: 1 });
  const a = 'SELECT $1::int + 1';
  const b = 'SELECT $1::int + 2';
  assert.equal(cache.config(a, [1]).name, statementName(a));
  assert.equal(cache.config(b, [1]).name, undefined);
  assert.equal(cache.config(a, [1]).name, statementName(a));
  assert.deepEqual(cache.stats, { hits: 1, misses: 2, evictions: 0, uncached: 1, tooLong: 0, recovered: 0 });
  assert.equal(new StatementCache(new pg.Client({}), { max: 0 }).config(a, [1]).name, undefined, 'size 0: off');
});

test('a client without pg\'s internals is refused at construction', () => {
  assert.throws(() => new StatementCache({}), TypeError);
});

test('texts longer than maxTextLength run unnamed (their server memory grows with the text); bad bounds are refused', () => {
  const cache = new StatementCache(new pg.Client({}), { max: 10, maxTextLength: 40 });
  const short = 'SELECT $1::int';
  const long = `SELECT $1::int /* ${'x'.repeat(40)} */`;
  assert.equal(cache.config(short, [1]).name, statementName(short));
  assert.equal(cache.config(long, [1]).name, undefined);
  assert.equal(cache.stats.tooLong, 1);
  assert.equal(cache.size, 1);
  assert.throws(() => new StatementCache(new pg.Client({}), { maxTextLength: -1 }), RangeError);
  assert.throws(() => new StatementCache(new pg.Client({}), { max: 2.5 }), RangeError);
});
