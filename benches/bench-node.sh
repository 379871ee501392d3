#!/usr/bin/env bash
# Side-by-side throughput of one ringcache node against redis-server on 127.0.0.1.
#
# Starts redis-server and `ringcache node` with the same bind address, then runs redis-benchmark
# (-c 50) for the TESTS (SET, GET and the data-model commands) at -P 1 and at -P 16, and for
# TESTS_1K with 1 KiB values (-P 1), against each server, alternating servers run by run, for ROUNDS
# rounds, and prints medians and the node/redis ratio (the median of per-round ratios), and the
# ratio of each server's best round: on a small machine a -P 1 run lands in one of two modes for
# either server (on the 2-core development machine ~84,000 or ~72,000 ops/s, the whole
# redis-benchmark run alike, pinned to separate CPUs or not), so the median of 5 ratios can
# compare one server's slow mode with the other's fast one; best against best cannot.
#
# Each test's command is first run once on each server: a test either server answers with an
# error (e.g. LPUSH before the node has lists) is not measured and its rows say so.
#
# Environment:
#   TESTS=set,get,lpush,rpush,lpop,rpop,sadd,spop,zadd,zpopmin,lrange_100,hset
#                       redis-benchmark -t tests run at -P 1 and at -P 16 (names as redis-benchmark
#                       takes them; lrange_N for LRANGE of N elements)
#   TESTS_1K=set,get    tests run with -d 1024 at -P 1 (empty: none)
#   ROUNDS=5            rounds (each round runs every scenario once per server)
#   N_P1=200000         requests per test at -P 1
#   N_P16=1000000       requests per test at -P 16
#   N_1K=$N_P1          requests per test with -d 1024
#   CLIENTS=50          redis-benchmark -c
#   KEYSPACE=100000     redis-benchmark -r (random keys in a keyspace of this size)
#   WARMUP=1            one short unrecorded run per server first (0 to skip)
#   NODE_CMD=...        command for the node side instead of the release build of `ringcache
#                       node` (no build then); split with shell quoting; `--bind 127.0.0.1 --port P` is
#                       appended. E.g. NODE_CMD='redis-server --save "" --appendonly no' checks
#                       this script's machinery with redis on both sides.
#   BENCH_RUN_TIMEOUT=300, BENCH_READY_TIMEOUT=30, BUILD_TIMEOUT=3600   bounds in seconds
#
# Raw per-round figures go to target/bench/bench-node-<time>.csv.
set -euo pipefail

# shellcheck source=benches/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

: "${TESTS=set,get,lpush,rpush,lpop,rpop,sadd,spop,zadd,zpopmin,lrange_100,hset}" "${TESTS_1K=set,get}"
: "${ROUNDS:=5}" "${N_P1:=200000}" "${N_P16:=1000000}" "${N_1K:=$N_P1}"
: "${CLIENTS:=50}" "${KEYSPACE:=100000}" "${WARMUP:=1}" "${BUILD_TIMEOUT:=3600}"
bench_require_positive_int ROUNDS N_P1 N_P16 N_1K CLIENTS KEYSPACE BUILD_TIMEOUT

root="$(bench_repo_root)"
cd "$root"

bench_install_deps
bench_require redis-server redis-cli redis-benchmark setsid timeout awk sort

