#!/usr/bin/env bash
# What idle client connections cost, on 127.0.0.1, side by side in one run: the ringcache router
# (over one ringcache node) against nutcracker (twemproxy, over one redis-server), and a ringcache
# node against redis-server.
#
# For each server: its RSS is read, `idle_conns` (tests/src/bin/idle_conns.rs) opens CONNS
# connections (every tenth sends one PING), RSS is read again (growth / CONNS = bytes per idle
# connection), and one more client times PINGS PINGs one at a time while they stay open (p99).
# For the router, redis-benchmark SET and GET at -P 1 and -P 16 run with the idle connections open
# and without them (ROUNDS rounds, each without then with), and the ratio with/without printed.
# Goals: router <= 1 KB per idle connection, node <= redis-server's, the router's rows within 5%.
#
# CONNS is bounded by the open-file limit: the script raises its soft limit to the hard one and
# lowers CONNS to fit when it must (and says so).
#
# Environment:
#   CONNS=10000 PINGS=10000 ROUNDS=3 N_P1=100000 N_P16=500000 CLIENTS=50 KEYSPACE=100000
#   SETTLE=3                  seconds to wait before reading RSS (idle connections park after 1-2 s)
#   NODE_CMD=...              command for the node instead of the release build of `ringcache
#                             node` (as in bench-node.sh)
#   IDLE_CONNS=...            a prebuilt idle_conns binary (else built: cargo build --release -p
#                             tests --bin idle_conns)
#   BENCH_READY_TIMEOUT=30, BUILD_TIMEOUT=3600   bounds in seconds
#
# Raw figures go to target/bench/bench-conns-<time>.csv.
set -euo pipefail

# shellcheck source=benches/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

: "${CONNS:=10000}" "${PINGS:=10000}" "${ROUNDS:=3}" "${N_P1:=100000}" "${N_P16:=500000}"
: "${CLIENTS:=50}" "${KEYSPACE:=100000}" "${SETTLE:=3}" "${BUILD_TIMEOUT:=3600}"
bench_require_positive_int CONNS PINGS ROUNDS N_P1 N_P16 CLIENTS KEYSPACE BUILD_TIMEOUT

root="$(bench_repo_root)"
cd "$root"
bench_install_deps
bench_require redis-server redis-cli redis-benchmark setsid timeout awk sort

# Every connection is a descriptor here and in the server (which inherits this limit).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
limit="$(ulimit -n)"
if [[ "$limit" != unlimited ]] && ((CONNS + 200 > limit)); then
  bench_log "open-file limit $limit: CONNS lowered from $CONNS to $((limit - 200))"
  CONNS=$((limit - 200))
fi
maxclients=$((CONNS + 100))

node_cmd=()
bench_node_cmd node_cmd
ringcache="${node_cmd[0]}"
[[ -n "${NODE_CMD:-}" ]] && ringcache="$(bench_cargo_bin ringcache ringcache)"
idle_conns="${IDLE_CONNS:-$(bench_cargo_bin tests idle_conns)}"

out_dir="$root/target/bench"
mkdir -p "$out_dir"
stamp="$(date +%Y%m%d-%H%M%S)"
raw="$out_dir/bench-conns-$stamp.csv"
work="$(mktemp -d)"
bench_cleanup_on_exit
echo "server,conns,rss_before_kib,rss_after_kib,bytes_per_conn,p50_us,p99_us,max_us" >"$raw"

# Backends, then the fronts over them.
redis_port="" node_port="" back_port="" router_port="" twem_port=""
bench_free_port redis_port
bench_start_server redis "$redis_port" "$work/redis.log" \
  redis-server --save "" --appendonly no --bind 127.0.0.1 --port "$redis_port" --maxclients "$maxclients"
redis_pid="$BENCH_LAST_PID"
bench_free_port node_port
bench_start_server node "$node_port" "$work/node.log" "${node_cmd[@]}" --maxclients "$maxclients" \
  --bind 127.0.0.1 --port "$node_port"
node_pid="$BENCH_LAST_PID"
bench_free_port back_port
bench_start_server backend "$back_port" "$work/backend.log" "${node_cmd[@]}" --bind 127.0.0.1 --port "$back_port"
twem_back_port=""
bench_free_port twem_back_port
bench_start_server twem-backend "$twem_back_port" "$work/twem-backend.log" \
  redis-server --save "" --appendonly no --bind 127.0.0.1 --port "$twem_back_port"
bench_free_port router_port
printf '[router]\nlisten = "127.0.0.1:%s"\nmax_clients = %s\n\n[[shard]]\nid = "s1"\nprimary = "127.0.0.1:%s"\n' \
  "$router_port" "$maxclients" "$back_port" >"$work/router.toml"
bench_start_server router "$router_port" "$work/router.log" "$ringcache" router --config "$work/router.toml"
router_pid="$BENCH_LAST_PID"
bench_free_port twem_port
bench_nutcracker_conf "$work/twem.yml" "$twem_port" 1 murmur "$twem_back_port"
bench_start_nutcracker twemproxy "$twem_port" "$work/twem.yml" "$work/twem.log"
twem_pid="$BENCH_LAST_PID"

