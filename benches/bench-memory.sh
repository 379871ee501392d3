#!/usr/bin/env bash
# Memory of one ringcache node against redis-server on 127.0.0.1, in two parts.
#
# memory: bytes per key. For each case a fresh server of each kind is started; its RSS (VmRSS of
#   /proc/<pid>/status) and INFO used_memory are read, the case's keys are loaded with
#   `redis-cli --pipe` (the load's seconds are timed), DBSIZE is checked, and RSS and used_memory
#   are read again: bytes per key = growth / keys. Cases:
#     strings  STR_KEYS strings, 16-byte keys, VALUE_SIZE-byte values (SET)
#     hashes   HASH_KEYS hashes of HASH_FIELDS fields (6-byte names, HASH_VALUE_SIZE-byte values;
#              one HSET each)
#     lists    LIST_KEYS lists of LIST_LEN LIST_VALUE_SIZE-byte elements (one RPUSH each)
#   A case whose command a server answers with an error (e.g. RPUSH before lists exist) is
#   reported as failed for that server; the other cases still run.
#
# eviction: hit ratio under eviction. maxmemory = EVICT_KEYS × (16 + VALUE_SIZE) / 4, a quarter
#   of the data; for each policy (allkeys-lru, allkeys-lfu) a fresh server of each kind gets
#   CONFIG SET maxmemory and maxmemory-policy, then `zipf_load` (tests/src/bin/zipf_load.rs) sends
#   over one pipelined connection a seeded Zipf(ZIPF) load over EVICT_KEYS keys: GET_PCT% GETs
#   (a miss is followed by a SET of the key), the rest SETs; EVICT_WARMUP draws unrecorded, then
#   EVICT_OPS draws counted (bounded by EVICT_SECONDS). Prints hit ratio = hits / (hits + misses)
#   for each server, node/redis, and RSS at the end against base + 1.1 × maxmemory, the bound the
#   node must keep. The base is the fresh server's RSS before the load plus the file-backed pages
#   (RssFile: the binary's code and read-only data) the load made resident, a fixed cost bounded
#   by the binary's size whatever maxmemory is; the rest of RSS is the heap.
#
# Environment:
#   PARTS="memory eviction"   parts to run
#   CASES="strings hashes lists"   memory cases to run
#   STR_KEYS=1000000 VALUE_SIZE=100
#   HASH_KEYS=1000000 HASH_FIELDS=5 HASH_VALUE_SIZE=16
#   LIST_KEYS=100000 LIST_LEN=100 LIST_VALUE_SIZE=16
#   LOAD_TIMEOUT=600          seconds one `redis-cli --pipe` load may take
#   SETTLE=2                  seconds to wait before reading RSS (after start and after a load)
#   POLICIES="allkeys-lru allkeys-lfu"
#   EVICT_KEYS=1000000 EVICT_OPS=2000000 EVICT_WARMUP=1000000 EVICT_SECONDS=300
#   ZIPF=0.99 GET_PCT=90 EVICT_PIPELINE=32 SEED=1
#   NODE_CMD=...              command for the node side instead of the release build of
#                             `ringcache node` (no build then); `--bind 127.0.0.1 --port P` is
#                             appended. NODE_CMD='redis-server --save "" --appendonly no' puts
#                             redis on both sides, to check the machinery.
#   ZIPF_LOAD=...             a prebuilt zipf_load binary (else built: cargo build --release -p
#                             tests --bin zipf_load)
#   BENCH_READY_TIMEOUT=30, BUILD_TIMEOUT=3600   bounds in seconds
#
# Raw figures go to target/bench/bench-memory-<time>.csv and bench-memory-<time>-eviction.csv.
set -euo pipefail

# shellcheck source=benches/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

