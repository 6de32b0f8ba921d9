-- pgbench script: one holdfast acquire + release pair on the client's own key, as the store sends
-- them (one function call each). Variables: :client_id (pgbench's). Schema: hf_pgbench.
SELECT (hf_pgbench.hf_acquire(jsonb_build_object('id', gen_random_uuid()::text, 'owner', 'pgbench', 'ttlMs', 30000,
          'resources', jsonb_build_array(jsonb_build_object('key', 'c' || :client_id::text, 'mode', 'exclusive', 'limit', null)),
          'metadata', '{}'::jsonb), 0, 5000, 'pgbench'))->'value'->'lease'->>'id' AS lease \gset
SELECT hf_pgbench.hf_release(:lease, 'pgbench');
