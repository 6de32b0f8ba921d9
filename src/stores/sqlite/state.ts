/**
 * `TableState` over a SQLite database (better-sqlite3). Every method is one or two prepared,
 * parameterized statements from `sql.ts`; the shared algorithm (`operations.ts`) calls them inside
 * the `BEGIN IMMEDIATE` transaction that `store.ts` opens, so an operation is atomic across every
 * process sharing the file. Time is SQLite's clock, never `Date.now()`.
 *
 * Within one transaction the related-key reads are cached until the next write: the algorithm
 * asks the same question once per queued candidate (`promote` → `findBlockers`), which without the
 * cache makes a release in front of N waiters cost N² rows. `store.ts` calls `resetCache()` at
 * every transaction boundary, since other connections may write between transactions.
 */
import type BetterSqlite3 from 'better-sqlite3';
import { ancestorsOf } from '../../model/keys.js';
import type { HistoryEvent, HistoryQuery, HistoryType, LeaseRecord, Metadata, Mode, Resource } from '../../model/types.js';
import type { DelayRow, HeldRow, LeaseEnd, TableState, WaitRow, WaiterRecord } from '../table/state.js';
import * as sql from './sql.js';

export interface SqliteStateOptions {
  /** How many history events to keep (also how long ended lease ids are remembered). */
  historyLimit: number;
  /** Written with every history event: which process wrote it (see `historyOfOthers`). */
  origin: string;
}

/** A history event another process wrote, as `historyOfOthers` reads it. */
export interface OtherEvent {
  id: number;
  type: HistoryType;
  owner: string;
  fence: number;
  keys: string[];
  at: number;
  leaseId: string;
  /** For an `acquired` event whose lease is still there: its expiry. */
  expiresAt: number | null;
}

interface LeaseRow {
  id: string;
  owner: string;
  request_id: string | null;
  fence: number;
  acquired_at: number;
  expires_at: number;
  ttl_ms: number;
  resources: string;
  metadata: string;
  lock_delay_ms: number;
}

interface WaiterRow {
  id: string;
  seq: number;
  owner: string;
  request_id: string | null;
  resources: string;
  ttl_ms: number;
  metadata: string;
  lock_delay_ms: number;
  enqueued_at: number;
  deadline: number;
  alive_until: number;
  waiter_ttl_ms: number;
}

interface ResourceColumns {
  r_key: string;
  r_mode: Mode;
  r_lim: number | null;
}

interface DelayColumns {
  key: string;
  until: number;
  owner: string;
  fence: number;
  since: number;
  metadata: string;
}

interface HistoryRow {
  id: number;
  at: number;
  type: HistoryType;
  owner: string;
  fence: number;
  resources: string;
  by: string | null;
  reason: string | null;
}

type Database = BetterSqlite3.Database;
type Statement = BetterSqlite3.Statement;

const DEFAULT_HISTORY_PAGE = 100;
/** The history is trimmed every this many events, by at most `PRUNE_SLICE` of the oldest. */
const PRUNE_EVERY = 16;
const PRUNE_SLICE = 2 * PRUNE_EVERY;

function toLease(row: LeaseRow): LeaseRecord {
  return {
    id: row.id,
    owner: row.owner,
    resources: JSON.parse(row.resources) as Resource[],
    fence: row.fence,
    acquiredAt: row.acquired_at,
    expiresAt: row.expires_at,
    ttlMs: row.ttl_ms,
    requestId: row.request_id,
    metadata: JSON.parse(row.metadata) as Metadata,
    lockDelayMs: row.lock_delay_ms,
  };
}

function toWaiter(row: WaiterRow): WaiterRecord {
  return {
    id: row.id,
    seq: row.seq,
    owner: row.owner,
    resources: JSON.parse(row.resources) as Resource[],
    ttlMs: row.ttl_ms,
    requestId: row.request_id,
    metadata: JSON.parse(row.metadata) as Metadata,
    lockDelayMs: row.lock_delay_ms,
    enqueuedAt: row.enqueued_at,
    deadline: row.deadline,
    aliveUntil: row.alive_until,
    waiterTtlMs: row.waiter_ttl_ms,
  };
}

