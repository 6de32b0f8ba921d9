/**
 * An index of rows by key that answers "rows whose key equals K or is an ancestor or a
 * descendant of K" in O(depth + answer) time.
 */
import { ancestorsOf } from '../../model/keys.js';

export class KeyIndex<T extends { resource: { key: string } }> {
  readonly #exact = new Map<string, Set<T>>();
  /** Rows whose key is a proper descendant of the map key. */
  readonly #under = new Map<string, Set<T>>();

  #add(map: Map<string, Set<T>>, key: string, row: T): void {
    let set = map.get(key);
    if (!set) map.set(key, (set = new Set()));
    set.add(row);
  }

  #remove(map: Map<string, Set<T>>, key: string, row: T): void {
    const set = map.get(key);
    if (!set) return;
    set.delete(row);
    if (set.size === 0) map.delete(key);
  }

  add(row: T): void {
    const key = row.resource.key;
    this.#add(this.#exact, key, row);
    for (const ancestor of ancestorsOf(key)) this.#add(this.#under, ancestor, row);
  }

  remove(row: T): void {
    const key = row.resource.key;
    this.#remove(this.#exact, key, row);
    for (const ancestor of ancestorsOf(key)) this.#remove(this.#under, ancestor, row);
  }

  on(key: string): Iterable<T> {
    return this.#exact.get(key) ?? [];
  }

  related(key: string): T[] {
    const out: T[] = [...(this.#exact.get(key) ?? [])];
    for (const ancestor of ancestorsOf(key)) {
      const set = this.#exact.get(ancestor);
      if (set) out.push(...set);
    }
    const under = this.#under.get(key);
    if (under) out.push(...under);
    return out;
  }

  withPrefix(prefix: string): T[] {
    const out: T[] = [];
    for (const [key, rows] of this.#exact) if (key.startsWith(prefix)) out.push(...rows);
    return out;
  }
}
