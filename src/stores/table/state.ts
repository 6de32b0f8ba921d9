/**
 * The synchronous view of a lock table that the shared algorithm (`operations.ts`) runs on.
 * Stores that can run code next to their data atomically (memory; SQLite inside an IMMEDIATE
 * transaction; a snapshot checked with compare-and-swap) implement this and reuse the algorithm.
 * Stores that run the algorithm in their own language (Postgres functions, Redis Lua) mirror it.
 */
import type { HistoryEvent, HistoryQuery, HistoryType, LeaseRecord, Metadata, Resource } from '../../model/types.js';

export interface WaiterRecord {
  /** The ticket: the id of the lease once granted. */
  id: string;
  /** Queue order: strictly increasing across the store. */
  seq: number;
  owner: string;
  resources: Resource[];
  ttlMs: number;
  requestId: string | null;
  metadata: Metadata;
  lockDelayMs: number;
  enqueuedAt: number;
  /** The waiter gives up at this store time. */
  deadline: number;
  /** Dropped as dead unless polled before this store time. */
  aliveUntil: number;
  waiterTtlMs: number;
}

/** A held resource and its lease. */
export interface HeldRow {
  resource: Resource;
  lease: LeaseRecord;
}

/** A queued resource and its waiter. */
export interface WaitRow {
  resource: Resource;
  waiter: WaiterRecord;
}

/** The lock-delay left on a key by a lease that ended other than by a normal release. */
export interface DelayRow {
  key: string;
  until: number;
  owner: string;
  fence: number;
  since: number;
  metadata: Metadata;
}

/**
 * How a lease ended. A lease is also its own history: `insertLease` records its `acquired` event
 * (at `acquiredAt`), `endLease` its end event, so a store can keep both in the lease's one row.
 */
export interface LeaseEnd {
  type: Exclude<HistoryType, 'acquired'>;
  /** `release`, `release-owner`, `force`, `expiry`, `cancelled`. */
  reason: string;
  by: string | null;
  /** Store time of the end (a lease that expired ends at its expiry). */
  at: number;
}

export interface TableState {
  /** The store's clock, ms since the epoch. Read once per operation. */
  now(): number;
  /** Increments and returns the fence counter (durable stores keep it across restarts). */
  nextFence(): number;
  /** Increments and returns the queue sequence. */
  nextSeq(): number;

  lease(id: string): LeaseRecord | undefined;
  leaseByRequestId(owner: string, requestId: string): LeaseRecord | undefined;
  leasesOfOwner(owner: string): LeaseRecord[];
  leasesOnKey(key: string): LeaseRecord[];
  /** Held resources whose key equals `key` or is an ancestor or descendant of it. */
  heldRelatedTo(key: string): readonly HeldRow[];
  /** Leases with `expiresAt <= now`. */
  dueLeases(now: number): readonly LeaseRecord[];
  /** Adds a live lease and records its `acquired` event. */
  insertLease(lease: LeaseRecord): void;
  setLeaseExpiry(id: string, expiresAt: number, ttlMs: number): void;
  /** Ends a live lease (it is no longer held) and records its end event. */
  endLease(lease: LeaseRecord, end: LeaseEnd): void;
  /** True when `id` belonged to a lease that has ended (so a renew says LEASE_LOST, not NOT_FOUND). */
  endedLease(id: string): boolean;

  waiter(id: string): WaiterRecord | undefined;
  waiterByRequestId(owner: string, requestId: string): WaiterRecord | undefined;
  /** Queued resources whose key equals `key` or is an ancestor or descendant of it. */
  waitingRelatedTo(key: string): readonly WaitRow[];
  /** Waiters with `aliveUntil <= now` or `deadline <= now`. */
  dueWaiters(now: number): readonly WaiterRecord[];
  insertWaiter(waiter: WaiterRecord): void;
  touchWaiter(id: string, aliveUntil: number): void;
  deleteWaiter(id: string): void;

  delaysRelatedTo(key: string): readonly DelayRow[];
  insertDelay(delay: DelayRow): void;
  /** Deletes lock-delays with `until <= now` and returns their keys. */
  deleteDueDelays(now: number): readonly string[];

  /** The earliest store time at which a lease, a waiter or a delay falls due, or null. */
  nextDue(): number | null;

  /** Lease events, newest first: the `acquired` and end events recorded by `insertLease` and `endLease`. */
  history(query: HistoryQuery): HistoryEvent[];

  /** Live leases and waiters with a key starting with `prefix` (all when empty), for `list`. */
  heldWithPrefix(prefix: string): HeldRow[];
  waitingWithPrefix(prefix: string): WaitRow[];
}
