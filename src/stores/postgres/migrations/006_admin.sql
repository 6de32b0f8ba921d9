-- holdfast PostgreSQL store, migration 6: owner cleanup, force release, sweeping, the follow-up of
-- deferred work, and the read-only queries.

-- Ends every live lease of an owner (only those holding `p_key` exactly, when given), with
-- lock-delay, recorded with who asked.
CREATE FUNCTION hf_release_owner(p_owner text, p_key text, p_by text, p_origin text)
RETURNS jsonb LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
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
RETURNS jsonb LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
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
CREATE FUNCTION hf_sweep(p_batch integer, p_origin text) RETURNS jsonb LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
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
RETURNS jsonb LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
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
