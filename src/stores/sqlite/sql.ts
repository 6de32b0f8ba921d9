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
/** Live leases by their first resource (on the row) and by their others (holdfast_lease_keys). */
const HELD_FIRST = `SELECT l.key AS r_key, l.mode AS r_mode, l.lim AS r_lim, ${LEASE} FROM holdfast_leases l WHERE l.ended_event IS NULL AND`;
const HELD_OTHERS = `SELECT r.key AS r_key, r.mode AS r_mode, r.lim AS r_lim, ${LEASE}
  FROM holdfast_lease_keys r JOIN holdfast_leases l ON l.event = r.lease_event WHERE`;
const WAITING = `SELECT r.key AS r_key, r.mode AS r_mode, r.lim AS r_lim, ${WAITER} FROM holdfast_waiter_resources r JOIN holdfast_waiters w ON w.id = r.waiter_id`;
const DESCENDANTS = `r.key > :key || '/' AND r.key < :key || '0'`;
const PREFIX = `r.key >= :prefix AND substr(r.key, 1, length(:prefix)) = :prefix`;
const LIVE_DESCENDANTS = `l.key > :key || '/' AND l.key < :key || '0'`;
const LIVE_PREFIX = `l.key >= :prefix AND substr(l.key, 1, length(:prefix)) = :prefix`;

// ---- clock and counters ----------------------------------------------------------------------

/** Inputs: none. Outputs: `now`, the SQLite clock in integer ms since the epoch. */
export const NOW = `SELECT CAST(round(unixepoch('subsec') * 1000) AS INTEGER) AS now`;
// The fence and the history id are read from the rows, not kept in a counter (layout 4): a commit
// then writes no counter page. The newest lease row (highest `event`) has the highest fence,
// since a lease gets its fence and its row in the same step; `holdfast_meta.fence` and
// `.history_id` are floors from before layout 4 (frozen by a trigger, see migrations.ts). The
// trim never deletes the newest lease row nor a row holding the newest id (`PRUNE_HISTORY`).
const NEWEST_FENCE = `max((SELECT fence FROM holdfast_meta WHERE id = 1),
  coalesce((SELECT fence FROM holdfast_leases ORDER BY event DESC LIMIT 1), 0))`;
const NEWEST_HISTORY_ID = `max((SELECT history_id FROM holdfast_meta WHERE id = 1),
  coalesce((SELECT max(event) FROM holdfast_leases), 0),
  coalesce((SELECT max(ended_event) FROM holdfast_leases WHERE ended_event IS NOT NULL), 0))`;

/** Inputs: none. Outputs: `value`, the fence of the lease inserted next (one above the newest). */
export const NEXT_FENCE = `SELECT ${NEWEST_FENCE} + 1 AS value`;
/** Inputs: none. Outputs: `value`, the new queue sequence number. */
export const NEXT_SEQ = `UPDATE holdfast_meta SET seq = seq + 1 WHERE id = 1 RETURNING seq AS value`;
/** Inputs: none. Outputs: `value`, the id of the history event written next (one above the newest). */
export const NEXT_HISTORY_ID = `SELECT ${NEWEST_HISTORY_ID} + 1 AS value`;

// ---- leases ----------------------------------------------------------------------------------
// A lease row is live while `ended_event IS NULL`; every read of live leases says so, which is
// also what lets SQLite use the partial indexes of live leases.

/** Inputs: `id`. Outputs: the live lease row or none. */
export const LEASE_BY_ID = `SELECT ${LEASE} FROM holdfast_leases l WHERE l.id = :id AND l.ended_event IS NULL`;
/** Inputs: `owner`, `requestId`. Outputs: the live lease row or none. */
export const LEASE_BY_REQUEST = `SELECT ${LEASE} FROM holdfast_leases l
  WHERE l.owner = :owner AND l.request_id = :requestId AND l.request_id IS NOT NULL AND l.ended_event IS NULL`;
/** Inputs: `owner`. Outputs: live lease rows of `owner`, by fence (a walk over the live leases: an admin call). */
export const LEASES_OF_OWNER = `SELECT ${LEASE} FROM holdfast_leases l INDEXED BY holdfast_leases_live_expiry
  WHERE l.ended_event IS NULL AND l.owner = :owner ORDER BY l.fence`;
