/**
 * The part of a namespace's lock table that one batch of operations needs (some roots, read at
 * known revisions of their version records), as the `TableState` that the shared algorithm
 * (`../table/operations.ts`) runs on. Leases and waiters are kept in a `MemoryState` (its indexes
 * answer the related-key questions); lock-delays, the clock and history appends are kept here.
 * Every mutation is also recorded as an etcd write (`ops`), which the store commits in one
 * transaction guarded by the mod revisions of every root read. New fences, queue positions and
 * history ids are provisional (layout.ts) until the commit fixes them (`committed`).
 *
 * A table object serves one attempt: when its transaction fails, the store throws it away.
 */
import { randomBytes } from 'node:crypto';
import { keysOverlap } from '../../model/keys.js';
import type { HistoryEvent, HistoryQuery, LeaseRecord } from '../../model/types.js';
import { MemoryState } from '../memory/state.js';
import type { StoreChange } from '../store.js';
import type { DelayRow, HeldRow, LeaseEnd, TableState, WaitRow, WaiterRecord } from '../table/state.js';

/** A history event as the table records it (its id and ISO time are given when it is stored). */
type NewHistoryEvent = Omit<HistoryEvent, 'id' | 'at'> & { at: number };
import type { TxnOp } from './client.js';
import {
  encodeHistory, encodeLease, encodeWaiter, PROVISIONAL, resolve, REVISION_SLOTS, rootOf, rootsOf,
  type Layout, type RootVersion, type StoredDelay,
} from './layout.js';

/** A write of the pending transaction: a value to put (`ended`: on the ended-ids etcd lease), or null to delete. */
type Write = { value: string; ended?: true } | null;

/** One root as read: its version record's mod revision (0: none yet), the record, its records. */
export interface RootState {
  revision: number;
  version: RootVersion | null;
  leases: LeaseRecord[];
  waiters: WaiterRecord[];
  delays: StoredDelay[];
}

const newId = (): string => randomBytes(6).toString('base64url');

export class EtcdTable implements TableState {
  readonly #layout: Layout;
  readonly #memory = new MemoryState({ historyLimit: 1, endedLimit: 10_000 });
  readonly #delays = new Map<string, StoredDelay>();
  readonly #writes = new Map<string, Write>();
  readonly #history: Array<{ key: string; event: HistoryEvent }> = [];
  /** The roots read, with their revisions: every one is compared at the commit. */
  readonly roots = new Map<string, RootState>();
  /** Roots written by this attempt. */
  readonly #written = new Set<string>();
  /** Objects carrying provisional numbers made by this attempt, fixed by `committed`. */
  readonly #fresh: { leases: LeaseRecord[]; waiters: WaiterRecord[]; delays: StoredDelay[] } = { leases: [], waiters: [], delays: [] };
  /** Ids found ended in etcd (`e/<id>`) for this attempt. */
  readonly #endedKnown = new Set<string>();
  #next = 0;
  #now = 0;

