/**
 * The SQL of the `mysql://` store, statement by statement, each with its inputs (the `?`
 * placeholders, in order) and outputs. Values always go in as parameters (mysql2 escapes them);
 * lists are expanded by mysql2 from arrays (`IN (?)`). MariaDB 10.11 and MySQL 8.0 both run all
 * of it. Times are integer ms since the epoch by the database clock; see migrations/*.sql for the
 * tables.
 */

/** Inputs: none. Outputs: none. Every batch of the full path starts with it: UTC session time, no client `SET timestamp`. */
export const SESSION = `SET time_zone = '+00:00', timestamp = DEFAULT`;

/**
 * Inputs: none. Outputs: none. Run on every new pooled connection before anything else (a
 * connection where it fails is destroyed): UTC session time and READ COMMITTED for every
 * transaction, so the one-round-trip paths need neither statement.
 */
export const CONNECTION_SETUP = `${SESSION};\nSET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED`;

/** Inputs: none. Outputs: none. The next transaction's isolation level. */
export const READ_COMMITTED = `SET TRANSACTION ISOLATION LEVEL READ COMMITTED`;

/** Inputs: roots (a list). Outputs: none. Autocommitted, before the transaction: creates missing root rows. */
export const ENSURE_ROOTS = `INSERT IGNORE INTO hf_roots (root) VALUES ?`;

/** Inputs: roots (a list). Outputs: `root`, `version`. Locks their rows until commit, in index (sorted) order. */
export const LOCK_ROOTS = `SELECT root, version FROM hf_roots WHERE root IN (?) ORDER BY root FOR UPDATE`;

/** Inputs: roots (a list). Outputs: `root`, `version`, read without locks (an optimistic operation's batch 1). */
export const ROOT_VERSIONS = `SELECT root, version FROM hf_roots WHERE root IN (?)`;

/**
 * Inputs: root, version for each of `n` roots, then n. Outputs: 1, or the error 1242 ("Subquery
 * returns more than 1 row", which stops the batch before its COMMIT) when a root's version is not
 * the one read: another operation wrote under it since.
 */
export function checkVersions(n: number): string {
  const match = Array.from({ length: n }, () => '(root = ? AND version = ?)').join(' OR ');
  return `SELECT IF((SELECT COUNT(*) FROM hf_roots WHERE ${match}) = ?, 1, (SELECT 1 UNION ALL SELECT 2)) AS ok`;
}

/**
 * The one-key lean acquire (migration 2). Inputs: id, owner, key, root, resources JSON, metadata
 * JSON, ttl_ms, lock_delay_ms, ensure (0/1). Outputs: one row `fence` (NULL: nothing changed), `now`.
 */
export const ACQUIRE_ONE = `CALL hf_acquire_one(?, ?, ?, ?, ?, ?, ?, ?, ?)`;
/**
 * The one-root lean release (migration 2). Inputs: lease id, root. Outputs: one row `now`,
 * `fence`, `owner`, `resources` (NULL fence: nothing changed).
 */
export const RELEASE_ONE = `CALL hf_release_one(?, ?)`;
/**
 * The one-key hand-off (migration 3). Inputs: lease id, root, origin. Outputs: one row `now`,
 * `fence`, `owner`, `resources` of the released lease (NULL fence: nothing changed), and the lease
 * granted to its first waiter: `g_id` (NULL: none), `g_fence`, `g_owner`, `g_request_id`,
 * `g_resources`, `g_metadata`, `g_ttl_ms`, `g_lock_delay_ms`, `g_expires_at`.
 */
export const RELEASE_HANDOFF = `CALL hf_release_handoff(?, ?, ?)`;

/** Inputs: roots (a list). Outputs: none. Run by every write under the roots, with their locks held. */
export const BUMP_VERSIONS = `UPDATE hf_roots SET version = version + 1 WHERE root IN (?)`;

/**
 * Inputs: none. Outputs: `now` (the database clock, read after the locks; SYSDATE is not moved by
 * `SET timestamp`), `change_id` (the newest change-log row: a watcher started for a ticket queued
 * now reads from there).
 */
