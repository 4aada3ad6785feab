#!/usr/bin/env bash
# The MQTT broker benchmark of issue 15: two metamqtt brokers on one meta
# cluster, many MQTT clients (persistent sessions) connecting to both at
# once, then each client reconnecting to the other broker; the same again
# with the brokers' default in-memory store (--store memory) for
# comparison. A maintainer runs it by hand (`make mqttbench`); it is not
# part of make test.
#
# It starts its own 3-node cluster (META_BASE_PORT, default 27301; data in
# MQB_DATA, default /tmp/mqttbench-$$, deleted at the end) and brokers on
# MQB_PORT and MQB_PORT+1 (default 27883), so it does not touch `make run`.
#
#   MQB_CLIENTS   clients per load-generator process (default 18000)
#   MQB_PROCS     load-generator processes, run at once (default 2)
#   MQB_PARALLEL  connects under way per process (default 256)
#
# Each client holds one TCP connection in its load generator and one in a
# broker, so a per-process fd limit (ulimit -n) bounds MQB_CLIENTS, and
# MQB_CLIENTS*MQB_PROCS/2 per broker. Figures: connects/s per phase (all
# processes' clients over the slowest process's time), session present on
# reconnect, and from the brokers' own counters the meta session calls,
# the session writes they carried and the mean batch.
set -euo pipefail
cd "$(dirname "$0")/.."
CLIENTS=${MQB_CLIENTS:-18000}
PROCS=${MQB_PROCS:-2}
PARALLEL=${MQB_PARALLEL:-256}
PORT=${MQB_PORT:-27883}
export META_BASE_PORT=${META_BASE_PORT:-27301}
export META_DATA=${MQB_DATA:-/tmp/mqttbench-$$}
B=$META_BASE_PORT
EPS="127.0.0.1:$B,127.0.0.1:$((B+1)),127.0.0.1:$((B+2))"
BROKERS="127.0.0.1:$PORT,127.0.0.1:$((PORT+1))"

go build -o bin/ ./cmd/metanode ./cmd/metactl ./cmd/metabench ./cmd/metamqtt
ulimit -n "$(ulimit -Hn)" || true
echo "fd limit per process: $(ulimit -n); $CLIENTS clients x $PROCS load generators"

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  ci/cluster.sh stop >/dev/null 2>&1 || true
  rm -rf "$META_DATA"
}
trap cleanup EXIT
ci/cluster.sh start >/dev/null

# run STORE: brokers with --store STORE, the load, then the brokers' stats.
run() {
  local store=$1 logs="$META_DATA/$1"
  mkdir -p "$logs"
  pids=()
  for i in 0 1; do
    bin/metamqtt --broker-id "bench-$store-$i" --mqtt-listen "127.0.0.1:$((PORT+i))" --endpoints "$EPS" \
      --store "$store" --log-level info >"$logs/broker$i.log" 2>&1 &
    pids+=($!)
  done
  for _ in $(seq 1 100); do
    if (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && (exec 3<>/dev/tcp/127.0.0.1/$((PORT+1))) 2>/dev/null; then break; fi
    sleep 0.2
  done
  local gens=()
  for p in $(seq 1 "$PROCS"); do
    bin/metabench mqtt --brokers "$BROKERS" --clients "$CLIENTS" --parallel "$PARALLEL" \
      --prefix "bench-$store-$$-p$p-" --output json >"$logs/gen$p.json" &
    gens+=($!)
  done
  for g in "${gens[@]}"; do wait "$g"; done
  for p in "${pids[@]}"; do kill -TERM "$p"; done
  for p in "${pids[@]}"; do wait "$p" || true; done
  pids=()
  python3 - "$store" "$logs" "$PROCS" <<'PY'
import json, re, sys, glob
store, logs, procs = sys.argv[1], sys.argv[2], int(sys.argv[3])
gens = [json.load(open(f)) for f in sorted(glob.glob(logs + "/gen*.json"))]
for i, name in enumerate(["connect", "reconnect (other broker)"]):
    ph = [g[i] for g in gens]
    clients = sum(p["clients"] for p in ph)
    ok = sum(p["connected"] for p in ph)
    secs = max(p["seconds"] for p in ph)
    present = sum(p["session_present"] for p in ph)
    err = next((p.get("first_error") for p in ph if p.get("first_error")), "")
    print(f"{store:6} {name:26} {ok}/{clients} connected in {secs:.1f}s = {ok/secs:,.0f} conn/s; session present {present}/{clients}" + (f"; first error: {err}" if err else ""))
calls = writes = 0
for f in sorted(glob.glob(logs + "/broker*.log")):
    for line in open(f):
        if "msg=stats" in line and "session_calls" in line:
            m = dict(re.findall(r'(\w+)=("[^"]*"|\S+)', line))
            calls += int(m["session_calls"]); writes += int(m["session_writes"])
if calls:
    print(f"{store:6} meta session calls {calls:,}, session writes {writes:,}, mean batch {writes/calls:.1f} sessions per call")
PY
}
run meta
run memory
