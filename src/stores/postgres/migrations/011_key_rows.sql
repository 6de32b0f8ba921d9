-- holdfast PostgreSQL store, migration 11: key rows without a foreign key.
--
-- `held.lease_id` referenced `leases (id) ON DELETE CASCADE`. A foreign key costs two trigger
-- queries per lease: a `SELECT ... FOR KEY SHARE` of the new lease row (which also writes a row
-- lock to the WAL) when its key rows are inserted, and a cascading `DELETE` when it ends. Every
-- lease row and its key rows are written and deleted together by the functions of this schema,
-- and only there: rows are inserted by hf_grant, hf_promote_ids' grants, the fast paths of
-- migration 8 and the lean acquire of migration 9, always in the same statement or function as
-- the lease; leases are deleted only by hf_end_lease and the lean hf_release, which now delete
-- the key rows in the same statement. (A test checks that no key row outlives its lease after a
-- mix of every operation: test/stores/postgres/rows.test.ts.)
--
-- The lean hf_release also finds the waiters on related keys from the lease's one key directly
-- (two index probes) instead of going through its resources' JSON; leases of several keys do
-- as before, per key.
--
-- Inputs and outputs are unchanged: hf_release(id, origin) returns the json of migration 9.

ALTER TABLE held DROP CONSTRAINT held_lease_id_fkey;

-- As in migration 2, deleting the lease's key rows itself.
CREATE OR REPLACE FUNCTION hf_end_lease(l leases, p_type text, p_reason text, p_by text, p_at bigint, p_delay boolean, p_now bigint)
RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM leases WHERE id = l.id;
  DELETE FROM held WHERE lease_id = l.id;
  INSERT INTO history (at, type, owner, fence, resources, by, reason, lease_id)
  VALUES (p_at, p_type, l.owner, l.fence, l.resources, p_by, p_reason, l.id);
  IF p_delay AND l.lock_delay_ms > 0 AND p_at + l.lock_delay_ms > p_now THEN
    INSERT INTO delays (key, root, until, owner, fence, since, metadata)
    SELECT e->>'key', split_part(e->>'key', '/', 1), p_at + l.lock_delay_ms, l.owner, l.fence, p_at, l.metadata
    FROM jsonb_array_elements(l.resources) e;
  END IF;
  RETURN hf_change(p_type, l.owner, hf_keys(l.resources), l.fence, NULL, p_at);
END $$;

-- As in migration 9, deleting the lease's key rows in the statement that deletes the lease.
CREATE OR REPLACE FUNCTION hf_release(p_id text, p_origin text) RETURNS json LANGUAGE plpgsql SET search_path FROM CURRENT SET enable_seqscan = off AS $$
DECLARE
  v_path text COLLATE "C";  -- the lease's one key (path locks), or NULL (root lock)
  v_root text;
  v_now bigint;
  v_work jsonb;
  v_next record;
  v_related text[] COLLATE "C";  -- the released key and its ancestors (a lease of one key)
  v_waiters text[];  -- waiters on related keys
  v_grant json;
  l record;
