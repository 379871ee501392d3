#!/usr/bin/env bash
# Shared helpers for the side-by-side load benches (bench-node.sh; later router vs nutcracker and
# L4 forwarder vs haproxy). Source it from a script that has `set -euo pipefail`:
#
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#   bench_cleanup_on_exit
#   bench_free_port port
#   bench_start_server redis "$port" "$log" redis-server --save "" --appendonly no --bind 127.0.0.1 --port "$port"
#   bench_redis_benchmark "$port" set,get -c 50 -n 100000 -P 1   # prints "SET 123.4" lines
#
# All traffic goes to 127.0.0.1. Every wait is bounded; servers are killed on exit.

# Numbers are parsed and printed with a '.' decimal point whatever the user's locale.
export LC_ALL=C

# Seconds one redis-benchmark run may take before it is killed and the bench fails.
: "${BENCH_RUN_TIMEOUT:=300}"
# Seconds a started server gets to answer PING.
: "${BENCH_READY_TIMEOUT:=30}"

BENCH_PIDS=()
BENCH_PORTS=()

bench_log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

bench_die() {
  bench_log "error: $*"
  exit 1
}

# Repository root (the directory above benches/).
bench_repo_root() { (cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd); }

bench_install_deps() { "$(bench_repo_root)/scripts/install-deps"; }

# Fails naming the first command that is not on PATH (or in /usr/sbin, where haproxy lives).
bench_require() {
  local cmd
  for cmd in "$@"; do
    command -v "$cmd" >/dev/null 2>&1 || [[ -x "/usr/sbin/$cmd" ]] || bench_die "missing command: $cmd"
  done
}

# Checks that each named variable holds a positive integer.
bench_require_positive_int() {
  local name
  for name in "$@"; do
    [[ "${!name}" =~ ^[1-9][0-9]*$ ]] || bench_die "$name must be a positive integer, got '${!name}'"
  done
}

# bench_free_port VAR: stores in VAR a 127.0.0.1 port nobody listens on, below the kernel's
# ephemeral range so client sockets cannot take it, and not handed out before by this script.
bench_free_port() {
  local -n _port_out="$1"
  local low=20000 high=32000 ephemeral_low candidate tries
  if read -r ephemeral_low _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null \
    && ((ephemeral_low > low + 1000 && ephemeral_low <= 65535)); then
    high=$((ephemeral_low - 1))
  fi
  for ((tries = 0; tries < 200; tries++)); do
    candidate=$((low + RANDOM % (high - low)))
    [[ " ${BENCH_PORTS[*]} " == *" $candidate "* ]] && continue
    # A refused connect means the port is free; loopback refuses at once, timeout is a backstop.
    if ! timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$candidate" 2>/dev/null; then
      BENCH_PORTS+=("$candidate")
      _port_out="$candidate"
      return 0
    fi
  done
  bench_die "no free port found in $low-$high"
}

# bench_start LOG CMD...: starts CMD in its own session (so its whole process group can be
# killed), output to LOG; the pid goes to BENCH_LAST_PID and into the cleanup list.
bench_start() {
  local log="$1"
  shift
  setsid "$@" >"$log" 2>&1 </dev/null &
  BENCH_LAST_PID=$!
  BENCH_PIDS+=("$BENCH_LAST_PID")
}

bench_alive() { kill -0 "$1" 2>/dev/null; }

# bench_wait_ping PORT [TIMEOUT_SECS] [PID]: waits until 127.0.0.1:PORT answers PONG; fails early
# if PID is given and has exited.
bench_wait_ping() {
  local port="$1" timeout_secs="${2:-$BENCH_READY_TIMEOUT}" pid="${3:-}"
  local deadline=$((SECONDS + timeout_secs))
  while ((SECONDS <= deadline)); do
    if [[ "$(timeout 2 redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null)" == PONG ]]; then
      return 0
    fi
    if [[ -n "$pid" ]] && ! bench_alive "$pid"; then
      return 1
    fi
    sleep 0.1
  done
  return 1
}

