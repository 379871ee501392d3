#!/usr/bin/env bash
# What key-prefix routes and mirroring cost the router, on 127.0.0.1, in one run:
#
#   (a) routing cost: `ringcache router` over 2 redis-servers with no [[route]] against the same
#       router with ROUTES prefix routes (default 50: "r0:".."r48:" to a second pool, and "key:",
#       the prefix of every redis-benchmark key, to `default`, so each request walks the trie and
#       matches). Rows: SET and GET at -P 16 (and -P 1), fronts alternating. Goal: with/without
#       >= 0.95 at -P 16.
#   (b) a stopped mirror: the router with "key:" mirrored (all writes) to a pool whose primary is a
#       redis-server under SIGSTOP, against the router without the mirror, SET at -P 1: client
#       p99 latency (redis-benchmark's) and requests/s. Goal: p99 within 10% of no mirror. The
#       router's mirror_drops (RING ROUTES) are printed: copies beyond 4,096 outstanding.
#
# Each figure is the median of ROUNDS rounds, each ratio the median of per-round ratios.
#
# Environment:
#   ROUNDS=5  N_P1=100000  N_P16=500000  CLIENTS=50  KEYSPACE=100000  ROUTES=50
#   BENCH_RUN_TIMEOUT=300, BENCH_READY_TIMEOUT=30, BUILD_TIMEOUT=3600   bounds in seconds
#
# Raw per-round figures go to target/bench/bench-routes-<time>.csv.
set -euo pipefail

# shellcheck source=benches/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

: "${ROUNDS:=5}" "${N_P1:=100000}" "${N_P16:=500000}" "${CLIENTS:=50}" "${KEYSPACE:=100000}"
: "${ROUTES:=50}" "${BUILD_TIMEOUT:=3600}"
bench_require_positive_int ROUNDS N_P1 N_P16 CLIENTS KEYSPACE ROUTES BUILD_TIMEOUT

root="$(bench_repo_root)"
cd "$root"
bench_install_deps
bench_require redis-server redis-cli redis-benchmark setsid timeout awk sort

ringcache="$(bench_cargo_bin ringcache ringcache)"

out_dir="$root/target/bench"
mkdir -p "$out_dir"
stamp="$(date +%Y%m%d-%H%M%S)"
raw="$out_dir/bench-routes-$stamp.csv"
work="$out_dir/bench-routes-$stamp"
mkdir -p "$work"
bench_cleanup_on_exit

# --- backends: 2 for `default`, 1 for the routes' second pool, 1 for the mirror ----------------

ports=()
for i in 1 2 3 4; do
  port=""
  bench_free_port port
  bench_start_server "redis$i" "$port" "$work/redis$i.log" \
    redis-server --save "" --appendonly no --bind 127.0.0.1 --port "$port"
  ports+=("$port")
done
# The last one started: the mirror's primary, stopped for part (b).
mirror_pid="$BENCH_LAST_PID"

# start_router NAME EXTRA_TOML: a router over the first two redis-servers with EXTRA_TOML
# appended; sets FRONT_PORT.
start_router() {
  local name="$1" extra="$2" conf="$work/$1.toml"
  FRONT_PORT=""
  bench_free_port FRONT_PORT
  {
    printf '[router]\nlisten = "127.0.0.1:%s"\nupstream_connections = 1\n' "$FRONT_PORT"
    printf '\n[ring]\nvnodes = 2048\n'
    printf '\n[[shard]]\nid = "a1"\nprimary = "127.0.0.1:%s"\n' "${ports[0]}"
    printf '\n[[shard]]\nid = "a2"\nprimary = "127.0.0.1:%s"\n' "${ports[1]}"
    printf '%s\n' "$extra"
  } >"$conf"
  bench_start "$work/$name.log" "$ringcache" router --config "$conf"
  bench_wait_ping "$FRONT_PORT" "$BENCH_READY_TIMEOUT" "$BENCH_LAST_PID" \
    || bench_die "$name did not answer PING (log: $work/$name.log)"
}

routes_toml="$(printf '\n[[pool]]\nname = "other"\n[[pool.shard]]\nid = "o1"\nprimary = "127.0.0.1:%s"\n' "${ports[2]}")"
for ((i = 0; i < ROUTES - 1; i++)); do
  routes_toml+="$(printf '\n[[route]]\nprefix = "r%s:"\npool = "other"\n' "$i")"
done
routes_toml+="$(printf '\n[[route]]\nprefix = "key:"\npool = "default"\n')"
mirror_toml="$(printf '\n[[pool]]\nname = "shadow"\n[[pool.shard]]\nid = "m1"\nprimary = "127.0.0.1:%s"\n[[route]]\nprefix = "key:"\npool = "default"\nmirror = { pool = "shadow", percent = 100, writes_only = true }\n' "${ports[3]}")"

start_router plain ""
plain_port="$FRONT_PORT"
start_router routed "$routes_toml"
routed_port="$FRONT_PORT"
start_router mirrored "$mirror_toml"
mirrored_port="$FRONT_PORT"

cli() { timeout 30 redis-cli -h 127.0.0.1 -p "$@"; }
# Every front routes: a key written through it reads back, and "r1:" keys reach the second pool.
for port in "$plain_port" "$routed_port" "$mirrored_port"; do
  [[ "$(cli "$port" SET key:probe v)" == OK ]] || bench_die "SET through $port failed"
  [[ "$(cli "$port" GET key:probe)" == v ]] || bench_die "GET through $port failed"
