/**
 * The one-round-trip paths of the `mysql://` store, for the uncontended cases: one batch locks the
 * roots (sorted, FOR UPDATE), reads the database clock after the locks, makes a write that is
 * conditional on nothing being in the way, and commits. When something is in the way (a related
 * lease, waiter or lock-delay; waiters to hand the keys to; an expired lease to settle) the batch
 * changes nothing and answers null, and the store runs the full operation (transaction.ts).
 *
 *   acquire  grants when no lease, waiter or lock-delay row relates to any requested key (equal,
 *            ancestor or descendant): then the full algorithm would grant too, with nothing to
 *            settle on those keys. Requests with a requestId take the full path.
 *   release  ends a live, unexpired lease none of whose keys has a related waiter.
 *   renew    extends a live, unexpired lease.
 *
 * None of them reads the store-wide next due time: they make nothing due sooner than their own
 * new lease (acquire) or its new expiry (renew), which their answers carry.
 *
 * One key (acquire) and one root (release) go to the stored procedures of migration 2
 * (`hf_acquire_one`, `hf_release_one`: one CALL, the same decisions); several, to the batches.
 *
 * The connection is set up for them when the pool opens it (sql.CONNECTION_SETUP: UTC, READ
 * COMMITTED). Root rows are created (`ensure`) only for roots this store object has not seen yet;
 * a grant also checks that every root row exists, so it was locked (a missing one: the full path).
 */
import type { Pool, PoolConnection, RowDataPacket } from 'mysql2/promise';
import type { LeaseRecord, LockRequest } from '../../model/types.js';
import type { StoreChange } from '../store.js';
import { isFatal, toHoldfastError, toLease, type Row } from './convert.js';
import { rootOf } from './snapshot.js';
import * as sql from './sql.js';

type Statement = [text: string, values: unknown[]];

const NOW = `SET @hf_now = CAST(ROUND(UNIX_TIMESTAMP(SYSDATE(6)) * 1000) AS SIGNED), @hf_fence = NULL`;

function selfAndAncestors(key: string): string[] {
  const parts = key.split('/');
  return parts.map((_, i) => parts.slice(0, parts.length - i).join('/'));
}

/** `column` relates to one of `keys`: equal, an ancestor, or a descendant (byte order: '0' follows '/'). */
function related(keys: readonly string[], column: string): Statement {
  const text = keys.map(() => `(${column} IN (?) OR (${column} > ? AND ${column} < ?))`).join(' OR ');
  return [text, keys.flatMap((key) => [selfAndAncestors(key), `${key}/`, `${key}0`])];
}

function prefix(roots: string[], ensure: boolean): Statement[] {
  return [
    ...(ensure ? [[sql.ENSURE_ROOTS, [roots.map((r) => [r])]] as Statement] : []),
    ['START TRANSACTION', []],
    [sql.LOCK_ROOTS, [roots]],
    [NOW, []],
  ];
}

export interface LeanAnswer<T> {
  value: T;
  /** What the operation changed, in order, for the store to publish. */
  changes: StoreChange[];
  now: number;
  nextDue: number | null;
}

/** Runs one batch on a pooled connection; rolls back (and answers null) on any failure but a dropped connection. */
async function run(pool: Pool, statements: Statement[]): Promise<unknown[] | null> {
  let connection: PoolConnection;
  try {
    connection = await pool.getConnection();
  } catch (error) {
    throw toHoldfastError(error);
  }
  let healthy = true;
  try {
    const [results] = await connection.query(statements.map(([t]) => t).join(';\n'), statements.flatMap(([, v]) => v));
    return results as unknown as unknown[];
  } catch (error) {
    if (isFatal(error)) {
      healthy = false;
      throw toHoldfastError(error);
    }
    // A duplicate id, a deadlock, a lock-wait timeout: the full path decides (and retries).
    await connection.query(sql.ROLLBACK).catch(() => (healthy = false));
    return null;
  } finally {
    if (healthy) connection.release();
    else connection.destroy();
  }
}

/**
 * Grants when nothing is in the way. `ensure`: create the roots' rows first (roots not seen yet).
 * The answer's `nextDue` is the new lease's expiry: the store's sweep timer keeps the earliest it
 * has heard of, and the next release reads the store's own.
 */
