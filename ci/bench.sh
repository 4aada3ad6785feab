#!/usr/bin/env bash
# Side-by-side benchmark of meta, etcd and Oxia on this machine. meta and
# etcd are driven by the same load generator (bin/metabench; --target etcd
# drives etcd through etcd's own Go client); Oxia by oxiabench, the
# closed-loop tool of ../shared/bench/oxia (Oxia's own Go client, with its
# client batching), whose report this script turns into metabench's JSON.
# A maintainer runs it by hand; it is not part of make test.
#
#   ci/bench.sh
#
# What it does, in order:
#   1. installs Debian's etcd-server and etcd-client if they are missing;
#   2. builds bin/ (make build);
#   3. uses the `make run` meta cluster (127.0.0.1:7001-7003), starting it
#      if it is not serving (and stopping it afterwards if it started it);
#      with BENCH_META_PORT it starts a fresh cluster of its own there
#      instead (data in the results directory); runs the workloads;
#   4. starts a 3-member etcd cluster on 127.0.0.1 (data in a temporary
#      directory), runs the same workloads, and stops it;
#   5. starts Oxia's 3 servers and coordinator (one shard, RF 3, WAL
#      synced) with BENCH_OXIA_DIR/cluster.sh, runs put and get, stops it;
#      skipped with a message when bin/oxia or bin/oxiabench is not built
#      there (see its README);
#   6. prints one side-by-side table (metabench compare) and, per run, how
#      many CPU cores the servers and the whole machine used.
# The systems never run a workload at the same time: they would share the
# same two cores. All traffic stays on 127.0.0.1.
#
# Rows: key 32 B, value 256 B, unique keys. put with 1, 16 and 256 clients;
# linearizable and stale get with 256 clients over a loaded key space;
# MQTT sessions (batches of 100, 20 clients); offset commits (batches of
# 10 partitions, 64 clients); offset fetches (batches of 10 partitions of
# a random group among 100 groups of 100 committed partitions, 64
# clients, linearizable); for meta also put and linearizable get with
# --no-coalesce (every call its own RPC). Oxia has put and get (leader
# reads, its only kind: row "get leader"); its 1-client put runs without
# client linger (each op its own RPC), the others with Oxia's default 5 ms.
# Every row has the servers' CPU per item ("cpu us/op": the user and
# system time of the cluster's processes from /proc over the timed phase,
# summed over nodes, divided by the items; for Oxia over the whole
# oxiabench run, its get's loading excluded).
#
# Sizes can be changed through the environment:
#   BENCH_PUT_TOTALS   "1:3000 16:20000 256:100000"  clients:total pairs for put
#   BENCH_GET_CLIENTS  256
#   BENCH_GET_TOTAL    100000
#   BENCH_GET_KEYS     10000
#   BENCH_SESSIONS_TOTAL  200000 (0: no sessions row)
#   BENCH_OFFSETS_TOTAL   200000 (0: no offsets row)
#   BENCH_FETCH_TOTAL     200000 (0: no offsets-fetch row)
#   BENCH_NO_COALESCE  1 (0: no --no-coalesce rows)
#   BENCH_TARGETS      "meta etcd oxia"; also meta-tls: a fresh cluster like
#                      `make run-tls` (mutual TLS and authentication, data
#                      in the results directory, ports 7201-7203), driven
#                      with the admin certificate, labelled meta-tls
#   BENCH_META_PORT    start a fresh meta cluster on this base port
#                      (default: use `make run`'s on 7001)
#   BENCH_ETCD_PORT    etcd member i listens for clients on PORT+2i and
#                      for peers on PORT+2i+1 (default 12379/12380,
#                      22379/22380, 32379/32380)
#   BENCH_OXIA_DIR     built Oxia folder (default ../shared/bench/oxia)
#   BENCH_OXIA_PORT    Oxia's BASE_PORT (default 6648; uses 33 ports)
#   BENCH_OUT          directory for results.json and logs (default: a new
#                      temporary directory, printed at the end)
set -euo pipefail
cd "$(dirname "$0")/.."

