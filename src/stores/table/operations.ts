/**
 * The lock-table algorithm shared by the stores that run TypeScript next to their data.
 * Each function is one atomic operation: the caller runs it inside a transaction (or on a
 * single-threaded in-memory table) and publishes the returned changes after commit.
 *
 * Every operation first ends what has fallen due by the store's clock (expired leases, dead or
 * timed-out waiters, finished lock-delays) and then grants, in queue order, the waiters that the
 * freed keys made eligible. A waiter is eligible when no live lease, lock-delay or earlier waiter
 * conflicts with it; a new request is eligible only if it conflicts with nothing queued either,
 * so it never jumps the queue.
 */
import { InvalidRequestError } from '../../model/errors.js';
import type { LeaseRecord, LockRequest, LockTable, QueuedWaiter } from '../../model/types.js';
import type { AcquireOutcome, PollOutcome, RenewOutcome, StoreChange } from '../store.js';
import { findBlockers, isBlocked, type Blockers } from './blockers.js';
import type { LeaseEnd, TableState, WaiterRecord } from './state.js';

export interface Result<T> {
  value: T;
  changes: StoreChange[];
  /** The store time the operation ran at. */
  now: number;
  /** A rejection found after the settle step: the caller commits the settle, publishes, then throws it. */
  error?: InvalidRequestError;
}

/** Default time to re-check a queue whose blockers have no known end. */
const UNKNOWN_END_MS = 1000;

/** One operation's work; it is also its own `Result` (one object less per call). */
class Operation implements Result<unknown> {
  readonly changes: StoreChange[] = [];
  readonly now: number;
  value: unknown = undefined;
  constructor(readonly state: TableState) {
    this.now = state.now();
  }

  change(type: StoreChange['type'], owner: string, keys: string[], fence: number | null, granted: string[] = [], at = this.now): StoreChange {
    const change: StoreChange = { type, owner, keys, fence, granted, at };
    this.changes.push(change);
    return change;
  }

  /** Ends what has fallen due and grants what that freed. */
  settle(): void {
    // Nothing is due in most operations: no set is made for them.
    let freed: Set<string> | null = null;
    for (const lease of this.state.dueLeases(this.now)) {
      this.endLease(lease, 'expired', 'expiry', null, lease.expiresAt, true);
      freed ??= new Set();
      for (const r of lease.resources) freed.add(r.key);
    }
    for (const waiter of this.state.dueWaiters(this.now)) {
      this.state.deleteWaiter(waiter.id);
      const keys = waiter.resources.map((r) => r.key);
      this.change('timed-out', waiter.owner, keys, null, [], Math.min(waiter.deadline, waiter.aliveUntil));
      freed ??= new Set();
      for (const key of keys) freed.add(key);
    }
    for (const key of this.state.deleteDueDelays(this.now)) (freed ??= new Set()).add(key);
    if (freed !== null) this.promote(freed);
  }

  /** Ends the lease and answers its keys. */
  endLease(lease: LeaseRecord, type: LeaseEnd['type'], reason: string, by: string | null, at: number, delay: boolean): string[] {
    this.state.endLease(lease, { type, reason, by, at });
    const keys = lease.resources.map((r) => r.key);
    this.change(type, lease.owner, keys, lease.fence, [], at);
    if (delay && lease.lockDelayMs > 0 && at + lease.lockDelayMs > this.now) {
      for (const r of lease.resources) {
        this.state.insertDelay({ key: r.key, until: at + lease.lockDelayMs, owner: lease.owner, fence: lease.fence, since: at, metadata: lease.metadata });
      }
    }
    return keys;
  }

  grant(request: LockRequest | WaiterRecord): LeaseRecord {
    const lease: LeaseRecord = {
      id: request.id,
      owner: request.owner,
      resources: request.resources,
      fence: this.state.nextFence(),
      acquiredAt: this.now,
      expiresAt: this.now + request.ttlMs,
      ttlMs: request.ttlMs,
      requestId: request.requestId,
      metadata: request.metadata,
      lockDelayMs: request.lockDelayMs,
    };
    this.state.insertLease(lease);
    this.change('acquired', lease.owner, lease.resources.map((r) => r.key), lease.fence, [lease.id]).expiresAt = lease.expiresAt;
    return lease;
  }

  /** Grants, in queue order, the waiters related to `freed` keys (distinct) that became eligible. */
  promote(freed: Iterable<string>): void {
    let candidates: Map<string, WaiterRecord> | null = null;
    for (const key of freed) {
      for (const { waiter } of this.state.waitingRelatedTo(key)) (candidates ??= new Map()).set(waiter.id, waiter);
    }
    if (candidates === null) return;
    const ordered = [...candidates.values()].sort((a, b) => a.seq - b.seq);
    for (const waiter of ordered) {
      if (waiter.deadline <= this.now || waiter.aliveUntil <= this.now) continue;
      if (!isBlocked(this.state, waiter.resources, waiter.seq, waiter.id)) {
        this.state.deleteWaiter(waiter.id);
        this.grant(waiter);
      }
    }
  }

