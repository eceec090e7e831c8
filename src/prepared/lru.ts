/**
 * A bounded least-recently-used map from string keys to values, made for a hot path that reads
 * far more often than it inserts: a read is one `Map.get` and one integer store (a use stamp),
 * with no reordering of the map; the least recently used entry is found by a scan over at most
 * `capacity` stamps, and only when an insert needs room. A prepared-statement cache hits on
 * almost every call and inserts only on a miss, which already costs the server a parse and a
 * plan, so the scan (about 1 µs for 200 entries) is never on the fast path.
 *
 * Pure: no clock, no I/O. Not thread-safe (nothing in Node is).
 */

interface Slot<V> {
  value: V;
  /** Stamp of the last use; larger is more recent. */
  used: number;
}

export class StampLru<V> {
  readonly #capacity: number;
  readonly #slots = new Map<string, Slot<V>>();
  #clock = 0;

  /** `capacity` ≥ 0 (an integer); 0 makes a map that never keeps anything. */
  constructor(capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 0) throw new RangeError(`capacity must be an integer ≥ 0, got ${String(capacity)}`);
    this.#capacity = capacity;
  }

  get capacity(): number {
    return this.#capacity;
  }

  get size(): number {
    return this.#slots.size;
  }

  /** True when an insert of a new key would first evict the least recently used entry. */
  get full(): boolean {
    return this.#slots.size >= this.#capacity;
  }

  /** The value for `key`, marking it as the most recently used; undefined if absent. */
  get(key: string): V | undefined {
    const slot = this.#slots.get(key);
    if (slot === undefined) return undefined;
    slot.used = ++this.#clock;
    return slot.value;
  }

  /** The value for `key` without marking it used. */
  peek(key: string): V | undefined {
    return this.#slots.get(key)?.value;
  }

  has(key: string): boolean {
    return this.#slots.has(key);
  }

  /**
   * The entry that the next insert of a new key would evict (the least recently used), or
   * undefined when there is room. Lets a caller decide before inserting whether it can afford
   * the eviction.
   */
  victim(): [key: string, value: V] | undefined {
    if (this.#slots.size < this.#capacity || this.#slots.size === 0) return undefined;
    let oldestKey: string | undefined;
    let oldest: Slot<V> | undefined;
    for (const [key, slot] of this.#slots) {
      if (oldest === undefined || slot.used < oldest.used) {
        oldest = slot;
        oldestKey = key;
      }
    }
    return oldestKey === undefined || oldest === undefined ? undefined : [oldestKey, oldest.value];
  }

  /**
   * Stores `value` under `key` as the most recently used entry. Returns the evicted entry when
   * room had to be made (never the key just set). With capacity 0 nothing is stored.
   */
  set(key: string, value: V): [key: string, value: V] | undefined {
    const existing = this.#slots.get(key);
    if (existing !== undefined) {
      existing.value = value;
      existing.used = ++this.#clock;
      return undefined;
    }
    if (this.#capacity === 0) return undefined;
    const evicted = this.victim();
    if (evicted !== undefined) this.#slots.delete(evicted[0]);
    this.#slots.set(key, { value, used: ++this.#clock });
    return evicted;
  }

  /** Removes `key`; returns its value if it was there. */
  delete(key: string): V | undefined {
    const slot = this.#slots.get(key);
    if (slot === undefined) return undefined;
    this.#slots.delete(key);
    return slot.value;
  }

  /** Removes everything; returns the removed entries (least recently used first). */
  clear(): Array<[key: string, value: V]> {
    const all = [...this.#slots].sort((a, b) => a[1].used - b[1].used).map(([k, s]): [string, V] => [k, s.value]);
    this.#slots.clear();
    return all;
  }

  /** Entries from least to most recently used (a copy; for tests and diagnostics). */
  entries(): Array<[key: string, value: V]> {
    return [...this.#slots].sort((a, b) => a[1].used - b[1].used).map(([k, s]): [string, V] => [k, s.value]);
  }
}
