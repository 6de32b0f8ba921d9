-- pgbench script: the benchmark's naive lock (bench/anchors.ts) on the client's own key: an upsert
-- that takes an expired or free key, then a delete by owner. Schema: hf_pgbench.
SELECT gen_random_uuid()::text AS owner \gset
INSERT INTO hf_pgbench.naive_locks (key, owner, expires_at)
VALUES ('c' || :client_id::text, :owner, floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint + 30000)
ON CONFLICT (key) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at
WHERE naive_locks.expires_at < floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint RETURNING owner;
DELETE FROM hf_pgbench.naive_locks WHERE key = 'c' || :client_id::text AND owner = :owner;
