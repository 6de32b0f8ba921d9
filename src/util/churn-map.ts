/**
 * A `Map` for keys that come and go at a high rate (a lease id per acquire, gone at release).
 *
 * - The oldest entry, while the map holds nothing older, lives in two fields, not in the `Map`:
 *   a lock used by one caller at a time (a lease held, released, the next one held) never
 *   touches the `Map` at all. A set, get and delete of a fresh string key in a `Map` costs about
 *   80 ns here, and a pair went through three such maps.
 * - Otherwise entries go to the `Map`. V8 shrinks a `Map`'s table when a delete leaves it under a
 *   quarter full and grows it again on the next set, so one entry under a private key stays in
 *   it for good: the table never shrinks below its smallest size, and the churn only fills its
 *   deleted slots, cleared at the next rehash (the sampling heap profiler measured ~450 bytes a
 *   pair for the shrink and regrow through three maps).
 *
 * `values()` keeps insertion order: the inline entry is only taken while the `Map` is empty, so
 * it is older than everything in the `Map`. The private entry is invisible through this class.
 * Keys compare with `===` (so no `NaN` keys).
 */
const FLOOR: unique symbol = Symbol('floor');
const EMPTY: unique symbol = Symbol('empty');

export class ChurnMap<K, V> {
  #loneKey: K | typeof EMPTY = EMPTY;
  #loneValue: V | undefined = undefined;
  readonly #map = new Map<K | typeof FLOOR, V | undefined>([[FLOOR, undefined]]);

  get size(): number {
    return this.#map.size - 1 + (this.#loneKey === EMPTY ? 0 : 1);
  }

  get(key: K): V | undefined {
    if (key === this.#loneKey) return this.#loneValue;
    return this.#map.size === 1 ? undefined : this.#map.get(key);
  }

  has(key: K): boolean {
    return key === this.#loneKey || (this.#map.size > 1 && this.#map.has(key));
  }

  set(key: K, value: V): this {
    if (key === this.#loneKey) this.#loneValue = value;
    else if (this.#loneKey === EMPTY && this.#map.size === 1) {
      this.#loneKey = key;
      this.#loneValue = value;
    } else this.#map.set(key, value);
    return this;
  }

  delete(key: K): boolean {
    if (key === this.#loneKey) {
      this.#loneKey = EMPTY;
      this.#loneValue = undefined;
      return true;
    }
    return this.#map.size > 1 && this.#map.delete(key);
  }

  clear(): void {
    this.#loneKey = EMPTY;
    this.#loneValue = undefined;
    this.#map.clear();
    this.#map.set(FLOOR, undefined);
  }

  *values(): IterableIterator<V> {
    if (this.#loneKey !== EMPTY) yield this.#loneValue as V;
    for (const [key, value] of this.#map) if (key !== FLOOR) yield value as V;
  }
}
