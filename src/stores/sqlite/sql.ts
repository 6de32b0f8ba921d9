/**
 * Every DML statement of the `sqlite:` store, by name. Each one is prepared once by `state.ts`
 * and run with named parameters only (`:name`, bound from an object); no value is ever pasted
 * into SQL text. The schema is in `migrations.ts`.
 *
 * Conventions: times are integer ms since the epoch by the SQLite clock; `resources` and
 * `metadata` are JSON text; a "lease row" has the columns of `LeaseRow` in `state.ts`, a
 * "held row" a lease row plus `r_key`, `r_mode`, `r_lim` (one resource of that lease), and a
 * "waiter row" / "waiting row" likewise.
 *
 * Related keys of K (`heldRelatedTo` and friends): K itself and its ancestors are passed as the
 * JSON array `:keys` (read with `json_each`); its descendants are the BINARY-collated index range
 * `key > :key || '/' AND key < :key || '0'` ('0' is the byte after '/').
 */

const LEASE = `l.id, l.owner, l.request_id, l.fence, l.acquired_at, l.expires_at, l.ttl_ms, l.resources, l.metadata, l.lock_delay_ms`;
const WAITER = `w.id, w.seq, w.owner, w.request_id, w.resources, w.ttl_ms, w.metadata, w.lock_delay_ms, w.enqueued_at, w.deadline, w.alive_until, w.waiter_ttl_ms`;
const HELD = `SELECT r.key AS r_key, r.mode AS r_mode, r.lim AS r_lim, ${LEASE} FROM holdfast_lease_resources r JOIN holdfast_leases l ON l.id = r.lease_id`;
const WAITING = `SELECT r.key AS r_key, r.mode AS r_mode, r.lim AS r_lim, ${WAITER} FROM holdfast_waiter_resources r JOIN holdfast_waiters w ON w.id = r.waiter_id`;
const DESCENDANTS = `r.key > :key || '/' AND r.key < :key || '0'`;
const PREFIX = `r.key >= :prefix AND substr(r.key, 1, length(:prefix)) = :prefix`;

// ---- clock and counters ----------------------------------------------------------------------

/** Inputs: none. Outputs: `now`, the SQLite clock in integer ms since the epoch. */
export const NOW = `SELECT CAST(round(unixepoch('subsec') * 1000) AS INTEGER) AS now`;
/** Inputs: none. Outputs: `value`, the new fence (counter incremented). */
export const NEXT_FENCE = `UPDATE holdfast_meta SET fence = fence + 1 WHERE id = 1 RETURNING fence AS value`;
/** Inputs: none. Outputs: `value`, the new queue sequence number. */
export const NEXT_SEQ = `UPDATE holdfast_meta SET seq = seq + 1 WHERE id = 1 RETURNING seq AS value`;
/** Inputs: none. Outputs: `value`, the new history event id. */
export const NEXT_HISTORY_ID = `UPDATE holdfast_meta SET history_id = history_id + 1 WHERE id = 1 RETURNING history_id AS value`;

// ---- leases ----------------------------------------------------------------------------------

/** Inputs: `id`. Outputs: the lease row or none. */
export const LEASE_BY_ID = `SELECT ${LEASE} FROM holdfast_leases l WHERE l.id = :id`;
/** Inputs: `owner`, `requestId`. Outputs: the lease row or none. */
export const LEASE_BY_REQUEST = `SELECT ${LEASE} FROM holdfast_leases l WHERE l.owner = :owner AND l.request_id = :requestId`;
/** Inputs: `owner`. Outputs: lease rows, by fence. */
export const LEASES_OF_OWNER = `SELECT ${LEASE} FROM holdfast_leases l WHERE l.owner = :owner ORDER BY l.fence`;
/** Inputs: `key`. Outputs: rows of the leases holding exactly `key`, by fence. */
export const LEASES_ON_KEY = `SELECT ${LEASE} FROM holdfast_leases l
  WHERE l.id IN (SELECT lease_id FROM holdfast_lease_resources WHERE key = :key) ORDER BY l.fence`;
/** Inputs: `key`, `keys` (JSON array of `key` and its ancestors). Outputs: held rows related to `key`. */
export const HELD_RELATED = `${HELD} WHERE r.key IN (SELECT value FROM json_each(:keys))
  UNION ALL ${HELD} WHERE ${DESCENDANTS}`;
