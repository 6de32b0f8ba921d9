-- holdfast PostgreSQL store, migration 6: one row per lease.
--
-- A lease had three rows over its life: its `leases` row, an `acquired` event in `history` when
-- it was granted and an end event when it ended (plus its `held` key rows while live). Now it has
-- one: its `leases` row while it is live, and one `history` row once it has ended, which records
-- both events (`acquired_id`, `acquired_at`: the grant; `id`, `at`, `type`, `by`, `reason`: the
-- end). PostgreSQL writes a new row version for every UPDATE anyway, so moving the row from
-- `leases` to `history` at its end costs what marking it ended in place would, and `leases` stays
-- small and holds only what conflict checks read. A grant writes no history row (its event is
-- read from the lease row) and an end writes one, as before.
--
-- Event ids (history ids, `beforeId`, /v1/events) come from one sequence, `event_seq`, which
-- continues the old identity column: a lease's acquired event id is taken when it is granted
-- (`leases.event_id`), its end event id when it ends, so ids still increase in the order the
-- events happened. The events already recorded keep their ids: an end row gets the id and time
-- of its lease's acquired event, a live lease the id of its own; acquired events of leases whose
-- end was pruned already go (they were the oldest). A live lease whose acquired event was pruned
-- keeps having none (`event_id` NULL; its end row then has no acquired event either).
--
-- The upgrade first locks both tables (leases first, the order operations write them in): an
-- operation in flight commits before the new sequence is set from the ids it took, and none can
-- write between the steps below. A role that runs holdfast without owning the schema needs USAGE
-- on `event_seq` from now on, as it does on `fence_seq`.
--
-- Changed, same signatures and outputs as before:
--   hf_acquire (baseline part 9), hf_grant (part 12): no history row on a grant;
--   hf_release (part 11): the end row carries the lease's acquired event; its hand-off grant
--     writes no history row;
--   hf_end_lease (migration 5): likewise;
--   hf_history(key, owner, limit, before): the newest events from three sources (end events,
--     acquired events of ended leases, acquired events of live leases), merged by id;
--   hf_prune_history(limit, max): deletes ended leases whose end event is `limit` or more ids
--     below the newest id the sequence gave (so both their events are out of the window).
-- A history row may no longer be an `acquired` event (a CHECK says so).

LOCK TABLE leases, history IN ACCESS EXCLUSIVE MODE;
CREATE SEQUENCE event_seq AS bigint MINVALUE 1 NO CYCLE;
-- Above every id the identity column gave, committed or not.
SELECT setval('event_seq', greatest(v, 1), v > 0) FROM (
  SELECT greatest(coalesce((SELECT max(id) FROM history), 0),
                  coalesce(pg_sequence_last_value(pg_get_serial_sequence('history', 'id')::regclass), 0)) AS v) s;
ALTER TABLE history ALTER COLUMN id DROP IDENTITY;
ALTER TABLE history ALTER COLUMN id SET DEFAULT nextval('event_seq');
ALTER TABLE history ADD COLUMN acquired_id bigint, ADD COLUMN acquired_at bigint;
ALTER TABLE leases ADD COLUMN event_id bigint;

UPDATE leases l SET event_id = a.id FROM history a WHERE a.lease_id = l.id AND a.type = 'acquired';
UPDATE history e SET acquired_id = a.id, acquired_at = a.at
FROM history a WHERE a.lease_id = e.lease_id AND a.type = 'acquired' AND e.type <> 'acquired';
DELETE FROM history WHERE type = 'acquired';

ALTER TABLE leases ALTER COLUMN event_id SET DEFAULT nextval('event_seq');
ALTER TABLE history ADD CONSTRAINT history_ends_only CHECK (type <> 'acquired'),
  ADD CONSTRAINT history_acquired_both CHECK ((acquired_id IS NULL) = (acquired_at IS NULL));
-- The acquired events of ended leases, newest first (hf_history).
CREATE INDEX history_acquired ON history (acquired_id);

-- As in migration 5, the end row carrying the lease's acquired event.
CREATE OR REPLACE FUNCTION hf_end_lease(l leases, p_type text, p_reason text, p_by text, p_at bigint, p_delay boolean, p_now bigint)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
  v_at bigint := greatest(p_at, l.acquired_at);
