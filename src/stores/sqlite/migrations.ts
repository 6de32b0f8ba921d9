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
]);

/** The schema version this code writes. A file with a higher version was written by a newer holdfast. */
export const LATEST_VERSION = MIGRATIONS[MIGRATIONS.length - 1]!.version;
