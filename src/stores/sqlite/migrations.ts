/**
 * The schema of the `sqlite:` store as numbered migrations. Only static DDL lives here (no values);
 * `store.ts` applies the migrations above the file's recorded version inside one
 * `BEGIN IMMEDIATE` transaction, so processes that open a brand-new file at the same time apply
 * each migration exactly once, and records each applied version in `holdfast_migrations`.
 *
 * Rules for future migrations: never edit a released one; append a new version instead.
 *
 * Keys are `TEXT COLLATE BINARY` in a UTF-8 database, so they compare byte-wise (memcmp): the
 * descendants of K are exactly the keys in the open range (K || '/', K || '0'), '0' being the byte
 * after '/', for any UTF-8 content. Times are integer milliseconds since the epoch by the SQLite
 * clock. JSON columns hold what `JSON.stringify` wrote.
 */

export interface Migration {
  version: number;
  name: string;
  statements: readonly string[];
}

/** Created before any migration runs (idempotent). Inputs: none. Outputs: none. */
export const CREATE_MIGRATIONS_TABLE = `
CREATE TABLE IF NOT EXISTS holdfast_migrations (
  version    INTEGER PRIMARY KEY,
  name       TEXT    NOT NULL,
  applied_at INTEGER NOT NULL
) STRICT`;

/** Inputs: none. Outputs: `version`, the highest applied migration (null on a new file). */
export const CURRENT_VERSION = `SELECT max(version) AS version FROM holdfast_migrations`;

/** Inputs: `version`, `name`. Outputs: none. Times by the SQLite clock. */
export const RECORD_MIGRATION = `
INSERT INTO holdfast_migrations (version, name, applied_at)
VALUES (:version, :name, CAST(round(unixepoch('subsec') * 1000) AS INTEGER))`;