BEGIN
  DELETE FROM leases WHERE id = l.id;
  DELETE FROM held WHERE lease_id = l.id;
  INSERT INTO history (at, type, owner, fence, resources, by, reason, lease_id, acquired_id, acquired_at)
  VALUES (v_at, p_type, l.owner, l.fence, l.resources, p_by, p_reason, l.id, l.event_id,
          CASE WHEN l.event_id IS NOT NULL THEN l.acquired_at END);
  IF p_delay AND l.lock_delay_ms > 0 AND v_at + l.lock_delay_ms > p_now THEN
    INSERT INTO delays (key, root, until, owner, fence, since, metadata)
    SELECT e->>'key', split_part(e->>'key', '/', 1), v_at + l.lock_delay_ms, l.owner, l.fence, v_at, l.metadata
    FROM jsonb_array_elements(l.resources) e;
  END IF;
  RETURN hf_change(p_type, l.owner, hf_keys(l.resources), l.fence, NULL, v_at);
END $$;

-- Read-only: past events, newest first (as in the baseline part 6). Each source gives at most
-- `p_limit` of its newest matching events; the merge keeps the newest `p_limit` of those.
CREATE OR REPLACE FUNCTION hf_history(p_key text, p_owner text, p_limit integer, p_before bigint)
RETURNS jsonb LANGUAGE sql STABLE SET search_path FROM CURRENT AS $$
  SELECT coalesce(jsonb_agg(jsonb_build_object('id', e.id, 'at', e.at, 'type', e.type, 'owner', e.owner, 'fence', e.fence,
           'resources', e.resources, 'by', e.by, 'reason', e.reason) ORDER BY e.id DESC), '[]')
  FROM (
    SELECT * FROM (
      (SELECT h.id, h.at, h.type, h.owner, h.fence, h.resources, h.by, h.reason FROM history h
       WHERE (p_key IS NULL OR h.resources @> jsonb_build_array(jsonb_build_object('key', p_key)))
         AND (p_owner IS NULL OR h.owner = p_owner) AND (p_before IS NULL OR h.id < p_before)
       ORDER BY h.id DESC LIMIT p_limit)
      UNION ALL
      (SELECT h.acquired_id, h.acquired_at, 'acquired', h.owner, h.fence, h.resources, NULL, NULL FROM history h
       WHERE h.acquired_id IS NOT NULL
         AND (p_key IS NULL OR h.resources @> jsonb_build_array(jsonb_build_object('key', p_key)))
         AND (p_owner IS NULL OR h.owner = p_owner) AND (p_before IS NULL OR h.acquired_id < p_before)
       ORDER BY h.acquired_id DESC LIMIT p_limit)
      UNION ALL
      (SELECT l.event_id, l.acquired_at, 'acquired', l.owner, l.fence, l.resources, NULL, NULL FROM leases l
       WHERE l.event_id IS NOT NULL
         AND (p_key IS NULL OR l.resources @> jsonb_build_array(jsonb_build_object('key', p_key)))
         AND (p_owner IS NULL OR l.owner = p_owner) AND (p_before IS NULL OR l.event_id < p_before)
       ORDER BY l.event_id DESC LIMIT p_limit)
    ) s ORDER BY s.id DESC LIMIT p_limit) e
$$;

-- As in the baseline part 7, counting from the newest id the sequence gave: an ended lease goes
-- when its end event (its newest) is `p_limit` or more ids below it. The sequence is read with
-- pg_sequence_last_value, not scanned: under hf_sweep's `enable_seqscan = off` a scan of it costs
-- 1e10 and PostgreSQL JIT-compiles the statement, 120-170 ms a sweep (the fault harness found it).
CREATE OR REPLACE FUNCTION hf_prune_history(p_limit bigint, p_max integer) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
  v_cutoff bigint;
  v_count integer;
