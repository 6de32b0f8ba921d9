-- holdfast PostgreSQL store, migration 4: settling and promotion (mirrors Operation.settle and
-- Operation.promote of src/stores/table/operations.ts).
--
-- Work results are jsonb objects { changes: [...], roots: [...], tickets: [...] }: the changes to
-- publish, and the roots and tickets deferred because their locks were busy (see 002_core.sql).

CREATE FUNCTION hf_work(p_changes jsonb DEFAULT '[]', p_roots text[] DEFAULT '{}', p_tickets text[] DEFAULT '{}')
RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
  SELECT jsonb_build_object('changes', p_changes, 'roots', to_jsonb(p_roots), 'tickets', to_jsonb(p_tickets))
$$;

CREATE FUNCTION hf_merge(a jsonb, b jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
  SELECT jsonb_build_object('changes', (a->'changes') || (b->'changes'), 'roots', (a->'roots') || (b->'roots'),
                            'tickets', (a->'tickets') || (b->'tickets'))
$$;

-- Grants, in queue order, the given waiters that are live and eligible. A waiter under a root
-- this transaction can't lock without waiting is deferred.
CREATE FUNCTION hf_promote_ids(p_ids text[], p_now bigint) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
  v_id text;
  q waiters;
  l leases;
  v_change jsonb;
  v_changes jsonb := '[]';
  v_deferred text[] := '{}';
BEGIN
  FOR v_id IN SELECT w.id FROM waiters w WHERE w.id = ANY (p_ids) ORDER BY w.seq LOOP
    SELECT * INTO q FROM waiters WHERE id = v_id;
    CONTINUE WHEN NOT FOUND OR q.deadline <= p_now OR q.alive_until <= p_now;
    IF NOT hf_try_lock(q.roots) THEN
      v_deferred := v_deferred || v_id;
      CONTINUE;
    END IF;
    -- Read again: the locks just taken may have made another transaction's work visible.
    SELECT * INTO q FROM waiters WHERE id = v_id;
    CONTINUE WHEN NOT FOUND OR q.deadline <= p_now OR q.alive_until <= p_now;
    IF jsonb_array_length(hf_blockers(q.resources, q.seq, q.id, p_now, true)->'holders') = 0 THEN
      DELETE FROM waiters WHERE id = q.id;
      l := hf_grant(q.id, q.owner, q.resources, q.ttl_ms, q.request_id, q.metadata, q.lock_delay_ms, p_now);
      v_change := hf_change('acquired', l.owner, hf_keys(l.resources), l.fence, ARRAY[l.id], p_now);
      PERFORM hf_notify_grant(v_change);
      v_changes := v_changes || v_change;
    END IF;
  END LOOP;
  RETURN hf_work(v_changes, '{}', v_deferred);
END $$;

-- Grants, in queue order, the waiters related to the freed keys that became eligible.
CREATE FUNCTION hf_promote(p_freed text[], p_now bigint) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
  v_ids text[];
BEGIN
  IF p_freed IS NULL OR cardinality(p_freed) = 0 THEN RETURN hf_work(); END IF;
  SELECT array_agg(DISTINCT w.waiter_id) INTO v_ids
  FROM unnest(p_freed) AS f(k)
  JOIN waiting w ON w.key = (f.k COLLATE "C") OR w.key = ANY (hf_ancestors(f.k) COLLATE "C")
                 OR (w.key > (f.k || '/') COLLATE "C" AND w.key < (f.k || '0') COLLATE "C");
  IF v_ids IS NULL THEN RETURN hf_work(); END IF;
  RETURN hf_promote_ids(v_ids, p_now);
END $$;

-- Ends what has fallen due under `p_roots` (expired leases, dead or timed-out waiters, finished
-- lock-delays), then grants what that freed.
CREATE FUNCTION hf_settle(p_roots text[], p_now bigint) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
  v_id text;
  l leases;
  q waiters;
  v_key text;
  v_freed text[] := '{}';
  v_changes jsonb := '[]';
  v_deferred text[] := '{}';
BEGIN
  FOR v_id IN SELECT id FROM leases WHERE expires_at <= p_now AND roots && p_roots ORDER BY expires_at, fence LOOP
    SELECT * INTO l FROM leases WHERE id = v_id;
    CONTINUE WHEN NOT FOUND;
    IF NOT hf_try_lock(l.roots) THEN
      v_deferred := v_deferred || l.roots;
      CONTINUE;
    END IF;
    SELECT * INTO l FROM leases WHERE id = v_id AND expires_at <= p_now;
    CONTINUE WHEN NOT FOUND;
    v_changes := v_changes || hf_end_lease(l, 'expired', 'expiry', NULL, l.expires_at, true, p_now);
    v_freed := v_freed || hf_keys(l.resources);
  END LOOP;

  FOR v_id IN SELECT id FROM waiters WHERE least(alive_until, deadline) <= p_now AND roots && p_roots ORDER BY seq LOOP
    SELECT * INTO q FROM waiters WHERE id = v_id;
    CONTINUE WHEN NOT FOUND;
    IF NOT hf_try_lock(q.roots) THEN
      v_deferred := v_deferred || q.roots;
      CONTINUE;
    END IF;
    SELECT * INTO q FROM waiters WHERE id = v_id AND least(alive_until, deadline) <= p_now;
    CONTINUE WHEN NOT FOUND;
    DELETE FROM waiters WHERE id = q.id;
    v_changes := v_changes || hf_change('timed-out', q.owner, hf_keys(q.resources), NULL, NULL, least(q.deadline, q.alive_until));
    v_freed := v_freed || hf_keys(q.resources);
  END LOOP;

  FOR v_key IN DELETE FROM delays WHERE until <= p_now AND root = ANY (p_roots) RETURNING key LOOP
    v_freed := v_freed || v_key;
  END LOOP;

  RETURN hf_merge(hf_work(v_changes, v_deferred, '{}'), hf_promote(v_freed, p_now));
END $$;

-- The earliest store time at which a lease, a waiter or a lock-delay falls due, or NULL.
CREATE FUNCTION hf_next_due() RETURNS bigint LANGUAGE plpgsql STABLE AS $$
BEGIN
  RETURN least((SELECT min(expires_at) FROM leases), (SELECT min(least(alive_until, deadline)) FROM waiters),
               (SELECT min(until) FROM delays));
END $$;

-- A live waiter's state: granted now when nothing blocks it any more, else queued with its
-- blockers. Returns { outcome, changes }.
CREATE FUNCTION hf_queued(q waiters, p_now bigint, p_ticket boolean) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
  v_b jsonb;
  l leases;
  v_out jsonb;
BEGIN
  v_b := hf_blockers(q.resources, q.seq, q.id, p_now, false);
  IF jsonb_array_length(v_b->'holders') = 0 THEN
    DELETE FROM waiters WHERE id = q.id;
    l := hf_grant(q.id, q.owner, q.resources, q.ttl_ms, q.request_id, q.metadata, q.lock_delay_ms, p_now);
    RETURN jsonb_build_object(
      'outcome', jsonb_build_object('status', 'granted', 'lease', hf_lease_json(l), 'now', p_now),
      'changes', jsonb_build_array(hf_change('acquired', l.owner, hf_keys(l.resources), l.fence, ARRAY[l.id], p_now)));
  END IF;
  v_out := jsonb_build_object('status', 'queued', 'holders', v_b->'holders', 'now', p_now) || hf_hints(v_b, p_now);
  IF p_ticket THEN v_out := v_out || jsonb_build_object('ticket', q.id); END IF;
  RETURN jsonb_build_object('outcome', v_out, 'changes', '[]'::jsonb);
END $$;

-- The answer of every operation: its value, the work to publish (and follow up), the next due time.
-- VOLATILE so that nextDue sees the changes made earlier in the same statement.
CREATE FUNCTION hf_result(p_value jsonb, p_work jsonb, p_now bigint) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
  RETURN jsonb_build_object('value', p_value, 'changes', p_work->'changes',
    'roots', (SELECT coalesce(jsonb_agg(DISTINCT r), '[]') FROM jsonb_array_elements_text(p_work->'roots') r),
    'tickets', (SELECT coalesce(jsonb_agg(DISTINCT t), '[]') FROM jsonb_array_elements_text(p_work->'tickets') t),
    'nextDue', hf_next_due(), 'now', p_now);
END $$;
