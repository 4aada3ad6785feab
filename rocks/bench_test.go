package rocks

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/hashicorp/raft"
)

// openBench opens a database with the production defaults.
func openBench(b *testing.B, groups ...string) *DB {
	b.Helper()
	db, err := Open(DefaultOptions(b.TempDir()), groups)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = db.Close() })
	return db
}

func benchLogs(from uint64, n, size int) []*raft.Log {
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i)
	}
	logs := make([]*raft.Log, n)
	for i := range logs {
		logs[i] = &raft.Log{Index: from + uint64(i), Term: 3, Type: raft.LogCommand, Data: data}
	}
	return logs
}

// BenchmarkStoreLogs measures synced appends of 256-byte entries: one fsync
// per call, so the per-entry cost falls with the batch size.
func BenchmarkStoreLogs(b *testing.B) {
	for _, n := range []int{1, 64} {
		b.Run(fmt.Sprintf("entries=%d", n), func(b *testing.B) {
			ls := mustLogStore(b, openBench(b, "g"), "g")
			logs := benchLogs(1, n, 256)
			b.SetBytes(int64(n * 256))
			next := uint64(1)
			b.ResetTimer()
			for b.Loop() {
				for i, l := range logs {
					l.Index = next + uint64(i)
				}
				if err := ls.StoreLogs(logs); err != nil {
					b.Fatal(err)
				}
				next += uint64(n)
			}
			b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "entries/s")
		})
	}
}

// BenchmarkGetLog reads random entries of a 100,000-entry log (memtable and
// SST files, warm block cache).
func BenchmarkGetLog(b *testing.B) {
	db := openBench(b, "g")
	ls := mustLogStore(b, db, "g")
	const total = 100_000
	for i := uint64(1); i <= total; i += 1000 {
		if err := ls.StoreLogs(benchLogs(i, 1000, 256)); err != nil {
			b.Fatal(err)
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	var l raft.Log
	for b.Loop() {
		if err := ls.GetLog(1+r.Uint64N(total), &l); err != nil {
			b.Fatal(err)
		}
	}
}

func benchKey(i uint64) []byte {
	k := make([]byte, 32)
	copy(k, "user/key/")
	binary.BigEndian.PutUint64(k[24:], i)
	return k
}

// BenchmarkBatchCommit commits batches of 100 puts (32-byte keys, 200-byte
// values) into a data space, unsynced (the state machine's way) and synced.
func BenchmarkBatchCommit(b *testing.B) {
	for _, sync := range []bool{false, true} {
		b.Run(fmt.Sprintf("puts=100/sync=%v", sync), func(b *testing.B) {
			db := openBench(b, "g")
			s := mustData(b, db, "g")
			val := make([]byte, 200)
			next := uint64(0)
			b.SetBytes(100 * (32 + 200))
			for b.Loop() {
				batch := db.NewBatch()
				for range 100 {
					batch.Put(s, benchKey(next), val)
					next++
				}
				if err := batch.Commit(sync); err != nil {
					b.Fatal(err)
				}
				batch.Close()
			}
		})
	}
}

// BenchmarkSpaceGet reads random keys among 200,000 (32-byte keys, 200-byte
// values), flushed to SST files, warm block cache.
func BenchmarkSpaceGet(b *testing.B) {
	db := openBench(b, "g")
	s := mustData(b, db, "g")
	const total = 200_000
	val := make([]byte, 200)
	for i := uint64(0); i < total; i += 1000 {
		batch := db.NewBatch()
		for j := i; j < i+1000; j++ {
			batch.Put(s, benchKey(j), val)
		}
		if err := batch.Commit(false); err != nil {
			b.Fatal(err)
		}
		batch.Close()
	}
	if err := db.Flush(); err != nil {
		b.Fatal(err)
	}
	r := rand.New(rand.NewPCG(3, 4))
	for b.Loop() {
		if _, found, err := s.Get(benchKey(r.Uint64N(total))); err != nil || !found {
			b.Fatalf("Get: found %v, err %v", found, err)
		}
	}
}
