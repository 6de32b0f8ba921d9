/**
 * One namespace's lock table as read from etcd at one revision, as the `TableState` that the
 * shared algorithm (`../table/operations.ts`) runs on. Leases and waiters are kept in a
 * `MemoryState` (its indexes answer the related-key questions); lock-delays, counters, the clock
 * and history appends are kept here. Every mutation is also recorded as an etcd write (`writes`),
 * which the store commits in one transaction guarded by the meta record's mod revision. When the
 * transaction commits, this object *is* the new state and serves the next operation; when it
 * fails, the store throws it away and builds a new one from what the failed transaction read.
 */
import { keysOverlap } from '../../model/keys.js';
import type { HistoryEvent, HistoryQuery, LeaseRecord } from '../../model/types.js';
import { MemoryState } from '../memory/state.js';
import type { DelayRow, HeldRow, NewHistoryEvent, TableState, WaitRow, WaiterRecord } from '../table/state.js';
import type { KeyValue, TxnOp } from './client.js';
import {
  decodeDelay, decodeLease, decodeMeta, decodeWaiter, EMPTY_META, encodeDelay, encodeHistory, encodeLease, encodeWaiter,
  type Layout, type Meta, type StoredDelay,
} from './layout.js';

/** A write of the pending transaction: a value to put, or null to delete. */
type Write = { value: string; ended?: true } | null;

export class EtcdTable implements TableState {
  readonly #layout: Layout;
  readonly #memory = new MemoryState({ historyLimit: 1, endedLimit: 10_000 });
  readonly #delays = new Map<number, StoredDelay>();
  readonly #writes = new Map<string, Write>();
  readonly #history: HistoryEvent[] = [];
  /** Ids found ended in etcd (`e/<id>`) for the current operation. */
  readonly #endedKnown = new Set<string>();
  meta: Meta;
  /** The meta record's mod revision this state was read at (0: no meta yet). */
  revision: number;
  /** The store time of the current operation (set by `begin`). */
  #now = 0;

  constructor(layout: Layout, meta: Meta, revision: number) {
    this.#layout = layout;
    this.meta = { ...meta, changes: [] };
    this.revision = revision;
  }

  /** Builds the table from the ranges of a read: the table range and the meta key. */
  static fromRead(layout: Layout, table: KeyValue[], meta: KeyValue[]): EtcdTable {
    const m = meta[0];
    const state = new EtcdTable(layout, m === undefined ? EMPTY_META : decodeMeta(m.value), m?.modRevision ?? 0);
    const leases = `${layout.table}l/`;
    const waiters = `${layout.table}w/`;
    const delays = `${layout.table}d/`;
    for (const kv of table) {
      if (kv.key.startsWith(leases)) state.#memory.insertLease(decodeLease(kv.value));
      else if (kv.key.startsWith(waiters)) state.#memory.insertWaiter(decodeWaiter(kv.value));
      else if (kv.key.startsWith(delays)) {
        const delay = decodeDelay(kv.value);
        state.#delays.set(delay.id, delay);
      }
    }
    return state;
  }

  /**
   * Starts an operation at store time `localNow` or later: the clock never runs behind the
   * last write's, so time is monotonic across every client of the namespace.
   */
  begin(localNow: number, endedIds: Iterable<string> = []): void {
    this.#now = Math.max(localNow, this.meta.clock);
    this.#endedKnown.clear();
    for (const id of endedIds) this.#endedKnown.add(id);
  }

  get hasWrites(): boolean {
    return this.#writes.size > 0 || this.#history.length > 0;
  }

