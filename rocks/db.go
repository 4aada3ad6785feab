package rocks

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/linxGnu/grocksdb"
)

// Column family names. A group g owns g+suffixLog, g+suffixStable and
// g+suffixData; the node owns cfNode; RocksDB owns cfDefault.
const (
	cfDefault    = "default"
	cfNode       = "node"
	suffixLog    = "/log"
	suffixStable = "/stable"
	suffixData   = "/data"
)

var groupSuffixes = []string{suffixLog, suffixStable, suffixData}

// DB is one node's RocksDB. Create it with Open; it is safe for concurrent
// use.
type DB struct {
	dir   string
	log   *slog.Logger
	gate  *gate
	nat   *native
	db    *grocksdb.DB
	fixed []*grocksdb.ColumnFamilyHandle // default, node and unknown column families; destroyed by Close
	node  *Space

	// lifeMu serialises AddGroup and DropGroup. It is held across a whole
	// add or drop, which may wait for calls on the dropped group to finish,
	// so nothing else takes it.
	lifeMu sync.Mutex
	// mu guards groups and names; held only for map and slice operations.
	mu     sync.RWMutex
	groups map[string]*group
	names  []string // sorted group names

	ro      *grocksdb.ReadOptions  // plain reads; read-only after Open, so shared
	syncWO  *grocksdb.WriteOptions // Sync = true
	asyncWO *grocksdb.WriteOptions // Sync = false, WAL on
	logWO   *grocksdb.WriteOptions // raft log writes: syncWO's settings, or the planted bug's

	snapMu sync.Mutex
	snaps  map[*Snapshot]struct{} // guarded by snapMu: snapshots not yet released

	// writeErr is the first error a write, flush or log sync returned
	// (see write).
	writeErr atomic.Pointer[error]

	closeOnce sync.Once
}

// group is one raft group's three column families. Every call that uses
// one of its handles enters gate (after the DB's gate); DropGroup closes
// gate, which waits for the calls in progress, before it drops and
// destroys the handles, so no call ever touches a freed handle.
type group struct {
	gate    *gate
	handles []*grocksdb.ColumnFamilyHandle // log, stable, data (groupSuffixes' order)
	log     *LogStore
	stable  *StableStore
	data    *Space
}