  constructor(layout: Layout, roots: Map<string, RootState>, endedIds: Iterable<string> = []) {
    this.#layout = layout;
    for (const [root, state] of roots) {
      this.roots.set(root, state);
      for (const lease of state.leases) if (!this.#memory.lease(lease.id)) this.#memory.insertLease(structuredClone(lease));
      for (const waiter of state.waiters) if (!this.#memory.waiter(waiter.id)) this.#memory.insertWaiter(structuredClone(waiter));
      for (const delay of state.delays) this.#delays.set(delay.id, { ...delay });
    }
    for (const id of endedIds) this.#endedKnown.add(id);
  }

  /** Starts the attempt at store time `localNow` or later: never behind any root's last write. */
  begin(localNow: number): void {
    let clock = localNow;
    for (const state of this.roots.values()) clock = Math.max(clock, state.version?.clock ?? 0);
    this.#now = clock;
  }

  get hasWrites(): boolean {
    return this.#writes.size > 0 || this.#history.length > 0;
  }

  /** The transaction's compares: every root read, at the revision it was read at. */
  compares(): Array<{ key: string; target: 'mod'; equals: number }> {
    return [...this.roots].map(([root, state]) => ({ key: this.#layout.version(root), target: 'mod', equals: state.revision }));
  }

  /**
   * The transaction's ops: the recorded writes, the history, and a new version record for every
   * root written (the first one carries `changes`). `endedLease`: the etcd lease of ended ids.
   */
  ops(endedLease: string, origin: string, changes: StoreChange[]): TxnOp[] {
    const ops: TxnOp[] = [];
    for (const [key, write] of this.#writes) {
      if (write === null) ops.push({ deleteRange: { key } });
      else ops.push({ put: write.ended ? { key, value: write.value, lease: endedLease } : { key, value: write.value } });
    }
    for (const { key, event } of this.#history) ops.push({ put: { key, value: encodeHistory(event) } });
    let first = true;
    for (const root of [...this.#written].sort()) {
      ops.push({ put: { key: this.#layout.version(root), value: JSON.stringify(this.versionOf(root, origin, first ? changes : [])) } });
      first = false;
    }
    return ops;
  }

  /** Roots this attempt wrote. */
  get written(): ReadonlySet<string> {
    return this.#written;
  }

  /** Puts and deletes of record keys, for the store's cache (after the commit). */
  get writes(): ReadonlyMap<string, Write> {
    return this.#writes;
  }

  /** After the commit at `revision`: fixes every provisional number this attempt made. */
  committed(revision: number, changes: StoreChange[]): void {
    for (const lease of this.#fresh.leases) lease.fence = resolve(lease.fence, revision);
    for (const waiter of this.#fresh.waiters) waiter.seq = resolve(waiter.seq, revision);
    for (const delay of this.#fresh.delays) delay.fence = resolve(delay.fence, revision);
    for (const change of changes) if (change.fence !== null) change.fence = resolve(change.fence, revision);
  }

  /** The records of one root as they are now (after the commit: for the store's cache). */
  stateOf(root: string, revision: number, version: RootVersion | null): RootState {
    const ofRoot = (resources: LeaseRecord['resources']): boolean => rootsOf(resources).includes(root);
    const leases = new Map<string, LeaseRecord>();
    for (const { lease } of this.#memory.heldWithPrefix(root)) if (ofRoot(lease.resources)) leases.set(lease.id, lease);
    const waiters = new Map<string, WaiterRecord>();
    for (const { waiter } of this.#memory.waitingWithPrefix(root)) if (ofRoot(waiter.resources)) waiters.set(waiter.id, waiter);
    const delays = [...this.#delays.values()].filter((d) => rootOf(d.key) === root);
    return { revision, version, leases: [...leases.values()], waiters: [...waiters.values()], delays };
  }

  /** The version record this attempt writes for `root` (as `ops` puts it). */
  versionOf(root: string, origin: string, changes: StoreChange[]): RootVersion {
    return { clock: this.#now, nextDue: this.nextDueOf(root), origin, changes };
  }

  #provisional(): number {
    if (this.#next >= REVISION_SLOTS) throw new Error(`one etcd transaction may make at most ${REVISION_SLOTS} fences, queue positions and history events`);
    return PROVISIONAL + this.#next++;
  }

  #touch(roots: readonly string[]): void {
    for (const root of roots) this.#written.add(root);
  }

  now(): number {
    return this.#now;
  }

  nextFence(): number {
    return this.#provisional();
  }

  nextSeq(): number {
    return this.#provisional();
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
  heldRelatedTo(key: string): readonly HeldRow[] {
    return this.#memory.heldRelatedTo(key);
  }
  dueLeases(now: number): readonly LeaseRecord[] {
    return this.#memory.dueLeases(now);
  }

  #putLease(lease: LeaseRecord): void {
    const roots = rootsOf(lease.resources);
    const value = encodeLease(lease);
    for (const root of roots) this.#writes.set(this.#layout.lease(root, lease.id), { value });
    this.#touch(roots);
  }

  insertLease(lease: LeaseRecord): void {
    this.#memory.insertLease(lease);
    if (lease.fence >= PROVISIONAL) this.#fresh.leases.push(lease);
    this.#putLease(lease);
    this.#writes.set(this.#layout.index(lease.id), { value: JSON.stringify(rootsOf(lease.resources)) });
    this.#appendHistory({ type: 'acquired', reason: null, by: null, at: lease.acquiredAt, owner: lease.owner, fence: lease.fence, resources: lease.resources });
  }

  setLeaseExpiry(id: string, expiresAt: number, ttlMs: number): void {
    this.#memory.setLeaseExpiry(id, expiresAt, ttlMs);
    const lease = this.#memory.lease(id);
    if (!lease) return;
    // setLeaseExpiry replaces the object: a provisional fence made in this attempt is fixed on it too.
    if (lease.fence >= PROVISIONAL) this.#fresh.leases.push(lease);
    this.#putLease(lease);
  }

  endLease(ended: LeaseRecord, end: LeaseEnd): void {
    const lease = this.#memory.lease(ended.id);
    if (!lease) return;
    this.#memory.endLease(lease, end);
    const id = lease.id;
    this.#appendHistory({ type: end.type, reason: end.reason, by: end.by, at: end.at, owner: lease.owner, fence: lease.fence, resources: lease.resources });
    const roots = rootsOf(lease.resources);
    for (const root of roots) this.#writes.set(this.#layout.lease(root, id), null);
    this.#writes.set(this.#layout.index(id), null);
    this.#writes.set(this.#layout.ended(id), { value: '', ended: true });
    this.#touch(roots);
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
  waitingRelatedTo(key: string): readonly WaitRow[] {
    return this.#memory.waitingRelatedTo(key);
  }
  dueWaiters(now: number): readonly WaiterRecord[] {
    return this.#memory.dueWaiters(now);
  }

  #putWaiter(waiter: WaiterRecord): void {
    const roots = rootsOf(waiter.resources);
    const value = encodeWaiter(waiter);
    for (const root of roots) this.#writes.set(this.#layout.waiter(root, waiter.id), { value });
    this.#touch(roots);
  }

  insertWaiter(waiter: WaiterRecord): void {
    this.#memory.insertWaiter(waiter);
    if (waiter.seq >= PROVISIONAL) this.#fresh.waiters.push(waiter);
    this.#putWaiter(waiter);
    this.#writes.set(this.#layout.index(waiter.id), { value: JSON.stringify(rootsOf(waiter.resources)) });
  }

  touchWaiter(id: string, aliveUntil: number): void {
    this.#memory.touchWaiter(id, aliveUntil);
    const waiter = this.#memory.waiter(id);
    if (waiter) this.#putWaiter(waiter);
  }

  deleteWaiter(id: string): void {
    const waiter = this.#memory.waiter(id);
    this.#memory.deleteWaiter(id);
    if (!waiter) return;
    const roots = rootsOf(waiter.resources);
    for (const root of roots) this.#writes.set(this.#layout.waiter(root, id), null);
    // A waiter granted in the same attempt keeps its index (insertLease puts it again after this).
    this.#writes.set(this.#layout.index(id), null);
    this.#touch(roots);
  }

  delaysRelatedTo(key: string): DelayRow[] {
    return [...this.#delays.values()].filter((d) => keysOverlap(d.key, key));
  }

  insertDelay(delay: DelayRow): void {
    const stored: StoredDelay = { ...delay, id: newId() };
    this.#delays.set(stored.id, stored);
    if (stored.fence >= PROVISIONAL) this.#fresh.delays.push(stored);
    const root = rootOf(delay.key);
    this.#writes.set(this.#layout.delay(root, stored.id), { value: JSON.stringify(stored) });
    this.#touch([root]);
  }

  deleteDueDelays(now: number): string[] {
    const keys: string[] = [];
    for (const delay of [...this.#delays.values()]) {
      if (delay.until > now) continue;
      this.#delays.delete(delay.id);
      const root = rootOf(delay.key);
      this.#writes.set(this.#layout.delay(root, delay.id), null);
      this.#touch([root]);
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

  /** The earliest due time among the records of one root. */
  nextDueOf(root: string): number | null {
    let due: number | null = null;
    const at = (t: number): void => {
      due = due === null ? t : Math.min(due, t);
    };
    for (const { lease } of this.#memory.heldWithPrefix(root)) if (rootsOf(lease.resources).includes(root)) at(lease.expiresAt);
    for (const { waiter } of this.#memory.waitingWithPrefix(root)) if (rootsOf(waiter.resources).includes(root)) at(Math.min(waiter.deadline, waiter.aliveUntil));
    for (const delay of this.#delays.values()) if (rootOf(delay.key) === root) at(delay.until);
    return due;
  }

  #appendHistory(event: NewHistoryEvent): void {
    const { at, ...rest } = event;
    const stored: HistoryEvent = { id: this.#provisional(), at: new Date(at).toISOString(), ...rest };
    this.#history.push({ key: this.#layout.history(at, newId()), event: stored });
    this.#touch(rootsOf(event.resources));
  }

  /** History is read from etcd by the store (`history.ts`), never from a table. */
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
