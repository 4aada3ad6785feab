#!/usr/bin/env bash
# Snapshot storage figures on this machine: bytes on disk per session, and
# snapshot install throughput to a new follower, for this tree and, side by
# side, an earlier commit's. A maintainer runs it by hand; it is not part
# of make test.
#
#   ci/snapbench.sh [disk|install|all]        (default all)
#
# "after" is this tree's sm benchmarks BenchmarkSessionsOnDisk and
# BenchmarkSnapshotInstall (sm/bench_test.go says what they measure).
# "before", when SNAPBENCH_BEFORE names a commit, is the same benchmarks of
# that commit's tree (2504655 or later: they came with it), exported with
# git archive into a temporary directory. Before and after alternate,
# SNAPBENCH_ROUNDS times, because the machine is shared and its load moves
# the throughput figures (the disk figures do not depend on it); the load
# average is printed with each run.
#
# The figures against raft's FileSnapshotStore (before sm.SnapStore) were
# measured with this script as of a2eb635, which wrote the benchmarks for
# that store into cc18dd7's tree: `git show a2eb635:ci/snapbench.sh`, run
# from a checkout of a2eb635.
#
# Settings (environment):
#   SNAPBENCH_ROUNDS      2
#   SNAPBENCH_BEFORE      (none: after only)
#   DISK_SESSIONS         1000000   sessions for the disk figure
#   DISK_STATES           "shared unique"
#   INSTALL_SESSIONS      2000000   sessions for the install figure (2M
#                         unique-state sessions are 662 MiB of keys and values)
#   INSTALL_STATES        unique
#   META_BENCH_LIMIT      52428800  the limited install case, bytes/s
set -euo pipefail
cd "$(dirname "$0")/.."

MODE=${1:-all}
ROUNDS=${SNAPBENCH_ROUNDS:-2}
BEFORE=${SNAPBENCH_BEFORE:-}
DISK_SESSIONS=${DISK_SESSIONS:-1000000}
DISK_STATES=${DISK_STATES:-"shared unique"}
INSTALL_SESSIONS=${INSTALL_SESSIONS:-2000000}
INSTALL_STATES=${INSTALL_STATES:-unique}
export META_BENCH_LIMIT=${META_BENCH_LIMIT:-52428800}

case "$MODE" in
disk | install | all) ;;
*)
	echo "usage: ci/snapbench.sh [disk|install|all]" >&2
	exit 2
	;;
esac

AFTER=$(pwd)
SIDES=after
if [ -n "$BEFORE" ]; then
	SIDES="before after"
	TMP=$(mktemp -d /tmp/snapbench.XXXXXX)
	trap 'rm -rf "$TMP"' EXIT
	git archive "$BEFORE" | tar -x -C "$TMP"
	if ! grep -q '^func BenchmarkSnapshotInstall' "$TMP/sm/bench_test.go" 2>/dev/null; then
		echo "SNAPBENCH_BEFORE=$BEFORE: that commit's tree has no sm snapshot benchmarks (they came with 2504655); for raft's FileSnapshotStore see a2eb635's version of this script" >&2
		exit 2
	fi
fi

bench() { # side bench sessions states benchtime
	local dir=$AFTER
	[ "$1" = before ] && dir=$TMP
	echo "== $1 $2 sessions=$3 states=$4 | $(uptime | sed 's/.*load/load/')"
	(cd "$dir" && META_BENCH_SESSIONS=$3 META_BENCH_STATES=$4 \
		go test -run '^$' -bench "$2" -benchtime "$5" -timeout 60m ./sm/ 2>&1 |
		grep -E '^Benchmark|FAIL|panic|\.go:[0-9]+:' || true)
}

for round in $(seq "$ROUNDS"); do
	for side in $SIDES; do
		if [ "$MODE" != install ]; then
			for states in $DISK_STATES; do
				bench "$side" SessionsOnDisk "$DISK_SESSIONS" "$states" 1x
			done
		fi
		if [ "$MODE" != disk ]; then
			for states in $INSTALL_STATES; do
				bench "$side" SnapshotInstall "$INSTALL_SESSIONS" "$states" 2x
			done
		fi
	done
done
