/**
 * The in-memory lock table: maps and key indexes for O(depth) conflict checks, heaps for due
 * times. Time is this process's monotonic clock anchored at the epoch. Nothing is durable.
 */
import type { HistoryEvent, HistoryQuery, LeaseRecord } from '../../model/types.js';
import type { DelayRow, HeldRow, LeaseEnd, TableState, WaitRow, WaiterRecord } from '../table/state.js';
import { ChurnMap } from '../../util/churn-map.js';
import { EndedIds } from './ended-ids.js';
import { DueHeap } from './heap.js';
import { HistoryRing } from './history-ring.js';
import { KeyIndex } from './key-index.js';
import { MultiMap } from './multi-map.js';

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

/** The answer when nothing is due: shared, never written to (readonly by type; not frozen, which would take for-of off its fast path). */
const NONE: readonly never[] = [];

export class MemoryState implements TableState {
  #fence = 0;
  #seq = 0;
  #delaySeq = 0;

  readonly #leases = new ChurnMap<string, { lease: LeaseRecord; rows: HeldRow[] }>();
  readonly #leaseByRequest = new Map<string, string>();
  readonly #leasesByOwner = new MultiMap<string, string>();
  readonly #held = new KeyIndex<HeldRow>();
  readonly #leaseDue = new DueHeap();
  /** Between endedLimit/2 and endedLimit ended lease ids, O(1) each. */
  readonly #ended: EndedIds;

  readonly #waiters = new Map<string, { waiter: WaiterRecord; rows: WaitRow[] }>();
  readonly #waiterByRequest = new Map<string, string>();
  readonly #waiting = new KeyIndex<WaitRow>();
  readonly #waiterDue = new DueHeap();

  readonly #delays = new Map<string, DelayEntry>();
  readonly #delayIndex = new KeyIndex<DelayEntry>();
  readonly #delayDue = new DueHeap();

  readonly #history: HistoryRing;

  constructor(options: MemoryStateOptions) {
    this.#ended = new EndedIds(options.endedLimit);
    this.#history = new HistoryRing(options.historyLimit);
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
    return this.#leasesByOwner.get(owner).map((id) => this.lease(id)!);
  }

  leasesOnKey(key: string): LeaseRecord[] {
    return [...new Set([...this.#held.on(key)].map((row) => row.lease.id))].map((id) => this.lease(id)!);
  }

  heldRelatedTo(key: string): readonly HeldRow[] {
    return this.#held.related(key);
  }

  dueLeases(now: number): readonly LeaseRecord[] {
    const heap = this.#leaseDue;
    if (heap.size === 0 || heap.peekTime()! > now) return NONE;
    const out: LeaseRecord[] = [];
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
    this.#leasesByOwner.add(lease.owner, lease.id);
    this.#leaseDue.push(lease.expiresAt, lease.id);
    this.#history.record(lease.acquiredAt, 'acquired', lease.owner, lease.fence, lease.resources, null, null);
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
    const { lease } = entry;
    this.#history.record(end.at, end.type, lease.owner, lease.fence, lease.resources, end.by, end.reason);
    this.#leases.delete(id);
    for (const row of entry.rows) this.#held.remove(row);
    if (lease.requestId !== null) this.#leaseByRequest.delete(requestKey(lease.owner, lease.requestId));
    this.#leasesByOwner.delete(lease.owner, id);
    this.#ended.add(id);
  }

  endedLease(id: string): boolean {
    return this.#ended.has(id);
  }

  waiter(id: string): WaiterRecord | undefined {
    return this.#waiters.get(id)?.waiter;
  }

  waiterByRequestId(owner: string, requestId: string): WaiterRecord | undefined {
    const id = this.#waiterByRequest.get(requestKey(owner, requestId));
    return id === undefined ? undefined : this.waiter(id);
  }

  waitingRelatedTo(key: string): readonly WaitRow[] {
    return this.#waiting.related(key);
  }

  dueWaiters(now: number): readonly WaiterRecord[] {
    const heap = this.#waiterDue;
    if (heap.size === 0 || heap.peekTime()! > now) return NONE;
    const out: WaiterRecord[] = [];
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

  delaysRelatedTo(key: string): readonly DelayRow[] {
    return this.#delayIndex.related(key);
  }

  insertDelay(delay: DelayRow): void {
    const entry: DelayEntry = { ...delay, resource: { key: delay.key }, id: String(++this.#delaySeq) };
    this.#delays.set(entry.id, entry);
    this.#delayIndex.add(entry);
    this.#delayDue.push(entry.until, entry.id);
  }

  deleteDueDelays(now: number): readonly string[] {
    const heap = this.#delayDue;
    if (heap.size === 0 || heap.peekTime()! > now) return NONE;
    const keys: string[] = [];
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
    const due = Math.min(this.#leaseDue.peekTime() ?? Infinity, this.#waiterDue.peekTime() ?? Infinity, this.#delayDue.peekTime() ?? Infinity);
    return due === Infinity ? null : due;
  }

  history(query: HistoryQuery): HistoryEvent[] {
    return this.#history.read(query);
  }

  heldWithPrefix(prefix: string): HeldRow[] {
    return this.#held.withPrefix(prefix);
  }

  waitingWithPrefix(prefix: string): WaitRow[] {
    return this.#waiting.withPrefix(prefix);
  }
}
