/**
 * Cancels that must still reach the store: a ticket its waiter left (abort, timeout) or a lease
 * granted to a caller that had already given up, at a moment the store could not be reached. A
 * cancel of a granted ticket releases that lease (a lease id is also its ticket), so none of them
 * sits until its TTL once the store answers again.
 *
 * Each is retried in the background with backoff (timers unref'd, errors swallowed: never thrown
 * from a timer) for `max(10 s, 2 × waiterTtlMs)`. `flush` tries every one again at once and
 * until its time is up: `Locks.close()` calls it before the store closes, so a process that
 * stops right after an abort during a store outage (a connection killed, a reconnect under way)
 * still gives back what it was granted, rather than leaving it to expire.
 *
 * One set per store object (a `WeakMap`), shared by every waiter on that store: the engine's
 * and the server's long waits alike.
 */
import type { LockStore } from '../stores/store.js';

const FIRST_RETRY_MS = 100;
const MAX_RETRY_MS = 2000;
const MIN_RETRY_FOR_MS = 10_000;
/** How often `flush` tries the ones left. */
const FLUSH_RETRY_MS = 50;

class GiveBacks {
  readonly #store: LockStore;
  /** Ticket → until when (performance.now()) it is retried in the background. */
  readonly #pending = new Map<string, number>();

  constructor(store: LockStore) {
    this.#store = store;
  }

  /** Retries `cancel(ticket)` in the background until it succeeds or its time is up. */
  add(ticket: string, waiterTtlMs: number): void {
    const until = performance.now() + Math.max(MIN_RETRY_FOR_MS, waiterTtlMs * 2);
    const retrying = this.#pending.has(ticket);
    this.#pending.set(ticket, Math.max(until, this.#pending.get(ticket) ?? 0));
    // Already retried (a leave and a give-back of the same ticket): one round of retries is enough.
    if (retrying) return;
    let delay = FIRST_RETRY_MS;
    const attempt = (): void => {
      const until = this.#pending.get(ticket);
      if (until === undefined) return;
      this.#try(ticket).then((done) => {
        if (done || !this.#pending.has(ticket)) return;
        if (performance.now() + delay > until) {
          this.#pending.delete(ticket);
          return;
        }
        delay = Math.min(MAX_RETRY_MS, delay * 2);
        setTimeout(attempt, delay).unref();
      }, () => {});
    };
    setTimeout(attempt, delay).unref();
  }

  /** One cancel; true (and no longer pending) once the store answered it. */
  async #try(ticket: string): Promise<boolean> {
    try {
      await this.#store.cancel(ticket);
    } catch {
      return false;
    }
    this.#pending.delete(ticket);
    return true;
  }

  /** Tries every pending cancel now, and again every 50 ms, until none is left or `timeoutMs` has passed. */
  async flush(timeoutMs: number): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    while (this.#pending.size > 0) {
      await Promise.all([...this.#pending.keys()].map((ticket) => this.#try(ticket)));
      if (this.#pending.size === 0 || performance.now() + FLUSH_RETRY_MS > deadline) break;
      await new Promise((resolve) => setTimeout(resolve, FLUSH_RETRY_MS));
    }
    this.#pending.clear();
  }
}

const byStore = new WeakMap<LockStore, GiveBacks>();

/** The pending give-backs of `store`. */
export function giveBacksOf(store: LockStore): GiveBacks {
  let giveBacks = byStore.get(store);
  if (giveBacks === undefined) byStore.set(store, (giveBacks = new GiveBacks(store)));
  return giveBacks;
}

export type { GiveBacks };