/** Inputs: `key`. Outputs: rows of the live leases holding exactly `key`, by fence. */
export const LEASES_ON_KEY = `SELECT ${LEASE} FROM holdfast_leases l WHERE l.ended_event IS NULL AND l.key = :key
  UNION SELECT ${LEASE} FROM holdfast_leases l
  WHERE l.ended_event IS NULL AND l.event IN (SELECT lease_event FROM holdfast_lease_keys WHERE key = :key) ORDER BY 4`;
/** Inputs: `key`, `keys` (JSON array of `key` and its ancestors). Outputs: held rows related to `key`. */
export const HELD_RELATED = `${HELD_FIRST} l.key IN (SELECT value FROM json_each(:keys))
  UNION ALL ${HELD_FIRST} ${LIVE_DESCENDANTS}
  UNION ALL ${HELD_OTHERS} r.key IN (SELECT value FROM json_each(:keys))
  UNION ALL ${HELD_OTHERS} ${DESCENDANTS}`;
/** Inputs: `now`. Outputs: rows of the live leases with `expires_at <= now`, earliest first. */
export const DUE_LEASES = `SELECT ${LEASE} FROM holdfast_leases l
  WHERE l.ended_event IS NULL AND l.expires_at <= :now ORDER BY l.expires_at, l.fence`;
/**
 * Inputs: the lease's columns, `event` (the id of its acquired event), `key`, `mode`, `lim` (its
 * first resource), `origin`. Outputs: none. The row is the lease and its `acquired` event.
 */
export const INSERT_LEASE = `INSERT INTO holdfast_leases
  (event, id, owner, request_id, fence, acquired_at, expires_at, ttl_ms, key, mode, lim, resources, metadata, lock_delay_ms, origin)
  VALUES (:event, :id, :owner, :requestId, :fence, :acquiredAt, :expiresAt, :ttlMs, :key, :mode, :lim, :resources, :metadata, :lockDelayMs, :origin)`;
/** Inputs: `event`, `resources` (JSON array of `{ key, mode, limit }`). Outputs: none. Indexes all but the first resource. */
export const INSERT_LEASE_KEYS = `INSERT INTO holdfast_lease_keys (lease_event, ord, key, mode, lim)
  SELECT :event, j.key, j.value ->> 'key', j.value ->> 'mode', j.value ->> 'limit' FROM json_each(:resources) j WHERE j.key > 0`;
/** Inputs: `id`, `expiresAt`, `ttlMs`. Outputs: none. */
export const SET_LEASE_EXPIRY = `UPDATE holdfast_leases SET expires_at = :expiresAt, ttl_ms = :ttlMs WHERE id = :id AND ended_event IS NULL`;
/** Inputs: `id`, `event` (the id of its end event), `at`, `type`, `by`, `reason`, `origin`. Outputs: none. Ends a live lease. */
export const END_LEASE = `UPDATE holdfast_leases
  SET ended_event = :event, ended_at = :at, end_type = :type, ended_by = :by, end_reason = :reason, ended_origin = :origin
  WHERE id = :id AND ended_event IS NULL`;
