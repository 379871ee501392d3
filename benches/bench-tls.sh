#!/usr/bin/env bash
# TLS throughput of the ringcache router on 127.0.0.1, in one run:
#
#   (a) router vs redis over TLS: `ringcache router` with a TLS client listener over NODES plain
#       `ringcache node`s, against redis-server with --tls-port (clients: redis-benchmark --tls
#       --cacert);
#   (b) the cost of TLS on the router's links: the same router (plain client listener) over NODES
#       TLS-only nodes with `node_tls = true`, against it over NODES plain nodes;
#   (c) router vs the incumbent way to give redis TLS clients: the router of (a) against haproxy
#       terminating TLS (`mode tcp`, `bind ... ssl`) in front of a plain redis-server.
#
# Each TLS front's server-side CPU time per request (user + system of its processes: router and
# nodes, redis-server, haproxy and its redis-server) is printed too: with the load generator on
# one of 2 cores, the servers share the other and throughput follows their CPU per request.
#
# Rows (redis-benchmark, -c 50): SET and GET at -P 1 and at -P 16. Fronts alternate run by run;
# each figure is the median of ROUNDS rounds and each ratio the median of the per-round ratios.
# Goals: router/redis >= 0.9 and router/haproxy >= 1.0 over TLS. Certificates are made once per
# run with openssl (a CA and a certificate for 127.0.0.1) in the run's work directory; no client
# certificates are asked for.
#
# Environment:
#   ROUNDS=5        rounds (each round runs every row once per front)
#   NODES=2         ringcache nodes behind each router (1 to 3)
#   N_P1=100000     requests per SET/GET test at -P 1
#   N_P16=500000    requests per SET/GET test at -P 16
#   CLIENTS=50      redis-benchmark -c
#   KEYSPACE=100000 redis-benchmark -r
#   WARMUP=1        one short unrecorded run per front first (0 to skip)
#   STRICT=0        1: exit 2 when a goal is missed
#   BENCH_RUN_TIMEOUT=300, BENCH_READY_TIMEOUT=30, BUILD_TIMEOUT=3600   bounds in seconds
#
# Raw per-round figures go to target/bench/bench-tls-<time>.csv.
set -euo pipefail

# shellcheck source=benches/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

: "${ROUNDS:=5}" "${NODES:=2}" "${N_P1:=100000}" "${N_P16:=500000}" "${CLIENTS:=50}"
: "${KEYSPACE:=100000}" "${WARMUP:=1}" "${STRICT:=0}" "${BUILD_TIMEOUT:=3600}"
bench_require_positive_int ROUNDS NODES N_P1 N_P16 CLIENTS KEYSPACE BUILD_TIMEOUT
((NODES <= 3)) || bench_die "NODES must be 1 to 3, got $NODES"

root="$(bench_repo_root)"
cd "$root"

bench_install_deps
bench_require redis-server redis-cli redis-benchmark haproxy openssl setsid timeout awk sort
# Captured first: `grep -q` closing the pipe early would fail the pipeline under pipefail.
cli_help="$(redis-cli --help 2>&1 || true)"
[[ "$cli_help" == *--tls* ]] || bench_die "this redis-cli has no TLS support"

bench_log "building: cargo build --release --bin ringcache"
timeout "$BUILD_TIMEOUT" cargo build --release --bin ringcache \
  || bench_die "cargo build --release --bin ringcache failed or took over ${BUILD_TIMEOUT}s"
ringcache="$(bench_target_dir)/release/ringcache"

out_dir="$root/target/bench"
mkdir -p "$out_dir"
stamp="$(date +%Y%m%d-%H%M%S)"
raw="$out_dir/bench-tls-$stamp.csv"
work="$out_dir/bench-tls-$stamp"
mkdir -p "$work"

bench_cleanup_on_exit

# --- certificates ----------------------------------------------------------------------------

ca="$work/ca.crt" cert="$work/server.crt" key="$work/server.key"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -keyout "$work/ca.key" -out "$ca" -subj "/CN=bench-tls CA" >/dev/null 2>&1 \
  || bench_die "openssl: cannot make the CA"
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -keyout "$key" -out "$work/server.csr" -subj "/CN=127.0.0.1" >/dev/null 2>&1 \
  || bench_die "openssl: cannot make the server key"
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$work/san.cnf"
openssl x509 -req -in "$work/server.csr" -CA "$ca" -CAkey "$work/ca.key" -CAcreateserial \
  -days 2 -out "$cert" -extfile "$work/san.cnf" >/dev/null 2>&1 \
  || bench_die "openssl: cannot sign the server certificate"
cat "$cert" "$key" >"$work/haproxy.pem"
tls_cli=(--tls --cacert "$ca")

