package rocks

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/linxGnu/grocksdb"
)

// Options configure one node's RocksDB. Build them with DefaultOptions and
// change what you need; Open calls Validate.
//
// # Memory budget
//
// RocksDB's memory is bounded by these settings, not by the number of keys:
//
//	native memory ≈ BlockCacheBytes                      data, index and filter blocks (shared LRU)
//	              + WriteBufferBytes                      all memtables of all column families
//	              + CFWriteBufferBytes                    overshoot: one memtable may fill while the
//	                                                      largest is being flushed
//	              + MaxOpenFiles × ~8 KiB                 table readers (their index and filter
//	                                                      blocks live in the block cache)
//	              + MaxBackgroundJobs × a few MiB         flush and compaction buffers
//	              + allocator overhead                    see MallocArenas
//
// Index and filter blocks are charged to the block cache
// (cache_index_and_filter_blocks, high priority), so the bloom filters and
// indexes of a growing data set compete for the same budget instead of
// growing beside it. The write buffer manager (SetDbWriteBufferSize) flushes
// the largest memtable when the memtables of all column families together
// approach WriteBufferBytes, however many groups the node hosts.
//
// With the defaults that is 128 + 64 + 8 + 4 + a few MiB ≈ 210 MiB of
// RocksDB memory at most, plus malloc's overhead and ~20 MiB for the Go
// runtime and libraries. Measured with rocks/internal/memprobe (keys of 32
// bytes, incompressible values of 200 bytes, written through batches, then
// 200,000 random reads and two full scans): RSS peaked at 224–303 MiB for 2
// million keys and at 339 MiB for 10 million keys (2.2 GB of SST files),
// with the block cache full at 128 MiB; RocksDB's own account
// (DB.MemoryUsage) never exceeded 128 MiB at rest. The rest is malloc
// keeping freed blocks: RSS stays at 200–235 MiB after Close.
type Options struct {
	// Dir is the database directory; it is created if missing.
	Dir string

	// BlockCacheBytes is the capacity of the one LRU cache shared by every
	// column family. Index and filter blocks live in it too, with high
	// priority. Default 128 MiB.
	BlockCacheBytes int64

	// WriteBufferBytes is the memtable budget of the whole database, across
	// every column family (RocksDB's write buffer manager). Default 64 MiB.
	WriteBufferBytes int64

	// CFWriteBufferBytes is the size at which one column family's memtable
	// is switched and flushed. It must not exceed WriteBufferBytes. Default
	// 8 MiB.
	CFWriteBufferBytes int64

	// MaxOpenFiles bounds the SST files kept open (and so the table readers
	// kept in memory); -1 keeps every file open. Default 512.
	MaxOpenFiles int

	// MaxBackgroundJobs bounds concurrent flushes and compactions. Default
	// 2, the number of cores of the target machine.
	MaxBackgroundJobs int

	// MaxTotalWALBytes forces a flush of the column families that pin the
	// oldest write-ahead log once the logs exceed this size, so a rarely
	// written column family (a group's stable state) cannot keep old logs
	// alive and lengthen recovery. 0 leaves RocksDB's default
	// (4 × the sum of all write buffers). Default 256 MiB.
	MaxTotalWALBytes int64

	// MallocArenas caps glibc's malloc arenas for the whole process when
	// Open runs (mallopt M_ARENA_MAX); 0 leaves glibc's default (8 per
	// core). RocksDB's blocks are allocated and freed on whatever thread Go
	// runs a call on, and with many arenas freed memory stays reserved in
	// the arena it came from: RSS grows well past the block cache. See
	// limitMallocArenas for the measurement. Default 2.
	MallocArenas int

	// Logger receives the package's few log lines (open, close, the planted
	// bug warning). Nil discards them. RocksDB's own LOG file stays in Dir.
	Logger *slog.Logger
}

const (
	mib = 1 << 20

	// blockSize is the uncompressed size of a data block. 16 KiB keeps the
	// index of a large data set four times smaller than RocksDB's 4 KiB
	// default, at a small CPU cost per point lookup.
	blockSize = 16 << 10

	// bloomBitsPerKey gives a ~1% false-positive rate.
	bloomBitsPerKey = 10
)

