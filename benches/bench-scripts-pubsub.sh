#!/usr/bin/env bash
# Scripts and pub/sub side by side, one run, servers alternating round by round:
#
# - EVALSHA: a 3-command script (INCR, GET, EXPIRE of one key) with `redis-benchmark -c CLIENTS
#   -P 1`, one ringcache node against redis-server; prints node/redis (median of per-round ratios).
# - PUBLISH fan-out: `pubsub_load` (tests/src/bin/pubsub_load.rs) with SUBSCRIBERS subscribers
#   to one channel and one publisher sending batches of PIPELINE PUBLISHes (each batch waits for
#   the last one's replies), through a ringcache router over 3 nodes against redis-server
#   directly; prints messages delivered per second and router/redis, once per depth in
#   PIPELINES. With 16 in flight the publisher's round trip bounds both servers (redis-server
#   delivers 2.4 times as much at 64; the router's hop to the node counts in full); with 64 the
#   servers' fan-out work does.
#
# usage: benches/bench-scripts-pubsub.sh
#   ROUNDS=5 N_EVAL=200000 CLIENTS=50 SUBSCRIBERS=100 PIPELINES='16 64' PUB_SECONDS=5 PAYLOAD=16
#   NODE_CMD='<ringcache> node' and PUBSUB_LOAD=<pubsub_load>: prebuilt binaries, no build
# Needs redis-server, redis-cli, redis-benchmark (scripts/install-deps installs them); builds
# ringcache and pubsub_load in release mode (into CARGO_TARGET_DIR when set).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

: "${ROUNDS:=5}" "${N_EVAL:=200000}" "${CLIENTS:=50}" "${SUBSCRIBERS:=100}" "${PIPELINES:=16 64}"
: "${PUB_SECONDS:=5}" "${PAYLOAD:=16}" "${BENCH_RUN_TIMEOUT:=300}"
bench_require_positive_int ROUNDS N_EVAL CLIENTS SUBSCRIBERS PUB_SECONDS PAYLOAD
read -r -a depths <<<"$PIPELINES"
for d in "${depths[@]}"; do PIPELINE="$d" bench_require_positive_int PIPELINE; done

root="$(bench_repo_root)"
cd "$root"
bench_install_deps
bench_require redis-server redis-cli redis-benchmark setsid timeout awk sort

node_cmd=()
bench_node_cmd node_cmd
# PUBSUB_LOAD=path: a prebuilt pubsub_load (else built).
load_bin="${PUBSUB_LOAD:-$(bench_cargo_bin tests pubsub_load)}"

out_dir="$root/target/bench"
mkdir -p "$out_dir"
stamp="$(date +%Y%m%d-%H%M%S)"
raw="$out_dir/bench-scripts-pubsub-$stamp.csv"
bench_cleanup_on_exit

redis_port="" node_port=""
bench_free_port redis_port
bench_start_server redis "$redis_port" "$out_dir/bench-sp-$stamp-redis.log" \
  redis-server --save "" --appendonly no --bind 127.0.0.1 --port "$redis_port"
bench_free_port node_port
bench_start_server node "$node_port" "$out_dir/bench-sp-$stamp-node.log" \
  "${node_cmd[@]}" --bind 127.0.0.1 --port "$node_port"

# The router over 3 nodes of its own.
shard_ports=()
for i in 1 2 3; do
  p=""
  bench_free_port p
  bench_start_server "shard$i" "$p" "$out_dir/bench-sp-$stamp-shard$i.log" \
    "${node_cmd[@]}" --bind 127.0.0.1 --port "$p"
  shard_ports+=("$p")
done
router_port=""
bench_free_port router_port
conf="$out_dir/bench-sp-$stamp-cluster.toml"
{
  printf '[router]\nlisten = "127.0.0.1:%s"\n' "$router_port"
  for i in 0 1 2; do
    printf '[[shard]]\nid = "s%s"\nprimary = "127.0.0.1:%s"\n' "$i" "${shard_ports[$i]}"
  done
} >"$conf"
bench_start_server router "$router_port" "$out_dir/bench-sp-$stamp-router.log" \
  "${node_cmd[0]}" router --config "$conf"

