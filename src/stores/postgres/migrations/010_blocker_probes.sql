-- holdfast PostgreSQL store, migration 10: blocker queries as index probes.
--
-- The related-key conditions of migrations 3 and 8 (`key = K OR key = ANY(ancestors) OR key in
-- (K || '/', K || '0')`) OR-ed together let the planner answer only by reading a whole index (or,
-- on tables nobody ANALYZEs, the whole table with every dead row). Here each is its own probe: the
-- key and its ancestors by equality, its descendants by range. Same inputs, outputs and meaning as
-- the functions they replace; only hf_blockers lists fewer rows (at most 20 queued blockers per
-- resource and kind, see below).

-- As in migration 8, with each related-key condition split into its index probes (the key and
-- its ancestors by equality, its descendants by range) instead of OR-ed into one, which the
-- planner can only answer by reading the whole index. Per resource, in order, stopping at the
-- first blocker: live conflicting leases and expired ones whose lock-delay still runs, a full
-- semaphore, recorded lock-delays, earlier live conflicting waiters.
CREATE OR REPLACE FUNCTION hf_is_blocked(p_resources jsonb, p_seq bigint, p_self text, p_now bigint) RETURNS boolean
LANGUAGE plpgsql SET jit = off SET enable_seqscan = off AS $$
DECLARE
  v_seq bigint := coalesce(p_seq, 9223372036854775807);
  r record;
BEGIN
  FOR r IN SELECT (e->>'key') COLLATE "C" AS key, e->>'mode' = 'shared' AS shared, (e->>'limit')::integer AS lim,
                  (hf_ancestors(e->>'key') || (e->>'key')) COLLATE "C" AS keys,
                  ((e->>'key') || '/') COLLATE "C" AS lo, ((e->>'key') || '0') COLLATE "C" AS hi
           FROM jsonb_array_elements(p_resources) e LOOP
    IF EXISTS (SELECT 1 FROM held h JOIN leases l ON l.id = h.lease_id
               WHERE h.key = ANY (r.keys) AND l.id <> p_self
                 AND ((l.expires_at > p_now AND NOT (r.shared AND h.mode = 'shared'))
                      OR (l.expires_at <= p_now AND l.lock_delay_ms > 0 AND l.expires_at + l.lock_delay_ms > p_now)))
       OR EXISTS (SELECT 1 FROM held h JOIN leases l ON l.id = h.lease_id
                  WHERE h.key > r.lo AND h.key < r.hi AND l.id <> p_self
                    AND ((l.expires_at > p_now AND NOT (r.shared AND h.mode = 'shared'))
                         OR (l.expires_at <= p_now AND l.lock_delay_ms > 0 AND l.expires_at + l.lock_delay_ms > p_now)))
       OR (r.lim IS NOT NULL AND
           (SELECT count(*) FROM held h JOIN leases l ON l.id = h.lease_id
            WHERE h.key = r.key AND h.mode = 'shared' AND l.expires_at > p_now AND l.id <> p_self)
         + (SELECT count(*) FROM waiting w JOIN waiters q ON q.id = w.waiter_id
            WHERE w.key = r.key AND w.mode = 'shared' AND q.seq < v_seq AND q.id <> p_self
              AND q.alive_until > p_now AND q.deadline > p_now) >= r.lim)
       OR EXISTS (SELECT 1 FROM delays d WHERE d.key = ANY (r.keys) AND d.until > p_now)
       OR EXISTS (SELECT 1 FROM delays d WHERE d.key > r.lo AND d.key < r.hi AND d.until > p_now)
       OR EXISTS (SELECT 1 FROM waiting w JOIN waiters q ON q.id = w.waiter_id
                  WHERE w.key = ANY (r.keys) AND q.seq < v_seq AND q.id <> p_self AND q.alive_until > p_now
                    AND q.deadline > p_now AND NOT (r.shared AND w.mode = 'shared'))
       OR EXISTS (SELECT 1 FROM waiting w JOIN waiters q ON q.id = w.waiter_id
                  WHERE w.key > r.lo AND w.key < r.hi AND q.seq < v_seq AND q.id <> p_self AND q.alive_until > p_now
                    AND q.deadline > p_now AND NOT (r.shared AND w.mode = 'shared')) THEN
      RETURN true;
    END IF;
  END LOOP;
  RETURN false;
