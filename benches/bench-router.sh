#!/usr/bin/env bash
# Side-by-side throughput of the ringcache router on 127.0.0.1, in one run:
#
#   (a) router vs twemproxy: `ringcache router` and nutcracker over the same redis-servers (2 for
#       the SET/GET rows, 4 for the MGET row), both ketama-style consistent hashing;
#   (b) router vs direct: `ringcache router` over one `ringcache node` against that node direct.
#
# Rows (redis-benchmark, -c 50): SET and GET at -P 1 and at -P 16, and MGET of 100 keys (spread
# over the 4 shards in (a)) at -P 1. Fronts alternate run by run; each figure is the median of
# ROUNDS rounds and each ratio the median of the per-round ratios. Goals: router/twemproxy >= 1.2
# on every row, router/direct >= 0.9 without pipelining (-P 1 rows).
#
# Before measuring, every front is checked: it answers PING, values written through it read back,
# and its keys land on every backend it fronts.
#
# Environment:
#   ROUNDS=5                  rounds (each round runs every row once per front)
#   N_P1=100000               requests per SET/GET test at -P 1
#   N_P16=500000              requests per SET/GET test at -P 16
#   N_MGET=20000              MGET requests per run
#   MGET_KEYS=100             keys per MGET
#   CLIENTS=50                redis-benchmark -c
#   KEYSPACE=100000           redis-benchmark -r for SET/GET
#   WARMUP=1                  one short unrecorded run per front first (0 to skip)
#   TWEM_SERVER_CONNECTIONS=1 nutcracker server_connections (its default and recommendation)
#   ROUTER_REDIS_UPSTREAM_CONNECTIONS=$TWEM_SERVER_CONNECTIONS
#                             the router's upstream_connections over the redis-servers of (a):
#                             the same per-backend connection count as twemproxy (a single-threaded
#                             redis-server only gets thinner batches from more). The router over
#                             our node in (b) keeps its default (2: the node serves each connection
#                             on one of its IO threads, so one connection would idle the others).
#   TWEM_HASH=murmur          nutcracker hash (ketama distribution); fnv1a_64 skews badly here
#   ROUTER_IMPL=ringcache     `nutcracker` puts a second nutcracker where the router goes, to
#                             check this script's machinery (ratios should then be ~1.0)
#   NODE_CMD=...              command for the node of (b) instead of the release build of ringcache
#                             (in CARGO_TARGET_DIR when it is set)
#                             node; `--bind 127.0.0.1 --port P` is appended (as in bench-node.sh)
#   STRICT=0                  1: exit 2 when a goal is missed
#   BENCH_RUN_TIMEOUT=300, BENCH_READY_TIMEOUT=30, BUILD_TIMEOUT=3600   bounds in seconds
#
# Raw per-round figures go to target/bench/bench-router-<time>.csv.
set -euo pipefail

# shellcheck source=benches/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

: "${ROUNDS:=5}" "${N_P1:=100000}" "${N_P16:=500000}" "${N_MGET:=20000}" "${MGET_KEYS:=100}"
: "${CLIENTS:=50}" "${KEYSPACE:=100000}" "${WARMUP:=1}" "${BUILD_TIMEOUT:=3600}"
: "${TWEM_SERVER_CONNECTIONS:=1}" "${TWEM_HASH:=murmur}" "${ROUTER_IMPL:=ringcache}" "${STRICT:=0}"
: "${ROUTER_REDIS_UPSTREAM_CONNECTIONS:=$TWEM_SERVER_CONNECTIONS}"
bench_require_positive_int ROUNDS N_P1 N_P16 N_MGET MGET_KEYS CLIENTS KEYSPACE BUILD_TIMEOUT \
  TWEM_SERVER_CONNECTIONS ROUTER_REDIS_UPSTREAM_CONNECTIONS
[[ "$ROUTER_IMPL" == ringcache || "$ROUTER_IMPL" == nutcracker ]] \
  || bench_die "ROUTER_IMPL must be ringcache or nutcracker, got '$ROUTER_IMPL'"

root="$(bench_repo_root)"
cd "$root"

bench_install_deps
bench_require redis-server redis-cli redis-benchmark nutcracker setsid timeout awk sort

need_build=0
[[ "$ROUTER_IMPL" == ringcache ]] && need_build=1
if [[ -n "${NODE_CMD:-}" ]]; then
  eval "node_cmd=($NODE_CMD)"
  bench_log "node side overridden by NODE_CMD: ${node_cmd[*]}"
else
  need_build=1
  node_cmd=("$(bench_target_dir)/release/ringcache" node)
