#!/usr/bin/env bash
# Scale-out benchmark (issue 10): does a cluster serve more when nodes are
# added? Nodes run in containers with a CPU quota, the load generator in a
# container of its own; results are printed side by side like ci/bench.sh.
# A maintainer runs it by hand (make scaleout); it is not part of make test.
#
#   ci/scaleout.sh
#   SCALE_REPS=1 SCALE_DURATION=10s ci/scaleout.sh     # a short run
#
# Each repetition, for each layout (SCALE_LAYOUTS):
#   1. starts 3 nodes (n1-n3), each a container limited to SCALE_NODE_CPUS
#      CPUs (0.25) and SCALE_NODE_MEMORY (512m), with GOMEMLIMIT set, on a
#      docker network of its own with a fixed IP per node (nodes listen on
#      0.0.0.0:7001 and advertise that IP); --data-groups 12;
#   2. measures puts (SCALE_PUT_CLIENTS, 256, one key per call) and sessions
#      (SCALE_SESSION_CLIENTS clients, PutSessions of SCALE_SESSION_BATCH,
#      100) for SCALE_DURATION each, with bin/metabench in its own
#      container (no quota) on the same network;
#   3. layout "placed" only, the CPU control: raises the 3 nodes' quota to
#      SCALE_BIG_CPUS (0.5; docker update) and measures again, then puts
#      the quota back: 3 x 0.5 CPU is the same CPU as 6 x 0.25;
#   4. starts a put load with a throughput series (metabench --series),
#      and after SCALE_LEAD seconds adds n4-n6 (metactl member add, then
#      the node with --join); waits until balanced (below), keeps the load
#      SCALE_TAIL more seconds and stops it: the rebalance time is from the
#      first member add to balanced; bytes moved are the bytes the new
#      nodes hold once balanced (as their replicas report them, and on
#      disk);
#   5. measures puts and sessions again with the 6 nodes, and records each
#      node's bytes: a node should hold within 10% of R*D/N, where D is the
#      sum of the groups' bytes and R their replication factor;
#   6. removes the containers, the network and the data.
# Balanced means: every node alive, every group has its replication
# factor of voters (and is not moving), replicas per node and leaders per
# node each differ by at most one (SCALE_LEADER_SLACK for leaders), for
# two polls in a row; SCALE_BALANCE_TIMEOUT (900 s) bounds the wait.
#
# Layouts:
#   placed  --replication-factor 3: the controller places each group on 3
#           of the nodes; adding nodes moves replicas to them.
#   every   the old every-node-hosts-every-group layout: the replication
#           factor equals the final node count (--replication-factor 6). A
#           new cluster of 3 places every group on all 3; each added node
#           gets a replica of every offset and data group, as members did
#           before placement. metadata-0 keeps 3 replicas (its factor is
#           1, 3 or 5); it carries no benchmark load. Expect no gain.
#
# Printed at the end: every measurement side by side (medians over the
# repetitions, range and count: metabench compare --median), the pairs
# the targets are about (placed 6 nodes against 3: at least 1.6x at the
# same or better p99; every 6 against 3; placed 6 x 0.25 against
# 3 x 0.5), the rebalance time, bytes moved and per-node bytes per
# repetition, the machine's load average before and after each
# measurement and the nodes' CPU use, and the plots (rebalance-LAYOUT.svg:
# throughput over time through the rebalance, one line per repetition,
# each rebalance shaded).
#
# Settings (environment): SCALE_REPS 3, SCALE_DURATION 20s,
# SCALE_LAYOUTS "placed every", SCALE_CPU_CONTROL 1, SCALE_PUT_CLIENTS 256,
# SCALE_SESSION_CLIENTS 16, SCALE_SESSION_BATCH 100, SCALE_DATA_GROUPS 12,
# SCALE_NODE_CPUS 0.25, SCALE_BIG_CPUS 0.5, SCALE_NODE_MEMORY 512m,
# SCALE_GOMEMLIMIT 256MiB (Go heap; RocksDB's block cache and memtables,
# 128 and 64 MiB by default, come on top), SCALE_NODE_FLAGS (more metanode
# flags), SCALE_LEAD 10, SCALE_TAIL 10, SCALE_BALANCE_TIMEOUT 900,
# SCALE_LEADER_SLACK 1, SCALE_OUT (directory for results, logs and plots;
# default a new temporary directory, printed at the end).
# Needs Docker (no registry: images are built locally from bin/ by
# `metachaos image`), jq, and host access to the containers' IPs.
set -euo pipefail
cd "$(dirname "$0")/.."
export TESTCONTAINERS_RYUK_DISABLED=true

