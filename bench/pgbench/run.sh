#!/usr/bin/env bash
# The Postgres store's calls timed in the database alone, with pgbench (no Node, no pool): per
# statement latencies of an acquire + release pair, of the naive lock's upsert + delete, and of a
# hand-off. Each script runs on a fresh schema hf_pgbench (dropped afterwards), one client.
#   bash bench/pgbench/run.sh [seconds per script, default 10]
# PGBENCH (default: pgbench on PATH or PostgreSQL 15's), HOLDFAST_POSTGRES_URL (default
# postgres://postgres@127.0.0.1:5432/test). Needs `npm run build` first.
set -euo pipefail
cd "$(dirname "$0")/../.."
url=${HOLDFAST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}
pgbench=${PGBENCH:-$(command -v pgbench || echo /usr/lib/postgresql/15/bin/pgbench)}
seconds=${1:-10}
fresh() {
  node --input-type=module -e "
    import pg from 'pg';
    import { migrate } from './dist/src/stores/postgres/migrate.js';
    const pool = new pg.Pool({ connectionString: process.argv[1] });
    await pool.query('DROP SCHEMA IF EXISTS hf_pgbench CASCADE');
    await migrate(pool, 'hf_pgbench');
    await pool.query('CREATE TABLE hf_pgbench.naive_locks (key text PRIMARY KEY, owner text NOT NULL, expires_at bigint NOT NULL)');
    await pool.end();" "$url"
}
trap 'psql "$url" -qc "DROP SCHEMA IF EXISTS hf_pgbench CASCADE" >/dev/null 2>&1 || true' EXIT
for script in pair naive handoff floor; do
  fresh
  if [ "$script" = floor ]; then psql "$url" -q -v ON_ERROR_STOP=1 -f bench/pgbench/floor-functions.sql >/dev/null; fi
  echo "== $script ($seconds s, 1 client)"
  "$pgbench" -n -M prepared -r -c 1 -T "$seconds" -f "bench/pgbench/$script.sql" "$url" 2>&1 \
    | grep -E '^(tps|latency average)|^ +[0-9.]+ +[0-9]+ +[A-Z]' | sed -E 's/(.{110}).*/\1…/'
done
