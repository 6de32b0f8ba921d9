-- ================================================================================================
-- Part 9: lean paths for the two calls every lock makes.
--
-- Same algorithm, same guarantees; the common case costs a few statements instead of a few
-- dozen. Inputs and outputs of hf_acquire and hf_release are those of part 5 (hf_result).
--
-- * PATH LOCKS. The lean paths serialize on the key's path rather than on its root (the full
--   paths keep part 2's exclusive root locks): an operation on one key K = r/a/b takes the
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
--   full path of part 8 (`hf_acquire_full`) at once; one that finds something related in
--   the table takes it too: in the same transaction for a root-level key (the root lock is
--   re-entrant), through `retry` for a deeper one.
-- * hf_release: a lease of one key (under its path locks) or of several keys under one root
--   (under the root lock) is ended in one statement (lease row, key rows by cascade, history
--   event); promotion runs only when a waiter waits on a related key, and a hand-off to the
--   next waiter of exactly that key is one statement more. Other promotions try the locks they
--   need and leave what they can't take to the store's follow-up (part 4). An unknown id, a
--   lease under several roots or one that ran out takes the full path of part 5
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


-- ================================================================================================
-- Part 10: blocker queries as index probes.
--
-- The related-key conditions of parts 3 and 8 (`key = K OR key = ANY(ancestors) OR key in
-- (K || '/', K || '0')`) OR-ed together let the planner answer only by reading a whole index (or,
-- on tables nobody ANALYZEs, the whole table with every dead row). Here each is its own probe: the
-- key and its ancestors by equality, its descendants by range. Same inputs, outputs and meaning as
-- the functions they replace; only hf_blockers lists fewer rows (at most 20 queued blockers per
-- resource and kind, see below).

-- As in part 8, with each related-key condition split into its index probes (the key and
-- its ancestors by equality, its descendants by range) instead of OR-ed into one, which the
-- planner can only answer by reading the whole index. Per resource, in order, stopping at the
-- first blocker: live conflicting leases and expired ones whose lock-delay still runs, a full
-- semaphore, recorded lock-delays, earlier live conflicting waiters.

CREATE FUNCTION hf_is_blocked(p_resources jsonb, p_seq bigint, p_self text, p_now bigint) RETURNS boolean
LANGUAGE plpgsql SET jit = off SET enable_seqscan = off AS $$
DECLARE
  v_seq bigint := coalesce(p_seq, 9223372036854775807);
  r record;
BEGIN
  FOR r IN SELECT (e->>'key') COLLATE "C" AS key, e->>'mode' = 'shared' AS shared, (e->>'limit')::integer AS lim,
                  (hf_ancestors(e->>'key') || (e->>'key')) COLLATE "C" AS keys,
                  ((e->>'key') || '/') COLLATE "C" AS lo, ((e->>'key') || '0') COLLATE "C" AS hi
           FROM jsonb_array_elements(p_resources) e LOOP
    IF EXISTS (SELECT 1 FROM held h JOIN leases l ON l.id = h.lease_id
               WHERE h.key = ANY (r.keys) AND l.id <> p_self
                 AND ((l.expires_at > p_now AND NOT (r.shared AND h.mode = 'shared'))
                      OR (l.expires_at <= p_now AND l.lock_delay_ms > 0 AND l.expires_at + l.lock_delay_ms > p_now)))
       OR EXISTS (SELECT 1 FROM held h JOIN leases l ON l.id = h.lease_id
                  WHERE h.key > r.lo AND h.key < r.hi AND l.id <> p_self
                    AND ((l.expires_at > p_now AND NOT (r.shared AND h.mode = 'shared'))
                         OR (l.expires_at <= p_now AND l.lock_delay_ms > 0 AND l.expires_at + l.lock_delay_ms > p_now)))
       OR (r.lim IS NOT NULL AND
           (SELECT count(*) FROM held h JOIN leases l ON l.id = h.lease_id
            WHERE h.key = r.key AND h.mode = 'shared' AND l.expires_at > p_now AND l.id <> p_self)
         + (SELECT count(*) FROM waiting w JOIN waiters q ON q.id = w.waiter_id
            WHERE w.key = r.key AND w.mode = 'shared' AND q.seq < v_seq AND q.id <> p_self
              AND q.alive_until > p_now AND q.deadline > p_now) >= r.lim)
       OR EXISTS (SELECT 1 FROM delays d WHERE d.key = ANY (r.keys) AND d.until > p_now)
       OR EXISTS (SELECT 1 FROM delays d WHERE d.key > r.lo AND d.key < r.hi AND d.until > p_now)
       OR EXISTS (SELECT 1 FROM waiting w JOIN waiters q ON q.id = w.waiter_id
                  WHERE w.key = ANY (r.keys) AND q.seq < v_seq AND q.id <> p_self AND q.alive_until > p_now
                    AND q.deadline > p_now AND NOT (r.shared AND w.mode = 'shared'))
       OR EXISTS (SELECT 1 FROM waiting w JOIN waiters q ON q.id = w.waiter_id
                  WHERE w.key > r.lo AND w.key < r.hi AND q.seq < v_seq AND q.id <> p_self AND q.alive_until > p_now
                    AND q.deadline > p_now AND NOT (r.shared AND w.mode = 'shared')) THEN
      RETURN true;
    END IF;
  END LOOP;
  RETURN false;
