package rocks

import (
	"encoding/binary"
	"fmt"

	"github.com/hashicorp/raft"
	"github.com/linxGnu/grocksdb"
)

// StableStore is a group's raft stable state (current term, last vote), in
// the column family "<group>/stable". It implements raft.StableStore. Every
// write is synced: raft relies on a vote surviving a crash.
//
// Set/Get and SetUint64/GetUint64 share one key space; a uint64 is stored as
// 8 bytes big-endian. A missing key makes Get return (nil, ErrNotFound) and
// GetUint64 return (0, ErrNotFound); ErrNotFound's text is exactly
// "not found", which is how raft recognises "never set" (it compares
// err.Error(), see ErrNotFound).
type StableStore struct {
	db    *DB
	cf    *grocksdb.ColumnFamilyHandle
	gate  *gate // the group's: closed by DropGroup
	group string
}

var _ raft.StableStore = (*StableStore)(nil)

// Set stores key = val, synced.
func (st *StableStore) Set(key, val []byte) error {
	if err := st.db.enterCF(st.gate); err != nil {
		return err
	}
	defer st.db.leaveCF(st.gate)
	if err := st.db.write(func() error { return st.db.db.PutCF(st.db.syncWO, st.cf, key, val) }); err != nil {
		return fmt.Errorf("rocks: %s: stable set %q: %w", st.group, key, err)
	}
	return nil
}

// Get returns a copy of key's value, or (nil, ErrNotFound).
func (st *StableStore) Get(key []byte) ([]byte, error) {
	if err := st.db.enterCF(st.gate); err != nil {
		return nil, err
	}
	defer st.db.leaveCF(st.gate)
	v, found, err := getPinned(st.db.db, st.db.ro, st.cf, key)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, ErrNotFound
	}
	return v, nil
}

// SetUint64 stores val as 8 bytes big-endian, synced.
func (st *StableStore) SetUint64(key []byte, val uint64) error {
	return st.Set(key, binary.BigEndian.AppendUint64(nil, val))
}

// GetUint64 returns the uint64 stored at key, or (0, ErrNotFound).
func (st *StableStore) GetUint64(key []byte) (uint64, error) {
	v, err := st.Get(key)
	if err != nil {
		return 0, err
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("%w: %s: stable key %q holds %d bytes, want 8", ErrCorrupt, st.group, key, len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}