# bench_start_server NAME PORT LOG CMD...: starts CMD and waits for PONG on PORT; on failure shows
# the end of LOG and exits. Sets BENCH_LAST_PID.
bench_start_server() {
  local name="$1" port="$2" log="$3"
  shift 3
  bench_log "starting $name on 127.0.0.1:$port: ${*@Q}"
  bench_start "$log" "$@"
  if ! bench_wait_ping "$port" "$BENCH_READY_TIMEOUT" "$BENCH_LAST_PID"; then
    tail -n 20 "$log" >&2 || true
    bench_die "$name did not answer PING on 127.0.0.1:$port within ${BENCH_READY_TIMEOUT}s (log: $log)"
  fi
}

# bench_stop PID [GRACE_SECS]: SIGTERM to the process group, SIGKILL after the grace period.
bench_stop() {
  local pid="$1" grace="${2:-5}" i
  bench_alive "$pid" || { wait "$pid" 2>/dev/null || true; return 0; }
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < grace * 10; i++)); do
    bench_alive "$pid" || break
    sleep 0.1
  done
  if bench_alive "$pid"; then
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

bench_stop_all() {
  local i
  for ((i = ${#BENCH_PIDS[@]} - 1; i >= 0; i--)); do
    bench_stop "${BENCH_PIDS[i]}"
  done
  BENCH_PIDS=()
}

# Kills every server started through bench_start when the script exits, however it exits.
bench_cleanup_on_exit() {
  trap 'bench_stop_all' EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

# bench_median N...: prints the median (mean of the middle two for an even count).
bench_median() {
  (($# > 0)) || bench_die "bench_median: no values"
  printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 }
    END { if (NR % 2) printf "%.2f\n", v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# bench_ratio A B: prints A/B with three decimals.
bench_ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "nan"; else printf "%.3f\n", a / b }'; }

# bench_redis_benchmark PORT TESTS [ARGS...]: runs redis-benchmark (CSV output) against
# 127.0.0.1:PORT for the comma-separated TESTS (e.g. set,get) with extra ARGS (-c, -n, -P, -d,
# -r ...), bounded by BENCH_RUN_TIMEOUT; prints one "TEST RPS" line per test. Fails if the run
# fails, times out, sees a server error, or misses a test.
bench_redis_benchmark() {
  local port="$1" tests="$2"
  shift 2
  local out rc=0
  out="$(timeout --kill-after=5s "$BENCH_RUN_TIMEOUT" \
    redis-benchmark -h 127.0.0.1 -p "$port" --csv -t "$tests" "$@" 2>&1)" || rc=$?
  if ((rc != 0)); then
    printf '%s\n' "$out" | tail -n 5 >&2
    if ((rc == 124)); then
      bench_die "redis-benchmark -p $port -t $tests $* timed out after ${BENCH_RUN_TIMEOUT}s"
    fi
    bench_die "redis-benchmark -p $port -t $tests $* failed (exit $rc)"
  fi
  if grep -qi 'error' <<<"$out"; then
    grep -i 'error' <<<"$out" | head -n 3 >&2
    bench_die "redis-benchmark -p $port -t $tests $*: the server answered errors"
  fi
  local test name rps
  for test in ${tests//,/ }; do
    name="${test^^}"
    # CSV rows look like: "SET","84033.61","0.332",...; LRANGE rows are named
    # "LRANGE_100 (first 100 elements)" (and the LPUSH that fills their list "LPUSH (needed ...)").
    rps="$(awk -F'"' -v t="$name" '$2 == t || index($2, t " (first ") == 1 { print $4; exit }' <<<"$out")"
    if ! [[ "$rps" =~ ^[0-9]+(\.[0-9]+)?$ ]] || ! awk -v r="$rps" 'BEGIN { exit !(r > 0) }'; then
      bench_die "redis-benchmark -p $port: no requests/s for $name in: $out"
    fi
    printf '%s %s\n' "$name" "$rps"
  done
}

# The cargo target directory (CARGO_TARGET_DIR when set, else target/ at the repository root).
bench_target_dir() {
  local dir="${CARGO_TARGET_DIR:-$(bench_repo_root)/target}"
  [[ "$dir" == /* ]] || dir="$PWD/$dir"
  printf '%s\n' "$dir"
}

# bench_cargo_bin PACKAGE BIN: builds BIN of PACKAGE in release mode (bounded by BUILD_TIMEOUT,
# default 3600 s) and prints the binary's path.
bench_cargo_bin() {
  local package="$1" bin="$2"
  bench_log "building: cargo build --release -p $package --bin $bin"
  (cd "$(bench_repo_root)" && timeout "${BUILD_TIMEOUT:-3600}" cargo build --release -p "$package" --bin "$bin" >&2) \
    || bench_die "cargo build --release -p $package --bin $bin failed or took over ${BUILD_TIMEOUT:-3600}s"
  printf '%s\n' "$(bench_target_dir)/release/$bin"
}

# bench_node_cmd VAR: stores in the array VAR the command that runs one ringcache node (without
# --bind/--port): NODE_CMD split with shell quoting when set (no build then), else the release
# build of ringcache, built first.
bench_node_cmd() {
  local -n _cmd_out="$1"
  if [[ -n "${NODE_CMD:-}" ]]; then
    eval "_cmd_out=($NODE_CMD)"
    bench_log "node side overridden by NODE_CMD: ${_cmd_out[*]} (not building ringcache)"
  else
    local bin
    bin="$(bench_cargo_bin ringcache ringcache)"
    _cmd_out=("$bin" node)
  fi
}

# bench_rss_kb PID: the resident set size of process PID in KiB (VmRSS in /proc/PID/status).
bench_rss_kb() { bench_status_kb "$1" VmRSS; }

# bench_status_kb PID FIELD: a kB field of /proc/PID/status (VmRSS, RssAnon, RssFile...).
bench_status_kb() {
  local v
  v="$(awk -v f="$2:" '$1 == f { print $2; exit }' "/proc/$1/status" 2>/dev/null)" || true
  [[ "$v" =~ ^[0-9]+$ ]] || bench_die "no $2 for pid $1 (has it exited?)"
  printf '%s\n' "$v"
}

# bench_info_field PORT FIELD: the value of FIELD in INFO of 127.0.0.1:PORT (empty if absent).
bench_info_field() {
  timeout 10 redis-cli -h 127.0.0.1 -p "$1" info 2>/dev/null | tr -d '\r' \
    | awk -F: -v f="$2" '$1 == f && !found { print $2; found = 1 }' || true
}

# bench_cli PORT ARGS...: one redis-cli command to 127.0.0.1:PORT, bounded by 10 s; replies are
# printed as redis-cli prints them to a terminal ("(error) ERR ...", "(integer) 1", ...).
bench_cli() {
  local port="$1"
  shift
  timeout 10 redis-cli --no-raw -h 127.0.0.1 -p "$port" "$@" 2>&1
}

# bench_cmd_error PORT CMD...: runs CMD on 127.0.0.1:PORT; returns 0 if it answered without an
# error, else prints the error (e.g. "ERR unknown command 'RPUSH', ...") and returns 1.
bench_cmd_error() {
  local port="$1" out rc=0
  shift
  out="$(bench_cli "$port" "$@")" || rc=$?
  if ((rc != 0)); then
    printf '%s\n' "redis-cli failed (exit $rc): ${out:0:200}"
    return 1
  fi
  if [[ "$out" == "(error) "* ]]; then
    out="${out#(error) }"
    out="${out%%$'\n'*}"
    out="${out%"${out##*[![:space:]]}"}"
    printf '%s\n' "${out:0:200}"
    return 1
  fi
  return 0
}

# bench_redis_benchmark_cmd PORT LABEL [ARGS...] -- CMD...: runs redis-benchmark (CSV output)
# against 127.0.0.1:PORT for one custom command CMD... (e.g. MGET k1 k2 ...) with extra ARGS (-c,
# -n, -P ...), bounded by BENCH_RUN_TIMEOUT; prints "LABEL RPS". Fails like bench_redis_benchmark.
bench_redis_benchmark_cmd() {
  local port="$1" label="$2"
  shift 2
  local args=()
  while (($# > 0)) && [[ "$1" != -- ]]; do
    args+=("$1")
    shift
  done
  (($# > 1)) || bench_die "bench_redis_benchmark_cmd: no command after --"
  shift
  local out rc=0
  out="$(timeout --kill-after=5s "$BENCH_RUN_TIMEOUT" \
    redis-benchmark -h 127.0.0.1 -p "$port" --csv "${args[@]}" "$@" 2>&1)" || rc=$?
  if ((rc != 0)); then
    printf '%s\n' "$out" | tail -n 5 >&2
    if ((rc == 124)); then
      bench_die "redis-benchmark -p $port ${args[*]} $1 ... timed out after ${BENCH_RUN_TIMEOUT}s"
    fi
    bench_die "redis-benchmark -p $port ${args[*]} $1 ... failed (exit $rc)"
  fi
  if grep -qi 'error' <<<"$out"; then
    grep -i 'error' <<<"$out" | head -n 3 >&2
    bench_die "redis-benchmark -p $port ${args[*]} $1 ...: the server answered errors"
  fi
  local rps
  # The first CSV row after the header; its test name is the command line itself.
  rps="$(awk -F'"' '$2 != "test" && NF > 4 { print $4; exit }' <<<"$out")"
  if ! [[ "$rps" =~ ^[0-9]+(\.[0-9]+)?$ ]] || ! awk -v r="$rps" 'BEGIN { exit !(r > 0) }'; then
    bench_die "redis-benchmark -p $port $1 ...: no requests/s in: $(head -c 500 <<<"$out")"
  fi
  printf '%s %s\n' "$label" "$rps"
}

# bench_haproxy_head: the global and defaults sections of the benches' haproxy configs (TCP).
bench_haproxy_head() {
  cat <<EOF
global
  maxconn 4096
defaults
  mode tcp
  timeout connect 1s
  timeout client 60s
  timeout server 60s
EOF
}

# bench_nutcracker_conf FILE LISTEN_PORT SERVER_CONNECTIONS HASH BACKEND_PORT...: writes a
# nutcracker (twemproxy) pool config on 127.0.0.1: ketama over HASH (murmur spreads keys evenly
# over 127.0.0.1:PORT servers; fnv1a_64 measured 190/100/9/101 of 400 keys on 4) with {} hash
# tags, redis protocol, preconnected, no host ejection, 2 s server timeout (the router's default).
bench_nutcracker_conf() {
  local file="$1" listen="$2" conns="$3" hash="$4"
  shift 4
  (($# > 0)) || bench_die "bench_nutcracker_conf: no backends"
  {
    echo "bench:"
    echo "  listen: 127.0.0.1:$listen"
    echo "  hash: $hash"
    echo "  hash_tag: \"{}\""
    echo "  distribution: ketama"
    echo "  redis: true"
    echo "  preconnect: true"
    echo "  auto_eject_hosts: false"
    echo "  server_connections: $conns"
    echo "  timeout: 2000"
    echo "  servers:"
    local port
    for port in "$@"; do
      echo "   - 127.0.0.1:$port:1"
    done
  } >"$file"
}

# bench_start_nutcracker NAME PORT CONF LOG: checks CONF with `nutcracker -t`, starts nutcracker
# with its stats endpoint on a free 127.0.0.1 port (not the shared default 22222) and waits for
# PONG on PORT. Sets BENCH_LAST_PID.
bench_start_nutcracker() {
  local name="$1" port="$2" conf="$3" log="$4" bin stats_port=""
  bin="$(command -v nutcracker || echo /usr/sbin/nutcracker)"
  "$bin" -t -c "$conf" >"$log" 2>&1 || {
    cat "$log" >&2
    bench_die "$name: nutcracker rejects $conf"
  }
  bench_free_port stats_port
  bench_start_server "$name" "$port" "$log" "$bin" -c "$conf" -s "$stats_port" -a 127.0.0.1
}
