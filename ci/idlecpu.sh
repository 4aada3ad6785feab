#!/usr/bin/env bash
# Idle cost: how much CPU idle nodes hosting many raft groups use (issue
# 10). A maintainer runs it by hand; it is not part of make test.
#
#   ci/idlecpu.sh [LABEL=METANODE_BINARY[' 'EXTRA_FLAGS] ...]
#
# Starts one 3-node cluster (ci/cluster.sh, RF 3) per binary given (default:
# new=bin/metanode), all at the same time on ports of their own, each with
# 100 groups per node (metadata-0, 64 data and 35 offset groups); lets them
# settle; then samples every node's CPU time (utime+stime from
# /proc/PID/stat) over the same window, and prints each node's share of one
# core, per cluster and repetition, then the median per cluster. Clusters
# are measured side by side because the machine may be shared: whatever
# else runs slows them alike. An A/B comparison of an older build:
#
#   cp bin/metanode /tmp/metanode.old   # before the change, then rebuild
#   ci/idlecpu.sh old=/tmp/metanode.old new=bin/metanode
#
# or of a setting: ci/idlecpu.sh ct250ms=bin/metanode 'ct1s=bin/metanode
# --commit-timeout 1s'.
#
# Environment:
#   IDLE_BASE_PORT  first gRPC port (default 7301); cluster k uses
#                   IDLE_BASE_PORT+10k .. +2 (metrics on +2000)
#   IDLE_FLAGS      node flags (default '--data-groups 64 --offset-groups 35')
#   IDLE_SETTLE     seconds between the clusters being up and sampling (30)
#   IDLE_WINDOW     seconds per sample (60)
#   IDLE_REPS       samples (3)
#   IDLE_FAILOVER   1: afterwards kill -9 every cluster's n1 at the same
#                   time and print how long until n2 and n3 lead every
#                   group (polled with metactl status, about every 0.2 s)
#   IDLE_OUT        directory for data and logs (default: a new temporary
#                   directory, removed at the end unless IDLE_KEEP=1)
set -euo pipefail
cd "$(dirname "$0")/.."