BEGIN
  IF p_limit IS NULL OR p_limit < 1 THEN RETURN 0; END IF;
  v_cutoff := coalesce(pg_sequence_last_value('event_seq'::regclass), 0) - p_limit;
  IF v_cutoff < 1 THEN RETURN 0; END IF;
  DELETE FROM history WHERE id IN (
    SELECT id FROM history WHERE id <= v_cutoff ORDER BY id LIMIT p_max FOR UPDATE SKIP LOCKED);
  GET DIAGNOSTICS v_count = ROW_COUNT;
  RETURN v_count;
END $$;

-- As in the baseline part 9, writing no history row.
CREATE OR REPLACE FUNCTION hf_acquire(p_request jsonb, p_wait_ms bigint, p_waiter_ttl_ms bigint, p_origin text)
RETURNS json LANGUAGE plpgsql SET search_path FROM CURRENT SET enable_seqscan = off AS $$
DECLARE
  v_res jsonb := p_request->'resources';
  v_id text := p_request->>'id';
  v_owner text := p_request->>'owner';
  v_metadata jsonb := coalesce(p_request->'metadata', '{}');
  v_ttl_n numeric;
  v_delay_n numeric;
  v_ttl bigint;
  v_delay bigint;
  v_key text COLLATE "C";
  v_keys text[] COLLATE "C";  -- the key and its ancestors
  v_lo text COLLATE "C";      -- its descendants are the keys in (v_lo, v_hi)
  v_hi text COLLATE "C";
  v_root text;
  v_resources jsonb;
  v_now bigint;
  v_out json;
