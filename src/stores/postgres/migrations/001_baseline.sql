-- holdfast PostgreSQL store, migration 1: the baseline schema (tables, sequences, functions).
--
-- The package was unreleased (0.1.0) when this baseline replaced migrations 1-12 of the
-- development history, so there is no upgrade path from those schemas: a schema made by them is
-- dropped and created anew. Every function here is its final version, defined once; a later
-- change is a new file (002_*.sql), never an edit of this one once released.
--
-- The parts below keep the order in which the design was built, each with its own notes: the
-- tables (part 1), helpers (2), blockers (3), settling and promotion (4), the lease operations (5),
-- admin, sweeps and history (6, 7), fast paths (8), lean paths on path locks (9), blocker index
-- probes (10), key rows without a foreign key (11), grants dated when made (12). A function of an
-- earlier part that a later one made faster is defined in the later part, with that part's notes.
--
-- Inputs and outputs of every public function (the ones src/stores/postgres/store.ts calls):
-- hf_acquire(request jsonb, wait_ms, waiter_ttl_ms, origin), hf_poll(ticket, origin),
-- hf_cancel(ticket, origin), hf_renew(id, ttl_ms, origin), hf_release(id, origin),
-- hf_release_owner(owner, key, by, origin), hf_force_release(key, by, origin),
-- hf_follow_up(roots, tickets, origin) and hf_sweep(batch, origin, history_limit) return the
-- result object of hf_result (part 4/8: value, changes, roots, tickets, nextDue, now);
-- hf_acquire and hf_release may answer {retry: true} (part 9) and are then sent again as
-- hf_acquire_full / hf_release_full. hf_get, hf_list, hf_history and hf_recent_grants read.

-- ================================================================================================
-- Part 1: the lock table.
--
-- Every object lives in the store's schema: the migration runner sets `search_path` to that
-- schema (transaction-local) before running this file, and every function is created with
-- `SET search_path FROM CURRENT`, so nothing here names the schema.
--
-- Times are integer milliseconds since the epoch by the database clock (`clock_timestamp()`).
-- Keys are `text COLLATE "C"`: they compare byte-wise, so the descendants of K are exactly the
-- keys in the open range (K || '/', K || '0'), '0' being the byte after '/'.
-- JSON columns hold the request's own values: `resources` is [{ key, mode, limit }] in request
-- order, `metadata` the caller's object.

-- The fence counter. A sequence never goes back (not across restarts, crashes or rollbacks; it
-- may skip values), so fences strictly increase across every grant the store ever makes.

CREATE SEQUENCE fence_seq AS bigint MINVALUE 1 NO CYCLE;

-- Queue order of waiters.
CREATE SEQUENCE waiter_seq AS bigint MINVALUE 1 NO CYCLE;

-- Live leases (and leases whose expiry has passed but that no operation has settled yet: every
-- query filters on `expires_at > now`). `roots` are the root segments of the keys, the advisory
-- lock names that guard the lease (see 002_core.sql).
CREATE TABLE leases (
  id            text   PRIMARY KEY,
  owner         text   NOT NULL,
  resources     jsonb  NOT NULL,
  roots         text[] NOT NULL,
  fence         bigint NOT NULL UNIQUE,
  acquired_at   bigint NOT NULL,
  expires_at    bigint NOT NULL,
  ttl_ms        bigint NOT NULL,
  request_id    text,
  metadata      jsonb  NOT NULL,
  lock_delay_ms bigint NOT NULL
);

CREATE INDEX leases_expires_at ON leases (expires_at);

CREATE INDEX leases_owner ON leases (owner, request_id);

-- One row per resource of a lease: the key index of conflict checks.
CREATE TABLE held (
  lease_id text    NOT NULL,
  idx      integer NOT NULL,
  key      text COLLATE "C" NOT NULL,
  mode     text    NOT NULL CHECK (mode IN ('exclusive', 'shared')),
  lim      integer,
  PRIMARY KEY (lease_id, idx)
);

CREATE INDEX held_key ON held (key);

