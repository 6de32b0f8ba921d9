/**
 * The one store interface. Every store (memory, sqlite, postgres, mysql, redis, etcd, http)
 * implements it atomically, with time taken from the store's own clock. The waiter queue, the
 * fence counter and every conflict decision live here, so fairness and safety hold across all
 * processes that share a store. Results are domain values, never a database's raw codes.
 *
 * Waiting protocol: `acquire` with `waitMs > 0` either grants or queues the request under its id
 * (its ticket). Whenever a lease or a waiter ends, the store itself grants the queued requests that
 * became eligible, in queue order, and tells `watch` listeners which tickets it granted. A waiter
 * calls `poll` on such a notice, at the `retryAfterMs` hint, and at least every
 * `waiterTtlMs / 3` as a heartbeat; a ticket not polled for `waiterTtlMs` is dropped.
 */
import type { Holder } from '../model/errors.js';
import type { HistoryEvent, HistoryQuery, LeaseRecord, LockRequest, LockTable } from '../model/types.js';

export interface CallOptions {
  signal?: AbortSignal | undefined;
}

export interface AcquireOptions extends CallOptions {
  /** 0: try once. Otherwise queue for up to this long (store time) unless granted first. */
  waitMs: number;
  /** A queued ticket not polled for this long is dropped (the waiter died). */
  waiterTtlMs: number;
}

export type AcquireOutcome =
  | { status: 'granted'; lease: LeaseRecord; now: number }
  | { status: 'busy'; holders: Holder[]; retryAfterMs: number; now: number }
  | {
      status: 'queued';
      /** The ticket: the id under which the lease will be granted. */
      ticket: string;
      holders: Holder[];
      /** Upper bound of the time until the blockers end (for `Retry-After`). */
      retryAfterMs: number;
      /** When something blocking this ticket is due to end: poll then. */
      nextCheckMs: number;
      now: number;
    };

export type PollOutcome =
  | { status: 'granted'; lease: LeaseRecord; now: number }
  | { status: 'queued'; holders: Holder[]; retryAfterMs: number; nextCheckMs: number; now: number }
  /** The ticket is gone: it timed out, was dropped as dead, or was cancelled. */
  | { status: 'gone'; now: number };

export type RenewOutcome =
  | { status: 'renewed'; lease: LeaseRecord; now: number }
  /** The lease existed but ended (expired, released, forced). */
  | { status: 'lost'; now: number }
  | { status: 'unknown'; now: number };

/** What changed in the store, for push wake-ups and event streams. */
export interface StoreChange {
  type: 'acquired' | 'released' | 'expired' | 'forced' | 'waiting' | 'timed-out' | 'left';
  /** Tickets granted by this change (the ids of the new leases). */
  granted: string[];
  /** Keys concerned. */
  keys: string[];
  owner: string;
  fence: number | null;
  at: number;
  /**
   * An `acquired` change that grants a queued ticket may carry the new lease's expiry (store
   * time). With it, the waiter woken by the change has its whole lease (the rest is its own
   * request) and needs no poll; without it, the waiter polls.
   */
  expiresAt?: number | undefined;
}

export interface StoreInfo {
  /** `memory`, `sqlite`, `postgres`, ... */
  kind: string;
  /** Leases, queue and fence counter survive a restart. */
  durable: boolean;
  /**
   * `complete`: every grant is pushed to `watch` listeners (no polling needed).
   * `local`: only grants made through this process are pushed; waiters also poll with backoff.
   */
  wakeups: 'complete' | 'local';
}

/** A release or cancel by id. */
export interface EndOptions extends CallOptions {
  /**
   * Who asked, when that is not simply the lease's owner (an admin token, a token acting for
   * the owner): written as the history event's `by`. @default the lease's owner
   */
  by?: string | undefined;
}

export interface OwnerReleaseOptions extends CallOptions {
  /** Only leases that hold this exact key. */
  key?: string | undefined;
  /** Who asked, for the history. */
  by: string;
}

export interface ForceReleaseOptions extends CallOptions {
  by: string;
}

export interface ListOptions extends CallOptions {
  /** Only keys starting with this string. */
  prefix?: string | undefined;
}

/**
 * Acquire and release of a store that completes them within the call (the memory store), as
 * synchronous functions: same results, same errors (thrown), same changes published before they
 * return. The engine uses them to save a promise turn per call. Not part of `LockStore`: they
 * are registered for the store object itself, so a wrapper or `Proxy` around it (which may
 * intercept calls) never goes around itself.
 */
export interface ImmediateCalls {
  acquire(request: LockRequest, options: AcquireOptions): AcquireOutcome;
  release(leaseId: string, options?: EndOptions): boolean;
}

const immediateCalls = new WeakMap<LockStore, ImmediateCalls>();

/** For a store's constructor: `store` completes acquire and release within the call. */
export function offerImmediateCalls(store: LockStore, calls: ImmediateCalls): void {
  immediateCalls.set(store, calls);
}

/** The synchronous acquire and release of `store`, when it offered them (never of a wrapper). */
export function immediateCallsOf(store: LockStore): ImmediateCalls | undefined {
  return immediateCalls.get(store);
}

export interface LockStore {
  readonly info: StoreInfo;
  acquire(request: LockRequest, options: AcquireOptions): Promise<AcquireOutcome>;
  /** A waiter's check: granted, still queued (heartbeat refreshed), or gone. */
  poll(ticket: string, options?: CallOptions): Promise<PollOutcome>;
  /**
   * The heartbeat of many queued tickets in one call (optional: a store without it gets a `poll`
   * per ticket). Answers the tickets that are still queued, their heartbeat renewed (written only
   * when a third of its period has passed, like `poll`'s). A ticket not in the answer was granted,
   * dropped or timed out: its waiter polls it to learn which. Nothing is granted or settled here.
   */
  keepAlive?(tickets: readonly string[], options?: CallOptions): Promise<string[]>;
  /** Leaves the queue. A lease granted to the ticket meanwhile is released (it returns true then). */
  cancel(ticket: string, options?: EndOptions): Promise<boolean>;
  renew(leaseId: string, ttlMs: number, options?: CallOptions): Promise<RenewOutcome>;
  release(leaseId: string, options?: EndOptions): Promise<boolean>;
  get(leaseId: string, options?: CallOptions): Promise<LeaseRecord | null>;
  releaseOwner(owner: string, options: OwnerReleaseOptions): Promise<number>;
  forceRelease(key: string, options: ForceReleaseOptions): Promise<number>;
  list(options?: ListOptions): Promise<LockTable>;
  history(query?: HistoryQuery, options?: CallOptions): Promise<HistoryEvent[]>;
  /** Ends expired leases and dead waiters and grants what became free. Returns the store time of the next due expiry, or null. */
  sweep(options?: CallOptions): Promise<number | null>;
  /** Push notifications of changes made through this store object (and, where the store can, by others). */
  watch(listener: (change: StoreChange) => void): () => void;
  close(): Promise<void>;
}