  hints(blockers: Blockers): { retryAfterMs: number; nextCheckMs: number } {
    const retryAfterMs = blockers.lastEnd === null ? UNKNOWN_END_MS : Math.max(1, blockers.lastEnd - this.now);
    const nextCheckMs = blockers.firstEnd === null ? UNKNOWN_END_MS : Math.max(1, blockers.firstEnd - this.now);
    return { retryAfterMs, nextCheckMs };
  }

  queued(waiter: WaiterRecord): PollOutcome & AcquireOutcome {
    const blockers = findBlockers(this.state, waiter.resources, waiter.seq, waiter.id, true);
    if (blockers.holders.length === 0) {
      // Eligible but not granted yet (its blocker ended in another way): grant now.
      this.state.deleteWaiter(waiter.id);
      return { status: 'granted', lease: this.grant(waiter), now: this.now };
    }
    return { status: 'queued', ticket: waiter.id, holders: blockers.holders, ...this.hints(blockers), now: this.now };
  }

  result<T>(value: T): Result<T> {
    this.value = value;
    return this as Result<T>;
  }
}

/** A refusal that lists no holders (the request itself is wrong). */
function busyAt(now: number): AcquireOutcome {
  return { status: 'busy', holders: [], retryAfterMs: 0, now };
}

export function acquire(state: TableState, request: LockRequest, waitMs: number, waiterTtlMs: number): Result<AcquireOutcome> {
  const op = new Operation(state);
  op.settle();
  if (request.requestId !== null) {
    const lease = state.leaseByRequestId(request.owner, request.requestId);
    if (lease) return op.result({ status: 'granted', lease, now: op.now });
    const waiter = state.waiterByRequestId(request.owner, request.requestId);
    if (waiter) {
      state.touchWaiter(waiter.id, op.now + waiter.waiterTtlMs);
      return op.result(op.queued({ ...waiter, aliveUntil: op.now + waiter.waiterTtlMs }));
    }
  }
  if (state.lease(request.id) || state.waiter(request.id) || state.endedLease(request.id)) {
    return { ...op.result(busyAt(op.now)), error: new InvalidRequestError('id', 'this lease id was already used') };
  }
  // The common case, a free key: nothing related is held, delayed or queued. Only exclusive
  // requests take this path; a shared one has its limit checked against the holders' below.
  if (request.resources.every((r) => r.mode === 'exclusive') && !isBlocked(state, request.resources, Infinity, request.id)) {
    return op.result({ status: 'granted', lease: op.grant(request), now: op.now });
  }
  let blockers: Blockers;
  try {
    blockers = findBlockers(state, request.resources, Infinity, request.id);
  } catch (error) {
    if (error instanceof InvalidRequestError) return { ...op.result(busyAt(op.now)), error };
    throw error;
  }
  if (blockers.holders.length === 0) {
    return op.result({ status: 'granted', lease: op.grant(request), now: op.now });
  }
  if (waitMs <= 0) {
    return op.result({ status: 'busy', holders: blockers.holders, retryAfterMs: op.hints(blockers).retryAfterMs, now: op.now });
  }
  const waiter: WaiterRecord = {
    ...request,
    seq: state.nextSeq(),
    enqueuedAt: op.now,
    deadline: op.now + waitMs,
    aliveUntil: op.now + waiterTtlMs,
    waiterTtlMs,
  };
  state.insertWaiter(waiter);
  op.change('waiting', request.owner, request.resources.map((r) => r.key), null);
  return op.result({ status: 'queued', ticket: waiter.id, holders: blockers.holders, ...op.hints(blockers), now: op.now });
}

export function poll(state: TableState, ticket: string): Result<PollOutcome> {
  const op = new Operation(state);
  op.settle();
  const lease = state.lease(ticket);
  if (lease) return op.result({ status: 'granted', lease, now: op.now });
  const waiter = state.waiter(ticket);
  if (!waiter) return op.result({ status: 'gone', now: op.now });
  // The heartbeat is written only when a third of its period has passed, not on every poll.
  let aliveUntil = waiter.aliveUntil;
  if (aliveUntil - op.now < (waiter.waiterTtlMs * 2) / 3) {
    aliveUntil = op.now + waiter.waiterTtlMs;
    state.touchWaiter(ticket, aliveUntil);
  }
  const outcome = op.queued({ ...waiter, aliveUntil });
  if (outcome.status === 'queued') {
    const { ticket: _ticket, ...rest } = outcome;
    return op.result(rest);
  }
  return op.result(outcome);
}

