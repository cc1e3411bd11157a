#!/usr/bin/env bash
# Starts a throwaway PostgreSQL on loopback for the test suite and prints its
# URL on stdout. Installs PostgreSQL from Debian's packages when absent.
#
#   eval "$(tests/postgres.sh start)"   # exports IPGATE_TEST_POSTGRES_URL
#   tests/postgres.sh stop
#
# State lives in target/ipgate-test-pg so a later run can reuse or stop it.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
dir="$root/target/ipgate-test-pg"

port_in_use() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# The port this checkout's server uses: remembered once chosen, so a later
# run finds the server it started; the first free one from 54329 otherwise.
pick_port() {
  if [ -n "${IPGATE_TEST_PG_PORT:-}" ]; then echo "$IPGATE_TEST_PG_PORT"; return; fi
  if [ -f "$dir/port" ]; then cat "$dir/port"; return; fi
  local p
  for p in $(seq 54329 54399); do
    port_in_use "$p" || { echo "$p"; return; }
  done
  echo "tests/postgres.sh: no free port in 54329-54399" >&2
  return 1
}

find_bin() {
  local b
  for b in /usr/lib/postgresql/*/bin; do
    [ -x "$b/initdb" ] && { echo "$b"; return 0; }
  done
  return 1
}

install_postgres() {
  echo "tests/postgres.sh: PostgreSQL not found; installing it from Debian's packages" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq postgresql >&2
}

run_as_postgres() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

start() {
  local bin
  bin="$(find_bin)" || { install_postgres; bin="$(find_bin)"; }
  mkdir -p "$dir"
  if [ "$(id -u)" = 0 ]; then chown postgres "$dir"; fi
  local port
  port="$(pick_port)"
  echo "$port" > "$dir/port"
  if ! run_as_postgres "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
    if [ ! -f "$dir/data/PG_VERSION" ]; then
      run_as_postgres "$bin/initdb" -D "$dir/data" -U ipgate --auth=trust -E UTF8 >"$dir/initdb.log" 2>&1
    fi
    run_as_postgres "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
      -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c max_connections=300 -c fsync=off" start >&2
  fi
  echo "export IPGATE_TEST_POSTGRES_URL=postgres://ipgate@127.0.0.1:$port/postgres"
}

stop() {
  local bin
  bin="$(find_bin)" || return 0
  [ -d "$dir/data" ] && run_as_postgres "$bin/pg_ctl" -D "$dir/data" -m fast stop >&2 || true
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
