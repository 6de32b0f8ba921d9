/**
 * Where a namespace's lock table lives in etcd (every key below the store's `prefix`). The table
 * is split by key root (a key's first `/` segment): keys of different roots never conflict, so
 * operations on different roots touch disjoint etcd keys and commit in parallel.
 *
 *   <prefix>v/<root>         the root's version record: its clock (store time of its last write),
 *                            its next due time, and the changes of the operation that wrote it
 *                            (watchers publish them). Every transaction that reads a root compares
 *                            this key's mod revision, and every one that writes the root puts it.
 *   <prefix>r/<root>/l/<id>  a live lease holding a key of the root (JSON; a lease over several
 *                            roots is stored under each of them)
 *   <prefix>r/<root>/w/<id>  a queued waiter (JSON, likewise)
 *   <prefix>r/<root>/d/<id>  a lock-delay on a key of the root (JSON)
 *   <prefix>i/<id>           the roots of a live lease or waiter (JSON array): how an operation
 *                            given only an id finds what to read
 *   <prefix>e/<id>           an ended lease id (so a late renew says LEASE_LOST), on an etcd lease
 *                            of ENDED_TTL_S, so ids are remembered for 30 to 60 minutes
 *   <prefix>h/<time15>/<n>   a history event (JSON), by store time, pruned to about `historyLimit`
 *
 * Fences, queue positions and history ids come from revisions: a record written with a number
 * at or above PROVISIONAL means "the create revision of this key × REVISION_SLOTS + (number −
 * PROVISIONAL)". Every transaction that makes a new number creates the keys that carry it, so
 * the number is fixed by the commit: strictly increasing across all roots and unique.
 */
import type { HistoryEvent, LeaseRecord, Resource } from '../../model/types.js';
import type { StoreChange } from '../store.js';
import type { DelayRow, WaiterRecord } from '../table/state.js';

/** Numbers at or above this are provisional (resolved by the create revision of their key). */
export const PROVISIONAL = 2 ** 52;
/** New numbers one transaction may make (revisions up to 2^33 keep every number a safe integer). */
export const REVISION_SLOTS = 2 ** 20;

/** A provisional number carried by a key created at `createRevision`, made final. */
export function resolve(value: number, createRevision: number): number {
  return value >= PROVISIONAL ? createRevision * REVISION_SLOTS + (value - PROVISIONAL) : value;
}

export interface RootVersion {
  /** The store time of the root's last write (the clock never runs behind it). */
  clock: number;
  /** The root's earliest due time after its last write, or null. */
  nextDue: number | null;
  /** Which store object wrote it. */
  origin: string;
  /** The changes of the operation that wrote it (on one root of the transaction only). */
  changes: StoreChange[];
}

/** Ended ids are put on an etcd lease of this long; a new one is taken when half of it has passed. */
export const ENDED_TTL_S = 3600;

export interface StoredDelay extends DelayRow {
  id: string;
}

/** The root (first segment) of a key. */
export const rootOf = (key: string): string => {
  const slash = key.indexOf('/');
  return slash === -1 ? key : key.slice(0, slash);
};

export const rootsOf = (resources: readonly Resource[]): string[] => [...new Set(resources.map((r) => rootOf(r.key)))];

export class Layout {
  constructor(readonly prefix: string) {}
  version(root: string): string {
    return `${this.prefix}v/${root}`;
  }
  get versions(): string {
    return `${this.prefix}v/`;
  }
  /** Every record of one root. */
  root(root: string): string {
    return `${this.prefix}r/${root}/`;
  }
  get roots(): string {
    return `${this.prefix}r/`;
  }
  lease(root: string, id: string): string {
    return `${this.prefix}r/${root}/l/${id}`;
  }
  waiter(root: string, id: string): string {
    return `${this.prefix}r/${root}/w/${id}`;
  }
  delay(root: string, id: string): string {
    return `${this.prefix}r/${root}/d/${id}`;
  }
  index(id: string): string {
    return `${this.prefix}i/${id}`;
  }
  ended(id: string): string {
    return `${this.prefix}e/${id}`;
  }
  get historyPrefix(): string {
    return `${this.prefix}h/`;
  }
  history(at: number, n: string): string {
    return `${this.prefix}h/${String(at).padStart(15, '0')}/${n}`;
  }
  /** What a key of this layout is: the root and kind of a record key, or null. */
  parseRecord(key: string): { root: string; kind: 'l' | 'w' | 'd'; id: string } | null {
    if (!key.startsWith(this.roots)) return null;
    const rest = key.slice(this.roots.length);
    const match = /^(.*)\/([lwd])\/([^/]*)$/s.exec(rest);
    if (!match) return null;
    return { root: match[1]!, kind: match[2] as 'l' | 'w' | 'd', id: match[3]! };
  }
}

/** The resources exactly as stored: `{ key, mode, limit }`. */
export const plainResources = (resources: readonly Resource[]): Resource[] => resources.map((r) => ({ key: r.key, mode: r.mode, limit: r.limit }));

export const encodeLease = (lease: LeaseRecord): string => JSON.stringify({ ...lease, resources: plainResources(lease.resources) });
export const encodeWaiter = (waiter: WaiterRecord): string => JSON.stringify({ ...waiter, resources: plainResources(waiter.resources) });
export const encodeHistory = (event: HistoryEvent): string => JSON.stringify({ ...event, resources: plainResources(event.resources) });

/** Parses a record and makes its provisional number fields final by the key's create revision. */
function decodeWith<T>(text: string, createRevision: number, fields: ReadonlyArray<keyof T & string>): T {
  const record = JSON.parse(text) as Record<string, number>;
  for (const field of fields) record[field] = resolve(record[field]!, createRevision);
  return record as unknown as T;
}

export const decodeLease = (text: string, rev: number): LeaseRecord => decodeWith<LeaseRecord>(text, rev, ['fence']);
export const decodeWaiter = (text: string, rev: number): WaiterRecord => decodeWith<WaiterRecord>(text, rev, ['seq']);
export const decodeDelay = (text: string, rev: number): StoredDelay => decodeWith<StoredDelay>(text, rev, ['fence']);
export const decodeHistory = (text: string, rev: number): HistoryEvent => decodeWith<HistoryEvent>(text, rev, ['id', 'fence']);
export const decodeVersion = (text: string): RootVersion => ({ clock: 0, nextDue: null, origin: '', changes: [], ...(JSON.parse(text) as Partial<RootVersion>) });