script="redis.call('INCR', KEYS[1]) redis.call('GET', KEYS[1]) return redis.call('EXPIRE', KEYS[1], 1000)"
declare -A sha_of
for server in redis node; do
  port_var="${server}_port"
  sha_of[$server]="$(redis-cli -h 127.0.0.1 -p "${!port_var}" SCRIPT LOAD "$script")"
  [[ "${sha_of[$server]}" =~ ^[0-9a-f]{40}$ ]] || bench_die "$server: SCRIPT LOAD answered '${sha_of[$server]}'"
done
[[ "${sha_of[redis]}" == "${sha_of[node]}" ]] || bench_die "the node's SHA1 differs from redis's"

echo "round,row,server,value" >"$raw"
eval_ratios=() eval_redis=() eval_node=()
declare -A pub_ratios pub_redis pub_router
for ((r = 1; r <= ROUNDS; r++)); do
  order=(redis node)
  ((r % 2 == 0)) && order=(node redis)
  declare -A eval_rps pub_rate
  for server in "${order[@]}"; do
    port_var="${server}_port"
    rps="$(bench_redis_benchmark_cmd "${!port_var}" EVALSHA -c "$CLIENTS" -n "$N_EVAL" -P 1 -r 100000 \
      -- EVALSHA "${sha_of[$server]}" 1 'key:__rand_int__' | awk '{ print $2 }')"
    eval_rps[$server]="$rps"
    bench_log "round $r/$ROUNDS $server EVALSHA -P 1: $rps ops/s"
    echo "$r,evalsha,$server,$rps" >>"$raw"
  done
  for depth in "${depths[@]}"; do
    declare -A pub_rate=()
    for front in "${order[@]}"; do
      port="$redis_port"
      label=redis
      if [[ "$front" == node ]]; then port="$router_port" label=router; fi
      line="$(timeout --kill-after=5s "$BENCH_RUN_TIMEOUT" "$load_bin" --addr "127.0.0.1:$port" \
        --subscribers "$SUBSCRIBERS" --pipeline "$depth" --seconds "$PUB_SECONDS" --payload "$PAYLOAD")" \
        || bench_die "pubsub_load against $label failed"
      rate="$(tr ' ' '\n' <<<"$line" | awk -F= '$1 == "delivered_per_sec" { print $2 }')"
      complete="$(tr ' ' '\n' <<<"$line" | awk -F= '$1 == "complete" { print $2 }')"
      [[ "$complete" == true ]] || bench_log "warning: $label did not deliver every message: $line"
      pub_rate[$label]="$rate"
      bench_log "round $r/$ROUNDS $label PUBLISH to $SUBSCRIBERS subscribers, $depth in flight: $line"
      echo "$r,publish-$depth,$label,$rate" >>"$raw"
    done
    pub_redis[$depth]+="${pub_rate[redis]} " pub_router[$depth]+="${pub_rate[router]} "
    pub_ratios[$depth]+="$(bench_ratio "${pub_rate[router]}" "${pub_rate[redis]}") "
  done
  eval_redis+=("${eval_rps[redis]}") eval_node+=("${eval_rps[node]}")
  eval_ratios+=("$(bench_ratio "${eval_rps[node]}" "${eval_rps[redis]}")")
done

printf '\n%-42s %14s %14s %10s\n' row "redis (median)" "ringcache" ratio
printf '%-42s %14s %14s %10s\n' "EVALSHA 3 commands -P 1 (node, ops/s)" "$(bench_median "${eval_redis[@]}")" \
  "$(bench_median "${eval_node[@]}")" "$(bench_median "${eval_ratios[@]}")"
for depth in "${depths[@]}"; do
  read -r -a a_redis <<<"${pub_redis[$depth]}"
  read -r -a a_router <<<"${pub_router[$depth]}"
  read -r -a a_ratio <<<"${pub_ratios[$depth]}"
  printf '%-42s %14s %14s %10s\n' "PUBLISH to $SUBSCRIBERS subs, $depth in flight (router)" \
    "$(bench_median "${a_redis[@]}")" "$(bench_median "${a_router[@]}")" "$(bench_median "${a_ratio[@]}")"
done
printf '\nratio = median of %s per-round ratios (ringcache/redis); raw: %s\n' "$ROUNDS" "$raw"