BEGIN
  -- The lean path's shape: one exclusive key, no requestId, every field plainly valid.
  IF jsonb_typeof(v_res) IS DISTINCT FROM 'array' OR jsonb_array_length(v_res) <> 1
     OR jsonb_typeof(v_res->0->'key') IS DISTINCT FROM 'string' OR v_res->0->>'key' = ''
     OR (v_res->0->>'mode') IS DISTINCT FROM 'exclusive' OR (v_res->0->>'limit') IS NOT NULL
     OR (p_request->>'requestId') IS NOT NULL
     OR v_id IS NULL OR v_id = '' OR v_owner IS NULL OR v_owner = ''
     OR jsonb_typeof(p_request->'ttlMs') IS DISTINCT FROM 'number'
     OR jsonb_typeof(coalesce(p_request->'lockDelayMs', '0')) IS DISTINCT FROM 'number'
     OR jsonb_typeof(v_metadata) IS DISTINCT FROM 'object' THEN
    RETURN hf_acquire_full(p_request, p_wait_ms, p_waiter_ttl_ms, p_origin)::json;
  END IF;
  v_ttl_n := (p_request->>'ttlMs')::numeric;
  v_delay_n := coalesce((p_request->>'lockDelayMs')::numeric, 0);
  IF v_ttl_n NOT BETWEEN 1 AND 1e15 OR v_ttl_n <> trunc(v_ttl_n) OR v_delay_n NOT BETWEEN 0 AND 1e15 OR v_delay_n <> trunc(v_delay_n) THEN
    RETURN hf_acquire_full(p_request, p_wait_ms, p_waiter_ttl_ms, p_origin)::json;
  END IF;
  v_ttl := v_ttl_n;
  v_delay := v_delay_n;
  v_key := v_res->0->>'key';
  v_root := split_part(v_key, '/', 1);
  v_keys := CASE WHEN strpos(v_key, '/') = 0 THEN ARRAY[v_key] ELSE hf_ancestors(v_key) || v_key END;
  v_lo := v_key || '/';
  v_hi := v_key || '0';
  v_resources := jsonb_build_array(jsonb_build_object('key', v_key, 'mode', 'exclusive', 'limit', NULL));

  -- Under a root's own lock the full path can follow in this transaction; under path locks it
  -- could not (see the top). So a deeper key that is plainly taken or queued for (the common
  -- contended case) goes to the full path before any lock; what this look misses is caught under
  -- the locks below and answered `retry`.
  IF v_key <> v_root AND (EXISTS (SELECT 1 FROM held WHERE key = v_key) OR EXISTS (SELECT 1 FROM waiting WHERE key = v_key)) THEN
    RETURN hf_acquire_full(p_request, p_wait_ms, p_waiter_ttl_ms, p_origin)::json;
  END IF;
  PERFORM hf_lock_path(v_key);
  v_now := hf_now();
  -- A new statement, so a new snapshot: it sees everything committed under the root's lock. It
  -- grants only when no row at all is on the key, an ancestor or a descendant, and the id is new.
  WITH ins AS (
    INSERT INTO leases (id, owner, resources, roots, fence, acquired_at, expires_at, ttl_ms, request_id, metadata, lock_delay_ms)
    SELECT v_id, v_owner, v_resources, ARRAY[v_root], nextval('fence_seq'), v_now, v_now + v_ttl, v_ttl, NULL, v_metadata, v_delay
    -- The key and its ancestors, then its descendants: not OR-ed, so that each is one index probe.
    WHERE NOT EXISTS (SELECT 1 FROM held WHERE key = ANY (v_keys))
      AND NOT EXISTS (SELECT 1 FROM held WHERE key > v_lo AND key < v_hi)
      AND NOT EXISTS (SELECT 1 FROM waiting WHERE key = ANY (v_keys))
      AND NOT EXISTS (SELECT 1 FROM waiting WHERE key > v_lo AND key < v_hi)
      AND NOT EXISTS (SELECT 1 FROM delays WHERE key = ANY (v_keys))
      AND NOT EXISTS (SELECT 1 FROM delays WHERE key > v_lo AND key < v_hi)
      AND NOT EXISTS (SELECT 1 FROM leases WHERE id = v_id)
      AND NOT EXISTS (SELECT 1 FROM waiters WHERE id = v_id)
      AND NOT EXISTS (SELECT 1 FROM history WHERE lease_id = v_id)
    RETURNING fence, expires_at),
  keys AS (INSERT INTO held (lease_id, idx, key, mode, lim) SELECT v_id, 0, v_key, 'exclusive', NULL FROM ins)
  SELECT json_build_object(
    'value', json_build_object('status', 'granted', 'now', v_now,
      'lease', json_build_object('id', v_id, 'owner', v_owner, 'resources', v_resources, 'fence', ins.fence,
        'acquiredAt', v_now, 'expiresAt', ins.expires_at, 'ttlMs', v_ttl, 'requestId', NULL, 'metadata', v_metadata,
        'lockDelayMs', v_delay)),
    'changes', json_build_array(json_build_object('type', 'acquired', 'owner', v_owner, 'keys', json_build_array(v_key),
      'fence', ins.fence, 'granted', json_build_array(v_id), 'at', v_now, 'expiresAt', ins.expires_at)),
    'roots', '[]'::json, 'tickets', '[]'::json,
    'nextDue', ins.expires_at, 'now', v_now)
  INTO v_out FROM ins;
  IF v_out IS NULL THEN
    -- Something related is in the table. Under the root's own lock the full path may run here;
    -- under path locks it needs the root exclusive, which only a new transaction may take.
    IF v_key = v_root THEN RETURN hf_acquire_full(p_request, p_wait_ms, p_waiter_ttl_ms, p_origin)::json; END IF;
    RETURN hf_retry(v_now);
  END IF;
  RETURN v_out;
END $$;

-- As in the baseline part 11: the end row carries the acquired event; the hand-off grant writes no
-- history row.
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
  WITH gone AS (DELETE FROM leases WHERE id = p_id AND expires_at > v_now
                RETURNING id, owner, fence, resources, roots, event_id, acquired_at),
  keys AS (DELETE FROM held h USING gone WHERE h.lease_id = gone.id),
  ev AS (INSERT INTO history (at, type, owner, fence, resources, by, reason, lease_id, acquired_id, acquired_at)
         SELECT v_now, 'released', gone.owner, gone.fence, gone.resources, gone.owner, 'release', gone.id, gone.event_id,
                CASE WHEN gone.event_id IS NOT NULL THEN gone.acquired_at END FROM gone)
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
      keys AS (INSERT INTO held (lease_id, idx, key, mode, lim) SELECT ins.id, 0, l.keys[1], 'exclusive', NULL FROM ins)
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

-- As in the baseline part 12, writing no history row.
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
    FROM jsonb_array_elements(p_resources) WITH ORDINALITY t(e, o))
  SELECT * INTO l FROM ins;
  RETURN l;
END $$;