PUT_TOTALS=${BENCH_PUT_TOTALS:-"1:3000 16:20000 256:100000"}
GET_CLIENTS=${BENCH_GET_CLIENTS:-256}
GET_TOTAL=${BENCH_GET_TOTAL:-100000}
GET_KEYS=${BENCH_GET_KEYS:-10000}
TARGETS=${BENCH_TARGETS:-"meta etcd oxia"}
SESSIONS_TOTAL=${BENCH_SESSIONS_TOTAL:-200000}
OFFSETS_TOTAL=${BENCH_OFFSETS_TOTAL:-200000}
FETCH_TOTAL=${BENCH_FETCH_TOTAL:-200000}
NO_COALESCE=${BENCH_NO_COALESCE:-1}
OXIA_DIR=${BENCH_OXIA_DIR:-../shared/bench/oxia}
OXIA_PORT=${BENCH_OXIA_PORT:-6648}
OUT=${BENCH_OUT:-$(mktemp -d /tmp/metabench.XXXXXX)}
mkdir -p "$OUT"
RESULTS="$OUT/results.json"
: >"$RESULTS"
CPU_LOG="$OUT/cpu.txt"
: >"$CPU_LOG"

META_PORT=${BENCH_META_PORT:-7001}
META_EPS="127.0.0.1:$META_PORT,127.0.0.1:$((META_PORT + 1)),127.0.0.1:$((META_PORT + 2))"
META_ENV=()
META_PIDDIR=data
if [ -n "${BENCH_META_PORT:-}" ]; then
  META_ENV=(META_BASE_PORT="$META_PORT" META_DATA="$OUT/meta-data")
  META_PIDDIR="$OUT/meta-data"
fi
ETCD_NAMES=(e1 e2 e3)
if [ -n "${BENCH_ETCD_PORT:-}" ]; then
  ETCD_CLIENT=("$BENCH_ETCD_PORT" $((BENCH_ETCD_PORT + 2)) $((BENCH_ETCD_PORT + 4)))
  ETCD_PEER=($((BENCH_ETCD_PORT + 1)) $((BENCH_ETCD_PORT + 3)) $((BENCH_ETCD_PORT + 5)))
else
  ETCD_CLIENT=(12379 22379 32379)
  ETCD_PEER=(12380 22380 32380)
fi
ETCD_EPS="127.0.0.1:${ETCD_CLIENT[0]},127.0.0.1:${ETCD_CLIENT[1]},127.0.0.1:${ETCD_CLIENT[2]}"
# 8 GiB, etcd's largest recommended quota: the runs write far less, so the
# quota never rejects a put.
ETCD_QUOTA=$((8 * 1024 * 1024 * 1024))
RUN_ID=$(date +%s)

log() { echo "bench: $*" >&2; }