export const MIGRATIONS: readonly Migration[] = Object.freeze([
  {
    version: 1,
    name: 'lock table',
    statements: [
      // One row: the counters. `fence` must never go backwards (fencing across restarts).
      `CREATE TABLE holdfast_meta (
        id         INTEGER PRIMARY KEY CHECK (id = 1),
        fence      INTEGER NOT NULL,
        seq        INTEGER NOT NULL,
        history_id INTEGER NOT NULL
      ) STRICT`,
      `INSERT INTO holdfast_meta (id, fence, seq, history_id) VALUES (1, 0, 0, 0)`,

      // Live (or expired but not yet settled) leases. `resources` keeps the request's order;
      // holdfast_lease_resources is the key index derived from it.
      `CREATE TABLE holdfast_leases (
        id            TEXT    PRIMARY KEY,
        owner         TEXT    NOT NULL,
        request_id    TEXT,
        fence         INTEGER NOT NULL UNIQUE,
        acquired_at   INTEGER NOT NULL,
        expires_at    INTEGER NOT NULL,
        ttl_ms        INTEGER NOT NULL,
        resources     TEXT    NOT NULL CHECK (json_valid(resources)),
        metadata      TEXT    NOT NULL CHECK (json_valid(metadata)),
        lock_delay_ms INTEGER NOT NULL
      ) STRICT`,
      `CREATE INDEX holdfast_leases_expires_at ON holdfast_leases (expires_at)`,
      `CREATE INDEX holdfast_leases_owner ON holdfast_leases (owner)`,
      `CREATE UNIQUE INDEX holdfast_leases_request ON holdfast_leases (owner, request_id) WHERE request_id IS NOT NULL`,
      `CREATE TABLE holdfast_lease_resources (
        lease_id TEXT    NOT NULL REFERENCES holdfast_leases (id) ON DELETE CASCADE,
        ord      INTEGER NOT NULL,
        key      TEXT    NOT NULL COLLATE BINARY,
        mode     TEXT    NOT NULL CHECK (mode IN ('exclusive', 'shared')),
        lim      INTEGER,
        PRIMARY KEY (lease_id, ord)
      ) STRICT, WITHOUT ROWID`,
      `CREATE INDEX holdfast_lease_resources_key ON holdfast_lease_resources (key COLLATE BINARY)`,

      // Queued requests. `id` is the ticket (the lease id once granted); `seq` is queue order.
      `CREATE TABLE holdfast_waiters (
        id            TEXT    PRIMARY KEY,
        seq           INTEGER NOT NULL UNIQUE,
        owner         TEXT    NOT NULL,
        request_id    TEXT,
        resources     TEXT    NOT NULL CHECK (json_valid(resources)),
        ttl_ms        INTEGER NOT NULL,
        metadata      TEXT    NOT NULL CHECK (json_valid(metadata)),
        lock_delay_ms INTEGER NOT NULL,
        enqueued_at   INTEGER NOT NULL,
        deadline      INTEGER NOT NULL,
        alive_until   INTEGER NOT NULL,
        waiter_ttl_ms INTEGER NOT NULL
      ) STRICT`,
      `CREATE INDEX holdfast_waiters_due ON holdfast_waiters (min(alive_until, deadline))`,
      `CREATE UNIQUE INDEX holdfast_waiters_request ON holdfast_waiters (owner, request_id) WHERE request_id IS NOT NULL`,
      `CREATE TABLE holdfast_waiter_resources (
        waiter_id TEXT    NOT NULL REFERENCES holdfast_waiters (id) ON DELETE CASCADE,
        ord       INTEGER NOT NULL,
        key       TEXT    NOT NULL COLLATE BINARY,
        mode      TEXT    NOT NULL CHECK (mode IN ('exclusive', 'shared')),
        lim       INTEGER,
        PRIMARY KEY (waiter_id, ord)
      ) STRICT, WITHOUT ROWID`,
      `CREATE INDEX holdfast_waiter_resources_key ON holdfast_waiter_resources (key COLLATE BINARY)`,

      // Lock-delays left by leases that ended other than by a normal release.
      `CREATE TABLE holdfast_delays (
        id       INTEGER PRIMARY KEY,
        key      TEXT    NOT NULL COLLATE BINARY,
        until    INTEGER NOT NULL,
        owner    TEXT    NOT NULL,
        fence    INTEGER NOT NULL,
        since    INTEGER NOT NULL,
        metadata TEXT    NOT NULL CHECK (json_valid(metadata))
      ) STRICT`,
      `CREATE INDEX holdfast_delays_key ON holdfast_delays (key COLLATE BINARY)`,
      `CREATE INDEX holdfast_delays_until ON holdfast_delays (until)`,

      // Past lease events, newest kept. `lease_id` (never shown) answers "did this lease end?".
      `CREATE TABLE holdfast_history (
        id        INTEGER PRIMARY KEY,
        at        INTEGER NOT NULL,
        type      TEXT    NOT NULL CHECK (type IN ('acquired', 'released', 'expired', 'forced')),
        owner     TEXT    NOT NULL,
        fence     INTEGER NOT NULL,
        resources TEXT    NOT NULL CHECK (json_valid(resources)),
        by        TEXT,
        reason    TEXT,
        lease_id  TEXT    NOT NULL
      ) STRICT`,
      `CREATE INDEX holdfast_history_lease ON holdfast_history (lease_id)`,
      `CREATE INDEX holdfast_history_owner ON holdfast_history (owner, id)`,
    ],
  },
  {
    version: 2,
    name: 'history origin',
    statements: [
      // Which process wrote the event (a random token per process; NULL before this version), so
      // that a process following the file for other processes' grants can skip its own events.
      `ALTER TABLE holdfast_history ADD COLUMN origin TEXT`,
    ],
  },
  {
    version: 3,
    name: 'one row per lease',
    statements: [
      // A lease's row is also its history: `event` is the id of its `acquired` event (the table's
      // rowid, so the history in order costs no index), `ended_event` and the `ended_*`/`end_*`
      // columns record its end (NULL while it is live). The first resource is on the row itself;
      // the others of a lease with several are in holdfast_lease_keys while it is live. Indexes
      // only where a query needs one: by id, the live leases by key and by expiry, live request
      // ids, and end events in order. Trimmed oldest end first (`historyLimit`).
      `CREATE TABLE holdfast_lease_rows (
        event         INTEGER PRIMARY KEY,
        id            TEXT    NOT NULL,
        owner         TEXT    NOT NULL,
        request_id    TEXT,
        fence         INTEGER NOT NULL,
        acquired_at   INTEGER NOT NULL,
        expires_at    INTEGER NOT NULL,
        ttl_ms        INTEGER NOT NULL,
        key           TEXT    NOT NULL COLLATE BINARY,
        mode          TEXT    NOT NULL CHECK (mode IN ('exclusive', 'shared')),
        lim           INTEGER,
        resources     TEXT    NOT NULL CHECK (json_valid(resources)),
        metadata      TEXT    NOT NULL CHECK (json_valid(metadata)),
        lock_delay_ms INTEGER NOT NULL,
        origin        TEXT,
        ended_event   INTEGER,
        ended_at      INTEGER,
        end_type      TEXT    CHECK (end_type IN ('released', 'expired', 'forced')),
        ended_by      TEXT,
        end_reason    TEXT,
        ended_origin  TEXT
      ) STRICT`,
      // Live leases keep the id of their acquired event; one whose event was pruned gets a new id.
      `INSERT INTO holdfast_lease_rows
        (event, id, owner, request_id, fence, acquired_at, expires_at, ttl_ms, key, mode, lim, resources, metadata, lock_delay_ms, origin)
        SELECT coalesce(a.id, m.history_id + row_number() OVER (PARTITION BY a.id IS NULL ORDER BY l.fence)), l.id, l.owner, l.request_id, l.fence,
          l.acquired_at, l.expires_at, l.ttl_ms, l.resources ->> '$[0].key', l.resources ->> '$[0].mode',
          l.resources ->> '$[0].limit', l.resources, l.metadata, l.lock_delay_ms, a.origin
        FROM holdfast_leases l CROSS JOIN holdfast_meta m
        LEFT JOIN holdfast_history a ON a.lease_id = l.id AND a.type = 'acquired'`,
      // Ended leases with both events still kept (an end whose acquired event was pruned goes:
      // it was at the old edge of the kept window).
      `INSERT INTO holdfast_lease_rows
        (event, id, owner, request_id, fence, acquired_at, expires_at, ttl_ms, key, mode, lim, resources, metadata, lock_delay_ms,
         origin, ended_event, ended_at, end_type, ended_by, end_reason, ended_origin)
        SELECT a.id, a.lease_id, a.owner, NULL, a.fence, a.at, e.at, 0, a.resources ->> '$[0].key', a.resources ->> '$[0].mode',
          a.resources ->> '$[0].limit', a.resources, '{}', 0, a.origin, e.id, e.at, e.type, e.by, e.reason, e.origin
        FROM holdfast_history a JOIN holdfast_history e ON e.lease_id = a.lease_id AND e.type <> 'acquired'
        WHERE a.type = 'acquired'`,
      `UPDATE holdfast_meta SET history_id = max(history_id, coalesce((SELECT max(event) FROM holdfast_lease_rows), 0)) WHERE id = 1`,
      `CREATE TABLE holdfast_lease_keys (
        lease_event INTEGER NOT NULL,
        ord         INTEGER NOT NULL,
        key         TEXT    NOT NULL COLLATE BINARY,
        mode        TEXT    NOT NULL CHECK (mode IN ('exclusive', 'shared')),
        lim         INTEGER,
        PRIMARY KEY (lease_event, ord)
      ) STRICT, WITHOUT ROWID`,
      `INSERT INTO holdfast_lease_keys (lease_event, ord, key, mode, lim)
        SELECT r.event, j.key, j.value ->> 'key', j.value ->> 'mode', j.value ->> 'limit'
        FROM holdfast_lease_rows r, json_each(r.resources) j WHERE r.ended_event IS NULL AND j.key > 0`,
      `DROP TABLE holdfast_lease_resources`,
      `DROP TABLE holdfast_leases`,
      `DROP TABLE holdfast_history`,
      `ALTER TABLE holdfast_lease_rows RENAME TO holdfast_leases`,
      `CREATE UNIQUE INDEX holdfast_leases_id ON holdfast_leases (id)`,
      `CREATE INDEX holdfast_leases_live_key ON holdfast_leases (key COLLATE BINARY) WHERE ended_event IS NULL`,
      `CREATE INDEX holdfast_leases_live_expiry ON holdfast_leases (expires_at) WHERE ended_event IS NULL`,
      `CREATE UNIQUE INDEX holdfast_leases_live_request ON holdfast_leases (owner, request_id)
        WHERE request_id IS NOT NULL AND ended_event IS NULL`,
      `CREATE INDEX holdfast_leases_ended ON holdfast_leases (ended_event) WHERE ended_event IS NOT NULL`,
      `CREATE INDEX holdfast_lease_keys_key ON holdfast_lease_keys (key COLLATE BINARY)`,
    ],
  },
  {
    version: 4,
    name: 'counters read from the rows',
    statements: [
      // The next fence and history id are read from the lease rows (sql.ts), so a commit writes
      // no counter page; `fence` and `history_id` of holdfast_meta stay as floors (every row
      // written before has values at or below them). A process of an older holdfast that still
      // has the file open would go on counting from those floors and hand out a fence again: the
      // trigger fails its writes instead (its call fails with STORE_UNAVAILABLE, nothing granted).
      `CREATE TRIGGER holdfast_meta_counters_frozen BEFORE UPDATE OF fence, history_id ON holdfast_meta
        BEGIN SELECT RAISE(ABORT, 'holdfast: this file is in layout 4 (fences read from the rows): a process of an older holdfast may not write it'); END`,
    ],
  },
]);

/** The schema version this code writes. A file with a higher version was written by a newer holdfast. */
export const LATEST_VERSION = MIGRATIONS[MIGRATIONS.length - 1]!.version;
