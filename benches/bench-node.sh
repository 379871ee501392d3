#!/usr/bin/env bash
# Side-by-side throughput of one ringcache node against redis-server on 127.0.0.1.
#
# Starts redis-server and `ringcache node` with the same bind address, then runs redis-benchmark
# (-c 50) for SET and GET at -P 1, at -P 16 and with 1 KiB values (-P 1) against each server,
# alternating servers run by run, for ROUNDS rounds, and prints medians and the node/redis ratio.
#
# Environment:
#   ROUNDS=5            rounds (each round runs every scenario once per server)
#   N_P1=200000         requests per test at -P 1
#   N_P16=1000000       requests per test at -P 16
#   N_1K=$N_P1          requests per test with -d 1024
#   CLIENTS=50          redis-benchmark -c
#   KEYSPACE=100000     redis-benchmark -r (random keys in a keyspace of this size)
#   WARMUP=1            one short unrecorded run per server first (0 to skip)
#   NODE_CMD=...        command for the node side instead of target/release/ringcache node (no
#                       build then); split with shell quoting; `--bind 127.0.0.1 --port P` is
#                       appended. E.g. NODE_CMD='redis-server --save "" --appendonly no' checks
#                       this script's machinery with redis on both sides.
#   BENCH_RUN_TIMEOUT=300, BENCH_READY_TIMEOUT=30, BUILD_TIMEOUT=3600   bounds in seconds
#
# Raw per-round figures go to target/bench/bench-node-<time>.csv.
set -euo pipefail

# shellcheck source=benches/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

: "${ROUNDS:=5}" "${N_P1:=200000}" "${N_P16:=1000000}" "${N_1K:=$N_P1}"
: "${CLIENTS:=50}" "${KEYSPACE:=100000}" "${WARMUP:=1}" "${BUILD_TIMEOUT:=3600}"
bench_require_positive_int ROUNDS N_P1 N_P16 N_1K CLIENTS KEYSPACE BUILD_TIMEOUT

root="$(bench_repo_root)"
cd "$root"

bench_install_deps
bench_require redis-server redis-cli redis-benchmark setsid timeout awk sort

if [[ -n "${NODE_CMD:-}" ]]; then
  eval "node_cmd=($NODE_CMD)"
  bench_log "node side overridden by NODE_CMD: ${node_cmd[*]} (not building ringcache)"
else
  bench_log "building: cargo build --release --bin ringcache"
  timeout "$BUILD_TIMEOUT" cargo build --release --bin ringcache \
    || bench_die "cargo build --release --bin ringcache failed or took over ${BUILD_TIMEOUT}s"
  node_cmd=("$root/target/release/ringcache" node)
fi

out_dir="$root/target/bench"
mkdir -p "$out_dir"
stamp="$(date +%Y%m%d-%H%M%S)"
raw="$out_dir/bench-node-$stamp.csv"
redis_log="$out_dir/bench-node-$stamp-redis.log"
node_log="$out_dir/bench-node-$stamp-node.log"

bench_cleanup_on_exit

redis_port="" node_port=""
bench_free_port redis_port
bench_start_server redis "$redis_port" "$redis_log" \
  redis-server --save "" --appendonly no --bind 127.0.0.1 --port "$redis_port"
bench_free_port node_port
bench_start_server node "$node_port" "$node_log" "${node_cmd[@]}" --bind 127.0.0.1 --port "$node_port"
if [[ -z "${NODE_CMD:-}" ]] && ! grep -q "ringcache node listening on 127.0.0.1:$node_port" "$node_log"; then
  bench_log "warning: node answered PING but did not print 'ringcache node listening on 127.0.0.1:$node_port'"
fi

declare -A port_of=([redis]="$redis_port" [node]="$node_port")

