-- holdfast PostgreSQL store, migration 3: who blocks a request (mirrors src/stores/table/blockers.ts).
--
-- The blockers of `p_resources` for a request queued at `p_seq` (NULL: a new request, which
-- waits behind every queued request): live leases, lock-delays and earlier live waiters that
-- conflict with it under SPEC section 2, shared limits counted over holders and earlier waiters.
-- For a new request a shared limit that disagrees with a live holder or waiter is rejected.
-- A lease or waiter whose time has passed is not live, even before an operation settles it; an
-- expired lease with a lock-delay blocks as the delay it leaves.
--
-- Returns { holders: [{ key, mode, owner, state, acquiredAt, expiresAt, metadata }] (times in ms),
-- lastEnd, firstEnd }. With `p_any` it stops at the first blocker (holders has at most one).
CREATE FUNCTION hf_blockers(p_resources jsonb, p_seq bigint, p_self text, p_now bigint, p_any boolean)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
  r record;
  v_new boolean := p_seq IS NULL;
  v_seq bigint := coalesce(p_seq, 9223372036854775807);
  v_take bigint := CASE WHEN p_any THEN 1 END; -- LIMIT NULL is no limit
  v_key text COLLATE "C";
  v_lo text COLLATE "C";
  v_hi text COLLATE "C";
  v_anc text[] COLLATE "C";
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
    v_anc := hf_ancestors(v_key);
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
          FROM held h JOIN leases l ON l.id = h.lease_id
          WHERE (h.key = v_key OR h.key = ANY (v_anc) OR (h.key > v_lo AND h.key < v_hi))
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
          FROM waiting w JOIN waiters q ON q.id = w.waiter_id
          WHERE (w.key = v_key OR w.key = ANY (v_anc) OR (w.key > v_lo AND w.key < v_hi))
            AND q.seq < v_seq AND q.id <> p_self AND q.alive_until > p_now AND q.deadline > p_now
            AND NOT (v_shared AND w.mode = 'shared')
          ORDER BY q.seq LIMIT v_take) s;
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
              ORDER BY q.seq LIMIT v_take) s;
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
          FROM delays d
          WHERE (d.key = v_key OR d.key = ANY (v_anc) OR (d.key > v_lo AND d.key < v_hi)) AND d.until > p_now
          UNION ALL
          SELECT jsonb_build_object('key', h.key, 'mode', 'exclusive', 'owner', l.owner, 'state', 'delayed',
                   'acquiredAt', l.expires_at, 'expiresAt', l.expires_at + l.lock_delay_ms, 'metadata', l.metadata),
                 l.expires_at, l.fence, l.expires_at + l.lock_delay_ms
          FROM held h JOIN leases l ON l.id = h.lease_id
          WHERE (h.key = v_key OR h.key = ANY (v_anc) OR (h.key > v_lo AND h.key < v_hi))
            AND l.expires_at <= p_now AND l.lock_delay_ms > 0 AND l.expires_at + l.lock_delay_ms > p_now
          LIMIT v_take) s;
    v_holders := v_holders || v_rows;
    v_last := greatest(v_last, v_max);
    v_first := least(v_first, v_min);
    IF p_any AND jsonb_array_length(v_holders) > 0 THEN RETURN jsonb_build_object('holders', v_holders); END IF;
  END LOOP;
  RETURN jsonb_build_object('holders', v_holders, 'lastEnd', v_last, 'firstEnd', v_first);
END $$;

-- The hints of a blocked request: retryAfterMs (until the last held or delayed blocker ends),
-- nextCheckMs (until the first blocker could end), 1000 ms when unknown.
CREATE FUNCTION hf_hints(p_blockers jsonb, p_now bigint) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
  SELECT jsonb_build_object(
    'retryAfterMs', CASE WHEN p_blockers->'lastEnd' IS NULL OR jsonb_typeof(p_blockers->'lastEnd') = 'null' THEN 1000
                         ELSE greatest(1, (p_blockers->>'lastEnd')::bigint - p_now) END,
    'nextCheckMs', CASE WHEN p_blockers->'firstEnd' IS NULL OR jsonb_typeof(p_blockers->'firstEnd') = 'null' THEN 1000
                        ELSE greatest(1, (p_blockers->>'firstEnd')::bigint - p_now) END)
$$;
