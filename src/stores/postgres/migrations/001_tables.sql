-- holdfast PostgreSQL store, migration 1: the lock table.
--
-- Every object lives in the store's schema: the migration runner sets `search_path` to that
-- schema (transaction-local) before running this file, and every function is created with
-- `SET search_path FROM CURRENT`, so nothing here names the schema.
--
-- Times are integer milliseconds since the epoch by the database clock (`clock_timestamp()`).
-- Keys are `text COLLATE "C"`: they compare byte-wise, so the descendants of K are exactly the
-- keys in the open range (K || '/', K || '0'), '0' being the byte after '/'.
-- JSON columns hold the request's own values: `resources` is [{ key, mode, limit }] in request
-- order, `metadata` the caller's object.

-- The fence counter. A sequence never goes back (not across restarts, crashes or rollbacks; it
-- may skip values), so fences strictly increase across every grant the store ever makes.
CREATE SEQUENCE fence_seq AS bigint MINVALUE 1 NO CYCLE;
-- Queue order of waiters.
CREATE SEQUENCE waiter_seq AS bigint MINVALUE 1 NO CYCLE;

-- Live leases (and leases whose expiry has passed but that no operation has settled yet: every
-- query filters on `expires_at > now`). `roots` are the root segments of the keys, the advisory
-- lock names that guard the lease (see 002_core.sql).
CREATE TABLE leases (
  id            text   PRIMARY KEY,
  owner         text   NOT NULL,
  resources     jsonb  NOT NULL,
  roots         text[] NOT NULL,
  fence         bigint NOT NULL UNIQUE,
  acquired_at   bigint NOT NULL,
  expires_at    bigint NOT NULL,
  ttl_ms        bigint NOT NULL,
  request_id    text,
  metadata      jsonb  NOT NULL,
  lock_delay_ms bigint NOT NULL
);
CREATE INDEX leases_expires_at ON leases (expires_at);
CREATE INDEX leases_owner ON leases (owner, request_id);

-- One row per resource of a lease: the key index of conflict checks.
CREATE TABLE held (
  lease_id text    NOT NULL REFERENCES leases (id) ON DELETE CASCADE,
  idx      integer NOT NULL,
  key      text COLLATE "C" NOT NULL,
  mode     text    NOT NULL CHECK (mode IN ('exclusive', 'shared')),
  lim      integer,
  PRIMARY KEY (lease_id, idx)
);
CREATE INDEX held_key ON held (key);

-- Queued requests. `id` is the ticket (the lease id once granted), `seq` the queue order.
-- A waiter is due (dropped) at least(alive_until, deadline).
CREATE TABLE waiters (
  id            text   PRIMARY KEY,
  seq           bigint NOT NULL UNIQUE,
  owner         text   NOT NULL,
  resources     jsonb  NOT NULL,
  roots         text[] NOT NULL,
  ttl_ms        bigint NOT NULL,
  request_id    text,
  metadata      jsonb  NOT NULL,
  lock_delay_ms bigint NOT NULL,
  enqueued_at   bigint NOT NULL,
  deadline      bigint NOT NULL,
  alive_until   bigint NOT NULL,
  waiter_ttl_ms bigint NOT NULL
);
CREATE INDEX waiters_due ON waiters ((least(alive_until, deadline)));
CREATE INDEX waiters_owner ON waiters (owner, request_id);

CREATE TABLE waiting (
  waiter_id text    NOT NULL REFERENCES waiters (id) ON DELETE CASCADE,
  idx       integer NOT NULL,
  key       text COLLATE "C" NOT NULL,
  mode      text    NOT NULL CHECK (mode IN ('exclusive', 'shared')),
  lim       integer,
  PRIMARY KEY (waiter_id, idx)
);
CREATE INDEX waiting_key ON waiting (key);

-- Lock-delays: a key stays unavailable until `until` after a lease with lockDelayMs ended other
-- than by a normal release.
CREATE TABLE delays (
  id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  key      text COLLATE "C" NOT NULL,
  root     text   NOT NULL,
  until    bigint NOT NULL,
  owner    text   NOT NULL,
  fence    bigint NOT NULL,
  since    bigint NOT NULL,
  metadata jsonb  NOT NULL
);
CREATE INDEX delays_key ON delays (key);
CREATE INDEX delays_until ON delays (until);

-- Past lease events, newest = highest id. `lease_id` is never shown (it is a capability); it
-- tells an ended lease (renew: LEASE_LOST) from an unknown id (NOT_FOUND).
CREATE TABLE history (
  id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  at        bigint NOT NULL,
  type      text   NOT NULL CHECK (type IN ('acquired', 'released', 'expired', 'forced')),
  owner     text   NOT NULL,
  fence     bigint NOT NULL,
  resources jsonb  NOT NULL,
  by        text,
  reason    text,
  lease_id  text   NOT NULL
);
CREATE INDEX history_lease ON history (lease_id);
CREATE INDEX history_owner ON history (owner, id);
CREATE INDEX history_resources ON history USING gin (resources jsonb_path_ops);