END $$;

-- As in migration 3, with each related-key condition split into its index probes (see
-- hf_is_blocked above), and at most the first 20 queued blockers listed per resource and kind
-- (QUEUED_LISTED in src/stores/table/blockers.ts; held blockers and lock-delays in full): what a
-- queued or busy answer, or a waiter's heartbeat, costs no longer grows with the queue (the hints
-- come from the blockers listed). No JIT, as for hf_is_blocked.
CREATE OR REPLACE FUNCTION hf_blockers(p_resources jsonb, p_seq bigint, p_self text, p_now bigint, p_any boolean)
RETURNS jsonb LANGUAGE plpgsql SET jit = off AS $$
DECLARE
  r record;
  v_new boolean := p_seq IS NULL;
  v_seq bigint := coalesce(p_seq, 9223372036854775807);
  v_take bigint := CASE WHEN p_any THEN 1 END; -- LIMIT NULL is no limit
  v_key text COLLATE "C";
  v_lo text COLLATE "C";
  v_hi text COLLATE "C";
  v_keys text[] COLLATE "C";  -- the key and its ancestors
  v_shared boolean;
  v_holders jsonb := '[]';
  v_rows jsonb;
  v_last bigint;
  v_first bigint;
  v_max bigint;
  v_min bigint;
  v_limit integer;
  v_count bigint;
