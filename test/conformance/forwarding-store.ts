/**
 * A `LockStore` that forwards every call to another store. Tests subclass it to inject faults
 * (a renew that fails) or to count calls, and pass it to `openLocks(store)`.
 */
import type {
  AcquireOutcome, CallOptions, EndOptions, HistoryEvent, HistoryQuery, LeaseRecord, LockRequest, LockStore, LockTable, PollOutcome,
  RenewOutcome, StoreChange, StoreInfo,
} from '../../src/index.js';

type StoreAcquireOptions = Parameters<LockStore['acquire']>[1];
type OwnerOptions = Parameters<LockStore['releaseOwner']>[1];
type ForceOptions = Parameters<LockStore['forceRelease']>[1];
type ListOptions = Parameters<LockStore['list']>[0];

export class ForwardingStore implements LockStore {
  /** The inner store's batched heartbeat, when it has one. */
  readonly keepAlive?: (tickets: readonly string[], options?: CallOptions) => Promise<string[]>;

  constructor(readonly inner: LockStore) {
    if (typeof inner.keepAlive === 'function') this.keepAlive = (tickets, options) => inner.keepAlive!(tickets, options);
  }

  get info(): StoreInfo {
    return this.inner.info;
  }
  acquire(request: LockRequest, options: StoreAcquireOptions): Promise<AcquireOutcome> {
    return this.inner.acquire(request, options);
  }
  poll(ticket: string, options?: CallOptions): Promise<PollOutcome> {
    return this.inner.poll(ticket, options);
  }
  cancel(ticket: string, options?: EndOptions): Promise<boolean> {
    return this.inner.cancel(ticket, options);
  }
  renew(leaseId: string, ttlMs: number, options?: CallOptions): Promise<RenewOutcome> {
    return this.inner.renew(leaseId, ttlMs, options);
  }
  release(leaseId: string, options?: EndOptions): Promise<boolean> {
    return this.inner.release(leaseId, options);
  }
  get(leaseId: string, options?: CallOptions): Promise<LeaseRecord | null> {
    return this.inner.get(leaseId, options);
  }
  releaseOwner(owner: string, options: OwnerOptions): Promise<number> {
    return this.inner.releaseOwner(owner, options);
  }
  forceRelease(key: string, options: ForceOptions): Promise<number> {
    return this.inner.forceRelease(key, options);
  }
  list(options?: ListOptions): Promise<LockTable> {
    return this.inner.list(options);
  }
  history(query?: HistoryQuery, options?: CallOptions): Promise<HistoryEvent[]> {
    return this.inner.history(query, options);
  }
  sweep(options?: CallOptions): Promise<number | null> {
    return this.inner.sweep(options);
  }
  watch(listener: (change: StoreChange) => void): () => void {
    return this.inner.watch(listener);
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}
