-- ================================================================================================
-- Part 8: fast paths. Same algorithm, same guarantees, less work
-- per call:
--
-- * hf_start takes its advisory locks in one statement and remembers the names it locked
--   (transaction-local setting `holdfast.locked`), so promotion knows which rows it already sees
--   under its own locks and needs no try-lock and no re-read for them.
-- * hf_settle first asks, with one indexed query, whether anything under the roots is due at all.
--   The common answer is no, and then it does nothing else. When it does work it deletes dead
--   waiters only if they are still due (a concurrent heartbeat may have refreshed one, see hf_poll).
-- * Promotion is set-based: the candidates (live waiters related to the freed keys) come from one
--   query in queue order; each is decided by one boolean query (hf_is_blocked, the mirror of
--   isBlocked in src/stores/table/blockers.ts: held leases first, no holder JSON); and a candidate
--   that has a resource on the same key as an earlier blocked candidate, where at least one of
--   the two is exclusive, is blocked by that earlier waiter and is decided without any query. So
--   a release in front of N waiters of one key costs a few statements, not N blocker lists.
-- * Grants are one statement (lease, key rows and history event).
-- * hf_acquire checks a request with only exclusive resources with hf_is_blocked, and builds
--   holder data only when the answer is busy or queued.
-- * hf_poll answers a waiting ticket without taking any root lock when that changes no conflict
--   state: the lease if the ticket was granted; otherwise, when the waiter is live, nothing under
--   its roots is due and it is still blocked, `queued` with its held blockers (its heartbeat
--   refreshed only when a third of waiter_ttl_ms has passed). A promotion deletes the waiter and
--   inserts the lease in one transaction, and each statement at READ COMMITTED sees all of it or
--   none of it, so a poll that finds neither row reads the lease once more. Everything else
--   (granting, answering gone) takes the locking path of part 5.

CREATE FUNCTION hf_start(p_names text[], p_origin text) RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN
  IF current_setting('transaction_isolation') <> 'read committed' THEN
    RAISE EXCEPTION USING ERRCODE = 'HF503',
      MESSAGE = 'holdfast needs READ COMMITTED transactions, got ' || current_setting('transaction_isolation');
  END IF;
  PERFORM set_config('holdfast.origin', coalesce(p_origin, ''), true),
          set_config('holdfast.locked', coalesce(p_names, '{}')::text, true);
  -- The subquery sorts; the outer projection takes the locks one by one in that order.
  PERFORM pg_advisory_xact_lock(s.id) FROM (SELECT DISTINCT hf_lock_id(n) AS id FROM unnest(p_names) AS n ORDER BY 1) s;
  RETURN hf_now();
END $$;

-- The names hf_start locked in this transaction (empty outside an operation).
CREATE FUNCTION hf_locked() RETURNS text[] LANGUAGE plpgsql STABLE AS $$
BEGIN
  RETURN coalesce(nullif(current_setting('holdfast.locked', true), '')::text[], '{}');
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

-- Ends what has fallen due under `p_roots`, then grants what that freed; nothing at all (one
-- indexed query) when nothing is due.
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
  IF NOT EXISTS (SELECT 1 FROM leases WHERE expires_at <= p_now AND roots && p_roots)
     AND NOT EXISTS (SELECT 1 FROM waiters WHERE least(alive_until, deadline) <= p_now AND roots && p_roots)
     AND NOT EXISTS (SELECT 1 FROM delays WHERE until <= p_now AND root = ANY (p_roots)) THEN
    RETURN '{"changes": [], "roots": [], "tickets": []}'::jsonb;
  END IF;

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
    -- Still due: a poll refreshes a heartbeat without the root locks (hf_poll).
    DELETE FROM waiters WHERE id = v_id AND least(alive_until, deadline) <= p_now RETURNING * INTO q;
    CONTINUE WHEN NOT FOUND;
    v_changes := v_changes || hf_change('timed-out', q.owner, hf_keys(q.resources), NULL, NULL, least(q.deadline, q.alive_until));
    v_freed := v_freed || hf_keys(q.resources);
  END LOOP;

  FOR v_key IN DELETE FROM delays WHERE until <= p_now AND root = ANY (p_roots) RETURNING key LOOP
    v_freed := v_freed || v_key;
  END LOOP;

  RETURN hf_merge(hf_work(v_changes, v_deferred, '{}'), hf_promote(v_freed, p_now));
END $$;

-- The answer of every operation, in one statement.
CREATE FUNCTION hf_result(p_value jsonb, p_work jsonb, p_now bigint) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
  RETURN jsonb_build_object('value', p_value, 'changes', p_work->'changes',
    'roots', CASE WHEN p_work->'roots' = '[]'::jsonb THEN '[]'::jsonb
                  ELSE (SELECT coalesce(jsonb_agg(DISTINCT r), '[]') FROM jsonb_array_elements_text(p_work->'roots') r) END,
    'tickets', CASE WHEN p_work->'tickets' = '[]'::jsonb THEN '[]'::jsonb
                    ELSE (SELECT coalesce(jsonb_agg(DISTINCT t), '[]') FROM jsonb_array_elements_text(p_work->'tickets') t) END,
    'nextDue', least((SELECT min(expires_at) FROM leases), (SELECT min(least(alive_until, deadline)) FROM waiters),
                     (SELECT min(until) FROM delays)),
    'now', p_now);
