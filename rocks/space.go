package rocks

import (
	"bytes"
	"fmt"

	"github.com/linxGnu/grocksdb"
)

// Space is one column family: the node space or a group's data space. Its
// methods are safe for concurrent use.
type Space struct {
	db   *DB
	cf   *grocksdb.ColumnFamilyHandle
	cfID uint32 // cf's id, which a Batch encodes in its records
	gate *gate  // the group's (closed by DropGroup); nil for the node space
	name string
}

func newSpace(db *DB, cf *grocksdb.ColumnFamilyHandle, g *gate, name string) *Space {
	return &Space{db: db, cf: cf, cfID: cf.ID(), gate: g, name: name}
}

// Name returns the column family name ("node", "data-0/data", ...).
func (s *Space) Name() string { return s.name }

// Get returns a copy of key's value in Go memory, or found == false.
func (s *Space) Get(key []byte) (value []byte, found bool, err error) {
	if err := s.db.enterCF(s.gate); err != nil {
		return nil, false, err
	}
	defer s.db.leaveCF(s.gate)
	return getPinned(s.db.db, s.db.ro, s.cf, key)
}

// getPinned reads through a pinnable slice, so the value is copied once,
// from the block cache or memtable straight into Go memory.
func getPinned(db *grocksdb.DB, ro *grocksdb.ReadOptions, cf *grocksdb.ColumnFamilyHandle, key []byte) ([]byte, bool, error) {
	h, err := db.GetPinnedCF(ro, cf, key)
	if err != nil {
		return nil, false, fmt.Errorf("rocks: get: %w", err)
	}
	defer h.Destroy()
	return copyOut(h)
}

// copyOut copies a value RocksDB returned (a slice or a pinnable slice)
// into Go memory; found is false when the key is absent. The caller
// releases v.
func copyOut(v interface {
	Exists() bool
	Data() []byte
}) (value []byte, found bool, err error) {
	if !v.Exists() {
		return nil, false, nil
	}
	return bytes.Clone(nonNil(v.Data())), true, nil
}

// nonNil makes an empty stored value come back as a non-nil empty slice, so
// callers can tell "stored empty" from "absent" by value as well as by the
// found flag.
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// Put stores key = value. With sync the write-ahead log is fsynced before
// Put returns; without it the write is in the log (so it survives a process
// crash, not a machine crash) and is ordered after every earlier synced
// write, because all column families share one log.
func (s *Space) Put(key, value []byte, sync bool) error {
	if err := s.db.enterCF(s.gate); err != nil {
		return err
	}
	defer s.db.leaveCF(s.gate)
	if err := s.db.write(func() error { return s.db.db.PutCF(s.db.writeOptions(sync), s.cf, key, value) }); err != nil {
		return fmt.Errorf("rocks: put: %w", err)
	}
	return nil
}

// Delete removes key (a no-op if it is absent).
func (s *Space) Delete(key []byte, sync bool) error {
	if err := s.db.enterCF(s.gate); err != nil {
		return err
	}
	defer s.db.leaveCF(s.gate)
	if err := s.db.write(func() error { return s.db.db.DeleteCF(s.db.writeOptions(sync), s.cf, key) }); err != nil {
		return fmt.Errorf("rocks: delete: %w", err)
	}
	return nil
}

// Scan calls fn for every key in [start, end) in ascending order; a nil end
// means to the end of the space. The slices fn receives point into RocksDB
// memory and are valid only until fn returns: copy what you keep. Scan stops
// when fn returns false. It reads through an iterator bounded on both sides
// (iterate_lower_bound / iterate_upper_bound), so RocksDB neither reads nor
// keeps in memory anything outside the range, and it closes the iterator
// before returning.
func (s *Space) Scan(start, end []byte, fn func(key, value []byte) bool) error {
	if err := s.db.enterCF(s.gate); err != nil {
		return err
	}
	defer s.db.leaveCF(s.gate)
	return s.db.scan(s.cf, nil, start, end, true, fn)
}

// DeleteAll removes every key of the space and leaves other spaces alone.
//
// RocksDB keys have no greatest value, so no fixed range covers all of them.
// DeleteAll finds the greatest key L present and writes one range tombstone
// over ["", L+"\x00"): L+"\x00" is the smallest key greater than L, so the
// range covers exactly every key that exists. Keys written concurrently
// with DeleteAll and greater than L survive it; the caller (a state machine
// restoring a snapshot) excludes concurrent writers.
func (s *Space) DeleteAll(sync bool) error {
	if err := s.db.enterCF(s.gate); err != nil {
		return err
	}
	defer s.db.leaveCF(s.gate)
	last, ok, err := s.db.lastKey(s.cf)
	if err != nil || !ok {
		return err
	}
	end := append(last, 0)
	if err := s.db.write(func() error { return s.db.db.DeleteRangeCF(s.db.writeOptions(sync), s.cf, []byte{}, end) }); err != nil {
		return fmt.Errorf("rocks: delete all of %s: %w", s.name, err)
	}
	return nil
}