// Open opens (creating if needed) the database in opts.Dir with the node
// column family and the three column families of every group in groups,
// creating the ones that are missing.
//
// A database may already hold groups that groups does not name; Open opens
// them too (RocksDB must open every column family a database has) and
// Groups reports the union. A node that wants the stored groups to match its
// configuration exactly compares ListGroups with it before calling Open.
func Open(opts Options, groups []string) (*DB, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if err := checkGroups(groups); err != nil {
		return nil, err
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if opts.MallocArenas > 0 && !limitMallocArenas(opts.MallocArenas) {
		logger.Warn("rocks: could not cap malloc arenas", "arenas", opts.MallocArenas)
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("rocks: open: %w", err)
	}
	existing, err := listColumnFamilies(opts.Dir)
	if err != nil {
		return nil, err
	}
	// A damaged length in a log's last record reads as a write cut short
	// (waltail.go); the planted bug walreplay replays damaged logs anyway.
	if !(bugsBuilt && bugWALReplay()) {
		if err := checkWALTails(opts.Dir); err != nil {
			return nil, err
		}
	}

	// Every existing column family must be opened; add ours.
	names := append([]string(nil), existing...)
	has := make(map[string]bool, len(names))
	for _, n := range names {
		has[n] = true
	}
	add := func(n string) {
		if !has[n] {
			has[n] = true
			names = append(names, n)
		}
	}
	add(cfDefault)
	add(cfNode)
	all := slices.Clone(groups)
	all = append(all, groupsOf(existing)...)
	slices.Sort(all)
	all = slices.Compact(all)
	for _, g := range all {
		for _, s := range groupSuffixes {
			add(g + s)
		}
	}
	for _, n := range existing {
		if _, _, ok := parseCF(n); !ok && n != cfDefault && n != cfNode {
			logger.Warn("rocks: database has a column family meta does not use", "cf", n)
		}
	}

	nat, err := opts.build()
	if err != nil {
		return nil, err
	}
	cfOpts := make([]*grocksdb.Options, len(names))
	for i, n := range names {
		cfOpts[i] = nat.opts
		if strings.HasSuffix(n, suffixLog) {
			cfOpts[i] = nat.logOpts
		}
	}
	rdb, handles, err := grocksdb.OpenDbColumnFamilies(nat.opts, opts.Dir, names, cfOpts)
	if err != nil {
		nat.destroy()
		if corruption(err) {
			return nil, fmt.Errorf("rocks: open %s: %w: %w", opts.Dir, ErrCorruptFiles, err)
		}
		return nil, fmt.Errorf("rocks: open %s: %w", opts.Dir, err)
	}

	db := &DB{
		dir:     opts.Dir,
		log:     logger,
		gate:    newGate(),
		nat:     nat,
		db:      rdb,
		groups:  make(map[string]*group, len(all)),
		names:   all,
		ro:      grocksdb.NewDefaultReadOptions(),
		syncWO:  grocksdb.NewDefaultWriteOptions(),
		asyncWO: grocksdb.NewDefaultWriteOptions(),
		logWO:   grocksdb.NewDefaultWriteOptions(),
		snaps:   make(map[*Snapshot]struct{}),
	}
	db.syncWO.SetSync(true)
	db.logWO.SetSync(true)
	if bugsBuilt && bugNoSync() {
		// Planted bug (build tag metabugs, META_BUG contains "nosync"): raft
		// log writes skip the write-ahead log, so an acknowledged entry
		// still in a memtable is lost by a crash or by Close.
		db.logWO.SetSync(false)
		db.logWO.DisableWAL(true)
		logger.Warn("rocks: PLANTED BUG nosync active: raft log writes bypass the WAL", "dir", opts.Dir)
	}

	byName := make(map[string]*grocksdb.ColumnFamilyHandle, len(names))
	for i, n := range names {
		byName[n] = handles[i]
	}
	for _, n := range names {
		if g, _, ok := parseCF(n); !ok || !slices.Contains(all, g) {
			db.fixed = append(db.fixed, byName[n])
		}
	}
	db.node = newSpace(db, byName[cfNode], nil, cfNode)
	for _, g := range all {
		hs := make([]*grocksdb.ColumnFamilyHandle, len(groupSuffixes))
		for i, sfx := range groupSuffixes {
			hs[i] = byName[g+sfx]
		}
		db.groups[g] = db.newGroup(g, hs)
	}
	for _, g := range all {
		if err := db.groups[g].log.loadBounds(); err != nil {
			_ = db.Close() // destroys every handle
			return nil, fmt.Errorf("rocks: open %s: group %s: %w", opts.Dir, g, err)
		}
	}
	logger.Info("rocks: opened", "dir", opts.Dir, "groups", all, "column_families", len(names))
	return db, nil
}

// newGroup builds the stores of group name over its handles (in
// groupSuffixes' order); the caller loads the log's bounds.
func (db *DB) newGroup(name string, hs []*grocksdb.ColumnFamilyHandle) *group {
	gt := newGateErr(fmt.Errorf("%w: %q", ErrGroupDropped, name))
	g := &group{
		gate:    gt,
		handles: hs,
		log:     &LogStore{db: db, cf: hs[0], gate: gt, group: name},
		stable:  &StableStore{db: db, cf: hs[1], gate: gt, group: name},
		data:    newSpace(db, hs[2], gt, name+suffixData),
	}
	return g
}

// AddGroup creates the column families of group name ("name/log",
// "name/stable", "name/data") while the database is open, and makes the
// group's stores available. It is idempotent: adding a group the database
// already has does nothing. A name may be added again after DropGroup; it
// then starts empty.
//
// The three column families are created one after another. If one cannot
// be created, AddGroup drops those it created and returns the error; if
// the process dies in between, the next Open finds a partial group and
// completes it (Open creates every missing column family of every group it
// sees), so the group then exists, empty.
func (db *DB) AddGroup(name string) error {
	if err := checkGroups([]string{name}); err != nil {
		return err
	}
	return db.changeGroups(func() error {
		db.mu.RLock()
		_, ok := db.groups[name]
		db.mu.RUnlock()
		if ok {
			return nil
		}
		var hs []*grocksdb.ColumnFamilyHandle
		undo := func() {
			for _, h := range hs {
				if err := db.db.DropColumnFamily(h); err != nil {
					db.log.Warn("rocks: add group: could not drop a column family after a failure", "group", name, "err", err)
				}
				h.Destroy()
			}
		}
		for _, sfx := range groupSuffixes {
			o := db.nat.opts
			if sfx == suffixLog {
				o = db.nat.logOpts
			}
			h, err := db.db.CreateColumnFamily(o, name+sfx)
			if err != nil {
				undo()
				return fmt.Errorf("rocks: add group %s: %w", name, err)
			}
			hs = append(hs, h)
		}
		g := db.newGroup(name, hs)
		if err := g.log.loadBounds(); err != nil {
			undo()
			return fmt.Errorf("rocks: add group %s: %w", name, err)
		}
		db.mu.Lock()
		db.groups[name] = g
		i, _ := slices.BinarySearch(db.names, name)
		db.names = slices.Insert(db.names, i, name)
		db.mu.Unlock()
		db.log.Info("rocks: added group", "group", name)
		return nil
	})
}

// DropGroup drops the column families of group name and everything they
// hold, while the other groups keep working. It is idempotent: dropping a
// group the database does not have does nothing.
//
// The group disappears from Groups at once, and LogStore, StableStore and
// Data stop returning it (ErrUnknownGroup). Stores obtained before keep
// answering calls in progress; DropGroup waits for those, and from then on
// every call on them returns an error wrapping ErrGroupDropped, without
// touching the freed handles. A Batch that recorded writes to the group
// fails to commit. The caller stops whatever uses the group (its raft)
// first; a call that drops the group it is being called from (a Scan
// callback of the group's space) deadlocks.
//
// RocksDB deletes a dropped column family's files when its last handle is
// destroyed, which DropGroup does before it returns (the handle's
// destructor runs RocksDB's obsolete-file purge).
func (db *DB) DropGroup(name string) error {
	return db.changeGroups(func() error {
		db.mu.Lock()
		g, ok := db.groups[name]
		if ok {
			delete(db.groups, name)
			if i, found := slices.BinarySearch(db.names, name); found {
				db.names = slices.Delete(db.names, i, i+1)
			}
		}
		db.mu.Unlock()
		if !ok {
			return nil
		}
		// A compaction of the group in progress (Space.Compact) would
		// hold its gate until it ends: abort it (and any other manual
		// compaction, which simply ends early; none is needed for
		// correctness).
		db.db.DisableManualCompaction()
		defer db.db.EnableManualCompaction()
		g.gate.close() // waits for the calls in progress on the group's stores
		var errs []error
		for _, h := range g.handles {
			if err := db.db.DropColumnFamily(h); err != nil {
				errs = append(errs, err)
			}
		}
		// Destroyed even if a drop failed: Debian's RocksDB aborts at Close on
		// a handle left open. A column family whose drop failed reappears at
		// the next Open, as a group.
		for _, h := range g.handles {
			h.Destroy()
		}
		if err := errors.Join(errs...); err != nil {
			return fmt.Errorf("rocks: drop group %s: %w", name, err)
		}
		db.log.Info("rocks: dropped group", "group", name)
		return nil
	})
}

// changeGroups runs fn, an add or a drop, holding lifeMu and inside the
// database's gate.
func (db *DB) changeGroups(fn func() error) error {
	db.lifeMu.Lock()
	defer db.lifeMu.Unlock()
	if err := db.gate.enter(); err != nil {
		return err
	}
	defer db.gate.leave()
	return fn()
}

// checkGroups reports every unusable group name at once.
func checkGroups(groups []string) error {
	var errs []error
	seen := make(map[string]bool, len(groups))
	for _, g := range groups {
		switch {
		case g == "":
			errs = append(errs, fmt.Errorf("%w: empty", ErrInvalidGroup))
		case len(g) > 128:
			errs = append(errs, fmt.Errorf("%w: %q is longer than 128 bytes", ErrInvalidGroup, g))
		case strings.IndexFunc(g, func(r rune) bool { return !groupRune(r) }) >= 0:
			errs = append(errs, fmt.Errorf("%w: %q: use letters, digits, '.', '_' and '-' only", ErrInvalidGroup, g))
		case seen[g]:
			errs = append(errs, fmt.Errorf("%w: %q listed twice", ErrInvalidGroup, g))
		}
		seen[g] = true
	}
	return errors.Join(errs...)
}

func groupRune(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-'
}

// parseCF splits a group column family name into group and suffix.
func parseCF(name string) (g, suffix string, ok bool) {
	i := strings.LastIndexByte(name, '/')
	if i <= 0 {
		return "", "", false
	}
	g, suffix = name[:i], name[i:]
	if !slices.Contains(groupSuffixes, suffix) {
		return "", "", false
	}
	return g, suffix, true
}

// groupsOf returns the sorted groups that own at least one of names.
func groupsOf(names []string) []string {
	var out []string
	for _, n := range names {
		if g, _, ok := parseCF(n); ok {
			out = append(out, g)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// corruption reports whether err is RocksDB's Corruption status. grocksdb
// hands RocksDB's statuses over as text only, so the code RocksDB's
// Status::ToString puts first is the one thing to go by.
func corruption(err error) bool {
	return strings.HasPrefix(err.Error(), "Corruption:")
}

// listColumnFamilies returns the column families of the database in dir, or
// nil when dir holds no database (no CURRENT file).
func listColumnFamilies(dir string) ([]string, error) {
	if _, err := os.Stat(filepath.Join(dir, "CURRENT")); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("rocks: %w", err)
	}
	o := grocksdb.NewDefaultOptions()
	defer o.Destroy()
	names, err := grocksdb.ListColumnFamilies(o, dir)
	if err != nil {
		return nil, fmt.Errorf("rocks: list column families of %s: %w", dir, err)
	}
	return names, nil
}

// ListGroups returns, sorted, the groups the database in dir holds, or nil,
// nil when there is no database there yet. It reads the manifest only and
// does not open the database.
func ListGroups(dir string) ([]string, error) {
	names, err := listColumnFamilies(dir)
	if err != nil || names == nil {
		return nil, err
	}
	return groupsOf(names), nil
}

// Close waits for calls in progress, releases snapshots not yet closed,
// destroys every column family handle (Debian's RocksDB asserts on handles
// left open) and closes the database. Memtables are not flushed (see
// Options.build): recovery on the next Open replays the write-ahead log.
// Close is idempotent; every later call on the DB or anything obtained from
// it returns ErrClosed.
func (db *DB) Close() error {
	db.closeOnce.Do(func() {
		// Abort a compaction in progress (Space.Compact) rather than wait
		// for it at the gates below.
		db.db.DisableManualCompaction()
		db.gate.close()
		db.snapMu.Lock()
		snaps := db.snaps
		db.snaps = nil
		db.snapMu.Unlock()
		for sn := range snaps {
			sn.gate.close()
			sn.release()
		}
		db.mu.Lock()
		for _, g := range db.groups {
			g.gate.close()
			for _, h := range g.handles {
				h.Destroy()
			}
		}
		db.groups = map[string]*group{}
		db.mu.Unlock()
		for _, h := range db.fixed {
			h.Destroy()
		}
		db.db.Close()
		db.ro.Destroy()
		db.syncWO.Destroy()
		db.asyncWO.Destroy()
		db.logWO.Destroy()
		db.nat.destroy()
		db.log.Info("rocks: closed", "dir", db.dir)
	})
	return nil
}

// Dir returns the database directory.
func (db *DB) Dir() string { return db.dir }

// Groups returns the sorted groups the DB has now: those it was opened
// with, plus those added, minus those dropped.
func (db *DB) Groups() []string {
	db.mu.RLock()
	defer db.mu.RUnlock()
	return slices.Clone(db.names)
}

func (db *DB) group(name string) (*group, error) {
	if db.gate.isClosed() {
		return nil, ErrClosed
	}
	db.mu.RLock()
	g, ok := db.groups[name]
	db.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownGroup, name)
	}
	return g, nil
}

// LogStore returns the raft log of group. It returns the same *LogStore on
// every call: the store caches its first and last index.
func (db *DB) LogStore(group string) (*LogStore, error) {
	g, err := db.group(group)
	if err != nil {
		return nil, err
	}
	return g.log, nil
}

// StableStore returns the raft stable store of group.
func (db *DB) StableStore(group string) (*StableStore, error) {
	g, err := db.group(group)
	if err != nil {
		return nil, err
	}
	return g.stable, nil
}

// Data returns the state-machine space of group.
func (db *DB) Data(group string) (*Space, error) {
	g, err := db.group(group)
	if err != nil {
		return nil, err
	}
	return g.data, nil
}

// Node returns the node-local space.
func (db *DB) Node() *Space { return db.node }

// Flush writes every memtable to SST files and waits for it. Durability
// never needs it (the write-ahead log provides that); it is for tests, tools
// and measurements.
func (db *DB) Flush() error {
	if err := db.gate.enter(); err != nil {
		return err
	}
	defer db.gate.leave()
	fo := grocksdb.NewDefaultFlushOptions()
	defer fo.Destroy()
	fo.SetWait(true)
	for _, h := range db.fixed {
		if err := db.write(func() error { return db.db.FlushCF(h, fo) }); err != nil {
			return fmt.Errorf("rocks: flush: %w", err)
		}
	}
	for _, g := range db.openGroups() {
		if err := db.flushGroup(g, fo); err != nil {
			return err
		}
	}
	return nil
}

// openGroups returns the groups open now (a caller enters each one's gate
// before it uses its handles: it may be dropped meanwhile).
func (db *DB) openGroups() []*group {
	db.mu.RLock()
	defer db.mu.RUnlock()
	return slices.Collect(maps.Values(db.groups))
}

// flushGroup flushes one group's column families; a group dropped
// meanwhile is skipped.
func (db *DB) flushGroup(g *group, fo *grocksdb.FlushOptions) error {
	if g.gate.enter() != nil {
		return nil
	}
	defer g.gate.leave()
	for _, h := range g.handles {
		if err := db.write(func() error { return db.db.FlushCF(h, fo) }); err != nil {
			return fmt.Errorf("rocks: flush: %w", err)
		}
	}
	return nil
}

// write makes one call that writes to RocksDB (a write batch, a put or
// delete, a flush, an ingest, a sync of the log), unless an earlier one
// failed: then it refuses with that failure (ErrWriteFailed) until the
// database is opened again. A failed append (a full disk) leaves the
// write-ahead log's writer in an error state, and Debian's librocksdb
// (built with assertions) aborts the process when that writer is used
// again: a sync of the log did (TestFullDiskFailsWritesWithoutAborting),
// and other calls might. The node's groups stop as their writes fail, as
// for any failure of its storage, and the node stays up.
func (db *DB) write(call func() error) error {
	if err := db.writable(); err != nil {
		return err
	}
	err := call()
	if err != nil {
		db.writeErr.CompareAndSwap(nil, &err)
	}
	return err
}

// writable refuses (ErrWriteFailed) once a write failed.
func (db *DB) writable() error {
	if e := db.writeErr.Load(); e != nil {
		return fmt.Errorf("%w: %w", ErrWriteFailed, *e)
	}
	return nil
}

// SyncWAL makes every write made so far durable: it fsyncs the write-ahead
// log, which all column families share. Writes made with sync == false
// (the state machines') are in the log but possibly not on disk until a
// later synced write or this call.
func (db *DB) SyncWAL() error {
	if err := db.gate.enter(); err != nil {
		return err
	}
	defer db.gate.leave()
	if err := db.write(func() error { return db.db.FlushWAL(true) }); err != nil {
		return fmt.Errorf("rocks: sync WAL: %w", err)
	}
	return nil
}

// enterCF admits one call that uses a column family handle: the DB must be
// open and, for a group's column family (g != nil), the group not dropped.
// Every successful enterCF is paired with one leaveCF.
func (db *DB) enterCF(g *gate) error {
	if err := db.gate.enter(); err != nil {
		return err
	}
	if g != nil {
		if err := g.enter(); err != nil {
			db.gate.leave()
			return err
		}
	}
	return nil
}

func (db *DB) leaveCF(g *gate) {
	if g != nil {
		g.leave()
	}
	db.gate.leave()
}

// MemoryUsage is RocksDB's own account of its memory.
type MemoryUsage struct {
	BlockCacheCapacity uint64 // configured capacity of the shared block cache
	BlockCacheUsage    uint64 // bytes of data, index and filter blocks held in the cache
	BlockCachePinned   uint64 // part of the usage pinned by readers (cannot be evicted now)
	MemTables          uint64 // all memtables of all column families: mutable, immutable, pinned
	MemTablesUnflushed uint64 // the part not yet flushed to SST files
	TableReaders       uint64 // table readers outside the block cache
}

// Total is the sum of the cache, memtable and table reader figures.
func (m MemoryUsage) Total() uint64 {
	return m.BlockCacheUsage + m.MemTables + m.TableReaders
}

// MemoryUsage reports RocksDB's memory figures; zero after Close.
func (db *DB) MemoryUsage() MemoryUsage {
	if err := db.gate.enter(); err != nil {
		return MemoryUsage{}
	}
	defer db.gate.leave()
	m := MemoryUsage{
		BlockCacheCapacity: db.nat.cache.GetCapacity(),
		BlockCacheUsage:    db.nat.cache.GetUsage(),
		BlockCachePinned:   db.nat.cache.GetPinnedUsage(),
	}
	if u, err := grocksdb.GetApproximateMemoryUsageByType([]*grocksdb.DB{db.db}, nil); err == nil {
		m.MemTables = u.MemTableTotal
		m.MemTablesUnflushed = u.MemTableUnflushed
		m.TableReaders = u.MemTableReadersTotal
	}
	return m
}

// Property returns a RocksDB property of the database (for example
// "rocksdb.stats" or "rocksdb.num-running-compactions"), "" if it is
// unknown or the DB is closed. Space.Property reads per-column-family ones.
func (db *DB) Property(name string) string {
	if err := db.gate.enter(); err != nil {
		return ""
	}
	defer db.gate.leave()
	return db.db.GetProperty(name)
}