END $$;

-- As in part 3, with each related-key condition split into its index probes (see
-- hf_is_blocked above), and at most the first 20 queued blockers listed per resource and kind
-- (QUEUED_LISTED in src/stores/table/blockers.ts; held blockers and lock-delays in full): what a
-- queued or busy answer, or a waiter's heartbeat, costs no longer grows with the queue (the hints
-- come from the blockers listed). No JIT, as for hf_is_blocked.
CREATE FUNCTION hf_blockers(p_resources jsonb, p_seq bigint, p_self text, p_now bigint, p_any boolean)
RETURNS jsonb LANGUAGE plpgsql SET jit = off AS $$
DECLARE
  r record;
  v_new boolean := p_seq IS NULL;
  v_seq bigint := coalesce(p_seq, 9223372036854775807);
  v_take bigint := CASE WHEN p_any THEN 1 END; -- LIMIT NULL is no limit
  v_key text COLLATE "C";
  v_lo text COLLATE "C";
  v_hi text COLLATE "C";
  v_keys text[] COLLATE "C";  -- the key and its ancestors
  v_shared boolean;
  v_holders jsonb := '[]';
  v_rows jsonb;
  v_last bigint;
  v_first bigint;
  v_max bigint;
  v_min bigint;
  v_limit integer;
  v_count bigint;
