#!/usr/bin/env bash
# Scale-out benchmark (issue 10): does a cluster serve more when nodes are
# added? Nodes run in containers with a CPU quota, the load generator in a
# container of its own; results are printed side by side like ci/bench.sh.
# A maintainer runs it by hand (make scaleout); it is not part of make test.
#
#   ci/scaleout.sh
#   SCALE_REPS=1 SCALE_DURATION=10s ci/scaleout.sh     # a short run
#   SCALE_LAYOUTS=split ci/scaleout.sh                 # split, then grow (issue 11)
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
#   split   issue 11's figures, in place of steps 2-5 (only when asked
#           for): n1-n3 start with --data-groups 1 (replication factor 3,
#           --split-bytes 0: no automatic split) under a put load with a
#           throughput series (as step 4); after SCALE_SPLIT_PHASE seconds
#           the data group with the widest range is split (metactl group
#           split, which returns once the split is done), again and again
#           until there are SCALE_SPLIT_TO (12) data groups; after
#           SCALE_SPLIT_PHASE more seconds n4-n6 are added and the script
#           waits until balanced (as step 4); the load runs
#           SCALE_SPLIT_PHASE more seconds. Printed: puts/s before, during
#           and after the splits, during the growth and after it (each
#           phase from the load's one-second samples wholly within it,
#           with its failed calls), per repetition and medians; each
#           split's seconds; the rebalance time; whether the data groups'
#           ranges tile the route hash space at the end (every group holds
#           a range, none is splitting, no gap, no overlap); the load's
#           failures by kind (metabench's error_kinds: definite or unknown,
#           gRPC code, meta's reason); the load average and the nodes'
#           cores per phase; plots split-REP.svg and split.svg (phases
#           shaded). Bytes per node are checked as in step 5. The
#           controller spreads leaders one move at a time, from the node
#           leading most to the group's voter leading fewest when they
#           differ by more than one, so with few groups a spread of 2 can
#           stay for good (no single move improves it): run this layout
#           with SCALE_LEADER_SLACK=2, or the wait may last until
#           SCALE_BALANCE_TIMEOUT. With 512m a node can run out of memory
#           (below): give it SCALE_NODE_MEMORY=1g.
#           Figures, 2026-12-07, SCALE_LAYOUTS=split SCALE_LEADER_SLACK=2
#           SCALE_NODE_MEMORY=1g, 3 repetitions, on 2 cores shared with
#           other work (1-min load average 8-88): puts/s, median (range),
#           before the splits 2739 (2609-3044), during them 1191
#           (1037-1234), after them on 3 nodes 1226 (846-1243), during the
#           growth 1142 (768-1193), after it on 6 nodes 1254 (1168-1418).
#           A split took 10.8 s (7.5-21.4; 33 splits, none failed), the
#           11 splits 127 s (122-172), the growth to balanced 258 s
#           (254-279). The ranges tiled the hash space each time. The load
#           saw no definite failure and 5, 614 and 22 unknown outcomes
#           (OUTCOME_UNKNOWN, leadership lost while committing), after the
#           splits and during the growth, none during the splits. The
#           nodes used 0.57 cores before the splits, 0.73 after (the
#           quota is 0.75) and 1.25 on 6 nodes (of 1.5): CPU per put went
#           from about 0.2 ms to 0.6 and 1.0 ms, so 12 groups halved what
#           3 nodes served and 6 nodes did not win it back. With 512m (a
#           first try) n3 was OOM-killed 55 s into the growth, n1 and n2
#           sat at 511 of 512 MiB and the load stalled for minutes; with
#           1g n1 was seen at 551 MiB.
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
# SCALE_LEADER_SLACK 1, SCALE_SPLIT_TO 12, SCALE_SPLIT_PHASE 30,
# SCALE_SPLIT_TIMEOUT 300 (seconds one split may take), SCALE_OUT
# (directory for results, logs and plots; default a new temporary
# directory, printed at the end).
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
SPLIT_TO=${SCALE_SPLIT_TO:-12}
SPLIT_PHASE=${SCALE_SPLIT_PHASE:-30}
SPLIT_TIMEOUT=${SCALE_SPLIT_TIMEOUT:-300}
OUT=${SCALE_OUT:-$(mktemp -d /tmp/metascale.XXXXXX)}
OUT=$(cd "$(mkdir -p "$OUT" && echo "$OUT")" && pwd)