/** The tickets of `tickets` still queued, their heartbeats written when a third of the period passed. */
export function keepAlive(state: TableState, tickets: readonly string[]): Result<string[]> {
  const op = new Operation(state);
  const alive: string[] = [];
  for (const ticket of tickets) {
    const waiter = state.waiter(ticket);
    if (!waiter || waiter.deadline <= op.now || waiter.aliveUntil <= op.now) continue;
    if (waiter.aliveUntil - op.now < (waiter.waiterTtlMs * 2) / 3) state.touchWaiter(ticket, op.now + waiter.waiterTtlMs);
    alive.push(ticket);
  }
  return op.result(alive);
}

/** `by`: who asked, for the history (@default the lease's owner). */
export function cancel(state: TableState, ticket: string, by?: string): Result<boolean> {
  const op = new Operation(state);
  op.settle();
  const waiter = state.waiter(ticket);
  if (waiter) {
    state.deleteWaiter(ticket);
    const keys = waiter.resources.map((r) => r.key);
    op.change('left', waiter.owner, keys, null);
    op.promote(keys);
    return op.result(false);
  }
  const lease = state.lease(ticket);
  if (lease) {
    op.promote(op.endLease(lease, 'released', 'cancelled', by ?? lease.owner, op.now, false));
    return op.result(true);
  }
  return op.result(false);
}

export function renew(state: TableState, id: string, ttlMs: number): Result<RenewOutcome> {
  const op = new Operation(state);
  op.settle();
  const lease = state.lease(id);
  if (!lease) return op.result({ status: state.endedLease(id) ? 'lost' : 'unknown', now: op.now });
  const expiresAt = op.now + ttlMs;
  state.setLeaseExpiry(id, expiresAt, ttlMs);
  return op.result({ status: 'renewed', lease: { ...lease, expiresAt, ttlMs }, now: op.now });
}

/** `by`: who asked, for the history (@default the lease's owner). */
export function release(state: TableState, id: string, by?: string): Result<boolean> {
  const op = new Operation(state);
  op.settle();
  const lease = state.lease(id);
  if (!lease) return op.result(false);
  // A request's keys are distinct (validation), so they need no set.
  op.promote(op.endLease(lease, 'released', 'release', by ?? lease.owner, op.now, false));
  return op.result(true);
}

export function releaseOwner(state: TableState, owner: string, key: string | undefined, by: string): Result<number> {
  const op = new Operation(state);
  op.settle();
  const leases = state.leasesOfOwner(owner).filter((l) => key === undefined || l.resources.some((r) => r.key === key));
  return op.result(endAll(op, leases, 'released', 'release-owner', by));
}

export function forceRelease(state: TableState, key: string, by: string): Result<number> {
  const op = new Operation(state);
  op.settle();
  return op.result(endAll(op, state.leasesOnKey(key), 'forced', 'force', by));
}

function endAll(op: Operation, leases: LeaseRecord[], type: LeaseEnd['type'], reason: string, by: string): number {
  const freed = new Set<string>();
  for (const lease of leases) {
    op.endLease(lease, type, reason, by, op.now, true);
    for (const r of lease.resources) freed.add(r.key);
  }
  op.promote(freed);
  return leases.length;
}

export function sweep(state: TableState): Result<number | null> {
  const op = new Operation(state);
  op.settle();
  return op.result(state.nextDue());
}

/** Read-only: a live lease or null. */
export function get(state: TableState, id: string): LeaseRecord | null {
  const lease = state.lease(id);
  return lease && lease.expiresAt > state.now() ? lease : null;
}

/** Read-only: live holders and waiters, waiters with their 1-based position per key. */
export function list(state: TableState, prefix: string): LockTable {
  const now = state.now();
  const iso = (ms: number): string => new Date(ms).toISOString();
  const locks = state
    .heldWithPrefix(prefix)
    .filter(({ lease }) => lease.expiresAt > now)
    .map(({ resource, lease }) => ({
      key: resource.key, mode: resource.mode, limit: resource.limit, owner: lease.owner, fence: lease.fence,
      acquiredAt: iso(lease.acquiredAt), expiresAt: iso(lease.expiresAt), metadata: lease.metadata,
    }))
    .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : a.fence - b.fence));
  const rows = state
    .waitingWithPrefix(prefix)
    .filter(({ waiter }) => waiter.deadline > now && waiter.aliveUntil > now)
    .sort((a, b) => a.waiter.seq - b.waiter.seq);
  const positions = new Map<string, number>();
  const waiters: QueuedWaiter[] = rows.map(({ resource, waiter }) => {
    const position = (positions.get(resource.key) ?? 0) + 1;
    positions.set(resource.key, position);
    return {
      key: resource.key, mode: resource.mode, limit: resource.limit, owner: waiter.owner, position,
      since: iso(waiter.enqueuedAt), waitUntil: iso(waiter.deadline), metadata: waiter.metadata,
    };
  });
  return { locks, waiters };
}
