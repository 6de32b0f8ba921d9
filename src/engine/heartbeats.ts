/**
 * One batched heartbeat for all the queued tickets of a process (a `Locks`, a server), on stores
 * that offer `keepAlive`: every `waiterTtlMs / 3` one call renews them all, instead of one `poll`
 * per waiter per period. A parked waiter costs the store nothing between beats, so 2,000 waits
 * on one key cost one call per period, not 1,200 calls per second.
 *
 * A ticket the store does not answer as still queued (granted, dropped, timed out, or its row
 * busy at that moment) has its `onLapse` called: its waiter polls it, as it would have. A beat
 * that fails (store unreachable) lapses nothing: it is tried again a little later, and a waiter
 * whose place the store dropped meanwhile learns it from its next poll (it queues again).
 *
 * The timer runs only while tickets are registered and never keeps the process alive. Errors
 * are never thrown from it.
 */
import type { LockStore } from '../stores/store.js';

/** Tickets per `keepAlive` call. */
const BATCH = 1000;
/** After a failed beat, the next one comes this much sooner than a period. */
const RETRY_FRACTION = 0.25;

export class Heartbeats {
  readonly #store: LockStore;
  readonly #periodMs: number;
  /** Each ticket's waiters (two waits in one process share a ticket when one is a requestId retry). */
  readonly #tickets = new Map<string, Set<() => void>>();
  #timer: NodeJS.Timeout | null = null;
  #beating = false;
  #closed = false;

  constructor(store: LockStore, waiterTtlMs: number) {
    this.#store = store;
    this.#periodMs = Math.max(50, Math.floor(waiterTtlMs / 3));
  }

  /** True when the store renews heartbeats in batches (else each waiter polls for its own). */
  get batched(): boolean {
    return typeof this.#store.keepAlive === 'function' && !this.#closed;
  }

  /** Keeps `ticket` alive until `remove`; `onLapse` is called once if the store no longer has it queued. */
  add(ticket: string, onLapse: () => void): void {
    let waiters = this.#tickets.get(ticket);
    if (!waiters) this.#tickets.set(ticket, (waiters = new Set()));
    waiters.add(onLapse);
    this.#arm(this.#periodMs);
  }

  /** Takes back what `add(ticket, onLapse)` registered. */
  remove(ticket: string, onLapse: () => void): void {
    const waiters = this.#tickets.get(ticket);
    if (waiters) {
      waiters.delete(onLapse);
      if (waiters.size === 0) this.#tickets.delete(ticket);
    }
    if (this.#tickets.size === 0 && this.#timer !== null) {
      clearTimeout(this.#timer);
      this.#timer = null;
    }
  }

  close(): void {
    this.#closed = true;
    this.#tickets.clear();
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
  }

  #arm(ms: number): void {
    if (this.#timer !== null || this.#beating || this.#closed || this.#tickets.size === 0) return;
    this.#timer = setTimeout(() => void this.#beat(), ms);
    this.#timer.unref();
  }

  async #beat(): Promise<void> {
    this.#timer = null;
    this.#beating = true;
    let next = this.#periodMs;
    try {
      const tickets = [...this.#tickets.keys()];
      for (let i = 0; i < tickets.length && !this.#closed; i += BATCH) {
        const chunk = tickets.slice(i, i + BATCH);
        let alive: Set<string>;
        try {
          alive = new Set(await this.#store.keepAlive!(chunk));
        } catch {
          next = Math.max(50, Math.floor(this.#periodMs * RETRY_FRACTION));
          continue;
        }
        for (const ticket of chunk) {
          if (alive.has(ticket)) continue;
          const waiters = this.#tickets.get(ticket);
          this.#tickets.delete(ticket);
          if (waiters) for (const onLapse of waiters) onLapse();
        }
      }
    } finally {
      this.#beating = false;
      this.#arm(next);
    }
  }
}
