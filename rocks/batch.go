package rocks

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/linxGnu/grocksdb"
)

// Batch collects writes to any spaces of one DB and commits them atomically.
// Get and Scan through the batch see its own pending writes merged over the
// database.
//
// The batch encodes its writes in Go, in RocksDB's write-batch format (the
// format of RocksDB's write-ahead log records; encodeRecord), and hands
// them to RocksDB in one call at Commit. The pending writes are also kept
// in Go maps, one per space, for the reads through the batch. A
// WriteBatchWithIndex gives the same reads, but every write into its
// skip-list index and every read through it is a cgo call into a costlier
// structure; a state machine writes each key once or twice per batch and
// reads back few of them, so an append and a map insert per write cost a
// fraction of it (sm's BenchmarkApplyPuts).
//
// A Batch belongs to one goroutine. Put and Delete cannot fail on the spot;
// if one cannot be recorded (DB closed, batch closed, space of another DB)
// the batch remembers the first such error and Commit returns it without
// writing anything. Close is safe twice.
type Batch struct {
	db     *DB
	closed bool
	err    error   // first Put/Delete that could not be recorded
	gates  []*gate // groups written to: Commit holds them so no drop races it

	// rep is the encoded batch: a 12-byte header (sequence number, set
	// by RocksDB, and count) and count records.
	rep   []byte
	count uint32

	// pending holds the batch's last write to each key, per space; the
	// values are slices of rep.
	pending []*pendingSpace
	// undo records what each write replaced in pending, from the first
	// save point on; saves holds the state at each save point.
	undo  []undoWrite
	saves []savePoint
}

type savePoint struct {
	undo, rep int
	count     uint32
}

type pendingSpace struct {
	s    *Space
	keys map[string]pendingValue
}

// pendingValue is a pending write: a value, or a deletion.
type pendingValue struct {
	v       []byte
	deleted bool
}

type undoWrite struct {
	p    *pendingSpace
	key  string
	prev pendingValue
	had  bool // key had a pending write before
}

// The record types of RocksDB's write-batch format (db/dbformat.h), and
// its header's size: a fixed64 sequence number and a fixed32 count.
const (
	typeDeletion         = 0x0
	typeValue            = 0x1
	typeColumnFamilyDel  = 0x4
	typeColumnFamilyPut  = 0x5
	batchHeaderBytes     = 12
	batchInitialCapacity = 4 << 10
)

// NewBatch returns an empty batch.
func (db *DB) NewBatch() *Batch {
	return &Batch{db: db, rep: make([]byte, batchHeaderBytes, batchInitialCapacity)}
}

// encodeRecord appends one record: the type (the column-family variant
// with the family's id, unless it is the default family, 0), the key and,
// for a put, the value, each a varint32 length and the bytes. It returns
// the value's place in the result.
func encodeRecord(rep []byte, cfID uint32, put bool, key, value []byte) ([]byte, int) {
	var t byte
	switch {
	case cfID != 0 && put:
		t = typeColumnFamilyPut
	case cfID != 0:
		t = typeColumnFamilyDel
	case put:
		t = typeValue
	default:
		t = typeDeletion
	}
	rep = append(rep, t)
	if cfID != 0 {
		rep = binary.AppendUvarint(rep, uint64(cfID))
	}
	rep = binary.AppendUvarint(rep, uint64(len(key)))
	rep = append(rep, key...)
	if !put {
		return rep, len(rep)
	}
	rep = binary.AppendUvarint(rep, uint64(len(value)))
	return append(rep, value...), len(rep)
}

// Grow makes room for about n more bytes of records, so that a caller
// that knows roughly how much it will write saves the copies of a growing
// buffer.
func (b *Batch) Grow(n int) {
	if n > 0 && !b.closed {
		b.rep = slices.Grow(b.rep, n)
	}
}

// use admits one call that touches s's column family handle; the caller
// leaves with b.db.leaveCF(s.gate).
func (b *Batch) use(s *Space) error {
	if b.closed {
		return ErrClosed
	}
	if s.db != b.db {
		return fmt.Errorf("%w: %s", ErrForeignSpace, s.name)
	}
	return b.db.enterCF(s.gate)
}

func (b *Batch) fail(err error) {
	if b.err == nil {
		b.err = err
	}
}

// Put records key = value in s.
func (b *Batch) Put(s *Space, key, value []byte) {
	if err := b.use(s); err != nil {
		b.fail(err)
		return
	}
	defer b.db.leaveCF(s.gate)
	var at int
	b.rep, at = encodeRecord(b.rep, s.cfID, true, key, value)
	b.count++
	b.touch(s)
	b.remember(s, key, pendingValue{v: nonNil(b.rep[at:len(b.rep):len(b.rep)])})
}

