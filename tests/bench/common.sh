# shellcheck shell=bash disable=SC2034
# What the benchmark scripts share, sourced by doors.sh and peers.sh: the
# release build, a work folder cleaned up on exit, loopback ports, the
# upstream every door forwards to, a control plane holding API "bench" with
# a key whose list has 20 networks, and the arithmetic on wrk's figures.
#
# The sourcing script sets BENCH (its name, for messages) first.
# IPGATE_BIN names another ipgate binary (to compare two builds); without
# it the release build of this tree is used.

if [ -n "${IPGATE_BIN:-}" ]; then
  bin="$(realpath "$IPGATE_BIN")"
else
  cargo build --release -q -p ipgate
  bin="$PWD/target/release/ipgate"
fi
work="$(mktemp -d "${TMPDIR:-/tmp}/ipgate-$BENCH.XXXXXX")"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "${KEEP:-}" ]; then echo "$BENCH: logs in $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 1 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "$BENCH: nothing listens on port $1" >&2
  KEEP=1
  exit 1
}

owner=ipg_admin_benchOwnerToken000000000000000000000000000000
enf=ipg_enf_benchEnforcerToken00000000000000000000000000000
# 20 networks: the caller, and 19 the benchmark never comes from.
networks=(127.0.0.1/32)
for i in $(seq 1 19); do networks+=("198.51.$((i + 100)).0/24"); done

# The upstream: an nginx answering 200 "ok" by itself. Sets up_port, up_pid.
start_upstream() {
  up_port=$(free_port)
  mkdir -p "$work/up"
  cat > "$work/up/nginx.conf" <<EOF
worker_processes 1; daemon off; pid $work/up/nginx.pid; error_log $work/up/error.log warn;
events { worker_connections 1024; }
http { access_log off;
  client_body_temp_path $work/up/b; proxy_temp_path $work/up/p; fastcgi_temp_path $work/up/f;
  uwsgi_temp_path $work/up/u; scgi_temp_path $work/up/s;
  server { listen 127.0.0.1:$up_port; keepalive_requests 100000;
    location / { return 200 "ok\n"; } } }
EOF
  nginx -p "$work/up" -e "$work/up/error.log" -c "$work/up/nginx.conf" & up_pid=$!
  pids+=("$up_pid")
}

# A control plane on SQLite with API "bench" and a key on it holding the 20
# networks, started behind the command prefix given (e.g. `taskset -c 0`).
# Sets cp_port, cp_pid, key, key_id, and IPGATE_ADDR/IPGATE_TOKEN for the CLI.
start_control_plane() {
  cp_port=$(free_port)
  IPGATE_BOOTSTRAP_TOKEN=$owner IPGATE_BOOTSTRAP_ENFORCER_TOKEN=$enf IPGATE_LOG=warn \
    "$@" "$bin" control-plane --listen "127.0.0.1:$cp_port" --database "sqlite://$work/ipgate.db" \
    > "$work/cp.log" 2>&1 & cp_pid=$!
  pids+=("$cp_pid")
  wait_port "$cp_port"
  export IPGATE_ADDR="http://127.0.0.1:$cp_port" IPGATE_TOKEN=$owner
  "$bin" apis create bench --name "Bench API" >/dev/null
  local created
  created="$("$bin" keys create --api bench --name bench --json)"
  key="$(echo "$created" | python3 -c 'import json,sys; print(json.load(sys.stdin)["secret"])')"
  key_id="$(echo "$created" | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"]["id"])')"
  "$bin" keys allowlist set "$key_id" "${networks[@]}" >/dev/null
}

# CPU time (clock ticks, user + system) of a process and its children
# (nginx's workers, the binary a launcher script started).
ticks() {
  local p
  for p in "$1" $(pgrep -P "$1"); do awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null; done |
    awk '{s += $1} END {print s + 0}'
}
hz="$(getconf CLK_TCK)"

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# wrk prints latencies as 512.00us or 1.20ms: in milliseconds.
to_ms() { tr ' ' '\n' | grep -v '^$' | awk '/us$/ {sub("us",""); print $1/1000; next} /ms$/ {sub("ms",""); print $1; next} /s$/ {sub("s",""); print $1*1000}'; }
