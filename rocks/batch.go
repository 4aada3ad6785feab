package rocks

import (
	"fmt"
	"slices"

	"github.com/linxGnu/grocksdb"
)

// Batch collects writes to any spaces of one DB and commits them atomically.
// It is a RocksDB WriteBatchWithIndex: Get and Scan through the batch see
// its own pending writes merged over the database.
//
// A Batch belongs to one goroutine. Put and Delete cannot fail on the spot;
// if one cannot be recorded (DB closed, batch closed, space of another DB)
// the batch remembers the first such error and Commit returns it without
// writing anything. Close releases the batch's C memory and is safe twice.
type Batch struct {
	db    *DB
	wb    *grocksdb.WriteBatchWI // nil after Close
	err   error                  // first Put/Delete that could not be recorded
	gates []*gate                // groups written to: Commit holds them so no drop races it
}

// NewBatch returns an empty batch.
func (db *DB) NewBatch() *Batch {
	// overwrite_key = true: later writes to a key replace earlier ones in
	// the index, which the merging iterator behind Scan requires.
	return &Batch{db: db, wb: grocksdb.NewWriteBatchWI(0, true)}
}

// use admits one call that touches s's column family handle; the caller
// leaves with b.db.leaveCF(s.gate).
func (b *Batch) use(s *Space) error {
	if b.wb == nil {
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
	b.wb.PutCF(s.cf, key, value)
	b.touch(s)
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
	b.wb.DeleteCF(s.cf, key)
	b.touch(s)
}

// Get reads key from s as the batch would leave it: the batch's own last
// write to key if any, the database otherwise. The value is Go memory.
func (b *Batch) Get(s *Space, key []byte) ([]byte, bool, error) {
	if err := b.use(s); err != nil {
		return nil, false, err
	}
	defer b.db.leaveCF(s.gate)
	v, err := b.wb.GetFromDBWithCF(b.db.db, b.db.ro, s.cf, key)
	if err != nil {
		return nil, false, fmt.Errorf("rocks: batch get: %w", err)
	}
	defer v.Free()
	return copyOut(v)
}

// Scan is Space.Scan over the batch merged with the database: pending puts
// appear, pending deletes hide keys, in one ascending order.
func (b *Batch) Scan(s *Space, start, end []byte, fn func(k, v []byte) bool) error {
	if err := b.use(s); err != nil {
		return err
	}
	defer b.db.leaveCF(s.gate)
	return b.db.scan(s.cf, nil, b.wb, start, end, true, fn)
}

// SetSavePoint marks the current state of the batch; RollbackToSavePoint
// returns to it. Save points nest.
func (b *Batch) SetSavePoint() {
	if b.wb != nil {
		b.wb.SetSavePoint()
	}
}

// RollbackToSavePoint drops every write since the most recent save point and
// removes that save point. It fails if there is none.
func (b *Batch) RollbackToSavePoint() error {
	if b.wb == nil {
		return ErrClosed
	}
	if err := b.wb.RollbackToSavePoint(); err != nil {
		return fmt.Errorf("rocks: rollback to save point: %w", err)
	}
	return nil
}

// Count returns the number of writes recorded (0 after Close).
func (b *Batch) Count() int {
	if b.wb == nil {
		return 0
	}
	return b.wb.Count()
}

// Commit writes the batch atomically; with sync the write-ahead log is
// fsynced first. The batch keeps its contents: Close it, or Reset it to
// reuse it.
func (b *Batch) Commit(sync bool) error {
	if b.wb == nil {
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
	if err := b.db.db.WriteWI(b.db.writeOptions(sync), b.wb); err != nil {
		return fmt.Errorf("rocks: commit batch: %w", err)
	}
	return nil
}

// Reset empties the batch and forgets a recorded error, for reuse.
func (b *Batch) Reset() {
	if b.wb != nil {
		b.wb.Clear()
	}
	b.err = nil
	b.gates = b.gates[:0]
}

// Close frees the batch. It is safe to call twice.
func (b *Batch) Close() {
	if b.wb != nil {
		b.wb.Destroy()
		b.wb = nil
	}
}