: "${PARTS:=memory eviction}" "${CASES:=strings hashes lists}"
: "${STR_KEYS:=1000000}" "${VALUE_SIZE:=100}"
: "${HASH_KEYS:=1000000}" "${HASH_FIELDS:=5}" "${HASH_VALUE_SIZE:=16}"
: "${LIST_KEYS:=100000}" "${LIST_LEN:=100}" "${LIST_VALUE_SIZE:=16}"
: "${LOAD_TIMEOUT:=600}" "${SETTLE:=2}"
: "${POLICIES:=allkeys-lru allkeys-lfu}"
: "${EVICT_KEYS:=1000000}" "${EVICT_OPS:=2000000}" "${EVICT_WARMUP:=1000000}" "${EVICT_SECONDS:=300}"
: "${ZIPF:=0.99}" "${GET_PCT:=90}" "${EVICT_PIPELINE:=32}" "${SEED:=1}" "${BUILD_TIMEOUT:=3600}"
bench_require_positive_int STR_KEYS VALUE_SIZE HASH_KEYS HASH_FIELDS HASH_VALUE_SIZE LIST_KEYS \
  LIST_LEN LIST_VALUE_SIZE LOAD_TIMEOUT EVICT_KEYS EVICT_OPS EVICT_SECONDS EVICT_PIPELINE SEED \
  BUILD_TIMEOUT
[[ "$SETTLE" =~ ^[0-9]+$ && "$EVICT_WARMUP" =~ ^[0-9]+$ ]] || bench_die "SETTLE and EVICT_WARMUP must be integers"
if ! [[ "$GET_PCT" =~ ^[0-9]+$ ]] || ((GET_PCT > 100)); then bench_die "GET_PCT must be 0..100"; fi
[[ "$ZIPF" =~ ^[0-9]+(\.[0-9]+)?$ ]] || bench_die "ZIPF must be a non-negative number"

want_part() { [[ " $PARTS " == *" $1 "* ]]; }
want_part memory || want_part eviction || bench_die "PARTS names neither memory nor eviction: '$PARTS'"
for case in $CASES; do
  [[ "$case" =~ ^(strings|hashes|lists)$ ]] || bench_die "unknown case '$case' in CASES"
done
for policy in $POLICIES; do
  [[ "$policy" =~ ^(allkeys|volatile)-(lru|lfu|random)$ ]] || bench_die "unexpected policy '$policy' in POLICIES"
done

root="$(bench_repo_root)"
cd "$root"

bench_install_deps
bench_require redis-server redis-cli setsid timeout awk sort date

node_cmd=()
bench_node_cmd node_cmd
if want_part eviction; then
  if [[ -n "${ZIPF_LOAD:-}" ]]; then
    zipf_load="$ZIPF_LOAD"
  else
    zipf_load="$(bench_cargo_bin tests zipf_load)"
  fi
  [[ -x "$zipf_load" ]] || bench_die "no zipf_load binary at $zipf_load"
fi

out_dir="$root/target/bench"
mkdir -p "$out_dir"
stamp="$(date +%Y%m%d-%H%M%S)"
raw="$out_dir/bench-memory-$stamp.csv"
raw_evict="$out_dir/bench-memory-$stamp-eviction.csv"
pipe_file="$out_dir/bench-memory-$stamp.pipe"

bench_cleanup_on_exit
trap 'bench_stop_all; rm -f "$pipe_file"' EXIT

