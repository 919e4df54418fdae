#!/usr/bin/env bash
# A local Citus cluster of PostgreSQL clusters on this machine, for development and tests
# (Debian's postgresql-common: pg_createcluster, pg_ctlcluster; Citus installed, see
# docs/operations.md#citus).
#
#   scripts/citus-cluster.sh [start] [DB]   coordinator and workers up, DB distributed over them;
#                                            prints the coordinator's URL (default DB: trend)
#   scripts/citus-cluster.sh node N [DB]     node N up with Citus in DB, not yet in the cluster
#                                            (to add it: SELECT citus_add_node('127.0.0.1', port))
#   scripts/citus-cluster.sh drop            stop and remove every node of this name
#
# Settings: CITUS_NAME (cit: clusters cit0, cit1, ...), CITUS_BASE_PORT (5450: node N listens on
# base + N), CITUS_WORKERS (2), PG_VERSION (the newest installed). Idempotent: start again and it
# only starts what is stopped. Nodes run with wal_level=logical, which shard moves (rebalancing) need.
set -euo pipefail
export PGOPTIONS="-c client_min_messages=warning"
name=${CITUS_NAME:-cit}
base=${CITUS_BASE_PORT:-5450}
workers=${CITUS_WORKERS:-2}
version=${PG_VERSION:-$(ls /etc/postgresql | sort -V | tail -n 1)}

sql() {  # sql PORT DB STATEMENT
  psql -h 127.0.0.1 -p "$1" -U postgres -d "$2" -v ON_ERROR_STOP=1 -Atqc "$3"
}

node() {  # node N DB: create, configure and start node N, then give DB the citus extension
  local cluster=$name$1 port=$((base + $1)) db=$2
  local conf=/etc/postgresql/$version/$cluster
  if [ ! -d "$conf" ]; then
    pg_createcluster "$version" "$cluster" -p "$port" -- --auth-host=trust --auth-local=trust >/dev/null
    cat >> "$conf/postgresql.conf" <<CONF
shared_preload_libraries = 'citus'
listen_addresses = '127.0.0.1'
max_connections = 300
wal_level = logical
CONF
  fi
  pg_ctlcluster --skip-systemctl-redirect "$version" "$cluster" start >/dev/null 2>&1 || true
  for _ in $(seq 1 60); do pg_isready -h 127.0.0.1 -p "$port" -q && break; sleep 0.5; done
  pg_isready -h 127.0.0.1 -p "$port" -q || { echo "node $cluster did not start on port $port" >&2; exit 1; }
  [ "$(sql "$port" postgres "SELECT count(*) FROM pg_database WHERE datname = '$db'")" = 1 ] \
    || sql "$port" postgres "CREATE DATABASE \"$db\""
  sql "$port" "$db" "CREATE EXTENSION IF NOT EXISTS citus" >/dev/null
}

start() {  # start DB
  local db=$1 n
  for n in $(seq 0 "$workers"); do node "$n" "$db"; done
  sql "$base" "$db" "SELECT citus_set_coordinator_host('127.0.0.1', $base)" >/dev/null
  for n in $(seq 1 "$workers"); do
    [ "$(sql "$base" "$db" "SELECT count(*) FROM pg_dist_node WHERE nodeport = $((base + n))")" = 1 ] \
      || sql "$base" "$db" "SELECT citus_add_node('127.0.0.1', $((base + n)))" >/dev/null
  done
  echo "postgresql://postgres@127.0.0.1:$base/$db"
}

drop() {
  local conf
  for conf in /etc/postgresql/"$version"/"$name"[0-9]*; do
    [ -d "$conf" ] && pg_dropcluster --stop "$version" "$(basename "$conf")"
  done
  return 0
}

case "${1:-start}" in
  start) start "${2:-trend}" ;;
  node) node "$2" "${3:-trend}" ;;
  drop) drop ;;
  *) start "$1" ;;
esac
