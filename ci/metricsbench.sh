#!/usr/bin/env bash
# Metrics overhead: puts/s on one running cluster, alternating runs without
# and with every node's /metrics scraped once a second (as Prometheus
# would), so that both see the same cluster, data and machine.
#   META_BASE_PORT=23001 META_DATA=/tmp/mb ci/cluster.sh start
#   META_BASE_PORT=23001 ci/metricsbench.sh [rounds] [puts per run] [clients]
# Prints one line per run and the mean of each side.
set -euo pipefail
cd "$(dirname "$0")/.."
B=${META_BASE_PORT:-7001}
ROUNDS=${1:-3}
TOTAL=${2:-30000}
CLIENTS=${3:-64}
EPS="127.0.0.1:$B,127.0.0.1:$((B+1)),127.0.0.1:$((B+2))"
MPORTS=($((B+2000)) $((B+2001)) $((B+2002)))

scrape() {
  while :; do
    for p in "${MPORTS[@]}"; do curl -sf "http://127.0.0.1:$p/metrics" >/dev/null || true; done
    sleep 1
  done
}

run() { # label prefix
  bin/metabench put --endpoints "$EPS" --total "$TOTAL" --clients "$CLIENTS" --key-prefix "$2" \
    --progress=false -o json | sed -n 's/.*"items_per_second":\([0-9.]*\).*/\1/p'
}

off=() on=()
for r in $(seq 1 "$ROUNDS"); do
  v=$(run off "mb/$r/off/"); off+=("$v"); echo "round $r  no scraping      $v puts/s"
  scrape & sp=$!
  v=$(run on "mb/$r/on/"); on+=("$v"); echo "round $r  scraping at 1 Hz $v puts/s"
  kill "$sp"; wait "$sp" 2>/dev/null || true
done
mean() { printf '%s\n' "$@" | awk '{s+=$1} END {printf "%.0f", s/NR}'; }
echo "mean: no scraping $(mean "${off[@]}") puts/s, scraping $(mean "${on[@]}") puts/s"
