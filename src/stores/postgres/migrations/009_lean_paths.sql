-- holdfast PostgreSQL store, migration 9: lean paths for the two calls every lock makes.
--
-- Same algorithm, same guarantees; the common case costs a few statements instead of a few
-- dozen. Inputs and outputs of hf_acquire and hf_release are those of migration 5 (hf_result).
--
-- * PATH LOCKS. The lean paths serialize on the key's path rather than on its root (the full
--   paths keep migration 2's exclusive root locks): an operation on one key K = r/a/b takes the
--   advisory locks of its proper ancestors SHARED (r, then r/a) and K's own EXCLUSIVE, root
--   first (a root-level key takes its root exclusive, as the full paths do). Two such operations
--   conflict exactly when their keys are equal or one is an ancestor of the other (the other's
--   shared lock on it against its exclusive one); siblings under one root run in parallel. Any
--   full operation on the root takes the root exclusive, against every shared root lock. Every
--   transaction takes its locks root first, ancestors before descendants, so none waits for a
--   lock while holding a deeper one another waits on: no deadlock. A lean call that finds,
--   under its path locks, that it needs more than they cover never upgrades them (which could
--   deadlock against another shared holder): it answers `retry` and the store sends the full
--   call in a new transaction.
-- * hf_acquire: a request for one exclusive key without a requestId (what `locks.acquire(key)`
--   sends) takes the key's path locks, reads the clock and asks ONE question: is there any
--   row at all, live or not, on the key, an ancestor or a descendant (leases' keys, waiters'
--   keys, lock-delays), and is the id unused? A row that is not live yet not settled (expired,
--   timed out, delay over) only sends the request down the full path, which settles it first;
--   so when the answer is "nothing there", nothing can block the request, and it is granted in
--   one statement. Every other request (several keys, shared, a requestId, bad input) takes the
--   full path of migration 8 (`hf_acquire_full`) at once; one that finds something related in
--   the table takes it too: in the same transaction for a root-level key (the root lock is
--   re-entrant), through `retry` for a deeper one.
-- * hf_release: a lease of one key (under its path locks) or of several keys under one root
--   (under the root lock) is ended in one statement (lease row, key rows by cascade, history
--   event); promotion runs only when a waiter waits on a related key, and a hand-off to the
--   next waiter of exactly that key is one statement more. Other promotions try the locks they
--   need and leave what they can't take to the store's follow-up (migration 4). An unknown id, a
--   lease under several roots or one that ran out takes the full path of migration 5
--   (`hf_release_full`): at once when that is known before locking, else through `retry`.
--   Unlike the full path, neither settles what fell due under the root on unrelated keys: that
--   is the sweep's work (and a waiter's own poll settles what blocks it), and nothing that is due
--   confers anything meanwhile (every query filters on expiry). Nor do they look up the store's
--   next due time (three index probes, a tenth of the call): a lean grant answers its own lease's
--   expiry, a lean release nothing. Sweep timers are armed by the answers that do look (every
--   other operation, sweeps, a queued request's answer: a waiter's process sweeps when its
--   holder's lease runs out, which is what promotes it then).
-- * Grant changes carry the new lease's `expiresAt`, so a waiter woken by one has its lease
--   without another call (the engine places the expiry on its own clock from the store time of
--   its last answer, see src/engine/wait.ts).
-- * The small JSON helpers are STABLE, not IMMUTABLE: their bodies call stable functions
--   (jsonb_build_object, to_jsonb), and PostgreSQL inlines an SQL function only when its body is
--   no more volatile than its label; otherwise it parses and plans it again in every transaction.

ALTER FUNCTION hf_change(text, text, text[], bigint, text[], bigint) STABLE;
ALTER FUNCTION hf_work(jsonb, text[], text[]) STABLE;
ALTER FUNCTION hf_merge(jsonb, jsonb) STABLE;
ALTER FUNCTION hf_hints(jsonb, bigint) STABLE;

-- The tables are never ANALYZEd by holdfast (and autovacuum may be off, or late), so the planner
-- knows nothing of their size and, for an EXISTS, often prefers a sequential scan, which reads
-- every dead row of a table that churns. Every index a query can use is the right plan here.
ALTER FUNCTION hf_acquire(jsonb, bigint, bigint, text) SET enable_seqscan = off;
ALTER FUNCTION hf_release(text, text) SET enable_seqscan = off;
ALTER FUNCTION hf_poll(text, text) SET enable_seqscan = off;
ALTER FUNCTION hf_cancel(text, text) SET enable_seqscan = off;
ALTER FUNCTION hf_renew(text, bigint, text) SET enable_seqscan = off;
ALTER FUNCTION hf_release_owner(text, text, text, text) SET enable_seqscan = off;
ALTER FUNCTION hf_force_release(text, text, text) SET enable_seqscan = off;
ALTER FUNCTION hf_sweep(integer, text) SET enable_seqscan = off;
ALTER FUNCTION hf_sweep(integer, text, bigint) SET enable_seqscan = off;
ALTER FUNCTION hf_follow_up(text[], text[], text) SET enable_seqscan = off;

ALTER FUNCTION hf_acquire(jsonb, bigint, bigint, text) RENAME TO hf_acquire_full;
ALTER FUNCTION hf_release(text, text) RENAME TO hf_release_full;

-- Takes the path locks of one key (see the top of this file): the proper ancestors shared, root
-- first, then the key exclusive. A root-level key: its root exclusive.
CREATE FUNCTION hf_lock_path(p_key text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  IF strpos(p_key, '/') > 0 THEN
    PERFORM pg_advisory_xact_lock_shared(s.id)
    FROM (SELECT hf_lock_id(a) AS id FROM unnest(hf_ancestors(p_key)) WITH ORDINALITY AS t(a, o) ORDER BY o) s;
  END IF;
  PERFORM pg_advisory_xact_lock(hf_lock_id(p_key));
END $$;

-- The answer of a lean call that needs the full one, sent by the store in a new transaction.
CREATE FUNCTION hf_retry(p_now bigint) RETURNS json LANGUAGE sql STABLE AS $$
  SELECT json_build_object('retry', true, 'value', NULL, 'changes', '[]'::json, 'roots', '[]'::json,
                           'tickets', '[]'::json, 'nextDue', NULL, 'now', p_now)
$$;

CREATE FUNCTION hf_acquire(p_request jsonb, p_wait_ms bigint, p_waiter_ttl_ms bigint, p_origin text)
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
  keys AS (INSERT INTO held (lease_id, idx, key, mode, lim) SELECT v_id, 0, v_key, 'exclusive', NULL FROM ins),
  ev AS (INSERT INTO history (at, type, owner, fence, resources, by, reason, lease_id)
         SELECT v_now, 'acquired', v_owner, ins.fence, v_resources, NULL, NULL, v_id FROM ins)
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

CREATE FUNCTION hf_release(p_id text, p_origin text) RETURNS json LANGUAGE plpgsql SET search_path FROM CURRENT SET enable_seqscan = off AS $$
DECLARE
  v_path text;  -- the lease's one key (path locks), or NULL (root lock)
  v_root text;
  v_now bigint;
  v_work jsonb;
  v_next record;
  v_related text[];  -- the released key and its ancestors
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
  ev AS (INSERT INTO history (at, type, owner, fence, resources, by, reason, lease_id)
         SELECT v_now, 'released', gone.owner, gone.fence, gone.resources, gone.owner, 'release', gone.id FROM gone)
  SELECT gone.owner, gone.fence, gone.roots, gone.resources, hf_keys(gone.resources) AS keys,
         -- Waiters on a freed key, an ancestor or a descendant of one (probed as in hf_acquire).
         (SELECT array_agg(DISTINCT x.waiter_id)
          FROM jsonb_array_elements_text(jsonb_path_query_array(gone.resources, '$[*].key')) AS f(k),
          LATERAL (SELECT w.waiter_id FROM waiting w WHERE w.key = ANY (hf_ancestors(f.k) COLLATE "C")
                   UNION ALL
                   SELECT w.waiter_id FROM waiting w
                   WHERE w.key >= f.k COLLATE "C" AND w.key < (f.k || '0') COLLATE "C"
                     AND (w.key = f.k COLLATE "C" OR w.key > (f.k || '/') COLLATE "C")) x) AS waiters
  INTO l FROM gone;
  IF NOT FOUND THEN
    -- It ran out (or ended) meanwhile: the full path settles it, under the root exclusive.
    IF v_path IS NULL OR v_path = v_root THEN RETURN hf_release_full(p_id, p_origin)::json; END IF;
    RETURN hf_retry(v_now);
  END IF;

  IF l.waiters IS NULL THEN
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
    v_related := hf_ancestors(l.keys[1]) || l.keys[1];
    SELECT q.id, q.resources INTO v_next FROM waiters q
    WHERE q.id = ANY (l.waiters) AND q.deadline > v_now AND q.alive_until > v_now ORDER BY q.seq LIMIT 1;
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
  v_work := hf_promote_ids(l.waiters, v_now);
  RETURN hf_result('true', hf_merge(hf_work(jsonb_build_array(hf_change('released', l.owner, l.keys, l.fence, NULL, v_now))), v_work),
                   v_now)::json;
END $$;

-- As in migration 8; a grant's change also carries the new lease's expiresAt.
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
    v_change := hf_change('acquired', l.owner, c.keys, l.fence, ARRAY[l.id], p_now) || jsonb_build_object('expiresAt', l.expires_at);
    PERFORM hf_notify_grant(v_change);
    v_changes := v_changes || v_change;
  END LOOP;
  RETURN hf_work(v_changes, '{}', v_deferred);
END $$;