export const NOW = `SELECT CAST(ROUND(UNIX_TIMESTAMP(SYSDATE(6)) * 1000) AS SIGNED) AS now,
  (SELECT COALESCE(MAX(id), 0) FROM hf_changes) AS change_id`;

const LEASE = `l.fence, l.id, l.owner, l.request_id, l.resources, l.metadata, l.ttl_ms, l.lock_delay_ms,
  l.acquired_at, l.expires_at, l.ended_at`;
const WAITER = `w.seq, w.id, w.owner, w.request_id, w.resources, w.metadata, w.ttl_ms, w.lock_delay_ms,
  w.enqueued_at, w.deadline, w.alive_until, w.waiter_ttl_ms`;

/** Inputs: roots (a list). Outputs: lease rows, live under the roots. */
export const LEASES_UNDER = `SELECT ${LEASE} FROM hf_leases l
  WHERE l.fence IN (SELECT r.fence FROM hf_lease_keys r WHERE r.root IN (?))`;
/** Inputs: roots (a list). Outputs: waiter rows under the roots. */
export const WAITERS_UNDER = `SELECT ${WAITER} FROM hf_waiters w
  WHERE w.seq IN (SELECT r.seq FROM hf_waiter_keys r WHERE r.root IN (?))`;
/** Inputs: roots (a list). Outputs: lock-delay rows under the roots. */
export const DELAYS_UNDER = `SELECT root, k, fence, until_at, since_at, owner, metadata FROM hf_delays WHERE root IN (?)`;

/** Inputs: ids (a list). Outputs: lease rows with those ids, live or ended. */
export const LEASES_BY_ID = `SELECT ${LEASE} FROM hf_leases l WHERE l.id IN (?)`;
/** Inputs: ids (a list). Outputs: waiter rows with those ids. */
export const WAITERS_BY_ID = `SELECT ${WAITER} FROM hf_waiters w WHERE w.id IN (?)`;
/** Inputs: owner, requestId. Outputs: the live lease row of that request, or none. */
export const LEASE_BY_REQUEST = `SELECT ${LEASE} FROM hf_leases l WHERE l.owner = ? AND l.request_id = ? AND l.ended_at IS NULL`;
/** Inputs: owner, requestId. Outputs: the waiter row of that request, or none. */
export const WAITER_BY_REQUEST = `SELECT ${WAITER} FROM hf_waiters w WHERE w.owner = ? AND w.request_id = ?`;
/** Inputs: owner. Outputs: the owner's live lease rows. */
export const LEASES_OF_OWNER = `SELECT ${LEASE} FROM hf_leases l WHERE l.owner = ? AND l.ended_at IS NULL`;

/** Inputs: id, owner, requestId, resources, metadata, ttlMs, lockDelayMs, acquiredAt, expiresAt. Outputs: the fence (insertId). */
export const INSERT_LEASE = `INSERT INTO hf_leases
  (id, owner, request_id, resources, metadata, ttl_ms, lock_delay_ms, acquired_at, expires_at)
  VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`;
/** Inputs: key, root for each of `n` keys. Outputs: none. Indexes the keys of the lease just inserted (`fence`: LAST_INSERT_ID() or @hf_fence). */
export function insertKeys(table: 'hf_lease_keys' | 'hf_waiter_keys', n: number, id = 'LAST_INSERT_ID()'): string {
  const column = table === 'hf_lease_keys' ? 'fence' : 'seq';
  return `INSERT INTO ${table} (k, root, ${column}) VALUES ${Array.from({ length: n }, () => `(?, ?, ${id})`).join(', ')}`;
}
/** Inputs: expiresAt, ttlMs, fence. Outputs: none. */
export const SET_EXPIRY = `UPDATE hf_leases SET expires_at = ?, ttl_ms = ? WHERE fence = ?`;
/** Inputs: endedAt, endType, endReason, endedBy, fence. Outputs: none. The row stays as history. */
export const END_LEASE = `UPDATE hf_leases SET ended_at = ?, end_type = ?, end_reason = ?, ended_by = ? WHERE fence = ? AND ended_at IS NULL`;
/** Inputs: fence. Outputs: none. */
export const DELETE_LEASE_KEYS = `DELETE FROM hf_lease_keys WHERE fence = ?`;