# wait_tls_ping NAME PORT PID LOG: waits until 127.0.0.1:PORT answers PONG over TLS.
wait_tls_ping() {
  local name="$1" port="$2" pid="$3" log="$4" deadline=$((SECONDS + BENCH_READY_TIMEOUT))
  while ((SECONDS <= deadline)); do
    if [[ "$(timeout 2 redis-cli -h 127.0.0.1 -p "$port" "${tls_cli[@]}" ping 2>/dev/null)" == PONG ]]; then
      return 0
    fi
    bench_alive "$pid" || break
    sleep 0.1
  done
  tail -n 20 "$log" >&2 || true
  bench_die "$name did not answer PING over TLS on 127.0.0.1:$port (log: $log)"
}

# --- servers ---------------------------------------------------------------------------------

redis_port=""
bench_free_port redis_port
bench_log "starting redis-tls on 127.0.0.1:$redis_port (TLS only)"
bench_start "$work/redis.log" redis-server --save "" --appendonly no --bind 127.0.0.1 --port 0 \
  --tls-port "$redis_port" --tls-cert-file "$cert" --tls-key-file "$key" \
  --tls-ca-cert-file "$ca" --tls-auth-clients no
wait_tls_ping redis-tls "$redis_port" "$BENCH_LAST_PID" "$work/redis.log"
redis_pid="$BENCH_LAST_PID"

# haproxy terminating TLS in front of a plain redis-server (its default threads: 1 per core).
redis_plain_port="" haproxy_port=""
bench_free_port redis_plain_port
bench_start_server redis-plain "$redis_plain_port" "$work/redis-plain.log" \
  redis-server --save "" --appendonly no --bind 127.0.0.1 --port "$redis_plain_port"
redis_plain_pid="$BENCH_LAST_PID"
bench_free_port haproxy_port
{
  bench_haproxy_head
  cat <<EOF
listen redis-tls
  bind 127.0.0.1:$haproxy_port ssl crt $work/haproxy.pem
  server r1 127.0.0.1:$redis_plain_port
EOF
} >"$work/haproxy.cfg"
bench_log "starting haproxy-tls on 127.0.0.1:$haproxy_port (TLS, over redis-plain)"
bench_start "$work/haproxy.log" haproxy -db -f "$work/haproxy.cfg"
haproxy_pid="$BENCH_LAST_PID"
wait_tls_ping haproxy-tls "$haproxy_port" "$haproxy_pid" "$work/haproxy.log"

plain_nodes=() plain_node_pids=() tls_nodes=()
for ((i = 1; i <= NODES; i++)); do
  port=""
  bench_free_port port
  bench_start_server "node$i" "$port" "$work/node$i.log" "$ringcache" node --bind 127.0.0.1 --port "$port"
  plain_nodes+=("$port") plain_node_pids+=("$BENCH_LAST_PID")
  port=""
  bench_free_port port
  bench_log "starting tlsnode$i on 127.0.0.1:$port (TLS only)"
  bench_start "$work/tlsnode$i.log" "$ringcache" node --bind 127.0.0.1 --port 0 --tls-port "$port" \
    --tls-cert-file "$cert" --tls-key-file "$key" --tls-ca-cert-file "$ca" --tls-auth-clients no
  wait_tls_ping "tlsnode$i" "$port" "$BENCH_LAST_PID" "$work/tlsnode$i.log"
  tls_nodes+=("$port")
done

# start_router NAME NODE_TLS(0|1) NODE_PORT...: a router with a plain and a TLS client listener;
# sets PLAIN_PORT and TLS_PORT.
start_router() {
  local name="$1" node_tls="$2"
  shift 2
  PLAIN_PORT="" TLS_PORT=""
  bench_free_port PLAIN_PORT
  bench_free_port TLS_PORT
  local conf="$work/$name.toml" log="$work/$name.log" i=0 port
  {
    printf '[router]\nlisten = "127.0.0.1:%s"\ntls_listen = "127.0.0.1:%s"\n' "$PLAIN_PORT" "$TLS_PORT"
    printf 'tls_cert = "%s"\ntls_key = "%s"\n' "$cert" "$key"
    if ((node_tls)); then
      printf 'node_tls = true\nnode_tls_ca = "%s"\n' "$ca"
    fi
    printf '\n[ring]\nvnodes = 2048\n'
    for port in "$@"; do
      i=$((i + 1))
      printf '\n[[shard]]\nid = "s%s"\nprimary = "127.0.0.1:%s"\nreplicas = []\nweight = 1\n' "$i" "$port"
    done
  } >"$conf"
  bench_log "starting $name: $ringcache router --config $conf"
  bench_start "$log" "$ringcache" router --config "$conf"
  local pid="$BENCH_LAST_PID"
  bench_wait_ping "$PLAIN_PORT" "$BENCH_READY_TIMEOUT" "$pid" \
    || { tail -n 20 "$log" >&2; bench_die "$name did not answer PING (log: $log)"; }
  wait_tls_ping "$name" "$TLS_PORT" "$pid" "$log"
  ROUTER_PID="$pid"
}