# start_fresh SERVER LOG: starts a fresh redis-server or node on a free port; sets port and pid.
start_fresh() {
  local server="$1" log="$2"
  port=""
  bench_free_port port
  if [[ "$server" == redis ]]; then
    bench_start_server redis "$port" "$log" \
      redis-server --save "" --appendonly no --bind 127.0.0.1 --port "$port"
  else
    bench_start_server node "$port" "$log" "${node_cmd[@]}" --bind 127.0.0.1 --port "$port"
  fi
  pid="$BENCH_LAST_PID"
  # setsid execs the server in place: the pid must be the server's own, or RSS would be setsid's.
  [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" != setsid ]] || bench_die "pid $pid is setsid, not the server"
}

stop_server() {
  bench_stop "$pid"
  local keep=() p
  for p in "${BENCH_PIDS[@]}"; do [[ "$p" == "$pid" ]] || keep+=("$p"); done
  BENCH_PIDS=("${keep[@]}")
}

# gen_pipe CASE FILE: writes the case's commands as RESP to FILE (mawk/awk, not a bash loop).
gen_pipe() {
  local case="$1" file="$2"
  case "$case" in
    strings)
      awk -v n="$STR_KEYS" -v vs="$VALUE_SIZE" 'BEGIN {
        pad = sprintf("%*s", vs, ""); gsub(/ /, "x", pad)
        for (i = 0; i < n; i++) {
          k = sprintf("key:%012d", i); v = substr(sprintf("v%012d%s", i, pad), 1, vs)
          printf "*3\r\n$3\r\nSET\r\n$16\r\n%s\r\n$%d\r\n%s\r\n", k, vs, v
        } }' >"$file"
      ;;
    hashes)
      awk -v n="$HASH_KEYS" -v nf="$HASH_FIELDS" -v vs="$HASH_VALUE_SIZE" 'BEGIN {
        pad = sprintf("%*s", vs, ""); gsub(/ /, "x", pad)
        for (i = 0; i < n; i++) {
          printf "*%d\r\n$4\r\nHSET\r\n$16\r\nhsh:%012d\r\n", 2 + 2 * nf, i
          for (f = 1; f <= nf; f++) {
            name = sprintf("field%d", f); v = substr(sprintf("v%07d:%d%s", i, f, pad), 1, vs)
            printf "$%d\r\n%s\r\n$%d\r\n%s\r\n", length(name), name, vs, v
          }
        } }' >"$file"
      ;;
    lists)
      awk -v n="$LIST_KEYS" -v len="$LIST_LEN" -v vs="$LIST_VALUE_SIZE" 'BEGIN {
        pad = sprintf("%*s", vs, ""); gsub(/ /, "x", pad)
        for (i = 0; i < n; i++) {
          printf "*%d\r\n$5\r\nRPUSH\r\n$16\r\nlst:%012d\r\n", 2 + len, i
          for (j = 0; j < len; j++) {
            e = substr(sprintf("e%07d:%03d%s", i, j, pad), 1, vs)
            printf "$%d\r\n%s\r\n", vs, e
          }
        } }' >"$file"
      ;;
  esac
}

declare -A keys_of=([strings]="$STR_KEYS" [hashes]="$HASH_KEYS" [lists]="$LIST_KEYS")
declare -A probe_of=(
  [strings]="SET __bench_probe x"
  [hashes]="HSET __bench_probe f v"
  [lists]="RPUSH __bench_probe x"
)
declare -A label_of=(
  [strings]="strings $STR_KEYS × ${VALUE_SIZE}B"
  [hashes]="hashes $HASH_KEYS × $HASH_FIELDS fields"
  [lists]="lists $LIST_KEYS × $LIST_LEN elems"
)

bench_log "redis: $(redis-server --version | cut -d' ' -f3); node: ${node_cmd[*]@Q}; cores=$(nproc); load average: $(cut -d' ' -f1-3 /proc/loadavg)"