BASE=${IDLE_BASE_PORT:-7301}
FLAGS=${IDLE_FLAGS:---data-groups 64 --offset-groups 35}
SETTLE=${IDLE_SETTLE:-30}
WINDOW=${IDLE_WINDOW:-60}
REPS=${IDLE_REPS:-3}
[ $# -gt 0 ] || set -- new=bin/metanode
[ -x bin/metactl ] || { echo "bin/metactl missing: run make build" >&2; exit 1; }
if [ -n "${IDLE_OUT:-}" ]; then
  OUT=$IDLE_OUT
  mkdir -p "$OUT"
else
  OUT=$(mktemp -d /tmp/meta-idlecpu.XXXXXX)
fi

LABELS=()
BINS=()
EXTRA=()
for arg in "$@"; do
  label=${arg%%=*}
  bin=${arg#*=}
  extra=""
  if [ "${bin#* }" != "$bin" ]; then extra=${bin#* }; bin=${bin%% *}; fi
  [ "$label" != "$arg" ] && [ -n "$label" ] || { echo "usage: $0 [LABEL=METANODE_BINARY[' 'EXTRA_FLAGS] ...]" >&2; exit 2; }
  [ -x "$bin" ] || { echo "$bin: not an executable" >&2; exit 2; }
  [ ! -e "$OUT/$label" ] || { echo "$OUT/$label exists: choose another IDLE_OUT" >&2; exit 2; }
  LABELS+=("$label")
  BINS+=("$bin")
  EXTRA+=("$extra")
done

cluster() { # cluster K start|stop
  META_BASE_PORT=$((BASE + 10 * $1)) META_DATA="$OUT/${LABELS[$1]}" \
    META_NODE_BIN="${BINS[$1]}" META_NODE_FLAGS="$FLAGS ${EXTRA[$1]}" ci/cluster.sh "$2"
}

cleanup() {
  for k in "${!LABELS[@]}"; do cluster "$k" stop >/dev/null 2>&1 || true; done
  if [ "${IDLE_KEEP:-0}" != 1 ] && [ -z "${IDLE_OUT:-}" ]; then rm -rf "$OUT"; fi
}
trap cleanup EXIT

# The clusters start together, so that they settle together.
for k in "${!LABELS[@]}"; do
  echo "starting ${LABELS[$k]} (${BINS[$k]} ${EXTRA[$k]}) on 127.0.0.1:$((BASE + 10 * k))-$((BASE + 10 * k + 2))" >&2
  mkdir -p "$OUT/${LABELS[$k]}"
  cluster "$k" start >"$OUT/${LABELS[$k]}/start.log" 2>&1 &
done
for k in "${!LABELS[@]}"; do
  wait -n || { cat "$OUT"/*/start.log >&2; exit 1; }
done
echo "settling ${SETTLE}s" >&2
sleep "$SETTLE"

HZ=$(getconf CLK_TCK)
# mono: seconds since boot, a clock that is never stepped.
mono() { awk '{print $1}' /proc/uptime; }
# ticks PID: the process's user+system CPU time in clock ticks. The fields
# after the command name (which ends with ')') start at field 3.
ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }
# changes K: leader changes the nodes of cluster K have seen (a sample
# with some is not of an idle cluster: elections cost CPU).
changes() {
  for i in 0 1 2; do
    curl -s "http://127.0.0.1:$((BASE + 10 * $1 + 2000 + i))/metrics" || true
  done | awk '/^meta_group_leader_changes_total/ {s += $NF} END {print s + 0}'
}
# busy: the machine's non-idle and total ticks, for context.
busy() { awk '/^cpu /{t=0; for (i=2;i<=NF;i++) t+=$i; print t-$5-$6, t}' /proc/stat; }

printf '%-4s %-12s %8s %8s %8s   %s\n' rep cluster n1 n2 n3 "(% of one core over ${WINDOW}s; leader changes seen meanwhile; machine busy)" | tee "$OUT/results.txt"
for rep in $(seq 1 "$REPS"); do
  declare -A t0=() c0=()
  read -r b0 a0 < <(busy)
  s0=$(mono)
  for k in "${!LABELS[@]}"; do
    for i in 1 2 3; do t0[$k.$i]=$(ticks "$(cat "$OUT/${LABELS[$k]}/n$i.pid")"); done
    c0[$k]=$(changes "$k")
  done
  sleep "$WINDOW"
  read -r b1 a1 < <(busy)
  s1=$(mono)
  for k in "${!LABELS[@]}"; do
    line=""
    for i in 1 2 3; do
      t1=$(ticks "$(cat "$OUT/${LABELS[$k]}/n$i.pid")")
      line+=$(awk -v d=$((t1 - t0[$k.$i])) -v hz="$HZ" -v s0="$s0" -v s1="$s1" 'BEGIN{printf " %8.1f", 100 * d / hz / (s1 - s0)}')
    done
    mach=$(awk -v b=$((b1 - b0)) -v a=$((a1 - a0)) -v n="$(nproc)" 'BEGIN{printf "%.0f%% of %d cores", 100 * b / a, n}')
    printf '%-4s %-12s%s   %s leader changes; %s\n' "$rep" "${LABELS[$k]}" "$line" "$(($(changes "$k") - c0[$k]))" "$mach" | tee -a "$OUT/results.txt"
  done
done

echo "median per node over repetitions:" | tee -a "$OUT/results.txt"
for k in "${!LABELS[@]}"; do
  awk -v l="${LABELS[$k]}" '$2 == l && $1 ~ /^[0-9]+$/ {print $3; print $4; print $5}' "$OUT/results.txt" | sort -n |
    awk -v l="${LABELS[$k]}" '{v[NR]=$1} END{m = NR % 2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2; printf "  %-12s median %.1f%%, max %.1f%% of a core per node\n", l, m, v[NR]}' | tee -a "$OUT/results.txt"
done

# led CLUSTER: the distinct groups n2 and n3 of cluster K lead, one a line.
led() {
  bin/metactl --endpoints "127.0.0.1:$((BASE + 10 * $1 + 1)),127.0.0.1:$((BASE + 10 * $1 + 2))" --timeout 2s status 2>/dev/null |
    awk '$3 == "Leader" && $2 != "n1" {print $1}' | sort -u
}
# failover K: kills cluster K's n1 and prints how long until n2 and n3 lead
# all the groups.
failover() {
  local all n1led t0 t
  # The groups: the first table's rows (the nodes' table follows it).
  all=$(bin/metactl --endpoints "127.0.0.1:$((BASE + 10 * $1))" --timeout 5s status 2>/dev/null | awk 'NR == 1 {next} $1 == "NODE" {exit} {print $1}' | sort -u | wc -l)
  n1led=$(bin/metactl --endpoints "127.0.0.1:$((BASE + 10 * $1))" --timeout 5s status 2>/dev/null | awk '$2 == "n1" && $3 == "Leader"' | wc -l)
  kill -9 "$(cat "$OUT/${LABELS[$1]}/n1.pid")"
  t0=$(mono)
  while :; do
    t=$(mono)
    if [ "$(led "$1" | wc -l)" -ge "$all" ]; then
      awk -v l="${LABELS[$1]}" -v a="$all" -v n="$n1led" -v d="$(awk -v a="$t0" -v b="$t" 'BEGIN{print b - a}')" \
        'BEGIN{printf "  %-12s n1 (leading %d of %d groups) killed: n2 and n3 lead every group after %.1f s\n", l, n, a, d}'
      return
    fi
    if awk -v a="$t0" -v b="$t" 'BEGIN{exit !(b - a > 60)}'; then
      echo "  ${LABELS[$1]}: groups still without a leader 60 s after n1 was killed" >&2
      return
    fi
    sleep 0.1
  done
}
if [ "${IDLE_FAILOVER:-0}" = 1 ]; then
  echo "failover after kill -9 of n1:" | tee -a "$OUT/results.txt"
  for k in "${!LABELS[@]}"; do failover "$k" >"$OUT/${LABELS[$k]}/failover.txt" & done
  wait
  for k in "${!LABELS[@]}"; do cat "$OUT/${LABELS[$k]}/failover.txt"; done | tee -a "$OUT/results.txt"
fi
echo "results in $OUT/results.txt" >&2