// DefaultOptions returns the options meta runs with:
//
//	BlockCacheBytes    128 MiB
//	WriteBufferBytes    64 MiB
//	CFWriteBufferBytes   8 MiB
//	MaxOpenFiles       512
//	MaxBackgroundJobs    2
//	MaxTotalWALBytes   256 MiB
//	MallocArenas         2
//	Logger             nil (discard)
//
// See Options for the memory budget these give: about 210 MiB of RocksDB
// memory whatever the number of keys.
func DefaultOptions(dir string) Options {
	return Options{
		Dir:                dir,
		BlockCacheBytes:    128 * mib,
		WriteBufferBytes:   64 * mib,
		CFWriteBufferBytes: 8 * mib,
		MaxOpenFiles:       512,
		MaxBackgroundJobs:  2,
		MaxTotalWALBytes:   256 * mib,
		MallocArenas:       2,
	}
}

// Validate reports every problem with o at once, each naming its field and
// wrapping ErrInvalidOptions. It does not change o.
func (o Options) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidOptions}, args...)...))
	}
	if o.Dir == "" {
		bad("Dir is empty")
	}
	if o.BlockCacheBytes < mib {
		bad("BlockCacheBytes is %d, want at least %d (1 MiB)", o.BlockCacheBytes, mib)
	}
	if o.WriteBufferBytes < mib {
		bad("WriteBufferBytes is %d, want at least %d (1 MiB)", o.WriteBufferBytes, mib)
	}
	if o.CFWriteBufferBytes < 64<<10 {
		bad("CFWriteBufferBytes is %d, want at least %d (64 KiB)", o.CFWriteBufferBytes, 64<<10)
	}
	if o.CFWriteBufferBytes > o.WriteBufferBytes {
		bad("CFWriteBufferBytes (%d) exceeds WriteBufferBytes (%d)", o.CFWriteBufferBytes, o.WriteBufferBytes)
	}
	if o.MaxOpenFiles != -1 && o.MaxOpenFiles < 20 {
		bad("MaxOpenFiles is %d, want -1 or at least 20", o.MaxOpenFiles)
	}
	if o.MaxBackgroundJobs < 1 {
		bad("MaxBackgroundJobs is %d, want at least 1", o.MaxBackgroundJobs)
	}
	if o.MaxTotalWALBytes < 0 {
		bad("MaxTotalWALBytes is %d, want 0 (RocksDB default) or more", o.MaxTotalWALBytes)
	}
	if o.MallocArenas < 0 {
		bad("MallocArenas is %d, want 0 (glibc default) or more", o.MallocArenas)
	}
	return errors.Join(errs...)
}

// native holds the C objects built from Options that must outlive the DB
// and be destroyed after it.
type native struct {
	opts *grocksdb.Options
	// logOpts serve the raft-log column families: opts without
	// compression (see build).
	logOpts *grocksdb.Options
	cache   *grocksdb.Cache
}

func (n *native) destroy() {
	if n.opts != nil {
		n.opts.Destroy()
		n.opts = nil
	}
	if n.logOpts != nil {
		n.logOpts.Destroy()
		n.logOpts = nil
	}
	if n.cache != nil {
		n.cache.Destroy()
		n.cache = nil
	}
}

// extraOptions are set through RocksDB's option-string parser (see build).
const extraOptions = "avoid_flush_during_shutdown=true;" +
	"memtable_whole_key_filtering=true;memtable_prefix_bloom_size_ratio=0.05"

