-- ================================================================================================
-- Part 4: settling and promotion (mirrors Operation.settle and
-- Operation.promote of src/stores/table/operations.ts).
--
-- Work results are jsonb objects { changes: [...], roots: [...], tickets: [...] }: the changes to
-- publish, and the roots and tickets deferred because their locks were busy (see 002_core.sql).

CREATE FUNCTION hf_work(p_changes jsonb DEFAULT '[]', p_roots text[] DEFAULT '{}', p_tickets text[] DEFAULT '{}')
RETURNS jsonb LANGUAGE sql STABLE AS $$
  SELECT jsonb_build_object('changes', p_changes, 'roots', to_jsonb(p_roots), 'tickets', to_jsonb(p_tickets))
$$;

CREATE FUNCTION hf_merge(a jsonb, b jsonb) RETURNS jsonb LANGUAGE sql STABLE AS $$
  SELECT jsonb_build_object('changes', (a->'changes') || (b->'changes'), 'roots', (a->'roots') || (b->'roots'),
                            'tickets', (a->'tickets') || (b->'tickets'))
$$;

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


-- ================================================================================================
-- Part 5: the lease operations (mirror acquire, poll, cancel,
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

CREATE FUNCTION hf_cancel(p_ticket text, p_origin text) RETURNS jsonb LANGUAGE plpgsql SET search_path FROM CURRENT SET enable_seqscan = off AS $$
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

CREATE FUNCTION hf_renew(p_id text, p_ttl_ms bigint, p_origin text) RETURNS jsonb LANGUAGE plpgsql SET search_path FROM CURRENT SET enable_seqscan = off AS $$
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

CREATE FUNCTION hf_release_full(p_id text, p_origin text) RETURNS jsonb LANGUAGE plpgsql SET search_path FROM CURRENT SET enable_seqscan = off AS $$
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


-- ================================================================================================
-- Part 6: owner cleanup, force release, sweeping, the follow-up of
-- deferred work, and the read-only queries.

-- Ends every live lease of an owner (only those holding `p_key` exactly, when given), with
-- lock-delay, recorded with who asked.

CREATE FUNCTION hf_release_owner(p_owner text, p_key text, p_by text, p_origin text)
RETURNS jsonb LANGUAGE plpgsql SET search_path FROM CURRENT SET enable_seqscan = off AS $$
DECLARE
  v_names text[] := (SELECT coalesce(array_agg(DISTINCT r), '{}') FROM leases l, unnest(l.roots) r
                     WHERE l.owner = p_owner AND (p_key IS NULL OR l.resources @> jsonb_build_array(jsonb_build_object('key', p_key))));
  v_now bigint := hf_start(v_names, p_origin);
  v_work jsonb := hf_settle(v_names, v_now);
  v_id text;
  l leases;
  v_freed text[] := '{}';
  v_changes jsonb := '[]';
  v_count integer := 0;
BEGIN
  FOR v_id IN SELECT id FROM leases WHERE owner = p_owner AND expires_at > v_now AND roots <@ v_names
                AND (p_key IS NULL OR resources @> jsonb_build_array(jsonb_build_object('key', p_key))) ORDER BY fence LOOP
    SELECT * INTO l FROM leases WHERE id = v_id AND expires_at > v_now;
    CONTINUE WHEN NOT FOUND;
    v_changes := v_changes || hf_end_lease(l, 'released', 'release-owner', p_by, v_now, true, v_now);
    v_freed := v_freed || hf_keys(l.resources);
    v_count := v_count + 1;
  END LOOP;
  RETURN hf_result(to_jsonb(v_count), hf_merge(hf_merge(v_work, hf_work(v_changes)), hf_promote(v_freed, v_now)), v_now);
END $$;

-- Ends every live lease holding exactly `p_key`, with lock-delay, recorded as forced by `p_by`.
CREATE FUNCTION hf_force_release(p_key text, p_by text, p_origin text)
RETURNS jsonb LANGUAGE plpgsql SET search_path FROM CURRENT SET enable_seqscan = off AS $$
DECLARE
  v_names text[] := (SELECT coalesce(array_agg(DISTINCT r), '{}') FROM held h JOIN leases l ON l.id = h.lease_id, unnest(l.roots) r
                     WHERE h.key = (p_key COLLATE "C")) || split_part(p_key, '/', 1);
  v_now bigint := hf_start(v_names, p_origin);
  v_work jsonb := hf_settle(v_names, v_now);
  v_id text;
  l leases;
  v_freed text[] := '{}';
  v_changes jsonb := '[]';
  v_count integer := 0;
BEGIN
  FOR v_id IN SELECT l2.id FROM held h JOIN leases l2 ON l2.id = h.lease_id
              WHERE h.key = (p_key COLLATE "C") AND l2.expires_at > v_now AND l2.roots <@ v_names ORDER BY l2.fence LOOP
    SELECT * INTO l FROM leases WHERE id = v_id AND expires_at > v_now;
    CONTINUE WHEN NOT FOUND;
    v_changes := v_changes || hf_end_lease(l, 'forced', 'force', p_by, v_now, true, v_now);
    v_freed := v_freed || hf_keys(l.resources);
    v_count := v_count + 1;
  END LOOP;
  RETURN hf_result(to_jsonb(v_count), hf_merge(hf_merge(v_work, hf_work(v_changes)), hf_promote(v_freed, v_now)), v_now);
END $$;

-- Settles every root that has something due (at most `p_batch` items per kind per call; the
-- returned nextDue is then already due, and the caller sweeps again).
CREATE FUNCTION hf_sweep(p_batch integer, p_origin text) RETURNS jsonb LANGUAGE plpgsql SET search_path FROM CURRENT SET enable_seqscan = off AS $$
DECLARE
  v_clock bigint := hf_now();
  v_names text[] := (SELECT coalesce(array_agg(DISTINCT r), '{}') FROM (
      (SELECT unnest(roots) AS r FROM (SELECT roots FROM leases WHERE expires_at <= v_clock ORDER BY expires_at LIMIT p_batch) a)
      UNION (SELECT unnest(roots) FROM (SELECT roots FROM waiters WHERE least(alive_until, deadline) <= v_clock
                                        ORDER BY least(alive_until, deadline) LIMIT p_batch) b)
      UNION (SELECT root FROM (SELECT root FROM delays WHERE until <= v_clock ORDER BY until LIMIT p_batch) c)) s);
  v_now bigint := hf_start(v_names, p_origin);
BEGIN
  IF cardinality(v_names) = 0 THEN RETURN hf_result('null', hf_work(), v_now); END IF;
  RETURN hf_result('null', hf_settle(v_names, v_now), v_now);
END $$;

-- The follow-up of deferred work: locks the deferred roots and the roots of the deferred
-- tickets (blocking, sorted), settles them and promotes the tickets that became eligible.
CREATE FUNCTION hf_follow_up(p_roots text[], p_tickets text[], p_origin text)
RETURNS jsonb LANGUAGE plpgsql SET search_path FROM CURRENT SET enable_seqscan = off AS $$
DECLARE
  v_names text[] := p_roots || (SELECT coalesce(array_agg(DISTINCT r), '{}') FROM waiters q, unnest(q.roots) r WHERE q.id = ANY (p_tickets));
  v_now bigint := hf_start(v_names, p_origin);
BEGIN
  RETURN hf_result('null', hf_merge(hf_settle(v_names, v_now), hf_promote_ids(p_tickets, v_now)), v_now);
END $$;

-- Read-only: a live lease or null.
CREATE FUNCTION hf_get(p_id text) RETURNS jsonb LANGUAGE sql STABLE SET search_path FROM CURRENT AS $$
  SELECT hf_lease_json(l) FROM leases l WHERE l.id = p_id AND l.expires_at > hf_now()
$$;

-- Read-only: live held resources and waiters with a key starting with `p_prefix`; waiters in
-- queue order with their 1-based position among the waiters of their key. Times in ms.
CREATE FUNCTION hf_list(p_prefix text) RETURNS jsonb LANGUAGE plpgsql STABLE SET search_path FROM CURRENT AS $$
DECLARE
  v_now bigint := hf_now();
BEGIN
  RETURN jsonb_build_object(
    'locks', (SELECT coalesce(jsonb_agg(jsonb_build_object('key', h.key, 'mode', h.mode, 'limit', h.lim, 'owner', l.owner,
                'fence', l.fence, 'acquiredAt', l.acquired_at, 'expiresAt', l.expires_at, 'metadata', l.metadata)
                ORDER BY h.key, l.fence), '[]')
              FROM held h JOIN leases l ON l.id = h.lease_id
              WHERE starts_with(h.key, p_prefix COLLATE "C") AND l.expires_at > v_now),
    'waiters', (SELECT coalesce(jsonb_agg(jsonb_build_object('key', s.key, 'mode', s.mode, 'limit', s.lim, 'owner', s.owner,
                  'position', s.position, 'since', s.enqueued_at, 'waitUntil', s.deadline, 'metadata', s.metadata)
                  ORDER BY s.seq, s.idx), '[]')
                FROM (SELECT w.key, w.mode, w.lim, w.idx, q.owner, q.seq, q.enqueued_at, q.deadline, q.metadata,
                             row_number() OVER (PARTITION BY w.key ORDER BY q.seq) AS position
                      FROM waiting w JOIN waiters q ON q.id = w.waiter_id
                      WHERE starts_with(w.key, p_prefix COLLATE "C") AND q.alive_until > v_now AND q.deadline > v_now) s),
    'now', v_now);
END $$;

-- Read-only: past events, newest first.
CREATE FUNCTION hf_history(p_key text, p_owner text, p_limit integer, p_before bigint)
RETURNS jsonb LANGUAGE sql STABLE SET search_path FROM CURRENT AS $$
  SELECT coalesce(jsonb_agg(jsonb_build_object('id', e.id, 'at', e.at, 'type', e.type, 'owner', e.owner, 'fence', e.fence,
           'resources', e.resources, 'by', e.by, 'reason', e.reason) ORDER BY e.id DESC), '[]')
  FROM (SELECT * FROM history
        WHERE (p_key IS NULL OR resources @> jsonb_build_array(jsonb_build_object('key', p_key)))
          AND (p_owner IS NULL OR owner = p_owner) AND (p_before IS NULL OR id < p_before)
        ORDER BY id DESC LIMIT p_limit) e
$$;

-- Read-only: grants made since `p_since` (store ms) that are still live, as changes, for a
-- listener that was disconnected and may have missed their notifications.
CREATE FUNCTION hf_recent_grants(p_since bigint) RETURNS jsonb LANGUAGE sql STABLE SET search_path FROM CURRENT AS $$
  SELECT coalesce(jsonb_agg(hf_change('acquired', l.owner, hf_keys(l.resources), l.fence, ARRAY[l.id], l.acquired_at)
                            ORDER BY l.fence), '[]')
  FROM leases l WHERE l.acquired_at >= p_since AND l.expires_at > hf_now()
$$;


-- ================================================================================================
-- Part 7: a bounded history.
--
-- `hf_sweep(batch, origin, history_limit)` sweeps like the two-argument one of part 6 (which it
-- calls) and then prunes the history:
-- it deletes the events whose id is at least `history_limit` below the newest id. max(id) and
-- the range both come from the primary key index, so this costs what it deletes. At most
-- `p_batch * 10` rows go per call (a backlog, e.g. the first sweep after historyLimit was lowered, is
-- worked off by the following sweeps), and rows another sweep is deleting are skipped rather
-- than waited for: a sweep holds root locks, and must never wait for another one.
--
-- The history also tells an ended lease from an unknown id (hf_renew): once the events of an
-- ended lease are pruned, renewing it answers 'unknown' (NOT_FOUND) instead of 'lost'.

CREATE FUNCTION hf_prune_history(p_limit bigint, p_max integer) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
  v_cutoff bigint;
  v_count integer;
BEGIN
  IF p_limit IS NULL OR p_limit < 1 THEN RETURN 0; END IF;
  v_cutoff := (SELECT max(id) FROM history) - p_limit;
  IF v_cutoff IS NULL OR v_cutoff < 1 THEN RETURN 0; END IF;
  DELETE FROM history WHERE id IN (
    SELECT id FROM history WHERE id <= v_cutoff ORDER BY id LIMIT p_max FOR UPDATE SKIP LOCKED);
  GET DIAGNOSTICS v_count = ROW_COUNT;
  RETURN v_count;
END $$;

CREATE FUNCTION hf_sweep(p_batch integer, p_origin text, p_history_limit bigint)
RETURNS jsonb LANGUAGE plpgsql SET search_path FROM CURRENT SET enable_seqscan = off AS $$
DECLARE
  v_result jsonb := hf_sweep(p_batch, p_origin);
BEGIN
  PERFORM hf_prune_history(p_history_limit, p_batch * 10);
  RETURN v_result;
END $$;


