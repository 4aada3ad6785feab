#!/usr/bin/env bash
# Starts or stops the local 3-node cluster of `make run`:
# gRPC on 127.0.0.1:7001-7003, data and logs under ./data.
#   ci/cluster.sh start | stop | status
# META_NODE_FLAGS adds flags to every node, with {i} replaced by the node's
# number, e.g. META_NODE_FLAGS='--debug-listen 127.0.0.1:606{i}' serves
# pprof on 6061-6063. META_DATA moves the data (default ./data) and
# META_BASE_PORT the ports (default 7001: 7001-7003); META_NODE_BIN runs
# another metanode binary (default bin/metanode, e.g. an older build for an
# A/B comparison: ci/idlecpu.sh). Each node serves
# /metrics, /livez and /readyz on META_BASE_PORT+2000+i-1 (9001-9003 by
# default). META_TLS=1 (make run-tls) turns on mutual TLS and
# authentication: a development CA, member certificates and an admin
# client certificate are made under $META_DATA/tls on first use (metactl
# certs), with a bearer token for an admin in tls/admin.token (the nodes'
# --auth-tokens file tls/tokens holds only its hash); then
# `bin/metactl --tls-dir data/tls status` works, and metactl without
# --tls-dir is refused.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${META_DATA:-./data}
NODE_FLAGS=${META_NODE_FLAGS:-}
NODE_BIN=${META_NODE_BIN:-bin/metanode}
B=${META_BASE_PORT:-7001}
PORTS=($B $((B+1)) $((B+2)))
MPORTS=($((B+2000)) $((B+2001)) $((B+2002)))
IC="n1=127.0.0.1:$B,n2=127.0.0.1:$((B+1)),n3=127.0.0.1:$((B+2))"
EPS="127.0.0.1:$B,127.0.0.1:$((B+1)),127.0.0.1:$((B+2))"
CTL=(bin/metactl --endpoints "$EPS")
if [ "${META_TLS:-0}" = 1 ]; then
  CTL+=(--tls-dir "$DATA/tls")
fi

# tls_setup makes the development CA, certificates and token once.
tls_setup() {
  [ -f "$DATA/tls/ca.crt" ] && return 0
  bin/metactl certs "$DATA/tls" --members n1,n2,n3 >/dev/null
  bin/metactl auth token admin admin-token | {
    read -r _ tok
    read -r line
    (umask 077 && echo "$tok" >"$DATA/tls/admin.token" && echo "$line" >"$DATA/tls/tokens")
  }
}

running() { [ -f "$DATA/n$1.pid" ] && kill -0 "$(cat "$DATA/n$1.pid")" 2>/dev/null; }

start() {
  mkdir -p "$DATA"
  local tls_flags=""
  if [ "${META_TLS:-0}" = 1 ]; then
    tls_setup
    tls_flags="--tls-dir $DATA/tls/n{i} --auth --auth-tokens $DATA/tls/tokens"
  fi
  for i in 1 2 3; do
    if running $i; then echo "n$i already running (pid $(cat "$DATA/n$i.pid"))"; continue; fi
    nohup "$NODE_BIN" --id "n$i" --data-dir "$DATA/n$i" --listen "127.0.0.1:${PORTS[$((i-1))]}" \
      --metrics-listen "127.0.0.1:${MPORTS[$((i-1))]}" --initial-cluster "$IC" ${tls_flags//\{i\}/$i} ${NODE_FLAGS//\{i\}/$i} >>"$DATA/n$i.log" 2>&1 &
    echo $! >"$DATA/n$i.pid"
  done
  # Wait until the cluster serves a linearizable read.
  for _ in $(seq 1 150); do
    if "${CTL[@]}" --timeout 2s member list >/dev/null 2>&1; then
      echo "meta cluster is up: endpoints $EPS (data and logs in $DATA; stop with 'make stop')"
      if [ "${META_TLS:-0}" = 1 ]; then
        echo "mutual TLS and authentication on: bin/metactl --tls-dir $DATA/tls ... (CA, certificates and an admin token in $DATA/tls)"
      fi
      echo "metrics: http://127.0.0.1:{${MPORTS[0]},${MPORTS[1]},${MPORTS[2]}}/metrics (also /livez, /readyz)"
      "${CTL[@]}" status
      return 0
    fi
    sleep 0.2
  done
  echo "cluster did not become ready in 30s; see $DATA/n*.log" >&2
  tail -n 20 "$DATA"/n*.log >&2 || true
  return 1
}

stop() {
  for i in 1 2 3; do
    if running $i; then kill -TERM "$(cat "$DATA/n$i.pid")"; fi
  done
  for i in 1 2 3; do
    for _ in $(seq 1 150); do running $i || break; sleep 0.1; done
    if running $i; then kill -KILL "$(cat "$DATA/n$i.pid")"; fi
    rm -f "$DATA/n$i.pid"
  done
  echo "meta cluster stopped"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) "${CTL[@]}" status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
