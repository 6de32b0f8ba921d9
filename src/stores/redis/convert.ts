/**
 * From the JSON answers of the store's Redis functions (library/*.lua) to the domain values of
 * `store.ts`, and from client errors to holdfast errors. Fences come as decimal strings,
 * metadata as the JSON text the client sent, times as ms; ISO strings are made here.
 */
import { HoldfastError, StoreUnavailableError, type Holder } from '../../model/errors.js';
import type { HistoryEvent, LeaseRecord, LockRequest, LockTable, Metadata, QueuedWaiter, Resource } from '../../model/types.js';
import { acquireOutcomeOf, pollOutcomeOf, renewOutcomeOf, unexpectedAnswer, type RowReaders } from '../outcomes.js';
import type { AcquireOutcome, PollOutcome, RenewOutcome, StoreChange } from '../store.js';

type Row = Record<string, unknown>;

/** What every writing function answers. */
export interface FunctionResult {
  value: unknown;
  changes: StoreChange[];
  nextDue: number | null;
  now: number;
  error?: { field: string; message: string } | undefined;
}

const iso = (ms: unknown): string => new Date(Number(ms)).toISOString();

/** cjson writes an empty array as `{}`. */
function asArray(value: unknown): unknown[] {
  return Array.isArray(value) ? value : [];
}

function metadataOf(text: unknown): Metadata {
  if (typeof text !== 'string' || text === '') return {};
  return JSON.parse(text) as Metadata;
}

function resourcesOf(value: unknown): Resource[] {
  return asArray(value).map((r) => {
    const row = r as Row;
    return { key: String(row['key']), mode: row['mode'] as Resource['mode'], limit: typeof row['limit'] === 'number' ? row['limit'] : null };
  });
}

/** A request as the library's `acquire` takes it. */
export function requestJson(request: LockRequest): string {
  return JSON.stringify({
    id: request.id, owner: request.owner, res: request.resources, ttl: request.ttlMs, rid: request.requestId ?? '',
    meta: JSON.stringify(request.metadata), delay: request.lockDelayMs,
  });
}

export function toLease(row: Row): LeaseRecord {
  const rid = row['rid'];
  return {
    id: String(row['id']), owner: String(row['owner']), resources: resourcesOf(row['res']), fence: Number(row['fence']),
    acquiredAt: Number(row['acq']), expiresAt: Number(row['exp']), ttlMs: Number(row['ttl']),
    requestId: typeof rid === 'string' && rid !== '' ? rid : null, metadata: metadataOf(row['meta']), lockDelayMs: Number(row['delay']),
  };
}

function toHolders(rows: unknown): Holder[] {
  return asArray(rows).map((value) => {
    const h = value as Row;
    return {
      key: String(h['key']), mode: h['mode'] as Holder['mode'], owner: String(h['owner']), state: h['state'] as Holder['state'],
      acquiredAt: iso(h['acquiredAt']), expiresAt: typeof h['expiresAt'] === 'number' ? iso(h['expiresAt']) : null,
      metadata: metadataOf(h['metadata']),
    };
  });
}

const REDIS_ROWS: RowReaders = { lease: toLease, holders: toHolders };

export const toAcquireOutcome = (value: unknown): AcquireOutcome => acquireOutcomeOf(value, REDIS_ROWS);
export const toPollOutcome = (value: unknown): PollOutcome => pollOutcomeOf(value, REDIS_ROWS);
export const toRenewOutcome = (value: unknown): RenewOutcome => renewOutcomeOf(value, REDIS_ROWS);

/** A change as the functions answer it and the inbox stream carries it. */
export function toChange(value: unknown): StoreChange | null {
  if (typeof value !== 'object' || value === null) return null;
  const c = value as Row;
  if (typeof c['type'] !== 'string') return null;
  return {
    type: c['type'] as StoreChange['type'], owner: String(c['owner']), keys: asArray(c['keys']).map(String),
    fence: typeof c['fence'] === 'string' || typeof c['fence'] === 'number' ? Number(c['fence']) : null,
    granted: asArray(c['granted']).map(String), at: Number(c['at']),
    ...(typeof c['expiresAt'] === 'number' ? { expiresAt: c['expiresAt'] } : {}),
  };
}