// touch remembers that the batch writes to s's group.
func (b *Batch) touch(s *Space) {
	if s.gate != nil && !slices.Contains(b.gates, s.gate) {
		b.gates = append(b.gates, s.gate)
	}
}

// Delete records the removal of key from s.
func (b *Batch) Delete(s *Space, key []byte) {
	if err := b.use(s); err != nil {
		b.fail(err)
		return
	}
	defer b.db.leaveCF(s.gate)
	b.rep, _ = encodeRecord(b.rep, s.cfID, false, key, nil)
	b.count++
	b.touch(s)
	b.remember(s, key, pendingValue{deleted: true})
}

// pendingOf returns s's pending writes (nil when there are none).
func (b *Batch) pendingOf(s *Space) *pendingSpace {
	for _, p := range b.pending {
		if p.s == s {
			return p
		}
	}
	return nil
}

// remember records a write in the pending writes, and what it replaced in
// them while a save point is set.
func (b *Batch) remember(s *Space, key []byte, v pendingValue) {
	p := b.pendingOf(s)
	if p == nil {
		p = &pendingSpace{s: s, keys: make(map[string]pendingValue)}
		b.pending = append(b.pending, p)
	}
	k := string(key)
	if len(b.saves) > 0 {
		prev, had := p.keys[k]
		b.undo = append(b.undo, undoWrite{p: p, key: k, prev: prev, had: had})
	}
	p.keys[k] = v
}

// Get reads key from s as the batch would leave it: the batch's own last
// write to key if any, the database otherwise. The value is Go memory.
func (b *Batch) Get(s *Space, key []byte) ([]byte, bool, error) {
	if err := b.use(s); err != nil {
		return nil, false, err
	}
	defer b.db.leaveCF(s.gate)
	if p := b.pendingOf(s); p != nil {
		if v, ok := p.keys[string(key)]; ok {
			if v.deleted {
				return nil, false, nil
			}
			return bytes.Clone(v.v), true, nil
		}
	}
	return b.read(s, key)
}

// stored reads key from s in the database, under the batch's writes.
func (b *Batch) stored(s *Space, key []byte) ([]byte, bool, error) {
	if err := b.use(s); err != nil {
		return nil, false, err
	}
	defer b.db.leaveCF(s.gate)
	return b.read(s, key)
}

// read is stored inside use.
func (b *Batch) read(s *Space, key []byte) ([]byte, bool, error) {
	v, found, err := getPinned(b.db.db, b.db.ro, s.cf, key)
	if err != nil {
		return nil, false, fmt.Errorf("rocks: batch get: %w", err)
	}
	return v, found, nil
}

// Scan is Space.Scan over the batch merged with the database: pending puts
// appear, pending deletes hide keys, in one ascending order.
func (b *Batch) Scan(s *Space, start, end []byte, fn func(k, v []byte) bool) error {
	if err := b.use(s); err != nil {
		return err
	}
	defer b.db.leaveCF(s.gate)
	if end != nil && bytes.Compare(start, end) >= 0 {
		return nil
	}
	p := b.pendingOf(s)
	var keys []string // pending keys in [start, end), ascending
	if p != nil {
		for k := range p.keys {
			if k >= string(start) && (end == nil || k < string(end)) {
				keys = append(keys, k)
			}
		}
		slices.Sort(keys)
	}
	i := 0
	stopped := false
	// pendingBelow calls fn for the pending puts below k (all of them
	// when k is nil); false when fn stopped.
	pendingBelow := func(k []byte) bool {
		for ; i < len(keys) && (k == nil || keys[i] < string(k)); i++ {
			if v := p.keys[keys[i]]; !v.deleted && !fn([]byte(keys[i]), v.v) {
				i++
				return false
			}
		}
		return true
	}
	err := b.db.scan(s.cf, nil, start, end, true, func(k, v []byte) bool {
		if !pendingBelow(k) {
			stopped = true
			return false
		}
		if i < len(keys) && keys[i] == string(k) {
			pv := p.keys[keys[i]]
			i++
			if pv.deleted {
				return true
			}
			v = pv.v
		}
		if !fn(k, v) {
			stopped = true
			return false
		}
		return true
	})
	if err != nil || stopped {
		return err
	}
	pendingBelow(nil)
	return nil
}

// errNoSavePoint is RollbackToSavePoint's error without a save point.
var errNoSavePoint = errors.New("no save point")