-- Queued requests. `id` is the ticket (the lease id once granted), `seq` the queue order.
-- A waiter is due (dropped) at least(alive_until, deadline).
CREATE TABLE waiters (
  id            text   PRIMARY KEY,
  seq           bigint NOT NULL UNIQUE,
  owner         text   NOT NULL,
  resources     jsonb  NOT NULL,
  roots         text[] NOT NULL,
  ttl_ms        bigint NOT NULL,
  request_id    text,
  metadata      jsonb  NOT NULL,
  lock_delay_ms bigint NOT NULL,
  enqueued_at   bigint NOT NULL,
  deadline      bigint NOT NULL,
  alive_until   bigint NOT NULL,
  waiter_ttl_ms bigint NOT NULL
);

CREATE INDEX waiters_due ON waiters ((least(alive_until, deadline)));

CREATE INDEX waiters_owner ON waiters (owner, request_id);

CREATE TABLE waiting (
  waiter_id text    NOT NULL REFERENCES waiters (id) ON DELETE CASCADE,
  idx       integer NOT NULL,
  key       text COLLATE "C" NOT NULL,
  mode      text    NOT NULL CHECK (mode IN ('exclusive', 'shared')),
  lim       integer,
  PRIMARY KEY (waiter_id, idx)
);

CREATE INDEX waiting_key ON waiting (key);

-- Lock-delays: a key stays unavailable until `until` after a lease with lockDelayMs ended other
-- than by a normal release.
CREATE TABLE delays (
  id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  key      text COLLATE "C" NOT NULL,
  root     text   NOT NULL,
  until    bigint NOT NULL,
  owner    text   NOT NULL,
  fence    bigint NOT NULL,
  since    bigint NOT NULL,
  metadata jsonb  NOT NULL
);

CREATE INDEX delays_key ON delays (key);

CREATE INDEX delays_until ON delays (until);

-- Past lease events, newest = highest id. `lease_id` is never shown (it is a capability); it
-- tells an ended lease (renew: LEASE_LOST) from an unknown id (NOT_FOUND).
CREATE TABLE history (
  id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  at        bigint NOT NULL,
  type      text   NOT NULL CHECK (type IN ('acquired', 'released', 'expired', 'forced')),
  owner     text   NOT NULL,
  fence     bigint NOT NULL,
  resources jsonb  NOT NULL,
  by        text,
  reason    text,
  lease_id  text   NOT NULL
);

CREATE INDEX history_lease ON history (lease_id);

CREATE INDEX history_owner ON history (owner, id);

CREATE INDEX history_resources ON history USING gin (resources jsonb_path_ops);


-- ================================================================================================
-- Part 2: helpers (clock, keys, locking, grant, end).
--
-- SERIALIZATION. Every operation is one call of one plpgsql function, i.e. one transaction at
-- READ COMMITTED. Two locks can only conflict when their keys are equal or one is an ancestor of
-- the other, and then both keys have the same ROOT SEGMENT (`apps` for `apps/42/task`). So each
-- operation takes a transaction-level advisory lock per root it touches (`hf_lock`, a 64-bit hash
-- of schema and root), all of them at its start, in ascending lock-id order, and only then reads
-- the clock and the tables. Transactions that could conflict therefore run one after the other,
-- and each statement after the locks sees everything the previous holder committed (READ
-- COMMITTED takes a fresh snapshot per statement; advisory locks are released after commit).
-- Transactions on unrelated roots run in parallel.
--
-- Some work reaches beyond the roots an operation locked up front: an expired lease or a
-- promotable waiter may also hold keys under other roots (a request may name `pools/P` and
-- `domains/D`). For those the operation only TRIES the extra locks (`hf_try_lock`, never
-- blocking). When it gets them it re-reads the row and does the work; when it does not, it leaves
-- the item alone and returns it as deferred, and the client immediately calls `hf_follow_up`,
-- which takes all those roots the blocking way (sorted, at its start). A transaction therefore
-- blocks only on its initial sorted locks, while holding only smaller lock ids: no wait cycle,
-- hence no deadlock, and no retry loop. An expired lease that is left alone meanwhile confers
-- nothing: every query filters on `expires_at > now`, and its lock-delay is honoured from the
-- lease row itself (see hf_blockers).
--
-- A requestId is guarded by one more advisory lock (on owner and requestId), taken with the
-- roots, so two retries of one request can't both be granted.
--
-- The fence comes from a sequence (never goes back, across restarts too). Time is the database
-- clock, read once per operation after the locks are held.