fi
if ((need_build)); then
  bench_log "building: cargo build --release --bin ringcache"
  timeout "$BUILD_TIMEOUT" cargo build --release --bin ringcache \
    || bench_die "cargo build --release --bin ringcache failed or took over ${BUILD_TIMEOUT}s"
fi
ringcache="$(bench_target_dir)/release/ringcache"

out_dir="$root/target/bench"
mkdir -p "$out_dir"
stamp="$(date +%Y%m%d-%H%M%S)"
raw="$out_dir/bench-router-$stamp.csv"
work="$out_dir/bench-router-$stamp"
mkdir -p "$work"

bench_cleanup_on_exit

# --- backends --------------------------------------------------------------------------------

redis_ports=()
for i in 1 2 3 4; do
  port=""
  bench_free_port port
  bench_start_server "redis$i" "$port" "$work/redis$i.log" \
    redis-server --save "" --appendonly no --bind 127.0.0.1 --port "$port"
  redis_ports+=("$port")
done
node_port=""
bench_free_port node_port
bench_start_server node "$node_port" "$work/node.log" "${node_cmd[@]}" --bind 127.0.0.1 --port "$node_port"

# --- fronts ----------------------------------------------------------------------------------

# start_twemproxy NAME BACKEND_PORT...: prints nothing, sets FRONT_PORT.
start_twemproxy() {
  local name="$1"
  shift
  FRONT_PORT=""
  bench_free_port FRONT_PORT
  bench_nutcracker_conf "$work/$name.yml" "$FRONT_PORT" "$TWEM_SERVER_CONNECTIONS" "$TWEM_HASH" "$@"
  bench_start_nutcracker "$name" "$FRONT_PORT" "$work/$name.yml" "$work/$name.log"
}

# start_router NAME UPSTREAM_CONNECTIONS BACKEND_PORT...: our router (or, with
# ROUTER_IMPL=nutcracker, a nutcracker) over the backends, with that many upstream connections
# per backend ("" = the router's default); sets FRONT_PORT.
start_router() {
  local name="$1" upstream="$2"
  shift 2
  if [[ "$ROUTER_IMPL" == nutcracker ]]; then
    start_twemproxy "$name" "$@"
    return
  fi
  FRONT_PORT=""
  bench_free_port FRONT_PORT
  local conf="$work/$name.toml" log="$work/$name.log" i=0 port
  {
    printf '[router]\nlisten = "127.0.0.1:%s"\n' "$FRONT_PORT"
    # The router's default thread count unless ROUTER_IO_THREADS asks for one.
    [[ -n "${ROUTER_IO_THREADS:-}" ]] && printf 'io_threads = %s\n' "$ROUTER_IO_THREADS"
    [[ -n "$upstream" ]] && printf 'upstream_connections = %s\n' "$upstream"
    printf '\n[ring]\nvnodes = 2048\n'
    for port in "$@"; do
      i=$((i + 1))
      printf '\n[[shard]]\nid = "s%s"\nprimary = "127.0.0.1:%s"\nreplicas = []\nweight = 1\n' "$i" "$port"
    done
  } >"$conf"
  bench_log "starting $name on 127.0.0.1:$FRONT_PORT: $ringcache router --config $conf"
  bench_start "$log" "$ringcache" router --config "$conf"
  if ! bench_wait_ping "$FRONT_PORT" "$BENCH_READY_TIMEOUT" "$BENCH_LAST_PID"; then
    tail -n 20 "$log" >&2 || true
    if grep -q "not built yet" "$log"; then
      bench_die "the router is not built yet (\`ringcache router\` says so, see above). Meanwhile ROUTER_IMPL=nutcracker $0 checks this bench's machinery."
    fi
    bench_die "$name did not answer PING on 127.0.0.1:$FRONT_PORT within ${BENCH_READY_TIMEOUT}s (log: $log)"
  fi
  grep -q "ringcache router listening on 127.0.0.1:$FRONT_PORT" "$log" \
    || bench_log "warning: $name answered PING but did not print 'ringcache router listening on 127.0.0.1:$FRONT_PORT'"
}

start_router router2 "$ROUTER_REDIS_UPSTREAM_CONNECTIONS" "${redis_ports[@]:0:2}"
router2_port="$FRONT_PORT"
start_twemproxy twem2 "${redis_ports[@]:0:2}"
twem2_port="$FRONT_PORT"
start_router router4 "$ROUTER_REDIS_UPSTREAM_CONNECTIONS" "${redis_ports[@]}"
router4_port="$FRONT_PORT"
start_twemproxy twem4 "${redis_ports[@]}"
twem4_port="$FRONT_PORT"
start_router router1 "" "$node_port"
router1_port="$FRONT_PORT"

# --- health and data -------------------------------------------------------------------------

