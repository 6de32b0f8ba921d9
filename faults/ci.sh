#!/usr/bin/env bash
# CI: the fault harness for 30 s against SQLite, for 30 s against PostgreSQL (a private cluster
# the harness starts, so it can restart it) and for 30 s against etcd (a private 3-member cluster
# of the harness, for the kill/pause/partition-member nemeses), with every nemesis, all at once
# (~45 s in all).
# The register lives on the machine's cluster (HOLDFAST_FAULTS_REGISTER_URL, default
# postgres://postgres@127.0.0.1:5432/test). Fails if any run reports a violation or fails.
set -uo pipefail
cd "$(dirname "$0")/.."
duration=${HOLDFAST_FAULTS_DURATION:-30s}
postgres=${HOLDFAST_FAULTS_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}

npx tsc -p . || exit 1
logs=$(mktemp -d "${TMPDIR:-/tmp}/holdfast-faults-ci-XXXXXX")
pids=()
stop() { for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null; done; wait; rm -rf "$logs"; }
trap 'stop; exit 130' INT TERM

node dist/faults/main.js --store "sqlite:$logs/store.db" --duration "$duration" >"$logs/sqlite.log" 2>&1 &
pids+=($!)
node dist/faults/main.js --store "$postgres" --duration "$duration" >"$logs/postgres.log" 2>&1 &
pids+=($!)
node dist/faults/main.js --store etcd --duration "$duration" >"$logs/etcd.log" 2>&1 &
pids+=($!)

status=0
for i in 0 1 2; do
  wait "${pids[$i]}" || status=1
done
for run in sqlite postgres etcd; do
  echo "---- faults: $run"
  cat "$logs/$run.log"
done
rm -rf "$logs"
if [ "$status" -ne 0 ]; then echo "faults: FAILED (see the violations above)"; fi
exit "$status"
