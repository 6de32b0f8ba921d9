/**
 * From the jsonb answers of the store's SQL functions to the domain values of `store.ts`, and
 * from driver errors to holdfast errors. The functions send times as ms; ISO strings are made here.
 */
import { HoldfastError, InvalidRequestError, StoreUnavailableError, type Holder } from '../../model/errors.js';
import type { HistoryEvent, HeldLock, LeaseRecord, LockTable, QueuedWaiter } from '../../model/types.js';
import { acquireOutcomeOf, pollOutcomeOf, renewOutcomeOf, unexpectedAnswer, type RowReaders } from '../outcomes.js';
import type { AcquireOutcome, PollOutcome, RenewOutcome, StoreChange } from '../store.js';

/** What every writing SQL function returns (`hf_result`). */
export interface SqlResult {
  value: unknown;
  changes: StoreChange[];
  /** Work deferred because its locks were busy: call `hf_follow_up` with these. */
  roots: string[];
  tickets: string[];
  nextDue: number | null;
  now: number;
}

type Row = Record<string, unknown>;

const iso = (ms: unknown): string => new Date(Number(ms)).toISOString();

export function toLease(row: Row): LeaseRecord {
  return {
    id: String(row['id']),
    owner: String(row['owner']),
    resources: row['resources'] as LeaseRecord['resources'],
    fence: Number(row['fence']),
    acquiredAt: Number(row['acquiredAt']),
    expiresAt: Number(row['expiresAt']),
    ttlMs: Number(row['ttlMs']),
    requestId: (row['requestId'] as string | null) ?? null,
    metadata: (row['metadata'] as Record<string, unknown>) ?? {},
    lockDelayMs: Number(row['lockDelayMs']),
  };
}

function toHolders(rows: unknown): Holder[] {
  return (rows as Row[]).map((h) => ({
    key: String(h['key']),
    mode: h['mode'] as Holder['mode'],
    owner: String(h['owner']),
    state: h['state'] as Holder['state'],
    acquiredAt: iso(h['acquiredAt']),
    expiresAt: h['expiresAt'] === null || h['expiresAt'] === undefined ? null : iso(h['expiresAt']),
    metadata: (h['metadata'] as Record<string, unknown>) ?? {},
  }));
}

const POSTGRES_ROWS: RowReaders = { lease: toLease, holders: toHolders };

export const toAcquireOutcome = (value: unknown): AcquireOutcome => acquireOutcomeOf(value, POSTGRES_ROWS);
export const toPollOutcome = (value: unknown): PollOutcome => pollOutcomeOf(value, POSTGRES_ROWS);
export const toRenewOutcome = (value: unknown): RenewOutcome => renewOutcomeOf(value, POSTGRES_ROWS);

const byKeyThenFence = (a: HeldLock, b: HeldLock): number => (a.key < b.key ? -1 : a.key > b.key ? 1 : a.fence - b.fence);

export function toLockTable(value: unknown): LockTable {
  const v = value as Row;
  const locks: HeldLock[] = (v['locks'] as Row[]).map((r) => ({
    key: String(r['key']), mode: r['mode'] as HeldLock['mode'], limit: (r['limit'] as number | null) ?? null,
    owner: String(r['owner']), fence: Number(r['fence']), acquiredAt: iso(r['acquiredAt']), expiresAt: iso(r['expiresAt']),
    metadata: (r['metadata'] as Record<string, unknown>) ?? {},
  }));
  locks.sort(byKeyThenFence);
  const waiters: QueuedWaiter[] = (v['waiters'] as Row[]).map((r) => ({
    key: String(r['key']), mode: r['mode'] as QueuedWaiter['mode'], limit: (r['limit'] as number | null) ?? null,
    owner: String(r['owner']), position: Number(r['position']), since: iso(r['since']), waitUntil: iso(r['waitUntil']),
    metadata: (r['metadata'] as Record<string, unknown>) ?? {},
  }));
  return { locks, waiters };
}

export function toHistory(value: unknown): HistoryEvent[] {
  return (value as Row[]).map((e) => ({
    id: Number(e['id']), at: iso(e['at']), type: e['type'] as HistoryEvent['type'], owner: String(e['owner']),
    fence: Number(e['fence']), resources: e['resources'] as HistoryEvent['resources'],
    by: (e['by'] as string | null) ?? null, reason: (e['reason'] as string | null) ?? null,
  }));
}

/** A change as the SQL functions and notifications carry it. */
export function toChange(value: unknown): StoreChange | null {
  if (typeof value !== 'object' || value === null) return null;
  const c = value as Row;
  if (typeof c['type'] !== 'string' || !Array.isArray(c['granted']) || !Array.isArray(c['keys'])) return null;
  return {
    type: c['type'] as StoreChange['type'], owner: String(c['owner']), keys: c['keys'] as string[],
    fence: c['fence'] === null || c['fence'] === undefined ? null : Number(c['fence']),
    granted: c['granted'] as string[], at: Number(c['at']),
    ...(typeof c['expiresAt'] === 'number' ? { expiresAt: c['expiresAt'] } : {}),
  };
}

/** SQLSTATE classes of a lost or refused connection, and server shutdowns. */
const UNAVAILABLE = /^(08|53|57|58)/;

/** Maps any error of the driver to a holdfast error; raw SQLSTATEs never leave the store. */
export function toHoldfastError(error: unknown): HoldfastError {
  if (error instanceof HoldfastError) return error;
  const e = (error ?? {}) as { code?: unknown; detail?: unknown; message?: unknown; errors?: unknown };
  const code = typeof e.code === 'string' ? e.code : '';
  const message = typeof e.message === 'string' ? e.message : String(error);
  if (code === 'HF400') {
    return new InvalidRequestError(typeof e.detail === 'string' ? e.detail : 'request', message, { cause: error });
  }
  if (code === '23505') return new InvalidRequestError('id', 'this lease id was already used', { cause: error });
  if (code === 'HF503') return new StoreUnavailableError(message, { cause: error });
  if (error instanceof AggregateError || message === '') {
    const first = Array.isArray(e.errors) ? (e.errors[0] as { message?: string } | undefined) : undefined;
    return new StoreUnavailableError(`cannot reach PostgreSQL: ${first?.message ?? (code || 'connection failed')}`, { cause: error });
  }
  if (UNAVAILABLE.test(code) || /^E[A-Z]+$/.test(code) || /timeout|terminat|connect/i.test(message)) {
    return new StoreUnavailableError(`cannot reach PostgreSQL: ${message}`, { cause: error });
  }
  return new StoreUnavailableError(`PostgreSQL failed the operation: ${message}`, { cause: error });
}
