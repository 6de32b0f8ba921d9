/**
 * The `watch` listeners of a store object and the grants it has announced: a grant can reach a
 * store twice (in the answer of its own operation and from the database's push channel, or again
 * in a catch-up after a reconnect), and each is announced once. A listener's failure is its own.
 */
import type { StoreChange } from './store.js';

/** Grants remembered, so a push or a catch-up does not announce one twice. */
const RECENT_GRANTS = 4096;

export class ChangeHub {
  readonly #listeners = new Set<(change: StoreChange) => void>();
  readonly #recent = new Set<string>();

  watch(listener: (change: StoreChange) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Announces the changes of this object's own operations (their grants are remembered). */
  publish(changes: readonly StoreChange[]): void {
    for (const change of changes) {
      for (const id of change.granted) this.#remember(id);
      this.#emit(change);
    }
  }

  /** Announces a change pushed by the database, unless one of its grants was announced already. */
  publishOnce(change: StoreChange): boolean {
    if (!change.granted.every((id) => this.#remember(id))) return false;
    this.#emit(change);
    return true;
  }

  clear(): void {
    this.#listeners.clear();
  }

  #emit(change: StoreChange): void {
    for (const listener of this.#listeners) {
      try {
        listener(change);
      } catch {
        // A listener's failure is its own; it never breaks the store.
      }
    }
  }

  /** Returns false when the grant was announced already. */
  #remember(id: string): boolean {
    if (this.#recent.has(id)) return false;
    this.#recent.add(id);
    if (this.#recent.size > RECENT_GRANTS) this.#recent.delete(this.#recent.values().next().value!);
    return true;
  }
}
