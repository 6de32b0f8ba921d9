/** From the rows of the `mysql://` store's tables to the domain records, and from driver errors to holdfast errors. */
import { HoldfastError, StoreUnavailableError } from '../../model/errors.js';
import type { HistoryEvent, HistoryType, LeaseRecord, Metadata, Resource } from '../../model/types.js';
import type { WaiterRecord } from '../table/state.js';
import type { StoredDelay } from './snapshot.js';
import { NO_DUE } from './sql.js';

export type Row = Record<string, unknown>;

/** VARBINARY columns come back as Buffers. */
export function text(value: unknown): string {
  return Buffer.isBuffer(value) ? value.toString('utf8') : String(value);
}

function textOrNull(value: unknown): string | null {
  return value === null || value === undefined ? null : text(value);
}

/** The `next_due` column of a NEXT_DUE row: null when nothing is due (the max BIGINT) or no row. */
export function nextDueOf(row: Row | undefined): number | null {
  const next = row?.['next_due'];
  return next === undefined || next === null || BigInt(String(next)) >= NO_DUE ? null : Number(next);
}

export function toLease(row: Row): LeaseRecord {
  return {
    id: text(row['id']),
    owner: text(row['owner']),
    resources: JSON.parse(text(row['resources'])) as Resource[],
    fence: Number(row['fence']),
    acquiredAt: Number(row['acquired_at']),
    expiresAt: Number(row['expires_at']),
    ttlMs: Number(row['ttl_ms']),
    requestId: textOrNull(row['request_id']),
    metadata: JSON.parse(text(row['metadata'])) as Metadata,
    lockDelayMs: Number(row['lock_delay_ms']),
  };
}

export function toWaiter(row: Row): WaiterRecord {
  return {
    id: text(row['id']),
    seq: Number(row['seq']),
    owner: text(row['owner']),
    resources: JSON.parse(text(row['resources'])) as Resource[],
    ttlMs: Number(row['ttl_ms']),
    requestId: textOrNull(row['request_id']),
    metadata: JSON.parse(text(row['metadata'])) as Metadata,
    lockDelayMs: Number(row['lock_delay_ms']),
    enqueuedAt: Number(row['enqueued_at']),
    deadline: Number(row['deadline']),
    aliveUntil: Number(row['alive_until']),
    waiterTtlMs: Number(row['waiter_ttl_ms']),
  };
}

export function toDelay(row: Row): StoredDelay {
  return {
    root: text(row['root']),
    key: text(row['k']),
    fence: Number(row['fence']),
    until: Number(row['until_at']),
    since: Number(row['since_at']),
    owner: text(row['owner']),
    metadata: JSON.parse(text(row['metadata'])) as Metadata,
  };
}

/**
 * The events of history rows (newest fence first): a lease's end (id fence*2+1) before its
 * acquisition (id fence*2), only ids below `beforeId`, at most `limit`.
 */
export function toHistory(rows: Row[], beforeId: number, limit: number): HistoryEvent[] {
  const events: HistoryEvent[] = [];
  for (const row of rows) {
    const fence = Number(row['fence']);
    const base = {
      owner: text(row['owner']),
      fence,
      resources: JSON.parse(text(row['resources'])) as Resource[],
    };
    if (row['ended_at'] !== null && row['ended_at'] !== undefined && fence * 2 + 1 < beforeId) {
      events.push({
        id: fence * 2 + 1, at: new Date(Number(row['ended_at'])).toISOString(), type: text(row['end_type']) as HistoryType,
        ...base, by: textOrNull(row['ended_by']), reason: textOrNull(row['end_reason']),
      });
    }
    if (fence * 2 < beforeId) {
      events.push({ id: fence * 2, at: new Date(Number(row['acquired_at'])).toISOString(), type: 'acquired', ...base, by: null, reason: null });
    }
  }
  return events.slice(0, limit);
}

/** The database rolled the transaction back (deadlock victim, lock-wait timeout): run it again. */
export function isRetryable(error: unknown): boolean {
  const errno = (error as { errno?: unknown } | null)?.errno;
  return errno === 1213 || errno === 1205;
}

/** The connection is gone (server restarted or killed it, socket reset). */
export function isFatal(error: unknown): boolean {
  const e = (error ?? {}) as { fatal?: unknown; code?: unknown; errno?: unknown };
  return e.fatal === true || e.code === 'PROTOCOL_CONNECTION_LOST' || e.code === 'ECONNRESET' || e.code === 'EPIPE' ||
    e.errno === 1927 || e.errno === 2006 || e.errno === 2013 || e.code === 'ER_CONNECTION_KILLED';
}

export function toHoldfastError(error: unknown): HoldfastError {
  if (error instanceof HoldfastError) return error;
  const message = error instanceof Error ? error.message : String(error);
  return new StoreUnavailableError(`MySQL: ${message}`, { cause: error });
}
