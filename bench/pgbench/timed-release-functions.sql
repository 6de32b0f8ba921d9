-- For timed-handoff.sql: hf_pgbench.timed_release(id) runs hf_release(id) and records how long the
-- function body took (clock_timestamp() before and after: no network, no commit) in the unlogged
-- table hf_pgbench.timings (ms float8). Load after migrating the schema hf_pgbench:
--   psql "$url" -f bench/pgbench/timed-release-functions.sql
CREATE UNLOGGED TABLE hf_pgbench.timings (ms float8 NOT NULL);

CREATE FUNCTION hf_pgbench.timed_release(p_id text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  t0 timestamptz := clock_timestamp();
BEGIN
  PERFORM hf_pgbench.hf_release(p_id, 'pgbench');
  INSERT INTO hf_pgbench.timings VALUES (extract(epoch FROM clock_timestamp() - t0) * 1000);
END $$;