/** Inputs: `now`. Outputs: rows of the leases with `expires_at <= now`, earliest first. */
export const DUE_LEASES = `SELECT ${LEASE} FROM holdfast_leases l WHERE l.expires_at <= :now ORDER BY l.expires_at, l.fence`;
/** Inputs: the lease's columns. Outputs: none. */
export const INSERT_LEASE = `INSERT INTO holdfast_leases
  (id, owner, request_id, fence, acquired_at, expires_at, ttl_ms, resources, metadata, lock_delay_ms)
  VALUES (:id, :owner, :requestId, :fence, :acquiredAt, :expiresAt, :ttlMs, :resources, :metadata, :lockDelayMs)`;
/** Inputs: `id`, `resources` (JSON array of `{ key, mode, limit }`). Outputs: none. Indexes the lease's keys. */
export const INSERT_LEASE_RESOURCES = `INSERT INTO holdfast_lease_resources (lease_id, ord, key, mode, lim)
  SELECT :id, j.key, j.value ->> 'key', j.value ->> 'mode', j.value ->> 'limit' FROM json_each(:resources) j`;
/** Inputs: `id`, `expiresAt`, `ttlMs`. Outputs: none. */
export const SET_LEASE_EXPIRY = `UPDATE holdfast_leases SET expires_at = :expiresAt, ttl_ms = :ttlMs WHERE id = :id`;
/** Inputs: `id`. Outputs: none. Run before `DELETE_LEASE`. */
export const DELETE_LEASE_RESOURCES = `DELETE FROM holdfast_lease_resources WHERE lease_id = :id`;
/** Inputs: `id`. Outputs: none. */
export const DELETE_LEASE = `DELETE FROM holdfast_leases WHERE id = :id`;
/** Inputs: `id`. Outputs: `ended` (1 when the history records the end of lease `id`, else 0). */
export const ENDED_LEASE = `SELECT EXISTS (SELECT 1 FROM holdfast_history WHERE lease_id = :id AND type <> 'acquired') AS ended`;

// ---- waiters ---------------------------------------------------------------------------------

/** Inputs: `id`. Outputs: the waiter row or none. */
export const WAITER_BY_ID = `SELECT ${WAITER} FROM holdfast_waiters w WHERE w.id = :id`;
/** Inputs: `owner`, `requestId`. Outputs: the waiter row or none. */
export const WAITER_BY_REQUEST = `SELECT ${WAITER} FROM holdfast_waiters w WHERE w.owner = :owner AND w.request_id = :requestId`;
/** Inputs: `key`, `keys` (JSON array of `key` and its ancestors). Outputs: waiting rows related to `key`. */
export const WAITING_RELATED = `${WAITING} WHERE r.key IN (SELECT value FROM json_each(:keys))
  UNION ALL ${WAITING} WHERE ${DESCENDANTS}`;
/** Inputs: `now`. Outputs: rows of the waiters with `alive_until <= now` or `deadline <= now`, earliest first. */
export const DUE_WAITERS = `SELECT ${WAITER} FROM holdfast_waiters w
  WHERE min(w.alive_until, w.deadline) <= :now ORDER BY min(w.alive_until, w.deadline), w.seq`;
/** Inputs: the waiter's columns. Outputs: none. */
export const INSERT_WAITER = `INSERT INTO holdfast_waiters
  (id, seq, owner, request_id, resources, ttl_ms, metadata, lock_delay_ms, enqueued_at, deadline, alive_until, waiter_ttl_ms)
  VALUES (:id, :seq, :owner, :requestId, :resources, :ttlMs, :metadata, :lockDelayMs, :enqueuedAt, :deadline, :aliveUntil, :waiterTtlMs)`;
/** Inputs: `id`, `resources` (JSON array of `{ key, mode, limit }`). Outputs: none. Indexes the waiter's keys. */
export const INSERT_WAITER_RESOURCES = `INSERT INTO holdfast_waiter_resources (waiter_id, ord, key, mode, lim)
  SELECT :id, j.key, j.value ->> 'key', j.value ->> 'mode', j.value ->> 'limit' FROM json_each(:resources) j`;
/** Inputs: `id`, `aliveUntil`. Outputs: none. */
export const TOUCH_WAITER = `UPDATE holdfast_waiters SET alive_until = :aliveUntil WHERE id = :id`;
/** Inputs: `id`. Outputs: none. Run before `DELETE_WAITER`. */
export const DELETE_WAITER_RESOURCES = `DELETE FROM holdfast_waiter_resources WHERE waiter_id = :id`;
/** Inputs: `id`. Outputs: none. */
export const DELETE_WAITER = `DELETE FROM holdfast_waiters WHERE id = :id`;

// ---- lock-delays -----------------------------------------------------------------------------

/** Inputs: `key`, `keys` (JSON array of `key` and its ancestors). Outputs: delay rows related to `key`. */
export const DELAYS_RELATED = `SELECT r.key, r.until, r.owner, r.fence, r.since, r.metadata FROM holdfast_delays r
  WHERE r.key IN (SELECT value FROM json_each(:keys))
  UNION ALL SELECT r.key, r.until, r.owner, r.fence, r.since, r.metadata FROM holdfast_delays r WHERE ${DESCENDANTS}`;