start_router router "0" "${plain_nodes[@]}"
router_plain="$PLAIN_PORT" router_tls="$TLS_PORT" router_pid="$ROUTER_PID"
start_router router-tlslinks "1" "${tls_nodes[@]}"
tlslinks_plain="$PLAIN_PORT"

# --- health ----------------------------------------------------------------------------------

# check NAME PORT [CLI_ARGS...]: 20 SET/GET through the front read back.
check() {
  local name="$1" port="$2" i got
  shift 2
  for ((i = 0; i < 20; i++)); do
    [[ "$(timeout 10 redis-cli -h 127.0.0.1 -p "$port" "$@" SET "probe:$i" "v$i")" == OK ]] \
      || bench_die "$name: SET probe:$i failed"
    got="$(timeout 10 redis-cli -h 127.0.0.1 -p "$port" "$@" GET "probe:$i")"
    [[ "$got" == "v$i" ]] || bench_die "$name: GET probe:$i gave '$got'"
  done
  bench_log "$name healthy: 20 SET/GET read back"
}
check redis-tls "$redis_port" "${tls_cli[@]}"
check haproxy-tls "$haproxy_port" "${tls_cli[@]}"
check router-tls "$router_tls" "${tls_cli[@]}"
check router-plain "$router_plain"
check router-tlslinks "$tlslinks_plain"
for port in "${tls_nodes[@]}"; do
  n="$(timeout 10 redis-cli -h 127.0.0.1 -p "$port" "${tls_cli[@]}" DBSIZE)"
  [[ "$n" =~ ^[0-9]+$ ]] && ((n > 0)) || bench_die "TLS node 127.0.0.1:$port got no keys (DBSIZE '$n')"
done

# --- measurement -----------------------------------------------------------------------------

comparisons=(tls links haproxy)
declare -A label_of=([tls]="router/redis over TLS" [links]="TLS links/plain links"
  [haproxy]="router/haproxy over TLS")
# front port and whether its clients speak TLS
declare -A port_of=([tls:a]="$router_tls" [tls:b]="$redis_port" [links:a]="$tlslinks_plain"
  [links:b]="$router_plain" [haproxy:a]="$router_tls" [haproxy:b]="$haproxy_port")
declare -A tls_of=([tls:a]=1 [tls:b]=1 [links:a]=0 [links:b]=0 [haproxy:a]=1 [haproxy:b]=1)
declare -A name_of=([tls:a]=router-tls [tls:b]=redis-tls [links:a]=tls-links [links:b]=plain-links
  [haproxy:a]=router-tls [haproxy:b]=haproxy-tls)
# The processes serving each TLS front, whose CPU time per request is reported.
declare -A pids_of=([router-tls]="$router_pid ${plain_node_pids[*]}" [redis-tls]="$redis_pid"
  [haproxy-tls]="$haproxy_pid $redis_plain_pid")
cpu_fronts=(router-tls redis-tls haproxy-tls)
declare -A n_of=([P1]="$N_P1" [P16]="$N_P16")
ticks_per_sec="$(getconf CLK_TCK)"

# cpu_ticks PID...: user + system clock ticks the processes (all threads) have used so far.
cpu_ticks() {
  local pid sum=0
  for pid in "$@"; do
    sum=$((sum + $(awk '{ print $14 + $15 }' "/proc/$pid/stat")))
  done
  echo "$sum"
}
scenarios=(P1 P16)
declare -A args_of=([P1]="-P 1 -n $N_P1" [P16]="-P 16 -n $N_P16")
rows=("SET -P 1" "GET -P 1" "SET -P 16" "GET -P 16")

# run_scenario FRONT SCENARIO: prints "ROW|RPS" lines.
run_scenario() {
  local front="$1" scenario="$2" extra tls=()
  read -ra extra <<<"${args_of[$scenario]}"
  ((${tls_of[$front]})) && tls=("${tls_cli[@]}")
  bench_redis_benchmark "${port_of[$front]}" set,get -c "$CLIENTS" -r "$KEYSPACE" "${tls[@]}" "${extra[@]}" \
    | while read -r test rps; do echo "$test ${extra[0]} ${extra[1]}|$rps"; done
}

bench_log "redis: $(redis-server --version | cut -d' ' -f3); nodes per router: $NODES; rounds=$ROUNDS N_P1=$N_P1 N_P16=$N_P16 clients=$CLIENTS keyspace=$KEYSPACE cores=$(nproc) load: $(cut -d' ' -f1-3 /proc/loadavg)"