const toResource = (row: ResourceColumns): Resource => ({ key: row.r_key, mode: row.r_mode, limit: row.r_lim });

/** The resources as stored: exactly `{ key, mode, limit }`, in request order. */
const resourcesJson = (resources: readonly Resource[]): string =>
  JSON.stringify(resources.map((r) => ({ key: r.key, mode: r.mode, limit: r.limit })));

/** `key` and its ancestors, as the `:keys` parameter of the related-key statements. */
const selfAndAncestors = (key: string): string => JSON.stringify([key, ...ancestorsOf(key)]);

export class SqliteState implements TableState {
  readonly #historyLimit: number;
  readonly #origin: string;
  readonly #s: { [K in keyof typeof sql]: Statement };
  /** Related-key answers of the current transaction, by kind and key; emptied by every write. */
  readonly #related = new Map<string, HeldRow[] | WaitRow[] | DelayRow[]>();
  /** The last fence `nextFence` answered whose lease row is not inserted yet (0: none). */
  #handedFence = 0;

  constructor(db: Database, options: SqliteStateOptions) {
    this.#historyLimit = options.historyLimit;
    this.#origin = options.origin;
    const statements = {} as Record<string, Statement>;
    for (const [name, text] of Object.entries(sql)) statements[name] = db.prepare(text);
    this.#s = statements as { [K in keyof typeof sql]: Statement };
  }

  /** Forgets every cached read: at transaction boundaries, and on each write to the lock table. */
  resetCache(): void {
    this.#related.clear();
  }

