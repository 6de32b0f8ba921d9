-- pgbench script: handoff.sql with the hand-off release timed inside the database
-- (timed-release-functions.sql) after a 2 ms pause, as when a holder releases after some work.
-- Percentiles afterwards:
--   SELECT count(*), percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP (ORDER BY ms) FROM hf_pgbench.timings;
SELECT (hf_pgbench.hf_acquire(jsonb_build_object('id', gen_random_uuid()::text, 'owner', 'holder', 'ttlMs', 30000,
          'resources', jsonb_build_array(jsonb_build_object('key', 'h' || :client_id::text, 'mode', 'exclusive', 'limit', null)),
          'metadata', '{}'::jsonb), 0, 5000, 'pgbench'))->'value'->'lease'->>'id' AS holder \gset
SELECT (hf_pgbench.hf_acquire(jsonb_build_object('id', gen_random_uuid()::text, 'owner', 'waiter', 'ttlMs', 30000,
          'resources', jsonb_build_array(jsonb_build_object('key', 'h' || :client_id::text, 'mode', 'exclusive', 'limit', null)),
          'metadata', '{}'::jsonb), 10000, 5000, 'pgbench'))->'value'->>'ticket' AS waiter \gset
\sleep 2 ms
SELECT hf_pgbench.timed_release(:holder);
SELECT hf_pgbench.hf_release(:waiter, 'pgbench');
