/**
 * Who blocks a request: live leases, lock-delays and earlier queued waiters that conflict with it
 * under the rule of SPEC section 2, shared limits counted over holders and earlier waiters.
 */
import { InvalidRequestError, type Holder } from '../../model/errors.js';
import type { Resource } from '../../model/types.js';
import type { TableState, WaitRow } from './state.js';

export interface Blockers {
  holders: Holder[];
  /** Store time at which the last held or delayed blocker ends (unless renewed). */
  lastEnd: number | null;
  /** Store time at which the first blocker could end (a lease's expiry, a waiter's drop). */
  firstEnd: number | null;
}

/**
 * ISO 8601 of a store time. Remembered: a queue's answers list the same waiters' times again and
 * again (formatting a Date costs more than the rest of listing a holder). Bounded: cleared when full.
 */
const isoCache = new Map<number, string>();
const ISO_CACHE_SIZE = 4096;
function iso(ms: number): string {
  let text = isoCache.get(ms);
  if (text === undefined) {
    if (isoCache.size >= ISO_CACHE_SIZE) isoCache.clear();
    text = new Date(ms).toISOString();
    isoCache.set(ms, text);
  }
  return text;
}

function sameLimit(a: number | null, b: number | null): boolean {
  return a === b;
}

/**
 * The blockers of `resources` for a request queued at `seq` (`Infinity` for a new request).
 * For a new request a shared limit that disagrees with a live holder or waiter is rejected.
 * With `heldFirst` (a queued waiter's poll) earlier waiters are only read when no live lease or
 * lock-delay blocks: while a lease blocks, the waiters ahead cannot unblock the request anyway,
 * and a poll then costs O(holders), not O(queue).
 */
export function findBlockers(state: TableState, resources: readonly Resource[], seq: number, selfId: string, heldFirst = false): Blockers {
  const holders: Holder[] = [];
  let lastEnd: number | null = null;
  let firstEnd: number | null = null;
  const ends = (at: number, counts: boolean): void => {
    if (counts) lastEnd = lastEnd === null ? at : Math.max(lastEnd, at);
    firstEnd = firstEnd === null ? at : Math.min(firstEnd, at);
  };
  const isNew = seq === Infinity;
  const mismatch = (index: number, r: Resource, limit: number | null): never => {
    throw new InvalidRequestError(
      `resources[${index}].limit`,
      `${JSON.stringify(r.key)} is shared with limit ${limit ?? 'none'} by its holders; every holder must agree, got ${r.limit ?? 'none'}`,
    );
  };

  // Pass 1: live leases and lock-delays. Shared holders of the same key are counted for limits.
  const sameKeyShared = resources.map((r, index) => {
    const shared: Array<{ holder: Holder; end: number }> = [];
    for (const { resource: h, lease } of state.heldRelatedTo(r.key)) {
      if (lease.id === selfId) continue;
      const holder = heldHolder(h, lease.owner, lease.acquiredAt, lease.expiresAt, lease.metadata);
      if (r.mode === 'shared' && h.mode === 'shared') {
        if (h.key !== r.key) continue;
        if (isNew && !sameLimit(h.limit, r.limit)) mismatch(index, r, h.limit);
        shared.push({ holder, end: lease.expiresAt });
        continue;
      }
      holders.push(holder);
      ends(lease.expiresAt, true);
    }
    if (r.limit !== null && shared.length >= r.limit) {
      for (const { holder, end } of shared) {
        holders.push(holder);
        ends(end, true);
      }
    }
    for (const delay of state.delaysRelatedTo(r.key)) {
      holders.push({
        key: delay.key, mode: 'exclusive', owner: delay.owner, state: 'delayed',
        acquiredAt: iso(delay.since), expiresAt: iso(delay.until), metadata: delay.metadata,
      });
      ends(delay.until, true);
    }
    return shared;
  });
  if (heldFirst && holders.length > 0) return { holders, lastEnd, firstEnd };

  // Pass 2: earlier waiters, which a request never overtakes. Listed: the first QUEUED_LISTED of
  // them per resource, in queue order (their ends all count for the hints).
  resources.forEach((r, index) => {
    const shared = sameKeyShared[index]!;
    // Holder data is made only for the waiters listed (the first QUEUED_LISTED), not the whole queue.
    const queued: WaitRow[] = [];
    const queuedShared: Array<WaitRow & { drop: number }> = [];
    for (const row of state.waitingRelatedTo(r.key)) {
      const { resource: w, waiter } = row;
      if (waiter.id === selfId || waiter.seq >= seq) continue;
      const drop = Math.min(waiter.aliveUntil, waiter.deadline);
      if (r.mode === 'shared' && w.mode === 'shared') {
        if (w.key !== r.key) continue;
        if (isNew && !sameLimit(w.limit, r.limit)) mismatch(index, r, w.limit);
        queuedShared.push({ ...row, drop });
        continue;
      }
      queued.push(row);
      ends(drop, false);
    }
    for (const row of firstInQueue(queued)) holders.push(queuedHolder(row));
    // Held shared holders already block when they alone reach the limit (pass 1).
    if (r.limit !== null && shared.length < r.limit && shared.length + queuedShared.length >= r.limit) {
      for (const { holder, end } of shared) {
        holders.push(holder);
        ends(end, true);
      }
      for (const { drop } of queuedShared) ends(drop, false);
      for (const row of firstInQueue(queuedShared)) holders.push(queuedHolder(row));
    }
  });
  return { holders, lastEnd, firstEnd };
}