/** Inputs: `key`, `until`, `owner`, `fence`, `since`, `metadata`. Outputs: none. */
export const INSERT_DELAY = `INSERT INTO holdfast_delays (key, until, owner, fence, since, metadata)
  VALUES (:key, :until, :owner, :fence, :since, :metadata)`;
/** Inputs: `now`. Outputs: `key` of each deleted delay (those with `until <= now`). */
export const DELETE_DUE_DELAYS = `DELETE FROM holdfast_delays WHERE until <= :now RETURNING key`;

// ---- due times, history, listing -------------------------------------------------------------

/** Inputs: none. Outputs: `due`, the earliest expiry, waiter drop or delay end (null when none). */
export const NEXT_DUE = `SELECT min(t) AS due FROM (
  SELECT min(expires_at) AS t FROM holdfast_leases
  UNION ALL SELECT min(min(alive_until, deadline)) FROM holdfast_waiters
  UNION ALL SELECT min(until) FROM holdfast_delays)`;

/** Inputs: `id`, `at`, `type`, `owner`, `fence`, `resources`, `by`, `reason`, `leaseId`, `origin`. Outputs: none. */
export const INSERT_HISTORY = `INSERT INTO holdfast_history (id, at, type, owner, fence, resources, by, reason, lease_id, origin)
  VALUES (:id, :at, :type, :owner, :fence, :resources, :by, :reason, :leaseId, :origin)`;
/** Inputs: `maxId`, `limit`. Outputs: none. Deletes the oldest `limit` events with `id <= maxId` (a bounded slice). */
export const PRUNE_HISTORY = `DELETE FROM holdfast_history
  WHERE id IN (SELECT id FROM holdfast_history WHERE id <= :maxId ORDER BY id LIMIT :limit)`;

const HISTORY_COLUMNS = `h.id, h.at, h.type, h.owner, h.fence, h.resources, h.by, h.reason`;
const HISTORY_KEY = `(:key IS NULL OR EXISTS (SELECT 1 FROM json_each(h.resources) j WHERE j.value ->> 'key' = :key))`;
/** Inputs: `beforeId`, `key` (or null), `limit`. Outputs: history rows, newest first. */
export const HISTORY = `SELECT ${HISTORY_COLUMNS} FROM holdfast_history h
  WHERE h.id < :beforeId AND ${HISTORY_KEY} ORDER BY h.id DESC LIMIT :limit`;
/** Inputs: `owner`, `beforeId`, `key` (or null), `limit`. Outputs: history rows of `owner`, newest first. */
export const HISTORY_OF_OWNER = `SELECT ${HISTORY_COLUMNS} FROM holdfast_history h
  WHERE h.owner = :owner AND h.id < :beforeId AND ${HISTORY_KEY} ORDER BY h.id DESC LIMIT :limit`;

// ---- following other processes ---------------------------------------------------------------

/**
 * Inputs: none. Outputs: `value`, this connection's data version, which changes whenever another
 * connection (of this process or another) commits to the file, and never for its own commits.
 */
export const DATA_VERSION = `SELECT data_version AS value FROM pragma_data_version()`;
/** Inputs: none. Outputs: `value`, the id of the newest history event written so far (0: none). */
export const LAST_HISTORY_ID = `SELECT history_id AS value FROM holdfast_meta WHERE id = 1`;
/**
 * Inputs: `after`, `origin`, `limit`. Outputs: up to `limit` history rows with `id > after` that
 * another origin wrote, oldest first (`id`, `at`, `type`, `owner`, `fence`, `resources`), each
 * with `expires_at`: for an `acquired` event whose lease is still there, the lease's expiry, else null.
 */
export const HISTORY_OF_OTHERS = `SELECT h.id, h.at, h.type, h.owner, h.fence, h.resources, h.lease_id, l.expires_at
  FROM holdfast_history h LEFT JOIN holdfast_leases l ON h.type = 'acquired' AND l.id = h.lease_id
  WHERE h.id > :after AND h.origin IS NOT :origin ORDER BY h.id LIMIT :limit`;

/** Inputs: `prefix`. Outputs: held rows whose key starts with `prefix`. */
export const HELD_WITH_PREFIX = `${HELD} WHERE ${PREFIX}`;
/** Inputs: `prefix`. Outputs: waiting rows whose key starts with `prefix`, in queue and request order. */
export const WAITING_WITH_PREFIX = `${WAITING} WHERE ${PREFIX} ORDER BY w.seq, r.ord`;
