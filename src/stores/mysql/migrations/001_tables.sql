-- holdfast MySQL/MariaDB store, migration 1: the tables. MariaDB 10.11 and MySQL 8.0 both run it.
--
-- One row per lease (hf_leases): the row is the live lease while `ended_at` is NULL and its
-- history afterwards (acquired at `acquired_at`, ended at `ended_at`, how: `end_type` and
-- `end_reason`, by whom: `ended_by`). The fence is the row's AUTO_INCREMENT primary key, which
-- InnoDB keeps across restarts (the newest row is never pruned either), so fences only increase.
-- hf_lease_keys holds one row per key of a live lease (deleted when the lease ends), indexed by
-- key (the one-round-trip paths ask "is anything related to these keys held?") and by the key's
-- root segment (every operation locks the roots of its keys, hf_roots rows FOR UPDATE in sorted
-- order, and reads what lies under them).
-- Keys, owners and ids are VARBINARY: byte-wise comparison, no padding, no case folding.
-- Times are integer milliseconds since the epoch by the database clock (SYSDATE(6), UTC).

-- `version` counts the writes under a root: an operation that read without locks commits only
-- if the versions it read are unchanged (transaction.ts).
CREATE TABLE hf_roots (
  root    VARBINARY(512) NOT NULL,
  version BIGINT NOT NULL DEFAULT 0,
  PRIMARY KEY (root)
) ENGINE=InnoDB;

CREATE TABLE hf_leases (
  fence         BIGINT NOT NULL AUTO_INCREMENT,
  id            VARBINARY(64) NOT NULL,
  owner         VARBINARY(256) NOT NULL,
  request_id    VARBINARY(256) NULL,
  resources     MEDIUMTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
  metadata      MEDIUMTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
  ttl_ms        BIGINT NOT NULL,
  lock_delay_ms BIGINT NOT NULL,
  acquired_at   BIGINT NOT NULL,
  expires_at    BIGINT NOT NULL,
  ended_at      BIGINT NULL,
  end_type      VARCHAR(16) CHARACTER SET ascii NULL,
  end_reason    VARCHAR(32) CHARACTER SET ascii NULL,
  ended_by      VARBINARY(256) NULL,
  PRIMARY KEY (fence),
  UNIQUE KEY hf_leases_id (id),
  KEY hf_leases_live (ended_at, expires_at),
  KEY hf_leases_owner (owner, ended_at),
  KEY hf_leases_request (owner, request_id)
) ENGINE=InnoDB;

CREATE TABLE hf_lease_keys (
  k     VARBINARY(512) NOT NULL,
  fence BIGINT NOT NULL,
  root  VARBINARY(512) NOT NULL,
  PRIMARY KEY (k, fence),
  KEY hf_lease_keys_root (root, fence),
  KEY hf_lease_keys_fence (fence)
) ENGINE=InnoDB;

-- Queued requests; `seq` (AUTO_INCREMENT) is the queue order across the whole store.
CREATE TABLE hf_waiters (
  seq           BIGINT NOT NULL AUTO_INCREMENT,
  id            VARBINARY(64) NOT NULL,
  owner         VARBINARY(256) NOT NULL,
  request_id    VARBINARY(256) NULL,
  resources     MEDIUMTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
  metadata      MEDIUMTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
  ttl_ms        BIGINT NOT NULL,
  lock_delay_ms BIGINT NOT NULL,
  enqueued_at   BIGINT NOT NULL,
  deadline      BIGINT NOT NULL,
  alive_until   BIGINT NOT NULL,
  waiter_ttl_ms BIGINT NOT NULL,
  PRIMARY KEY (seq),
  UNIQUE KEY hf_waiters_id (id),
  KEY hf_waiters_request (owner, request_id),
  KEY hf_waiters_deadline (deadline),
  KEY hf_waiters_alive (alive_until)
) ENGINE=InnoDB;

CREATE TABLE hf_waiter_keys (
  k    VARBINARY(512) NOT NULL,
  seq  BIGINT NOT NULL,
  root VARBINARY(512) NOT NULL,
  PRIMARY KEY (k, seq),
  KEY hf_waiter_keys_root (root, seq),
  KEY hf_waiter_keys_seq (seq)
) ENGINE=InnoDB;

-- Lock-delays left on keys by leases that ended other than by a normal release.
CREATE TABLE hf_delays (
  root     VARBINARY(512) NOT NULL,
  k        VARBINARY(512) NOT NULL,
  fence    BIGINT NOT NULL,
  until_at BIGINT NOT NULL,
  since_at BIGINT NOT NULL,
  owner    VARBINARY(256) NOT NULL,
  metadata MEDIUMTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
  PRIMARY KEY (root, k, fence),
  KEY hf_delays_key (k),
  KEY hf_delays_until (until_at)
) ENGINE=InnoDB;

-- The change log other processes' watchers read: one row per grant of a queued ticket.
-- `origin` tells a process its own grants (published from its own answers) from others' ones.
CREATE TABLE hf_changes (
  id         BIGINT NOT NULL AUTO_INCREMENT,
  origin     VARBINARY(32) NOT NULL,
  at         BIGINT NOT NULL,
  ticket     VARBINARY(64) NOT NULL,
  fence      BIGINT NOT NULL,
  expires_at BIGINT NOT NULL,
  owner      VARBINARY(256) NOT NULL,
  keys_json  MEDIUMTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
  PRIMARY KEY (id),
  KEY hf_changes_at (at)
) ENGINE=InnoDB;
