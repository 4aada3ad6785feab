#!/usr/bin/env bash
# Side-by-side benchmark of meta and etcd on this machine, with the same
# load generator (bin/metabench; --target etcd drives etcd through etcd's
# own Go client). A maintainer runs it by hand; it is not part of make test.
#
#   ci/bench.sh
#
# What it does, in order:
#   1. installs Debian's etcd-server and etcd-client if they are missing;
#   2. builds bin/ (make build);
#   3. uses the `make run` meta cluster (127.0.0.1:7001-7003), starting it
#      if it is not serving (and stopping it afterwards if it started it);
#      runs the workloads against it;
#   4. starts a 3-member etcd cluster on 127.0.0.1 (clients 12379, 22379,
#      32379; peers 12380, 22380, 32380; data in a temporary directory),
#      runs the same workloads, and stops it;
#   5. prints the results side by side (metabench compare) and, per run, how
#      many CPU cores the servers and the whole machine used.
# meta and etcd never run a workload at the same time: the two clusters
# would share the same two cores. All traffic stays on 127.0.0.1.
#
# Workloads: key 32 B, value 256 B, unique keys; put with 1, 16 and 256
# clients, then linearizable get with 256 clients over a loaded key space.
# Sizes can be changed through the environment:
#   BENCH_PUT_TOTALS   "1:3000 16:20000 256:100000"  clients:total pairs for put
#   BENCH_GET_CLIENTS  256
#   BENCH_GET_TOTAL    100000
#   BENCH_GET_KEYS     10000
#   BENCH_TARGETS      "meta etcd"; also meta-tls: a fresh cluster like
#                      `make run-tls` (mutual TLS and authentication, data
#                      in the results directory, ports 7201-7203), driven
#                      with the admin certificate, labelled meta-tls
#   BENCH_OUT          directory for results.json and logs (default: a new
#                      temporary directory, printed at the end)
set -euo pipefail
cd "$(dirname "$0")/.."

PUT_TOTALS=${BENCH_PUT_TOTALS:-"1:3000 16:20000 256:100000"}
GET_CLIENTS=${BENCH_GET_CLIENTS:-256}
GET_TOTAL=${BENCH_GET_TOTAL:-100000}
GET_KEYS=${BENCH_GET_KEYS:-10000}
TARGETS=${BENCH_TARGETS:-"meta etcd"}
OUT=${BENCH_OUT:-$(mktemp -d /tmp/metabench.XXXXXX)}
mkdir -p "$OUT"
RESULTS="$OUT/results.json"
: >"$RESULTS"
CPU_LOG="$OUT/cpu.txt"
: >"$CPU_LOG"

META_EPS="127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003"
ETCD_NAMES=(e1 e2 e3)
ETCD_CLIENT=(12379 22379 32379)
ETCD_PEER=(12380 22380 32380)
ETCD_EPS="127.0.0.1:12379,127.0.0.1:22379,127.0.0.1:32379"
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
  bin/metabench "$@" --target "$target" --output json >>"$RESULTS" || rc=$?
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
  local target=$1 pids=$2 eps=$3 label=${4:-$1} pair c total
  shift 3
  [ $# -gt 0 ] && shift
  for pair in $PUT_TOTALS; do
    c=${pair%%:*}
    total=${pair##*:}
    bench "$target" "$label put c=$c" "$pids" -- put --endpoints "$eps" --clients "$c" --total "$total" \
      --key-size 32 --value-size 256 --key-prefix "b/$RUN_ID/p$c/" --label "$label" "$@"
  done
  bench "$target" "$label get c=$GET_CLIENTS" "$pids" -- get --endpoints "$eps" --clients "$GET_CLIENTS" \
    --total "$GET_TOTAL" --keys "$GET_KEYS" --key-size 32 --value-size 256 --consistency linearizable \
    --key-prefix "b/$RUN_ID/g/" --label "$label" "$@"
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
  if [ "$META_STARTED" -eq 1 ]; then ci/cluster.sh stop >/dev/null || true; META_STARTED=0; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

meta_serving() { bin/metactl --endpoints "$META_EPS" --timeout 2s member list >/dev/null 2>&1; }

run_meta() {
  if ! meta_serving; then
    log "meta cluster not serving: starting it (make run)"
    make run >"$OUT/make-run.log" 2>&1 || { cat "$OUT/make-run.log" >&2; return 1; }
    META_STARTED=1
  else
    # Its binaries may predate this build: `make stop` first to measure
    # the current tree.
    log "using the meta cluster already serving at $META_EPS (make stop first to measure a fresh build)"
  fi
  local pids="" f
  for f in data/n1.pid data/n2.pid data/n3.pid; do [ -f "$f" ] && pids="$pids $(cat "$f")"; done
  bin/metactl --endpoints "$META_EPS" status >"$OUT/meta-status-before.txt" 2>&1 || true
  workloads meta "$pids" "$META_EPS"
  bin/metactl --endpoints "$META_EPS" status >"$OUT/meta-status-after.txt" 2>&1 || true
  if [ "$META_STARTED" -eq 1 ]; then
    ci/cluster.sh stop >/dev/null
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

install_etcd
make build >"$OUT/build.log" 2>&1 || { cat "$OUT/build.log" >&2; exit 1; }
log "etcd $(etcd --version | awk 'NR==1{print $3}'), $(nproc) cores, results in $OUT"
for t in $TARGETS; do
  case "$t" in
    meta) run_meta ;;
    meta-tls) run_meta_tls ;;
    etcd) run_etcd ;;
    *) log "unknown target $t"; exit 2 ;;
  esac
done

echo
echo "Throughput in ops/s, latency in ms per call; key 32 B, value 256 B, unique keys; $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ)."
bin/metabench compare "$RESULTS"
echo
echo "CPU used during each run (servers: the cluster's processes; machine: everything on it, other users included;"
echo "both over the whole invocation, get's loading phase included; metabench: its own CPU during the timed phase):"
cat "$CPU_LOG"
echo
echo "results: $RESULTS"
