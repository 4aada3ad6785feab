package sm

import (
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/metamq/meta/rocks"
	"github.com/metamq/meta/sm/logpb"
	"github.com/metamq/meta/verify/poll"
)

// BenchmarkSessionsPut measures applying session batches (the reconnect
// storm): ops of `batch` sessions, one op per raft entry, new client ids.
func BenchmarkSessionsPut(b *testing.B) {
	for _, batch := range []int{1, 100, 1000} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			e := newEnv(b, KindData)
			state := make([]byte, 128)
			n := 0
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				sp := &logpb.SessionsPut{Sessions: make([]*logpb.SessionPut, batch)}
				for j := range sp.Sessions {
					sp.Sessions[j] = &logpb.SessionPut{ClientId: fmt.Sprintf("client-%010d", n), BrokerId: "b1", Connected: true, ExpiryIntervalSeconds: 3600, State: state}
					n++
				}
				data, _ := EncodeBatch(&logpb.Batch{Ops: []*logpb.Op{{Op: &logpb.Op_SessionsPut{SessionsPut: sp}}}})
				e.m.Apply(&raft.Log{Index: uint64(i + 1), Type: raft.LogCommand, Data: data})
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "sessions/s")
		})
	}
}

// --- snapshots: disk per session, install throughput ---
//
// Both benchmarks load sessions shaped like `metabench sessions`' (client
// ids of 32 bytes, connected, a 7-day expiry, states of 256 random letters
// that each of 20 workers reuses, batches of 100 sessions per raft entry)
// into one data group. Their sizes come from the environment, so that the
// default run stays short:
//
//	META_BENCH_SESSIONS   sessions loaded (default 100,000)
//	META_BENCH_STATES     "shared" (default): metabench's 20 states, which
//	                      LZ4 compresses well; "unique": every session its
//	                      own random state, which it hardly compresses
//	META_BENCH_LIMIT      BenchmarkSnapshotInstall's bandwidth limit in
//	                      bytes/s for its "limited" case (default 64 MiB/s)
//
// Run them once each, e.g. (the figures in the storage report):
//
//	META_BENCH_SESSIONS=1000000 go test -run '^$' -bench SessionsOnDisk -benchtime 1x ./sm/
//	META_BENCH_SESSIONS=2000000 go test -run '^$' -bench SnapshotInstall -benchtime 3x ./sm/

func benchSessions(b *testing.B) int {
	b.Helper()
	n := 100_000
	if v := os.Getenv("META_BENCH_SESSIONS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n <= 0 {
			b.Fatalf("META_BENCH_SESSIONS=%q: want a positive number", v)
		}
	}
	return n
}