/** Inputs: `id`. Outputs: none. Drops the key rows of a lease with several resources (run as it ends). */
export const DELETE_LEASE_KEYS = `DELETE FROM holdfast_lease_keys WHERE lease_event = (SELECT event FROM holdfast_leases WHERE id = :id)`;
/** Inputs: `id`. Outputs: `ended` (1 when lease `id` has ended and its row is still kept, else 0). */
export const ENDED_LEASE = `SELECT EXISTS (SELECT 1 FROM holdfast_leases WHERE id = :id AND ended_event IS NOT NULL) AS ended`;

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
  SELECT min(expires_at) AS t FROM holdfast_leases WHERE ended_event IS NULL
  UNION ALL SELECT min(min(alive_until, deadline)) FROM holdfast_waiters
  UNION ALL SELECT min(until) FROM holdfast_delays)`;

/**
 * Inputs: `maxId`, `limit`. Outputs: none. Deletes up to `limit` rows of ended leases whose end
 * event has an id `<= maxId`, oldest end first (a bounded slice of the trim); never the newest
 * lease row, whose fence the next one follows (`maxId` is below the newest id, so the row holding
 * that id stays too).
 */
export const PRUNE_HISTORY = `DELETE FROM holdfast_leases WHERE event IN (SELECT event FROM holdfast_leases
  WHERE ended_event IS NOT NULL AND ended_event <= :maxId ORDER BY ended_event LIMIT :limit)
  AND event < (SELECT max(event) FROM holdfast_leases)`;

const HISTORY_KEY = `(:key IS NULL OR EXISTS (SELECT 1 FROM json_each(l.resources) j WHERE j.value ->> 'key' = :key))`;
const HISTORY_OWNER = `(:owner IS NULL OR l.owner = :owner)`;
/**
 * Inputs: `beforeId`, `owner` (or null), `key` (or null), `limit`. Outputs: history rows (`id`,
 * `at`, `type`, `owner`, `fence`, `resources`, `by`, `reason`), newest first: the acquired events
 * (one per lease row) and the end events (one per ended row) merged by id.
 */
export const HISTORY = `SELECT * FROM (SELECT l.event AS id, l.acquired_at AS at, 'acquired' AS type, l.owner, l.fence, l.resources,
    NULL AS by, NULL AS reason FROM holdfast_leases l
    WHERE l.event < :beforeId AND ${HISTORY_OWNER} AND ${HISTORY_KEY} ORDER BY l.event DESC LIMIT :limit)
  UNION ALL SELECT * FROM (SELECT l.ended_event, l.ended_at, l.end_type, l.owner, l.fence, l.resources, l.ended_by, l.end_reason
    FROM holdfast_leases l
    WHERE l.ended_event IS NOT NULL AND l.ended_event < :beforeId AND ${HISTORY_OWNER} AND ${HISTORY_KEY}
    ORDER BY l.ended_event DESC LIMIT :limit)
  ORDER BY id DESC LIMIT :limit`;

// ---- following other processes ---------------------------------------------------------------

/**
 * Inputs: none. Outputs: `value`, this connection's data version, which changes whenever another
 * connection (of this process or another) commits to the file, and never for its own commits.
 */
export const DATA_VERSION = `SELECT data_version AS value FROM pragma_data_version()`;
/** Inputs: none. Outputs: `value`, the id of the newest history event written so far (0: none). */
export const LAST_HISTORY_ID = `SELECT ${NEWEST_HISTORY_ID} AS value`;
/**
 * Inputs: `after`, `origin`, `limit`. Outputs: up to `limit` history events with `id > after`
 * that another origin wrote, oldest first (`id`, `at`, `type`, `owner`, `fence`, `resources`,
 * `lease_id`), each with `expires_at`: for an `acquired` event whose lease is still live, the
 * lease's expiry, else null.
 */
export const HISTORY_OF_OTHERS = `SELECT * FROM (SELECT l.event AS id, l.acquired_at AS at, 'acquired' AS type, l.owner, l.fence,
    l.resources, l.id AS lease_id, CASE WHEN l.ended_event IS NULL THEN l.expires_at END AS expires_at
    FROM holdfast_leases l WHERE l.event > :after AND l.origin IS NOT :origin ORDER BY l.event LIMIT :limit)
  UNION ALL SELECT * FROM (SELECT l.ended_event, l.ended_at, l.end_type, l.owner, l.fence, l.resources, l.id, NULL
    FROM holdfast_leases l WHERE l.ended_event IS NOT NULL AND l.ended_event > :after AND l.ended_origin IS NOT :origin
    ORDER BY l.ended_event LIMIT :limit)
  ORDER BY id LIMIT :limit`;

/** Inputs: `prefix`. Outputs: held rows whose key starts with `prefix`. */
export const HELD_WITH_PREFIX = `${HELD_FIRST} ${LIVE_PREFIX} UNION ALL ${HELD_OTHERS} ${PREFIX}`;
/** Inputs: `prefix`. Outputs: waiting rows whose key starts with `prefix`, in queue and request order. */
export const WAITING_WITH_PREFIX = `${WAITING} WHERE ${PREFIX} ORDER BY w.seq, r.ord`;
