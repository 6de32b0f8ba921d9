/** The domain types shared by the engine, the stores, the server and the clients. */

export type Mode = 'exclusive' | 'shared';

/** One resource of a request: a key, a mode and, for `shared`, an optional holder limit. */
export interface Resource {
  key: string;
  mode: Mode;
  /** For `shared` only: at most this many shared holders of this exact key (a semaphore). `null`: unlimited. */
  limit: number | null;
}

export type Metadata = Record<string, unknown>;

/** A validated request, as the stores receive it. */
export interface LockRequest {
  /** The lease id this request will have when granted (also its queue ticket while it waits). */
  id: string;
  owner: string;
  resources: Resource[];
  ttlMs: number;
  requestId: string | null;
  metadata: Metadata;
  lockDelayMs: number;
}

/** A granted lease as stores return it. Times are the store's clock, in ms since the epoch. */
export interface LeaseRecord {
  id: string;
  owner: string;
  resources: Resource[];
  fence: number;
  acquiredAt: number;
  expiresAt: number;
  ttlMs: number;
  requestId: string | null;
  metadata: Metadata;
  lockDelayMs: number;
}

/** A held resource as `list` shows it: no lease id (it is a capability). */
export interface HeldLock {
  key: string;
  mode: Mode;
  limit: number | null;
  owner: string;
  fence: number;
  acquiredAt: string;
  expiresAt: string;
  metadata: Metadata;
}

/** A queued resource as `list` shows it. `position` is 1-based among the waiters of that key. */
export interface QueuedWaiter {
  key: string;
  mode: Mode;
  limit: number | null;
  owner: string;
  position: number;
  since: string;
  /** When the waiter gives up unless granted first. */
  waitUntil: string;
  metadata: Metadata;
}

export interface LockTable {
  locks: HeldLock[];
  waiters: QueuedWaiter[];
}

export type HistoryType = 'acquired' | 'released' | 'expired' | 'forced';

/** A past lease event. Leases are named by their fence (public), never by their id (a capability). */
export interface HistoryEvent {
  id: number;
  at: string;
  type: HistoryType;
  owner: string;
  fence: number;
  resources: Resource[];
  /** Who ended the lease: its owner for its own release (or cancel), else who asked (`releaseOwner`, `forced`, a release by id with `by`). */
  by: string | null;
  /** `release`, `release-owner`, `force`, `expiry`, `cancelled`, or `null` for `acquired`. */
  reason: string | null;
}

export interface HistoryQuery {
  key?: string;
  owner?: string;
  /** At most this many events, newest first. */
  limit?: number;
  /** Only events with an id below this one (paging). */
  beforeId?: number;
}
