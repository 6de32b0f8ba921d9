/**
 * The lock table of one MySQL transaction, as the shared algorithm (`src/stores/table/`) sees it.
 *
 * An operation locks the root segments of the keys it touches (hf_roots rows, FOR UPDATE, in
 * sorted order), reads every live lease, waiter and lock-delay under those roots plus the rows it
 * looks up by id, request id or owner, and runs the synchronous algorithm on this snapshot. The
 * snapshot records the writes, which the store then sends in one batch with the COMMIT.
 *
 * Whatever the algorithm touches must lie under locked roots: a read or write of a key or a
 * record with a root not locked throws `NeedRoots`, and the store runs the operation again in a
 * new transaction that locks the larger set, still in sorted order (so two operations never wait
 * on each other's locks in opposite orders). Fences and queue sequences come from AUTO_INCREMENT
 * when the rows are inserted; until then the snapshot hands out placeholders that the store
 * replaces with the inserted ids.
 */
import type { HistoryEvent, HistoryQuery, LeaseRecord, Resource } from '../../model/types.js';
import type { DelayRow, HeldRow, LeaseEnd, TableState, WaiterRecord, WaitRow } from '../table/state.js';

/** The root segment of a key: every key it conflicts with has the same one. */
export function rootOf(key: string): string {
  const slash = key.indexOf('/');
  return slash < 0 ? key : key.slice(0, slash);
}

export function rootsOf(resources: readonly Resource[]): string[] {
  return [...new Set(resources.map((r) => rootOf(r.key)))].sort();
}

/** Equal, or one is an ancestor of the other. */
function related(a: string, b: string): boolean {
  return a === b || (b.length > a.length ? b.startsWith(a) && b[a.length] === '/' : a.startsWith(b) && a[b.length] === '/');
}

/** The operation touched records under roots its transaction has not locked: run it again with them. */
export class NeedRoots extends Error {
  constructor(readonly roots: string[]) {
    super(`needs the locks of roots ${roots.join(', ')}`);
  }
}

export interface StoredLease extends LeaseRecord {
  /** Placeholder (negative) until inserted. */
  fence: number;
}

export interface StoredDelay extends DelayRow {
  root: string;
}

export type Write =
  | { kind: 'insert-lease'; lease: LeaseRecord; roots: string[]; fromQueue: boolean }
  | { kind: 'end-lease'; lease: LeaseRecord; type: string; reason: string | null; by: string | null; at: number }
  | { kind: 'set-expiry'; fence: number; expiresAt: number; ttlMs: number }
  | { kind: 'insert-waiter'; waiter: WaiterRecord; roots: string[] }
  | { kind: 'touch-waiter'; seq: number; aliveUntil: number }
  | { kind: 'delete-waiter'; seq: number }
  | { kind: 'insert-delay'; delay: StoredDelay }
  | { kind: 'delete-delays'; roots: string[]; now: number };

/** What the store read in the transaction's first batch. */
export interface Loaded {
  now: number;
  locked: ReadonlySet<string>;
  /** Live leases under the locked roots and live leases looked up (any roots). */
  leases: LeaseRecord[];
  /** Ids of ended leases that were looked up. */
  ended: ReadonlySet<string>;
  waiters: WaiterRecord[];
  delays: StoredDelay[];
  /** The lookups by request id and owner, when the operation asked for them. */
  leaseByRequest?: LeaseRecord | undefined;
  waiterByRequest?: WaiterRecord | undefined;
  ownerLeases?: LeaseRecord[] | undefined;
}

/** Placeholders: fences below zero, queue sequences above every real one. */
const SEQ_PLACEHOLDER_BASE = 2 ** 52;

export class SnapshotState implements TableState {
  readonly writes: Write[] = [];
  readonly #now: number;
  readonly #locked: ReadonlySet<string>;
  readonly #leases = new Map<string, LeaseRecord>();
  readonly #ended = new Set<string>();
  readonly #waiters = new Map<string, WaiterRecord>();
  #delays: StoredDelay[];
  readonly #loaded: Loaded;
  /** Ids of waiters deleted by this operation (a grant of one of them is logged for watchers). */
  readonly #leftQueue = new Set<string>();
  #fences = 0;
  #seqs = 0;

  constructor(loaded: Loaded) {
    this.#loaded = loaded;
    this.#now = loaded.now;
    this.#locked = loaded.locked;
    for (const lease of loaded.leases) this.#leases.set(lease.id, lease);
    for (const id of loaded.ended) this.#ended.add(id);
    for (const waiter of loaded.waiters) this.#waiters.set(waiter.id, waiter);
    this.#delays = [...loaded.delays];
  }