/** Inputs: id, owner, requestId, resources, metadata, ttlMs, lockDelayMs, enqueuedAt, deadline, aliveUntil, waiterTtlMs. Outputs: the seq (insertId). */
export const INSERT_WAITER = `INSERT INTO hf_waiters
  (id, owner, request_id, resources, metadata, ttl_ms, lock_delay_ms, enqueued_at, deadline, alive_until, waiter_ttl_ms)
  VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`;
/** Inputs: aliveUntil, seq. Outputs: none. */
export const TOUCH_WAITER = `UPDATE hf_waiters SET alive_until = ? WHERE seq = ?`;
/** Inputs: seq. Outputs: none. */
export const DELETE_WAITER = `DELETE FROM hf_waiters WHERE seq = ?`;
/** Inputs: seq. Outputs: none. */
export const DELETE_WAITER_KEYS = `DELETE FROM hf_waiter_keys WHERE seq = ?`;

/** Inputs: root, key, fence, until, since, owner, metadata. Outputs: none. */
export const INSERT_DELAY = `INSERT INTO hf_delays (root, k, fence, until_at, since_at, owner, metadata) VALUES (?, ?, ?, ?, ?, ?, ?)
  ON DUPLICATE KEY UPDATE until_at = GREATEST(until_at, VALUES(until_at))`;
/** Inputs: roots (a list), now. Outputs: none. */
export const DELETE_DUE_DELAYS = `DELETE FROM hf_delays WHERE root IN (?) AND until_at <= ?`;

/**
 * Inputs: origin, at, ticket, expiresAt, owner, keys (JSON). Outputs: none. Logs the grant of a
 * queued ticket (the lease inserted just before: its fence is LAST_INSERT_ID()) for the watchers
 * of other processes.
 */
export const LOG_GRANT = `INSERT INTO hf_changes (origin, at, ticket, fence, expires_at, owner, keys_json)
  VALUES (?, ?, ?, LAST_INSERT_ID(), ?, ?, ?)`;

const FAR = '9223372036854775807';
/** The earliest time a lease, waiter or lock-delay falls due (the max BIGINT when none): an expression. */
const NEXT_DUE_EXPRESSION = `LEAST(
  COALESCE((SELECT MIN(expires_at) FROM hf_leases WHERE ended_at IS NULL), ${FAR}),
  COALESCE((SELECT MIN(alive_until) FROM hf_waiters), ${FAR}),
  COALESCE((SELECT MIN(deadline) FROM hf_waiters), ${FAR}),
  COALESCE((SELECT MIN(until_at) FROM hf_delays), ${FAR}))`;
/** Inputs: none. Outputs: `next_due` (NEXT_DUE_EXPRESSION), `now` (ms, the database clock, read after it). */
export const NEXT_DUE = `SELECT ${NEXT_DUE_EXPRESSION} AS next_due, CAST(ROUND(UNIX_TIMESTAMP(SYSDATE(6)) * 1000) AS SIGNED) AS now`;
export const NO_DUE = BigInt(FAR);

/** Inputs: none. Outputs: none. */
export const COMMIT = `COMMIT`;
export const ROLLBACK = `ROLLBACK`;

/**
 * Inputs: limit (4 times). Outputs: `root`, roots under which a lease, waiter or lock-delay is due
 * by the database clock (no locks taken: the sweep then locks them).
 */
export const DUE_ROOTS = `SELECT DISTINCT d.root FROM (
  (SELECT r.root FROM hf_leases l JOIN hf_lease_keys r ON r.fence = l.fence
    WHERE l.ended_at IS NULL AND l.expires_at <= ROUND(UNIX_TIMESTAMP(SYSDATE(6)) * 1000) LIMIT ?)
  UNION ALL
  (SELECT r.root FROM hf_waiters w JOIN hf_waiter_keys r ON r.seq = w.seq
    WHERE w.alive_until <= ROUND(UNIX_TIMESTAMP(SYSDATE(6)) * 1000) LIMIT ?)
  UNION ALL
  (SELECT r.root FROM hf_waiters w JOIN hf_waiter_keys r ON r.seq = w.seq
    WHERE w.deadline <= ROUND(UNIX_TIMESTAMP(SYSDATE(6)) * 1000) LIMIT ?)
  UNION ALL
  (SELECT root FROM hf_delays WHERE until_at <= ROUND(UNIX_TIMESTAMP(SYSDATE(6)) * 1000) LIMIT ?)) d`;