BEGIN
  -- A lease's keys never change, so they may be read before their locks are taken; the lease
  -- itself is read again (deleted) by a later statement, under the locks.
  SELECT CASE WHEN jsonb_array_length(resources) = 1 THEN resources->0->>'key' END, roots[1]
  INTO v_path, v_root FROM leases WHERE id = p_id AND cardinality(roots) = 1;
  IF NOT FOUND THEN RETURN hf_release_full(p_id, p_origin)::json; END IF;
  IF v_path IS NOT NULL THEN
    PERFORM hf_lock_path(v_path);
  ELSE
    PERFORM pg_advisory_xact_lock(hf_lock_id(v_root));
  END IF;
  v_now := hf_now();
  WITH gone AS (DELETE FROM leases WHERE id = p_id AND expires_at > v_now RETURNING id, owner, fence, resources, roots),
  keys AS (DELETE FROM held h USING gone WHERE h.lease_id = gone.id),
  ev AS (INSERT INTO history (at, type, owner, fence, resources, by, reason, lease_id)
         SELECT v_now, 'released', gone.owner, gone.fence, gone.resources, gone.owner, 'release', gone.id FROM gone)
  SELECT gone.owner, gone.fence, gone.roots, gone.resources, hf_keys(gone.resources) AS keys
  INTO l FROM gone;
  IF NOT FOUND THEN
    -- It ran out (or ended) meanwhile: the full path settles it, under the root exclusive.
    IF v_path IS NULL OR v_path = v_root THEN RETURN hf_release_full(p_id, p_origin)::json; END IF;
    RETURN hf_retry(v_now);
  END IF;

  -- Waiters on a freed key, an ancestor or a descendant of one (probed as in hf_acquire): for
  -- a lease of one key, straight from its key; for several, per key.
  IF v_path IS NOT NULL THEN
    v_related := CASE WHEN strpos(v_path, '/') = 0 THEN ARRAY[v_path] ELSE hf_ancestors(v_path) || v_path END;
    v_waiters := ARRAY(SELECT w.waiter_id FROM waiting w WHERE w.key = ANY (v_related)
                       UNION
                       SELECT w.waiter_id FROM waiting w WHERE w.key > v_path || '/' AND w.key < v_path || '0');
  ELSE
    v_waiters := ARRAY(SELECT DISTINCT x.waiter_id
      FROM unnest(l.keys) AS f(k),
      LATERAL (SELECT w.waiter_id FROM waiting w WHERE w.key = ANY (hf_ancestors(f.k) || f.k COLLATE "C")
               UNION ALL
               SELECT w.waiter_id FROM waiting w WHERE w.key > (f.k || '/') COLLATE "C" AND w.key < (f.k || '0') COLLATE "C") x);
  END IF;
  IF cardinality(v_waiters) = 0 THEN
    RETURN json_build_object('value', true,
      'changes', json_build_array(json_build_object('type', 'released', 'owner', l.owner, 'keys', l.keys, 'fence', l.fence,
                                                    'granted', '[]'::json, 'at', v_now)),
      'roots', '[]'::json, 'tickets', '[]'::json, 'nextDue', NULL, 'now', v_now);
  END IF;
  -- The common hand-off: the lease held one key, exclusively, and the first live waiter on a
  -- related key waits for exactly that key, exclusively. Every other candidate is related to the
  -- key, so that waiter blocks them all; it is granted in one statement when no row at all (live
  -- or not) is held on a related key and no lock-delay is recorded on one.
  IF cardinality(l.keys) = 1 AND l.resources = jsonb_build_array(jsonb_build_object('key', l.keys[1], 'mode', 'exclusive', 'limit', NULL)) THEN
    SELECT q.id, q.resources INTO v_next FROM waiters q
    WHERE q.id = ANY (v_waiters) AND q.deadline > v_now AND q.alive_until > v_now ORDER BY q.seq LIMIT 1;
    IF FOUND AND v_next.resources = l.resources
       AND NOT EXISTS (SELECT 1 FROM held WHERE key = ANY (v_related))
       AND NOT EXISTS (SELECT 1 FROM held WHERE key > l.keys[1] || '/' AND key < l.keys[1] || '0')
       AND NOT EXISTS (SELECT 1 FROM delays WHERE key = ANY (v_related))
       AND NOT EXISTS (SELECT 1 FROM delays WHERE key > l.keys[1] || '/' AND key < l.keys[1] || '0') THEN
      WITH gone AS (DELETE FROM waiters WHERE id = v_next.id RETURNING *),
      ins AS (
        INSERT INTO leases (id, owner, resources, roots, fence, acquired_at, expires_at, ttl_ms, request_id, metadata, lock_delay_ms)
        SELECT g.id, g.owner, g.resources, g.roots, nextval('fence_seq'), v_now, v_now + g.ttl_ms, g.ttl_ms, g.request_id, g.metadata,
               g.lock_delay_ms
        FROM gone g
        RETURNING id, owner, fence, expires_at),
      keys AS (INSERT INTO held (lease_id, idx, key, mode, lim) SELECT ins.id, 0, l.keys[1], 'exclusive', NULL FROM ins),
      ev AS (INSERT INTO history (at, type, owner, fence, resources, by, reason, lease_id)
             SELECT v_now, 'acquired', ins.owner, ins.fence, l.resources, NULL, NULL, ins.id FROM ins)
      SELECT json_build_object('type', 'acquired', 'owner', ins.owner, 'keys', l.keys, 'fence', ins.fence,
                               'granted', json_build_array(ins.id), 'at', v_now, 'expiresAt', ins.expires_at)
      INTO v_grant FROM ins;
      PERFORM pg_notify('hf_' || md5(current_schema()), json_build_object('o', coalesce(p_origin, ''), 'c', v_grant)::text);
      RETURN json_build_object('value', true,
        'changes', json_build_array(json_build_object('type', 'released', 'owner', l.owner, 'keys', l.keys, 'fence', l.fence,
                                                      'granted', '[]'::json, 'at', v_now), v_grant),
        'roots', '[]'::json, 'tickets', '[]'::json,
        'nextDue', (v_grant->>'expiresAt')::bigint, 'now', v_now);
    END IF;
  END IF;
  -- Promote them in queue order (as hf_promote does), under the lock already held.
  -- Under path locks nothing counts as locked: every candidate's roots are tried (never waited
  -- for), and a candidate whose locks are busy is left to the follow-up.
  PERFORM set_config('holdfast.origin', coalesce(p_origin, ''), true),
          set_config('holdfast.locked', CASE WHEN v_path IS NULL OR v_path = v_root THEN l.roots ELSE '{}' END::text, true);
  v_work := hf_promote_ids(v_waiters, v_now);
  RETURN hf_result('true', hf_merge(hf_work(jsonb_build_array(hf_change('released', l.owner, l.keys, l.fence, NULL, v_now))), v_work),
                   v_now)::json;
END $$;
