#!/usr/bin/env bash
# Starts a throwaway PostgreSQL on loopback for the test suite and prints its
# URL on stdout. Installs PostgreSQL from Debian's packages when absent.
#
#   eval "$(tests/postgres.sh start)"   # exports IPGATE_TEST_POSTGRES_URL
#   tests/postgres.sh stop              # stops it; the data stays for the next start
#   tests/postgres.sh remove            # stops it and deletes its folder
#
# The cluster lives in a folder of its own under the system's temporary
# directory, named after this checkout's path (so two checkouts never share
# one, and `stop` finds it), never inside the checkout: run as root, the
# server runs as the `postgres` user, who may not be able to enter a checkout
# that only its owner can (mode 700, like a fresh `mktemp -d`).
#
# IPGATE_TEST_PG_PORT picks the port (default: the one this checkout used
# before, or the first free one from 54329); IPGATE_TEST_PG_DIR the folder.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
checkout_key="$(printf '%s' "$root" | sha256sum | cut -c1-12)"

say() { echo "tests/postgres.sh: $*" >&2; }

# Who runs the server: as root, the `postgres` user (PostgreSQL refuses to
# run as root); otherwise whoever runs this script.
server_user() {
  if [ "$(id -u)" = 0 ]; then echo postgres; else id -un; fi
}

run_as_server() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

# The temporary directory, when the server's user can reach it; /tmp otherwise
# (a TMPDIR of mode 700 would bring back the very problem this avoids).
temp_base() {
  local base="${TMPDIR:-/tmp}"
  base="${base%/}"
  if [ -d "$base" ] && { [ "$(id -u)" != 0 ] || run_as_server test -x "$base" 2>/dev/null; }; then
    echo "${base:-/}"
  else
    echo /tmp
  fi
}

cluster_dir() {
  if [ -n "${IPGATE_TEST_PG_DIR:-}" ]; then
    echo "$IPGATE_TEST_PG_DIR"
  else
    echo "$(temp_base)/ipgate-test-pg-$(server_user)-$checkout_key"
  fi
}

port_in_use() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# The port this checkout's server uses: remembered once chosen, so a later
# run finds the server it started; the first free one from 54329 otherwise.
pick_port() {
  local dir="$1"
  if [ -n "${IPGATE_TEST_PG_PORT:-}" ]; then echo "$IPGATE_TEST_PG_PORT"; return; fi
  if [ -f "$dir/port" ]; then cat "$dir/port"; return; fi
  local p
  for p in $(seq 54329 54399); do
    port_in_use "$p" || { echo "$p"; return; }
  done
  say "no free port in 54329-54399; set IPGATE_TEST_PG_PORT"
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
  say "PostgreSQL not found; installing it from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq postgresql >&2
}

# Makes the cluster folder, owned by the server's user and closed to others.
# An existing one must be a real folder of that user's: the name is
# predictable, and another user could have put something there first.
make_dir() {
  local dir="$1" user
  user="$(server_user)"
  if [ -L "$dir" ] || { [ -e "$dir" ] && [ ! -d "$dir" ]; }; then
    say "$dir is not a folder; remove it, or set IPGATE_TEST_PG_DIR"
    return 1
  fi
  if [ ! -d "$dir" ]; then
    mkdir -m 700 "$dir"
    if [ "$(id -u)" = 0 ]; then chown postgres: "$dir"; fi
  fi
  local owner
  owner="$(stat -c %U "$dir")"
  if [ "$owner" != "$user" ]; then
    say "$dir belongs to $owner, not $user; remove it, or set IPGATE_TEST_PG_DIR"
    return 1
  fi
  echo "$root" > "$dir/checkout"
}

# Prints a log's last lines to stderr, after a failure.
show_log() {
  [ -f "$1" ] || return 0
  say "last lines of $1:"
  tail -n 20 "$1" >&2
}

start() {
  local bin dir port
  bin="$(find_bin)" || { install_postgres; bin="$(find_bin)"; }
  dir="$(cluster_dir)"
  make_dir "$dir"
  port="$(pick_port "$dir")"
  echo "$port" > "$dir/port"
  if ! run_as_server "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
    if [ ! -f "$dir/data/PG_VERSION" ]; then
      if ! run_as_server "$bin/initdb" -D "$dir/data" -U ipgate --auth=trust -E UTF8 >"$dir/initdb.log" 2>&1; then
        say "initdb failed in $dir/data"
        show_log "$dir/initdb.log"
        return 1
      fi
    fi
    if ! run_as_server "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
      -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c max_connections=300 -c fsync=off" start >&2; then
      say "the server did not start (port $port)"
      show_log "$dir/server.log"
      return 1
    fi
  fi
  echo "export IPGATE_TEST_POSTGRES_URL=postgres://ipgate@127.0.0.1:$port/postgres"
}

stop() {
  local bin dir
  bin="$(find_bin)" || return 0
  dir="$(cluster_dir)"
  if [ -d "$dir/data" ]; then
    run_as_server "$bin/pg_ctl" -D "$dir/data" -m fast stop >&2 || true
  fi
  # Earlier versions of this script kept the cluster inside the checkout.
  local old="$root/target/ipgate-test-pg/data"
  if [ -f "$old/postmaster.pid" ]; then
    run_as_server "$bin/pg_ctl" -D "$old" -m fast stop >&2 || true
  fi
}

remove() {
  local dir
  dir="$(cluster_dir)"
  stop
  if [ -d "$dir" ] && [ ! -L "$dir" ]; then rm -rf -- "$dir"; fi
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  remove) remove ;;
  dir) cluster_dir ;;
  *) echo "usage: $0 start|stop|remove|dir" >&2; exit 2 ;;
esac