# scenario name -> redis-benchmark arguments; each scenario runs SET then GET.
scenarios=(P1 P16 1KiB)
declare -A args_of=(
  [P1]="-P 1 -n $N_P1"
  [P16]="-P 16 -n $N_P16"
  [1KiB]="-P 1 -d 1024 -n $N_1K"
)
declare -A label_of=([P1]="-P 1" [P16]="-P 16" [1KiB]="1KiB -P 1")
common=(-c "$CLIENTS" -r "$KEYSPACE")

bench_log "redis: $(redis-server --version | cut -d' ' -f3) on 127.0.0.1:$redis_port; node: ${node_cmd[*]@Q} on 127.0.0.1:$node_port"
bench_log "rounds=$ROUNDS N_P1=$N_P1 N_P16=$N_P16 N_1K=$N_1K clients=$CLIENTS keyspace=$KEYSPACE cores=$(nproc)"

if [[ "$WARMUP" != 0 ]]; then
  for server in redis node; do
    bench_redis_benchmark "${port_of[$server]}" set,get "${common[@]}" -P 1 -n 20000 >/dev/null
  done
fi

echo "round,scenario,server,test,rps" >"$raw"
declare -A rps_of # "$row|$server|$round" -> requests/s
for ((round = 1; round <= ROUNDS; round++)); do
  for scenario in "${scenarios[@]}"; do
    # Alternate which server goes first so drift (thermal, page cache, neighbours) hits both.
    if ((round % 2)); then order=(redis node); else order=(node redis); fi
    for server in "${order[@]}"; do
      read -ra extra <<<"${args_of[$scenario]}"
      results="$(bench_redis_benchmark "${port_of[$server]}" set,get "${common[@]}" "${extra[@]}")"
      while read -r test rps; do
        rps_of["$test ${label_of[$scenario]}|$server|$round"]="$rps"
        echo "$round,$scenario,$server,$test,$rps" >>"$raw"
        bench_log "round $round/$ROUNDS $server $test ${label_of[$scenario]}: $rps ops/s"
      done <<<"$results"
    done
  done
done

# Every (row, server, round) cell must be there before medians are taken.
expected=$((ROUNDS * ${#scenarios[@]} * 2 * 2))
((${#rps_of[@]} == expected)) || bench_die "expected $expected results, got ${#rps_of[@]} (see $raw)"

rows=()
for scenario in "${scenarios[@]}"; do
  rows+=("SET ${label_of[$scenario]}" "GET ${label_of[$scenario]}")
done

echo
printf '%-16s %16s %16s %12s\n' "row" "redis ops/s" "node ops/s" "node/redis"
printf '%-16s %16s %16s %12s\n' "---" "(median)" "(median)" "(median)"
ratios=()
for row in "${rows[@]}"; do
  redis_vals=() node_vals=() round_ratios=()
  for ((round = 1; round <= ROUNDS; round++)); do
    r="${rps_of["$row|redis|$round"]}" n="${rps_of["$row|node|$round"]}"
    redis_vals+=("$r") node_vals+=("$n")
    round_ratios+=("$(bench_ratio "$n" "$r")")
  done
  ratio="$(bench_median "${round_ratios[@]}")"
  ratios+=("$row=$ratio")
  printf '%-16s %16.0f %16.0f %12.2f\n' "$row" \
    "$(bench_median "${redis_vals[@]}")" "$(bench_median "${node_vals[@]}")" "$ratio"
done

printf '%s\n' "${ratios[@]}" | awk -F= -v rounds="$ROUNDS" -v raw="$raw" '
  { n++; logsum += log($2); if (n == 1 || $2 < min) { min = $2; minrow = $1 } if (n == 1 || $2 > max) { max = $2; maxrow = $1 } }
  END { printf "\nsummary: node/redis geometric mean %.2f over %d rows (lowest %.2f %s, highest %.2f %s); ratio = median of %d per-round ratios; raw: %s\n",
        exp(logsum / n), n, min, minrow, max, maxrow, rounds, raw }'
