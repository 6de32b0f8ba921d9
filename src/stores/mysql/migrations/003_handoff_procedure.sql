-- holdfast MySQL/MariaDB store, migration 3: the hand-off of one key as one stored procedure.
--
-- A release whose key has waiters took the full path (transaction.ts): two batches, a snapshot
-- read and a write, and the shared algorithm deciding in between. hf_release_handoff does the
-- most common hand-off in one CALL: a lease on one key, released by its owner, whose first
-- related waiter is a live exclusive request for that same key and nothing else. It also ends a
-- lease with no related waiter at all (hf_release_one's case). Anything else (a lease on several
-- keys with waiters, a shared or multi-key first waiter, another holder or a lock-delay related
-- to the key, a due waiter or lease in the way) changes nothing and answers NULL, and the store
-- runs the full operation, which decides it the same way.
--
-- Why that waiter is the one the full algorithm grants: it promotes, in queue order, the waiters
-- related to the freed key. The first of them has no earlier related waiter, and with no other
-- lease or lock-delay related to the key nothing blocks it; its new exclusive lease on the key
-- then blocks every later waiter related to it. Settling due rows elsewhere under the root is
-- left to the sweep (as in the lean paths).
--
-- Runs with the caller's privileges (SQL SECURITY INVOKER), locks the root row FOR UPDATE first
-- and reads the database clock after the lock, like migration 2's procedures. MariaDB 10.11 and
-- MySQL 8.0.

DELIMITER //

DROP PROCEDURE IF EXISTS hf_release_handoff //

--   Inputs:  p_id (the lease id), p_root (the root of its keys), p_origin (this store object's
--            origin, written into the change log row of a grant, so its own watcher skips it).
--   Outputs: one row: now, fence, owner, resources of the released lease (NULL fence: nothing
--            was changed, take the full path), and the lease granted to the waiter (NULL g_id:
--            none): g_id, g_fence, g_owner, g_request_id, g_resources, g_metadata, g_ttl_ms,
--            g_lock_delay_ms, g_expires_at.
CREATE PROCEDURE hf_release_handoff(IN p_id VARBINARY(64), IN p_root VARBINARY(512), IN p_origin VARBINARY(32))
  SQL SECURITY INVOKER
