#!/usr/bin/env bash
# The Postgres store's calls timed in the database alone, with pgbench (no Node, no pool): per
# statement latencies of an acquire + release pair, of the naive lock's upsert + delete, of a
# hand-off, of the floor (floor.sql) and of three ceilings (ceiling-*.sql: simpler locks in PL/pgSQL,
# see ceiling-functions.sql), then each pair script's transactions/s as a ratio to the naive lock's.
# Each script runs on a fresh schema hf_pgbench (dropped afterwards), with CLIENTS clients, each on
# its own key (pgbench -j 2 when more than one), REPEATS times in turn (the ratios use each
# script's median transactions/s; many clients on two cores make single runs noisy).
#   bash bench/pgbench/run.sh [seconds per script, default 10] [CLIENTS, default 1] [REPEATS, default 1]
# PGBENCH (default: pgbench on PATH or PostgreSQL 15's), HOLDFAST_POSTGRES_URL (default
# postgres://postgres@127.0.0.1:5432/test). Needs `npm run build` first.
set -euo pipefail
cd "$(dirname "$0")/../.."
url=${HOLDFAST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}
pgbench=${PGBENCH:-$(command -v pgbench || echo /usr/lib/postgresql/15/bin/pgbench)}
seconds=${1:-10}
clients=${2:-1}
repeats=${3:-1}
jobs=$([ "$clients" -gt 1 ] && echo 2 || echo 1)
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
scripts="naive pair handoff floor ceiling-wrap ceiling-keyrow ceiling-history"
declare -A tps
for round in $(seq 1 "$repeats"); do
  for script in $scripts; do
    fresh
    case $script in
      floor) psql "$url" -q -v ON_ERROR_STOP=1 -f bench/pgbench/floor-functions.sql >/dev/null ;;
      ceiling-*) psql "$url" -q -v ON_ERROR_STOP=1 -f bench/pgbench/ceiling-functions.sql >/dev/null ;;
    esac
    echo "== $script ($seconds s, $clients client(s), round $round of $repeats)"
    out=$("$pgbench" -n -M prepared -r -c "$clients" -j "$jobs" -T "$seconds" -f "bench/pgbench/$script.sql" "$url" 2>&1)
    echo "$out" | grep -E '^(tps|latency average)|^ +[0-9.]+ +[0-9]+ +[A-Z]' | sed -E 's/(.{110}).*/\1…/'
    tps[$script]="${tps[$script]:-} $(echo "$out" | sed -nE 's/^tps = ([0-9.]+).*/\1/p')"
  done
done
median() { tr ' ' '\n' | grep . | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
naive=$(echo "${tps[naive]}" | median)
echo "== pairs/s (median of $repeats) as a ratio to the naive lock's ($clients client(s))"
for script in pair floor ceiling-wrap ceiling-keyrow ceiling-history; do
  awk -v s="$script" -v a="$(echo "${tps[$script]}" | median)" -v b="$naive" -v all="${tps[$script]}" \
    'BEGIN { printf "%-16s %7.0f / %7.0f = %.2fx   (runs:%s)\n", s, a, b, a / b, all }'
done