  /**
   * The transaction's ops for what the operation changed, with the new meta record
   * (`meta.changes` and `nextDue` are filled by the caller first). `endedLease` is the etcd lease
   * that ended-id keys go on (0: none).
   */
  ops(endedLease: string, historyLimit: number): TxnOp[] {
    const ops: TxnOp[] = [];
    for (const [key, write] of this.#writes) {
      if (write === null) ops.push({ deleteRange: { key } });
      else ops.push({ put: write.ended ? { key, value: write.value, lease: endedLease } : { key, value: write.value } });
    }
    for (const event of this.#history) ops.push({ put: { key: this.#layout.history(event.id), value: encodeHistory(event) } });
    if (this.#history.length > 0) {
      const newest = this.#history[this.#history.length - 1]!.id;
      const oldest = this.#history[0]!.id;
      // Prune in steps of a tenth of the limit: the range delete runs about every limit/10 events.
      const step = Math.max(1, Math.ceil(historyLimit / 10));
      if (newest > historyLimit && Math.floor(newest / step) !== Math.floor((oldest - 1) / step)) {
        ops.push({ deleteRange: { key: this.#layout.historyPrefix, rangeEnd: this.#layout.history(newest - historyLimit + 1) } });
      }
    }
    ops.push({ put: { key: this.#layout.meta, value: JSON.stringify({ ...this.meta, clock: this.#now }) } });
    return ops;
  }

  /** After the transaction committed at `revision`: this is the new state. */
  committed(revision: number): void {
    this.#writes.clear();
    this.#history.length = 0;
    this.meta = { ...this.meta, clock: this.#now, changes: [] };
    this.revision = revision;
  }

  #put(key: string, value: string): void {
    this.#writes.set(key, { value });
  }

  now(): number {
    return this.#now;
  }

  nextFence(): number {
    return ++this.meta.fence;
  }

  nextSeq(): number {
    return ++this.meta.seq;
  }

  lease(id: string): LeaseRecord | undefined {
    return this.#memory.lease(id);
  }
  leaseByRequestId(owner: string, requestId: string): LeaseRecord | undefined {
    return this.#memory.leaseByRequestId(owner, requestId);
  }
  leasesOfOwner(owner: string): LeaseRecord[] {
    return this.#memory.leasesOfOwner(owner);
  }
  leasesOnKey(key: string): LeaseRecord[] {
    return this.#memory.leasesOnKey(key);
  }
  heldRelatedTo(key: string): HeldRow[] {
    return this.#memory.heldRelatedTo(key);
  }
  dueLeases(now: number): LeaseRecord[] {
    return this.#memory.dueLeases(now);
  }

  insertLease(lease: LeaseRecord): void {
    this.#memory.insertLease(lease);
    this.#put(this.#layout.lease(lease.id), encodeLease(lease));
  }

  setLeaseExpiry(id: string, expiresAt: number, ttlMs: number): void {
    this.#memory.setLeaseExpiry(id, expiresAt, ttlMs);
    const lease = this.#memory.lease(id);
    if (lease) this.#put(this.#layout.lease(id), encodeLease(lease));
  }

  deleteLease(id: string): void {
    this.#memory.deleteLease(id);
    this.#writes.set(this.#layout.lease(id), null);
    this.#writes.set(this.#layout.ended(id), { value: '', ended: true });
  }

  endedLease(id: string): boolean {
    return this.#endedKnown.has(id) || this.#memory.endedLease(id);
  }

  waiter(id: string): WaiterRecord | undefined {
    return this.#memory.waiter(id);
  }
  waiterByRequestId(owner: string, requestId: string): WaiterRecord | undefined {
    return this.#memory.waiterByRequestId(owner, requestId);
  }
  waitingRelatedTo(key: string): WaitRow[] {
    return this.#memory.waitingRelatedTo(key);
  }
  dueWaiters(now: number): WaiterRecord[] {
    return this.#memory.dueWaiters(now);
  }

  insertWaiter(waiter: WaiterRecord): void {
    this.#memory.insertWaiter(waiter);
    this.#put(this.#layout.waiter(waiter.id), encodeWaiter(waiter));
  }

  touchWaiter(id: string, aliveUntil: number): void {
    this.#memory.touchWaiter(id, aliveUntil);
    const waiter = this.#memory.waiter(id);
    if (waiter) this.#put(this.#layout.waiter(id), encodeWaiter(waiter));
  }

  deleteWaiter(id: string): void {
    this.#memory.deleteWaiter(id);
    this.#writes.set(this.#layout.waiter(id), null);
  }

  delaysRelatedTo(key: string): DelayRow[] {
    return [...this.#delays.values()].filter((d) => keysOverlap(d.key, key));
  }

  insertDelay(delay: DelayRow): void {
    const stored: StoredDelay = { ...delay, id: ++this.meta.delayId };
    this.#delays.set(stored.id, stored);
    this.#put(this.#layout.delay(stored.id), encodeDelay(stored));
  }

  deleteDueDelays(now: number): string[] {
    const keys: string[] = [];
    for (const delay of [...this.#delays.values()]) {
      if (delay.until > now) continue;
      this.#delays.delete(delay.id);
      this.#writes.set(this.#layout.delay(delay.id), null);
      keys.push(delay.key);
    }
    return keys;
  }

  nextDue(): number | null {
    const times = [...this.#delays.values()].map((d) => d.until);
    const memory = this.#memory.nextDue();
    if (memory !== null) times.push(memory);
    return times.length === 0 ? null : Math.min(...times);
  }

  appendHistory(event: NewHistoryEvent): void {
    const { leaseId: _leaseId, at, ...rest } = event;
    this.#history.push({ id: ++this.meta.historyId, at: new Date(at).toISOString(), ...rest });
  }

  /** History is read from etcd by the store (`history.ts`), never from a snapshot. */
  history(_query: HistoryQuery): HistoryEvent[] {
    throw new Error('EtcdTable.history: read history from etcd');
  }

  heldWithPrefix(prefix: string): HeldRow[] {
    return this.#memory.heldWithPrefix(prefix);
  }
  waitingWithPrefix(prefix: string): WaitRow[] {
    return this.#memory.waitingWithPrefix(prefix);
  }
}
