/**
 * A store the server was given rather than opened: every call goes to it, except `close`, which
 * only stops this server's use of it (the caller closes the store when it is done with it).
 */
import type { HistoryEvent, HistoryQuery, LeaseRecord, LockRequest, LockTable } from '../model/types.js';
import type {
  AcquireOptions, AcquireOutcome, CallOptions, ForceReleaseOptions, ListOptions, LockStore, OwnerReleaseOptions, PollOutcome,
  RenewOutcome, StoreChange, StoreInfo,
} from '../stores/store.js';

export class BorrowedStore implements LockStore {
  readonly #inner: LockStore;
  readonly #unwatch = new Set<() => void>();

  constructor(inner: LockStore) {
    this.#inner = inner;
  }

  get info(): StoreInfo {
    return this.#inner.info;
  }
  acquire(request: LockRequest, options: AcquireOptions): Promise<AcquireOutcome> {
    return this.#inner.acquire(request, options);
  }
  poll(ticket: string, options?: CallOptions): Promise<PollOutcome> {
    return this.#inner.poll(ticket, options);
  }
  cancel(ticket: string, options?: CallOptions): Promise<boolean> {
    return this.#inner.cancel(ticket, options);
  }
  renew(leaseId: string, ttlMs: number, options?: CallOptions): Promise<RenewOutcome> {
    return this.#inner.renew(leaseId, ttlMs, options);
  }
  release(leaseId: string, options?: CallOptions): Promise<boolean> {
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
  /** Stops the listeners registered through this object; the store itself stays open. */
  async close(): Promise<void> {
    for (const unwatch of this.#unwatch) unwatch();
    this.#unwatch.clear();
  }
}
