#!/usr/bin/env bash
# CI: the fault harness for 30 s against each store with every nemesis that applies to it:
#   sqlite      a file of the run
#   postgres    a private cluster the harness starts, so it can restart it
#   mysql       a private MariaDB server the harness starts, kill -9s and starts again
#   redis       a private redis-server with AOF fsync always that the harness kill -9s, SIGSTOPs
#               and CLIENT PAUSEs (pause-store), and whose run connections it CLIENT KILLs
#   etcd        a private 3-member cluster of the harness (kill/pause/partition-member nemeses)
# At most two runs at a time (the machine has 2 cores; four at once would measure the machine),
# so about 120 s in all. The register lives on the machine's cluster (HOLDFAST_FAULTS_REGISTER_URL, default
# postgres://postgres@127.0.0.1:5432/test). Fails if any run reports a violation or fails.
set -uo pipefail
cd "$(dirname "$0")/.."
duration=${HOLDFAST_FAULTS_DURATION:-30s}
postgres=${HOLDFAST_FAULTS_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}
mysql=${HOLDFAST_FAULTS_MYSQL_URL:-mysql://root@127.0.0.1:3306/test}
redis=${HOLDFAST_FAULTS_REDIS_URL:-redis://127.0.0.1:6379/0}

npx tsc -p . || exit 1
logs=$(mktemp -d "${TMPDIR:-/tmp}/holdfast-faults-ci-XXXXXX")
pids=()
stop() { for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null; done; wait; rm -rf "$logs"; }
trap 'stop; exit 130' INT TERM

status=0
# wave NAME=STORE ...: runs these at once, waits for all, prints their logs.
wave() {
  local names=() spec name store
  pids=()
  for spec in "$@"; do
    name=${spec%%=*}
    store=${spec#*=}
    names+=("$name")
    node dist/faults/main.js --store "$store" --duration "$duration" >"$logs/$name.log" 2>&1 &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do wait "$pid" || status=1; done
  for name in "${names[@]}"; do
    echo "---- faults: $name"
    cat "$logs/$name.log"
  done
}

wave "sqlite=sqlite:$logs/store.db" "postgres=$postgres"
wave "mysql=$mysql" "redis=$redis"
wave "etcd=etcd"
rm -rf "$logs"
if [ "$status" -ne 0 ]; then echo "faults: FAILED (see the violations above)"; fi
exit "$status"