export async function leanAcquire(pool: Pool, request: LockRequest, roots: string[], ensure: boolean): Promise<LeanAnswer<LeaseRecord> | null> {
  const keys = request.resources.map((r) => r.key);
  if (keys.length === 1) {
    // One key: the procedure of migration 2 (one CALL instead of a nine-statement batch).
    const results = await run(pool, [[sql.ACQUIRE_ONE, [
      request.id, request.owner, keys[0], roots[0], JSON.stringify(request.resources), JSON.stringify(request.metadata),
      request.ttlMs, request.lockDelayMs, ensure ? 1 : 0,
    ]]]);
    return results === null ? null : granted(request, keys, (results[0] as Row[])[0]!);
  }
  const [heldText, heldValues] = related(keys, 'k');
  const rows = request.resources.map(() => 'SELECT ? AS k, ? AS root').join(' UNION ALL ');
  const statements: Statement[] = [
    ...prefix(roots, ensure),
    [`INSERT INTO hf_leases (id, owner, request_id, resources, metadata, ttl_ms, lock_delay_ms, acquired_at, expires_at)
      SELECT ?, ?, NULL, ?, ?, ?, ?, @hf_now, @hf_now + ? FROM DUAL
      WHERE (SELECT COUNT(*) FROM hf_roots WHERE root IN (?)) = ?
        AND NOT EXISTS (SELECT 1 FROM hf_lease_keys WHERE ${heldText})
        AND NOT EXISTS (SELECT 1 FROM hf_waiter_keys WHERE ${heldText})
        AND NOT EXISTS (SELECT 1 FROM hf_delays WHERE ${heldText})`, [
      request.id, request.owner, JSON.stringify(request.resources), JSON.stringify(request.metadata), request.ttlMs,
      request.lockDelayMs, request.ttlMs, roots, roots.length, ...heldValues, ...heldValues, ...heldValues,
    ]],
    [`SET @hf_fence = IF(ROW_COUNT() = 1, LAST_INSERT_ID(), NULL)`, []],
    [`${sql.BUMP_VERSIONS} AND @hf_fence IS NOT NULL`, [roots]],
    [`INSERT INTO hf_lease_keys (k, root, fence) SELECT v.k, v.root, @hf_fence FROM (${rows}) v WHERE @hf_fence IS NOT NULL`,
      request.resources.flatMap((r) => [r.key, rootOf(r.key)])],
    [`SELECT @hf_fence AS fence, @hf_now AS now`, []],
    [sql.COMMIT, []],
  ];
  const results = await run(pool, statements);
  return results === null ? null : granted(request, keys, (results[results.length - 2] as Row[])[0]!);
}

/** The lean acquire's answer row (`fence`, `now`) as a grant, or null (nothing granted). */
function granted(request: LockRequest, keys: string[], answer: Row): LeanAnswer<LeaseRecord> | null {
  if (answer['fence'] === null || answer['fence'] === undefined) return null;
  const now = Number(answer['now']);
  const lease: LeaseRecord = {
    id: request.id, owner: request.owner, resources: request.resources, fence: Number(answer['fence']),
    acquiredAt: now, expiresAt: now + request.ttlMs, ttlMs: request.ttlMs, requestId: null,
    metadata: request.metadata, lockDelayMs: request.lockDelayMs,
  };
  const change: StoreChange = { type: 'acquired', owner: lease.owner, keys, fence: lease.fence, granted: [lease.id], at: now, expiresAt: lease.expiresAt };
  return { value: lease, changes: [change], now, nextDue: lease.expiresAt };
}

export async function leanRelease(pool: Pool, id: string, roots: string[]): Promise<LeanAnswer<true> | null> {
  if (roots.length === 1) {
    // Keys under one root: the procedure of migration 2.
    const results = await run(pool, [[sql.RELEASE_ONE, [id, roots[0]]]]);
    return results === null ? null : released(id, (results[0] as Row[])[0]!);
  }
  const statements: Statement[] = [
    ...prefix(roots, false),
    [`SELECT l.fence FROM hf_leases l WHERE l.id = ? AND l.ended_at IS NULL AND l.expires_at > @hf_now
        AND NOT EXISTS (SELECT 1 FROM hf_lease_keys lk WHERE lk.fence = l.fence AND lk.root NOT IN (?))
        AND NOT EXISTS (SELECT 1 FROM hf_lease_keys lk JOIN hf_waiter_keys wk ON wk.root = lk.root
          AND (wk.k = lk.k OR (wk.k > CONCAT(lk.k, '/') AND wk.k < CONCAT(lk.k, '0'))
               OR (lk.k > CONCAT(wk.k, '/') AND lk.k < CONCAT(wk.k, '0')))
          WHERE lk.fence = l.fence)
      INTO @hf_fence`, [id, roots]],
    [`${sql.BUMP_VERSIONS} AND @hf_fence IS NOT NULL`, [roots]],
    [`UPDATE hf_leases SET ended_at = @hf_now, end_type = 'released', end_reason = 'release', ended_by = owner WHERE fence = @hf_fence`, []],
    [`DELETE FROM hf_lease_keys WHERE fence = @hf_fence`, []],
    [`SELECT @hf_now AS now, l.fence, l.owner, l.resources FROM (SELECT 1) one LEFT JOIN hf_leases l ON l.fence = @hf_fence`, []],
    [sql.COMMIT, []],
  ];
  const results = await run(pool, statements);
  return results === null ? null : released(id, (results[results.length - 2] as Row[])[0]!);
}

