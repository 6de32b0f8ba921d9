/**
 * Where a namespace's lock table lives in etcd (every key below the store's `prefix`):
 *
 *   <prefix>m            the meta record: counters (fence, queue seq, history id, delay id), the
 *                        store clock's high-water mark, the next due time, and the changes of the
 *                        operation that wrote it (what watchers publish). Every write operation
 *                        puts it, and every write transaction compares its mod revision, so the
 *                        operations on a namespace are serialized by etcd itself.
 *   <prefix>t/l/<id>     a live lease (LeaseRecord, JSON)
 *   <prefix>t/w/<id>     a queued waiter (WaiterRecord, JSON)
 *   <prefix>t/d/<n>      a lock-delay (DelayRow, JSON)
 *   <prefix>e/<id>       an ended lease id (so a late renew says LEASE_LOST), on an etcd lease
 *                        of ENDED_TTL_S, so ids are remembered for 30 to 60 minutes
 *   <prefix>h/<id16>     a history event (HistoryEvent, JSON), id zero-padded to 16 digits, the
 *                        newest `historyLimit` kept
 */
import type { HistoryEvent, LeaseRecord, Metadata, Resource } from '../../model/types.js';
import type { StoreChange } from '../store.js';
import type { DelayRow, WaiterRecord } from '../table/state.js';

export interface Meta {
  fence: number;
  seq: number;
  historyId: number;
  delayId: number;
  /** The store time of the last write (the clock never runs behind it). */
  clock: number;
  /** The earliest due time after the last write, or null. */
  nextDue: number | null;
  /** Which store object wrote it. */
  origin: string;
  /** The changes of the operation that wrote it. */
  changes: StoreChange[];
}

export const EMPTY_META: Meta = Object.freeze({ fence: 0, seq: 0, historyId: 0, delayId: 0, clock: 0, nextDue: null, origin: '', changes: [] });

/** Ended ids are put on an etcd lease of this long; a new one is taken when half of it has passed. */
export const ENDED_TTL_S = 3600;

export interface StoredDelay extends DelayRow {
  id: number;
}

export class Layout {
  constructor(readonly prefix: string) {}
  get meta(): string {
    return `${this.prefix}m`;
  }
  get table(): string {
    return `${this.prefix}t/`;
  }
  lease(id: string): string {
    return `${this.prefix}t/l/${id}`;
  }
  waiter(id: string): string {
    return `${this.prefix}t/w/${id}`;
  }
  delay(id: number): string {
    return `${this.prefix}t/d/${id}`;
  }
  ended(id: string): string {
    return `${this.prefix}e/${id}`;
  }
  get historyPrefix(): string {
    return `${this.prefix}h/`;
  }
  history(id: number): string {
    return `${this.prefix}h/${String(id).padStart(16, '0')}`;
  }
}

/** The resources exactly as stored: `{ key, mode, limit }`. */
export const plainResources = (resources: readonly Resource[]): Resource[] => resources.map((r) => ({ key: r.key, mode: r.mode, limit: r.limit }));

export function encodeLease(lease: LeaseRecord): string {
  return JSON.stringify({ ...lease, resources: plainResources(lease.resources) });
}

export function encodeWaiter(waiter: WaiterRecord): string {
  return JSON.stringify({ ...waiter, resources: plainResources(waiter.resources) });
}

export function encodeDelay(delay: StoredDelay): string {
  return JSON.stringify(delay);
}

export function encodeHistory(event: HistoryEvent): string {
  return JSON.stringify({ ...event, resources: plainResources(event.resources) });
}

export const decodeLease = (text: string): LeaseRecord => JSON.parse(text) as LeaseRecord;
export const decodeWaiter = (text: string): WaiterRecord => JSON.parse(text) as WaiterRecord;
export const decodeDelay = (text: string): StoredDelay => JSON.parse(text) as StoredDelay & { metadata: Metadata };
export const decodeHistory = (text: string): HistoryEvent => JSON.parse(text) as HistoryEvent;
export const decodeMeta = (text: string): Meta => ({ ...EMPTY_META, ...(JSON.parse(text) as Partial<Meta>) });
