-- holdfast PostgreSQL store, migration 5: the lease operations (mirror acquire, poll, cancel,
-- renew and release of src/stores/table/operations.ts). Each is one transaction: take the
-- advisory locks of the roots concerned (002_core.sql), read the clock, settle those roots, act.
-- Each returns hf_result(value, work, now).

-- The roots guarding a lease or ticket id (a ticket keeps its roots when granted), or none.
CREATE FUNCTION hf_id_roots(p_id text) RETURNS text[] LANGUAGE plpgsql STABLE AS $$
BEGIN
  RETURN coalesce((SELECT roots FROM leases WHERE id = p_id), (SELECT roots FROM waiters WHERE id = p_id), '{}');
END $$;

-- Starts an operation on a lease or ticket id: locks its roots, reads the clock. Roots never
-- change (a granted ticket keeps its resources), so roots read before locking stay right, except
-- when the id did not exist yet: then it holds no lock, and may take the roots of an id that
-- appeared meanwhile, still all at once and sorted.
CREATE FUNCTION hf_start_id(p_id text, p_origin text, OUT names text[], OUT clock bigint) LANGUAGE plpgsql AS $$
BEGIN
  names := hf_id_roots(p_id);
  clock := hf_start(names, p_origin);
  IF cardinality(names) = 0 THEN
    names := hf_id_roots(p_id);
    IF cardinality(names) > 0 THEN clock := hf_start(names, p_origin); END IF;
  END IF;
END $$;

CREATE FUNCTION hf_acquire(p_request jsonb, p_wait_ms bigint, p_waiter_ttl_ms bigint, p_origin text)
RETURNS jsonb LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
  v_id text := p_request->>'id';
  v_owner text := p_request->>'owner';
  v_rid text := p_request->>'requestId';
  v_ttl bigint := (p_request->>'ttlMs')::bigint;
  v_delay bigint := coalesce((p_request->>'lockDelayMs')::bigint, 0);
  v_metadata jsonb := coalesce(p_request->'metadata', '{}');
  v_resources jsonb;
  v_names text[];
  v_now bigint;
  v_work jsonb;
  v_b jsonb;
  v_q jsonb;
  l leases;
  q waiters;