/**
 * Queued blockers listed per resource and kind: a request behind 500 waiters is told of the first
 * 20, not all (answering and carrying the whole queue on every poll would make each call cost as
 * much as the queue is long). Held blockers and lock-delays are always listed in full. The
 * PostgreSQL store lists the same (hf_blockers, migration 10).
 */
export const QUEUED_LISTED = 20;

function firstInQueue<T extends WaitRow>(entries: T[]): T[] {
  if (entries.length <= QUEUED_LISTED) return entries.sort((a, b) => a.waiter.seq - b.waiter.seq);
  return entries.sort((a, b) => a.waiter.seq - b.waiter.seq).slice(0, QUEUED_LISTED);
}

function queuedHolder({ resource: w, waiter }: WaitRow): Holder {
  return { key: w.key, mode: w.mode, owner: waiter.owner, state: 'queued', acquiredAt: iso(waiter.enqueuedAt), expiresAt: null, metadata: waiter.metadata };
}

function heldHolder(r: Resource, owner: string, acquiredAt: number, expiresAt: number, metadata: Record<string, unknown>): Holder {
  return { key: r.key, mode: r.mode, owner, state: 'held', acquiredAt: iso(acquiredAt), expiresAt: iso(expiresAt), metadata };
}

/**
 * True when anything blocks the request: the cheap form of `findBlockers` for promotion, which
 * stops at the first blocker and builds no holder data, so a release in front of a long queue
 * costs one pass over it rather than one per waiter.
 */
export function isBlocked(state: TableState, resources: readonly Resource[], seq: number, selfId: string): boolean {
  for (const r of resources) {
    let sameKeyShared = 0;
    for (const { resource: h, lease } of state.heldRelatedTo(r.key)) {
      if (lease.id === selfId) continue;
      if (r.mode === 'shared' && h.mode === 'shared') {
        if (h.key === r.key) sameKeyShared++;
        continue;
      }
      return true;
    }
    if (r.limit !== null && sameKeyShared >= r.limit) return true;
    if (state.delaysRelatedTo(r.key).length > 0) return true;
    for (const { resource: w, waiter } of state.waitingRelatedTo(r.key)) {
      if (waiter.id === selfId || waiter.seq >= seq) continue;
      if (r.mode === 'shared' && w.mode === 'shared') {
        if (w.key === r.key && r.limit !== null && ++sameKeyShared >= r.limit) return true;
        continue;
      }
      return true;
    }
  }
  return false;
}
