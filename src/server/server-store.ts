/**
 * The server's view of its store: every call goes to it, with two differences.
 *
 * - Admission of queueing calls: at most `queueingCalls` acquires that may queue (`waitMs > 0`)
 *   are in flight in the store at once; more wait here, in arrival order. 2,000 clients that
 *   start waiting on one key at once would otherwise fill the store's connection pool with calls
 *   that serialize on that key's lock anyway, and every other route (reads, a try-once on
 *   another key, the waits' own heartbeats) would wait behind them. A try-once and every other
 *   call go straight through.
 * - Ownership: `close` closes a store the server opened; a store the server was given is left
 *   open (only this server's listeners are removed: the caller closes it when done with it).
 */
import type { HistoryEvent, HistoryQuery, LeaseRecord, LockRequest, LockTable } from '../model/types.js';
import type {
  AcquireOptions, AcquireOutcome, CallOptions, EndOptions, ForceReleaseOptions, ListOptions, LockStore, OwnerReleaseOptions, PollOutcome,
  RenewOutcome, StoreChange, StoreInfo,
} from '../stores/store.js';

/** Acquires that may queue, in flight in the store at once. */
const QUEUEING_CALLS = 4;

export interface ServerStoreOptions {
  /** The server opened the store (and closes it). @default false */
  owned?: boolean;
  /** Acquires that may queue in flight at once. @default 4 */
  queueingCalls?: number;
}

export class ServerStore implements LockStore {
  readonly #inner: LockStore;
  readonly #unwatch = new Set<() => void>();
  /** The inner store's batched heartbeat, when it has one. */
  readonly keepAlive?: (tickets: readonly string[], options?: CallOptions) => Promise<string[]>;

  readonly #owned: boolean;
  readonly #limit: number;
  #inFlight = 0;
  readonly #queue: Array<() => void> = [];

  constructor(inner: LockStore, options: ServerStoreOptions = {}) {
    this.#inner = inner;
    this.#owned = options.owned ?? false;
    this.#limit = options.queueingCalls ?? QUEUEING_CALLS;
    if (typeof inner.keepAlive === 'function') this.keepAlive = (tickets, options) => inner.keepAlive!(tickets, options);
  }

  get info(): StoreInfo {
    return this.#inner.info;
  }
  acquire(request: LockRequest, options: AcquireOptions): Promise<AcquireOutcome> {
    return options.waitMs === 0 ? this.#inner.acquire(request, options) : this.#admitted(request, options);
  }

  async #admitted(request: LockRequest, options: AcquireOptions): Promise<AcquireOutcome> {
    if (this.#inFlight >= this.#limit) {
      // Aborted while waiting for admission: nothing was sent, nothing is queued.
      await new Promise<void>((resolve, reject) => {
        const signal = options.signal;
        const admit = (): void => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        };
        const onAbort = (): void => {
          const at = this.#queue.indexOf(admit);
          if (at >= 0) this.#queue.splice(at, 1);
          reject(signal?.reason);
        };
        if (signal?.aborted) return reject(signal.reason);
        signal?.addEventListener('abort', onAbort, { once: true });
        this.#queue.push(admit);
      });
    } else {
      this.#inFlight++;
    }
    try {
      return await this.#inner.acquire(request, options);
    } finally {
      const next = this.#queue.shift();
      // The slot passes to the next in line (the count stays), or is freed.
      if (next) next();
      else this.#inFlight--;
    }
  }
  poll(ticket: string, options?: CallOptions): Promise<PollOutcome> {
    return this.#inner.poll(ticket, options);
  }
  cancel(ticket: string, options?: EndOptions): Promise<boolean> {
    return this.#inner.cancel(ticket, options);
  }
  renew(leaseId: string, ttlMs: number, options?: CallOptions): Promise<RenewOutcome> {
    return this.#inner.renew(leaseId, ttlMs, options);
  }
  release(leaseId: string, options?: EndOptions): Promise<boolean> {
    return this.#inner.release(leaseId, options);
  }
  get(leaseId: string, options?: CallOptions): Promise<LeaseRecord | null> {
    return this.#inner.get(leaseId, options);
  }
  releaseOwner(owner: string, options: OwnerReleaseOptions): Promise<number> {
    return this.#inner.releaseOwner(owner, options);
  }
  forceRelease(key: string, options: ForceReleaseOptions): Promise<number> {
    return this.#inner.forceRelease(key, options);
  }
  list(options?: ListOptions): Promise<LockTable> {
    return this.#inner.list(options);
  }
  history(query?: HistoryQuery, options?: CallOptions): Promise<HistoryEvent[]> {
    return this.#inner.history(query, options);
  }
  sweep(options?: CallOptions): Promise<number | null> {
    return this.#inner.sweep(options);
  }
  watch(listener: (change: StoreChange) => void): () => void {
    const unwatch = this.#inner.watch(listener);
    this.#unwatch.add(unwatch);
    return () => {
      this.#unwatch.delete(unwatch);
      unwatch();
    };
  }
  /** Stops the listeners registered through this object; closes the store when the server opened it. */
  async close(): Promise<void> {
    for (const unwatch of this.#unwatch) unwatch();
    this.#unwatch.clear();
    if (this.#owned) await this.#inner.close();
  }
}