# ---- part 1: bytes per key -------------------------------------------------------------------
declare -A res # "$case|$server|field" -> value; field: status, error, rss_b, used_b, secs
if want_part memory; then
  echo "case,server,keys,status,rss_before_kb,rss_after_kb,used_before,used_after,load_seconds,error" >"$raw"
  for case in $CASES; do
    keys="${keys_of[$case]}"
    bench_log "$case: generating $keys keys' commands"
    gen_pipe "$case" "$pipe_file"
    bench_log "$case: $(($(stat -c %s "$pipe_file") / 1048576)) MiB of commands"
    for server in redis node; do
      log="$out_dir/bench-memory-$stamp-$case-$server.log"
      start_fresh "$server" "$log"
      status=ok err="" rss0="" rss1="" used0="" used1="" secs=""
      read -ra probe <<<"${probe_of[$case]}"
      if ! err="$(bench_cmd_error "$port" "${probe[@]}")"; then
        status=failed err="${probe[0]} answered: $err"
      else
        bench_cli "$port" DEL __bench_probe >/dev/null
        sleep "$SETTLE"
        rss0="$(bench_rss_kb "$pid")" used0="$(bench_info_field "$port" used_memory)"
        pipe_log="$out_dir/bench-memory-$stamp-$case-$server-pipe.log"
        t0="$(date +%s.%N)"
        rc=0
        timeout --kill-after=5s "$LOAD_TIMEOUT" redis-cli -h 127.0.0.1 -p "$port" --pipe \
          <"$pipe_file" >"$pipe_log" 2>&1 || rc=$?
        t1="$(date +%s.%N)"
        secs="$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')"
        errors="$(awk '/^errors: / { gsub(",", "", $2); print $2 }' "$pipe_log" | tail -n 1)"
        if ((rc == 124)); then
          status=failed err="redis-cli --pipe timed out after ${LOAD_TIMEOUT}s"
        elif [[ "$errors" != 0 ]]; then
          first="$(grep -v -e '^All data transferred' -e '^Last reply' -e '^errors: ' "$pipe_log" | sed -n 1p || true)"
          status=failed err="redis-cli --pipe: ${errors:-?} errors (exit $rc): ${first:0:200}"
        else
          dbsize="$(bench_cli "$port" DBSIZE | awk '{ print $NF }' || true)"
          if [[ "$dbsize" != "$keys" ]]; then
            status=failed err="DBSIZE is $dbsize after loading $keys keys"
          fi
        fi
        sleep "$SETTLE"
        bench_alive "$pid" || { status=failed err="the server exited during the load (log: $log)"; }
        if [[ "$status" == ok ]]; then
          rss1="$(bench_rss_kb "$pid")" used1="$(bench_info_field "$port" used_memory)"
        fi
      fi
      stop_server
      res["$case|$server|status"]="$status"
      res["$case|$server|error"]="$err"
      res["$case|$server|secs"]="$secs"
      if [[ "$status" == ok ]]; then
        res["$case|$server|rss_b"]="$(awk -v a="$rss0" -v b="$rss1" -v n="$keys" 'BEGIN { printf "%.1f", (b - a) * 1024 / n }')"
        res["$case|$server|used_b"]="$(awk -v a="$used0" -v b="$used1" -v n="$keys" 'BEGIN { printf "%.1f", (b - a) / n }')"
        bench_log "$case $server: RSS ${rss0} -> ${rss1} KiB (${res["$case|$server|rss_b"]} B/key), used_memory ${used0} -> ${used1} (${res["$case|$server|used_b"]} B/key), load ${secs}s"
      else
        bench_log "$case $server: FAILED: $err"
      fi
      echo "$case,$server,$keys,$status,$rss0,$rss1,$used0,$used1,$secs,\"${err//\"/\'}\"" >>"$raw"
    done
    rm -f "$pipe_file"
  done
fi

