#!/usr/bin/env bash
# The MQTT sessions benchmarks of issue 5, on the `make run` cluster
# (3 nodes on 127.0.0.1:7001-7003, default settings). A maintainer runs it
# by hand; it is not part of make test. Every run starts from a fresh
# ./data: it stops the cluster, deletes ./data, and starts it again.
#
#   ci/memsessions.sh memory [TOTAL]   load TOTAL sessions (default 10,000,000)
#                                      and record the nodes' memory
#   ci/memsessions.sh rates            sessions/s and latency with --batch 1,
#                                      100 and 1000
#
# memory, in order:
#   1. waits until the 1-minute load average is below MEMS_MAX_LOAD (the
#      machine is shared; a busy machine measures the neighbours);
#   2. make build; make stop; rm -rf ./data; make run;
#   3. samples every node every MEMS_INTERVAL seconds, from the pids in
#      ./data/n*.pid: VmRSS, VmHWM, RssAnon and RssFile from
#      /proc/PID/status, and the node's disk use (du of ./data/nN);
#   4. phase "load": bin/metabench sessions --batch MEMS_BATCH --clients
#      MEMS_CLIENTS --total TOTAL --value-size MEMS_VALUE_SIZE;
#   5. phase "settle": MEMS_SETTLE seconds with no load (flushes and
#      compactions finish);
#   6. phase "list": bin/metabench sessions-list --load=false --clients 1
#      --batch MEMS_PAGE --total TOTAL pages through every session in order
#      (ListSessions with a limit), checking each page;
#   7. phase "after": MEMS_SETTLE seconds more, then the summary; the
#      cluster is stopped unless MEMS_KEEP=1.
# RocksDB's own account of its memory is not exposed over the API; the
# summary quotes the block cache lines of each node's RocksDB LOG (written
# every 10 minutes by RocksDB's stats dump), but RSS is the figure that
# counts. The target (issue 5, a benchmark, not a test): each node under
# 512 MiB RSS after 10 million sessions.
#
# rates runs, each on a fresh cluster, bin/metabench sessions with
# --clients MEMS_CLIENTS and --batch 1 (MEMS_RATE_TOTAL_1 sessions), 100
# (MEMS_RATE_TOTAL_100) and 1000 (MEMS_RATE_TOTAL_1000), then prints them
# side by side with metabench compare.
#
# Settings (environment):
#   MEMS_OUT         directory for the results (default: a new temporary
#                    directory, printed at the end)
#   MEMS_BATCH 100   MEMS_CLIENTS 20   MEMS_VALUE_SIZE 256   MEMS_PAGE 1000
#   MEMS_INTERVAL 5  MEMS_SETTLE 60    MEMS_MAX_LOAD 1.5     MEMS_LOAD_WAIT 1800
#   MEMS_RATE_TOTAL_1 50000  MEMS_RATE_TOTAL_100 1000000  MEMS_RATE_TOTAL_1000 1000000
#   MEMS_KEEP 0 (1: leave the cluster running at the end)
# Output in MEMS_OUT: samples.tsv (every sample), load.json and list.json
# (metabench results), load.log and list.log (progress), summary.txt; for
# rates, rates.json and rates.txt.
set -euo pipefail
cd "$(dirname "$0")/.."

MODE=${1:-}
OUT=${MEMS_OUT:-$(mktemp -d /tmp/memsessions.XXXXXX)}
BATCH=${MEMS_BATCH:-100}
CLIENTS=${MEMS_CLIENTS:-20}
VALUE_SIZE=${MEMS_VALUE_SIZE:-256}
PAGE=${MEMS_PAGE:-1000}
INTERVAL=${MEMS_INTERVAL:-5}
SETTLE=${MEMS_SETTLE:-60}
MAX_LOAD=${MEMS_MAX_LOAD:-1.5}
LOAD_WAIT=${MEMS_LOAD_WAIT:-1800}
KEEP=${MEMS_KEEP:-0}
DATA=./data
mkdir -p "$OUT"

log() { echo "memsessions: $*" >&2; }

# wait_quiet waits until the 1-minute load average is below MAX_LOAD, at
# most LOAD_WAIT seconds, and says so either way.
wait_quiet() {
  local waited=0 load
  while :; do
    load=$(cut -d' ' -f1 /proc/loadavg)
    if awk -v l="$load" -v m="$MAX_LOAD" 'BEGIN { exit !(l < m) }'; then
      log "load average $load (below $MAX_LOAD)"
      return 0
    fi
    if [ "$waited" -ge "$LOAD_WAIT" ]; then
      log "WARNING: load average still $load after ${waited}s; measuring anyway (figures include the neighbours)"
      return 0
    fi
    [ $((waited % 60)) -eq 0 ] && log "load average $load, waiting for it to drop below $MAX_LOAD"
    sleep 10
    waited=$((waited + 10))
  done
}