export function toFunctionResult(reply: unknown): FunctionResult {
  if (typeof reply !== 'string') throw unexpectedAnswer(reply);
  const r = JSON.parse(reply) as Row;
  const error = r['error'] as { field: string; message: string } | undefined;
  return {
    value: r['value'], changes: asArray(r['changes']).map(toChange).filter((c): c is StoreChange => c !== null),
    nextDue: typeof r['nextDue'] === 'number' ? r['nextDue'] : null, now: Number(r['now']), error,
  };
}

/** `list`'s reply: [now, number of leases, lease JSON..., waiter JSON...], filtered by prefix here. */
export function toLockTable(reply: unknown, prefix: string): LockTable {
  const flat = reply as Array<string | number>;
  const now = Number(flat[0]);
  const leaseCount = Number(flat[1]);
  const locks: LockTable['locks'] = [];
  for (const text of flat.slice(2, 2 + leaseCount)) {
    const lease = toLease(JSON.parse(String(text)) as Row);
    if (lease.expiresAt <= now) continue;
    for (const r of lease.resources) {
      if (!r.key.startsWith(prefix)) continue;
      locks.push({
        key: r.key, mode: r.mode, limit: r.limit, owner: lease.owner, fence: lease.fence,
        acquiredAt: iso(lease.acquiredAt), expiresAt: iso(lease.expiresAt), metadata: lease.metadata,
      });
    }
  }
  locks.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : a.fence - b.fence));
  const rows: Array<{ r: Resource; w: Row }> = [];
  for (const text of flat.slice(2 + leaseCount)) {
    const w = JSON.parse(String(text)) as Row;
    if (Number(w['deadline']) <= now || Number(w['alive']) <= now) continue;
    for (const r of resourcesOf(w['res'])) if (r.key.startsWith(prefix)) rows.push({ r, w });
  }
  rows.sort((a, b) => Number(a.w['seq']) - Number(b.w['seq']));
  const positions = new Map<string, number>();
  const waiters: QueuedWaiter[] = rows.map(({ r, w }) => {
    const position = (positions.get(r.key) ?? 0) + 1;
    positions.set(r.key, position);
    return {
      key: r.key, mode: r.mode, limit: r.limit, owner: String(w['owner']), position,
      since: iso(w['enq']), waitUntil: iso(w['deadline']), metadata: metadataOf(w['meta']),
    };
  });
  return { locks, waiters };
}

export function toHistory(reply: unknown): HistoryEvent[] {
  return asArray(reply).map((text) => {
    const e = JSON.parse(String(text)) as Row;
    return {
      id: Number(e['id']), at: iso(e['at']), type: e['type'] as HistoryEvent['type'], owner: String(e['owner']),
      fence: Number(e['fence']), resources: resourcesOf(e['resources']),
      by: typeof e['by'] === 'string' ? e['by'] : null, reason: typeof e['reason'] === 'string' ? e['reason'] : null,
    };
  });
}

/** Maps any error of the client to a holdfast error; raw replies never leave the store. */
export function toHoldfastError(error: unknown): HoldfastError {
  if (error instanceof HoldfastError) return error;
  const e = (error ?? {}) as { name?: unknown; message?: unknown };
  const message = typeof e.message === 'string' && e.message !== '' ? e.message : String(error);
  if (e.name === 'ErrorReply' || e.name === 'SimpleError' || e.name === 'BlobError') {
    return new StoreUnavailableError(`Redis failed the operation: ${message}`, { cause: error });
  }
  return new StoreUnavailableError(`cannot reach Redis: ${message}`, { cause: error });
}
