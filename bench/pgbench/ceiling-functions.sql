-- pgbench support: three locks much simpler than holdfast's, to measure the ceiling of ANY design
-- that runs its lock as a PL/pgSQL function in the database. None is holdfast, none has a queue,
-- ancestors, descendants, lock-delays or request ids. NOT locks to use: never install them in a
-- real schema. Created in schema hf_pgbench by bench/pgbench/run.sh for the ceiling-*.sql scripts.
--
--   hf_ceiling_wrap_acquire(key text, owner text) -> text      the naive upsert (naive.sql),
--   hf_ceiling_wrap_release(key text, owner text) -> boolean   the naive delete, each in a function
--   hf_ceiling_keyrow_acquire(key text, id text, owner text) -> bigint (fence, NULL when busy)
--   hf_ceiling_keyrow_release(key text, id text) -> boolean
--       + an advisory lock on the key, a fence from a sequence, the database clock read once,
--         the row kept (released = id set to NULL) with ttl and metadata columns
--   hf_ceiling_history_acquire / hf_ceiling_history_release: the same, + one history row per
--       acquire and per release (identity primary key, no other index)
SET search_path = hf_pgbench;

CREATE SEQUENCE ceiling_fence;
CREATE TABLE ceiling_locks (
  key text COLLATE "C" PRIMARY KEY, id text, owner text, fence bigint, expires_at bigint, ttl_ms bigint, metadata jsonb
);
CREATE TABLE ceiling_history (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, at bigint, type text, owner text, fence bigint, key text
);

CREATE FUNCTION hf_ceiling_wrap_acquire(p_key text, p_owner text) RETURNS text
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
  v_owner text;
BEGIN
  INSERT INTO naive_locks (key, owner, expires_at)
  VALUES (p_key, p_owner, floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint + 30000)
  ON CONFLICT (key) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at
  WHERE naive_locks.expires_at < floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint
  RETURNING owner INTO v_owner;
  RETURN v_owner;
END $$;

CREATE FUNCTION hf_ceiling_wrap_release(p_key text, p_owner text) RETURNS boolean
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
  DELETE FROM naive_locks WHERE key = p_key AND owner = p_owner;
  RETURN FOUND;
END $$;

CREATE FUNCTION hf_ceiling_keyrow_acquire(p_key text, p_id text, p_owner text) RETURNS bigint
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
  v_now bigint;
  v_fence bigint;
BEGIN
  PERFORM pg_advisory_xact_lock(hashtextextended(p_key, 0));
  v_now := hf_now();
  INSERT INTO ceiling_locks (key, id, owner, fence, expires_at, ttl_ms, metadata)
  VALUES (p_key, p_id, p_owner, nextval('ceiling_fence'), v_now + 30000, 30000, '{}')
  ON CONFLICT (key) DO UPDATE SET id = excluded.id, owner = excluded.owner, fence = excluded.fence,
    expires_at = excluded.expires_at, ttl_ms = excluded.ttl_ms, metadata = excluded.metadata
  WHERE ceiling_locks.id IS NULL OR ceiling_locks.expires_at <= v_now
  RETURNING fence INTO v_fence;
  RETURN v_fence;
END $$;

CREATE FUNCTION hf_ceiling_keyrow_release(p_key text, p_id text) RETURNS boolean
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
  UPDATE ceiling_locks SET id = NULL, owner = NULL WHERE key = p_key AND id = p_id AND expires_at > hf_now();
  RETURN FOUND;
END $$;

CREATE FUNCTION hf_ceiling_history_acquire(p_key text, p_id text, p_owner text) RETURNS bigint
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
  v_fence bigint := hf_ceiling_keyrow_acquire(p_key, p_id, p_owner);
BEGIN
  IF v_fence IS NOT NULL THEN
    INSERT INTO ceiling_history (at, type, owner, fence, key) VALUES (hf_now(), 'acquired', p_owner, v_fence, p_key);
  END IF;
  RETURN v_fence;
END $$;

CREATE FUNCTION hf_ceiling_history_release(p_key text, p_id text) RETURNS boolean
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
  v_fence bigint;
  v_owner text;
BEGIN
  UPDATE ceiling_locks SET id = NULL, owner = NULL WHERE key = p_key AND id = p_id AND expires_at > hf_now()
  RETURNING fence, owner INTO v_fence, v_owner;
  IF NOT FOUND THEN RETURN false; END IF;
  INSERT INTO ceiling_history (at, type, owner, fence, key) VALUES (hf_now(), 'released', v_owner, v_fence, p_key);
  RETURN true;
END $$;
