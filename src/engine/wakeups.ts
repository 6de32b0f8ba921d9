/**
 * Routes the store's push notices to the waiters they concern: a notice that grants ticket T
 * wakes only the waiter of T, never every waiter. A notice that arrives while the waiter is busy
 * (polling) is kept, so it is never lost. A grant pushed with the new lease's expiry is handed
 * to the waiter, which then needs no poll to learn its lease.
 */
import type { LockStore, StoreChange } from '../stores/store.js';

export class Wakeup {
  #pending = false;
  #resolve: (() => void) | null = null;
  /** The grant that woke this waiter, when the store pushed one with the lease's expiry. */
  #grant: StoreChange | null = null;

  /** Takes (and forgets) the pushed grant, if any. */
  takeGrant(): StoreChange | null {
    const grant = this.#grant;
    this.#grant = null;
    return grant;
  }

  wake(grant?: StoreChange): void {
    if (grant?.expiresAt !== undefined && grant.fence !== null) this.#grant = grant;
    this.#pending = true;
    const resolve = this.#resolve;
    this.#resolve = null;
    resolve?.();
  }

  /** Resolves after `ms`, on `wake()`, or when `signal` aborts, whichever comes first. */
  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    if (this.#pending || signal?.aborted) {
      this.#pending = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        this.#resolve = null;
        this.#pending = false;
        resolve();
      };
      // Not unref'd: a caller awaiting a grant keeps the process alive, as any pending I/O would.
      const timer = setTimeout(done, Math.max(0, ms));
      signal?.addEventListener('abort', done, { once: true });
      this.#resolve = done;
    });
  }
}

/**
 * Routes grant notices by ticket. Each registration gets a `Wakeup` of its own: two waits in one
 * process may share a ticket (a requestId retry joins the original's queue place), and a notice
 * for that ticket wakes both.
 */
export class WakeRouter {
  readonly #waiters = new Map<string, Set<Wakeup>>();
  readonly #unwatch: () => void;

  constructor(store: LockStore) {
    this.#unwatch = store.watch((change: StoreChange) => {
      for (const ticket of change.granted) {
        const wakeups = this.#waiters.get(ticket);
        if (wakeups) for (const wakeup of wakeups) wakeup.wake(change);
      }
    });
  }

  register(ticket: string): Wakeup {
    let wakeups = this.#waiters.get(ticket);
    if (!wakeups) this.#waiters.set(ticket, (wakeups = new Set()));
    const wakeup = new Wakeup();
    wakeups.add(wakeup);
    return wakeup;
  }

  unregister(ticket: string, wakeup: Wakeup): void {
    const wakeups = this.#waiters.get(ticket);
    if (!wakeups) return;
    wakeups.delete(wakeup);
    if (wakeups.size === 0) this.#waiters.delete(ticket);
  }

  close(): void {
    this.#unwatch();
    for (const wakeups of this.#waiters.values()) for (const wakeup of wakeups) wakeup.wake();
    this.#waiters.clear();
  }
}