BEGIN
  FOR r IN SELECT e->>'key' AS key, e->>'mode' AS mode, (e->>'limit')::integer AS lim, (o - 1)::integer AS idx
           FROM jsonb_array_elements(p_resources) WITH ORDINALITY t(e, o) ORDER BY o LOOP
    v_key := r.key;
    v_lo := v_key || '/';
    v_hi := v_key || '0';
    v_keys := hf_ancestors(v_key) || v_key;
    v_shared := r.mode = 'shared';

    -- Every holder of a key must agree on its limit.
    IF v_new AND v_shared THEN
      SELECT h.lim INTO v_limit FROM held h JOIN leases l ON l.id = h.lease_id
      WHERE h.key = v_key AND h.mode = 'shared' AND l.expires_at > p_now AND l.id <> p_self
        AND h.lim IS DISTINCT FROM r.lim
      LIMIT 1;
      IF NOT FOUND THEN
        SELECT w.lim INTO v_limit FROM waiting w JOIN waiters q ON q.id = w.waiter_id
        WHERE w.key = v_key AND w.mode = 'shared' AND q.alive_until > p_now AND q.deadline > p_now
          AND q.id <> p_self AND w.lim IS DISTINCT FROM r.lim
        LIMIT 1;
      END IF;
      IF FOUND THEN
        PERFORM hf_invalid(format('resources[%s].limit', r.idx),
          format('%s is shared with limit %s by its holders; every holder must agree, got %s',
                 to_jsonb(r.key)::text, coalesce(v_limit::text, 'none'), coalesce(r.lim::text, 'none')));
      END IF;
    END IF;

    -- Live leases on this key, an ancestor or a descendant, unless both sides are shared.
    SELECT coalesce(jsonb_agg(s.h ORDER BY s.fence), '[]'), max(s.expires_at), min(s.expires_at)
    INTO v_rows, v_max, v_min
    FROM (SELECT jsonb_build_object('key', h.key, 'mode', h.mode, 'owner', l.owner, 'state', 'held',
                   'acquiredAt', l.acquired_at, 'expiresAt', l.expires_at, 'metadata', l.metadata) AS h,
                 l.fence, l.expires_at
          FROM (SELECT * FROM held WHERE key = ANY (v_keys) UNION ALL SELECT * FROM held WHERE key > v_lo AND key < v_hi) h
          JOIN leases l ON l.id = h.lease_id
          WHERE true
            AND l.expires_at > p_now AND l.id <> p_self AND NOT (v_shared AND h.mode = 'shared')
          ORDER BY l.fence LIMIT v_take) s;
    v_holders := v_holders || v_rows;
    v_last := greatest(v_last, v_max);
    v_first := least(v_first, v_min);
    IF p_any AND jsonb_array_length(v_holders) > 0 THEN RETURN jsonb_build_object('holders', v_holders); END IF;

    -- Earlier live waiters, same rule. A waiter has no end but its drop time.
    SELECT coalesce(jsonb_agg(s.h ORDER BY s.seq), '[]'), min(s.drop_at)
    INTO v_rows, v_min
    FROM (SELECT jsonb_build_object('key', w.key, 'mode', w.mode, 'owner', q.owner, 'state', 'queued',
                   'acquiredAt', q.enqueued_at, 'expiresAt', NULL, 'metadata', q.metadata) AS h,
                 q.seq, least(q.alive_until, q.deadline) AS drop_at
          FROM (SELECT * FROM waiting WHERE key = ANY (v_keys) UNION ALL SELECT * FROM waiting WHERE key > v_lo AND key < v_hi) w
          JOIN waiters q ON q.id = w.waiter_id
          WHERE true
            AND q.seq < v_seq AND q.id <> p_self AND q.alive_until > p_now AND q.deadline > p_now
            AND NOT (v_shared AND w.mode = 'shared')
          ORDER BY q.seq LIMIT coalesce(v_take, 20)) s;
    v_holders := v_holders || v_rows;
    v_first := least(v_first, v_min);
    IF p_any AND jsonb_array_length(v_holders) > 0 THEN RETURN jsonb_build_object('holders', v_holders); END IF;

    -- A semaphore: shared holders of this exact key plus earlier shared waiters on it, against the limit.
    IF v_shared AND r.lim IS NOT NULL THEN
      SELECT (SELECT count(*) FROM held h JOIN leases l ON l.id = h.lease_id
              WHERE h.key = v_key AND h.mode = 'shared' AND l.expires_at > p_now AND l.id <> p_self)
           + (SELECT count(*) FROM waiting w JOIN waiters q ON q.id = w.waiter_id
              WHERE w.key = v_key AND w.mode = 'shared' AND q.seq < v_seq AND q.id <> p_self
                AND q.alive_until > p_now AND q.deadline > p_now)
      INTO v_count;
      IF v_count >= r.lim THEN
        SELECT coalesce(jsonb_agg(s.h ORDER BY s.fence), '[]'), max(s.expires_at), min(s.expires_at)
        INTO v_rows, v_max, v_min
        FROM (SELECT jsonb_build_object('key', h.key, 'mode', h.mode, 'owner', l.owner, 'state', 'held',
                       'acquiredAt', l.acquired_at, 'expiresAt', l.expires_at, 'metadata', l.metadata) AS h,
                     l.fence, l.expires_at
              FROM held h JOIN leases l ON l.id = h.lease_id
              WHERE h.key = v_key AND h.mode = 'shared' AND l.expires_at > p_now AND l.id <> p_self
              ORDER BY l.fence LIMIT v_take) s;
        v_holders := v_holders || v_rows;
        v_last := greatest(v_last, v_max);
        v_first := least(v_first, v_min);
        SELECT coalesce(jsonb_agg(s.h ORDER BY s.seq), '[]'), min(s.drop_at)
        INTO v_rows, v_min
        FROM (SELECT jsonb_build_object('key', w.key, 'mode', w.mode, 'owner', q.owner, 'state', 'queued',
                       'acquiredAt', q.enqueued_at, 'expiresAt', NULL, 'metadata', q.metadata) AS h,
                     q.seq, least(q.alive_until, q.deadline) AS drop_at
              FROM waiting w JOIN waiters q ON q.id = w.waiter_id
              WHERE w.key = v_key AND w.mode = 'shared' AND q.seq < v_seq AND q.id <> p_self
                AND q.alive_until > p_now AND q.deadline > p_now
              ORDER BY q.seq LIMIT coalesce(v_take, 20)) s;
        v_holders := v_holders || v_rows;
        v_first := least(v_first, v_min);
        IF p_any AND jsonb_array_length(v_holders) > 0 THEN RETURN jsonb_build_object('holders', v_holders); END IF;
      END IF;
    END IF;

    -- Lock-delays on related keys: recorded ones, and those of expired leases not settled yet.
    SELECT coalesce(jsonb_agg(s.h ORDER BY s.since, s.fence), '[]'), max(s.until), min(s.until)
    INTO v_rows, v_max, v_min
    FROM (SELECT jsonb_build_object('key', d.key, 'mode', 'exclusive', 'owner', d.owner, 'state', 'delayed',
                   'acquiredAt', d.since, 'expiresAt', d.until, 'metadata', d.metadata) AS h,
                 d.since, d.fence, d.until
          FROM (SELECT * FROM delays WHERE key = ANY (v_keys) UNION ALL SELECT * FROM delays WHERE key > v_lo AND key < v_hi) d
          WHERE d.until > p_now
          UNION ALL
          SELECT jsonb_build_object('key', h.key, 'mode', 'exclusive', 'owner', l.owner, 'state', 'delayed',
                   'acquiredAt', l.expires_at, 'expiresAt', l.expires_at + l.lock_delay_ms, 'metadata', l.metadata),
                 l.expires_at, l.fence, l.expires_at + l.lock_delay_ms
          FROM (SELECT * FROM held WHERE key = ANY (v_keys) UNION ALL SELECT * FROM held WHERE key > v_lo AND key < v_hi) h
          JOIN leases l ON l.id = h.lease_id
          WHERE true
            AND l.expires_at <= p_now AND l.lock_delay_ms > 0 AND l.expires_at + l.lock_delay_ms > p_now
          LIMIT v_take) s;
    v_holders := v_holders || v_rows;
    v_last := greatest(v_last, v_max);
    v_first := least(v_first, v_min);
    IF p_any AND jsonb_array_length(v_holders) > 0 THEN RETURN jsonb_build_object('holders', v_holders); END IF;
  END LOOP;
  RETURN jsonb_build_object('holders', v_holders, 'lastEnd', v_last, 'firstEnd', v_first);