# test -> the command that checks a server answers it (redis-benchmark's own keys are left alone).
declare -A probe_of=(
  [ping_inline]="PING" [ping_mbulk]="PING" [set]="SET __bench_probe:s x" [get]="GET __bench_probe:s"
  [incr]="INCR __bench_probe:i" [mset]="MSET __bench_probe:s x"
  [lpush]="LPUSH __bench_probe:l x" [rpush]="RPUSH __bench_probe:l x"
  [lpop]="LPOP __bench_probe:l" [rpop]="RPOP __bench_probe:l"
  [sadd]="SADD __bench_probe:t x" [spop]="SPOP __bench_probe:t"
  [zadd]="ZADD __bench_probe:z 1 x" [zpopmin]="ZPOPMIN __bench_probe:z"
  [hset]="HSET __bench_probe:h f v"
)
# "test1,test2" -> the list, lower-case, each checked to be one this script knows.
split_tests() {
  local -n _tests_out="$1"
  local t
  _tests_out=()
  for t in ${2//,/ }; do
    t="${t,,}"
    [[ -n "${probe_of[$t]:-}" || "$t" =~ ^lrange_[0-9]+$ ]] || bench_die "unknown test '$t' (TESTS / TESTS_1K)"
    _tests_out+=("$t")
  done
}
tests=() tests_1k=()
split_tests tests "$TESTS"
split_tests tests_1k "$TESTS_1K"
((${#tests[@]} + ${#tests_1k[@]} > 0)) || bench_die "TESTS and TESTS_1K are both empty"

node_cmd=()
bench_node_cmd node_cmd

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

# Which tests both servers answer without an error; the others get an error row, unmeasured.
declare -A test_error # test -> "node: ERR unknown command ..." for tests not measured
for test in "${tests[@]}" "${tests_1k[@]}"; do
  [[ -z "${test_error[$test]+x}" ]] || continue
  test_error[$test]=""
  if [[ "$test" =~ ^lrange_([0-9]+)$ ]]; then
    # redis-benchmark fills its list with LPUSH before LRANGE.
    probes=("LPUSH __bench_probe:l x" "LRANGE __bench_probe:l 0 $((BASH_REMATCH[1] - 1))")
  else
    probes=("${probe_of[$test]}")
  fi
  for server in redis node; do
    for probe in "${probes[@]}"; do
      read -ra cmd <<<"$probe"
      if ! err="$(bench_cmd_error "${port_of[$server]}" "${cmd[@]}")"; then
        test_error[$test]="$server: ${err%%, with args*}"
        bench_log "not measuring ${test^^}: ${test_error[$test]}"
        break 2
      fi
    done
  done
done
for server in redis node; do
  bench_cli "${port_of[$server]}" DEL __bench_probe:s __bench_probe:i __bench_probe:l \
    __bench_probe:t __bench_probe:z __bench_probe:h >/dev/null || true
done
# runnable TEST...: the comma-separated tests among TEST... that both servers answer.
runnable() {
  local t out=()
  for t in "$@"; do [[ -n "${test_error[$t]}" ]] || out+=("$t"); done
  local IFS=,
  printf '%s\n' "${out[*]}"
}

# scenario name -> redis-benchmark arguments and tests.
scenarios=()
declare -A tests_of=([P1]="$(runnable "${tests[@]}")" [P16]="$(runnable "${tests[@]}")"
  [1KiB]="$(runnable "${tests_1k[@]}")")
((${#tests[@]} > 0)) && scenarios+=(P1 P16)
((${#tests_1k[@]} > 0)) && scenarios+=(1KiB)
declare -A args_of=(
  [P1]="-P 1 -n $N_P1"
  [P16]="-P 16 -n $N_P16"
  [1KiB]="-P 1 -d 1024 -n $N_1K"
)
declare -A label_of=([P1]="-P 1" [P16]="-P 16" [1KiB]="1KiB -P 1")
common=(-c "$CLIENTS" -r "$KEYSPACE")

bench_log "redis: $(redis-server --version | cut -d' ' -f3) on 127.0.0.1:$redis_port; node: ${node_cmd[*]@Q} on 127.0.0.1:$node_port"
bench_log "rounds=$ROUNDS N_P1=$N_P1 N_P16=$N_P16 N_1K=$N_1K clients=$CLIENTS keyspace=$KEYSPACE cores=$(nproc) load average: $(cut -d' ' -f1-3 /proc/loadavg)"
bench_log "tests: ${TESTS:-none} at -P 1 and -P 16; ${TESTS_1K:-none} with 1 KiB values"

if [[ "$WARMUP" != 0 ]]; then
  for server in redis node; do
    bench_redis_benchmark "${port_of[$server]}" set,get "${common[@]}" -P 1 -n 20000 >/dev/null
  done
fi

echo "round,scenario,server,test,rps" >"$raw"
declare -A rps_of # "$row|$server|$round" -> requests/s
expected=0
for scenario in "${scenarios[@]}"; do
  [[ -z "${tests_of[$scenario]}" ]] && continue
  n_tests="$(tr ',' '\n' <<<"${tests_of[$scenario]}" | wc -l)"
  expected=$((expected + ROUNDS * n_tests * 2))
done
for ((round = 1; round <= ROUNDS; round++)); do
  for scenario in "${scenarios[@]}"; do
    [[ -n "${tests_of[$scenario]}" ]] || continue
    # Alternate which server goes first so drift (thermal, page cache, neighbours) hits both.
    if ((round % 2)); then order=(redis node); else order=(node redis); fi
    for server in "${order[@]}"; do
      read -ra extra <<<"${args_of[$scenario]}"
      results="$(bench_redis_benchmark "${port_of[$server]}" "${tests_of[$scenario]}" "${common[@]}" "${extra[@]}")"
      while read -r test rps; do
        rps_of["$test ${label_of[$scenario]}|$server|$round"]="$rps"
        echo "$round,$scenario,$server,$test,$rps" >>"$raw"
        bench_log "round $round/$ROUNDS $server $test ${label_of[$scenario]}: $rps ops/s"
      done <<<"$results"
    done
  done
done

# Every (row, server, round) cell must be there before medians are taken.
((${#rps_of[@]} == expected)) || bench_die "expected $expected results, got ${#rps_of[@]} (see $raw)"

rows=() # "row|test"
for scenario in "${scenarios[@]}"; do
  if [[ "$scenario" == 1KiB ]]; then scenario_tests=("${tests_1k[@]}"); else scenario_tests=("${tests[@]}"); fi
  for test in "${scenario_tests[@]}"; do
    rows+=("${test^^} ${label_of[$scenario]}|$test")
  done
done

echo
printf '%-20s %16s %16s %12s %12s\n' "row" "redis ops/s" "node ops/s" "node/redis" "node/redis"
printf '%-20s %16s %16s %12s %12s\n' "---" "(median)" "(median)" "(median)" "(best/best)"
ratios=()
for row_test in "${rows[@]}"; do
  row="${row_test%|*}" test="${row_test#*|}"
  if [[ -n "${test_error[$test]}" ]]; then
    printf '%-20s %16s %16s %12s %12s   %s\n' "$row" error error - - "${test_error[$test]}"
    continue
  fi
  redis_vals=() node_vals=() round_ratios=()
  for ((round = 1; round <= ROUNDS; round++)); do
    r="${rps_of["$row|redis|$round"]}" n="${rps_of["$row|node|$round"]}"
    redis_vals+=("$r") node_vals+=("$n")
    round_ratios+=("$(bench_ratio "$n" "$r")")
  done
  ratio="$(bench_median "${round_ratios[@]}")"
  best="$(bench_ratio "$(printf '%s\n' "${node_vals[@]}" | sort -g | tail -n 1)" \
    "$(printf '%s\n' "${redis_vals[@]}" | sort -g | tail -n 1)")"
  ratios+=("$row=$ratio=$best")
  printf '%-20s %16.0f %16.0f %12.2f %12.2f\n' "$row" \
    "$(bench_median "${redis_vals[@]}")" "$(bench_median "${node_vals[@]}")" "$ratio" "$best"
done

((${#ratios[@]} > 0)) || bench_die "no test could be measured: every one answered an error"
printf '%s\n' "${ratios[@]}" | awk -F= -v rounds="$ROUNDS" -v raw="$raw" '
  { n++; logsum += log($2); if (n == 1 || $2 < min) { min = $2; minrow = $1 } if (n == 1 || $2 > max) { max = $2; maxrow = $1 }
    if (n == 1 || $3 < bmin) { bmin = $3; bminrow = $1 } }
  END { printf "\nsummary: node/redis geometric mean %.2f over %d rows (lowest %.2f %s, highest %.2f %s); ratio = median of %d per-round ratios; best/best lowest %.2f %s; raw: %s\n",
        exp(logsum / n), n, min, minrow, max, maxrow, rounds, bmin, bminrow, raw }'
not_measured=()
for test in "${!test_error[@]}"; do [[ -z "${test_error[$test]}" ]] || not_measured+=("${test^^}"); done
if ((${#not_measured[@]} > 0)); then
  echo "not measured, a server answered an error: $(printf '%s\n' "${not_measured[@]}" | sort | tr '\n' ' ')"
fi