BEGIN
  DECLARE v_now BIGINT;
  DECLARE v_fence BIGINT DEFAULT NULL;
  DECLARE v_version BIGINT DEFAULT NULL;
  DECLARE v_key VARBINARY(512) DEFAULT NULL;
  DECLARE v_keys INT DEFAULT 0;
  DECLARE v_seq BIGINT DEFAULT NULL;
  DECLARE v_granted BIGINT DEFAULT NULL;
  DECLARE v_ok TINYINT DEFAULT 1;
  START TRANSACTION;
  SELECT version INTO v_version FROM hf_roots WHERE root = p_root FOR UPDATE;
  SET v_now = CAST(ROUND(UNIX_TIMESTAMP(SYSDATE(6)) * 1000) AS SIGNED);
  SELECT fence INTO v_fence FROM hf_leases WHERE id = p_id AND ended_at IS NULL AND expires_at > v_now;
  IF v_fence IS NOT NULL THEN
    SELECT COUNT(*), MIN(k) INTO v_keys, v_key FROM hf_lease_keys WHERE fence = v_fence;
    -- A key under another root (not locked here): the full path.
    IF EXISTS (SELECT 1 FROM hf_lease_keys WHERE fence = v_fence AND root <> p_root) THEN
      SET v_ok = 0;
    END IF;
  END IF;
  -- The first waiter related to one of its keys (related keys share their root).
  IF v_fence IS NOT NULL AND v_ok = 1 AND EXISTS (SELECT 1 FROM hf_waiter_keys WHERE root = p_root) THEN
    SELECT MIN(wk.seq) INTO v_seq FROM hf_lease_keys lk JOIN hf_waiter_keys wk ON wk.root = lk.root
      AND (wk.k = lk.k OR (wk.k > CONCAT(lk.k, '/') AND wk.k < CONCAT(lk.k, '0'))
           OR (lk.k > CONCAT(wk.k, '/') AND lk.k < CONCAT(wk.k, '0')))
      WHERE lk.fence = v_fence;
  END IF;
  IF v_seq IS NOT NULL THEN
    -- Handed over only when: the lease has one key; the waiter asks for exactly that key,
    -- exclusively, and is alive; no other lease (held, or expired and not yet ended) and no
    -- lock-delay relates to the key.
    IF v_keys <> 1
       OR (SELECT COUNT(*) FROM hf_waiter_keys WHERE seq = v_seq) <> 1
       OR NOT EXISTS (SELECT 1 FROM hf_waiter_keys WHERE seq = v_seq AND k = v_key)
       OR NOT EXISTS (SELECT 1 FROM hf_waiters WHERE seq = v_seq AND alive_until > v_now AND deadline > v_now
                        AND JSON_UNQUOTE(JSON_EXTRACT(resources, '$[0].mode')) = 'exclusive')
       OR EXISTS (SELECT 1 FROM hf_lease_keys WHERE root = p_root AND fence <> v_fence
                    AND (k = v_key OR (k > CONCAT(v_key, '/') AND k < CONCAT(v_key, '0'))
                         OR (v_key > CONCAT(k, '/') AND v_key < CONCAT(k, '0'))))
       OR EXISTS (SELECT 1 FROM hf_delays WHERE root = p_root
                    AND (k = v_key OR (k > CONCAT(v_key, '/') AND k < CONCAT(v_key, '0'))
                         OR (v_key > CONCAT(k, '/') AND v_key < CONCAT(k, '0')))) THEN
      SET v_ok = 0;
    END IF;
  END IF;
  IF v_fence IS NOT NULL AND v_ok = 1 THEN
    UPDATE hf_roots SET version = version + 1 WHERE root = p_root;
    UPDATE hf_leases SET ended_at = v_now, end_type = 'released', end_reason = 'release', ended_by = owner WHERE fence = v_fence;
    DELETE FROM hf_lease_keys WHERE fence = v_fence;
    IF v_seq IS NOT NULL THEN
      INSERT INTO hf_leases (id, owner, request_id, resources, metadata, ttl_ms, lock_delay_ms, acquired_at, expires_at)
        SELECT id, owner, request_id, resources, metadata, ttl_ms, lock_delay_ms, v_now, v_now + ttl_ms FROM hf_waiters WHERE seq = v_seq;
      SET v_granted = LAST_INSERT_ID();
      INSERT INTO hf_lease_keys (k, root, fence) VALUES (v_key, p_root, v_granted);
      -- For the other processes' watchers (sql.LOG_GRANT's row).
      INSERT INTO hf_changes (origin, at, ticket, fence, expires_at, owner, keys_json)
        SELECT p_origin, v_now, id, v_granted, expires_at, owner, JSON_ARRAY(CONVERT(v_key USING utf8mb4)) FROM hf_leases WHERE fence = v_granted;
      DELETE FROM hf_waiters WHERE seq = v_seq;
      DELETE FROM hf_waiter_keys WHERE seq = v_seq;
    END IF;
  ELSE
    SET v_fence = NULL;
  END IF;
  SELECT v_now AS now, l.fence, l.owner, l.resources,
      g.id AS g_id, g.fence AS g_fence, g.owner AS g_owner, g.request_id AS g_request_id, g.resources AS g_resources,
      g.metadata AS g_metadata, g.ttl_ms AS g_ttl_ms, g.lock_delay_ms AS g_lock_delay_ms, g.expires_at AS g_expires_at
    FROM (SELECT 1) one LEFT JOIN hf_leases l ON l.fence = v_fence LEFT JOIN hf_leases g ON g.fence = v_granted;
  COMMIT;
END //

DELIMITER ;