END $$;

-- As in part 8, with the related-key join split into its index probes.
CREATE FUNCTION hf_held_blockers(p_resources jsonb, p_self text, p_now bigint) RETURNS jsonb LANGUAGE plpgsql SET jit = off AS $$
DECLARE
  v_out jsonb;
BEGIN
  SELECT jsonb_build_object('holders', jsonb_agg(s.h ORDER BY s.idx, s.fence), 'lastEnd', max(s.expires_at),
                            'firstEnd', min(s.expires_at))
  INTO v_out
  FROM (SELECT r.idx, l.fence, l.expires_at,
               jsonb_build_object('key', h.key, 'mode', h.mode, 'owner', l.owner, 'state', 'held',
                 'acquiredAt', l.acquired_at, 'expiresAt', l.expires_at, 'metadata', l.metadata) AS h
        FROM (SELECT (e->>'key') COLLATE "C" AS key, e->>'mode' AS mode, (e->>'limit')::integer AS lim, o AS idx,
                     ((e->>'key') || '/') COLLATE "C" AS lo, ((e->>'key') || '0') COLLATE "C" AS hi,
                     (hf_ancestors(e->>'key') || (e->>'key')) COLLATE "C" AS keys
              FROM jsonb_array_elements(p_resources) WITH ORDINALITY t(e, o)) r
        CROSS JOIN LATERAL (SELECT * FROM held WHERE key = ANY (r.keys) UNION ALL SELECT * FROM held WHERE key > r.lo AND key < r.hi) h
        JOIN leases l ON l.id = h.lease_id
        WHERE l.expires_at > p_now AND l.id <> p_self
          AND (NOT (r.mode = 'shared' AND h.mode = 'shared')
               OR (h.key = r.key AND r.lim IS NOT NULL AND
                   (SELECT count(*) FROM held h2 JOIN leases l2 ON l2.id = h2.lease_id
                    WHERE h2.key = r.key AND h2.mode = 'shared' AND l2.expires_at > p_now AND l2.id <> p_self) >= r.lim))) s
  HAVING count(*) > 0;
  RETURN v_out;
END $$;