done
[[ "$(cli "$routed_port" SET r1:probe v)" == OK ]] || bench_die "SET r1:probe failed"
[[ "$(cli "${ports[2]}" GET r1:probe)" == v ]] || bench_die "r1:probe did not reach the routes' pool"
[[ "$(cli "${ports[3]}" GET key:probe)" == v ]] || bench_die "the mirror did not get key:probe"

echo "part,row,round,front,rps,p99_ms" >"$raw"

# run PORT TEST PIPELINE N: prints "RPS P99".
run() {
  local out
  out="$(timeout --kill-after=5s "$BENCH_RUN_TIMEOUT" redis-benchmark -h 127.0.0.1 -p "$1" \
    --csv -t "$2" -c "$CLIENTS" -n "$4" -P "$3" -r "$KEYSPACE" 2>&1)" \
    || bench_die "redis-benchmark -p $1 -t $2 failed: $(tail -n 3 <<<"$out")"
  ! grep -qi error <<<"$out" || bench_die "redis-benchmark -p $1 -t $2: errors: $(grep -i error <<<"$out" | head -n 2)"
  awk -F'"' -v t="${2^^}" '$2 == t { print $4, $14; exit }' <<<"$out"
}

declare -A rps p99
rows_a=("set 16 $N_P16" "get 16 $N_P16" "set 1 $N_P1" "get 1 $N_P1")
for ((r = 1; r <= ROUNDS; r++)); do
  for row in "${rows_a[@]}"; do
    read -r test pipe n <<<"$row"
    key="$test-P$pipe"
    # Alternate which front goes first, round by round.
    fronts=(plain routed)
    ((r % 2 == 0)) && fronts=(routed plain)
    for f in "${fronts[@]}"; do
      port="$plain_port"
      [[ "$f" == routed ]] && port="$routed_port"
      read -r v l < <(run "$port" "$test" "$pipe" "$n")
      rps["a,$key,$r,$f"]="$v"
      echo "a,$key,$r,$f,$v,$l" >>"$raw"
    done
    bench_log "(a) round $r $key: plain ${rps["a,$key,$r,plain"]} routed ${rps["a,$key,$r,routed"]}"
  done
done

# (b): the mirror's redis-server stopped for the whole part.
kill -STOP "$mirror_pid"
for ((r = 1; r <= ROUNDS; r++)); do
  fronts=(plain mirrored)
  ((r % 2 == 0)) && fronts=(mirrored plain)
  for f in "${fronts[@]}"; do
    port="$plain_port"
    [[ "$f" == mirrored ]] && port="$mirrored_port"
    read -r v l < <(run "$port" set 1 "$N_P1")
    rps["b,$r,$f"]="$v"
    p99["b,$r,$f"]="$l"
    echo "b,set-P1,$r,$f,$v,$l" >>"$raw"
  done
  bench_log "(b) round $r: p99 plain ${p99["b,$r,plain"]} ms, mirrored (stopped) ${p99["b,$r,mirrored"]} ms"
done
drops="$(cli "$mirrored_port" RING ROUTES | awk 'prev == "mirror_drops" { print; exit } { prev = $0 }')"
kill -CONT "$mirror_pid"

echo
echo "## (a) routing cost: $ROUTES prefix routes vs none (redis-benchmark -c $CLIENTS, $ROUNDS rounds)"
echo
echo "| row | no routes ops/s | $ROUTES routes ops/s | routes/none |"
echo "| --- | ---: | ---: | ---: |"
for row in "${rows_a[@]}"; do
  read -r test pipe n <<<"$row"
  key="$test-P$pipe"
  a=() b=() q=()
  for ((r = 1; r <= ROUNDS; r++)); do
    a+=("${rps["a,$key,$r,plain"]}")
    b+=("${rps["a,$key,$r,routed"]}")
    q+=("$(bench_ratio "${rps["a,$key,$r,routed"]}" "${rps["a,$key,$r,plain"]}")")
  done
  printf '| %s -P %s | %s | %s | %s |\n' "${test^^}" "$pipe" "$(bench_median "${a[@]}")" \
    "$(bench_median "${b[@]}")" "$(bench_median "${q[@]}")"
done
echo
echo "## (b) all writes mirrored to a SIGSTOPped pool vs no mirror (SET -P 1, -c $CLIENTS)"
echo
a=() b=() la=() lb=() q=()
for ((r = 1; r <= ROUNDS; r++)); do
  a+=("${rps["b,$r,plain"]}")
  b+=("${rps["b,$r,mirrored"]}")
  la+=("${p99["b,$r,plain"]}")
  lb+=("${p99["b,$r,mirrored"]}")
  q+=("$(bench_ratio "${p99["b,$r,mirrored"]}" "${p99["b,$r,plain"]}")")
done
echo "| front | ops/s | p99 ms |"
echo "| --- | ---: | ---: |"
printf '| no mirror | %s | %s |\n' "$(bench_median "${a[@]}")" "$(bench_median "${la[@]}")"
printf '| mirror stopped | %s | %s |\n' "$(bench_median "${b[@]}")" "$(bench_median "${lb[@]}")"
echo
echo "p99 mirrored/plain (median of rounds): $(bench_median "${q[@]}"); copies dropped: ${drops:-?}"
echo "raw: $raw"
