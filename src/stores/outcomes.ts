/**
 * Outcomes of acquire, poll and renew from the answers of a store's server-side functions
 * (PostgreSQL's jsonb, Redis's JSON): the same shapes, with each store's own readers of a lease
 * row and of a list of holders.
 */
import { StoreUnavailableError, type Holder } from '../model/errors.js';
import type { LeaseRecord } from '../model/types.js';
import type { AcquireOutcome, PollOutcome, RenewOutcome } from './store.js';

type Row = Record<string, unknown>;

export interface RowReaders {
  lease(row: Row): LeaseRecord;
  holders(rows: unknown): Holder[];
}

export function unexpectedAnswer(value: unknown): StoreUnavailableError {
  return new StoreUnavailableError(`unexpected answer from the database: ${JSON.stringify(value).slice(0, 200)}`);
}

export function acquireOutcomeOf(value: unknown, read: RowReaders): AcquireOutcome {
  const v = value as Row;
  const now = Number(v['now']);
  switch (v['status']) {
    case 'granted':
      return { status: 'granted', lease: read.lease(v['lease'] as Row), now };
    case 'busy':
      return { status: 'busy', holders: read.holders(v['holders']), retryAfterMs: Number(v['retryAfterMs']), now };
    case 'queued':
      return {
        status: 'queued', ticket: String(v['ticket']), holders: read.holders(v['holders']),
        retryAfterMs: Number(v['retryAfterMs']), nextCheckMs: Number(v['nextCheckMs']), now,
      };
    default:
      throw unexpectedAnswer(v);
  }
}

export function pollOutcomeOf(value: unknown, read: RowReaders): PollOutcome {
  const v = value as Row;
  if (v['status'] === 'gone') return { status: 'gone', now: Number(v['now']) };
  const outcome = acquireOutcomeOf(value, read);
  if (outcome.status === 'queued') {
    const { ticket: _ticket, ...rest } = outcome;
    return rest;
  }
  if (outcome.status === 'granted') return outcome;
  throw unexpectedAnswer(v);
}

export function renewOutcomeOf(value: unknown, read: RowReaders): RenewOutcome {
  const v = value as Row;
  const now = Number(v['now']);
  if (v['status'] === 'renewed') return { status: 'renewed', lease: read.lease(v['lease'] as Row), now };
  return { status: v['status'] === 'lost' ? 'lost' : 'unknown', now };
}
