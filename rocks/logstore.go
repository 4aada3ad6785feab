package rocks

import (
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/raft"
	"github.com/linxGnu/grocksdb"
)

// LogStore is a group's raft log, in the column family "<group>/log". It
// implements raft.LogStore; see logcodec.go for the stored format.
//
// Writes are synced: StoreLogs returns only once its entries are fsynced in
// the write-ahead log (one fsync per call, however many entries). FirstIndex
// and LastIndex cost no I/O: both are cached, loaded when the DB opens and
// updated by every write under the writer lock, because seeking to the first
// key of a log whose prefix was removed by range tombstones can be slow.
//
// Indexes may have gaps (raft stores entries after an installed snapshot
// without deleting older ones); the cached bounds are the smallest and
// greatest index actually stored, whatever the gaps.
type LogStore struct {
	db    *DB
	cf    *grocksdb.ColumnFamilyHandle
	gate  *gate // the group's: closed by DropGroup
	group string

	// mu serialises writers (StoreLogs, DeleteRange), so that a write to
	// RocksDB and the bounds update that reflects it happen as one step
	// even when raft compacts the log (snapshot goroutine) while it appends
	// (main goroutine). Readers do not take it.
	mu     sync.Mutex
	bounds atomic.Pointer[logBounds] // written under mu, read lock-free
}

// logBounds is an immutable pair, swapped as a whole so that readers never
// see a first index from one write and a last index from another.
type logBounds struct{ first, last uint64 } // both 0 when the log is empty

var _ raft.LogStore = (*LogStore)(nil)

// loadBounds reads the first and last index from disk (at open).
func (ls *LogStore) loadBounds() error {
	first, ok, err := ls.seekFirst(0)
	if err != nil {
		return err
	}
	if !ok {
		ls.bounds.Store(&logBounds{})
		return nil
	}
	last, _, err := ls.seekLast(0)
	if err != nil {
		return err
	}
	ls.bounds.Store(&logBounds{first: first, last: last})
	return nil
}

// check returns ErrClosed after DB.Close and an ErrGroupDropped error after
// DropGroup.
func (ls *LogStore) check() error {
	if ls.db.gate.isClosed() {
		return ErrClosed
	}
	return ls.gate.check()
}

// FirstIndex returns the smallest stored index, 0 if the log is empty.
func (ls *LogStore) FirstIndex() (uint64, error) {
	if err := ls.check(); err != nil {
		return 0, err
	}
	return ls.bounds.Load().first, nil
}

// LastIndex returns the greatest stored index, 0 if the log is empty.
func (ls *LogStore) LastIndex() (uint64, error) {
	if err := ls.check(); err != nil {
		return 0, err
	}
	return ls.bounds.Load().last, nil
}

// GetLog fills log with the entry at index. A missing entry returns exactly
// raft.ErrLogNotFound (raft compares with ==). Data and Extensions are Go
// memory owned by the caller.
func (ls *LogStore) GetLog(index uint64, log *raft.Log) error {
	if err := ls.db.enterCF(ls.gate); err != nil {
		return err
	}
	defer ls.db.leaveCF(ls.gate)
	v, found, err := getPinned(ls.db.db, ls.db.ro, ls.cf, logKey(index))
	if err != nil {
		return err
	}
	if !found {
		return raft.ErrLogNotFound
	}
	return decodeLog(index, v, log)
}

// StoreLog stores one entry (synced).
func (ls *LogStore) StoreLog(log *raft.Log) error {
	return ls.StoreLogs([]*raft.Log{log})
}

// StoreLogs stores entries in one synced write batch: all or none of them
// are durable. Index 0 is refused (it means "empty" to raft).
func (ls *LogStore) StoreLogs(logs []*raft.Log) error {
	if len(logs) == 0 {
		return nil
	}
	if err := ls.db.enterCF(ls.gate); err != nil {
		return err
	}
	defer ls.db.leaveCF(ls.gate)

	wb := grocksdb.NewWriteBatch()
	defer wb.Destroy()
	var key [8]byte
	var buf []byte
	lo, hi := logs[0].Index, logs[0].Index
	for _, l := range logs {
		if l.Index == 0 {
			return fmt.Errorf("rocks: %s: store log: index 0 is not a valid raft index", ls.group)
		}
		lo, hi = min(lo, l.Index), max(hi, l.Index)
		binary.BigEndian.PutUint64(key[:], l.Index)
		buf = appendLog(buf[:0], l)
		wb.PutCF(ls.cf, key[:], buf) // RocksDB copies key and value into the batch
	}

	ls.mu.Lock()
	defer ls.mu.Unlock()
	if err := ls.db.write(func() error { return ls.db.db.Write(ls.db.logWO, wb) }); err != nil {
		return fmt.Errorf("rocks: %s: store logs %d..%d: %w", ls.group, lo, hi, err)
	}
	b := *ls.bounds.Load()
	if b.last == 0 {
		b = logBounds{first: lo, last: hi}
	} else {
		b = logBounds{first: min(b.first, lo), last: max(b.last, hi)}
	}
	ls.bounds.Store(&b)
	return nil
}

