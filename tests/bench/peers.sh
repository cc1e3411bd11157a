#!/usr/bin/env bash
# ipgate's own doors against the peer users would otherwise pick, nginx,
# side by side in one run on loopback, every door with the same upstream
# (an nginx answering 200 "ok" itself, over keep-alive connections):
#
#   N  nginx, 2 workers, `allow`/`deny` with 20 networks, no access log
#   L  the same nginx, writing an access log (a file in the temp dir)
#   P  ipgate's reverse-proxy door (`enforcer --upstream`), a key whose
#      list has the same 20 networks, usage reporting on
#   G  ipgate's gRPC check door (ipgate.check.v1.CheckService/Check), the
#      same key, driven by h2load
#   H  grpc.health.v1.Health/Check on the same gRPC server: the floor,
#      what a no-op unary call costs there
#   B  the proxy door's floor: `bare_proxy` (tests/examples), a hyper
#      reverse proxy with the door's upstream design that decides and
#      reports nothing, on a multi-thread runtime as the enforcer runs
#   C  the same floor on a current-thread runtime a core, each with a
#      listener of its own (SO_REUSEPORT), as nginx runs its workers
#
# N, L, P, B and C are driven by wrk -t1 -cCONNECTIONS, G and H by h2load with as
# many connections, one stream each. Each round runs every door in turn
# for DURATION; the figures are the medians of ROUNDS rounds. Around every
# run the script reads each process's CPU time from /proc and divides it
# by the requests: the CPU microseconds a request costs in each. At the
# end it counts the usage rows the control plane stored against the
# requests the proxy and check doors decided: no row may be lost.
#
#   tests/bench/peers.sh                   # ROUNDS=3 DURATION=8s CONNECTIONS=32
#   ROUNDS=5 DURATION=10s tests/bench/peers.sh
#   ONLY="N P" tests/bench/peers.sh        # some doors only
#   PIN=1 tests/bench/peers.sh             # control plane on CPU 0, enforcer on CPU 1
#   KEEP=1 tests/bench/peers.sh            # keep the logs, configs and database
#   PAUSE=1 tests/bench/peers.sh           # print the pids, wait for Enter before the rounds
#   ENFORCER_FLAGS="--runtime current-thread" tests/bench/peers.sh   # extra enforcer flags
#
# Needs nginx, wrk, h2load (nghttp2-client), curl and python3; run as root,
# it installs the first three with apt-get when they are missing.
set -euo pipefail
cd "$(dirname "$0")/../.."

ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-8s}"
CONNECTIONS="${CONNECTIONS:-32}"
DOORS="${ONLY:-N L P B G H}"
export PATH="$PATH:/usr/sbin"

