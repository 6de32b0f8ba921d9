-- holdfast PostgreSQL store, migration 2: helpers (clock, keys, locking, grant, end).
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

-- Starts an operation: takes the advisory locks of `p_names` (blocking, sorted), then reads the
-- clock. Must be the first thing an operation does, and only once.
CREATE FUNCTION hf_start(p_names text[], p_origin text) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
  v_id bigint;
BEGIN
  IF current_setting('transaction_isolation') <> 'read committed' THEN
    RAISE EXCEPTION USING ERRCODE = 'HF503',
      MESSAGE = 'holdfast needs READ COMMITTED transactions, got ' || current_setting('transaction_isolation');
  END IF;
  PERFORM set_config('holdfast.origin', coalesce(p_origin, ''), true);
  FOR v_id IN SELECT DISTINCT hf_lock_id(n) FROM unnest(p_names) AS n ORDER BY 1 LOOP
    PERFORM pg_advisory_xact_lock(v_id);
  END LOOP;
  RETURN hf_now();
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
RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
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

-- Grants a request: a new lease with the next fence, its key rows and its history event.
CREATE FUNCTION hf_grant(p_id text, p_owner text, p_resources jsonb, p_ttl_ms bigint, p_request_id text,
                         p_metadata jsonb, p_lock_delay_ms bigint, p_now bigint)
RETURNS leases LANGUAGE plpgsql AS $$
DECLARE
  l leases;
BEGIN
  INSERT INTO leases (id, owner, resources, roots, fence, acquired_at, expires_at, ttl_ms, request_id, metadata, lock_delay_ms)
  VALUES (p_id, p_owner, p_resources, hf_roots(p_resources), nextval('fence_seq'), p_now, p_now + p_ttl_ms, p_ttl_ms,
          p_request_id, p_metadata, p_lock_delay_ms)
  RETURNING * INTO l;
  INSERT INTO held (lease_id, idx, key, mode, lim)
  SELECT p_id, (o - 1)::integer, e->>'key', e->>'mode', (e->>'limit')::integer
  FROM jsonb_array_elements(p_resources) WITH ORDINALITY t(e, o);
  INSERT INTO history (at, type, owner, fence, resources, by, reason, lease_id)
  VALUES (p_now, 'acquired', p_owner, l.fence, p_resources, NULL, NULL, p_id);
  RETURN l;
END $$;

-- Ends a lease: deletes it, records the event and, when asked and the lease has one, leaves its
-- lock-delay on its keys. Returns the change.
CREATE FUNCTION hf_end_lease(l leases, p_type text, p_reason text, p_by text, p_at bigint, p_delay boolean, p_now bigint)
RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM leases WHERE id = l.id;
  INSERT INTO history (at, type, owner, fence, resources, by, reason, lease_id)
  VALUES (p_at, p_type, l.owner, l.fence, l.resources, p_by, p_reason, l.id);
  IF p_delay AND l.lock_delay_ms > 0 AND p_at + l.lock_delay_ms > p_now THEN
    INSERT INTO delays (key, root, until, owner, fence, since, metadata)
    SELECT e->>'key', split_part(e->>'key', '/', 1), p_at + l.lock_delay_ms, l.owner, l.fence, p_at, l.metadata
    FROM jsonb_array_elements(l.resources) e;
  END IF;
  RETURN hf_change(p_type, l.owner, hf_keys(l.resources), l.fence, NULL, p_at);
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