// DeleteRange removes every key in [start, end) with one range tombstone;
// a nil end means every key from start on (the tombstone then ends just
// after the greatest key present, as in DeleteAll). Keys written
// concurrently with a nil-end DeleteRange and greater than the greatest key
// present survive it.
func (s *Space) DeleteRange(start, end []byte, sync bool) error {
	if err := s.db.enterCF(s.gate); err != nil {
		return err
	}
	defer s.db.leaveCF(s.gate)
	if end == nil {
		last, ok, err := s.db.lastKey(s.cf)
		if err != nil || !ok || bytes.Compare(last, start) < 0 {
			return err
		}
		end = append(last, 0)
	}
	if bytes.Compare(start, end) >= 0 {
		return nil
	}
	if err := s.db.write(func() error { return s.db.db.DeleteRangeCF(s.db.writeOptions(sync), s.cf, start, end) }); err != nil {
		return fmt.Errorf("rocks: delete range of %s: %w", s.name, err)
	}
	return nil
}

// Compact compacts the whole column family down to its last level, so
// that deleted keys free their space and leave RocksDB's size estimates
// (which count deleted data until a compaction drops it). It blocks until
// the compaction ends, or until a Close or DropGroup (of any group) aborts
// it, and then returns early with no error. It runs beside the writes and reads of
// every group, on one of RocksDB's background threads.
func (s *Space) Compact() error {
	if err := s.db.enterCF(s.gate); err != nil {
		return err
	}
	defer s.db.leaveCF(s.gate)
	// Not exclusive (RocksDB's default): automatic compactions of every
	// group go on meanwhile, so that flushes do not pile up in level 0 and
	// stall writes for as long as this compaction takes.
	o := grocksdb.NewCompactRangeOptions()
	defer o.Destroy()
	o.SetExclusiveManualCompaction(false)
	s.db.db.CompactRangeCFOpt(s.cf, grocksdb.Range{}, o)
	return nil
}

// Property returns a RocksDB property of this column family (for example
// "rocksdb.estimate-num-keys"), "" if unknown or closed.
func (s *Space) Property(name string) string {
	if err := s.db.enterCF(s.gate); err != nil {
		return ""
	}
	defer s.db.leaveCF(s.gate)
	return s.db.db.GetPropertyCF(name, s.cf)
}

func (db *DB) writeOptions(sync bool) *grocksdb.WriteOptions {
	if sync {
		return db.syncWO
	}
	return db.asyncWO
}

// lastKey returns a copy of the greatest key of cf.
func (db *DB) lastKey(cf *grocksdb.ColumnFamilyHandle) ([]byte, bool, error) {
	it := db.db.NewIteratorCF(db.ro, cf)
	defer it.Close()
	it.SeekToLast()
	if !it.Valid() {
		if err := it.Err(); err != nil {
			return nil, false, fmt.Errorf("rocks: seek: %w", err)
		}
		return nil, false, nil
	}
	return bytes.Clone(it.Key().Data()), true, nil
}

// scan is the one iteration loop behind Space, Batch and Snapshot scans.
// snap, when set, pins the view (Batch.Scan merges its pending writes
// over this loop's). The caller holds the DB gate. fillCache false keeps the blocks read out of
// the block cache.
func (db *DB) scan(cf *grocksdb.ColumnFamilyHandle, snap *grocksdb.Snapshot, start, end []byte, fillCache bool, fn func(k, v []byte) bool) error {
	if end != nil && bytes.Compare(start, end) >= 0 {
		return nil
	}
	ro := grocksdb.NewDefaultReadOptions()
	defer ro.Destroy()
	// RocksDB keeps pointers to the bounds for the iterator's whole life, so
	// they are private copies the caller (or fn) cannot change under it, and
	// ro (which references them) outlives the iterator.
	if len(start) > 0 {
		ro.SetIterateLowerBound(bytes.Clone(start))
	}
	if len(end) > 0 {
		ro.SetIterateUpperBound(bytes.Clone(end))
	}
	if snap != nil {
		ro.SetSnapshot(snap)
	}
	ro.SetFillCache(fillCache)
	it := db.db.NewIteratorCF(ro, cf)
	defer it.Close()
	if len(start) > 0 {
		it.Seek(start)
	} else {
		it.SeekToFirst()
	}
	for ; it.Valid(); it.Next() {
		k := it.Key().Data()
		if end != nil && bytes.Compare(k, end) >= 0 {
			break
		}
		if !fn(k, nonNil(it.Value().Data())) {
			break
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("rocks: scan: %w", err)
	}
	return nil
}
