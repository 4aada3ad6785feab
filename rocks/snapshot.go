package rocks

import (
	"fmt"

	"github.com/linxGnu/grocksdb"
)

// Snapshot is a consistent point-in-time view of every space of a DB:
// writes made after NewSnapshot are invisible to it. It pins the versions it
// sees, so close it when done (DB.Close releases any left open). Safe for
// concurrent use.
type Snapshot struct {
	db   *DB
	gate *gate
	snap *grocksdb.Snapshot    // released by release
	ro   *grocksdb.ReadOptions // reads at snap
}

// NewSnapshot captures the current state of the database. On a closed DB it
// returns a snapshot whose methods return ErrClosed.
func (db *DB) NewSnapshot() *Snapshot {
	sn := &Snapshot{db: db, gate: newGate()}
	if err := db.gate.enter(); err != nil {
		sn.gate.close()
		return sn
	}
	defer db.gate.leave()
	sn.snap = db.db.NewSnapshot()
	sn.ro = grocksdb.NewDefaultReadOptions()
	sn.ro.SetSnapshot(sn.snap)
	db.snapMu.Lock()
	db.snaps[sn] = struct{}{}
	db.snapMu.Unlock()
	return sn
}

// enter admits one read of s: the snapshot, the DB and s's group must be
// open.
func (sn *Snapshot) enter(s *Space) error {
	if s.db != sn.db {
		return fmt.Errorf("%w: %s", ErrForeignSpace, s.name)
	}
	if err := sn.gate.enter(); err != nil {
		return err
	}
	if err := sn.db.enterCF(s.gate); err != nil {
		sn.gate.leave()
		return err
	}
	return nil
}

func (sn *Snapshot) leave(s *Space) {
	sn.db.leaveCF(s.gate)
	sn.gate.leave()
}

// Get reads key from s as it was when the snapshot was taken. The value is
// Go memory.
func (sn *Snapshot) Get(s *Space, key []byte) ([]byte, bool, error) {
	if err := sn.enter(s); err != nil {
		return nil, false, err
	}
	defer sn.leave(s)
	return getPinned(sn.db.db, sn.ro, s.cf, key)
}

// Scan is Space.Scan as of the snapshot. Blocks it reads are not added to
// the block cache (fill_cache = false): snapshot scans are mostly bulk reads
// (streaming a raft snapshot of a whole group) that would otherwise evict
// the node's working set.
func (sn *Snapshot) Scan(s *Space, start, end []byte, fn func(k, v []byte) bool) error {
	if err := sn.enter(s); err != nil {
		return err
	}
	defer sn.leave(s)
	return sn.db.scan(s.cf, sn.snap, start, end, false, fn)
}

// Close releases the snapshot. It is safe to call twice, and after DB.Close.
func (sn *Snapshot) Close() {
	if !sn.gate.close() {
		return
	}
	if sn.db.gate.enter() != nil {
		return // DB.Close releases (or has released) it
	}
	defer sn.db.gate.leave()
	sn.db.snapMu.Lock()
	delete(sn.db.snaps, sn)
	sn.db.snapMu.Unlock()
	sn.release()
}

// release frees the C snapshot; the caller guarantees the DB is still open
// and that nobody reads through sn any more.
func (sn *Snapshot) release() {
	if sn.snap != nil {
		sn.db.db.ReleaseSnapshot(sn.snap)
		sn.snap = nil
		sn.ro.Destroy()
		sn.ro = nil
	}
}