REPS=${SCALE_REPS:-3}
DUR=${SCALE_DURATION:-20s}
LAYOUTS=${SCALE_LAYOUTS:-"placed every"}
CPU_CONTROL=${SCALE_CPU_CONTROL:-1}
PUT_CLIENTS=${SCALE_PUT_CLIENTS:-256}
SESSION_CLIENTS=${SCALE_SESSION_CLIENTS:-16}
SESSION_BATCH=${SCALE_SESSION_BATCH:-100}
DATA_GROUPS=${SCALE_DATA_GROUPS:-12}
NODE_CPUS=${SCALE_NODE_CPUS:-0.25}
BIG_CPUS=${SCALE_BIG_CPUS:-0.5}
NODE_MEM=${SCALE_NODE_MEMORY:-512m}
NODE_GOMEMLIMIT=${SCALE_GOMEMLIMIT:-256MiB}
NODE_FLAGS=${SCALE_NODE_FLAGS:-}
LEAD=${SCALE_LEAD:-10}
TAIL=${SCALE_TAIL:-10}
BALANCE_TIMEOUT=${SCALE_BALANCE_TIMEOUT:-900}
LEADER_SLACK=${SCALE_LEADER_SLACK:-1}
OUT=${SCALE_OUT:-$(mktemp -d /tmp/metascale.XXXXXX)}
OUT=$(cd "$(mkdir -p "$OUT" && echo "$OUT")" && pwd)

RESULTS="$OUT/results.json"         # every measurement, metabench JSON lines
REBAL_RESULTS="$OUT/rebalance.json" # the loads that ran through the rebalances
SUMMARY="$OUT/rebalance.txt"        # one line per rebalance
LOADS="$OUT/load.txt"               # load average and node CPU per measurement
: >"$RESULTS"
: >"$REBAL_RESULTS"
: >"$SUMMARY"
: >"$LOADS"
RUN_ID=$(date +%s)
PFX="metascale-$RUN_ID-$$" # names of this run's containers and networks
SEQ=0                      # makes key prefixes unique within the run
PORT=7001