END $$;

-- As in part 5, with the cheap eligibility check first.
CREATE FUNCTION hf_acquire_full(p_request jsonb, p_wait_ms bigint, p_waiter_ttl_ms bigint, p_origin text)
RETURNS jsonb LANGUAGE plpgsql SET search_path FROM CURRENT SET enable_seqscan = off AS $$
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

  -- Holder data only for an answer that shows it: a request with only exclusive resources has no
  -- limit to agree on, so one boolean query decides it.
  IF NOT (v_resources @> '[{"mode": "shared"}]'::jsonb) AND NOT hf_is_blocked(v_resources, NULL, v_id, v_now) THEN
    v_b := '{"holders": []}'::jsonb;
  ELSE
    v_b := hf_blockers(v_resources, NULL, v_id, v_now, false);
  END IF;
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

-- A poll. The fast path (see the top of this file) reads without root locks and changes nothing
-- but the waiter's own heartbeat; anything else goes the locking way of part 5.
CREATE FUNCTION hf_poll(p_ticket text, p_origin text) RETURNS jsonb LANGUAGE plpgsql SET search_path FROM CURRENT SET enable_seqscan = off AS $$
DECLARE
  v_names text[];
  v_now bigint;
  v_work jsonb;
  v_q jsonb;
  v_b jsonb;
  l leases;
  q waiters;
BEGIN
  IF current_setting('transaction_isolation') = 'read committed' THEN
    v_now := hf_now();
    SELECT * INTO l FROM leases WHERE id = p_ticket AND expires_at > v_now;
    IF NOT FOUND THEN
      SELECT * INTO q FROM waiters WHERE id = p_ticket AND alive_until > v_now AND deadline > v_now;
      IF NOT FOUND THEN
        -- Granted between the two reads? (A promotion deletes the waiter and adds the lease at once.)
        SELECT * INTO l FROM leases WHERE id = p_ticket AND expires_at > v_now;
      ELSIF NOT EXISTS (SELECT 1 FROM leases WHERE expires_at <= v_now AND roots && q.roots)
            AND NOT EXISTS (SELECT 1 FROM waiters WHERE least(alive_until, deadline) <= v_now AND roots && q.roots)
            AND NOT EXISTS (SELECT 1 FROM delays WHERE until <= v_now AND root = ANY (q.roots)) THEN
        v_b := hf_held_blockers(q.resources, q.id, v_now);
        IF v_b IS NOT NULL OR hf_is_blocked(q.resources, q.seq, q.id, v_now) THEN
          -- Still queued. The heartbeat is written only when a third of its period has passed.
          IF q.alive_until - v_now < (q.waiter_ttl_ms * 2)::numeric / 3 THEN
            UPDATE waiters SET alive_until = v_now + waiter_ttl_ms WHERE id = p_ticket AND alive_until > v_now
            RETURNING * INTO q;
            IF NOT FOUND THEN
              -- Granted (or dropped) meanwhile.
              SELECT * INTO l FROM leases WHERE id = p_ticket AND expires_at > v_now;
              IF FOUND THEN
                RETURN hf_result(jsonb_build_object('status', 'granted', 'lease', hf_lease_json(l), 'now', v_now), hf_work(), v_now);
              END IF;
              q := NULL;
            END IF;
          END IF;
          IF q.id IS NOT NULL THEN
            IF v_b IS NULL THEN v_b := hf_blockers(q.resources, q.seq, q.id, v_now, false); END IF;
            IF jsonb_array_length(v_b->'holders') > 0 THEN
              RETURN hf_result(jsonb_build_object('status', 'queued', 'holders', v_b->'holders', 'now', v_now)
                               || hf_hints(v_b, v_now), hf_work(), v_now);
            END IF;
          END IF;
        END IF;
      END IF;
    END IF;
    IF l.id IS NOT NULL THEN
      RETURN hf_result(jsonb_build_object('status', 'granted', 'lease', hf_lease_json(l), 'now', v_now), hf_work(), v_now);
    END IF;
  END IF;

  -- The locking path.
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
  IF q.alive_until - v_now < (q.waiter_ttl_ms * 2)::numeric / 3 THEN
    UPDATE waiters SET alive_until = v_now + waiter_ttl_ms WHERE id = p_ticket RETURNING * INTO q;
  END IF;
  v_q := hf_queued(q, v_now, false);
  RETURN hf_result(v_q->'outcome', hf_merge(v_work, hf_work(v_q->'changes')), v_now);
END $$;


