/**
 * The in-memory lock table: maps and key indexes for O(depth) conflict checks, heaps for due
 * times. Time is this process's monotonic clock anchored at the epoch. Nothing is durable.
 */
import type { HistoryEvent, HistoryQuery, LeaseRecord } from '../../model/types.js';
import type { DelayRow, HeldRow, LeaseEnd, TableState, WaitRow, WaiterRecord } from '../table/state.js';
import { DueHeap } from './heap.js';
import { KeyIndex } from './key-index.js';

export interface MemoryStateOptions {
  /** How many history events to keep. */
  historyLimit: number;
  /** How many ended lease ids to remember, so a late renew says LEASE_LOST rather than NOT_FOUND. */
  endedLimit: number;
}

interface DelayEntry extends DelayRow {
  resource: { key: string };
  id: string;
}

const requestKey = (owner: string, requestId: string): string => `${owner}\u0000${requestId}`;

function addTo<K, V>(map: Map<K, Set<V>>, key: K, value: V): void {
  let set = map.get(key);
  if (!set) map.set(key, (set = new Set()));
  set.add(value);
}

function removeFrom<K, V>(map: Map<K, Set<V>>, key: K, value: V): void {
  const set = map.get(key);
  if (!set) return;
  set.delete(value);
  if (set.size === 0) map.delete(key);
}

export class MemoryState implements TableState {
  readonly #options: MemoryStateOptions;
  #fence = 0;
  #seq = 0;
  #delaySeq = 0;
  #historyId = 0;

  readonly #leases = new Map<string, { lease: LeaseRecord; rows: HeldRow[] }>();
  readonly #leaseByRequest = new Map<string, string>();
  readonly #leasesByOwner = new Map<string, Set<string>>();
  readonly #held = new KeyIndex<HeldRow>();
  readonly #leaseDue = new DueHeap();
  /** Ended lease ids in two generations: between endedLimit/2 and endedLimit are remembered, O(1) each. */
  #ended = new Set<string>();
  #endedBefore = new Set<string>();

  readonly #waiters = new Map<string, { waiter: WaiterRecord; rows: WaitRow[] }>();
  readonly #waiterByRequest = new Map<string, string>();
  readonly #waiting = new KeyIndex<WaitRow>();
  readonly #waiterDue = new DueHeap();

  readonly #delays = new Map<string, DelayEntry>();
  readonly #delayIndex = new KeyIndex<DelayEntry>();
  readonly #delayDue = new DueHeap();

  /** Kept with the time as a number; formatted when read. */
  readonly #history: Array<Omit<HistoryEvent, 'at'> & { at: number }> = [];

  constructor(options: MemoryStateOptions) {
    this.#options = options;
  }

  now(): number {
    return Math.floor(performance.timeOrigin + performance.now());
  }

  nextFence(): number {
    return ++this.#fence;
  }

  nextSeq(): number {
    return ++this.#seq;
  }

  lease(id: string): LeaseRecord | undefined {
    return this.#leases.get(id)?.lease;
  }

  leaseByRequestId(owner: string, requestId: string): LeaseRecord | undefined {
    const id = this.#leaseByRequest.get(requestKey(owner, requestId));
    return id === undefined ? undefined : this.lease(id);
  }