CREATE FUNCTION hf_now() RETURNS bigint LANGUAGE sql VOLATILE AS
$$ SELECT floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint $$;

-- Small helpers are plpgsql rather than SQL functions: PostgreSQL re-plans a non-inlinable SQL
-- function on every call, while plpgsql keeps its plans for the session.

-- The proper ancestors of a key, nearest last: 'a/b/c' gives {a, a/b}.
CREATE FUNCTION hf_ancestors(p_key text) RETURNS text[] LANGUAGE plpgsql IMMUTABLE STRICT AS $$
DECLARE
  v_out text[] := '{}';
  v_at integer := 0;
  v_next integer;
BEGIN
  LOOP
    v_next := strpos(substr(p_key, v_at + 1), '/');
    EXIT WHEN v_next = 0;
    v_at := v_at + v_next;
    v_out := v_out || left(p_key, v_at - 1);
  END LOOP;
  RETURN v_out;
END $$;

-- The keys of a resources array, in order.
CREATE FUNCTION hf_keys(p_resources jsonb) RETURNS text[] LANGUAGE plpgsql IMMUTABLE STRICT AS $$
BEGIN
  RETURN ARRAY(SELECT e->>'key' FROM jsonb_array_elements(p_resources) WITH ORDINALITY t(e, o) ORDER BY o);
END $$;

-- The distinct root segments of a resources array.
CREATE FUNCTION hf_roots(p_resources jsonb) RETURNS text[] LANGUAGE plpgsql IMMUTABLE STRICT AS $$
BEGIN
  RETURN ARRAY(SELECT DISTINCT split_part(e->>'key', '/', 1) FROM jsonb_array_elements(p_resources) e);
END $$;

-- The lock name of an (owner, requestId) pair. Keys, owners and requestIds have no control
-- characters, so it can never equal a root.
CREATE FUNCTION hf_request_lock(p_owner text, p_request_id text) RETURNS text LANGUAGE sql IMMUTABLE AS
$$ SELECT chr(31) || p_owner || chr(31) || p_request_id $$;

CREATE FUNCTION hf_lock_id(p_name text) RETURNS bigint LANGUAGE sql STABLE AS
$$ SELECT hashtextextended(current_schema() || '/' || p_name, 7262) $$;