  #cached<T extends HeldRow[] | WaitRow[] | DelayRow[]>(kind: string, key: string, load: () => T): T {
    const name = `${kind}\u0000${key}`;
    let rows = this.#related.get(name) as T | undefined;
    if (rows === undefined) this.#related.set(name, (rows = load()));
    return rows;
  }

  #value(statement: Statement): number {
    return (statement.get() as { value: number }).value;
  }

  /** Held rows, one lease object per lease id (parsed once). */
  #held(rows: (LeaseRow & ResourceColumns)[]): HeldRow[] {
    const leases = new Map<string, LeaseRecord>();
    return rows.map((row) => {
      let lease = leases.get(row.id);
      if (!lease) leases.set(row.id, (lease = toLease(row)));
      return { resource: toResource(row), lease };
    });
  }

  #waiting(rows: (WaiterRow & ResourceColumns)[]): WaitRow[] {
    const waiters = new Map<string, WaiterRecord>();
    return rows.map((row) => {
      let waiter = waiters.get(row.id);
      if (!waiter) waiters.set(row.id, (waiter = toWaiter(row)));
      return { resource: toResource(row), waiter };
    });
  }

  now(): number {
    return (this.#s.NOW.get() as { now: number }).now;
  }

  /**
   * One above the newest lease row's fence (sql.ts: no counter is written). Asked again before
   * that lease's row is inserted, it answers the next one still, as a counter would.
   */
  nextFence(): number {
    const fence = Math.max(this.#value(this.#s.NEXT_FENCE), this.#handedFence + 1);
    this.#handedFence = fence;
    return fence;
  }

  nextSeq(): number {
    return this.#value(this.#s.NEXT_SEQ);
  }

  lease(id: string): LeaseRecord | undefined {
    const row = this.#s.LEASE_BY_ID.get({ id }) as LeaseRow | undefined;
    return row && toLease(row);
  }

  leaseByRequestId(owner: string, requestId: string): LeaseRecord | undefined {
    const row = this.#s.LEASE_BY_REQUEST.get({ owner, requestId }) as LeaseRow | undefined;
    return row && toLease(row);
  }

  leasesOfOwner(owner: string): LeaseRecord[] {
    return (this.#s.LEASES_OF_OWNER.all({ owner }) as LeaseRow[]).map(toLease);
  }

  leasesOnKey(key: string): LeaseRecord[] {
    return (this.#s.LEASES_ON_KEY.all({ key }) as LeaseRow[]).map(toLease);
  }

  heldRelatedTo(key: string): HeldRow[] {
    return this.#cached('held', key, () =>
      this.#held(this.#s.HELD_RELATED.all({ key, keys: selfAndAncestors(key) }) as (LeaseRow & ResourceColumns)[]),
    );
  }

  dueLeases(now: number): LeaseRecord[] {
    return (this.#s.DUE_LEASES.all({ now }) as LeaseRow[]).map(toLease);
  }

  insertLease(lease: LeaseRecord): void {
    this.resetCache();
    const resources = resourcesJson(lease.resources);
    const first = lease.resources[0]!;
    const event = this.#nextEvent();
    this.#s.INSERT_LEASE.run({
      event,
      id: lease.id,
      owner: lease.owner,
      requestId: lease.requestId,
      fence: lease.fence,
      acquiredAt: lease.acquiredAt,
      expiresAt: lease.expiresAt,
      ttlMs: lease.ttlMs,
      key: first.key,
      mode: first.mode,
      lim: first.limit,
      resources,
      metadata: JSON.stringify(lease.metadata),
      lockDelayMs: lease.lockDelayMs,
      origin: this.#origin,
    });
    if (lease.resources.length > 1) this.#s.INSERT_LEASE_KEYS.run({ event, resources });
    this.#handedFence = 0;
  }

  setLeaseExpiry(id: string, expiresAt: number, ttlMs: number): void {
    this.resetCache();
    this.#s.SET_LEASE_EXPIRY.run({ id, expiresAt, ttlMs });
  }

  endLease(lease: LeaseRecord, end: LeaseEnd): void {
    this.resetCache();
    if (lease.resources.length > 1) this.#s.DELETE_LEASE_KEYS.run({ id: lease.id });
    this.#s.END_LEASE.run({
      id: lease.id, event: this.#nextEvent(), at: end.at, type: end.type, by: end.by, reason: end.reason, origin: this.#origin,
    });
  }

  endedLease(id: string): boolean {
    return (this.#s.ENDED_LEASE.get({ id }) as { ended: number }).ended === 1;
  }

  waiter(id: string): WaiterRecord | undefined {
    const row = this.#s.WAITER_BY_ID.get({ id }) as WaiterRow | undefined;
    return row && toWaiter(row);
  }

  waiterByRequestId(owner: string, requestId: string): WaiterRecord | undefined {
    const row = this.#s.WAITER_BY_REQUEST.get({ owner, requestId }) as WaiterRow | undefined;
    return row && toWaiter(row);
  }

  waitingRelatedTo(key: string): WaitRow[] {
    return this.#cached('waiting', key, () =>
      this.#waiting(this.#s.WAITING_RELATED.all({ key, keys: selfAndAncestors(key) }) as (WaiterRow & ResourceColumns)[]),
    );
  }

  dueWaiters(now: number): WaiterRecord[] {
    return (this.#s.DUE_WAITERS.all({ now }) as WaiterRow[]).map(toWaiter);
  }

  insertWaiter(waiter: WaiterRecord): void {
    this.resetCache();
    const resources = resourcesJson(waiter.resources);
    this.#s.INSERT_WAITER.run({
      id: waiter.id,
      seq: waiter.seq,
      owner: waiter.owner,
      requestId: waiter.requestId,
      resources,
      ttlMs: waiter.ttlMs,
      metadata: JSON.stringify(waiter.metadata),
      lockDelayMs: waiter.lockDelayMs,
      enqueuedAt: waiter.enqueuedAt,
      deadline: waiter.deadline,
      aliveUntil: waiter.aliveUntil,
      waiterTtlMs: waiter.waiterTtlMs,
    });
    this.#s.INSERT_WAITER_RESOURCES.run({ id: waiter.id, resources });
  }

  touchWaiter(id: string, aliveUntil: number): void {
    this.resetCache();
    this.#s.TOUCH_WAITER.run({ id, aliveUntil });
  }

  deleteWaiter(id: string): void {
    this.resetCache();
    this.#s.DELETE_WAITER_RESOURCES.run({ id });
    this.#s.DELETE_WAITER.run({ id });
  }

  delaysRelatedTo(key: string): DelayRow[] {
    return this.#cached('delays', key, () => {
      const rows = this.#s.DELAYS_RELATED.all({ key, keys: selfAndAncestors(key) }) as DelayColumns[];
      return rows.map((row) => ({ ...row, metadata: JSON.parse(row.metadata) as Metadata }));
    });
  }

  insertDelay(delay: DelayRow): void {
    this.resetCache();
    this.#s.INSERT_DELAY.run({ ...delay, metadata: JSON.stringify(delay.metadata) });
  }

  deleteDueDelays(now: number): string[] {
    const keys = (this.#s.DELETE_DUE_DELAYS.all({ now }) as { key: string }[]).map((row) => row.key);
    if (keys.length > 0) this.resetCache();
    return keys;
  }

  nextDue(): number | null {
    return (this.#s.NEXT_DUE.get() as { due: number | null }).due;
  }

  /**
   * The id of the next history event (an acquire or an end), read from the rows (one above the
   * newest; the caller writes it at once). Ids are consecutive, so the newest `historyLimit` of
   * them are kept by trimming the rows of leases that ended before them. The trim is amortized:
   * every PRUNE_EVERY events a slice of at most PRUNE_SLICE rows goes (each row is up to two
   * events: a backlog shrinks), never a thousand rows at once inside one caller's transaction.
   */
  #nextEvent(): number {
    const id = this.#value(this.#s.NEXT_HISTORY_ID);
    if (id % PRUNE_EVERY === 0 && id > this.#historyLimit) {
      this.#s.PRUNE_HISTORY.run({ maxId: id - this.#historyLimit, limit: PRUNE_SLICE });
    }
    return id;
  }

  history(query: HistoryQuery): HistoryEvent[] {
    const params = {
      beforeId: query.beforeId ?? Number.MAX_SAFE_INTEGER,
      key: query.key ?? null,
      limit: Math.max(0, query.limit ?? DEFAULT_HISTORY_PAGE),
    };
    const rows = this.#s.HISTORY.all({ ...params, owner: query.owner ?? null }) as HistoryRow[];
    return rows.map((row) => ({
      id: row.id,
      at: new Date(row.at).toISOString(),
      type: row.type,
      owner: row.owner,
      fence: row.fence,
      resources: JSON.parse(row.resources) as Resource[],
      by: row.by,
      reason: row.reason,
    }));
  }

  /** This connection's data version: it changes when another connection commits to the file. */
  dataVersion(): number {
    return this.#value(this.#s.DATA_VERSION);
  }

  /** The id of the newest history event written so far (0: none). */
  lastHistoryId(): number {
    return this.#value(this.#s.LAST_HISTORY_ID);
  }

  /** Up to `limit` history events after `after` that other processes wrote, oldest first. */
  historyOfOthers(after: number, limit: number): OtherEvent[] {
    const rows = this.#s.HISTORY_OF_OTHERS.all({ after, origin: this.#origin, limit }) as (Omit<HistoryRow, 'by' | 'reason'> & {
      lease_id: string;
      expires_at: number | null;
    })[];
    return rows.map((row) => ({
      id: row.id,
      type: row.type,
      owner: row.owner,
      fence: row.fence,
      keys: (JSON.parse(row.resources) as Resource[]).map((r) => r.key),
      at: row.at,
      leaseId: row.lease_id,
      expiresAt: row.expires_at,
    }));
  }

  heldWithPrefix(prefix: string): HeldRow[] {
    return this.#held(this.#s.HELD_WITH_PREFIX.all({ prefix }) as (LeaseRow & ResourceColumns)[]);
  }

  waitingWithPrefix(prefix: string): WaitRow[] {
    return this.#waiting(this.#s.WAITING_WITH_PREFIX.all({ prefix }) as (WaiterRow & ResourceColumns)[]);
  }
}
