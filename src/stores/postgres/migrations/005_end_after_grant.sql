-- holdfast PostgreSQL store, migration 5: a lease never ends before it was granted.
--
-- An operation reads the clock once, after its locks (`v_now`), then settles its roots: an
-- expired blocker ends and the waiters behind it are granted, dated by hf_grant's own reading of
-- the clock, which may be later than `v_now` (baseline part 12: a grant is dated when it is made).
-- When that waiter is the ticket being cancelled (or the lease being released or force-released,
-- or one of the owner's leases) in the same operation, it was then ended at `v_now`: before its
-- grant, and the store's history showed an end before its start (the fault harness, check (a), a
-- cancel sent as a worker stopped). hf_end_lease now dates an end no earlier than the lease's
-- grant.
--
-- hf_end_lease(lease row, type, reason, by, at, delay, now): as in the baseline part 11, with
--   `at` raised to the lease's `acquired_at` when it is earlier. Output: the change (jsonb), as before.

CREATE OR REPLACE FUNCTION hf_end_lease(l leases, p_type text, p_reason text, p_by text, p_at bigint, p_delay boolean, p_now bigint)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
  v_at bigint := greatest(p_at, l.acquired_at);
BEGIN
  DELETE FROM leases WHERE id = l.id;
  DELETE FROM held WHERE lease_id = l.id;
  INSERT INTO history (at, type, owner, fence, resources, by, reason, lease_id)
  VALUES (v_at, p_type, l.owner, l.fence, l.resources, p_by, p_reason, l.id);
  IF p_delay AND l.lock_delay_ms > 0 AND v_at + l.lock_delay_ms > p_now THEN
    INSERT INTO delays (key, root, until, owner, fence, since, metadata)
    SELECT e->>'key', split_part(e->>'key', '/', 1), v_at + l.lock_delay_ms, l.owner, l.fence, v_at, l.metadata
    FROM jsonb_array_elements(l.resources) e;
  END IF;
  RETURN hf_change(p_type, l.owner, hf_keys(l.resources), l.fence, NULL, v_at);
END $$;
