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