// build turns Options into RocksDB options. The same options serve the DB
// and every column family but the raft logs': they share one block-based
// table factory, hence one block cache.
//
// Compression is LZ4 on every level. ZSTD on the bottommost level (the
// usual advice) took over a quarter of every node's CPU under a put load
// on a 2-core machine (pprof of `metabench put --clients 256`: libzstd
// 27-29% of each node's samples), because with dynamic level sizes new
// data reaches the bottommost level at once; the disk it saves is not
// worth it here. The raft-log column families are not compressed at all:
// their entries are read back once or twice and deleted within minutes.
//
// avoid_flush_during_shutdown and the memtable bloom filter are not exposed
// by the C API of RocksDB 7.8, so they are set through RocksDB's
// option-string parser on top of the rest. With
// it, Close does not flush memtables: a clean shutdown leaves the same files
// a kill -9 would, and recovery replays the write-ahead log either way. That
// is deliberate. It keeps Close fast and makes every restart exercise the
// crash-recovery path; and data written without the WAL (only the planted
// "nosync" bug does that) is lost on Close exactly as on a crash.
//
// A whole-key bloom filter in every memtable (5% of its size, so bounded by
// --write-buffer) answers "not here" for keys the memtable lacks without
// searching its skiplist: most state-machine reads are such misses (a new
// session, a client without a will, a new key). With it, `metabench
// sessions --batch 100 --clients 20` on the make-run cluster went from
// 46-47k to 54-56k sessions/s.
func (o Options) build() (*native, error) {
	cache := grocksdb.NewLRUCache(uint64(o.BlockCacheBytes))

	bbto := grocksdb.NewDefaultBlockBasedTableOptions()
	defer bbto.Destroy() // the table factory copies it
	bbto.SetBlockCache(cache)
	bbto.SetBlockSize(blockSize)
	bbto.SetFilterPolicy(grocksdb.NewBloomFilterFull(bloomBitsPerKey))
	bbto.SetCacheIndexAndFilterBlocks(true)
	bbto.SetCacheIndexAndFilterBlocksWithHighPriority(true)
	bbto.SetPinL0FilterAndIndexBlocksInCache(true)

	base := grocksdb.NewDefaultOptions()
	defer base.Destroy()
	base.SetCreateIfMissing(true)
	base.SetCreateIfMissingColumnFamilies(true)
	base.SetBlockBasedTableFactory(bbto)
	base.SetDbWriteBufferSize(uint64(o.WriteBufferBytes))
	base.SetWriteBufferSize(uint64(o.CFWriteBufferBytes))
	base.SetMaxWriteBufferNumber(2)
	base.SetMaxOpenFiles(o.MaxOpenFiles)
	base.SetMaxBackgroundJobs(o.MaxBackgroundJobs)
	base.SetEnablePipelinedWrite(true)
	base.SetLevelCompactionDynamicLevelBytes(true)
	base.SetCompression(grocksdb.LZ4Compression)
	base.SetBottommostCompression(grocksdb.LZ4Compression)
	if o.MaxTotalWALBytes > 0 {
		base.SetMaxTotalWalSize(uint64(o.MaxTotalWALBytes))
	}
	base.SetKeepLogFileNum(4)
	base.SetMaxLogFileSize(16 * mib)
	// RocksDB's own info log (LOG) keeps only the header written at open
	// (RocksDB's HEADER_LEVEL, 5, which grocksdb does not name; above it
	// the OPTIONS file is not written). On a full disk the LOG fails a
	// write, and Debian's librocksdb, built with assertions, aborted the
	// process at the next line written to it, which the full disk's own
	// error was (TestFullDiskFailsWritesWithoutAborting). The node's log
	// and metrics say what the storage does.
	base.SetInfoLogLevel(grocksdb.InfoLogLevel(5))
	// A record of the write-ahead log that fails its checksum anywhere but
	// at the very end fails Open instead of ending the replay
	// there, RocksDB's default (point-in-time recovery): that dropped every
	// write after the damaged record, raft's log entries included, and the
	// replica came back without entries it had acknowledged to its leader
	// (a flipped byte in the middle of a node's WAL: its data-0 log went
	// from index 27 to 17, and it was ready again a second later). Only an
	// incomplete last record, a write the crash interrupted before its sync
	// returned (so never acknowledged), is dropped.
	base.SetWALRecoveryMode(grocksdb.TolerateCorruptedTailRecordsRecovery)
	if bugsBuilt && bugWALReplay() {
		// Planted bug (build tag metabugs, META_BUG contains
		// "walreplay"): RocksDB's default recovery again, so a damaged
		// log is replayed up to the damage and the node starts.
		base.SetWALRecoveryMode(grocksdb.PointInTimeRecovery)
	}

	opts, err := grocksdb.GetOptionsFromString(base, extraOptions)
	if err != nil {
		cache.Destroy()
		return nil, fmt.Errorf("rocks: options: %w", err)
	}
	// Statistics give the block-cache hit and stall counters of the
	// node's metrics (Stats).
	opts.EnableStatistics()
	logOpts := opts.Clone()
	logOpts.SetCompression(grocksdb.NoCompression)
	logOpts.SetBottommostCompression(grocksdb.NoCompression)
	return &native{opts: opts, logOpts: logOpts, cache: cache}, nil
}
