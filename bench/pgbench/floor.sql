-- pgbench script: pair.sql with the stripped functions of floor-functions.sql (no locks, no
-- checks, no key row, no history): the cost of the call shape and the lease row alone, the floor
-- under any lean holdfast pair with this table layout. Schema: hf_pgbench.
SELECT (hf_pgbench.hf_floor_acquire(jsonb_build_object('id', gen_random_uuid()::text, 'owner', 'pgbench', 'ttlMs', 30000,
          'resources', jsonb_build_array(jsonb_build_object('key', 'c' || :client_id::text, 'mode', 'exclusive', 'limit', null)),
          'metadata', '{}'::jsonb), 0, 5000, 'pgbench'))->'value'->'lease'->>'id' AS lease \gset
SELECT hf_pgbench.hf_floor_release(:lease, 'pgbench');