declare -A per_conn p99
# hold NAME PORT PID: opens the idle connections to PORT and records NAME's figures; leaves
# idle_conns running (HOLD_PID) with its output in $work/NAME.idle.
hold() {
  local name="$1" port="$2" pid="$3" before after line
  sleep "$SETTLE"
  before="$(bench_rss_kb "$pid")"
  "$idle_conns" --addr "127.0.0.1:$port" --conns "$CONNS" --pings "$PINGS" --hold-seconds 600 \
    >"$work/$name.idle" 2>&1 &
  HOLD_PID=$!
  local waited=0
  until grep -q '^p50_us=' "$work/$name.idle"; do
    bench_alive "$HOLD_PID" || { cat "$work/$name.idle" >&2; bench_die "idle_conns against $name failed"; }
    ((waited++ < 1200)) || bench_die "idle_conns against $name did not finish opening within 120 s"
    sleep 0.1
  done
  sleep "$SETTLE"
  after="$(bench_rss_kb "$pid")"
  line="$(grep '^p50_us=' "$work/$name.idle")"
  per_conn[$name]="$(awk -v a="$after" -v b="$before" -v n="$CONNS" 'BEGIN { printf "%.0f", (a - b) * 1024 / n }')"
  p99[$name]="$(sed -E 's/.*p99_us=([0-9]+).*/\1/' <<<"$line")"
  echo "$name,$CONNS,$before,$after,${per_conn[$name]},$(sed -E 's/p50_us=([0-9]+) p99_us=([0-9]+) max_us=([0-9]+)/\1,\2,\3/' <<<"$line")" >>"$raw"
  bench_log "$name: RSS $before -> $after KiB with $CONNS idle connections: ${per_conn[$name]} B each; PING $line"
}
release() { kill "$HOLD_PID" 2>/dev/null || true; wait "$HOLD_PID" 2>/dev/null || true; }

# The router's SET/GET rows, with and without the idle connections.
declare -A rps # "row|with|round"
router_rows() {
  local with="$1" round="$2" label args results test r
  for label in "-P 1" "-P 16"; do
    if [[ "$label" == "-P 1" ]]; then args=(-P 1 -n "$N_P1"); else args=(-P 16 -n "$N_P16"); fi
    results="$(bench_redis_benchmark "$router_port" set,get -c "$CLIENTS" -r "$KEYSPACE" "${args[@]}")"
    while read -r test r; do
      rps["$test $label|$with|$round"]="$r"
      bench_log "round $round router $test $label ($with idle connections): $r ops/s"
    done <<<"$results"
  done
}

# Rounds alternate without/with, so drift on a shared machine hits both; the router's figures
# are the last round's.
for ((round = 1; round <= ROUNDS; round++)); do
  router_rows without "$round"
  hold router "$router_port" "$router_pid"
  router_rows with "$round"
  release
done
hold twemproxy "$twem_port" "$twem_pid"
release
hold node "$node_port" "$node_pid"
release
hold redis "$redis_port" "$redis_pid"
release

echo
printf '%-12s %14s %14s %12s\n' server "B/idle conn" "PING p99 us" ""
for name in router twemproxy node redis; do
  printf '%-12s %14s %14s\n' "$name" "${per_conn[$name]}" "${p99[$name]}"
done
printf '\nrouter/twemproxy %.2f (goal: router <= 1024 B), node/redis %.2f (goal <= 1.00), with %s idle connections\n' \
  "$(bench_ratio "${per_conn[router]}" "${per_conn[twemproxy]}")" \
  "$(bench_ratio "${per_conn[node]}" "${per_conn[redis]}")" "$CONNS"
echo
# Best against best beside the median of per-round ratios: -P 1 runs on a small machine land in a
# fast or a slow mode, run by run (see bench-node.sh).
printf '%-12s %18s %18s %12s %12s\n' "router row" "without (median)" "with (median)" "with/without" "best/best"
for row in "SET -P 1" "GET -P 1" "SET -P 16" "GET -P 16"; do
  w=() wo=() ratios=()
  for ((round = 1; round <= ROUNDS; round++)); do
    w+=("${rps["$row|with|$round"]}") wo+=("${rps["$row|without|$round"]}")
    ratios+=("$(bench_ratio "${rps["$row|with|$round"]}" "${rps["$row|without|$round"]}")")
  done
  best="$(bench_ratio "$(printf '%s\n' "${w[@]}" | sort -g | tail -n 1)" \
    "$(printf '%s\n' "${wo[@]}" | sort -g | tail -n 1)")"
  printf '%-12s %18.0f %18.0f %12.2f %12.2f\n' "$row" "$(bench_median "${wo[@]}")" "$(bench_median "${w[@]}")" \
    "$(bench_median "${ratios[@]}")" "$best"
done
echo "raw: $raw"