RESULTS="$OUT/results.json"         # every measurement, metabench JSON lines
REBAL_RESULTS="$OUT/rebalance.json" # the loads that ran through the rebalances
SUMMARY="$OUT/rebalance.txt"        # one line per rebalance
LOADS="$OUT/load.txt"               # load average and node CPU per measurement
SPLITS="$OUT/splits.txt"            # layout split: one line per split
PHASES="$OUT/phases.txt"            # layout split: the phases of each repetition
: >"$RESULTS"
: >"$SPLITS"
: >"$PHASES"
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
NODE_GROUPS=$DATA_GROUPS # data groups the nodes start with
LAYOUT_FLAGS=""          # metanode flags of the layout
cleanup() {
  local ids
  ids=$(docker ps -aq --filter "name=^$PFX-" 2>/dev/null || true)
  # shellcheck disable=SC2086
  if [ -n "$ids" ]; then docker rm -f $ids >/dev/null 2>&1 || true; fi
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
    --data-groups "$NODE_GROUPS" --replication-factor "$rf" $NODE_FLAGS $LAYOUT_FLAGS "$@" >/dev/null
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

# start_cluster RF GROUPS: a network of its own and n1-n3 with replication
# factor RF and GROUPS data groups, once every group has a leader.
start_cluster() {
  local rf=$1 i ic=""
  NODE_GROUPS=$2
  new_network "$TAG"
  for i in 1 2 3; do ic="$ic${ic:+,}n$i=$(ip "$i"):$PORT"; done
  for i in 1 2 3; do start_node "$i" "$rf" --initial-cluster "$ic"; done
  wait_serving 3
  log "$TAG: 3 nodes serving on $NET ($SUBNET/24), replication factor $rf, $NODE_GROUPS data groups"
}

# start_load LABEL SERIES: a put load against n1-n3 in the background
# (PUT_CLIENTS clients, no limit on failures), its throughput a second in
# the CSV SERIES (a file in OUT).
start_load() {
  SEQ=$((SEQ + 1))
  docker run -d --name "$PFX-load" --network "$NET" -v "$OUT:/out" "$BENCH_IMG" put \
    --endpoints "$(endpoints 3)" --duration 24h --total 1000000000 --key-prefix "r$SEQ/" \
    --clients "$PUT_CLIENTS" --key-size 32 --value-size 256 --max-error-rate 1 \
    --series "/out/$(basename "$2")" --label "$1" --output json --progress=false >/dev/null
}

# stop_load: interrupts the background load, appends its result (one JSON
# line) to REBAL_RESULTS and prints it.
stop_load() {
  docker kill --signal INT "$PFX-load" >/dev/null 2>&1 || true
  docker wait "$PFX-load" >/dev/null 2>&1 || true
  docker logs "$PFX-load" 2>>"$OUT/metabench.log" | grep '^{' | tee -a "$REBAL_RESULTS" || true
  docker rm -f "$PFX-load" >/dev/null 2>&1 || true
}

# grow RF: adds n4-n6 (metactl member add, then the node with --join) and
# waits until balanced, for at most BALANCE_TIMEOUT. Sets T_ADD (the first
# member add) and T_BAL (balanced, or when the wait gave up), REASON
# (why not, if not), MOVED ("MiB reported, MiB on disk" the new
# nodes hold) and GROW_LOADS (load averages before and after).
grow() {
  local rf=$1 i ok=0 last="" deadline la0
  T_ADD=$(now_ms)
  log "$TAG: adding n4-n6"
  la0=$(loadavg)
  for i in 4 5 6; do
    metactl --endpoints "$(endpoints 3)" member add "n$i" "$(ip "$i"):$PORT" >/dev/null
    start_node "$i" "$rf" --join "$(endpoints 3)"
  done
  deadline=$((SECONDS + BALANCE_TIMEOUT))
  REASON=""
  while [ $SECONDS -lt $deadline ]; do
    REASON=$(balanced 6 "$rf")
    if [ -z "$REASON" ]; then
      if [ "$ok" = 1 ]; then break; fi
      ok=1
      T_BAL=$(now_ms)
    else
      ok=0
      [ "$REASON" != "$last" ] && log "$TAG: not balanced yet: $REASON"
      last=$REASON
    fi
    sleep 2
  done
  if [ "$ok" != 1 ]; then
    log "$TAG: not balanced within $BALANCE_TIMEOUT s: $REASON"
    T_BAL=$(now_ms)
  fi
  GROW_LOADS="load_before=${la0// /,} load_after=$(loadavg | tr ' ' ,)"
  MOVED=$(node_bytes 6 | awk '$1 == "n4" || $1 == "n5" || $1 == "n6" { r += $2; d += $3 } END { printf "%.1f %.1f", r / 1048576, d / 1048576 }')
  local word=balanced
  [ "$ok" != 1 ] && word="NOT balanced"
  echo "$LAYOUT $REP $T_ADD $T_BAL $(awk -v a="$T_ADD" -v b="$T_BAL" 'BEGIN{printf "%.1f", (b - a) / 1000}') $MOVED $word $GROW_LOADS" >>"$SUMMARY"
  log "$TAG: $word after $(((T_BAL - T_ADD) / 1000)) s; moved (MiB reported, on disk): $MOVED"
}

# finish: records each node's bytes against R*D/N (R*D being what the
# groups' replicas should hold together), the nodes' state and logs, and
# removes the nodes, the network and the data.
finish() {
  local eps groups rd i oom
  eps=$(endpoints 6)
  groups=$(metactl --endpoints "$eps" group list --output json)
  rd=$(jq '[.groups[] | (.bytes | tonumber) * (.replicas | length)] | add' <<<"$groups")
  node_bytes 6 | awk -v layout="$LAYOUT" -v rep="$REP" -v rd="$rd" '
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

# one: one repetition of layout placed or every (LAYOUT, REP).
one() {
  local rf=3
  [ "$LAYOUT" = every ] && rf=6
  TAG="$LAYOUT-$REP"
  LAYOUT_FLAGS=""
  start_cluster "$rf" "$DATA_GROUPS"

  measure_all "$LAYOUT 3x$NODE_CPUS" 3
  if [ "$LAYOUT" = placed ] && [ "$CPU_CONTROL" = 1 ]; then
    # shellcheck disable=SC2046
    docker update --cpus "$BIG_CPUS" $(node_names 3) >/dev/null
    measure_all "$LAYOUT 3x$BIG_CPUS" 3
    # shellcheck disable=SC2046
    docker update --cpus "$NODE_CPUS" $(node_names 3) >/dev/null
  fi

  # The rebalance, under a put load that records its throughput.
  start_load "$LAYOUT rebalance" "$OUT/series-$TAG.csv"
  sleep "$LEAD"
  grow "$rf"
  sleep "$TAIL"
  stop_load >/dev/null

  measure_all "$LAYOUT 6x$NODE_CPUS" 6
  finish
}

# data_list: the group list (JSON) of the nodes running, n1-n6 or n1-n3.
# Tries 5 times, 2 s apart.
data_list() {
  local n=3
  docker inspect "$PFX-$TAG-n4" >/dev/null 2>&1 && n=6
  for _ in 1 2 3 4 5; do
    bin/metactl --timeout 10s --endpoints "$(endpoints "$n")" group list --output json && return 0
    sleep 2
  done
  return 1
}

# widest: the data group with the widest range, of a group list on stdin.
widest() {
  jq -r '[.groups[] | select(.kind == "data")
    | {g: .group, w: ([.ranges[]? | (.hi | tonumber) - (.lo | tonumber)] | max // 0)}] | max_by(.w) | .g'
}

# tiling: of a group list on stdin, prints what is wrong with the data
# groups' ranges, or nothing: every data group holds a range and none is
# splitting, and the ranges, sorted, tile the route hash space [0, 2^32)
# without a gap or an overlap.
tiling() {
  jq -r '[.groups[] | select(.kind == "data")] as $d
    | ([$d[] | .ranges[]? | {lo: (.lo | tonumber), hi: (.hi | tonumber)}] | sort_by(.lo)) as $r
    | [ ($d[] | select((.ranges // []) | length == 0) | "\(.group) holds no range"),
        ($d[] | select((.splitChild // "") != "") | "\(.group) still splitting to \(.splitChild)"),
        (if ($r | length) == 0 then "no ranges" else empty end),
        (if ($r | length) > 0 and $r[0].lo != 0 then "the first range starts at \($r[0].lo)" else empty end),
        (range(1; $r | length) as $i | select($r[$i].lo != $r[$i - 1].hi)
          | "a range ends at \($r[$i - 1].hi), the next starts at \($r[$i].lo)"),
        (if ($r | length) > 0 and $r[-1].hi != 4294967296 then "the last range ends at \($r[-1].hi)" else empty end)
      ] | join("; ")'
}

# mark NAME: records a phase boundary of the split layout: NAME, Unix ms,
# the load average and the CPU nanoseconds the nodes used so far.
mark() {
  # shellcheck disable=SC2046
  echo "$1 $(now_ms) $(loadavg | tr ' ' ,) $(cpu_ns $(node_names 6))" >>"$OUT/marks-$TAG.txt"
}

# split_up: splits the data group with the widest range until there are
# SPLIT_TO data groups, one split at a time (metactl group split returns
# once the split is done); each split's seconds go to SPLITS. A failed
# split is logged and recorded, and tried again, SPLIT_TO * 2 tries in all.
split_up() {
  local tries=0 n g t0 t1 rc out
  while :; do
    n=$(data_list | jq '[.groups[] | select(.kind == "data")] | length')
    [ "$n" -ge "$SPLIT_TO" ] && return 0
    tries=$((tries + 1))
    if [ "$tries" -gt $((SPLIT_TO * 2)) ]; then
      log "$TAG: $n of $SPLIT_TO data groups after $((tries - 1)) split tries; giving up"
      return 0
    fi
    g=$(data_list | widest)
    t0=$(now_ms)
    rc=0
    echo "$TAG: split $g" >>"$OUT/splits.log"
    out=$(bin/metactl --timeout "${SPLIT_TIMEOUT}s" --endpoints "$(endpoints 3)" group split "$g" 2>>"$OUT/splits.log") || rc=$?
    t1=$(now_ms)
    echo "$out" >>"$OUT/splits.log"
    if [ "$rc" -ne 0 ]; then
      log "$TAG: split of $g failed after $(((t1 - t0) / 1000)) s (exit $rc): $(tail -n 1 "$OUT/splits.log")"
      echo "$REP $g - $t0 $t1 FAILED" >>"$SPLITS"
      continue
    fi
    echo "$REP $g $(awk '{ print $7 }' <<<"$out") $t0 $t1 ok" >>"$SPLITS"
    log "$TAG: $out ($(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", (b - a) / 1000 }') s)"
  done
}

# phase_rates SERIES MS...: of a metabench --series CSV, for each phase
# between consecutive boundaries (Unix ms; 0 for the run's start), the
# items a second and the failed calls of the samples that fall wholly
# within it: "rate failed" per phase, on one line.
phase_rates() {
  local series=$1
  shift
  awk -F, -v bounds="$*" '
    BEGIN { n = split(bounds, b, " ") }
    NR > 1 {
      if (NR == 2) prev = $1 - $2 * 1000
      for (p = 1; p < n; p++)
        if (prev >= b[p] && $1 <= b[p + 1]) { it[p] += $3; f[p] += $4; dt[p] += $1 - prev }
      prev = $1
    }
    END { for (p = 1; p < n; p++) printf "%s%.1f %d", (p > 1 ? " " : ""), (dt[p] > 0 ? it[p] * 1000 / dt[p] : 0), f[p]; print "" }' "$series"
}

# split_one: one repetition of layout split (REP): 3 nodes with 1 data
# group under a put load, split to SPLIT_TO groups, then grown to 6 nodes.
split_one() {
  TAG="split-$REP"
  LAYOUT_FLAGS="--split-bytes 0" # only this script splits
  : >"$OUT/marks-$TAG.txt"
  start_cluster 3 1
  local series="$OUT/series-$TAG.csv" t0 t_s0 t_s1 t_end result problems
  t0=$(now_ms)
  start_load "split load" "$series"
  mark before-splits
  sleep "$SPLIT_PHASE"
  t_s0=$(now_ms)
  mark splitting
  log "$TAG: splitting data-0 up to $SPLIT_TO data groups"
  split_up
  t_s1=$(now_ms)
  mark after-splits
  sleep "$SPLIT_PHASE"
  mark growth
  grow 3
  mark after-growth
  sleep "$SPLIT_PHASE"
  problems=$(data_list | tiling) || problems="group list failed"
  data_list >"$OUT/ranges-$TAG.json" 2>&1 || true
  t_end=$(now_ms)
  mark end
  result=$(stop_load)
  echo "$REP $t0 $t_s0 $t_s1 $T_ADD $T_BAL $t_end $(phase_rates "$series" 0 "$t_s0" "$t_s1" "$T_ADD" "$T_BAL" "$t_end")" >>"$PHASES"
  echo "$REP ${problems:-ok}" >>"$OUT/tiling.txt"
  [ -n "$result" ] || result='{"first_error": "no result from the load"}'
  jq -r --arg rep "$REP" '"rep \($rep): \(.done) calls, \(.ok) ok, \(.errors_definite) definite, \(.errors_unknown) unknown, \(.missing) missing; first error: \(.first_error // "none")"
    + (if .error_kinds then "; by kind: " + ([.error_kinds | to_entries[] | "\(.key) \(.value)"] | join(", ")) else "" end)' \
    <<<"$result" >>"$OUT/errors.txt"
  [ -n "$problems" ] && log "$TAG: ranges: $problems"
  # Load average and the nodes' cores per phase, from the marks.
  awk -v rep="$REP" '
    NR > 1 { printf "split rep %s %-13s load average at start %s, at end %s; nodes used %.2f cores\n", rep, name, la, $3, ($4 - c) / 1e6 / ($2 - t) }
    { name = $1; t = $2; la = $3; c = $4 }' "$OUT/marks-$TAG.txt" >>"$LOADS"
  finish
}

make build >"$OUT/build.log" 2>&1 || { cat "$OUT/build.log" >&2; exit 1; }
NODE_IMG=$(bin/metachaos image --binary bin/metanode --repo meta-scale-node 2>>"$OUT/build.log")
BENCH_IMG=$(bin/metachaos image --binary bin/metabench --repo meta-scale-bench 2>>"$OUT/build.log")
: >"$OUT/bytes.txt"
log "images $NODE_IMG $BENCH_IMG; $(nproc) cores; load average $(loadavg); results in $OUT"
for REP in $(seq 1 "$REPS"); do
  for LAYOUT in $LAYOUTS; do
    case "$LAYOUT" in
      placed | every) one ;;
      split) split_one ;;
      *) log "SCALE_LAYOUTS: unknown layout $LAYOUT (placed, every, split)"; exit 2 ;;
    esac
  done
done

# pair A B: the results of label A then label B, for a two-column compare.
pair() { jq -c --arg l "$1" 'select(.label == $l)' "$RESULTS"; jq -c --arg l "$2" 'select(.label == $l)' "$RESULTS"; }

echo
echo "Scale-out: $REPS repetition(s), $DUR per measurement; nodes ${NODE_CPUS} CPU and $NODE_MEM each (GOMEMLIMIT $NODE_GOMEMLIMIT),"
echo "$DATA_GROUPS data groups; key 32 B, value 256 B; puts $PUT_CLIENTS clients, sessions $SESSION_CLIENTS clients x batch $SESSION_BATCH;"
echo "$(nproc) cores shared with whatever else runs, $(date -u +%Y-%m-%dT%H:%MZ). Medians over the repetitions; min-max is the range."
if [ -s "$RESULTS" ]; then
  echo
  bin/metabench compare --median "$RESULTS"
fi
for l in $LAYOUTS; do
  [ "$l" = split ] && continue
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
if [ -s "$PHASES" ]; then
  echo
  echo "Split, then grow (layout split): 3 nodes with 1 data group split to $SPLIT_TO data groups, one split at a time"
  echo "(each time the group with the widest range), under a $PUT_CLIENTS-client put load; then n4-n6 added; $SPLIT_PHASE s of load"
  echo "before the splits, between the splits and the growth, and after balanced."
  echo "Puts/s per phase (the load's one-second samples wholly within the phase; failed calls in brackets):"
  printf '  %-7s %18s %18s %18s %18s %18s\n' "" "before splits" "during splits" "after (3 nodes)" "during growth" "after (6 nodes)"
  awk '{ printf "  rep %-3s %10.1f (%5d) %10.1f (%5d) %10.1f (%5d) %10.1f (%5d) %10.1f (%5d)\n", $1, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17 }' "$PHASES"
  line="  median "
  for c in 8 10 12 14 16; do line="$line $(printf '%18s' "$(awk -v c="$c" '{ print $c }' "$PHASES" | median_range)")"; done
  echo "$line"
  line="  seconds"
  for c in 2 3 4 5 6; do line="$line $(printf '%18s' "$(awk -v c="$c" '{ printf "%.1f\n", ($(c + 1) - $c) / 1000 }' "$PHASES" | median_range)")"; done
  echo "$line (phase lengths, median and range)"
  echo "Splits (seconds each, from metactl group split to its return):"
  awk '{ n[$1]++; if ($6 != "ok") bad[$1]++; else { d = ($5 - $4) / 1000; l[$1] = l[$1] sprintf(" %s>%s %.1f", $2, $3, d) }
         if (!($1 in a) || $4 < a[$1]) a[$1] = $4; if ($5 > b[$1]) b[$1] = $5 }
       END { for (r in n) printf "  rep %s: %d splits (%d failed) in %.1f s:%s\n", r, n[r], bad[r], (b[r] - a[r]) / 1000, l[r] }' "$SPLITS" | sort -n -k2
  echo "  each split: median $(awk '$6 == "ok" { printf "%.1f\n", ($5 - $4) / 1000 }' "$SPLITS" | median_range) s over $(awk '$6 == "ok"' "$SPLITS" | wc -l) splits; $(awk '$6 != "ok"' "$SPLITS" | wc -l) failed"
  echo "  rebalance after the splits (first member add to balanced): $(awk '$1 == "split" { print $5 }' "$SUMMARY" | median_range) s"
  echo "Data groups' ranges at the end (every group holds a range; together they tile [0, 2^32)):"
  sed 's/^/  rep /' "$OUT/tiling.txt"
  echo "Errors the load saw (the client retries routing errors itself; unknown outcomes are counted apart):"
  sed 's/^/  /' "$OUT/errors.txt"
  args=()
  while read -r rep _ ts0 ts1 ta tb _; do
    args+=(--series "rep$rep=$OUT/series-split-$rep.csv" --window "rep$rep=$ts0,$ts1,splits" --window "rep$rep=$ta,$tb,growth")
    bin/metachaos plot --out "$OUT/split-$rep.svg" --series "rep$rep=$OUT/series-split-$rep.csv" \
      --window "rep$rep=$ts0,$ts1,splits" --window "rep$rep=$ta,$tb,growth" \
      --title "rep $rep: puts/s, $PUT_CLIENTS clients; 1 data group split to $SPLIT_TO on 3 nodes, then n4-n6 added (shaded)" &&
      echo "plot: $OUT/split-$rep.svg"
  done <"$PHASES"
  bin/metachaos plot --out "$OUT/split.svg" "${args[@]}" \
    --title "puts/s, $PUT_CLIENTS clients: splits 1 to $SPLIT_TO data groups, then n4-n6 added (shaded per repetition)" &&
    echo "plot: $OUT/split.svg"
fi
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
  [ "$l" = split ] && continue
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
