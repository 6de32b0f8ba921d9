/**
 * Small pieces every store with push wake-ups needs: the `watch` listeners of a store object
 * (a listener that throws never breaks the store or the other listeners), and a bounded memory of
 * announced grants (so a grant seen twice, from an own answer and from another channel, is
 * announced once).
 */
import type { StoreChange } from './store.js';

export class ChangeListeners {
  readonly #listeners = new Set<(change: StoreChange) => void>();

  /** Adds a listener; returns its removal. */
  add(listener: (change: StoreChange) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  emit(change: StoreChange): void {
    for (const listener of this.#listeners) {
      try {
        listener(change);
      } catch {
        // A listener's failure is its own; it never breaks the store.
      }
    }
  }

  clear(): void {
    this.#listeners.clear();
  }
}

/** The last `capacity` ids seen, oldest forgotten first. */
export class RecentIds {
  readonly #ids = new Set<string>();
  constructor(readonly capacity: number) {}

  /** True when `id` is new (and remembers it); false when it was seen already. */
  add(id: string): boolean {
    if (this.#ids.has(id)) return false;
    this.#ids.add(id);
    if (this.#ids.size > this.capacity) this.#ids.delete(this.#ids.values().next().value!);
    return true;
  }
}