  leasesOfOwner(owner: string): LeaseRecord[] {
    return [...(this.#leasesByOwner.get(owner) ?? [])].map((id) => this.lease(id)!);
  }

  leasesOnKey(key: string): LeaseRecord[] {
    return [...new Set([...this.#held.on(key)].map((row) => row.lease.id))].map((id) => this.lease(id)!);
  }

  heldRelatedTo(key: string): HeldRow[] {
    return this.#held.related(key);
  }

  dueLeases(now: number): LeaseRecord[] {
    const out: LeaseRecord[] = [];
    const heap = this.#leaseDue;
    while (heap.size > 0 && heap.peekTime()! <= now) {
      const id = heap.peekId()!;
      const at = heap.peekTime()!;
      heap.pop();
      const lease = this.lease(id);
      // Stale entries (renewed or ended leases) are skipped.
      if (lease && lease.expiresAt === at) out.push(lease);
    }
    return out;
  }

  insertLease(lease: LeaseRecord): void {
    const rows = lease.resources.map((resource) => ({ resource, lease }));
    this.#leases.set(lease.id, { lease, rows });
    for (const row of rows) this.#held.add(row);
    if (lease.requestId !== null) this.#leaseByRequest.set(requestKey(lease.owner, lease.requestId), lease.id);
    addTo(this.#leasesByOwner, lease.owner, lease.id);
    this.#leaseDue.push(lease.expiresAt, lease.id);
    this.#record({ type: 'acquired', reason: null, by: null, at: lease.acquiredAt }, lease);
  }

  setLeaseExpiry(id: string, expiresAt: number, ttlMs: number): void {
    const entry = this.#leases.get(id);
    if (!entry) return;
    const lease = { ...entry.lease, expiresAt, ttlMs };
    for (const row of entry.rows) this.#held.remove(row);
    const rows = lease.resources.map((resource) => ({ resource, lease }));
    for (const row of rows) this.#held.add(row);
    this.#leases.set(id, { lease, rows });
    this.#leaseDue.push(expiresAt, id);
  }

  endLease(ended: LeaseRecord, end: LeaseEnd): void {
    const id = ended.id;
    const entry = this.#leases.get(id);
    if (!entry) return;
    this.#record(end, entry.lease);
    this.#leases.delete(id);
    for (const row of entry.rows) this.#held.remove(row);
    const { lease } = entry;
    if (lease.requestId !== null) this.#leaseByRequest.delete(requestKey(lease.owner, lease.requestId));
    removeFrom(this.#leasesByOwner, lease.owner, id);
    this.#ended.add(id);
    if (this.#ended.size >= this.#options.endedLimit / 2) {
      this.#endedBefore = this.#ended;
      this.#ended = new Set();
    }
  }

  endedLease(id: string): boolean {
    return this.#ended.has(id) || this.#endedBefore.has(id);
  }

  waiter(id: string): WaiterRecord | undefined {
    return this.#waiters.get(id)?.waiter;
  }

  waiterByRequestId(owner: string, requestId: string): WaiterRecord | undefined {
    const id = this.#waiterByRequest.get(requestKey(owner, requestId));
    return id === undefined ? undefined : this.waiter(id);
  }

  waitingRelatedTo(key: string): WaitRow[] {
    return this.#waiting.related(key);
  }

  dueWaiters(now: number): WaiterRecord[] {
    const out: WaiterRecord[] = [];
    const heap = this.#waiterDue;
    while (heap.size > 0 && heap.peekTime()! <= now) {
      const id = heap.peekId()!;
      heap.pop();
      const waiter = this.waiter(id);
      if (waiter && Math.min(waiter.aliveUntil, waiter.deadline) <= now) out.push(waiter);
      else if (waiter) heap.push(Math.min(waiter.aliveUntil, waiter.deadline), id);
    }
    return out;
  }

  insertWaiter(waiter: WaiterRecord): void {
    const rows = waiter.resources.map((resource) => ({ resource, waiter }));
    this.#waiters.set(waiter.id, { waiter, rows });
    for (const row of rows) this.#waiting.add(row);
    if (waiter.requestId !== null) this.#waiterByRequest.set(requestKey(waiter.owner, waiter.requestId), waiter.id);
    this.#waiterDue.push(Math.min(waiter.aliveUntil, waiter.deadline), waiter.id);
  }

  touchWaiter(id: string, aliveUntil: number): void {
    // The heap keeps the old (earlier) due time; dueWaiters re-queues entries that are not due yet.
    const entry = this.#waiters.get(id);
    if (entry) entry.waiter.aliveUntil = aliveUntil;
  }

  deleteWaiter(id: string): void {
    const entry = this.#waiters.get(id);
    if (!entry) return;
    this.#waiters.delete(id);
    for (const row of entry.rows) this.#waiting.remove(row);
    const { waiter } = entry;
    if (waiter.requestId !== null) this.#waiterByRequest.delete(requestKey(waiter.owner, waiter.requestId));
  }

  delaysRelatedTo(key: string): DelayRow[] {
    return this.#delayIndex.related(key);
  }

  insertDelay(delay: DelayRow): void {
    const entry: DelayEntry = { ...delay, resource: { key: delay.key }, id: String(++this.#delaySeq) };
    this.#delays.set(entry.id, entry);
    this.#delayIndex.add(entry);
    this.#delayDue.push(entry.until, entry.id);
  }

  deleteDueDelays(now: number): string[] {
    const keys: string[] = [];
    const heap = this.#delayDue;
    while (heap.size > 0 && heap.peekTime()! <= now) {
      const entry = this.#delays.get(heap.peekId()!);
      heap.pop();
      if (!entry) continue;
      this.#delays.delete(entry.id);
      this.#delayIndex.remove(entry);
      keys.push(entry.key);
    }
    return keys;
  }

  nextDue(): number | null {
    // Drop stale lease tops so the timer is not armed for a lease that was renewed or ended.
    while (this.#leaseDue.size > 0) {
      const lease = this.lease(this.#leaseDue.peekId()!);
      if (lease && lease.expiresAt === this.#leaseDue.peekTime()) break;
      this.#leaseDue.pop();
    }
    while (this.#waiterDue.size > 0 && !this.#waiters.has(this.#waiterDue.peekId()!)) this.#waiterDue.pop();
    const times = [this.#leaseDue.peekTime(), this.#waiterDue.peekTime(), this.#delayDue.peekTime()].filter(
      (t): t is number => t !== undefined,
    );
    return times.length === 0 ? null : Math.min(...times);
  }

  #record(event: Pick<HistoryEvent, 'type' | 'reason' | 'by'> & { at: number }, lease: LeaseRecord): void {
    this.#history.push({
      id: ++this.#historyId, at: event.at, type: event.type, owner: lease.owner, fence: lease.fence, resources: lease.resources,
      by: event.by, reason: event.reason,
    });
    // Trimmed in batches (amortized O(1)); reads only look at the newest historyLimit events.
    if (this.#history.length >= this.#options.historyLimit * 2) this.#history.splice(0, this.#history.length - this.#options.historyLimit);
  }

  history(query: HistoryQuery): HistoryEvent[] {
    const limit = query.limit ?? 100;
    const out: HistoryEvent[] = [];
    const oldest = Math.max(0, this.#history.length - this.#options.historyLimit);
    for (let i = this.#history.length - 1; i >= oldest && out.length < limit; i--) {
      const event = this.#history[i]!;
      if (query.beforeId !== undefined && event.id >= query.beforeId) continue;
      if (query.owner !== undefined && event.owner !== query.owner) continue;
      if (query.key !== undefined && !event.resources.some((r) => r.key === query.key)) continue;
      out.push({ ...event, at: new Date(event.at).toISOString() });
    }
    return out;
  }

  heldWithPrefix(prefix: string): HeldRow[] {
    return this.#held.withPrefix(prefix);
  }

  waitingWithPrefix(prefix: string): WaitRow[] {
    return this.#waiting.withPrefix(prefix);
  }
}
