-- pgbench script: hf_ceiling_history_acquire + hf_ceiling_history_release of ceiling-functions.sql on the
-- client's own key (see that file: a ceiling for lock designs in PL/pgSQL, not a lock). Schema: hf_pgbench.
SELECT gen_random_uuid()::text AS owner \gset
SELECT hf_pgbench.hf_ceiling_history_acquire('c' || :client_id::text, :owner, 'pgbench');
SELECT hf_pgbench.hf_ceiling_history_release('c' || :client_id::text, :owner);
