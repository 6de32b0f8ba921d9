/**
 * A `Map` for keys that come and go at a high rate (a lease id per acquire, gone at release).
 * V8 shrinks a `Map`'s table when a delete leaves it under a quarter full and grows it again on
 * the next set, so a map going from one entry to none and back, as a lock's holder does, made
 * and dropped a table per lease (~450 bytes a pair through three such maps, measured with the
 * sampling heap profiler). One entry under a private key stays in the map for good: the table
 * then never shrinks below its smallest size, and the churn only fills its deleted slots, which
 * are cleared at the next rehash. The private entry is invisible through this class.
 */
const FLOOR: unique symbol = Symbol('floor');

export class ChurnMap<K, V> {
  readonly #map = new Map<K | typeof FLOOR, V | undefined>([[FLOOR, undefined]]);

  get size(): number {
    return this.#map.size - 1;
  }

  get(key: K): V | undefined {
    return this.#map.get(key);
  }

  has(key: K): boolean {
    return this.#map.has(key);
  }

  set(key: K, value: V): this {
    this.#map.set(key, value);
    return this;
  }

  delete(key: K): boolean {
    return this.#map.delete(key);
  }

  clear(): void {
    this.#map.clear();
    this.#map.set(FLOOR, undefined);
  }

  *values(): IterableIterator<V> {
    for (const [key, value] of this.#map) if (key !== FLOOR) yield value as V;
  }
}