declare -A package=([nginx]=nginx-light [wrk]=wrk [h2load]=nghttp2-client [curl]=curl)
for tool in nginx wrk h2load curl python3; do
  command -v "$tool" >/dev/null && continue
  if [ "$(id -u)" = 0 ] && [ -n "${package[$tool]:-}" ]; then
    echo "peers.sh: installing ${package[$tool]}" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${package[$tool]}" >/dev/null ||
      { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${package[$tool]}" >/dev/null; }
  fi
  command -v "$tool" >/dev/null || {
    echo "peers.sh: $tool is needed: apt-get install nginx wrk nghttp2-client curl python3" >&2
    exit 2
  }
done
pin_cp=(); pin_enf=()
if [ -n "${PIN:-}" ]; then
  command -v taskset >/dev/null || { echo "peers.sh: PIN=1 needs taskset (util-linux)" >&2; exit 2; }
  pin_cp=(taskset -c 0); pin_enf=(taskset -c 1)
fi

BENCH=peers.sh
# shellcheck source=tests/bench/common.sh
. tests/bench/common.sh
grpc_port=$(free_port); proxy_port=$(free_port); n_port=$(free_port); l_port=$(free_port)
start_upstream
start_control_plane "${pin_cp[@]}"
# The enforcer: the proxy door in front of the upstream, and the gRPC doors
# (check, ext_authz, health). wrk connects straight to it, so the peer
# address is the client's: no trusted proxies.
IPGATE_ENFORCER_TOKEN=$enf IPGATE_LOG=warn "${pin_enf[@]}" "$bin" enforcer \
  --control-plane "http://127.0.0.1:$cp_port" --grpc-listen "127.0.0.1:$grpc_port" \
  --api bench --upstream "http://127.0.0.1:$up_port" --proxy-listen "127.0.0.1:$proxy_port" \
  ${ENFORCER_FLAGS:-} > "$work/enforcer.log" 2>&1 & enf_pid=$!; pids+=("$enf_pid")

# --- B and C: the proxy door's floor, the same upstream ---
b_port=$(free_port); c_port=$(free_port)
if [[ " $DOORS " == *" B "* || " $DOORS " == *" C "* ]]; then
  cargo build --release -q -p ipgate-tests --example bare_proxy
  "${pin_enf[@]}" target/release/examples/bare_proxy "127.0.0.1:$b_port" "127.0.0.1:$up_port" multi \
    > "$work/bare-multi.log" 2>&1 & b_pid=$!; pids+=("$b_pid")
  "${pin_enf[@]}" target/release/examples/bare_proxy "127.0.0.1:$c_port" "127.0.0.1:$up_port" per-core \
    > "$work/bare-per-core.log" 2>&1 & c_pid=$!; pids+=("$c_pid")
fi

# --- N and L: nginx allow/deny, without and with an access log ---
allow_lines=""
for n in "${networks[@]}"; do allow_lines+="allow $n; "; done
mkdir -p "$work/ngx"
cat > "$work/ngx/nginx.conf" <<EOF
worker_processes 2; daemon off; pid $work/ngx/nginx.pid; error_log $work/ngx/error.log warn;
events { worker_connections 1024; }
http { access_log off;
  client_body_temp_path $work/ngx/b; proxy_temp_path $work/ngx/p; fastcgi_temp_path $work/ngx/f;
  uwsgi_temp_path $work/ngx/u; scgi_temp_path $work/ngx/s;
  upstream service { server 127.0.0.1:$up_port; keepalive 64; }
  server { listen 127.0.0.1:$n_port; keepalive_requests 100000;
    location / { $allow_lines deny all;
      proxy_http_version 1.1; proxy_set_header Connection ""; proxy_pass http://service; } }
  server { listen 127.0.0.1:$l_port; keepalive_requests 100000;
    access_log $work/ngx/access.log combined;
    location / { $allow_lines deny all;
      proxy_http_version 1.1; proxy_set_header Connection ""; proxy_pass http://service; } } }
EOF
nginx -p "$work/ngx" -e "$work/ngx/error.log" -c "$work/ngx/nginx.conf" & ngx_pid=$!; pids+=("$ngx_pid")
for p in "$up_port" "$n_port" "$l_port" "$grpc_port" "$proxy_port"; do wait_port "$p"; done
[ -z "${b_pid:-}" ] || { wait_port "$b_port"; wait_port "$c_port"; }

# --- the gRPC bodies: a 5-byte frame prefix (not compressed, length) and
# the message. Check: api, api_key, client_ip, method, path; Health: empty.
python3 - "$work" "$key" <<'EOF'
import struct, sys
work, key = sys.argv[1], sys.argv[2]
def field(number, text):
    data = text.encode()
    return bytes([number << 3 | 2, len(data)]) + data
message = field(1, "bench") + field(2, key) + field(3, "127.0.0.1") + field(4, "GET") + field(5, "/hello")
for name, body in (("check.bin", message), ("health.bin", b"")):
    with open(f"{work}/{name}", "wb") as f:
        f.write(b"\0" + struct.pack(">I", len(body)) + body)
EOF

# Each door must answer before it is timed: 200 from the HTTP doors (the
# proxy door answers 503 until its first snapshot), and for the gRPC doors
# grpc-status 0 with, from Check, allowed = true.
for p in "$n_port" "$l_port" "$proxy_port"; do
  for _ in $(seq 1 100); do
    code="$(curl -s -o /dev/null -w '%{http_code}' -H "X-API-Key: $key" "http://127.0.0.1:$p/hello" || true)"
    [ "$code" = 200 ] && break
    sleep 0.1
  done
  [ "$code" = 200 ] || {
    echo "peers.sh: port $p answers $code, not 200; logs in $work" >&2
    curl -si -H "X-API-Key: $key" "http://127.0.0.1:$p/hello" >&2 || true
    KEEP=1; exit 1
  }
done
# The proxy door's 200 is a usage row; its 503s before the first snapshot
# may be too, so only the 200 is counted, and rows may exceed the count.
warmups=1
grpc_call() { # $1 method path, $2 body file, $3 response file; prints grpc-status
  curl -s --http2-prior-knowledge -X POST -H 'content-type: application/grpc' -H 'te: trailers' \
    --data-binary "@$2" -o "$3" -D - "http://127.0.0.1:$grpc_port$1" |
    tr -d '\r' | awk -F': ' 'tolower($1) == "grpc-status" {print $2}'
}
checks=1 # the allowed Check; those before the first snapshot are not counted
for _ in $(seq 1 100); do
  status="$(grpc_call /ipgate.check.v1.CheckService/Check "$work/check.bin" "$work/check.out")"
  # CheckResponse field 1 (allowed), varint 1: bytes 08 01 after the prefix.
  [ "$status" = 0 ] && [ "$(od -An -tx1 -j5 -N2 "$work/check.out" | tr -d ' ')" = 0801 ] && break
  sleep 0.1
done
[ "$(od -An -tx1 -j5 -N2 "$work/check.out" | tr -d ' ')" = 0801 ] || {
  echo "peers.sh: Check does not allow the benchmark's request (grpc-status ${status:-none}); logs in $work" >&2
  KEEP=1; exit 1
}
[ "$(grpc_call /grpc.health.v1.Health/Check "$work/health.bin" "$work/health.out")" = 0 ] || {
  echo "peers.sh: Health/Check fails; logs in $work" >&2; KEEP=1; exit 1
}
if [ -n "${PAUSE:-}" ]; then
  echo "peers.sh: control plane $cp_pid, enforcer $enf_pid, nginx $ngx_pid, upstream $up_pid; Enter to start" >&2
  read -r _
fi

# Who spends the CPU: the front (nginx for N and L, bare_proxy for B and
# C), the enforcer (the door of P, G and H), the control plane (usage
# ingest) and the upstream.
dur_s="${DURATION%s}"
declare -A door_port=([N]=$n_port [L]=$l_port [P]=$proxy_port [B]=$b_port [C]=$c_port)
declare -A front=([B]=${b_pid:-} [C]=${c_pid:-})

declare -A rps p50 cpu served
served[P]=0; served[G]=0
for round in $(seq 1 "$ROUNDS"); do
  for n in N L P B C G H; do
    [[ " $DOORS " == *" $n "* ]] || continue
    watched=("${front[$n]:-$ngx_pid}" "$enf_pid" "$cp_pid" "$up_pid")
    before=(); for w in "${watched[@]}"; do before+=("$(ticks "$w")"); done
    case $n in
      N|L|P|B|C)
        port=${door_port[$n]}
        out="$(wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency -H "X-API-Key: $key" "http://127.0.0.1:$port/hello")"
        requests="$(echo "$out" | awk '/requests in/ {print $1}')"
        r="$(echo "$out" | awk '/Requests\/sec/ {print $2}')"
        l="$(echo "$out" | awk '$1 == "50%" {print $2}')"
        bad="$(echo "$out" | awk '/Non-2xx|Socket errors/ {print}')"
        ;;
      G|H)
        path=/ipgate.check.v1.CheckService/Check; body=check.bin
        [ "$n" = H ] && { path=/grpc.health.v1.Health/Check; body=health.bin; }
        out="$(h2load -t1 -c"$CONNECTIONS" -m1 -D"$dur_s" -d "$work/$body" \
          -H 'content-type: application/grpc' -H 'te: trailers' "http://127.0.0.1:$grpc_port$path")"
        requests="$(echo "$out" | awk '/^requests:/ {print $8}')" # succeeded
        r="$(echo "$out" | awk '/^finished in/ {print $4}')"
        # h2load: "time for request:  min max mean sd +/- sd"; no median,
        # so the mean stands in the p50 column, marked.
        l="$(echo "$out" | awk '/^time for request:/ {print $6}')"
        bad="$(echo "$out" | awk '/^requests:/ && ($10 + $12 + $14) > 0 {print} /^status codes:/ && ($5 + $7 + $9) > 0 {print}')"
        ;;
    esac
    after=(); for w in "${watched[@]}"; do after+=("$(ticks "$w")"); done
    [ -z "$bad" ] || { echo "peers.sh: $n: $bad" >&2; KEEP=1; exit 1; }
    for k in 0 1 2 3; do
      cpu[$n,$k]+="$(awk -v a="${before[$k]}" -v b="${after[$k]}" -v n="$requests" -v hz="$hz" \
        'BEGIN {printf "%.1f", (b - a) / hz * 1e6 / n}') "
    done
    [ -z "${served[$n]:-}" ] || served[$n]=$((served[$n] + requests))
    rps[$n]+="$r "; p50[$n]+="$l "
    echo "round $round $n: $r requests/s, p50 $l ($requests requests)" >&2
  done
done

declare -A R
declare -A peer=([N]="nginx allow/deny, no access log" [L]="nginx allow/deny, access log"
  [P]="ipgate proxy door (usage on)" [B]="floor: bare hyper proxy, multi-thread"
  [C]="floor: bare hyper proxy, a current-thread runtime a core" [G]="ipgate gRPC Check (h2load)" [H]="gRPC Health/Check on the same server (h2load): floor")
echo
echo "| door | what | requests/s, $CONNECTIONS connections | p50 ms (G, H: mean) | CPU µs a request: front (nginx, bare proxy) / enforcer / control plane / upstream |"
echo "|---|---|---|---|---|"
for n in $DOORS; do
  R[$n]="$(echo "${rps[$n]}" | median)"
  L="$(echo "${p50[$n]}" | to_ms | tr '\n' ' ' | median)"
  c="$(for k in 0 1 2 3; do echo "${cpu[$n,$k]}" | median; done | paste -sd/ | sed 's|/| / |g')"
  echo "| $n | ${peer[$n]} | ${R[$n]} | $L | $c |"
done
echo
echo "Per round (requests/s):$(for n in $DOORS; do printf ' %s %s;' "$n" "$(echo "${rps[$n]}" | xargs | sed 's/ / \/ /g')"; done)"
ratio() { # $1 $2 doors, $3 text
  [ -n "${R[$1]:-}" ] && [ -n "${R[$2]:-}" ] || return 0
  awk -v a="${R[$1]}" -v b="${R[$2]}" -v t="$3" 'BEGIN {printf "%s, requests/s: %.2fx\n", t, a/b}'
}
ratio P N "proxy door / nginx without access log"
ratio P L "proxy door / nginx with access log"
ratio L N "nginx with access log / without"
ratio B N "floor, multi-thread / nginx without access log"
ratio C N "floor, a runtime a core / nginx without access log"
ratio P B "proxy door / its floor (multi-thread)"
ratio G H "gRPC Check / Health floor"

# --- no lost usage row: every request the proxy and check doors decided
# (the warm-up requests included) is a row once the control plane has
# ingested the last batches; wait until the count reaches it or stops.
count_rows() {
  python3 - "$work/ipgate.usage.db" <<'EOF'
import sqlite3, sys
db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True, timeout=10)
rows = dict(db.execute("SELECT door, COUNT(*) FROM usage_events GROUP BY door").fetchall())
print(rows.get("proxy", 0), rows.get("check", 0))
EOF
}
want_p=$((served[P] + warmups)); want_g=$((served[G] + checks))
last=""; rows=""
for _ in $(seq 1 60); do
  rows="$(count_rows)"
  [ "$rows" = "$want_p $want_g" ] && break
  [ "$rows" = "$last" ] && break
  last="$rows"; sleep 1
done
read -r got_p got_g <<< "$rows"
# Events the enforcer had to drop (its queue full) are not lost silently:
# they are gaps in the usage log, counted but not split by door.
gapped="$(python3 - "$work/ipgate.usage.db" <<'EOF'
import sqlite3, sys
db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True, timeout=10)
print(db.execute("SELECT COALESCE(SUM(dropped_allowed + dropped_blocked), 0) FROM usage_gaps").fetchone()[0])
EOF
)"
echo "usage-log gaps: $gapped requests dropped by the enforcer, counted in gap rows"
# wrk and h2load count the requests answered before the time ran out; the
# up to CONNECTIONS requests in flight then were decided too, and logged.
runs=$ROUNDS
echo "usage rows: proxy door $got_p for $want_p requests answered; check door $got_g for $want_g" \
  "(each run leaves up to $CONNECTIONS more decided in flight, $((runs * CONNECTIONS)) in all)"
[ "$got_p" -ge "$want_p" ] && [ "$got_g" -ge "$want_g" ] || echo "peers.sh: usage rows lost" >&2
echo "wrk -t1 -c$CONNECTIONS / h2load -t1 -c$CONNECTIONS -m1, $DURATION each, $ROUNDS rounds, medians; $(nproc) cores${PIN:+, control plane on CPU 0 and enforcer on CPU 1 (taskset)}; $(date -u +%Y-%m-%d)"