  #require(roots: readonly string[]): void {
    const missing = roots.filter((r) => !this.#locked.has(r));
    if (missing.length > 0) throw new NeedRoots(missing);
  }

  #requireFor(resources: readonly Resource[]): void {
    this.#require(rootsOf(resources));
  }

  #allLocked(resources: readonly Resource[]): boolean {
    return resources.every((r) => this.#locked.has(rootOf(r.key)));
  }

  #anyLocked(resources: readonly Resource[]): boolean {
    return resources.some((r) => this.#locked.has(rootOf(r.key)));
  }

  now(): number {
    return this.#now;
  }

  nextFence(): number {
    return -++this.#fences;
  }

  nextSeq(): number {
    return SEQ_PLACEHOLDER_BASE + ++this.#seqs;
  }

  lease(id: string): LeaseRecord | undefined {
    const lease = this.#leases.get(id);
    if (lease) this.#requireFor(lease.resources);
    return lease;
  }

  leaseByRequestId(owner: string, requestId: string): LeaseRecord | undefined {
    const found = this.#loaded.leaseByRequest;
    const lease = found && found.owner === owner && found.requestId === requestId ? this.#leases.get(found.id) : undefined;
    if (lease) this.#requireFor(lease.resources);
    return lease;
  }

  leasesOfOwner(owner: string): LeaseRecord[] {
    const leases = (this.#loaded.ownerLeases ?? [])
      .filter((l) => l.owner === owner)
      .map((l) => this.#leases.get(l.id))
      .filter((l): l is LeaseRecord => l !== undefined);
    for (const lease of leases) this.#requireFor(lease.resources);
    return leases.sort((a, b) => a.fence - b.fence);
  }

  leasesOnKey(key: string): LeaseRecord[] {
    this.#require([rootOf(key)]);
    return [...this.#leases.values()].filter((l) => l.resources.some((r) => r.key === key)).sort((a, b) => a.fence - b.fence);
  }

  heldRelatedTo(key: string): HeldRow[] {
    this.#require([rootOf(key)]);
    const rows: HeldRow[] = [];
    for (const lease of this.#leases.values()) {
      for (const resource of lease.resources) if (related(resource.key, key)) rows.push({ resource, lease });
    }
    return rows;
  }

  /**
   * Due leases under the locked roots. One that also holds keys under roots not locked asks for
   * them (it must be ended whole); one entirely elsewhere is left to the operations of its roots.
   */
  dueLeases(now: number): LeaseRecord[] {
    const due = [...this.#leases.values()].filter((l) => l.expiresAt <= now && this.#anyLocked(l.resources));
    for (const lease of due) this.#requireFor(lease.resources);
    return due.sort((a, b) => a.expiresAt - b.expiresAt || a.fence - b.fence);
  }

  insertLease(lease: LeaseRecord): void {
    const roots = rootsOf(lease.resources);
    this.#require(roots);
    this.#leases.set(lease.id, lease);
    this.writes.push({ kind: 'insert-lease', lease, roots, fromQueue: this.#leftQueue.has(lease.id) });
  }

  setLeaseExpiry(id: string, expiresAt: number, ttlMs: number): void {
    const lease = this.#leases.get(id);
    if (!lease) return;
    this.#requireFor(lease.resources);
    this.#leases.set(id, { ...lease, expiresAt, ttlMs });
    this.writes.push({ kind: 'set-expiry', fence: lease.fence, expiresAt, ttlMs });
  }

  endLease(lease: LeaseRecord, end: LeaseEnd): void {
    if (!this.#leases.has(lease.id)) return;
    this.#requireFor(lease.resources);
    this.#leases.delete(lease.id);
    this.#ended.add(lease.id);
    // The lease row is its own history: the end is written into it.
    this.writes.push({ kind: 'end-lease', lease, type: end.type, reason: end.reason, by: end.by, at: end.at });
  }


  endedLease(id: string): boolean {
    return this.#ended.has(id);
  }

  waiter(id: string): WaiterRecord | undefined {
    const waiter = this.#waiters.get(id);
    if (waiter) this.#requireFor(waiter.resources);
    return waiter;
  }

  waiterByRequestId(owner: string, requestId: string): WaiterRecord | undefined {
    const found = this.#loaded.waiterByRequest;
    const waiter = found && found.owner === owner && found.requestId === requestId ? this.#waiters.get(found.id) : undefined;
    if (waiter) this.#requireFor(waiter.resources);
    return waiter;
  }

  waitingRelatedTo(key: string): WaitRow[] {
    this.#require([rootOf(key)]);
    const rows: WaitRow[] = [];
    for (const waiter of this.#waiters.values()) {
      for (const resource of waiter.resources) if (related(resource.key, key)) rows.push({ resource, waiter });
    }
    return rows;
  }

  dueWaiters(now: number): WaiterRecord[] {
    const due = [...this.#waiters.values()].filter((w) => Math.min(w.aliveUntil, w.deadline) <= now && this.#anyLocked(w.resources));
    for (const waiter of due) this.#requireFor(waiter.resources);
    return due.sort((a, b) => Math.min(a.aliveUntil, a.deadline) - Math.min(b.aliveUntil, b.deadline) || a.seq - b.seq);
  }

  insertWaiter(waiter: WaiterRecord): void {
    const roots = rootsOf(waiter.resources);
    this.#require(roots);
    this.#waiters.set(waiter.id, waiter);
    this.writes.push({ kind: 'insert-waiter', waiter, roots });
  }

  touchWaiter(id: string, aliveUntil: number): void {
    const waiter = this.#waiters.get(id);
    if (!waiter) return;
    this.#requireFor(waiter.resources);
    this.#waiters.set(id, { ...waiter, aliveUntil });
    this.writes.push({ kind: 'touch-waiter', seq: waiter.seq, aliveUntil });
  }

  deleteWaiter(id: string): void {
    const waiter = this.#waiters.get(id);
    if (!waiter) return;
    this.#requireFor(waiter.resources);
    this.#waiters.delete(id);
    this.#leftQueue.add(id);
    this.writes.push({ kind: 'delete-waiter', seq: waiter.seq });
  }

  delaysRelatedTo(key: string): DelayRow[] {
    this.#require([rootOf(key)]);
    return this.#delays.filter((d) => related(d.key, key));
  }

  insertDelay(delay: DelayRow): void {
    const root = rootOf(delay.key);
    this.#require([root]);
    const stored = { ...delay, root };
    this.#delays.push(stored);
    this.writes.push({ kind: 'insert-delay', delay: stored });
  }

  deleteDueDelays(now: number): string[] {
    const due = this.#delays.filter((d) => d.until <= now && this.#locked.has(d.root));
    if (due.length === 0) return [];
    this.#delays = this.#delays.filter((d) => !due.includes(d));
    this.writes.push({ kind: 'delete-delays', roots: [...new Set(due.map((d) => d.root))], now });
    return [...new Set(due.map((d) => d.key))];
  }

  /** Answered by the database after the writes (the store replaces the value). */
  nextDue(): number | null {
    return null;
  }

  /**
   * The earliest due time (a lease's expiry, a waiter's drop, a lock-delay's end) among the rows
   * this snapshot holds after its writes: everything under the locked roots, so every blocker of
   * a waiter queued here. A write never makes a row elsewhere due sooner, so this is what the
   * sweep timer must hear of; the store-wide minimum is read by the sweep alone.
   */
  dueAfterWrites(): number | null {
    let due = Infinity;
    for (const lease of this.#leases.values()) due = Math.min(due, lease.expiresAt);
    for (const waiter of this.#waiters.values()) due = Math.min(due, waiter.aliveUntil, waiter.deadline);
    for (const delay of this.#delays) due = Math.min(due, delay.until);
    return due === Infinity ? null : due;
  }

  history(_query: HistoryQuery): HistoryEvent[] {
    throw new Error('history is read by the store directly');
  }

  /** For `list` over a snapshot of every live row (the store loads them with every root "locked"). */
  heldWithPrefix(prefix: string): HeldRow[] {
    const rows: HeldRow[] = [];
    for (const lease of this.#leases.values()) {
      for (const resource of lease.resources) if (resource.key.startsWith(prefix)) rows.push({ resource, lease });
    }
    return rows;
  }

  waitingWithPrefix(prefix: string): WaitRow[] {
    const rows: WaitRow[] = [];
    for (const waiter of this.#waiters.values()) {
      for (const resource of waiter.resources) if (resource.key.startsWith(prefix)) rows.push({ resource, waiter });
    }
    return rows;
  }
}

/** A set of every root, for read-only snapshots (list) that take no locks. */
export const ALL_ROOTS: ReadonlySet<string> = new (class extends Set<string> {
  override has(): boolean {
    return true;
  }
})();