/** Inputs: id. Outputs: the live lease row with that id, unexpired by the database clock, or none. */
export const GET_LEASE = `SELECT ${LEASE} FROM hf_leases l
  WHERE l.id = ? AND l.ended_at IS NULL AND l.expires_at > ROUND(UNIX_TIMESTAMP(SYSDATE(6)) * 1000)`;

/** Inputs: none. Outputs: `now`, every live lease row, every waiter row (one batch, for `list`). */
export const LIST = [
  `SELECT CAST(ROUND(UNIX_TIMESTAMP(SYSDATE(6)) * 1000) AS SIGNED) AS now`,
  `SELECT ${LEASE} FROM hf_leases l WHERE l.ended_at IS NULL`,
  `SELECT ${WAITER} FROM hf_waiters w`,
];

const HISTORY_COLUMNS = `fence, owner, resources, acquired_at, ended_at, end_type, end_reason, ended_by`;
/**
 * The history: every lease row gives an `acquired` event (id fence*2) and, once ended, its end
 * (id fence*2+1), so ids grow with fences and a lease's end follows its acquisition.
 * Inputs: owner (or null) twice, key pattern (or null) twice, below-fence, limit. Outputs: lease
 * rows, newest fence first.
 */
export const HISTORY = `SELECT ${HISTORY_COLUMNS} FROM hf_leases
  WHERE (? IS NULL OR owner = ?) AND (? IS NULL OR JSON_SEARCH(resources, 'one', ?, '|', '$[*].key') IS NOT NULL)
    AND fence < ? ORDER BY fence DESC LIMIT ?`;

/** Inputs: none. Outputs: `fence`, the newest lease's fence (0 when none). */
export const MAX_FENCE = `SELECT COALESCE(MAX(fence), 0) AS fence FROM hf_leases`;
/** Inputs: below-fence, limit. Outputs: none. Prunes ended lease rows (history) below a fence. */
export const PRUNE_HISTORY = `DELETE FROM hf_leases WHERE fence < ? AND ended_at IS NOT NULL ORDER BY fence LIMIT ?`;
/** Inputs: age (ms), limit. Outputs: none. Prunes the change log (watchers read only the last seconds). */
export const PRUNE_CHANGES = `DELETE FROM hf_changes WHERE at < ROUND(UNIX_TIMESTAMP(SYSDATE(6)) * 1000) - ? ORDER BY id LIMIT ?`;

/** Inputs: after-id, ids of holes (a list; [0] when none), limit. Outputs: change-log rows. */
export const CHANGES_AFTER = `SELECT id, origin, at, ticket, fence, expires_at, owner, keys_json FROM hf_changes
  WHERE id > ? OR id IN (?) ORDER BY id LIMIT ?`;
/** Inputs: none. Outputs: `id`, the newest change-log row (0 when none). */
export const LAST_CHANGE = `SELECT COALESCE(MAX(id), 0) AS id FROM hf_changes`;

/**
 * A waiter's poll without locks (the common case: still blocked). Inputs: ticket (the heartbeat
 * UPDATE), ticket (lease), ticket (waiter), roots (a list, 3 times). Outputs, by statement: none;
 * none; `now`; the ticket's lease row (live or ended) or none; its waiter row or none; the live
 * leases, waiters and lock-delays under the roots. The heartbeat is written only when a third of
 * its period has passed, and only to a waiter still alive by the database clock.
 */
export const LEAN_POLL = [
  `SET @hf_now = CAST(ROUND(UNIX_TIMESTAMP(SYSDATE(6)) * 1000) AS SIGNED)`,
  `UPDATE hf_waiters SET alive_until = @hf_now + waiter_ttl_ms
    WHERE id = ? AND alive_until > @hf_now AND deadline > @hf_now AND (alive_until - @hf_now) * 3 < waiter_ttl_ms * 2`,
  `SELECT @hf_now AS now`,
  LEASES_BY_ID,
  WAITERS_BY_ID,
  LEASES_UNDER,
  WAITERS_UNDER,
  DELAYS_UNDER,
].join(';\n');