-- Raises the error the client maps to InvalidRequestError(field, reason).
CREATE FUNCTION hf_invalid(p_field text, p_reason text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION USING ERRCODE = 'HF400', MESSAGE = p_reason, DETAIL = p_field;
END $$;

-- Takes the advisory locks of `p_names` if they are free (or already ours); never waits.
CREATE FUNCTION hf_try_lock(p_names text[]) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
  v_id bigint;
BEGIN
  FOR v_id IN SELECT DISTINCT hf_lock_id(n) FROM unnest(p_names) AS n ORDER BY 1 LOOP
    IF NOT pg_try_advisory_xact_lock(v_id) THEN RETURN false; END IF;
  END LOOP;
  RETURN true;
END $$;

CREATE FUNCTION hf_change(p_type text, p_owner text, p_keys text[], p_fence bigint, p_granted text[], p_at bigint)
RETURNS jsonb LANGUAGE sql STABLE AS $$
  SELECT jsonb_build_object('type', p_type, 'owner', p_owner, 'keys', to_jsonb(p_keys), 'fence', p_fence,
                            'granted', to_jsonb(coalesce(p_granted, '{}')), 'at', p_at)
$$;

CREATE FUNCTION hf_lease_json(l leases) RETURNS jsonb LANGUAGE sql STABLE AS $$
  SELECT jsonb_build_object('id', l.id, 'owner', l.owner, 'resources', l.resources, 'fence', l.fence,
    'acquiredAt', l.acquired_at, 'expiresAt', l.expires_at, 'ttlMs', l.ttl_ms, 'requestId', l.request_id,
    'metadata', l.metadata, 'lockDelayMs', l.lock_delay_ms)
$$;

-- Tells other store instances (LISTEN) that a queued ticket was granted. Sent on commit only.
CREATE FUNCTION hf_notify_grant(p_change jsonb) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  v_payload text;
BEGIN
  v_payload := jsonb_build_object('o', current_setting('holdfast.origin', true), 'c', p_change)::text;
  IF octet_length(v_payload) > 7900 THEN
    v_payload := jsonb_build_object('o', current_setting('holdfast.origin', true),
                                    'c', p_change || '{"keys": []}'::jsonb)::text;
  END IF;
  PERFORM pg_notify('hf_' || md5(current_schema()), v_payload);
END $$;

-- Normalizes and checks the resources of a request (the client validated them already; this
-- keeps bad input from ever reaching the tables).
CREATE FUNCTION hf_resources(p_resources jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
  r record;
  v_out jsonb := '[]';
BEGIN
  IF jsonb_typeof(p_resources) IS DISTINCT FROM 'array' OR jsonb_array_length(p_resources) NOT BETWEEN 1 AND 64 THEN
    PERFORM hf_invalid('resources', 'expected 1..64 resources');
  END IF;
  FOR r IN SELECT e, (o - 1)::integer AS i FROM jsonb_array_elements(p_resources) WITH ORDINALITY t(e, o) LOOP
    IF jsonb_typeof(r.e->'key') IS DISTINCT FROM 'string' OR r.e->>'key' = '' THEN
      PERFORM hf_invalid(format('resources[%s].key', r.i), 'expected a non-empty string');
    END IF;
    IF (r.e->>'mode') IS NULL OR (r.e->>'mode') NOT IN ('exclusive', 'shared') THEN
      PERFORM hf_invalid(format('resources[%s].mode', r.i), 'expected "exclusive" or "shared"');
    END IF;
    IF jsonb_typeof(r.e->'limit') NOT IN ('null', 'number') OR (r.e->>'limit')::numeric NOT BETWEEN 1 AND 1000000
       OR (r.e->>'limit')::numeric <> trunc((r.e->>'limit')::numeric) OR (r.e->>'limit' IS NOT NULL AND r.e->>'mode' <> 'shared') THEN
      PERFORM hf_invalid(format('resources[%s].limit', r.i), 'expected null, or an integer 1..1000000 with mode "shared"');
    END IF;
    v_out := v_out || jsonb_build_array(jsonb_build_object('key', r.e->'key', 'mode', r.e->'mode',
                                                           'limit', coalesce(r.e->'limit', 'null'::jsonb)));
  END LOOP;
  RETURN v_out;
END $$;


-- ================================================================================================
-- Part 3: who blocks a request (mirrors src/stores/table/blockers.ts).
--
-- The blockers of `p_resources` for a request queued at `p_seq` (NULL: a new request, which
-- waits behind every queued request): live leases, lock-delays and earlier live waiters that
-- conflict with it under SPEC section 2, shared limits counted over holders and earlier waiters.
-- For a new request a shared limit that disagrees with a live holder or waiter is rejected.
-- A lease or waiter whose time has passed is not live, even before an operation settles it; an
-- expired lease with a lock-delay blocks as the delay it leaves.
--
-- Returns { holders: [{ key, mode, owner, state, acquiredAt, expiresAt, metadata }] (times in ms),
-- lastEnd, firstEnd }. With `p_any` it stops at the first blocker (holders has at most one).

-- The hints of a blocked request: retryAfterMs (until the last held or delayed blocker ends),
-- nextCheckMs (until the first blocker could end), 1000 ms when unknown.
CREATE FUNCTION hf_hints(p_blockers jsonb, p_now bigint) RETURNS jsonb LANGUAGE sql STABLE AS $$
  SELECT jsonb_build_object(
    'retryAfterMs', CASE WHEN p_blockers->'lastEnd' IS NULL OR jsonb_typeof(p_blockers->'lastEnd') = 'null' THEN 1000
                         ELSE greatest(1, (p_blockers->>'lastEnd')::bigint - p_now) END,
    'nextCheckMs', CASE WHEN p_blockers->'firstEnd' IS NULL OR jsonb_typeof(p_blockers->'firstEnd') = 'null' THEN 1000
                        ELSE greatest(1, (p_blockers->>'firstEnd')::bigint - p_now) END)
$$;


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
