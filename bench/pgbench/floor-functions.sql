-- pgbench support: a stripped copy of the lean hf_acquire / hf_release, to measure what the
-- holdfast call shape costs before any of its guarantees. Same inputs, same JSON answers, same
-- validation of the request's shape, one fence from the sequence, the lease row with its indexes;
-- but NO path locks, NO conflict or id checks (no ancestors, descendants, waiters, lock-delays),
-- NO key row and NO history event, NO waiter lookup on release. NOT a lock: never install it in a
-- real schema. Created in schema hf_pgbench by bench/pgbench/run.sh for floor.sql only.
--   hf_floor_acquire(request jsonb, wait_ms bigint, waiter_ttl_ms bigint, origin text) -> json
--   hf_floor_release(id text, origin text) -> json
SET search_path = hf_pgbench;

CREATE FUNCTION hf_floor_acquire(p_request jsonb, p_wait_ms bigint, p_waiter_ttl_ms bigint, p_origin text)
RETURNS json LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
  v_res jsonb := p_request->'resources';
  v_id text := p_request->>'id';
  v_owner text := p_request->>'owner';
  v_metadata jsonb := coalesce(p_request->'metadata', '{}');
  v_ttl bigint;
  v_key text;
  v_resources jsonb;
  v_now bigint;
  v_out json;
BEGIN
  IF jsonb_typeof(v_res) IS DISTINCT FROM 'array' OR jsonb_array_length(v_res) <> 1
     OR jsonb_typeof(v_res->0->'key') IS DISTINCT FROM 'string' OR v_res->0->>'key' = ''
     OR (v_res->0->>'mode') IS DISTINCT FROM 'exclusive' OR (v_res->0->>'limit') IS NOT NULL
     OR (p_request->>'requestId') IS NOT NULL
     OR v_id IS NULL OR v_id = '' OR v_owner IS NULL OR v_owner = ''
     OR jsonb_typeof(p_request->'ttlMs') IS DISTINCT FROM 'number'
     OR jsonb_typeof(v_metadata) IS DISTINCT FROM 'object' THEN
    RAISE EXCEPTION 'floor: lean requests only';
  END IF;
  v_ttl := (p_request->>'ttlMs')::bigint;
  v_key := v_res->0->>'key';
  v_resources := jsonb_build_array(jsonb_build_object('key', v_key, 'mode', 'exclusive', 'limit', NULL));
  v_now := hf_now();
  WITH ins AS (
    INSERT INTO leases (id, owner, resources, roots, fence, acquired_at, expires_at, ttl_ms, request_id, metadata, lock_delay_ms)
    VALUES (v_id, v_owner, v_resources, ARRAY[split_part(v_key, '/', 1)], nextval('fence_seq'), v_now, v_now + v_ttl, v_ttl, NULL,
            v_metadata, 0)
    RETURNING fence, expires_at)
  SELECT json_build_object(
    'value', json_build_object('status', 'granted', 'now', v_now,
      'lease', json_build_object('id', v_id, 'owner', v_owner, 'resources', v_resources, 'fence', ins.fence,
        'acquiredAt', v_now, 'expiresAt', ins.expires_at, 'ttlMs', v_ttl, 'requestId', NULL, 'metadata', v_metadata,
        'lockDelayMs', 0)),
    'changes', json_build_array(json_build_object('type', 'acquired', 'owner', v_owner, 'keys', json_build_array(v_key),
      'fence', ins.fence, 'granted', json_build_array(v_id), 'at', v_now, 'expiresAt', ins.expires_at)),
    'roots', '[]'::json, 'tickets', '[]'::json, 'nextDue', ins.expires_at, 'now', v_now)
  INTO v_out FROM ins;
  RETURN v_out;
END $$;

CREATE FUNCTION hf_floor_release(p_id text, p_origin text) RETURNS json LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
  v_now bigint;
  l record;
BEGIN
  v_now := hf_now();
  DELETE FROM leases WHERE id = p_id AND expires_at > v_now RETURNING owner, fence, hf_keys(resources) AS keys INTO l;
  RETURN json_build_object('value', l.owner IS NOT NULL,
    'changes', json_build_array(json_build_object('type', 'released', 'owner', l.owner, 'keys', l.keys, 'fence', l.fence,
                                                  'granted', '[]'::json, 'at', v_now)),
    'roots', '[]'::json, 'tickets', '[]'::json, 'nextDue', NULL, 'now', v_now);
END $$;
