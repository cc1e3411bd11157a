#!/usr/bin/env bash
# The doors against the peers users would otherwise pick, side by side in
# one run on loopback, with wrk (BENCHMARKS.md keeps the figures):
#
#   A  Envoy, its inline RBAC filter allowing the list's networks
#   B  Envoy asking ipgate (ext_authz, gRPC) with the same list on a key
#   C  nginx `allow`/`deny` with the same networks
#   D  nginx asking ipgate (auth_request, HTTP auth endpoint)
#   E  Envoy asking a no-op authorization server (ext_authz over HTTP to
#      the upstream nginx, which allows everything): the floor, what
#      Envoy's ext_authz filter costs with any server behind it
#
# Every one forwards allowed requests to the same upstream (an nginx that
# answers 200 "ok" itself). The key's list has 20 entries, the caller's
# 127.0.0.1 among them. Each round runs A to E in turn, each twice:
# with CONNECTIONS connections for throughput, then with one connection for
# the latency a request takes unloaded. It also counts the CPU time each
# process spent a request (from /proc), to show where the time goes. The
# figures are the medians of the rounds. Needs envoy, nginx, wrk, curl and
# the release build of ipgate (built here).
#
#   tests/bench/doors.sh              # ROUNDS=3 DURATION=8s CONNECTIONS=32
#   ROUNDS=5 DURATION=10s tests/bench/doors.sh
#   ONLY="A B" tests/bench/doors.sh   # some doors only
#   KEEP=1 tests/bench/doors.sh       # keep the logs and configs
set -euo pipefail
cd "$(dirname "$0")/../.."

ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-8s}"
CONNECTIONS="${CONNECTIONS:-32}"
export PATH="$PATH:/usr/sbin"
for tool in envoy nginx wrk curl; do
  command -v "$tool" >/dev/null || {
    echo "doors.sh: $tool is needed: tests/run.sh installs envoy and nginx; apt-get install wrk curl" >&2
    exit 2
  }
done

BENCH=doors.sh
# shellcheck source=tests/bench/common.sh
. tests/bench/common.sh
grpc_port=$(free_port); auth_port=$(free_port)
a_port=$(free_port); b_port=$(free_port); c_port=$(free_port); d_port=$(free_port); e_port=$(free_port)
start_upstream
# shellcheck disable=SC2119 # no command prefix: nothing is pinned here
start_control_plane
# No --trusted-proxies: the caller, Envoy and nginx are all 127.0.0.1, and
# Envoy appends its own non-loopback address to X-Forwarded-For for a
# loopback caller (docs/client-ip.md), so trusting loopback would decide B
# on that address.
IPGATE_ENFORCER_TOKEN=$enf IPGATE_LOG=warn "$bin" enforcer \
  --control-plane "http://127.0.0.1:$cp_port" --grpc-listen "127.0.0.1:$grpc_port" \
  --auth-listen "127.0.0.1:$auth_port" \
  > "$work/enforcer.log" 2>&1 & enf_pid=$!; pids+=("$enf_pid")
wait_port "$grpc_port"; wait_port "$auth_port"

# --- A and B: Envoy, with RBAC or with ext_authz ---
rbac_ranges=""
for n in "${networks[@]}"; do
  rbac_ranges+="                        - remote_ip: { address_prefix: ${n%/*}, prefix_len: ${n#*/} }"$'\n'
done
envoy_config() { # $1 port, $2 the filter before the router
  cat <<EOF
static_resources:
  listeners:
    - address: { socket_address: { address: 127.0.0.1, port_value: $1 } }
      filter_chains:
        - filters:
            - name: envoy.filters.network.http_connection_manager
              typed_config:
                "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
                stat_prefix: in
                use_remote_address: true
                route_config:
                  virtual_hosts:
                    - name: bench
                      domains: ["*"]
                      routes:
                        - match: { prefix: "/" }
                          route: { cluster: service }
                          typed_per_filter_config:
                            envoy.filters.http.ext_authz:
                              "@type": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute
                              check_settings: { context_extensions: { ipgate_api: bench } }
                http_filters:
$2
                  - name: envoy.filters.http.router
                    typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }
  clusters:
    - name: service
      type: STATIC
      load_assignment:
        cluster_name: service
        endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: $up_port } } } }] }]
    - name: ipgate
      type: STATIC
      typed_extension_protocol_options:
        envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
          "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
          explicit_http_config: { http2_protocol_options: {} }
      load_assignment:
        cluster_name: ipgate
        endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: $grpc_port } } } }] }]
EOF
}
rbac_filter="                  - name: envoy.filters.http.rbac
                    typed_config:
                      \"@type\": type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC
                      rules:
                        action: ALLOW
                        policies:
                          allowlist:
                            permissions: [{ any: true }]
                            principals:
$(printf '%s' "$rbac_ranges" | sed 's/^                        /                              /')
"
# The filter above disables the ext_authz route setting, which Envoy
# ignores without an ext_authz filter.
authz_filter="                  - name: envoy.filters.http.ext_authz
                    typed_config:
                      \"@type\": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz
                      transport_api_version: V3
                      failure_mode_allow: false
                      grpc_service: { envoy_grpc: { cluster_name: ipgate }, timeout: 1s }
                      allowed_headers:
                        patterns:
                          - { exact: authorization }
                          - { exact: x-api-key }
                          - { exact: x-forwarded-for }
                          - { exact: forwarded }
                          - { exact: x-request-id }"
noop_filter="                  - name: envoy.filters.http.ext_authz
                    typed_config:
                      \"@type\": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz
                      transport_api_version: V3
                      failure_mode_allow: false
                      http_service:
                        server_uri: { uri: \"http://127.0.0.1:$up_port\", cluster: service, timeout: 1s }
                      allowed_headers:
                        patterns:
                          - { exact: x-api-key }"
envoy_config "$e_port" "$noop_filter" > "$work/envoy-noop.yaml"
envoy -c "$work/envoy-noop.yaml" --base-id 43 --concurrency 2 --log-level error > "$work/envoy-noop.log" 2>&1 & e_pid=$!; pids+=("$e_pid")
envoy_config "$a_port" "$rbac_filter" > "$work/envoy-rbac.yaml"
envoy_config "$b_port" "$authz_filter" > "$work/envoy-authz.yaml"
envoy -c "$work/envoy-rbac.yaml" --base-id 41 --concurrency 2 --log-level error > "$work/envoy-rbac.log" 2>&1 & a_pid=$!; pids+=("$a_pid")
envoy -c "$work/envoy-authz.yaml" --base-id 42 --concurrency 2 --log-level error > "$work/envoy-authz.log" 2>&1 & b_pid=$!; pids+=("$b_pid")

# --- C and D: nginx, with allow/deny or with auth_request ---
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
  upstream ipgate_auth { server 127.0.0.1:$auth_port; keepalive 64; }
  server { listen 127.0.0.1:$c_port; keepalive_requests 100000;
    location / { $allow_lines deny all;
      proxy_http_version 1.1; proxy_set_header Connection ""; proxy_pass http://service; } }
  server { listen 127.0.0.1:$d_port; keepalive_requests 100000;
    location / { auth_request /_ipgate;
      proxy_http_version 1.1; proxy_set_header Connection ""; proxy_pass http://service; }
    location = /_ipgate { internal;
      proxy_pass http://ipgate_auth/v1/check/bench;
      proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_pass_request_body off; proxy_set_header Content-Length "";
      proxy_set_header X-Original-Method \$request_method;
      proxy_set_header X-Original-URI \$request_uri;
      proxy_set_header X-Forwarded-For \$remote_addr; } } }
EOF
nginx -p "$work/ngx" -e "$work/ngx/error.log" -c "$work/ngx/nginx.conf" & ngx_pid=$!; pids+=("$ngx_pid")
for p in "$up_port" "$a_port" "$b_port" "$c_port" "$d_port" "$e_port"; do wait_port "$p"; done

# Each door must answer 200 to the benchmark's request before it is timed.
for p in "$a_port" "$b_port" "$c_port" "$d_port" "$e_port"; do
  for _ in $(seq 1 100); do
    code="$(curl -s -o /dev/null -w '%{http_code}' -H "X-API-Key: $key" "http://127.0.0.1:$p/hello" || true)"
    [ "$code" = 200 ] && break
    sleep 0.1
  done
  [ "$code" = 200 ] || {
    echo "doors.sh: port $p answers $code, not 200" >&2
    curl -si -H "X-API-Key: $key" "http://127.0.0.1:$p/hello" >&2 || true
    KEEP=1
    exit 1
  }
done

# Who spends the CPU: the gateway of each door, the enforcer, the control
# plane (usage ingest) and the upstream.
gateway=("$a_pid" "$b_pid" "$ngx_pid" "$ngx_pid" "$e_pid")
parts=("$enf_pid" "$cp_pid" "$up_pid")

declare -A rps p50 p50one cpu
names=(A B C D E); ports=("$a_port" "$b_port" "$c_port" "$d_port" "$e_port")
for round in $(seq 1 "$ROUNDS"); do
  for i in 0 1 2 3 4; do
    [[ " ${ONLY:-A B C D E} " == *" ${names[$i]} "* ]] || continue
    before=("$(ticks "${gateway[$i]}")")
    for p in "${parts[@]}"; do before+=("$(ticks "$p")"); done
    out="$(wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency -H "X-API-Key: $key" "http://127.0.0.1:${ports[$i]}/hello")"
    after=("$(ticks "${gateway[$i]}")")
    for p in "${parts[@]}"; do after+=("$(ticks "$p")"); done
    requests="$(echo "$out" | awk '/requests in/ {print $1}')"
    # CPU microseconds a request: gateway, enforcer, control plane, upstream.
    for k in 0 1 2 3; do
      cpu[${names[$i]},$k]+="$(awk -v a="${before[$k]}" -v b="${after[$k]}" -v n="$requests" -v hz="$hz" \
        'BEGIN {printf "%.1f", (b - a) / hz * 1e6 / n}') "
    done
    r="$(echo "$out" | awk '/Requests\/sec/ {print $2}')"
    l="$(echo "$out" | awk '$1 == "50%" {print $2}')"
    non2xx="$(echo "$out" | awk '/Non-2xx/ {print $5}')"
    # Latency unloaded: one connection, one request at a time, so the p50
    # is the time a request takes rather than time spent queueing.
    one="$(wrk -t1 -c1 -d"$DURATION" --latency -H "X-API-Key: $key" "http://127.0.0.1:${ports[$i]}/hello")"
    p50one[${names[$i]}]+="$(echo "$one" | awk '$1 == "50%" {print $2}') "
    non2xx+="$(echo "$one" | awk '/Non-2xx/ {print $5}')"
    [ -z "$non2xx" ] || { echo "doors.sh: ${names[$i]} answered $non2xx non-2xx responses" >&2; exit 1; }
    rps[${names[$i]}]+="$r "; p50[${names[$i]}]+="$l "
    echo "round $round ${names[$i]}: $r requests/s, p50 $l; one connection: p50 $(echo "${p50one[${names[$i]}]}" | awk '{print $NF}')" >&2
  done
done

declare -A R L L1
declare -A peer=([A]="Envoy + inline RBAC" [B]="Envoy + ext_authz (ipgate)" [C]="nginx allow/deny" [D]="nginx + auth_request (ipgate)" [E]="Envoy + ext_authz (no-op server)")
echo
echo "| door | peer | requests/s, $CONNECTIONS connections | p50 ms, $CONNECTIONS connections | p50 ms, 1 connection | CPU µs a request: gateway / enforcer / control plane / upstream |"
echo "|---|---|---|---|---|---|"
for n in ${ONLY:-A B C D E}; do
  R[$n]="$(echo "${rps[$n]}" | median)"
  L[$n]="$(echo "${p50[$n]}" | to_ms | tr '\n' ' ' | median)"
  L1[$n]="$(echo "${p50one[$n]}" | to_ms | tr '\n' ' ' | median)"
  c="$(for k in 0 1 2 3; do echo "${cpu[$n,$k]}" | median; done | paste -sd/ | sed 's|/| / |g')"
  echo "| $n | ${peer[$n]} | ${R[$n]} | ${L[$n]} | ${L1[$n]} | $c |"
done
echo
if [ -n "${R[A]:-}" ] && [ -n "${R[B]:-}" ]; then
  awk -v a="${R[A]}" -v b="${R[B]}" 'BEGIN {printf "ext_authz / inline RBAC, requests/s: %.2fx (target >= 0.6x)\n", b/a}'
fi
if [ -n "${R[A]:-}" ] && [ -n "${R[E]:-}" ]; then
  awk -v a="${R[A]}" -v e="${R[E]}" 'BEGIN {printf "ext_authz to a no-op server / inline RBAC, requests/s: %.2fx (the most any server allows)\n", e/a}'
fi
if [ -n "${R[B]:-}" ] && [ -n "${R[E]:-}" ]; then
  awk -v b="${R[B]}" -v e="${R[E]}" 'BEGIN {printf "ext_authz (ipgate) / ext_authz to a no-op server, requests/s: %.2fx\n", b/e}'
fi
if [ -n "${R[C]:-}" ] && [ -n "${R[D]:-}" ]; then
  awk -v c="${R[C]}" -v d="${R[D]}" 'BEGIN {printf "auth_request / allow-deny, requests/s: %.2fx\n", d/c}'
  awk -v c="${L1[C]}" -v d="${L1[D]}" 'BEGIN {printf "auth_request adds %.3f ms to nginx p50 on one connection (target <= 0.2 ms)\n", d-c}'
  awk -v c="${L[C]}" -v d="${L[D]}" -v n="$CONNECTIONS" 'BEGIN {printf "auth_request adds %.3f ms to nginx p50 at %d connections\n", d-c, n}'
fi
echo "wrk -t1 -c$CONNECTIONS and -c1, $DURATION each, $ROUNDS rounds, medians; $(nproc) cores; $(date -u +%Y-%m-%d)"