# ---- part 2: hit ratio under eviction --------------------------------------------------------
declare -A ev # "$policy|$server|field" -> value
declare -A zl # a zipf_load result line's fields
zl_fields=(draws gets hits misses sets fills errors seconds ops_per_sec hit_ratio complete)
maxmemory=$((EVICT_KEYS * (16 + VALUE_SIZE) / 4))
if want_part eviction; then
  echo "policy,server,maxmemory,status,draws,gets,hits,misses,sets,fills,errors,seconds,ops_per_sec,hit_ratio,complete,rss_before_kb,rss_after_kb,rss_file_before_kb,rss_file_after_kb,used_memory,evicted_keys,dbsize,error" >"$raw_evict"
  for policy in $POLICIES; do
    for server in redis node; do
      log="$out_dir/bench-memory-$stamp-$policy-$server.log"
      start_fresh "$server" "$log"
      status=ok err="" line="" rss0="" rss1="" file0="" file1="" used="" evicted="" dbsize=""
      for setting in "maxmemory $maxmemory" "maxmemory-policy $policy"; do
        read -ra kv <<<"$setting"
        if ! err="$(bench_cmd_error "$port" CONFIG SET "${kv[@]}")"; then
          status=failed err="CONFIG SET ${kv[*]}: $err"
          break
        fi
        got="$(timeout 10 redis-cli -h 127.0.0.1 -p "$port" CONFIG GET "${kv[0]}" | sed -n 2p || true)"
        if [[ "$got" != "${kv[1]}" ]]; then
          status=failed err="CONFIG GET ${kv[0]} says '$got' after CONFIG SET ${kv[*]}"
          break
        fi
      done
      if [[ "$status" == ok ]]; then
        sleep "$SETTLE"
        rss0="$(bench_rss_kb "$pid")" file0="$(bench_status_kb "$pid" RssFile)"
        bench_log "$policy $server: zipf_load ${EVICT_WARMUP} warm-up + ${EVICT_OPS} draws over $EVICT_KEYS keys, maxmemory $maxmemory"
        rc=0
        line="$(timeout --kill-after=5s $((EVICT_SECONDS + 60)) "$zipf_load" --addr "127.0.0.1:$port" \
          --keys "$EVICT_KEYS" --ops "$EVICT_OPS" --warmup-ops "$EVICT_WARMUP" --seconds "$EVICT_SECONDS" \
          --get-pct "$GET_PCT" --zipf "$ZIPF" --pipeline "$EVICT_PIPELINE" --value-size "$VALUE_SIZE" \
          --seed "$SEED" 2>"$log.zipf")" || rc=$?
        if ((rc != 0)) || [[ "$line" != draws=* ]]; then
          status=failed err="zipf_load exit $rc: $(tail -n 1 "$log.zipf" | cut -c 1-200)"
        else
          # The line's name=value fields, each checked to be there.
          zl=()
          for kv in $line; do zl["${kv%%=*}"]="${kv#*=}"; done
          missing=""
          for field in "${zl_fields[@]}"; do
            [[ -n "${zl[$field]:-}" ]] || missing+=" $field"
          done
          if [[ -n "$missing" ]]; then
            status=failed err="zipf_load printed no$missing in: ${line:0:200}"
          elif ((zl[errors] > 0)); then
            status=failed err="${zl[errors]} error replies: $(tail -n 1 "$log.zipf" | cut -c 1-200)"
          elif [[ "${zl[complete]}" != true ]]; then
            status=partial err="stopped by EVICT_SECONDS=$EVICT_SECONDS after ${zl[draws]} of $EVICT_OPS draws"
          fi
        fi
        sleep "$SETTLE"
        if bench_alive "$pid"; then
          rss1="$(bench_rss_kb "$pid")" file1="$(bench_status_kb "$pid" RssFile)"
          used="$(bench_info_field "$port" used_memory)"
          evicted="$(bench_info_field "$port" evicted_keys)"
          dbsize="$(bench_cli "$port" DBSIZE | awk '{ print $NF }' || true)"
        else
          status=failed err="the server exited during the load (log: $log)"
        fi
      fi
      stop_server
      ev["$policy|$server|status"]="$status"
      ev["$policy|$server|error"]="$err"
      if [[ "$status" != failed ]]; then
        ev["$policy|$server|hit_ratio"]="${zl[hit_ratio]}"
        ev["$policy|$server|ops"]="${zl[ops_per_sec]}"
        ev["$policy|$server|rss0"]="$rss0"
        ev["$policy|$server|rss1"]="$rss1"
        ev["$policy|$server|code"]="$((file1 - file0))"
        ev["$policy|$server|used"]="$used"
        ev["$policy|$server|evicted"]="$evicted"
        ev["$policy|$server|dbsize"]="$dbsize"
        bench_log "$policy $server: hit ratio ${zl[hit_ratio]} (${zl[hits]} hits, ${zl[misses]} misses), ${zl[ops_per_sec]} cmds/s, RSS ${rss0} -> ${rss1} KiB (file-backed ${file0} -> ${file1}), used_memory $used, evicted $evicted, dbsize $dbsize"
        echo "$policy,$server,$maxmemory,$status,${zl[draws]},${zl[gets]},${zl[hits]},${zl[misses]},${zl[sets]},${zl[fills]},${zl[errors]},${zl[seconds]},${zl[ops_per_sec]},${zl[hit_ratio]},${zl[complete]},$rss0,$rss1,$file0,$file1,$used,$evicted,$dbsize,\"${err//\"/\'}\"" >>"$raw_evict"
      else
        bench_log "$policy $server: FAILED: $err"
        echo "$policy,$server,$maxmemory,$status,,,,,,,,,,,,$rss0,$rss1,$file0,$file1,$used,$evicted,$dbsize,\"${err//\"/\'}\"" >>"$raw_evict"
      fi
    done
  done
fi

