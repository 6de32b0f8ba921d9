-- ================================================================================================
-- Part 11: key rows without a foreign key.
--
-- `held.lease_id` has no foreign key to `leases (id)` (it had one while unreleased). A foreign key costs two trigger
-- queries per lease: a `SELECT ... FOR KEY SHARE` of the new lease row (which also writes a row
-- lock to the WAL) when its key rows are inserted, and a cascading `DELETE` when it ends. Every
-- lease row and its key rows are written and deleted together by the functions of this schema,
-- and only there: rows are inserted by hf_grant, hf_promote_ids' grants, the fast paths of
-- part 8 and the lean acquire of part 9, always in the same statement or function as
-- the lease; leases are deleted only by hf_end_lease and the lean hf_release, which delete
-- the key rows in the same statement. (A test checks that no key row outlives its lease after a
-- mix of every operation: test/stores/postgres/rows.test.ts.)
--
-- The lean hf_release also finds the waiters on related keys from the lease's one key directly
-- (two index probes) instead of going through its resources' JSON; leases of several keys do
-- as before, per key.
--
-- Inputs and outputs are unchanged: hf_release(id, origin) returns the json of part 9.

-- As in part 2, deleting the lease's key rows itself.
CREATE FUNCTION hf_end_lease(l leases, p_type text, p_reason text, p_by text, p_at bigint, p_delay boolean, p_now bigint)
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

-- As in part 9, deleting the lease's key rows in the statement that deletes the lease.
CREATE FUNCTION hf_release(p_id text, p_origin text) RETURNS json LANGUAGE plpgsql SET search_path FROM CURRENT SET enable_seqscan = off AS $$
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


-- ================================================================================================
-- Part 12: a grant is dated when it is made, not when its
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
-- grant time); hf_promote_ids returns the work of part 9, each grant's change dated like its
-- lease.

CREATE FUNCTION hf_grant(p_id text, p_owner text, p_resources jsonb, p_ttl_ms bigint, p_request_id text,
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

-- As in part 9, with each grant's change dated by its lease's acquired_at.
CREATE FUNCTION hf_promote_ids(p_ids text[], p_now bigint) RETURNS jsonb LANGUAGE plpgsql AS $$
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
