-- holdfast MySQL/MariaDB store, migration 2: the one-key lean paths as stored procedures.
--
-- The lean paths (lean.ts) send one multi-statement batch per operation; each statement of it is
-- parsed, opened and answered on its own (nine statements for an acquire). These procedures do
-- the same work for the most common case, one key (acquire) and a lease under one key root
-- (release), as one CALL: the server keeps them parsed per connection, and IF replaces the
-- batch's statements that run conditionally on an earlier one. Semantics are those of the
-- batch: change nothing and answer NULL when anything is in the way, and the store then runs the
-- full operation (transaction.ts). They run with the caller's privileges (SQL SECURITY INVOKER),
-- so they keep working when whoever applied the migration is gone; applying it needs CREATE
-- ROUTINE and ALTER ROUTINE, calling them EXECUTE. Both lock their root row FOR UPDATE first and read the
-- database clock after the lock. Runs on MariaDB 10.11 and MySQL 8.0 (DELIMITER lines are read by
-- the migration runner and by the mysql client alike).

DELIMITER //

DROP PROCEDURE IF EXISTS hf_acquire_one //

-- Grants a one-key request when no lease, waiter or lock-delay row relates to the key (equal, an
-- ancestor, a descendant).
--   Inputs:  p_id, p_owner, p_key, p_root (the key's first segment), p_resources (the request's
--            resources as JSON), p_metadata (JSON), p_ttl_ms, p_lock_delay_ms, p_ensure (1: create
--            the root's row first, for a root this store object has not seen yet).
--   Outputs: one row: fence (NULL: nothing was changed, take the full path), now (ms, database clock).
CREATE PROCEDURE hf_acquire_one(
  IN p_id VARBINARY(64), IN p_owner VARBINARY(256), IN p_key VARBINARY(512), IN p_root VARBINARY(512),
  IN p_resources MEDIUMTEXT CHARACTER SET utf8mb4, IN p_metadata MEDIUMTEXT CHARACTER SET utf8mb4,
  IN p_ttl_ms BIGINT, IN p_lock_delay_ms BIGINT, IN p_ensure TINYINT)
  SQL SECURITY INVOKER
BEGIN
  DECLARE v_now BIGINT;
  DECLARE v_fence BIGINT DEFAULT NULL;
  DECLARE v_version BIGINT DEFAULT NULL;
  DECLARE v_free TINYINT DEFAULT 1;
  DECLARE v_depth INT;
  DECLARE v_i INT DEFAULT 1;
  DECLARE v_ancestor VARBINARY(512);
  IF p_ensure = 1 THEN
    INSERT IGNORE INTO hf_roots (root) VALUES (p_root);
  END IF;
  START TRANSACTION;
  SELECT version INTO v_version FROM hf_roots WHERE root = p_root FOR UPDATE;
  SET v_now = CAST(ROUND(UNIX_TIMESTAMP(SYSDATE(6)) * 1000) AS SIGNED);
  -- The key itself and its descendants ('0' follows '/' in byte order).
  IF v_version IS NULL
     OR EXISTS (SELECT 1 FROM hf_lease_keys WHERE k = p_key OR (k > CONCAT(p_key, '/') AND k < CONCAT(p_key, '0')))
     OR EXISTS (SELECT 1 FROM hf_waiter_keys WHERE k = p_key OR (k > CONCAT(p_key, '/') AND k < CONCAT(p_key, '0')))
     OR EXISTS (SELECT 1 FROM hf_delays WHERE k = p_key OR (k > CONCAT(p_key, '/') AND k < CONCAT(p_key, '0'))) THEN
    SET v_free = 0;
  END IF;
  -- Its ancestors: every prefix ending before a '/'.
  SET v_depth = LENGTH(p_key) - LENGTH(REPLACE(p_key, '/', ''));
  WHILE v_free = 1 AND v_i <= v_depth DO
    SET v_ancestor = SUBSTRING_INDEX(p_key, '/', v_i);
    IF EXISTS (SELECT 1 FROM hf_lease_keys WHERE k = v_ancestor)
       OR EXISTS (SELECT 1 FROM hf_waiter_keys WHERE k = v_ancestor)
       OR EXISTS (SELECT 1 FROM hf_delays WHERE k = v_ancestor) THEN
      SET v_free = 0;
    END IF;
    SET v_i = v_i + 1;
  END WHILE;
  IF v_free = 1 THEN
    INSERT INTO hf_leases (id, owner, request_id, resources, metadata, ttl_ms, lock_delay_ms, acquired_at, expires_at)
      VALUES (p_id, p_owner, NULL, p_resources, p_metadata, p_ttl_ms, p_lock_delay_ms, v_now, v_now + p_ttl_ms);
    SET v_fence = LAST_INSERT_ID();
    UPDATE hf_roots SET version = version + 1 WHERE root = p_root;
    INSERT INTO hf_lease_keys (k, root, fence) VALUES (p_key, p_root, v_fence);
  END IF;
  COMMIT;
  SELECT v_fence AS fence, v_now AS now;
END //

DROP PROCEDURE IF EXISTS hf_release_one //

-- Ends a live, unexpired lease whose keys all lie under one root, none of them with a related
-- waiter (a waiter would be handed the keys: the full path does that).
--   Inputs:  p_id (the lease id), p_root (the root of its keys).
--   Outputs: one row: now, fence, owner, resources (NULL fence: nothing was changed, take the
--            full path). No next due time: a release makes nothing due sooner, and reading it
--            (four MIN()s over indexes full of the churn's delete-marked entries) cost a third of
--            the pair's server CPU.
CREATE PROCEDURE hf_release_one(IN p_id VARBINARY(64), IN p_root VARBINARY(512))
  SQL SECURITY INVOKER
BEGIN
  DECLARE v_now BIGINT;
  DECLARE v_fence BIGINT DEFAULT NULL;
  DECLARE v_version BIGINT DEFAULT NULL;
  START TRANSACTION;
  SELECT version INTO v_version FROM hf_roots WHERE root = p_root FOR UPDATE;
  SET v_now = CAST(ROUND(UNIX_TIMESTAMP(SYSDATE(6)) * 1000) AS SIGNED);
  SELECT fence INTO v_fence FROM hf_leases WHERE id = p_id AND ended_at IS NULL AND expires_at > v_now;
  -- A key under another root (not locked here): the full path.
  IF v_fence IS NOT NULL AND EXISTS (SELECT 1 FROM hf_lease_keys WHERE fence = v_fence AND root <> p_root) THEN
    SET v_fence = NULL;
  END IF;
  -- A waiter related to one of its keys (related keys share their root, so only when the root has
  -- waiters at all is the pairwise check run).
  IF v_fence IS NOT NULL AND EXISTS (SELECT 1 FROM hf_waiter_keys WHERE root = p_root)
     AND EXISTS (SELECT 1 FROM hf_lease_keys lk JOIN hf_waiter_keys wk ON wk.root = lk.root
       AND (wk.k = lk.k OR (wk.k > CONCAT(lk.k, '/') AND wk.k < CONCAT(lk.k, '0'))
            OR (lk.k > CONCAT(wk.k, '/') AND lk.k < CONCAT(wk.k, '0')))
       WHERE lk.fence = v_fence) THEN
    SET v_fence = NULL;
  END IF;
  IF v_fence IS NOT NULL THEN
    UPDATE hf_roots SET version = version + 1 WHERE root = p_root;
    UPDATE hf_leases SET ended_at = v_now, end_type = 'released', end_reason = 'release', ended_by = owner WHERE fence = v_fence;
    DELETE FROM hf_lease_keys WHERE fence = v_fence;
  END IF;
  SELECT v_now AS now, l.fence, l.owner, l.resources FROM (SELECT 1) one LEFT JOIN hf_leases l ON l.fence = v_fence;
  COMMIT;
END //

DELIMITER ;