install_etcd() {
  local need=()
  for p in etcd-server etcd-client; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
  done
  [ ${#need[@]} -eq 0 ] && return 0
  log "installing ${need[*]}"
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
  # On a host with systemd the package starts a system etcd on 2379; it
  # would take CPU from the benchmark, so stop the instance this script
  # just caused to start.
  if command -v systemctl >/dev/null && systemctl is-active --quiet etcd 2>/dev/null; then
    log "stopping the system etcd service the package started"
    $sudo systemctl stop etcd || true
  fi
}

# cpu_ticks PID... prints the user+system clock ticks the processes used.
cpu_ticks() {
  local sum=0 pid t
  for pid in "$@"; do
    t=$(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0)
    sum=$((sum + t))
  done
  echo "$sum"
}

# busy_ticks prints the machine's non-idle clock ticks since boot.
busy_ticks() { awk '/^cpu /{print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }

# bench TARGET LABEL PIDS -- METABENCH-ARGS... runs one workload, appends
# its JSON result, and records the CPU the servers and the machine used.
bench() {
  local target=$1 label=$2 pids=$3
  shift 4
  local hz s0 m0 t0 s1 m1 t1 rc=0
  hz=$(getconf CLK_TCK)
  # shellcheck disable=SC2086
  s0=$(cpu_ticks $pids)
  m0=$(busy_ticks)
  t0=$(date +%s.%N)
  log "$target: metabench $*"
  # shellcheck disable=SC2086
  bin/metabench "$@" --target "$target" --server-pids "$(echo $pids | tr ' ' ',')" --output json >>"$RESULTS" || rc=$?
  t1=$(date +%s.%N)
  # shellcheck disable=SC2086
  s1=$(cpu_ticks $pids)
  m1=$(busy_ticks)
  local last cs ds
  last=$(tail -n 1 "$RESULTS")
  cs=$(grep -o '"client_cpu_seconds":[0-9.e+-]*' <<<"$last" | cut -d: -f2 || true)
  ds=$(grep -o '"duration_seconds":[0-9.e+-]*' <<<"$last" | cut -d: -f2 || true)
  awk -v l="$label" -v s=$((s1 - s0)) -v m=$((m1 - m0)) -v hz="$hz" -v t0="$t0" -v t1="$t1" \
    -v cs="${cs:-0}" -v ds="${ds:-0}" -v n="$(nproc)" \
    'BEGIN { w = t1 - t0; b = (ds > 0) ? cs / ds : 0
      printf "%-22s servers %.2f cores, machine %.2f of %d cores over %.1f s; metabench %.2f cores while timed\n", l, s / hz / w, m / hz / w, n, w, b }' >>"$CPU_LOG"
  if [ "$rc" -ne 0 ]; then log "$target: run failed (exit $rc); its result is still recorded"; fi
}

# workloads TARGET PIDS EPS [LABEL METABENCH-ARGS...] runs every workload
# against one target (LABEL: its name in the results, default TARGET).
workloads() {
  local target=$1 pids=$2 eps=$3 label=${4:-$1} pair c total nc=""
  shift 3
  [ $# -gt 0 ] && shift
  for pair in $PUT_TOTALS; do
    c=${pair%%:*}
    total=${pair##*:}
    bench "$target" "$label put c=$c" "$pids" -- put --endpoints "$eps" --clients "$c" --total "$total" \
      --key-size 32 --value-size 256 --key-prefix "b/$RUN_ID/p$c/" --label "$label" "$@"
  done
  local cons
  for cons in linearizable stale; do
    bench "$target" "$label get $cons c=$GET_CLIENTS" "$pids" -- get --endpoints "$eps" --clients "$GET_CLIENTS" \
      --total "$GET_TOTAL" --keys "$GET_KEYS" --key-size 32 --value-size 256 --consistency "$cons" \
      --key-prefix "b/$RUN_ID/g/" --label "$label" "$@"
  done
  if [ "$target" = meta ] && [ "$NO_COALESCE" = 1 ]; then
    c=256
    bench "$target" "$label put no-coalesce c=$c" "$pids" -- put --no-coalesce --endpoints "$eps" --clients "$c" \
      --total "$(put_total 256)" --key-size 32 --value-size 256 --key-prefix "b/$RUN_ID/nc$c/" --label "$label" "$@"
    bench "$target" "$label get no-coalesce c=$GET_CLIENTS" "$pids" -- get --no-coalesce --endpoints "$eps" \
      --clients "$GET_CLIENTS" --total "$GET_TOTAL" --keys "$GET_KEYS" --key-size 32 --value-size 256 \
      --consistency linearizable --key-prefix "b/$RUN_ID/g/" --load=false --label "$label" "$@"
  fi
  if [ "$SESSIONS_TOTAL" -gt 0 ]; then
    bench "$target" "$label sessions c=20" "$pids" -- sessions --endpoints "$eps" --clients 20 --batch 100 \
      --total "$SESSIONS_TOTAL" --key-size 32 --value-size 256 --key-prefix "b-$RUN_ID-s-" --label "$label" "$@"
  fi
  if [ "$OFFSETS_TOTAL" -gt 0 ]; then
    bench "$target" "$label offsets c=64" "$pids" -- offsets --endpoints "$eps" --clients 64 --batch 10 \
      --total "$OFFSETS_TOTAL" --group-prefix "b-$RUN_ID-o-" --label "$label" "$@"
  fi
  if [ "$FETCH_TOTAL" -gt 0 ]; then
    bench "$target" "$label offsets-fetch c=64" "$pids" -- offsets-fetch --endpoints "$eps" --clients 64 --batch 10 \
      --total "$FETCH_TOTAL" --groups 100 --partitions 100 --consistency linearizable \
      --group-prefix "b-$RUN_ID-f-" --label "$label" "$@"
  fi
}

# put_total C prints the put total BENCH_PUT_TOTALS gives C clients.
put_total() {
  local pair
  for pair in $PUT_TOTALS; do
    if [ "${pair%%:*}" = "$1" ]; then echo "${pair##*:}"; return; fi
  done
  echo 100000
}

META_STARTED=0
ETCD_DIR=""
ETCD_PIDS=()

stop_etcd() {
  local pid
  for pid in "${ETCD_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${ETCD_PIDS[@]}"; do
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  ETCD_PIDS=()
  if [ -n "$ETCD_DIR" ]; then rm -rf "$ETCD_DIR"; ETCD_DIR=""; fi
}

TLS_ENV=(META_TLS=1 META_BASE_PORT=7201 META_DATA="$OUT/tls-data")
TLS_EPS="127.0.0.1:7201,127.0.0.1:7202,127.0.0.1:7203"
TLS_STARTED=0

cleanup() {
  stop_etcd
  if [ "$TLS_STARTED" -eq 1 ]; then env "${TLS_ENV[@]}" ci/cluster.sh stop >/dev/null || true; TLS_STARTED=0; fi
  stop_meta
  stop_oxia
}
trap cleanup EXIT
trap 'exit 130' INT TERM

meta_serving() { bin/metactl --endpoints "$META_EPS" --timeout 2s member list >/dev/null 2>&1; }

run_meta() {
  if [ ${#META_ENV[@]} -gt 0 ]; then
    log "meta: starting a fresh cluster on $META_EPS"
    env "${META_ENV[@]}" ci/cluster.sh start >"$OUT/meta-start.log" 2>&1 || { cat "$OUT/meta-start.log" >&2; return 1; }
    META_STARTED=1
  elif ! meta_serving; then
    log "meta cluster not serving: starting it (make run)"
    make run >"$OUT/make-run.log" 2>&1 || { cat "$OUT/make-run.log" >&2; return 1; }
    META_STARTED=1
  else
    # Its binaries may predate this build: `make stop` first to measure
    # the current tree.
    log "using the meta cluster already serving at $META_EPS (make stop first to measure a fresh build)"
  fi
  local pids="" f
  for f in "$META_PIDDIR"/n1.pid "$META_PIDDIR"/n2.pid "$META_PIDDIR"/n3.pid; do [ -f "$f" ] && pids="$pids $(cat "$f")"; done
  bin/metactl --endpoints "$META_EPS" status >"$OUT/meta-status-before.txt" 2>&1 || true
  workloads meta "$pids" "$META_EPS"
  bin/metactl --endpoints "$META_EPS" status >"$OUT/meta-status-after.txt" 2>&1 || true
  stop_meta
}

stop_meta() {
  if [ "$META_STARTED" -eq 1 ]; then
    env "${META_ENV[@]}" ci/cluster.sh stop >/dev/null || true
    META_STARTED=0
  fi
}

# run_meta_tls measures a fresh cluster with mutual TLS and
# authentication, as the admin.
run_meta_tls() {
  log "meta-tls: starting a cluster like make run-tls on $TLS_EPS"
  env "${TLS_ENV[@]}" ci/cluster.sh start >"$OUT/make-run-tls.log" 2>&1 || { cat "$OUT/make-run-tls.log" >&2; return 1; }
  TLS_STARTED=1
  local pids="" f
  for f in "$OUT"/tls-data/n{1,2,3}.pid; do [ -f "$f" ] && pids="$pids $(cat "$f")"; done
  workloads meta "$pids" "$TLS_EPS" meta-tls --tls-dir "$OUT/tls-data/tls"
  env "${TLS_ENV[@]}" ci/cluster.sh stop >/dev/null
  TLS_STARTED=0
}

run_etcd() {
  ETCD_DIR=$(mktemp -d /tmp/metabench-etcd.XXXXXX)
  local initial="" i
  for i in 0 1 2; do
    initial="$initial${initial:+,}${ETCD_NAMES[$i]}=http://127.0.0.1:${ETCD_PEER[$i]}"
  done
  for i in 0 1 2; do
    local n=${ETCD_NAMES[$i]}
    etcd --name "$n" --data-dir "$ETCD_DIR/$n" \
      --listen-client-urls "http://127.0.0.1:${ETCD_CLIENT[$i]}" \
      --advertise-client-urls "http://127.0.0.1:${ETCD_CLIENT[$i]}" \
      --listen-peer-urls "http://127.0.0.1:${ETCD_PEER[$i]}" \
      --initial-advertise-peer-urls "http://127.0.0.1:${ETCD_PEER[$i]}" \
      --initial-cluster "$initial" --initial-cluster-state new \
      --initial-cluster-token "metabench-$RUN_ID" \
      --quota-backend-bytes "$ETCD_QUOTA" \
      --logger zap --log-outputs "$OUT/etcd-$n.log" 2>>"$OUT/etcd-$n.stderr" &
    ETCD_PIDS+=($!)
  done
  local ok=0
  for _ in $(seq 1 150); do
    if ETCDCTL_API=3 etcdctl --endpoints "$ETCD_EPS" --command-timeout 2s endpoint health >/dev/null 2>&1; then ok=1; break; fi
    sleep 0.2
  done
  if [ "$ok" -ne 1 ]; then
    log "etcd cluster did not become healthy in 30s; see $OUT/etcd-*.log"
    return 1
  fi
  ETCDCTL_API=3 etcdctl --endpoints "$ETCD_EPS" endpoint status -w table >"$OUT/etcd-status.txt" 2>&1 || true
  workloads etcd "${ETCD_PIDS[*]}" "$ETCD_EPS"
  stop_etcd
}

OXIA_STARTED=0
OXIA_RUN=""

stop_oxia() {
  if [ "$OXIA_STARTED" -eq 1 ]; then
    BASE_PORT=$OXIA_PORT OXIA_BIN="$OXIA_DIR/bin/oxia" "$OXIA_DIR/cluster.sh" clean "$OXIA_RUN" >/dev/null 2>&1 || true
    OXIA_STARTED=0
  fi
}

# oxia_bench LABEL PIDS CLIENTS TOTAL CONSISTENCY OXIABENCH-ARGS... runs
# oxiabench once, records the servers' CPU over it, and appends its
# report as a metabench JSON result.
oxia_bench() {
  local label=$1 pids=$2 clients=$3 total=$4 cons=$5 hz s0 s1 t0 t1 m0 m1 rc=0 out
  shift 5
  hz=$(getconf CLK_TCK)
  out="$OUT/oxia-$(echo "$label" | tr ' =' '--').txt"
  # shellcheck disable=SC2086
  s0=$(cpu_ticks $pids)
  m0=$(busy_ticks)
  t0=$(date +%s.%N)
  log "oxia: oxiabench -clients $clients -total $total $*"
  "$OXIA_DIR/bin/oxiabench" -a "127.0.0.1:$OXIA_PORT" -clients "$clients" -conns "$(( (clients + 15) / 16 ))" \
    -total "$total" -key-size 32 -val-size 256 "$@" >"$out" 2>&1 || rc=$?
  t1=$(date +%s.%N)
  # shellcheck disable=SC2086
  s1=$(cpu_ticks $pids)
  m1=$(busy_ticks)
  local cmd=put unit=puts
  [ -n "$cons" ] && { cmd=get; unit=gets; }
  awk -v cmd="$cmd" -v unit="$unit" -v cons="$cons" -v clients="$clients" -v total="$total" \
    -v cpu="$(awk -v s=$((s1 - s0)) -v hz="$hz" 'BEGIN{print s / hz}')" '
    /^Total:/ { secs = $2; ok = $5 + 0; errs = $7 + 0 }
    /^Requests\/sec:/ { rate = $2 }
    /^Latency ms:/ { mean = $4; p50 = $6; p90 = $8; p99 = $12; p999 = $14; mx = $16 }
    END {
      c = (cons == "") ? "" : sprintf("\"consistency\":\"%s\",", cons)
      printf "{\"command\":\"%s\",\"target\":\"oxia\",\"label\":\"oxia\",\"clients\":%d,\"batch\":1,\"key_size\":32,\"value_size\":256,%s", cmd, clients, c
      printf "\"unit\":\"%s\",\"total\":%d,\"calls\":%d,\"done\":%d,\"ok\":%d,\"items\":%d,\"errors_definite\":%d,", unit, total, total, ok + errs, ok, ok, errs
      printf "\"duration_seconds\":%s,\"calls_per_second\":%s,\"items_per_second\":%s,", secs + 0, rate + 0, rate + 0
      printf "\"latency_ms\":{\"mean\":%s,\"p50\":%s,\"p90\":%s,\"p99\":%s,\"p999\":%s,\"max\":%s},\"server_cpu_seconds\":%s}\n", mean + 0, p50 + 0, p90 + 0, p99 + 0, p999 + 0, mx + 0, cpu
    }' "$out" >>"$RESULTS"
  awk -v l="oxia $label" -v s=$((s1 - s0)) -v m=$((m1 - m0)) -v hz="$hz" -v t0="$t0" -v t1="$t1" -v n="$(nproc)" \
    'BEGIN { w = t1 - t0; printf "%-22s servers %.2f cores, machine %.2f of %d cores over %.1f s\n", l, s / hz / w, m / hz / w, n, w }' >>"$CPU_LOG"
  if [ "$rc" -ne 0 ]; then log "oxia: oxiabench failed (exit $rc); see $out"; fi
}

run_oxia() {
  if [ ! -x "$OXIA_DIR/bin/oxia" ] || [ ! -x "$OXIA_DIR/bin/oxiabench" ]; then
    log "oxia: skipped: $OXIA_DIR/bin/oxia or bin/oxiabench is not built (see $OXIA_DIR/README.md; BENCH_OXIA_DIR names another folder)"
    return 0
  fi
  OXIA_RUN="$OUT/oxia-run"
  log "oxia: starting 3 servers and a coordinator (1 shard, RF 3, WAL synced) on $OXIA_PORT"
  OXIA_STARTED=1
  SHARDS=1 BASE_PORT=$OXIA_PORT OXIA_BIN="$OXIA_DIR/bin/oxia" "$OXIA_DIR/cluster.sh" start "$OXIA_RUN" >"$OUT/oxia-start.log" 2>&1 ||
    { cat "$OUT/oxia-start.log" >&2; stop_oxia; return 1; }
  local pids="" f pair c total
  for f in "$OXIA_RUN"/pids/*.pid; do pids="$pids $(cat "$f")"; done
  for pair in $PUT_TOTALS; do
    c=${pair%%:*}
    total=${pair##*:}
    if [ "$c" -eq 1 ]; then
      oxia_bench "put c=$c" "$pids" "$c" "$total" "" -op put -keys "$total" -linger 0
    else
      oxia_bench "put c=$c" "$pids" "$c" "$total" "" -op put -keys "$total"
    fi
  done
  log "oxia: loading $GET_KEYS keys for get (not measured)"
  "$OXIA_DIR/bin/oxiabench" -a "127.0.0.1:$OXIA_PORT" -op put -clients 64 -conns 4 -total "$GET_KEYS" -keys "$GET_KEYS" \
    -key-size 32 -val-size 256 >"$OUT/oxia-load.txt" 2>&1 || log "oxia: loading failed; see $OUT/oxia-load.txt"
  oxia_bench "get c=$GET_CLIENTS" "$pids" "$GET_CLIENTS" "$GET_TOTAL" leader -op get -keys "$GET_KEYS" -preload=false
  stop_oxia
}

install_etcd
make build >"$OUT/build.log" 2>&1 || { cat "$OUT/build.log" >&2; exit 1; }
log "etcd $(etcd --version | awk 'NR==1{print $3}'), $(nproc) cores, results in $OUT"
for t in $TARGETS; do
  case "$t" in
    meta) run_meta ;;
    meta-tls) run_meta_tls ;;
    etcd) run_etcd ;;
    oxia) run_oxia ;;
    *) log "unknown target $t"; exit 2 ;;
  esac
done

echo
echo "Throughput in items/s, latency in ms per call, servers' CPU in µs per item; key 32 B, value 256 B, unique keys; $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ)."
bin/metabench compare "$RESULTS"
echo
echo "CPU used during each run (servers: the cluster's processes; machine: everything on it, other users included;"
echo "both over the whole invocation, get's loading phase included; metabench: its own CPU during the timed phase):"
cat "$CPU_LOG"
echo
echo "results: $RESULTS"