log() { echo "scaleout: $(date -u +%H:%M:%S) $*" >&2; }
now_ms() { date +%s%3N; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

NET=""
SUBNET=""
cleanup() {
  local ids
  ids=$(docker ps -aq --filter "name=^$PFX-" 2>/dev/null || true)
  # shellcheck disable=SC2086
  [ -n "$ids" ] && docker rm -f $ids >/dev/null 2>&1 || true
  for n in $(docker network ls -q --filter "name=^$PFX-" 2>/dev/null || true); do
    docker network rm "$n" >/dev/null 2>&1 || true
  done
  rm -rf "$OUT/data"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ip I prints node nI's address on the current network.
ip() { echo "${SUBNET%.*}.$((10 + $1))"; }
endpoints() { # endpoints N: n1..nN's client addresses, comma separated
  local i s=""
  for i in $(seq 1 "$1"); do s="$s${s:+,}$(ip "$i"):$PORT"; done
  echo "$s"
}

# new_network TAG creates a network with a subnet of its own (10.213.X.0/24,
# X drawn until one is free).
new_network() {
  local x
  NET="$PFX-$1"
  for _ in $(seq 1 20); do
    x=$((20 + RANDOM % 220))
    if docker network create --subnet "10.213.$x.0/24" "$NET" >/dev/null 2>&1; then
      SUBNET="10.213.$x.0"
      return 0
    fi
  done
  log "no free subnet 10.213.X.0/24 for $NET"
  return 1
}

# start_node I RF ARGS...: starts node nI with the given cluster flags.
start_node() {
  local i=$1 rf=$2
  shift 2
  mkdir -p "$OUT/data/$TAG/n$i"
  # shellcheck disable=SC2086
  docker run -d --name "$PFX-$TAG-n$i" --network "$NET" --ip "$(ip "$i")" \
    --cpus "$NODE_CPUS" --memory "$NODE_MEM" -e GOMEMLIMIT="$NODE_GOMEMLIMIT" \
    -v "$OUT/data/$TAG/n$i:/data" "$NODE_IMG" \
    --id "n$i" --data-dir /data --listen "0.0.0.0:$PORT" --advertise "$(ip "$i"):$PORT" \
    --data-groups "$DATA_GROUPS" --replication-factor "$rf" $NODE_FLAGS "$@" >/dev/null
}

metactl() { bin/metactl --timeout 5s "$@"; }

# wait_serving N: every group has a leader (N nodes' endpoints).
wait_serving() {
  local eps
  eps=$(endpoints "$1")
  for _ in $(seq 1 300); do
    if metactl --endpoints "$eps" group list --output json 2>/dev/null |
      jq -e '(.groups | length) > 0 and all(.groups[]; .leader != "")' >/dev/null; then
      return 0
    fi
    sleep 1
  done
  log "cluster $TAG did not serve within 300 s"
  return 1
}

# balanced N RF: prints why the cluster is not balanced, or nothing.
balanced() {
  local n=$1 rf=$2 eps nodes groups
  eps=$(endpoints "$n")
  nodes=$(metactl --endpoints "$eps" node list --output json 2>/dev/null) || { echo "node list failed"; return; }
  groups=$(metactl --endpoints "$eps" group list --output json 2>/dev/null) || { echo "group list failed"; return; }
  jq -rn --argjson nodes "$nodes" --argjson groups "$groups" --argjson n "$n" --argjson rf "$rf" \
    --argjson slack "$LEADER_SLACK" '
    def spread(f): ([$nodes.nodes[] | f | tonumber] | max - min);
    def want(g): if g.kind == "metadata" then [$groups.metadataReplicationFactor, $n] | min else [$rf, $n] | min end;
    [ (if ($nodes.nodes | length) != $n then "\($nodes.nodes | length) of \($n) nodes listed" else empty end),
      ($nodes.nodes[] | select(.alive != true) | "\(.id) not alive"),
      ($groups.groups[] | select(.moving == true) | "\(.group) moving"),
      ($groups.groups[] | select(([.replicas[] | select(.role == "voter")] | length) != want(.))
        | "\(.group) has \([.replicas[] | select(.role == "voter")] | length) voters"),
      (if spread(.replicas) > 1 then "replicas per node differ by \(spread(.replicas))" else empty end),
      (if spread(.leaders) > $slack then "leaders per node differ by \(spread(.leaders))" else empty end)
    ] | join("; ")'
}

# cpu_ns NAMES...: CPU nanoseconds the containers used (cgroup v1 cpuacct,
# else v2 cpu.stat; 0 if neither is readable).
cpu_ns() {
  local sum=0 name id v
  for name in "$@"; do
    id=$(docker inspect -f '{{.Id}}' "$name" 2>/dev/null) || continue
    if [ -r "/sys/fs/cgroup/cpuacct/docker/$id/cpuacct.usage" ]; then
      v=$(cat "/sys/fs/cgroup/cpuacct/docker/$id/cpuacct.usage")
    elif [ -r "/sys/fs/cgroup/system.slice/docker-$id.scope/cpu.stat" ]; then
      v=$(awk '/^usage_usec/{print $2 * 1000}' "/sys/fs/cgroup/system.slice/docker-$id.scope/cpu.stat")
    else
      v=0
    fi
    sum=$((sum + v))
  done
  echo "$sum"
}

node_names() { local i; for i in $(seq 1 "$1"); do echo "$PFX-$TAG-n$i"; done; }

# measure LABEL N WORKLOAD ARGS...: one timed metabench run against n1..nN.
measure() {
  local label=$1 n=$2 wl=$3 la0 la1 c0 c1 t0 t1 rc=0
  shift 3
  SEQ=$((SEQ + 1))
  local prefix="s$SEQ/"
  [ "$wl" = sessions ] && prefix="bs$SEQ-"
  la0=$(loadavg)
  # shellcheck disable=SC2046
  c0=$(cpu_ns $(node_names "$n"))
  t0=$(now_ms)
  log "$label: $wl ($DUR)"
  docker run --rm --name "$PFX-bench" --network "$NET" "$BENCH_IMG" "$wl" \
    --endpoints "$(endpoints "$n")" --duration "$DUR" --total 1000000000 --key-prefix "$prefix" \
    --label "$label" --output json --progress=false "$@" >>"$RESULTS" 2>>"$OUT/metabench.log" || rc=$?
  t1=$(now_ms)
  # shellcheck disable=SC2046
  c1=$(cpu_ns $(node_names "$n"))
  la1=$(loadavg)
  [ "$rc" -ne 0 ] && log "$label $wl: metabench exit $rc (see $OUT/metabench.log); its result is still recorded"
  awk -v l="$label" -v w="$wl" -v a="$la0" -v b="$la1" -v c=$((c1 - c0)) -v t=$((t1 - t0)) -v n="$n" \
    'BEGIN { printf "%-18s %-9s load average before %s, after %s; %d nodes used %.2f cores\n", l, w, a, b, n, c / 1e6 / t }' >>"$LOADS"
}

# measure_all LABEL N: puts and sessions.
measure_all() {
  measure "$1" "$2" put --clients "$PUT_CLIENTS" --key-size 32 --value-size 256
  measure "$1" "$2" sessions --clients "$SESSION_CLIENTS" --batch "$SESSION_BATCH" --key-size 32 --value-size 256
}

# node_bytes N: "id replica-bytes disk-bytes" per node.
node_bytes() {
  local i reported
  reported=$(metactl --endpoints "$(endpoints "$1")" node list --output json)
  for i in $(seq 1 "$1"); do
    echo "n$i $(jq -r --arg id "n$i" '.nodes[] | select(.id == $id) | .bytes' <<<"$reported") $(du -sb "$OUT/data/$TAG/n$i" | cut -f1)"
  done
}

# one LAYOUT REP: one repetition of one layout.
one() {
  local layout=$1 rep=$2 rf=3 i ic="" reason t_add t_bal deadline
  [ "$layout" = every ] && rf=6
  TAG="$layout-$rep"
  new_network "$TAG"
  for i in 1 2 3; do ic="$ic${ic:+,}n$i=$(ip "$i"):$PORT"; done
  for i in 1 2 3; do start_node "$i" "$rf" --initial-cluster "$ic"; done
  wait_serving 3
  log "$TAG: 3 nodes serving on $NET ($SUBNET/24), replication factor $rf"

  measure_all "$layout 3x$NODE_CPUS" 3
  if [ "$layout" = placed ] && [ "$CPU_CONTROL" = 1 ]; then
    # shellcheck disable=SC2046
    docker update --cpus "$BIG_CPUS" $(node_names 3) >/dev/null
    measure_all "$layout 3x$BIG_CPUS" 3
    # shellcheck disable=SC2046
    docker update --cpus "$NODE_CPUS" $(node_names 3) >/dev/null
  fi

  # The rebalance, under a put load that records its throughput.
  local series="$OUT/series-$TAG.csv"
  SEQ=$((SEQ + 1))
  docker run -d --name "$PFX-load" --network "$NET" -v "$OUT:/out" "$BENCH_IMG" put \
    --endpoints "$(endpoints 3)" --duration 24h --total 1000000000 --key-prefix "r$SEQ/" \
    --clients "$PUT_CLIENTS" --key-size 32 --value-size 256 --max-error-rate 1 \
    --series "/out/$(basename "$series")" --label "$layout rebalance" --output json --progress=false >/dev/null
  sleep "$LEAD"
  t_add=$(now_ms)
  log "$TAG: adding n4-n6"
  local la0 la1
  la0=$(loadavg)
  for i in 4 5 6; do
    metactl --endpoints "$(endpoints 3)" member add "n$i" "$(ip "$i"):$PORT" >/dev/null
    start_node "$i" "$rf" --join "$(endpoints 3)"
  done
  deadline=$((SECONDS + BALANCE_TIMEOUT))
  local ok=0 last=""
  while [ $SECONDS -lt $deadline ]; do
    reason=$(balanced 6 "$rf")
    if [ -z "$reason" ]; then
      if [ "$ok" = 1 ]; then break; fi
      ok=1
      t_bal=$(now_ms)
    else
      ok=0
      [ "$reason" != "$last" ] && log "$TAG: not balanced yet: $reason"
      last=$reason
    fi
    sleep 2
  done
  if [ "$ok" != 1 ]; then
    log "$TAG: not balanced within $BALANCE_TIMEOUT s: $reason"
    t_bal=$(now_ms)
  fi
  la1=$(loadavg)
  local moved
  moved=$(node_bytes 6 | awk '$1 == "n4" || $1 == "n5" || $1 == "n6" { r += $2; d += $3 } END { printf "%.1f %.1f", r / 1048576, d / 1048576 }')
  sleep "$TAIL"
  docker kill --signal INT "$PFX-load" >/dev/null 2>&1 || true
  docker wait "$PFX-load" >/dev/null 2>&1 || true
  docker logs "$PFX-load" 2>>"$OUT/metabench.log" | grep '^{' >>"$REBAL_RESULTS" || true
  docker rm -f "$PFX-load" >/dev/null 2>&1 || true
  local balanced_word=balanced
  [ "$ok" != 1 ] && balanced_word="NOT balanced"
  echo "$layout $rep $((t_add)) $((t_bal)) $(awk -v a="$t_add" -v b="$t_bal" 'BEGIN{printf "%.1f", (b - a) / 1000}') $moved $balanced_word load_before=${la0// /,} load_after=${la1// /,}" >>"$SUMMARY"
  log "$TAG: $balanced_word after $(( (t_bal - t_add) / 1000 )) s; moved (MiB reported, on disk): $moved"

  measure_all "$layout 6x$NODE_CPUS" 6

  # Bytes per node against R*D/N, R*D being what the groups' replicas
  # should hold together.
  local eps groups
  eps=$(endpoints 6)
  groups=$(metactl --endpoints "$eps" group list --output json)
  local rd
  rd=$(jq '[.groups[] | (.bytes | tonumber) * (.replicas | length)] | add' <<<"$groups")
  node_bytes 6 | awk -v layout="$layout" -v rep="$rep" -v rd="$rd" '
    { id[NR] = $1; r[NR] = $2; d[NR] = $3; dsum += $3 }
    END {
      want = rd / NR; dmean = dsum / NR
      for (i = 1; i <= NR; i++) {
        dev = (want > 0) ? 100 * (r[i] - want) / want : 0
        ddev = (dmean > 0) ? 100 * (d[i] - dmean) / dmean : 0
        if (dev < 0) dev = -dev; if (ddev < 0) ddev = -ddev
        if (dev > worst) worst = dev; if (ddev > dworst) dworst = ddev
        line = line sprintf(" %s %.1f/%.1f", id[i], r[i] / 1048576, d[i] / 1048576)
      }
      printf "%-7s rep %d  R*D/N %.1f MiB; worst node off it by %.1f%% (reported), disk worst off the mean by %.1f%%; MiB reported/disk:%s\n", layout, rep, want / 1048576, worst, dworst, line
    }' >>"$OUT/bytes.txt"
  local i oom
  for i in 1 2 3 4 5 6; do
    oom=$(docker inspect -f '{{.State.OOMKilled}} {{.State.Running}}' "$PFX-$TAG-n$i" 2>/dev/null || echo "? ?")
    [ "$oom" != "false true" ] && log "$TAG: n$i state (oom-killed running): $oom"
    docker logs "$PFX-$TAG-n$i" >"$OUT/logs-$TAG-n$i.log" 2>&1 || true
  done
  metactl --endpoints "$eps" node list >"$OUT/nodes-$TAG.txt" 2>&1 || true
  metactl --endpoints "$eps" group list >"$OUT/groups-$TAG.txt" 2>&1 || true

  # shellcheck disable=SC2046
  docker rm -f $(node_names 6) >/dev/null 2>&1 || true
  docker network rm "$NET" >/dev/null 2>&1 || true
  rm -rf "$OUT/data/$TAG"
}

make build >"$OUT/build.log" 2>&1 || { cat "$OUT/build.log" >&2; exit 1; }
NODE_IMG=$(bin/metachaos image --binary bin/metanode --repo meta-scale-node 2>>"$OUT/build.log")
BENCH_IMG=$(bin/metachaos image --binary bin/metabench --repo meta-scale-bench 2>>"$OUT/build.log")
: >"$OUT/bytes.txt"
log "images $NODE_IMG $BENCH_IMG; $(nproc) cores; load average $(loadavg); results in $OUT"
for rep in $(seq 1 "$REPS"); do
  for layout in $LAYOUTS; do
    case "$layout" in
      placed | every) one "$layout" "$rep" ;;
      *) log "SCALE_LAYOUTS: unknown layout $layout (placed, every)"; exit 2 ;;
    esac
  done