# ---- results ---------------------------------------------------------------------------------
failures=()
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
if want_part memory; then
  echo
  echo "bytes per key (growth / keys); load seconds of redis-cli --pipe"
  printf '%-28s %12s %12s %10s %12s %12s %9s %9s\n' "case" "redis RSS" "node RSS" "node/redis" \
    "redis used" "node used" "redis s" "node s"
  printf '%-28s %12s %12s %10s %12s %12s %9s %9s\n' "---" "B/key" "B/key" "(RSS)" \
    "B/key" "B/key" "load" "load"
  for case in $CASES; do
    cells=()
    for server in redis node; do
      if [[ "${res["$case|$server|status"]}" == ok ]]; then
        cells+=("${res["$case|$server|rss_b"]}" "${res["$case|$server|used_b"]}" "${res["$case|$server|secs"]}")
      else
        cells+=(failed failed failed)
        failures+=("$case on $server: ${res["$case|$server|error"]}")
      fi
    done
    ratio=-
    if [[ "${cells[0]}" != failed && "${cells[3]}" != failed ]]; then
      ratio="$(bench_ratio "${cells[3]}" "${cells[0]}")"
    fi
    printf '%-28s %12s %12s %10s %12s %12s %9s %9s\n' "${label_of[$case]}" "${cells[0]}" "${cells[3]}" \
      "$ratio" "${cells[1]}" "${cells[4]}" "${cells[2]}" "${cells[5]}"
  done
fi
if want_part eviction; then
  echo
  echo "hit ratio under eviction: maxmemory $maxmemory B ($(mib $((maxmemory / 1024))) MiB) = $EVICT_KEYS keys × $((16 + VALUE_SIZE)) B / 4;" \
    "Zipf($ZIPF), $GET_PCT% GET (miss -> SET), $EVICT_OPS draws after $EVICT_WARMUP warm-up"
  printf '%-13s %10s %10s %10s %10s %10s %11s %11s %11s %11s %11s %15s %6s\n' "policy" "redis hit" \
    "node hit" "node/redis" "redis keys" "node keys" "redis cmd/s" "node cmd/s" "redis RSS" \
    "node RSS" "node code" "node RSS bound" "within"
  printf '%-13s %10s %10s %10s %10s %10s %11s %11s %11s %11s %11s %15s %6s\n' "---" "ratio" "ratio" "" \
    "(end)" "(end)" "" "" "MiB (end)" "MiB (end)" "MiB (+)" "MiB" "bound"
  for policy in $POLICIES; do
    cells=()
    for server in redis node; do
      if [[ "${ev["$policy|$server|status"]}" != failed ]]; then
        cells+=("${ev["$policy|$server|hit_ratio"]}" "${ev["$policy|$server|ops"]}" "$(mib "${ev["$policy|$server|rss1"]}")"
          "${ev["$policy|$server|dbsize"]}")
        [[ "${ev["$policy|$server|status"]}" == ok ]] \
          || failures+=("$policy on $server: ${ev["$policy|$server|error"]}")
      else
        cells+=(failed failed failed failed)
        failures+=("$policy on $server: ${ev["$policy|$server|error"]}")
      fi
    done
    ratio=- bound=- within=- code=-
    if [[ "${cells[0]}" != failed && "${cells[4]}" != failed ]]; then
      ratio="$(bench_ratio "${cells[4]}" "${cells[0]}")"
    fi
    if [[ "${cells[4]}" != failed ]]; then
      # base (the fresh node's RSS and the code pages the load touched) + 1.1 × maxmemory
      code="$(mib "${ev["$policy|node|code"]}")"
      bound_kb="$(awk -v b="${ev["$policy|node|rss0"]}" -v c="${ev["$policy|node|code"]}" -v m="$maxmemory" \
        'BEGIN { printf "%d", b + c + 1.1 * m / 1024 }')"
      bound="$(mib "$bound_kb")"
      if ((${ev["$policy|node|rss1"]} <= bound_kb)); then within=yes; else within=NO; fi
    fi
    printf '%-13s %10s %10s %10s %10s %10s %11s %11s %11s %11s %11s %15s %6s\n' "$policy" "${cells[0]}" \
      "${cells[4]}" "$ratio" "${cells[3]}" "${cells[7]}" "${cells[1]}" "${cells[5]}" "${cells[2]}" \
      "${cells[6]}" "$code" "$bound" "$within"
  done
fi

echo
want_part memory && echo "raw: $raw"
want_part eviction && echo "raw: $raw_evict"
if ((${#failures[@]} > 0)); then
  echo "failed or incomplete:"
  printf '  %s\n' "${failures[@]}"
fi
