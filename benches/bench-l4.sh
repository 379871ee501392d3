#!/usr/bin/env bash
# Our L4 listener against haproxy (`mode tcp`, `balance leastconn`) over the same 2 redis-servers:
# redis-benchmark SET and GET, 50 clients, at -P 1 and -P 16, fronts alternating run by run, ROUNDS
# rounds, median ratios ringcache/haproxy. Goal: >= 1.0 on every row.
#
#   benches/bench-l4.sh              # ROUNDS=5, N_P1=100000, N_P16=500000, CLIENTS=50
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

: "${ROUNDS:=5}" "${N_P1:=100000}" "${N_P16:=500000}" "${CLIENTS:=50}" "${KEYSPACE:=100000}"
bench_require_positive_int ROUNDS N_P1 N_P16 CLIENTS KEYSPACE

root="$(bench_repo_root)"
cd "$root"
bench_install_deps
bench_require redis-server redis-cli redis-benchmark haproxy setsid timeout awk sort
bench_cleanup_on_exit

bench_log "building: cargo build --release --bin ringcache"
cargo build --release --bin ringcache >&2
bin="$root/target/release/ringcache"
work="$root/target/bench/l4-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$work"

backends=()
for i in 1 2; do
  bench_free_port port
  bench_start_server "redis $i" "$port" "$work/redis-$i.log" \
    redis-server --save '' --appendonly no --bind 127.0.0.1 --port "$port"
  backends+=("$port")
done

bench_free_port router_port
bench_free_port l4_port
cat >"$work/router.toml" <<EOF
[router]
listen = "127.0.0.1:$router_port"
[[shard]]
id = "a"
primary = "127.0.0.1:${backends[0]}"
[[l4]]
listen = "127.0.0.1:$l4_port"
pool = ["127.0.0.1:${backends[0]}", "127.0.0.1:${backends[1]}"]
balance = "least-connections"
EOF
bench_start_server "ringcache L4" "$l4_port" "$work/router.log" "$bin" router --config "$work/router.toml"

bench_free_port haproxy_port
cat >"$work/haproxy.cfg" <<EOF
global
  maxconn 4096
defaults
  mode tcp
  timeout connect 1s
  timeout client 60s
  timeout server 60s
listen redis
  bind 127.0.0.1:$haproxy_port
  balance leastconn
  server r1 127.0.0.1:${backends[0]}
  server r2 127.0.0.1:${backends[1]}
EOF
bench_start_server "haproxy" "$haproxy_port" "$work/haproxy.log" haproxy -db -f "$work/haproxy.cfg"

# Each front must carry a real exchange: SET then GET on one connection (the two backends are
# independent servers, so both commands must reach the same one).
for front in "ringcache L4:$l4_port" "haproxy:$haproxy_port"; do
  got="$(printf 'SET bench:l4:check ok-%s\nGET bench:l4:check\n' "${front##*:}" \
    | timeout 10 redis-cli -h 127.0.0.1 -p "${front##*:}" | tail -n 1)"
  [[ "$got" == "ok-${front##*:}" ]] || bench_die "${front%%:*}: SET/GET through 127.0.0.1:${front##*:} returned '$got'"
done

declare -A runs
rows=("P1" "P16")
for ((round = 1; round <= ROUNDS; round++)); do
  fronts=(ours haproxy)
  ((round % 2 == 0)) && fronts=(haproxy ours)
  for front in "${fronts[@]}"; do
    port="$l4_port"
    [[ "$front" == haproxy ]] && port="$haproxy_port"
    for row in "${rows[@]}"; do
      if [[ "$row" == P1 ]]; then args=(-n "$N_P1" -P 1); else args=(-n "$N_P16" -P 16); fi
      # Captured first: a bench_die inside a process substitution would not stop the script.
      results="$(bench_redis_benchmark "$port" set,get -c "$CLIENTS" -r "$KEYSPACE" "${args[@]}")"
      while read -r name rps; do
        runs["$front,$name -$row,$round"]="$rps"
        bench_log "round $round/$ROUNDS $front $name -${row/P/P }: $rps ops/s"
      done <<<"$results"
    done
  done
done

# Every (front, row, test, round) cell must be there before medians are taken.
expected=$((ROUNDS * 2 * ${#rows[@]} * 2))
((${#runs[@]} == expected)) || bench_die "expected $expected results, got ${#runs[@]}"

printf '\n%-14s %14s %14s %10s  %s\n' row "ringcache L4" haproxy ratio goal
printf '%-14s %14s %14s %10s  %s\n' --- "(median)" "(median)" "(median)" ---
for row in "SET -P1" "GET -P1" "SET -P16" "GET -P16"; do
  ours=() theirs=() ratios=()
  for ((round = 1; round <= ROUNDS; round++)); do
    o="${runs["ours,$row,$round"]}"
    t="${runs["haproxy,$row,$round"]}"
    ours+=("$o") theirs+=("$t") ratios+=("$(bench_ratio "$o" "$t")")
  done
  r="$(bench_median "${ratios[@]}")"
  goal=met
  awk -v r="$r" 'BEGIN { exit !(r < 1.0) }' && goal=MISSED
  printf '%-14s %14.0f %14.0f %10s  >= 1.00 %s\n' "$row" "$(bench_median "${ours[@]}")" \
    "$(bench_median "${theirs[@]}")" "$r" "$goal"
done
printf '\nratio = median of %s per-round ratios; logs: %s\n' "$ROUNDS" "$work"
