/**
 * An index of rows by key that answers "rows whose key equals K or is an ancestor or a
 * descendant of K" in O(depth + answer) time, without allocating when the answer is empty.
 */
import { MultiMap } from './multi-map.js';

/** The answer when nothing is related: shared, never written to (readonly by type; not frozen, which would take for-of off its fast path). */
const NONE: readonly never[] = [];

export class KeyIndex<T extends { resource: { key: string } }> {
  readonly #exact = new MultiMap<string, T>();
  /** Rows whose key is a proper descendant of the map key. */
  readonly #under = new MultiMap<string, T>();

  add(row: T): void {
    const key = row.resource.key;
    this.#exact.add(key, row);
    // Each proper ancestor (`a`, `a/b` of `a/b/c`), without an array of them.
    for (let i = key.indexOf('/'); i !== -1; i = key.indexOf('/', i + 1)) this.#under.add(key.slice(0, i), row);
  }

  remove(row: T): void {
    const key = row.resource.key;
    this.#exact.delete(key, row);
    for (let i = key.indexOf('/'); i !== -1; i = key.indexOf('/', i + 1)) this.#under.delete(key.slice(0, i), row);
  }

  on(key: string): readonly T[] {
    return this.#exact.has(key) ? this.#exact.get(key) : NONE;
  }

  related(key: string): readonly T[] {
    if (this.#exact.size === 0) return NONE;
    let out: T[] | null = null;
    if (this.#exact.has(key)) this.#exact.collect(key, (out ??= []));
    for (let i = key.indexOf('/'); i !== -1; i = key.indexOf('/', i + 1)) {
      const ancestor = key.slice(0, i);
      if (this.#exact.has(ancestor)) this.#exact.collect(ancestor, (out ??= []));
    }
    if (this.#under.has(key)) this.#under.collect(key, (out ??= []));
    return out ?? NONE;
  }

  withPrefix(prefix: string): T[] {
    const out: T[] = [];
    for (const [key, rows] of this.#exact.entries()) if (key.startsWith(prefix)) out.push(...rows);
    return out;
  }
}