BEGIN
  IF v_id IS NULL OR v_id = '' THEN PERFORM hf_invalid('id', 'expected a lease id'); END IF;
  IF v_owner IS NULL OR v_owner = '' THEN PERFORM hf_invalid('owner', 'is required'); END IF;
  IF v_ttl IS NULL OR v_ttl < 1 THEN PERFORM hf_invalid('ttlMs', 'expected a positive number of milliseconds'); END IF;
  IF v_delay < 0 THEN PERFORM hf_invalid('lockDelayMs', 'expected 0 or more milliseconds'); END IF;
  IF jsonb_typeof(v_metadata) <> 'object' THEN PERFORM hf_invalid('metadata', 'expected a JSON object'); END IF;
  v_resources := hf_resources(p_request->'resources');
  v_names := hf_roots(v_resources);
  IF v_rid IS NOT NULL THEN
    -- The requestId lock, and the roots of a waiter already queued under this requestId, so
    -- that answering for it may grant it.
    v_names := v_names || hf_request_lock(v_owner, v_rid)
      || coalesce((SELECT roots FROM waiters WHERE owner = v_owner AND request_id = v_rid LIMIT 1), '{}');
  END IF;
  v_now := hf_start(v_names, p_origin);
  v_work := hf_settle(v_names, v_now);

  IF v_rid IS NOT NULL THEN
    SELECT * INTO l FROM leases WHERE owner = v_owner AND request_id = v_rid AND expires_at > v_now ORDER BY fence DESC LIMIT 1;
    IF FOUND THEN
      RETURN hf_result(jsonb_build_object('status', 'granted', 'lease', hf_lease_json(l), 'now', v_now), v_work, v_now);
    END IF;
    SELECT * INTO q FROM waiters WHERE owner = v_owner AND request_id = v_rid
      AND alive_until > v_now AND deadline > v_now ORDER BY seq LIMIT 1;
    IF FOUND THEN
      IF hf_try_lock(q.roots) THEN
        UPDATE waiters SET alive_until = v_now + waiter_ttl_ms WHERE id = q.id RETURNING * INTO q;
        IF FOUND THEN
          v_q := hf_queued(q, v_now, true);
          RETURN hf_result(v_q->'outcome', hf_merge(v_work, hf_work(v_q->'changes')), v_now);
        END IF;
      ELSE
        -- Queued under roots another transaction holds: answer from what is committed.
        v_b := hf_blockers(q.resources, q.seq, q.id, v_now, false);
        RETURN hf_result(jsonb_build_object('status', 'queued', 'ticket', q.id, 'holders', v_b->'holders', 'now', v_now)
                         || hf_hints(v_b, v_now), hf_merge(v_work, hf_work('[]', '{}', ARRAY[q.id])), v_now);
      END IF;
    END IF;
  END IF;

  IF EXISTS (SELECT 1 FROM leases WHERE id = v_id) OR EXISTS (SELECT 1 FROM waiters WHERE id = v_id)
     OR EXISTS (SELECT 1 FROM history WHERE lease_id = v_id) THEN
    PERFORM hf_invalid('id', 'this lease id was already used');
  END IF;

  v_b := hf_blockers(v_resources, NULL, v_id, v_now, false);
  IF jsonb_array_length(v_b->'holders') = 0 THEN
    l := hf_grant(v_id, v_owner, v_resources, v_ttl, v_rid, v_metadata, v_delay, v_now);
    RETURN hf_result(jsonb_build_object('status', 'granted', 'lease', hf_lease_json(l), 'now', v_now),
      hf_merge(v_work, hf_work(jsonb_build_array(hf_change('acquired', v_owner, hf_keys(v_resources), l.fence, ARRAY[v_id], v_now)))),
      v_now);
  END IF;
  IF p_wait_ms <= 0 THEN
    RETURN hf_result(jsonb_build_object('status', 'busy', 'holders', v_b->'holders', 'now', v_now,
                                        'retryAfterMs', hf_hints(v_b, v_now)->'retryAfterMs'), v_work, v_now);
  END IF;
  INSERT INTO waiters (id, seq, owner, resources, roots, ttl_ms, request_id, metadata, lock_delay_ms,
                       enqueued_at, deadline, alive_until, waiter_ttl_ms)
  VALUES (v_id, nextval('waiter_seq'), v_owner, v_resources, hf_roots(v_resources), v_ttl, v_rid, v_metadata, v_delay,
          v_now, v_now + p_wait_ms, v_now + p_waiter_ttl_ms, p_waiter_ttl_ms);
  INSERT INTO waiting (waiter_id, idx, key, mode, lim)
  SELECT v_id, (o - 1)::integer, e->>'key', e->>'mode', (e->>'limit')::integer
  FROM jsonb_array_elements(v_resources) WITH ORDINALITY t(e, o);
  RETURN hf_result(jsonb_build_object('status', 'queued', 'ticket', v_id, 'holders', v_b->'holders', 'now', v_now)
                   || hf_hints(v_b, v_now),
    hf_merge(v_work, hf_work(jsonb_build_array(hf_change('waiting', v_owner, hf_keys(v_resources), NULL, NULL, v_now)))),
    v_now);
END $$;

CREATE FUNCTION hf_poll(p_ticket text, p_origin text) RETURNS jsonb LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
  v_names text[];
  v_now bigint;
  v_work jsonb;
  v_q jsonb;
  l leases;
  q waiters;
