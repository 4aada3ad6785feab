package rocks

import (
	"strconv"
	"strings"

	"github.com/linxGnu/grocksdb"
)

// Stats is what the node's metrics report of RocksDB: sizes summed over
// every column family, and counters since the database was opened.
type Stats struct {
	LiveSSTBytes           uint64 // live SST files (the data a compaction would keep)
	TotalSSTBytes          uint64 // every SST file, obsolete ones not yet deleted included
	PendingCompactionBytes uint64 // RocksDB's estimate of the bytes compaction must rewrite
	RunningCompactions     uint64
	MemTableBytes          uint64
	WriteStopped           bool   // writes are stopped (too many L0 files or memtables)
	DelayedWriteRate       uint64 // bytes/s writes are throttled to; 0 when not throttled
	BackgroundErrors       uint64 // background (flush, compaction) errors since open
	BlockCacheUsage        uint64
	BlockCacheCapacity     uint64
	// Counters from RocksDB's statistics.
	BlockCacheHits   uint64
	BlockCacheMisses uint64
	StallMicros      uint64 // time writes waited in stalls
	BytesWritten     uint64
	BytesRead        uint64
}

// Stats reads the figures; zero after Close.
func (db *DB) Stats() Stats {
	if err := db.gate.enter(); err != nil {
		return Stats{}
	}
	defer db.gate.leave()
	var s Stats
	perCF := func(h *grocksdb.ColumnFamilyHandle) {
		s.LiveSSTBytes += db.intPropertyCF("rocksdb.live-sst-files-size", h)
		s.TotalSSTBytes += db.intPropertyCF("rocksdb.total-sst-files-size", h)
		s.PendingCompactionBytes += db.intPropertyCF("rocksdb.estimate-pending-compaction-bytes", h)
		s.MemTableBytes += db.intPropertyCF("rocksdb.cur-size-all-mem-tables", h)
	}
	for _, h := range db.fixed {
		perCF(h)
	}
	for _, g := range db.openGroups() {
		if g.gate.enter() != nil {
			continue // dropped meanwhile
		}
		for _, h := range g.handles {
			perCF(h)
		}
		g.gate.leave()
	}
	s.RunningCompactions, _ = db.db.GetIntProperty("rocksdb.num-running-compactions")
	stopped, _ := db.db.GetIntProperty("rocksdb.is-write-stopped")
	s.WriteStopped = stopped != 0
	s.DelayedWriteRate, _ = db.db.GetIntProperty("rocksdb.actual-delayed-write-rate")
	s.BackgroundErrors, _ = db.db.GetIntProperty("rocksdb.background-errors")
	s.BlockCacheUsage = db.nat.cache.GetUsage()
	s.BlockCacheCapacity = db.nat.cache.GetCapacity()
	t := tickers(db.nat.opts.GetStatisticsString())
	s.BlockCacheHits = t["rocksdb.block.cache.hit"]
	s.BlockCacheMisses = t["rocksdb.block.cache.miss"]
	s.StallMicros = t["rocksdb.stall.micros"]
	s.BytesWritten = t["rocksdb.bytes.written"]
	s.BytesRead = t["rocksdb.bytes.read"]
	return s
}

// BackgroundErrors is the number of background (flush, compaction) errors
// since the database was opened; 0 after Close.
func (db *DB) BackgroundErrors() uint64 {
	if err := db.gate.enter(); err != nil {
		return 0
	}
	defer db.gate.leave()
	v, _ := db.db.GetIntProperty("rocksdb.background-errors")
	return v
}

func (db *DB) intPropertyCF(name string, h *grocksdb.ColumnFamilyHandle) uint64 {
	v, _ := db.db.GetIntPropertyCF(name, h)
	return v
}

// tickers parses the counters ("NAME COUNT : N") of RocksDB's statistics
// string; histogram lines are skipped.
func tickers(s string) map[string]uint64 {
	out := map[string]uint64{}
	for line := range strings.Lines(s) {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), " COUNT : ")
		if !ok {
			continue
		}
		if v, err := strconv.ParseUint(strings.TrimSpace(rest), 10, 64); err == nil {
			out[name] = v
		}
	}
	return out
}
