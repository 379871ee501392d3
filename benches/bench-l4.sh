#!/usr/bin/env bash
# Our L4 listener against haproxy (`mode tcp`, `balance leastconn`) over the same 2 redis-servers:
# redis-benchmark SET and GET, 50 clients, at -P 1 and -P 16, fronts alternating run by run, ROUNDS
# rounds, median ratios ringcache/haproxy. Goal: >= 1.0 on every row.
#
#   benches/bench-l4.sh              # ROUNDS=7, N_P1=100000, N_P16=500000, CLIENTS=50
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

: "${ROUNDS:=7}" "${N_P1:=100000}" "${N_P16:=500000}" "${CLIENTS:=50}" "${KEYSPACE:=100000}"
bench_require_positive_int ROUNDS N_P1 N_P16 CLIENTS KEYSPACE

root="$(bench_repo_root)"
cd "$root"
bench_install_deps
bench_require redis-server redis-cli redis-benchmark haproxy setsid timeout awk sort
bench_cleanup_on_exit

bench_log "building: cargo build --release --bin ringcache"
cargo build --release --bin ringcache >&2
bin="$(bench_target_dir)/release/ringcache"
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
ours_pid="$BENCH_LAST_PID"

bench_free_port haproxy_port
{
  bench_haproxy_head
  cat <<EOF
listen redis
  bind 127.0.0.1:$haproxy_port
  balance leastconn
  server r1 127.0.0.1:${backends[0]}
  server r2 127.0.0.1:${backends[1]}
EOF
} >"$work/haproxy.cfg"
bench_start_server "haproxy" "$haproxy_port" "$work/haproxy.log" haproxy -db -f "$work/haproxy.cfg"
haproxy_pid="$BENCH_LAST_PID"

# CPU time (user + system, clock ticks) a process has used so far: the cost per request is the
# steadier figure on a shared machine, where throughput swings with the neighbours.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
ticks_per_s="$(getconf CLK_TCK)"

# Each front must carry a real exchange: SET then GET on one connection (the two backends are
# independent servers, so both commands must reach the same one).
for front in "ringcache L4:$l4_port" "haproxy:$haproxy_port"; do
  got="$(printf 'SET bench:l4:check ok-%s\nGET bench:l4:check\n' "${front##*:}" \
    | timeout 10 redis-cli -h 127.0.0.1 -p "${front##*:}" | tail -n 1)"
  [[ "$got" == "ok-${front##*:}" ]] || bench_die "${front%%:*}: SET/GET through 127.0.0.1:${front##*:} returned '$got'"
done

declare -A runs cpu
rows=("P1" "P16")
for ((round = 1; round <= ROUNDS; round++)); do
  fronts=(ours haproxy)
  ((round % 2 == 0)) && fronts=(haproxy ours)
  for front in "${fronts[@]}"; do
    port="$l4_port" pid="$ours_pid"
    [[ "$front" == haproxy ]] && port="$haproxy_port" pid="$haproxy_pid"
    for row in "${rows[@]}"; do
      if [[ "$row" == P1 ]]; then args=(-n "$N_P1" -P 1); else args=(-n "$N_P16" -P 16); fi
      before="$(cpu_ticks "$pid")"
      # Captured first: a bench_die inside a process substitution would not stop the script.
      results="$(bench_redis_benchmark "$port" set,get -c "$CLIENTS" -r "$KEYSPACE" "${args[@]}")"
      # Microseconds of proxy CPU per request, over the SET and GET runs together.
      cpu["$front,$row,$round"]="$(awk -v t=$(($(cpu_ticks "$pid") - before)) -v hz="$ticks_per_s" \
        -v n="${args[1]}" 'BEGIN { printf "%.2f", t / hz * 1e6 / (2 * n) }')"
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

printf '\n%-14s %14s %14s %10s %6s  %s\n' row "ringcache L4" haproxy ratio sd goal
printf '%-14s %14s %14s %10s %6s  %s\n' --- "(median)" "(median)" "(median)" "" ---
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
  # The spread of the per-round ratios: how far one round can say anything on this machine.
  sd="$(printf '%s\n' "${ratios[@]}" | awk '{ s += $1; q += $1 * $1; n++ }
    END { v = n > 1 ? (q - s * s / n) / (n - 1) : 0; if (v < 0) v = 0; printf "%.2f", sqrt(v) }')"
  printf '%-14s %14.0f %14.0f %10s %6s  >= 1.00 %s\n' "$row" "$(bench_median "${ours[@]}")" \
    "$(bench_median "${theirs[@]}")" "$r" "$sd" "$goal"
done
printf '\n%-14s %14s %14s\n' "proxy CPU/req" "ringcache L4" haproxy
for row in "${rows[@]}"; do
  ours=() theirs=()
  for ((round = 1; round <= ROUNDS; round++)); do
    ours+=("${cpu["ours,$row,$round"]}") theirs+=("${cpu["haproxy,$row,$round"]}")
  done
  printf '%-14s %11s us %11s us\n' "SET+GET -$row" "$(bench_median "${ours[@]}")" "$(bench_median "${theirs[@]}")"
done
printf '\nratio = median of %s per-round ratios (sd: their standard deviation); CPU = median\n' "$ROUNDS"
printf 'user+system time per request of the proxy process (all its threads); logs: %s\n' "$work"