// benchDB opens a database with the node's default options in dir.
func benchDB(b *testing.B, dir string) (*rocks.DB, *Machine) {
	b.Helper()
	db, err := rocks.Open(rocks.DefaultOptions(filepath.Join(dir, "db")), []string{"data-0"})
	if err != nil {
		b.Fatal(err)
	}
	m, err := New(Config{Kind: KindData, Group: "data-0", DB: db, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	ownEverything(b, m)
	return db, m
}

// loadSessions applies n sessions in metabench's shape (see
// META_BENCH_STATES); it returns the raft index reached.
func loadSessions(b *testing.B, m *Machine, n int) uint64 {
	b.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	const letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	states := make([][]byte, 20)
	for i := range states {
		states[i] = make([]byte, 256)
		for j := range states[i] {
			states[i][j] = letters[rng.IntN(len(letters))]
		}
	}
	unique := false
	switch v := os.Getenv("META_BENCH_STATES"); v {
	case "", "shared":
	case "unique":
		unique = true
	default:
		b.Fatalf("META_BENCH_STATES=%q: want shared or unique", v)
	}
	var index uint64
	var logs []*raft.Log
	for first := 0; first < n; first += 100 {
		sp := &logpb.SessionsPut{}
		for i := first; i < min(first+100, n); i++ {
			state := states[(first/100)%len(states)]
			if unique {
				state = make([]byte, 256)
				for j := range state {
					state[j] = letters[rng.IntN(len(letters))]
				}
			}
			sp.Sessions = append(sp.Sessions, &logpb.SessionPut{ClientId: fmt.Sprintf("sess-%027d", i), BrokerId: "bench",
				Connected: true, ExpiryIntervalSeconds: 7 * 24 * 3600, State: state})
		}
		data, err := EncodeBatch(&logpb.Batch{NowUnixNano: int64(first), Ops: []*logpb.Op{{Op: &logpb.Op_SessionsPut{SessionsPut: sp}}}})
		if err != nil {
			b.Fatal(err)
		}
		index++
		logs = append(logs, &raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: data})
		if len(logs) == 64 {
			m.ApplyBatch(logs)
			logs = logs[:0]
		}
	}
	m.ApplyBatch(logs)
	return index
}

// userBytes sums the keys and values of the group's data.
func userBytes(b *testing.B, m *Machine) int64 {
	b.Helper()
	var n int64
	if err := m.space.Scan(userStart, userEnd, func(k, v []byte) bool { n += int64(len(k) + len(v)); return true }); err != nil {
		b.Fatal(err)
	}
	return n
}

// settle flushes the memtables and waits for RocksDB's compactions to end.
func settle(b *testing.B, db *rocks.DB, m *Machine) {
	b.Helper()
	if err := db.Flush(); err != nil {
		b.Fatal(err)
	}
	poll.ForTrue(b, "compactions to finish", 10*time.Minute, func() bool {
		return db.Property("rocksdb.num-running-compactions") == "0" && m.space.Property("rocksdb.compaction-pending") == "0"
	})
}

// BenchmarkSessionsOnDisk loads META_BENCH_SESSIONS sessions into one data
// group, snapshots it as raft does (twice: raft keeps the two latest),
// lets RocksDB settle, and reports the bytes on disk per session: the
// database's files, the snapshot store's, and their sum.
func BenchmarkSessionsOnDisk(b *testing.B) {
	n := benchSessions(b)
	for i := 0; i < b.N; i++ {
		dir := b.TempDir()
		db, m := benchDB(b, dir)
		index := loadSessions(b, m, n)
		store, err := NewSnapStore(SnapStoreConfig{Dir: filepath.Join(dir, "snap"), Machine: m})
		if err != nil {
			b.Fatal(err)
		}
		for j := range 2 {
			snap, err := m.Snapshot()
			if err != nil {
				b.Fatal(err)
			}
			sink, err := store.Create(raft.SnapshotVersionMax, index+uint64(j), 1, testConf, 1, nil)
			if err != nil {
				b.Fatal(err)
			}
			if err := snap.Persist(sink); err != nil {
				b.Fatal(err)
			}
		}
		settle(b, db, m)
		dbBytes, snapBytes := dirBytes(b, filepath.Join(dir, "db")), dirBytes(b, filepath.Join(dir, "snap"))
		b.ReportMetric(float64(dbBytes)/float64(n), "db-B/session")
		b.ReportMetric(float64(snapBytes)/float64(n), "snap-B/session")
		b.ReportMetric(float64(dbBytes+snapBytes)/float64(n), "B/session")
		b.ReportMetric(float64(userBytes(b, m))/float64(n), "user-B/session")
		m.Close()
		_ = db.Close()
	}
}

// BenchmarkSnapshotInstall measures installing a snapshot of a group of
// META_BENCH_SESSIONS sessions on a new follower, as raft does it: the
// leader opens its latest snapshot (exporting SST files from its data),
// the stream is copied into the follower's store (raft's installSnapshot),
// and the follower restores it (ingestion). No network: the figure is the
// storage path's. MiB/s counts the group's user data (keys and values),
// the same for any format; stream-MiB is what would cross the network.
// The "limited" case sends at META_BENCH_LIMIT bytes/s.
func BenchmarkSnapshotInstall(b *testing.B) {
	n := benchSessions(b)
	limit := int64(64 << 20)
	if v := os.Getenv("META_BENCH_LIMIT"); v != "" {
		var err error
		if limit, err = strconv.ParseInt(v, 10, 64); err != nil || limit <= 0 {
			b.Fatalf("META_BENCH_LIMIT=%q: want a positive number of bytes/s", v)
		}
	}
	dir := b.TempDir()
	db, m := benchDB(b, filepath.Join(dir, "leader"))
	defer db.Close()
	index := loadSessions(b, m, n)
	settle(b, db, m)
	user := userBytes(b, m)
	for _, tc := range []struct {
		name  string
		limit int64
	}{{"unlimited", 0}, {"limited", limit}} {
		b.Run(tc.name, func(b *testing.B) {
			store, err := NewSnapStore(SnapStoreConfig{Dir: filepath.Join(dir, "leader", "snap-"+tc.name), Machine: m,
				Limiter: NewLimiter(tc.limit)})
			if err != nil {
				b.Fatal(err)
			}
			snap, _ := m.Snapshot()
			sink, err := store.Create(raft.SnapshotVersionMax, index, 1, testConf, 1, nil)
			if err != nil {
				b.Fatal(err)
			}
			if err := snap.Persist(sink); err != nil {
				b.Fatal(err)
			}
			id := sink.ID()
			var streamed int64
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				fdir := filepath.Join(dir, fmt.Sprintf("follower-%s-%d", tc.name, i))
				fdb, fm := benchDB(b, fdir)
				fstore, err := NewSnapStore(SnapStoreConfig{Dir: filepath.Join(fdir, "snap"), Machine: fm})
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()

				meta, rc, err := store.Open(id)
				if err != nil {
					b.Fatal(err)
				}
				fsink, err := fstore.Create(meta.Version, meta.Index, meta.Term, meta.Configuration, meta.ConfigurationIndex, nil)
				if err != nil {
					b.Fatal(err)
				}
				streamed, err = io.Copy(fsink, rc)
				if err != nil || streamed != meta.Size {
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
}

// BenchmarkApplyPuts measures the apply path of KV puts through the real
// RocksDB applier, as a replica runs it: raft hands ApplyBatch up to 64
// entries at a time, each entry a Batch of `ops` puts (the leader packs
// concurrent proposals into one entry). Keys of 32 B, values of 256 B;
// "new" writes a fresh key every time, "overwrite" cycles over 1,000 keys
// written before the timer starts. One op of the benchmark is one put;
// cpu-ns/put is the process's CPU (user and system, RocksDB's threads
// included) over the timed loop, divided by the puts. The entries are
// encoded before the timer starts: a follower only decodes them.
//
//	go test -run '^$' -bench ApplyPuts -count 5 ./sm/
func BenchmarkApplyPuts(b *testing.B) {
	for _, ops := range []int{1, 64} {
		for _, overwrite := range []bool{false, true} {
			name := fmt.Sprintf("ops=%d/new", ops)
			if overwrite {
				name = fmt.Sprintf("ops=%d/overwrite", ops)
			}
			b.Run(name, func(b *testing.B) {
				db, m := benchDB(b, b.TempDir())
				defer func() { m.Close(); _ = db.Close() }()
				value := make([]byte, 256)
				key := func(i int) []byte { return fmt.Appendf(nil, "bench/key/%022d", i) }
				index := uint64(0)
				entries := func(first, n int) []*raft.Log {
					var logs []*raft.Log
					for i := first; i < first+n; i += ops {
						batch := &logpb.Batch{NowUnixNano: int64(i)}
						for j := i; j < min(i+ops, first+n); j++ {
							k := j
							if overwrite {
								k %= 1000
							}
							batch.Ops = append(batch.Ops, &logpb.Op{Op: &logpb.Op_Put{Put: &logpb.KVPut{Key: key(k), Value: value}}})
						}
						data, err := EncodeBatch(batch)
						if err != nil {
							b.Fatal(err)
						}
						index++
						logs = append(logs, &raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: data})
					}
					return logs
				}
				apply := func(logs []*raft.Log) {
					for len(logs) > 0 {
						n := min(64, len(logs))
						for _, r := range m.ApplyBatch(logs[:n]) {
							res := r.(*BatchResult)
							if len(res.Results) == 0 || res.Results[0].Code != logpb.Code_CODE_OK {
								b.Fatalf("entry %d: %v", res.Index, res.Results)
							}
						}
						logs = logs[n:]
					}
				}
				if overwrite {
					apply(entries(0, 1000))
				}
				logs := entries(0, b.N)
				b.ReportAllocs()
				cpu0 := processCPU(b)
				b.ResetTimer()
				apply(logs)
				b.StopTimer()
				b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N), "cpu-ns/put")
			})
		}
	}
}

// processCPU returns the user and system CPU time the process has used.
func processCPU(b *testing.B) time.Duration {
	b.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
