-- pgbench script: a hand-off in the database alone: a holder acquires, a waiter queues behind it,
-- the holder's release grants the waiter (in the same transaction), the waiter's lease is
-- released. Schema: hf_pgbench.
SELECT (hf_pgbench.hf_acquire(jsonb_build_object('id', gen_random_uuid()::text, 'owner', 'holder', 'ttlMs', 30000,
          'resources', jsonb_build_array(jsonb_build_object('key', 'h' || :client_id::text, 'mode', 'exclusive', 'limit', null)),
          'metadata', '{}'::jsonb), 0, 5000, 'pgbench'))->'value'->'lease'->>'id' AS holder \gset
SELECT (hf_pgbench.hf_acquire(jsonb_build_object('id', gen_random_uuid()::text, 'owner', 'waiter', 'ttlMs', 30000,
          'resources', jsonb_build_array(jsonb_build_object('key', 'h' || :client_id::text, 'mode', 'exclusive', 'limit', null)),
          'metadata', '{}'::jsonb), 10000, 5000, 'pgbench'))->'value'->>'ticket' AS waiter \gset
SELECT hf_pgbench.hf_release(:holder, 'pgbench');
SELECT hf_pgbench.hf_release(:waiter, 'pgbench');