// DeleteRange removes the entries lo..hi, both INCLUSIVE (raft's
// contract), with one synced range tombstone over [key(lo), key(hi)+"\x00").
// key(hi)+"\x00" is the smallest key after key(hi), which also works for
// hi = MaxUint64 where key(hi+1) would overflow.
//
// Afterwards the cached bounds are recomputed: when the range removed the
// first (or last) stored entry, one bounded seek from the end of the range
// finds the new one; it starts outside the tombstone, so it does not wade
// through deleted keys.
func (ls *LogStore) DeleteRange(lo, hi uint64) error {
	if lo > hi {
		return nil
	}
	if err := ls.db.enterCF(ls.gate); err != nil {
		return err
	}
	defer ls.db.leaveCF(ls.gate)

	ls.mu.Lock()
	defer ls.mu.Unlock()
	end := append(logKey(hi), 0)
	if err := ls.db.write(func() error { return ls.db.db.DeleteRangeCF(ls.db.logWO, ls.cf, logKey(lo), end) }); err != nil {
		return fmt.Errorf("rocks: %s: delete logs %d..%d: %w", ls.group, lo, hi, err)
	}

	b := *ls.bounds.Load()
	switch {
	case b.last == 0 || hi < b.first || lo > b.last:
		return nil // nothing stored was in range
	case lo <= b.first && hi >= b.last:
		b = logBounds{}
	case lo <= b.first:
		first, ok, err := ls.seekFirst(hi + 1) // hi < b.last, so no overflow
		if err != nil || !ok {
			return ls.boundsLost(err)
		}
		b.first = first
	case hi >= b.last:
		last, ok, err := ls.seekLast(lo) // lo > b.first >= 1
		if err != nil || !ok {
			return ls.boundsLost(err)
		}
		b.last = last
	default:
		return nil // a hole in the middle: bounds unchanged
	}
	ls.bounds.Store(&b)
	return nil
}

// boundsLost handles a failed bounds recomputation after a delete that did
// succeed: reload the bounds from scratch, so the cache never lies.
func (ls *LogStore) boundsLost(err error) error {
	if err == nil {
		err = fmt.Errorf("%w: bounds entry vanished", ErrCorrupt)
	}
	if rerr := ls.loadBounds(); rerr != nil {
		return fmt.Errorf("rocks: %s: recompute log bounds: %w (reload: %v)", ls.group, err, rerr)
	}
	return nil
}

// seekFirst returns the smallest stored index >= from.
func (ls *LogStore) seekFirst(from uint64) (uint64, bool, error) {
	ro := grocksdb.NewDefaultReadOptions()
	defer ro.Destroy()
	lower := logKey(from)
	ro.SetIterateLowerBound(lower)
	it := ls.db.db.NewIteratorCF(ro, ls.cf)
	defer it.Close()
	it.Seek(lower)
	return ls.iterIndex(it)
}

// seekLast returns the greatest stored index < below, or the greatest of
// all when below is 0.
func (ls *LogStore) seekLast(below uint64) (uint64, bool, error) {
	ro := grocksdb.NewDefaultReadOptions()
	defer ro.Destroy()
	if below > 0 {
		ro.SetIterateUpperBound(logKey(below))
	}
	it := ls.db.db.NewIteratorCF(ro, ls.cf)
	defer it.Close()
	it.SeekToLast()
	return ls.iterIndex(it)
}

func (ls *LogStore) iterIndex(it *grocksdb.Iterator) (uint64, bool, error) {
	if !it.Valid() {
		if err := it.Err(); err != nil {
			return 0, false, fmt.Errorf("rocks: %s: seek log: %w", ls.group, err)
		}
		return 0, false, nil
	}
	k := it.Key().Data()
	if len(k) != 8 {
		return 0, false, fmt.Errorf("%w: %s: log key of %d bytes", ErrCorrupt, ls.group, len(k))
	}
	return binary.BigEndian.Uint64(k), true, nil
}