cli() {
  local port="$1"
  shift
  timeout 30 redis-cli -h 127.0.0.1 -p "$port" "$@"
}

flush_backends() {
  local port
  for port in "$@"; do
    [[ "$(cli "$port" FLUSHALL)" == OK ]] || bench_die "FLUSHALL on 127.0.0.1:$port failed"
  done
}

mget_keys=()
mset_args=()
for ((i = 1; i <= MGET_KEYS; i++)); do
  mget_keys+=("mget:$i")
  mset_args+=("mget:$i" "value-$i")
done

# check_front NAME PORT BACKEND_PORT...: on empty backends, writes keys through the front, reads
# them back (one by one and with MGET), and checks that every backend got some. Leaves the MGET
# keys in place.
check_front() {
  local name="$1" port="$2"
  shift 2
  flush_backends "$@"
  [[ "$(cli "$port" PING)" == PONG ]] || bench_die "$name: no PONG"
  local i got
  for ((i = 0; i < 50; i++)); do
    [[ "$(cli "$port" SET "probe:$i" "v$i")" == OK ]] || bench_die "$name: SET probe:$i failed"
  done
  for ((i = 0; i < 50; i++)); do
    got="$(cli "$port" GET "probe:$i")"
    [[ "$got" == "v$i" ]] || bench_die "$name: GET probe:$i gave '$got', expected 'v$i'"
  done
  [[ "$(cli "$port" MSET "${mset_args[@]}")" == OK ]] || bench_die "$name: MSET of $MGET_KEYS keys failed"
  got="$(cli "$port" MGET "${mget_keys[@]}" | grep -c '^value-')" || true
  ((got == MGET_KEYS)) || bench_die "$name: MGET of $MGET_KEYS keys returned $got values"
  local backend n spread=()
  for backend in "$@"; do
    n="$(cli "$backend" DBSIZE)"
    if ! [[ "$n" =~ ^[0-9]+$ ]] || ((n == 0)); then
      bench_die "$name: backend 127.0.0.1:$backend got no keys (DBSIZE '$n'); is it sharding?"
    fi
    spread+=("$n")
  done
  bench_log "$name healthy: 50 SET/GET + MGET of $MGET_KEYS keys; keys per backend: ${spread[*]}"
}

check_front router2 "$router2_port" "${redis_ports[@]:0:2}"
check_front twem2 "$twem2_port" "${redis_ports[@]:0:2}"
check_front router4 "$router4_port" "${redis_ports[@]}"
check_front twem4 "$twem4_port" "${redis_ports[@]}"
# Both proxies' MGET keys must be present at once (their placements differ).
[[ "$(cli "$router4_port" MSET "${mset_args[@]}")" == OK ]] || bench_die "router4: MSET failed"
check_front router1 "$router1_port" "$node_port"

# --- measurement -----------------------------------------------------------------------------

# Comparisons: name -> "router_front other_front" for the SET/GET rows and for the MGET row.
comparisons=(twemproxy direct)
declare -A label_of=([twemproxy]="router vs twemproxy" [direct]="router vs direct")
declare -A other_name=([twemproxy]=twemproxy [direct]=direct)
declare -A port_of=(
  [twemproxy:router:kv]="$router2_port" [twemproxy:other:kv]="$twem2_port"
  [twemproxy:router:mget]="$router4_port" [twemproxy:other:mget]="$twem4_port"
  [direct:router:kv]="$router1_port" [direct:other:kv]="$node_port"
  [direct:router:mget]="$router1_port" [direct:other:mget]="$node_port"
)
scenarios=(P1 P16 MGET)
declare -A args_of=([P1]="-P 1 -n $N_P1" [P16]="-P 16 -n $N_P16" [MGET]="-P 1 -n $N_MGET")
mget_row="MGET${MGET_KEYS} -P 1"
rows=("SET -P 1" "GET -P 1" "SET -P 16" "GET -P 16" "$mget_row")
common=(-c "$CLIENTS")

# run_scenario PORT SCENARIO: prints "ROW RPS" lines.
run_scenario() {
  local port="$1" scenario="$2" extra
  read -ra extra <<<"${args_of[$scenario]}"
  if [[ "$scenario" == MGET ]]; then
    bench_redis_benchmark_cmd "$port" "MGET" "${common[@]}" "${extra[@]}" -- MGET "${mget_keys[@]}" \
      | while read -r _ rps; do echo "$mget_row|$rps"; done
  else
    bench_redis_benchmark "$port" set,get "${common[@]}" -r "$KEYSPACE" "${extra[@]}" \
      | while read -r test rps; do echo "$test ${extra[0]} ${extra[1]}|$rps"; done
  fi
}

