/**
 * A map from a key to a set of values, for the lock table's indexes (rows by key, leases by
 * owner). Two things make it fast where a `Map` of `Set`s is slow:
 *
 * - A lone value is kept without a `Set`: most keys have one holder at a time, and a `Set` made
 *   and dropped per lease was most of the cost of indexing it.
 * - A key that loses its last value stays in the map, empty, until empties outnumber the live
 *   keys (then they are dropped in one pass, amortized O(1)). V8's `Map` keeps a deleted entry in
 *   its bucket's chain until the table is rebuilt, so deleting and re-adding one key (a hot lock
 *   acquired and released over and over) lengthens that chain by one each time: with 100,000
 *   other keys in the map each `set` walked tens of thousands of dead entries (measured: 185 µs
 *   per set+delete at 100,000 keys, 0.21 µs for fresh keys).
 *
 * Values must not themselves be `Set`s.
 */
const EMPTY = Symbol('empty');
/** Empties are dropped once there are more than this many and more than live keys. */
const PRUNE_MIN = 1024;

export class MultiMap<K, V> {
  readonly #map = new Map<K, V | Set<V> | typeof EMPTY>();
  #empty = 0;

  /** Keys with at least one value. */
  get size(): number {
    return this.#map.size - this.#empty;
  }

  add(key: K, value: V): void {
    const held = this.#map.get(key);
    if (held === undefined) this.#map.set(key, value);
    else if (held === EMPTY) {
      this.#empty--;
      this.#map.set(key, value);
    } else if (held instanceof Set) held.add(value);
    else if (held !== value) this.#map.set(key, new Set([held, value]));
  }

  delete(key: K, value: V): void {
    const held = this.#map.get(key);
    if (held === undefined || held === EMPTY) return;
    if (held instanceof Set) {
      held.delete(value);
      if (held.size === 1) this.#map.set(key, held.values().next().value as V);
    } else if (held === value) {
      this.#map.set(key, EMPTY);
      if (++this.#empty > PRUNE_MIN && this.#empty > this.#map.size - this.#empty) this.#prune();
    }
  }

  has(key: K): boolean {
    const held = this.#map.get(key);
    return held !== undefined && held !== EMPTY;
  }

  /** Appends the values of `key` to `out`. */
  collect(key: K, out: V[]): void {
    const held = this.#map.get(key);
    if (held === undefined || held === EMPTY) return;
    if (held instanceof Set) for (const value of held) out.push(value);
    else out.push(held);
  }

  /** The values of `key` (a new array). */
  get(key: K): V[] {
    const out: V[] = [];
    this.collect(key, out);
    return out;
  }

  *entries(): IterableIterator<[K, V[]]> {
    for (const [key, held] of this.#map) {
      if (held !== EMPTY) yield [key, held instanceof Set ? [...held] : [held]];
    }
  }

  #prune(): void {
    for (const [key, held] of this.#map) if (held === EMPTY) this.#map.delete(key);
    this.#empty = 0;
  }
}
