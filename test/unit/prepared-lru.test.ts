import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { StampLru } from '../../src/prepared/lru.ts';
import { PREPARED_NAME_PREFIX, statementName } from '../../src/prepared/cache.ts';

test('an LRU keeps the most recently used keys and evicts the least recently used one', () => {
  const lru = new StampLru<string>(3);
  assert.equal(lru.set('a', 'A'), undefined);
  assert.equal(lru.set('b', 'B'), undefined);
  assert.equal(lru.set('c', 'C'), undefined);
  assert.equal(lru.full, true);
  assert.equal(lru.get('a'), 'A'); // a is now the most recent; b is the oldest
  assert.deepEqual(lru.victim(), ['b', 'B']);
  assert.deepEqual(lru.set('d', 'D'), ['b', 'B']);
  assert.deepEqual(lru.entries().map(([k]) => k), ['c', 'a', 'd']);
  assert.equal(lru.peek('c'), 'C');
  assert.deepEqual(lru.victim(), ['c', 'C'], 'peek does not count as a use');
  assert.equal(lru.set('a', 'A2'), undefined, 'updating a key evicts nothing');
  assert.equal(lru.get('a'), 'A2');
  assert.equal(lru.delete('c'), 'C');
  assert.equal(lru.delete('c'), undefined);
  assert.equal(lru.victim(), undefined, 'room again');
  assert.deepEqual(lru.clear().map(([k]) => k), ['d', 'a']);
  assert.equal(lru.size, 0);
});

test('capacity 0 stores nothing; a bad capacity is refused', () => {
  const lru = new StampLru<number>(0);
  assert.equal(lru.set('a', 1), undefined);
  assert.equal(lru.size, 0);
  assert.equal(lru.get('a'), undefined);
  assert.equal(lru.victim(), undefined);
  assert.throws(() => new StampLru(-1), RangeError);
  assert.throws(() => new StampLru(1.5), RangeError);
});

test('property: never more than capacity entries, and it holds exactly the most recently used keys', () => {
  const op = fc.oneof(
    fc.record({ kind: fc.constant('get' as const), key: fc.integer({ min: 0, max: 12 }) }),
    fc.record({ kind: fc.constant('set' as const), key: fc.integer({ min: 0, max: 12 }) }),
    fc.record({ kind: fc.constant('delete' as const), key: fc.integer({ min: 0, max: 12 }) }),
  );
  fc.assert(fc.property(fc.integer({ min: 1, max: 6 }), fc.array(op, { maxLength: 200 }), (capacity, ops) => {
    const lru = new StampLru<number>(capacity);
    // Model: keys in use order (least recent first).
    const model: string[] = [];
    for (const o of ops) {
      const key = String(o.key);
      const at = model.indexOf(key);
      if (o.kind === 'get') {
        const got = lru.get(key);
        assert.equal(got === undefined, at < 0);
        if (at >= 0) model.push(...model.splice(at, 1));
      } else if (o.kind === 'set') {
        const evicted = lru.set(key, o.key);
        if (at >= 0) {
          model.push(...model.splice(at, 1));
          assert.equal(evicted, undefined);
        } else {
          const expected = model.length >= capacity ? model.shift() : undefined;
          model.push(key);
          assert.equal(evicted?.[0], expected);
        }
      } else {
        assert.equal(lru.delete(key) !== undefined, at >= 0);
        if (at >= 0) model.splice(at, 1);
      }
      assert.ok(lru.size <= capacity);
      assert.deepEqual(lru.entries().map(([k]) => k), model);
    }
  }), { numRuns: 300 });
});

test('statement names: content addressed, short, within PostgreSQL\'s 63-byte limit', () => {
  const a = statementName('SELECT 1 WHERE $1::int = 1');
  assert.equal(a, statementName('SELECT 1 WHERE $1::int = 1'), 'the same text, the same name, in any process');
  assert.notEqual(a, statementName('SELECT 2 WHERE $1::int = 1'));
  assert.ok(a.startsWith(PREPARED_NAME_PREFIX));
  assert.equal(a.length, PREPARED_NAME_PREFIX.length + 22);
  assert.match(a, /^pgr_[A-Za-z0-9_-]{22}$/);
});