done

# pair A B: the results of label A then label B, for a two-column compare.
pair() { jq -c --arg l "$1" 'select(.label == $l)' "$RESULTS"; jq -c --arg l "$2" 'select(.label == $l)' "$RESULTS"; }

echo
echo "Scale-out: $REPS repetition(s), $DUR per measurement; nodes ${NODE_CPUS} CPU and $NODE_MEM each (GOMEMLIMIT $NODE_GOMEMLIMIT),"
echo "$DATA_GROUPS data groups; key 32 B, value 256 B; puts $PUT_CLIENTS clients, sessions $SESSION_CLIENTS clients x batch $SESSION_BATCH;"
echo "$(nproc) cores shared with whatever else runs, $(date -u +%Y-%m-%dT%H:%MZ). Medians over the repetitions; min-max is the range."
echo
bin/metabench compare --median "$RESULTS"
for l in $LAYOUTS; do
  echo
  echo "$l: 6 x $NODE_CPUS against 3 x $NODE_CPUS$([ "$l" = placed ] && echo " (target: at least 1.60x, p99 no worse)")$([ "$l" = every ] && echo " (the old layout: expect no gain)")"
  pair "$l 6x$NODE_CPUS" "$l 3x$NODE_CPUS" | bin/metabench compare --median - || true