// SetSavePoint marks the current state of the batch; RollbackToSavePoint
// returns to it. Save points nest.
func (b *Batch) SetSavePoint() {
	if !b.closed {
		b.saves = append(b.saves, savePoint{undo: len(b.undo), rep: len(b.rep), count: b.count})
	}
}

// RollbackToSavePoint drops every write since the most recent save point and
// removes that save point. It fails if there is none.
func (b *Batch) RollbackToSavePoint() error {
	if b.closed {
		return ErrClosed
	}
	if len(b.saves) == 0 {
		return fmt.Errorf("rocks: rollback to save point: %w", errNoSavePoint)
	}
	sp := b.saves[len(b.saves)-1]
	b.saves = b.saves[:len(b.saves)-1]
	for i := len(b.undo) - 1; i >= sp.undo; i-- {
		u := b.undo[i]
		if u.had {
			u.p.keys[u.key] = u.prev
		} else {
			delete(u.p.keys, u.key)
		}
	}
	clear(b.undo[sp.undo:])
	b.undo = b.undo[:sp.undo]
	// The values still pending are slices of rep below sp.rep: appends
	// after the cut overwrite only dropped records.
	b.rep, b.count = b.rep[:sp.rep], sp.count
	return nil
}

// Written is a key written since the most recent save point, with its
// state at that save point (what Get answered then): its value, or
// Existed false.
type Written struct {
	Key     string
	Before  []byte
	Existed bool
}

// WrittenSinceSavePoint returns each key of s written (put or deleted)
// since the most recent save point that want selects, once, in the order
// first written, with its state at the save point; none without a save
// point. want must not write to the batch.
func (b *Batch) WrittenSinceSavePoint(s *Space, want func(key string) bool) ([]Written, error) {
	if b.closed || len(b.saves) == 0 {
		return nil, nil
	}
	var out []Written
	var seen map[string]bool
	for _, u := range b.undo[b.saves[len(b.saves)-1].undo:] {
		if u.p.s != s || seen[u.key] || !want(u.key) {
			continue
		}
		if seen == nil {
			seen = make(map[string]bool)
		}
		seen[u.key] = true
		// The first write since the save point replaced what the batch
		// held then: a pending write, or the database's value.
		w := Written{Key: u.key}
		switch {
		case u.had && !u.prev.deleted:
			w.Before, w.Existed = bytes.Clone(u.prev.v), true
		case !u.had:
			v, found, err := b.stored(s, []byte(u.key))
			if err != nil {
				return nil, err
			}
			w.Before, w.Existed = v, found
		}
		out = append(out, w)
	}
	return out, nil
}

// Count returns the number of writes recorded (0 after Close).
func (b *Batch) Count() int {
	if b.closed {
		return 0
	}
	return int(b.count)
}

// Commit writes the batch atomically; with sync the write-ahead log is
// fsynced first. The batch keeps its contents: Close it, or Reset it to
// reuse it.
func (b *Batch) Commit(sync bool) error {
	if b.closed {
		return ErrClosed
	}
	if b.err != nil {
		return b.err
	}
	if err := b.db.gate.enter(); err != nil {
		return err
	}
	defer b.db.gate.leave()
	// Hold the gate of every group written to: a group dropped before
	// fails the commit with ErrGroupDropped, and none is dropped during it.
	for i, g := range b.gates {
		if err := g.enter(); err != nil {
			for _, h := range b.gates[:i] {
				h.leave()
			}
			return err
		}
	}
	defer func() {
		for _, g := range b.gates {
			g.leave()
		}
	}()
	binary.LittleEndian.PutUint32(b.rep[8:batchHeaderBytes], b.count)
	wb := grocksdb.WriteBatchFrom(b.rep)
	defer wb.Destroy()
	if err := b.db.write(func() error { return b.db.db.Write(b.db.writeOptions(sync), wb) }); err != nil {
		return fmt.Errorf("rocks: commit batch: %w", err)
	}
	return nil
}

// Reset empties the batch and forgets a recorded error, for reuse.
func (b *Batch) Reset() {
	b.err = nil
	b.gates = b.gates[:0]
	b.forget()
	if !b.closed {
		b.rep = make([]byte, batchHeaderBytes, batchInitialCapacity)
	}
}

// forget drops the writes and save points. The values Get returned stay
// valid: they are copies.
func (b *Batch) forget() {
	b.pending, b.undo, b.saves, b.rep, b.count = nil, nil, nil, nil, 0
}

// Close drops the batch's writes; later calls fail with ErrClosed. It is
// safe to call twice.
func (b *Batch) Close() {
	b.closed = true
	b.forget()
}
