#!/usr/bin/env bash
# Snapshot storage figures on this machine, before and after snapshots
# became markers that ship SST files (sm.SnapStore): bytes on disk per
# session, and snapshot install throughput to a new follower. A maintainer
# runs it by hand; it is not part of make test.
#
#   ci/snapbench.sh [disk|install|all]        (default all)
#
# "after" is this tree's sm benchmarks BenchmarkSessionsOnDisk and
# BenchmarkSnapshotInstall (sm/bench_test.go says what they measure).
# "before" is the code of SNAPBENCH_BEFORE (default cc18dd7, the last
# commit whose groups used raft's FileSnapshotStore, retaining 2, with
# METASNP1 record streams), exported with git archive into a temporary
# directory, with the same benchmarks written for that store (below; the
# loading and measuring helpers are copied from sm/bench_test.go). Before
# and after alternate, SNAPBENCH_ROUNDS times, because the machine is
# shared and its load moves the throughput figures (the disk figures do not
# depend on it); the load average is printed with each run.
#
# Settings (environment):
#   SNAPBENCH_ROUNDS      2
#   SNAPBENCH_BEFORE      cc18dd7
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
BEFORE=${SNAPBENCH_BEFORE:-cc18dd7}
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
TMP=$(mktemp -d /tmp/snapbench.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
git archive "$BEFORE" | tar -x -C "$TMP"
# The helpers of this tree's benchmarks, then the before benchmarks.
sed '/^\/\/ BenchmarkSessionsOnDisk loads/,$d' sm/bench_test.go >"$TMP/sm/bench_test.go"
cat >>"$TMP/sm/bench_test.go" <<'EOF'
var testConf = raft.Configuration{Servers: []raft.Server{
	{Suffrage: raft.Voter, ID: "n1", Address: "n1:1"},
	{Suffrage: raft.Voter, ID: "n2", Address: "n2:1"},
}}

// BEFORE: raft's FileSnapshotStore retaining 2, as metanode configured
// it; Machine.Snapshot streams METASNP1 records into it. Two snapshots are
// taken, as raft keeps two.
func BenchmarkSessionsOnDisk(b *testing.B) {
	n := benchSessions(b)
	for i := 0; i < b.N; i++ {
		dir := b.TempDir()
		db, m := benchDB(b, dir)
		index := loadSessions(b, m, n)
		_, trans := raft.NewInmemTransport("n1")
		store, err := raft.NewFileSnapshotStore(filepath.Join(dir, "snap"), 2, io.Discard)
		if err != nil {
			b.Fatal(err)
		}
		for j := range 2 {
			snap, err := m.Snapshot()
			if err != nil {
				b.Fatal(err)
			}
			sink, err := store.Create(raft.SnapshotVersionMax, index+uint64(j), 1, testConf, 1, trans)
			if err != nil {
				b.Fatal(err)
			}
			if err := snap.Persist(sink); err != nil {
				b.Fatal(err)
			}
			snap.Release()
		}
		settle(b, db, m)
		dbBytes, snapBytes := duBytes(b, filepath.Join(dir, "db")), duBytes(b, filepath.Join(dir, "snap"))
		b.ReportMetric(float64(dbBytes)/float64(n), "db-B/session")
		b.ReportMetric(float64(snapBytes)/float64(n), "snap-B/session")
		b.ReportMetric(float64(dbBytes+snapBytes)/float64(n), "B/session")
		b.ReportMetric(float64(userBytes(b, m))/float64(n), "user-B/session")
		m.Close()
		_ = db.Close()
	}
}

// BEFORE: the leader's snapshot already sits in its FileSnapshotStore
// (writing it, at every snapshot, is "persist"); installing is Open, copy
// into the follower's FileSnapshotStore, Open, Restore (record by record).
func BenchmarkSnapshotInstall(b *testing.B) {
	n := benchSessions(b)
	dir := b.TempDir()
	db, m := benchDB(b, filepath.Join(dir, "leader"))
	defer db.Close()
	index := loadSessions(b, m, n)
	settle(b, db, m)
	user := userBytes(b, m)
	_, trans := raft.NewInmemTransport("n1")
	store, err := raft.NewFileSnapshotStore(filepath.Join(dir, "leader", "snap"), 2, io.Discard)
	if err != nil {
		b.Fatal(err)
	}
	var id string
	b.Run("persist", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			snap, _ := m.Snapshot()
			sink, err := store.Create(raft.SnapshotVersionMax, index, 1, testConf, 1, trans)
			if err != nil {
				b.Fatal(err)
			}
			if err := snap.Persist(sink); err != nil {
				b.Fatal(err)
			}
			snap.Release()
			id = sink.ID()
		}
		b.ReportMetric(float64(user)/(1<<20)/(b.Elapsed().Seconds()/float64(b.N)), "MiB/s")
	})
	b.Run("unlimited", func(b *testing.B) {
		var streamed int64
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			fdir := filepath.Join(dir, fmt.Sprintf("follower-%d", i))
			fdb, fm := benchDB(b, fdir)
			fstore, err := raft.NewFileSnapshotStore(filepath.Join(fdir, "snap"), 2, io.Discard)
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			meta, rc, err := store.Open(id)
			if err != nil {
				b.Fatal(err)
			}
			fsink, err := fstore.Create(meta.Version, meta.Index, meta.Term, meta.Configuration, meta.ConfigurationIndex, trans)
			if err != nil {
				b.Fatal(err)
			}
			if streamed, err = io.Copy(fsink, rc); err != nil || streamed != meta.Size {
				b.Fatalf("copied %d of %d bytes: %v", streamed, meta.Size, err)
			}
			_ = rc.Close()
			if err := fsink.Close(); err != nil {
				b.Fatal(err)
			}
			_, frc, err := fstore.Open(fsink.ID())
			if err != nil {
				b.Fatal(err)
			}
			if err := fm.Restore(frc); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			if fm.AppliedIndex() != m.AppliedIndex() {
				b.Fatalf("follower at %d, leader at %d", fm.AppliedIndex(), m.AppliedIndex())
			}
			fm.Close()
			_ = fdb.Close()
			_ = os.RemoveAll(fdir)
			b.StartTimer()
		}
		b.ReportMetric(float64(user)/(1<<20)/(b.Elapsed().Seconds()/float64(b.N)), "MiB/s")
		b.ReportMetric(float64(user)/(1<<20), "user-MiB")
		b.ReportMetric(float64(streamed)/(1<<20), "stream-MiB")
	})
}
EOF

bench() { # side bench sessions states benchtime
	local dir=$AFTER
	[ "$1" = before ] && dir=$TMP
	echo "== $1 $2 sessions=$3 states=$4 | $(uptime | sed 's/.*load/load/')"
	(cd "$dir" && META_BENCH_SESSIONS=$3 META_BENCH_STATES=$4 \
		go test -run '^$' -bench "$2" -benchtime "$5" -timeout 60m ./sm/ 2>&1 |
		grep -E '^Benchmark|FAIL|panic' || true)
}

for round in $(seq "$ROUNDS"); do
	for side in before after; do
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