BEGIN
  FOR r IN SELECT e->>'key' AS key, e->>'mode' AS mode, (e->>'limit')::integer AS lim, (o - 1)::integer AS idx
           FROM jsonb_array_elements(p_resources) WITH ORDINALITY t(e, o) ORDER BY o LOOP
    v_key := r.key;
    v_lo := v_key || '/';
    v_hi := v_key || '0';
    v_keys := hf_ancestors(v_key) || v_key;
    v_shared := r.mode = 'shared';

    -- Every holder of a key must agree on its limit.
    IF v_new AND v_shared THEN
      SELECT h.lim INTO v_limit FROM held h JOIN leases l ON l.id = h.lease_id
      WHERE h.key = v_key AND h.mode = 'shared' AND l.expires_at > p_now AND l.id <> p_self
        AND h.lim IS DISTINCT FROM r.lim
      LIMIT 1;
      IF NOT FOUND THEN
        SELECT w.lim INTO v_limit FROM waiting w JOIN waiters q ON q.id = w.waiter_id
        WHERE w.key = v_key AND w.mode = 'shared' AND q.alive_until > p_now AND q.deadline > p_now
          AND q.id <> p_self AND w.lim IS DISTINCT FROM r.lim
        LIMIT 1;
      END IF;
      IF FOUND THEN
        PERFORM hf_invalid(format('resources[%s].limit', r.idx),
          format('%s is shared with limit %s by its holders; every holder must agree, got %s',
                 to_jsonb(r.key)::text, coalesce(v_limit::text, 'none'), coalesce(r.lim::text, 'none')));
      END IF;
    END IF;

    -- Live leases on this key, an ancestor or a descendant, unless both sides are shared.
    SELECT coalesce(jsonb_agg(s.h ORDER BY s.fence), '[]'), max(s.expires_at), min(s.expires_at)
    INTO v_rows, v_max, v_min
    FROM (SELECT jsonb_build_object('key', h.key, 'mode', h.mode, 'owner', l.owner, 'state', 'held',
                   'acquiredAt', l.acquired_at, 'expiresAt', l.expires_at, 'metadata', l.metadata) AS h,
                 l.fence, l.expires_at
          FROM (SELECT * FROM held WHERE key = ANY (v_keys) UNION ALL SELECT * FROM held WHERE key > v_lo AND key < v_hi) h
          JOIN leases l ON l.id = h.lease_id
          WHERE true
            AND l.expires_at > p_now AND l.id <> p_self AND NOT (v_shared AND h.mode = 'shared')
          ORDER BY l.fence LIMIT v_take) s;
    v_holders := v_holders || v_rows;
    v_last := greatest(v_last, v_max);
    v_first := least(v_first, v_min);
    IF p_any AND jsonb_array_length(v_holders) > 0 THEN RETURN jsonb_build_object('holders', v_holders); END IF;

    -- Earlier live waiters, same rule. A waiter has no end but its drop time.
    SELECT coalesce(jsonb_agg(s.h ORDER BY s.seq), '[]'), min(s.drop_at)
    INTO v_rows, v_min
    FROM (SELECT jsonb_build_object('key', w.key, 'mode', w.mode, 'owner', q.owner, 'state', 'queued',
                   'acquiredAt', q.enqueued_at, 'expiresAt', NULL, 'metadata', q.metadata) AS h,
                 q.seq, least(q.alive_until, q.deadline) AS drop_at
          FROM (SELECT * FROM waiting WHERE key = ANY (v_keys) UNION ALL SELECT * FROM waiting WHERE key > v_lo AND key < v_hi) w
          JOIN waiters q ON q.id = w.waiter_id
          WHERE true
            AND q.seq < v_seq AND q.id <> p_self AND q.alive_until > p_now AND q.deadline > p_now
            AND NOT (v_shared AND w.mode = 'shared')
          ORDER BY q.seq LIMIT coalesce(v_take, 20)) s;
    v_holders := v_holders || v_rows;
    v_first := least(v_first, v_min);
    IF p_any AND jsonb_array_length(v_holders) > 0 THEN RETURN jsonb_build_object('holders', v_holders); END IF;

    -- A semaphore: shared holders of this exact key plus earlier shared waiters on it, against the limit.
    IF v_shared AND r.lim IS NOT NULL THEN
      SELECT (SELECT count(*) FROM held h JOIN leases l ON l.id = h.lease_id
              WHERE h.key = v_key AND h.mode = 'shared' AND l.expires_at > p_now AND l.id <> p_self)
           + (SELECT count(*) FROM waiting w JOIN waiters q ON q.id = w.waiter_id
              WHERE w.key = v_key AND w.mode = 'shared' AND q.seq < v_seq AND q.id <> p_self
                AND q.alive_until > p_now AND q.deadline > p_now)
      INTO v_count;
      IF v_count >= r.lim THEN
        SELECT coalesce(jsonb_agg(s.h ORDER BY s.fence), '[]'), max(s.expires_at), min(s.expires_at)
        INTO v_rows, v_max, v_min
        FROM (SELECT jsonb_build_object('key', h.key, 'mode', h.mode, 'owner', l.owner, 'state', 'held',
                       'acquiredAt', l.acquired_at, 'expiresAt', l.expires_at, 'metadata', l.metadata) AS h,
                     l.fence, l.expires_at
              FROM held h JOIN leases l ON l.id = h.lease_id
              WHERE h.key = v_key AND h.mode = 'shared' AND l.expires_at > p_now AND l.id <> p_self
              ORDER BY l.fence LIMIT v_take) s;
        v_holders := v_holders || v_rows;
        v_last := greatest(v_last, v_max);
        v_first := least(v_first, v_min);
        SELECT coalesce(jsonb_agg(s.h ORDER BY s.seq), '[]'), min(s.drop_at)
        INTO v_rows, v_min
        FROM (SELECT jsonb_build_object('key', w.key, 'mode', w.mode, 'owner', q.owner, 'state', 'queued',
                       'acquiredAt', q.enqueued_at, 'expiresAt', NULL, 'metadata', q.metadata) AS h,
                     q.seq, least(q.alive_until, q.deadline) AS drop_at
              FROM waiting w JOIN waiters q ON q.id = w.waiter_id
              WHERE w.key = v_key AND w.mode = 'shared' AND q.seq < v_seq AND q.id <> p_self
                AND q.alive_until > p_now AND q.deadline > p_now
              ORDER BY q.seq LIMIT coalesce(v_take, 20)) s;
        v_holders := v_holders || v_rows;
        v_first := least(v_first, v_min);
        IF p_any AND jsonb_array_length(v_holders) > 0 THEN RETURN jsonb_build_object('holders', v_holders); END IF;
      END IF;
    END IF;

    -- Lock-delays on related keys: recorded ones, and those of expired leases not settled yet.
    SELECT coalesce(jsonb_agg(s.h ORDER BY s.since, s.fence), '[]'), max(s.until), min(s.until)
    INTO v_rows, v_max, v_min
    FROM (SELECT jsonb_build_object('key', d.key, 'mode', 'exclusive', 'owner', d.owner, 'state', 'delayed',
                   'acquiredAt', d.since, 'expiresAt', d.until, 'metadata', d.metadata) AS h,
                 d.since, d.fence, d.until
          FROM (SELECT * FROM delays WHERE key = ANY (v_keys) UNION ALL SELECT * FROM delays WHERE key > v_lo AND key < v_hi) d
          WHERE d.until > p_now
          UNION ALL
          SELECT jsonb_build_object('key', h.key, 'mode', 'exclusive', 'owner', l.owner, 'state', 'delayed',
                   'acquiredAt', l.expires_at, 'expiresAt', l.expires_at + l.lock_delay_ms, 'metadata', l.metadata),
                 l.expires_at, l.fence, l.expires_at + l.lock_delay_ms
          FROM (SELECT * FROM held WHERE key = ANY (v_keys) UNION ALL SELECT * FROM held WHERE key > v_lo AND key < v_hi) h
          JOIN leases l ON l.id = h.lease_id
          WHERE true
            AND l.expires_at <= p_now AND l.lock_delay_ms > 0 AND l.expires_at + l.lock_delay_ms > p_now
          LIMIT v_take) s;
    v_holders := v_holders || v_rows;
    v_last := greatest(v_last, v_max);
    v_first := least(v_first, v_min);
    IF p_any AND jsonb_array_length(v_holders) > 0 THEN RETURN jsonb_build_object('holders', v_holders); END IF;
  END LOOP;
  RETURN jsonb_build_object('holders', v_holders, 'lastEnd', v_last, 'firstEnd', v_first);