nutcracker_bin="$(command -v nutcracker || echo /usr/sbin/nutcracker)"
bench_log "redis: $(redis-server --version | cut -d' ' -f3); twemproxy: $("$nutcracker_bin" --version 2>&1 | awk 'NR == 1 { print $NF }'); router: $ROUTER_IMPL; node: ${node_cmd[*]}"
bench_log "rounds=$ROUNDS N_P1=$N_P1 N_P16=$N_P16 N_MGET=$N_MGET mget_keys=$MGET_KEYS clients=$CLIENTS keyspace=$KEYSPACE twemproxy: server_connections=$TWEM_SERVER_CONNECTIONS hash=$TWEM_HASH; router over redis: upstream_connections=$ROUTER_REDIS_UPSTREAM_CONNECTIONS; cores=$(nproc)"

if [[ "$WARMUP" != 0 ]]; then
  for port in "$router2_port" "$twem2_port" "$router1_port" "$node_port"; do
    bench_redis_benchmark "$port" set,get "${common[@]}" -r "$KEYSPACE" -P 1 -n 20000 >/dev/null
  done
  for port in "$router4_port" "$twem4_port"; do
    bench_redis_benchmark_cmd "$port" MGET "${common[@]}" -n 2000 -- MGET "${mget_keys[@]}" >/dev/null
  done
fi

echo "round,comparison,front,row,rps" >"$raw"
declare -A rps_of # "$cmp|$row|$front|$round" -> requests/s
for ((round = 1; round <= ROUNDS; round++)); do
  for cmp in "${comparisons[@]}"; do
    for scenario in "${scenarios[@]}"; do
      kind=kv
      [[ "$scenario" == MGET ]] && kind=mget
      # Alternate which front goes first so drift hits both.
      if ((round % 2)); then order=(router other); else order=(other router); fi
      for front in "${order[@]}"; do
        results="$(run_scenario "${port_of[$cmp:$front:$kind]}" "$scenario")"
        [[ -n "$results" ]] || bench_die "no results for $cmp $front $scenario"
        while IFS='|' read -r row rps; do
          rps_of["$cmp|$row|$front|$round"]="$rps"
          echo "$round,$cmp,$front,$row,$rps" >>"$raw"
          who="$front"
          [[ "$front" == other ]] && who="${other_name[$cmp]}"
          bench_log "round $round/$ROUNDS ${label_of[$cmp]}: $who $row: $rps ops/s"
        done <<<"$results"
      done
    done
  done
done

expected=$((ROUNDS * ${#comparisons[@]} * ${#rows[@]} * 2))
((${#rps_of[@]} == expected)) || bench_die "expected $expected results, got ${#rps_of[@]} (see $raw)"

missed=0
echo
printf '%-20s %-14s %14s %14s %8s  %s\n' "comparison" "row" "router ops/s" "other ops/s" "ratio" "goal"
printf '%-20s %-14s %14s %14s %8s  %s\n' "---" "---" "(median)" "(median)" "(median)" "---"
for cmp in "${comparisons[@]}"; do
  for row in "${rows[@]}"; do
    router_vals=() other_vals=() round_ratios=()
    for ((round = 1; round <= ROUNDS; round++)); do
      r="${rps_of["$cmp|$row|router|$round"]}" o="${rps_of["$cmp|$row|other|$round"]}"
      router_vals+=("$r") other_vals+=("$o")
      round_ratios+=("$(bench_ratio "$r" "$o")")
    done
    ratio="$(bench_median "${round_ratios[@]}")"
    goal="-"
    if [[ "$cmp" == twemproxy ]]; then
      goal=">= 1.20"
    elif [[ "$row" == *"-P 1" ]]; then
      goal=">= 0.90"
    fi
    verdict=""
    if [[ "$goal" != "-" ]]; then
      if awk -v r="$ratio" -v g="${goal#>= }" 'BEGIN { exit !(r >= g) }'; then
        verdict="met"
      else
        verdict="MISSED"
        missed=$((missed + 1))
      fi
    fi
    printf '%-20s %-14s %14.0f %14.0f %8.2f  %s %s\n' "router/${other_name[$cmp]}" "$row" \
      "$(bench_median "${router_vals[@]}")" "$(bench_median "${other_vals[@]}")" "$ratio" "$goal" "$verdict"
  done
done
echo
echo "router: $ROUTER_IMPL; twemproxy: ketama/$TWEM_HASH, server_connections=$TWEM_SERVER_CONNECTIONS; router over redis: upstream_connections=$ROUTER_REDIS_UPSTREAM_CONNECTIONS, over the node: its default; ratio = median of $ROUNDS per-round ratios; goals missed: $missed; raw: $raw"
if ((missed > 0)) && [[ "$STRICT" == 1 ]]; then
  exit 2
fi