/**
 * The lean release's answer row (`now`, `fence`, `owner`, `resources`), or null (nothing
 * released). It has no next due time: ending a lease makes nothing due sooner, so the sweep timer
 * keeps the earliest it knows (a lease's expiry it heard of; a sweep then re-reads the store's).
 */
function released(id: string, answer: Row): LeanAnswer<true> | null {
  if (answer['fence'] === null || answer['fence'] === undefined) return null;
  const now = Number(answer['now']);
  const lease = toLease({ ...answer, id, request_id: null, metadata: '{}', ttl_ms: 0, lock_delay_ms: 0, acquired_at: 0, expires_at: 0 });
  const change: StoreChange = {
    type: 'released', owner: lease.owner, keys: lease.resources.map((r) => r.key), fence: lease.fence, granted: [], at: now,
  };
  return { value: true, changes: [change], now, nextDue: null };
}

/**
 * Releases a lease on one key under a contended root and hands the key to its first waiter when
 * that is a live exclusive request for that key alone (migration 3's `hf_release_handoff`, one
 * CALL); a lease with no related waiter is simply released. Null: nothing changed (the full path
 * decides). `origin` marks the change-log row so this store object's watcher skips it.
 */
export async function leanHandoff(pool: Pool, id: string, root: string, origin: string): Promise<LeanAnswer<true> | null> {
  const results = await run(pool, [[sql.RELEASE_HANDOFF, [id, root, origin]]]);
  if (results === null) return null;
  const answer = (results[0] as Row[])[0]!;
  const release = released(id, answer);
  if (release === null || answer['g_id'] === null || answer['g_id'] === undefined) return release;
  const lease = toLease({
    id: answer['g_id'], owner: answer['g_owner'], request_id: answer['g_request_id'], resources: answer['g_resources'],
    metadata: answer['g_metadata'], fence: answer['g_fence'], ttl_ms: answer['g_ttl_ms'], lock_delay_ms: answer['g_lock_delay_ms'],
    acquired_at: answer['now'], expires_at: answer['g_expires_at'],
  });
  // The full path's changes for the same hand-off: the release, then the grant with its expiry.
  const grant: StoreChange = {
    type: 'acquired', owner: lease.owner, keys: lease.resources.map((r) => r.key), fence: lease.fence, granted: [lease.id],
    at: release.now, expiresAt: lease.expiresAt,
  };
  return { ...release, changes: [...release.changes, grant], nextDue: lease.expiresAt };
}

export type LeanRenew = { status: 'renewed'; lease: LeaseRecord } | { status: 'lost' } | { status: 'unknown' };

export async function leanRenew(pool: Pool, id: string, ttlMs: number, roots: string[]): Promise<LeanAnswer<LeanRenew> | null> {
  const statements: Statement[] = [
    ...prefix(roots, false),
    [`UPDATE hf_leases SET expires_at = @hf_now + ?, ttl_ms = ? WHERE id = ? AND ended_at IS NULL AND expires_at > @hf_now`, [ttlMs, ttlMs, id]],
    [`SELECT ROW_COUNT() AS n, @hf_now AS now`, []],
    [sql.BUMP_VERSIONS, [roots]],
    [sql.LEASES_BY_ID, [[id]]],
    [sql.COMMIT, []],
  ];
  const results = await run(pool, statements);
  if (results === null) return null;
  const answer = (results[results.length - 4] as Row[])[0]!;
  const row = (results[results.length - 2] as RowDataPacket[])[0] as Row | undefined;
  const now = Number(answer['now']);
  // No next due time read: a renewal makes nothing due sooner (the renewed lease's new expiry is
  // later than the one the sweep timer may already be armed at).
  if (Number(answer['n']) === 1 && row !== undefined) {
    const lease = toLease(row);
    return { value: { status: 'renewed', lease }, changes: [], now, nextDue: lease.expiresAt };
  }
  if (row === undefined) return { value: { status: 'unknown' }, changes: [], now, nextDue: null };
  if (row['ended_at'] !== null) return { value: { status: 'lost' }, changes: [], now, nextDue: null };
  return null; // live but expired: the full path settles it
}