END $$;

-- As in migration 8, with the related-key join split into its index probes.
CREATE OR REPLACE FUNCTION hf_held_blockers(p_resources jsonb, p_self text, p_now bigint) RETURNS jsonb LANGUAGE plpgsql SET jit = off AS $$
DECLARE
  v_out jsonb;
BEGIN
  SELECT jsonb_build_object('holders', jsonb_agg(s.h ORDER BY s.idx, s.fence), 'lastEnd', max(s.expires_at),
                            'firstEnd', min(s.expires_at))
  INTO v_out
  FROM (SELECT r.idx, l.fence, l.expires_at,
               jsonb_build_object('key', h.key, 'mode', h.mode, 'owner', l.owner, 'state', 'held',
                 'acquiredAt', l.acquired_at, 'expiresAt', l.expires_at, 'metadata', l.metadata) AS h
        FROM (SELECT (e->>'key') COLLATE "C" AS key, e->>'mode' AS mode, (e->>'limit')::integer AS lim, o AS idx,
                     ((e->>'key') || '/') COLLATE "C" AS lo, ((e->>'key') || '0') COLLATE "C" AS hi,
                     (hf_ancestors(e->>'key') || (e->>'key')) COLLATE "C" AS keys
              FROM jsonb_array_elements(p_resources) WITH ORDINALITY t(e, o)) r
        CROSS JOIN LATERAL (SELECT * FROM held WHERE key = ANY (r.keys) UNION ALL SELECT * FROM held WHERE key > r.lo AND key < r.hi) h
        JOIN leases l ON l.id = h.lease_id
        WHERE l.expires_at > p_now AND l.id <> p_self
          AND (NOT (r.mode = 'shared' AND h.mode = 'shared')
               OR (h.key = r.key AND r.lim IS NOT NULL AND
                   (SELECT count(*) FROM held h2 JOIN leases l2 ON l2.id = h2.lease_id
                    WHERE h2.key = r.key AND h2.mode = 'shared' AND l2.expires_at > p_now AND l2.id <> p_self) >= r.lim))) s
  HAVING count(*) > 0;
  RETURN v_out;
END $$;