if [[ "$WARMUP" != 0 ]]; then
  for front in tls:a tls:b links:a links:b haproxy:b; do
    saved="${args_of[P1]}"
    args_of[P1]="-P 1 -n 20000"
    run_scenario "$front" P1 >/dev/null
    args_of[P1]="$saved"
  done
fi

echo "round,comparison,front,row,rps" >"$raw"
declare -A rps_of cpu_of
for ((round = 1; round <= ROUNDS; round++)); do
  for cmp in "${comparisons[@]}"; do
    for scenario in "${scenarios[@]}"; do
      if ((round % 2)); then order=(a b); else order=(b a); fi
      for side in "${order[@]}"; do
        front="$cmp:$side" name="${name_of[$cmp:$side]}" pids=()
        read -ra pids <<<"${pids_of[$name]:-}"
        ((${#pids[@]})) && t0="$(cpu_ticks "${pids[@]}")"
        results="$(run_scenario "$front" "$scenario")"
        [[ -n "$results" ]] || bench_die "no results for $front $scenario"
        if ((${#pids[@]})); then
          # SET and GET ran in one redis-benchmark: the CPU per request of the two together.
          us="$(awk -v t="$(($(cpu_ticks "${pids[@]}") - t0))" -v hz="$ticks_per_sec" \
            -v n="${n_of[$scenario]}" 'BEGIN { printf "%.2f", t * 1e6 / hz / (2 * n) }')"
          cpu_of["$name|$scenario"]+="$us "
          echo "$round,cpu,$name,$scenario,$us" >>"$raw"
        fi
        while IFS='|' read -r row rps; do
          rps_of["$cmp|$row|$side|$round"]="$rps"
          echo "$round,$cmp,${name_of[$front]},$row,$rps" >>"$raw"
          bench_log "round $round/$ROUNDS ${label_of[$cmp]}: ${name_of[$front]} $row: $rps ops/s"
        done <<<"$results"
      done
    done
  done
done

expected=$((ROUNDS * ${#comparisons[@]} * ${#rows[@]} * 2))
((${#rps_of[@]} == expected)) || bench_die "expected $expected results, got ${#rps_of[@]} (see $raw)"

missed=0
echo
printf '%-24s %-10s %14s %14s %8s  %s\n' "comparison" "row" "a ops/s" "b ops/s" "a/b" "goal"
printf '%-24s %-10s %14s %14s %8s  %s\n' "---" "---" "(median)" "(median)" "(median)" "---"
for cmp in "${comparisons[@]}"; do
  for row in "${rows[@]}"; do
    a_vals=() b_vals=() ratios=()
    for ((round = 1; round <= ROUNDS; round++)); do
      a="${rps_of["$cmp|$row|a|$round"]}" b="${rps_of["$cmp|$row|b|$round"]}"
      a_vals+=("$a") b_vals+=("$b")
      ratios+=("$(bench_ratio "$a" "$b")")
    done
    ratio="$(bench_median "${ratios[@]}")"
    goal="-" verdict=""
    if [[ "$cmp" != links ]]; then
      min=0.90
      [[ "$cmp" == haproxy ]] && min=1.00
      goal=">= $min"
      if awk -v r="$ratio" -v m="$min" 'BEGIN { exit !(r >= m) }'; then verdict="met"; else
        verdict="MISSED"
        missed=$((missed + 1))
      fi
    fi
    printf '%-24s %-10s %14.0f %14.0f %8.2f  %s %s\n' "${label_of[$cmp]}" "$row" \
      "$(bench_median "${a_vals[@]}")" "$(bench_median "${b_vals[@]}")" "$ratio" "$goal" "$verdict"
  done
done
echo
printf '%-24s %14s %14s\n' "server CPU us/request" "-P 1 (median)" "-P 16 (median)"
for name in "${cpu_fronts[@]}"; do
  read -ra p1 <<<"${cpu_of["$name|P1"]}"
  read -ra p16 <<<"${cpu_of["$name|P16"]}"
  printf '%-24s %14s %14s\n' "$name" "$(bench_median "${p1[@]}")" "$(bench_median "${p16[@]}")"
done
echo "(user + system time of the front's processes over its SET and GET runs: router-tls = the router and its $NODES nodes, haproxy-tls = haproxy and its redis-server)"
echo
echo "a/b: router-tls/redis-tls (clients over TLS), router-tls/haproxy-tls, tls-links/plain-links (the same router config, clients plain, $NODES nodes); ratio = median of $ROUNDS per-round ratios; goals missed: $missed; raw: $raw"
if ((missed > 0)) && [[ "$STRICT" == 1 ]]; then
  exit 2
fi