BEGIN
  SELECT * INTO v_names, v_now FROM hf_start_id(p_ticket, p_origin);
  v_work := hf_settle(v_names, v_now);
  SELECT * INTO l FROM leases WHERE id = p_ticket AND expires_at > v_now;
  IF FOUND THEN
    RETURN hf_result(jsonb_build_object('status', 'granted', 'lease', hf_lease_json(l), 'now', v_now), v_work, v_now);
  END IF;
  SELECT * INTO q FROM waiters WHERE id = p_ticket AND alive_until > v_now AND deadline > v_now;
  IF NOT FOUND THEN
    RETURN hf_result(jsonb_build_object('status', 'gone', 'now', v_now), v_work, v_now);
  END IF;
  -- The heartbeat is written only when a third of its period has passed, not on every poll.
  IF q.alive_until - v_now < (q.waiter_ttl_ms * 2)::numeric / 3 THEN
    UPDATE waiters SET alive_until = v_now + waiter_ttl_ms WHERE id = p_ticket RETURNING * INTO q;
  END IF;
  v_q := hf_queued(q, v_now, false);
  RETURN hf_result(v_q->'outcome', hf_merge(v_work, hf_work(v_q->'changes')), v_now);
END $$;

CREATE FUNCTION hf_cancel(p_ticket text, p_origin text) RETURNS jsonb LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
  v_names text[];
  v_now bigint;
  v_work jsonb;
  l leases;
  q waiters;
BEGIN
  SELECT * INTO v_names, v_now FROM hf_start_id(p_ticket, p_origin);
  v_work := hf_settle(v_names, v_now);
  DELETE FROM waiters WHERE id = p_ticket AND alive_until > v_now AND deadline > v_now RETURNING * INTO q;
  IF FOUND THEN
    v_work := hf_merge(v_work, hf_work(jsonb_build_array(hf_change('left', q.owner, hf_keys(q.resources), NULL, NULL, v_now))));
    RETURN hf_result('false', hf_merge(v_work, hf_promote(hf_keys(q.resources), v_now)), v_now);
  END IF;
  SELECT * INTO l FROM leases WHERE id = p_ticket AND expires_at > v_now;
  IF FOUND THEN
    v_work := hf_merge(v_work, hf_work(jsonb_build_array(hf_end_lease(l, 'released', 'cancelled', l.owner, v_now, false, v_now))));
    RETURN hf_result('true', hf_merge(v_work, hf_promote(hf_keys(l.resources), v_now)), v_now);
  END IF;
  RETURN hf_result('false', v_work, v_now);
END $$;

CREATE FUNCTION hf_renew(p_id text, p_ttl_ms bigint, p_origin text) RETURNS jsonb LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
  v_names text[];
  v_now bigint;
  v_work jsonb;
  l leases;
BEGIN
  SELECT * INTO v_names, v_now FROM hf_start_id(p_id, p_origin);
  v_work := hf_settle(v_names, v_now);
  IF p_ttl_ms IS NULL OR p_ttl_ms < 1 THEN PERFORM hf_invalid('ttlMs', 'expected a positive number of milliseconds'); END IF;
  UPDATE leases SET expires_at = v_now + p_ttl_ms, ttl_ms = p_ttl_ms WHERE id = p_id AND expires_at > v_now RETURNING * INTO l;
  IF FOUND THEN
    RETURN hf_result(jsonb_build_object('status', 'renewed', 'lease', hf_lease_json(l), 'now', v_now), v_work, v_now);
  END IF;
  RETURN hf_result(jsonb_build_object('now', v_now, 'status',
    CASE WHEN EXISTS (SELECT 1 FROM history WHERE lease_id = p_id AND type <> 'acquired') OR EXISTS (SELECT 1 FROM leases WHERE id = p_id)
         THEN 'lost' ELSE 'unknown' END), v_work, v_now);
END $$;

CREATE FUNCTION hf_release(p_id text, p_origin text) RETURNS jsonb LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
  v_names text[];
  v_now bigint;
  v_work jsonb;
  l leases;
BEGIN
  SELECT * INTO v_names, v_now FROM hf_start_id(p_id, p_origin);
  v_work := hf_settle(v_names, v_now);
  SELECT * INTO l FROM leases WHERE id = p_id AND expires_at > v_now;
  IF NOT FOUND THEN RETURN hf_result('false', v_work, v_now); END IF;
  v_work := hf_merge(v_work, hf_work(jsonb_build_array(hf_end_lease(l, 'released', 'release', l.owner, v_now, false, v_now))));
  RETURN hf_result('true', hf_merge(v_work, hf_promote(hf_keys(l.resources), v_now)), v_now);
END $$;