done
if [[ " $LAYOUTS " == *" placed "* ]] && [ "$CPU_CONTROL" = 1 ]; then
  echo
  echo "CPU control: placed 6 x $NODE_CPUS against 3 x $BIG_CPUS (the same CPU in total)"
  pair "placed 6x$NODE_CPUS" "placed 3x$BIG_CPUS" | bin/metabench compare --median - || true
fi
echo
echo "Rebalances (from the first member add to balanced, under a $PUT_CLIENTS-client put load; moved: MiB the new nodes hold once balanced, as reported / on disk):"
awk '{ printf "  %-7s rep %s  %7.1f s  moved %8.1f / %8.1f MiB  %s  %s %s\n", $1, $2, $5, $6, $7, ($8 == "NOT" ? "NOT balanced" : "balanced"), $(NF-1), $NF }' "$SUMMARY"
# median_range: "median (min-max)" of the numbers on stdin.
median_range() {
  sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) exit
    printf "%.1f (%.1f-%.1f)", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2, v[1], v[NR] }'
}
for l in $LAYOUTS; do
  n=$(awk -v l="$l" '$1 == l' "$SUMMARY" | wc -l)
  [ "$n" -eq 0 ] && continue
  echo "  $l: rebalance median $(awk -v l="$l" '$1 == l { print $5 }' "$SUMMARY" | median_range) s," \
    "moved median $(awk -v l="$l" '$1 == l { print $6 }' "$SUMMARY" | median_range) MiB reported," \
    "$(awk -v l="$l" '$1 == l { print $7 }' "$SUMMARY" | median_range) MiB on disk; $n run(s)"
done
echo
echo "Throughput of the put load through each rebalance (whole run, with the lead and tail):"
bin/metabench compare --median "$REBAL_RESULTS" || true
echo
echo "Bytes per node once balanced and measured (target: within 10% of R*D/N):"
sed 's/^/  /' "$OUT/bytes.txt"
echo
echo "Machine load average (1, 5, 15 min) before and after each measurement, and the nodes' CPU use while it ran:"
sed 's/^/  /' "$LOADS"
for l in $LAYOUTS; do
  args=()
  while read -r lay rep ta tb _; do
    [ "$lay" = "$l" ] || continue
    args+=(--series "rep$rep=$OUT/series-$l-$rep.csv" --window "rep$rep=$ta,$tb,rebalance")
  done <"$SUMMARY"
  [ ${#args[@]} -eq 0 ] && continue
  bin/metachaos plot --out "$OUT/rebalance-$l.svg" \
    --title "$l: puts/s, $PUT_CLIENTS clients, while n4-n6 are added (rebalance shaded)" "${args[@]}" &&
    echo "plot: $OUT/rebalance-$l.svg"
done
echo "results: $OUT"