fresh_cluster() {
  make -s stop >/dev/null
  rm -rf "$DATA"
  make -s run >"$OUT/cluster-start.log" 2>&1 || { cat "$OUT/cluster-start.log" >&2; return 1; }
}

# sample PHASE T appends one line per node to samples.tsv.
sample() {
  local phase=$1 t=$2 i pid
  for i in 1 2 3; do
    pid=$(cat "$DATA/n$i.pid" 2>/dev/null || true)
    [ -n "$pid" ] && [ -r "/proc/$pid/status" ] || { printf '%s\t%s\tn%s\t-\t0\t0\t0\t0\t0\n' "$t" "$phase" "$i" >>"$OUT/samples.tsv"; continue; }
    awk -v t="$t" -v phase="$phase" -v node="n$i" -v pid="$pid" -v disk="$(du -sk "$DATA/n$i" 2>/dev/null | cut -f1)" '
      /^VmRSS:/ { rss = $2 } /^VmHWM:/ { hwm = $2 } /^RssAnon:/ { anon = $2 } /^RssFile:/ { file = $2 }
      END { printf "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\n", t, phase, node, pid, rss, hwm, anon, file, disk }
    ' "/proc/$pid/status" >>"$OUT/samples.tsv"
  done
}

# sampler runs until killed, sampling every INTERVAL seconds under the
# phase named in $OUT/phase.
sampler() {
  while :; do
    sample "$(cat "$OUT/phase")" "$(elapsed)"
    sleep "$INTERVAL"
  done
}

# elapsed prints the seconds since the memory run started.
START=$(date +%s)
elapsed() { echo $(($(date +%s) - START)); }

SAMPLER=""
stop_sampler() {
  if [ -n "$SAMPLER" ]; then
    kill "$SAMPLER" 2>/dev/null || true
    wait "$SAMPLER" 2>/dev/null || true
    SAMPLER=""
  fi
}

# rocks_cache_lines prints the last block cache line of each node's
# RocksDB LOG.
rocks_cache_lines() {
  local i f
  for i in 1 2 3; do
    f=$(find "$DATA/n$i" -name LOG -type f 2>/dev/null | head -n 1)
    if [ -z "$f" ]; then echo "  n$i: no RocksDB LOG found"; continue; fi
    echo "  n$i: $(grep -E 'Block cache [A-Za-z]+@' "$f" | tail -n 1 | sed 's/^ *//' || true)"
  done
}

summary() {
  local total=$1
  {
    echo "memsessions: $total sessions, batch $BATCH, $CLIENTS clients, state $VALUE_SIZE B, page $PAGE"
    echo "cluster: make run (3 nodes, default settings); samples every ${INTERVAL}s in $OUT/samples.tsv"
    echo
    echo "resident memory per node and phase, MiB (max VmRSS during the phase / VmRSS at its end / VmHWM at its end):"
    printf "  %-5s %-8s %10s %10s %10s %12s\n" node phase "max RSS" "end RSS" HWM "disk MiB"
    awk -F'\t' '
      NR > 1 {
        k = $3 "\t" $2
        if (!(k in seen)) { seen[k] = 1; order[++n] = k }
        if ($5 > max[k]) max[k] = $5
        last[k] = $5; hwm[k] = $6; disk[k] = $9
      }
      END {
        for (i = 1; i <= n; i++) {
          split(order[i], p, "\t")
          printf "  %-5s %-8s %10.0f %10.0f %10.0f %12.0f\n", p[1], p[2], max[order[i]]/1024, last[order[i]]/1024, hwm[order[i]]/1024, disk[order[i]]/1024
        }
      }' "$OUT/samples.tsv" | sort -s -k1,1
    echo
    awk -F'\t' 'NR > 1 && $6 > h { h = $6; node = $3 } END {
      verdict = (h < 512 * 1024) ? "under" : "OVER"
      printf "peak VmHWM over all nodes: %.0f MiB (%s), %s the 512 MiB target\n", h/1024, node, verdict }' "$OUT/samples.tsv"
    echo
    echo "load (bin/metabench sessions):"
    jq -r '"  \(.items) sessions in \(.duration_seconds | floor) s: \(.items_per_second | floor) sessions/s; latency ms p50 \(.latency_ms.p50) p90 \(.latency_ms.p90) p99 \(.latency_ms.p99) p99.9 \(.latency_ms.p999) max \(.latency_ms.max); errors \(.errors_definite) definite, \(.errors_unknown) unknown"' "$OUT/load.json" 2>/dev/null || echo "  (no result)"
    echo "list (bin/metabench sessions-list, one cursor, checked page by page):"
    jq -r '"  \(.items) sessions in \(.ok) pages of up to \(.batch), \(.duration_seconds | floor) s: \(.items_per_second | floor) sessions/s; page latency ms p50 \(.latency_ms.p50) p99 \(.latency_ms.p99) max \(.latency_ms.max); \(.missing) pages wrong, \(.errors_definite) failed"' "$OUT/list.json" 2>/dev/null || echo "  (no result)"
    echo
    echo "disk use at the end (du -sk ./data/nN):"
    for i in 1 2 3; do echo "  n$i: $(du -sh "$DATA/n$i" | cut -f1)"; done
    echo
    echo "RocksDB block cache (its own account, last stats dump in each LOG):"
    rocks_cache_lines
  } | tee "$OUT/summary.txt"
}

