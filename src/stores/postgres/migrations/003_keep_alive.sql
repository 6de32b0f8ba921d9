-- holdfast PostgreSQL store, migration 3: the heartbeat of many queued tickets in one call.
--
-- hf_keep_alive(p_tickets text[]) -> jsonb: the tickets of `p_tickets` that are still queued
-- (alive and before their deadline), as a JSON array of ids, their heartbeat renewed to
-- now + waiter_ttl_ms when a third of its period has passed (as hf_poll writes it). A ticket not
-- in the answer was granted, dropped, timed out, or its row was locked at that moment by another
-- transaction (a promotion granting it, say): its waiter polls it (hf_poll) to learn which.
--
-- Takes no advisory or root lock and grants nothing: it only moves alive_until forward on rows
-- that are alive. The rows it writes are locked in queue order with SKIP LOCKED, so it never
-- waits for a promotion and never closes a wait-for cycle with one. Time: hf_now(), the
-- database clock, read once.
CREATE FUNCTION hf_keep_alive(p_tickets text[]) RETURNS jsonb LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
  v_now bigint := hf_now();
  v_alive jsonb;
BEGIN
  WITH live AS (
    SELECT id, alive_until - v_now < (waiter_ttl_ms * 2)::numeric / 3 AS due
    FROM waiters
    WHERE id = ANY (p_tickets) AND alive_until > v_now AND deadline > v_now
  ), locked AS (
    SELECT w.id FROM waiters w JOIN live ON live.id = w.id AND live.due
    ORDER BY w.seq
    FOR UPDATE OF w SKIP LOCKED
  ), touched AS (
    UPDATE waiters w SET alive_until = v_now + w.waiter_ttl_ms
    FROM locked WHERE w.id = locked.id AND w.alive_until > v_now
    RETURNING w.id
  )
  SELECT coalesce(jsonb_agg(t.id), '[]') INTO v_alive
  FROM (SELECT id FROM live WHERE NOT due UNION ALL SELECT id FROM touched) t;
  RETURN v_alive;
END $$;
