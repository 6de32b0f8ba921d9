-- holdfast PostgreSQL store, migration 12: a grant is dated when it is made, not when its
-- operation began.
--
-- An operation reads the clock once, after the locks it starts with (`p_now`). A promotion may
-- then take more locks with hf_try_lock (a waiter under other roots, every waiter under path
-- locks); what those locks protected may have changed in between: a release under that root can
-- commit after `p_now` was read, dated by its own clock reading, later than `p_now`. Granting the
-- freed key at `p_now` recorded the new lease as acquired before the old one ended (the fault
-- harness saw it: fence 45 acquired at .590, fence 40 released at .603, in store time), though no
-- two leases were ever live at once in real time. Now hf_grant dates the lease, its expiry and its
-- history event from the clock read when it grants (never earlier than `p_now`): after every lock
-- the grant relies on, so after the commit of whatever ended the previous holder. The blocker
-- check before it still uses `p_now`, which can only count a lease as live longer (safe).
--
-- Inputs and outputs are unchanged: hf_grant returns the new lease row (its `acquired_at` is the
-- grant time); hf_promote_ids returns the work of migration 9, each grant's change dated like its
-- lease.

CREATE OR REPLACE FUNCTION hf_grant(p_id text, p_owner text, p_resources jsonb, p_ttl_ms bigint, p_request_id text,
                                    p_metadata jsonb, p_lock_delay_ms bigint, p_now bigint)
RETURNS leases LANGUAGE plpgsql AS $$
DECLARE
  v_at bigint := greatest(p_now, hf_now());
  l leases;
BEGIN
  WITH gone AS (DELETE FROM waiters WHERE id = p_id),
  ins AS (
    INSERT INTO leases (id, owner, resources, roots, fence, acquired_at, expires_at, ttl_ms, request_id, metadata, lock_delay_ms)
    VALUES (p_id, p_owner, p_resources,
            ARRAY(SELECT DISTINCT split_part(e->>'key', '/', 1) FROM jsonb_array_elements(p_resources) e),
            nextval('fence_seq'), v_at, v_at + p_ttl_ms, p_ttl_ms, p_request_id, p_metadata, p_lock_delay_ms)
    RETURNING *),
  keys AS (
    INSERT INTO held (lease_id, idx, key, mode, lim)
    SELECT p_id, (o - 1)::integer, e->>'key', e->>'mode', (e->>'limit')::integer
    FROM jsonb_array_elements(p_resources) WITH ORDINALITY t(e, o)),
  ev AS (
    INSERT INTO history (at, type, owner, fence, resources, by, reason, lease_id)
    SELECT v_at, 'acquired', p_owner, ins.fence, p_resources, NULL, NULL, p_id FROM ins)
  SELECT * INTO l FROM ins;
  RETURN l;
END $$;

-- As in migration 9, with each grant's change dated by its lease's acquired_at.
CREATE OR REPLACE FUNCTION hf_promote_ids(p_ids text[], p_now bigint) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
  c record;
  q waiters;
  l leases;
  v_locked text[] := hf_locked();
  v_fresh boolean;
  v_blocked_x text[] := '{}';  -- keys of exclusive resources of blocked candidates
  v_blocked text[] := '{}';    -- keys of any resource of blocked candidates
  v_change jsonb;
  v_changes jsonb := '[]';
  v_deferred text[] := '{}';
BEGIN
  IF p_ids IS NULL OR cardinality(p_ids) = 0 THEN RETURN hf_work(); END IF;
  FOR c IN SELECT w.id, w.roots,
                  ARRAY(SELECT e->>'key' FROM jsonb_array_elements(w.resources) e) AS keys,
                  ARRAY(SELECT e->>'key' FROM jsonb_array_elements(w.resources) e WHERE e->>'mode' = 'exclusive') AS xkeys
           FROM waiters w
           WHERE w.id = ANY (p_ids) AND w.deadline > p_now AND w.alive_until > p_now
           ORDER BY w.seq LOOP
    IF c.keys && v_blocked_x OR c.xkeys && v_blocked THEN
      v_blocked_x := v_blocked_x || c.xkeys;
      v_blocked := v_blocked || c.keys;
      CONTINUE;
    END IF;
    v_fresh := c.roots <@ v_locked;
    IF NOT v_fresh AND NOT hf_try_lock(c.roots) THEN
      v_deferred := v_deferred || c.id;
      CONTINUE;
    END IF;
    SELECT * INTO q FROM waiters WHERE id = c.id;
    CONTINUE WHEN NOT FOUND OR q.deadline <= p_now OR q.alive_until <= p_now;
    IF hf_is_blocked(q.resources, q.seq, q.id, p_now) THEN
      v_blocked_x := v_blocked_x || c.xkeys;
      v_blocked := v_blocked || c.keys;
      CONTINUE;
    END IF;
    l := hf_grant(q.id, q.owner, q.resources, q.ttl_ms, q.request_id, q.metadata, q.lock_delay_ms, p_now);
    v_change := hf_change('acquired', l.owner, c.keys, l.fence, ARRAY[l.id], l.acquired_at) || jsonb_build_object('expiresAt', l.expires_at);
    PERFORM hf_notify_grant(v_change);
    v_changes := v_changes || v_change;
  END LOOP;
  RETURN hf_work(v_changes, '{}', v_deferred);
END $$;
