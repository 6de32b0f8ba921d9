/**
 * A waiter's poll that takes no lock, for the common case of a ticket still blocked: one batch
 * refreshes its heartbeat, reads the database clock and what lies under the ticket's roots, and
 * answers `queued` with the blockers, or `granted` when the ticket's lease is live. Anything else
 * (no blocker left, so the ticket may be granted now; a waiter due to time out; a ticket gone)
 * answers null, and the store runs the full, locked poll. Reading without the root locks is safe
 * because this path never grants, ends or drops anything: it only reports.
 */
import type { Pool } from 'mysql2/promise';
import { findBlockers } from '../table/blockers.js';
import type { PollOutcome } from '../store.js';
import { toDelay, toLease, toWaiter, type Row } from './convert.js';
import { rootsOf, SnapshotState } from './snapshot.js';
import * as sql from './sql.js';

/** Time to re-check a queue whose blockers have no known end (as the shared algorithm). */
const UNKNOWN_END_MS = 1000;

export async function leanPoll(pool: Pool, ticket: string, roots: string[]): Promise<PollOutcome | null> {
  const [results] = await pool.query(sql.LEAN_POLL, [ticket, [ticket], [ticket], roots, roots, roots]);
  const [, , nowRows, leaseRows, waiterRows, leases, waiters, delays] = results as unknown as Row[][];
  const now = Number(nowRows![0]!['now']);
  const leaseRow = leaseRows![0];
  if (leaseRow !== undefined) {
    const live = leaseRow['ended_at'] === null && Number(leaseRow['expires_at']) > now;
    return live ? { status: 'granted', lease: toLease(leaseRow), now } : null;
  }
  const waiterRow = waiterRows![0];
  if (waiterRow === undefined) return null;
  const waiter = toWaiter(waiterRow);
  const locked = new Set(roots);
  if (waiter.deadline <= now || waiter.aliveUntil <= now || !rootsOf(waiter.resources).every((r) => locked.has(r))) return null;
  // Only what is live by the clock just read: due items are settled by the full, locked paths.
  const state = new SnapshotState({
    now,
    locked,
    leases: leases!.map(toLease).filter((l) => l.expiresAt > now),
    ended: new Set(),
    waiters: waiters!.map(toWaiter).filter((w) => w.aliveUntil > now && w.deadline > now),
    delays: delays!.map(toDelay).filter((d) => d.until > now),
  });
  const blockers = findBlockers(state, waiter.resources, waiter.seq, waiter.id, true);
  if (blockers.holders.length === 0) return null;
  return {
    status: 'queued',
    holders: blockers.holders,
    retryAfterMs: blockers.lastEnd === null ? UNKNOWN_END_MS : Math.max(1, blockers.lastEnd - now),
    nextCheckMs: blockers.firstEnd === null ? UNKNOWN_END_MS : Math.max(1, blockers.firstEnd - now),
    now,
  };
}