memory() {
  local total=${1:-10000000}
  command -v jq >/dev/null || { log "needs jq (apt-get install jq)"; exit 1; }
  make -s build
  wait_quiet
  fresh_cluster
  printf 'time_s\tphase\tnode\tpid\tvmrss_kb\tvmhwm_kb\trssanon_kb\trssfile_kb\tdisk_kb\n' >"$OUT/samples.tsv"
  echo idle >"$OUT/phase"
  START=$(date +%s)
  sampler &
  SAMPLER=$!
  trap 'stop_sampler' EXIT
  sleep "$INTERVAL"

  echo load >"$OUT/phase"
  log "loading $total sessions (progress in $OUT/load.log)"
  local rc=0
  bin/metabench sessions --batch "$BATCH" --clients "$CLIENTS" --total "$total" --value-size "$VALUE_SIZE" \
    --timeout 30s --output json >"$OUT/load.json" 2>"$OUT/load.log" || rc=$?
  [ "$rc" -eq 0 ] || log "WARNING: metabench sessions exited with $rc (see $OUT/load.log)"
  sample load-end "$(elapsed)"

  echo settle >"$OUT/phase"
  log "settling for ${SETTLE}s"
  sleep "$SETTLE"

  echo list >"$OUT/phase"
  log "paging through $total sessions, $PAGE a page (progress in $OUT/list.log)"
  rc=0
  bin/metabench sessions-list --load=false --clients 1 --batch "$PAGE" --total "$total" \
    --timeout 30s --output json >"$OUT/list.json" 2>"$OUT/list.log" || rc=$?
  [ "$rc" -eq 0 ] || log "WARNING: metabench sessions-list exited with $rc (see $OUT/list.log)"
  sample list-end "$(elapsed)"

  echo after >"$OUT/phase"
  sleep "$SETTLE"
  stop_sampler
  summary "$total"
  if [ "$KEEP" != 1 ]; then make -s stop >/dev/null; fi
  log "results in $OUT"
}

rates() {
  local batch total
  make -s build
  : >"$OUT/rates.json"
  for batch in 1 100 1000; do
    case $batch in
      1) total=${MEMS_RATE_TOTAL_1:-50000} ;;
      100) total=${MEMS_RATE_TOTAL_100:-1000000} ;;
      1000) total=${MEMS_RATE_TOTAL_1000:-1000000} ;;
    esac
    wait_quiet
    fresh_cluster
    log "sessions --batch $batch --clients $CLIENTS --total $total"
    bin/metabench sessions --batch "$batch" --clients "$CLIENTS" --total "$total" --value-size "$VALUE_SIZE" \
      --output json >>"$OUT/rates.json" 2>"$OUT/rates-batch$batch.log" || log "WARNING: batch $batch failed (see $OUT/rates-batch$batch.log)"
  done
  bin/metabench compare "$OUT/rates.json" | tee "$OUT/rates.txt"
  if [ "$KEEP" != 1 ]; then make -s stop >/dev/null; fi
  log "results in $OUT"
}

case "$MODE" in
  memory) memory "${2:-}" ;;
  rates) rates ;;
  *) echo "usage: $0 memory [TOTAL] | rates" >&2; exit 2 ;;
esac
