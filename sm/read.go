package sm

import (
	"bytes"

	"google.golang.org/protobuf/proto"

	"github.com/metamq/meta/rocks"
	"github.com/metamq/meta/sm/logpb"
	"github.com/metamq/meta/sm/state"
)

// Reads see the latest applied state of this replica. Linearizability is
// the caller's business (metanode waits until a confirmed read index is
// applied before reading); the state only moves forward, so a read may see
// a later state than the one it waited for, never an earlier one.

// Entry is a stored key and its value.
type Entry = state.Entry

func (m *Machine) read(fn func() error) error {
	if m.closed.Load() {
		return ErrClosed
	}
	m.restoreMu.RLock()
	defer m.restoreMu.RUnlock()
	return fn()
}

// view runs fn on one consistent view of the state: a storage snapshot and
// the applied state (index, term, revision) it holds.
func (m *Machine) view(fn func(sn *rocks.Snapshot, st *logpb.AppliedState) error) error {
	return m.read(func() error {
		sn := m.db.NewSnapshot()
		defer sn.Close()
		st, err := m.loadApplied(func(k []byte) ([]byte, bool, error) { return sn.Get(m.space, k) })
		if err != nil {
			return err
		}
		return fn(sn, st)
	})
}

// Get returns a KV key, or nil when absent.
func (m *Machine) Get(key []byte) (*logpb.KV, error) {
	kv, _, err := m.GetVersioned(key)
	return kv, err
}

// GetVersioned is Get that also returns the version of the owned range
// holding key, read in the same view as the data (0: the group records
// no ranges). The public server reports it (ResponseHeader.range_version).
func (m *Machine) GetVersioned(key []byte) (*logpb.KV, uint64, error) {
	var kv *logpb.KV
	var ver uint64
	err := m.read(func() error {
		var err error
		if ver, err = m.readVersion(key); err != nil {
			return err
		}
		v, ok, err := m.space.Get(kvKey(key))
		if err != nil || !ok {
			return err
		}
		kv = &logpb.KV{}
		return proto.Unmarshal(v, kv)
	})
	return kv, ver, err
}

// GetMany returns KV keys read in one view (one storage snapshot), each
// nil when absent; every key must be served here.
func (m *Machine) GetMany(keys [][]byte) ([]*logpb.KV, error) {
	return readMany[logpb.KV](m, len(keys), func(i int) []byte { return keys[i] }, func(i int) []byte { return kvKey(keys[i]) })
}

// readMany reads n stored records in one consistent view (one storage
// snapshot): the i-th has routing key route(i), which must be served
// here, and is stored under key(i); out[i] is nil when it is absent.
func readMany[M any, PM interface {
	*M
	proto.Message
}](m *Machine, n int, route, key func(i int) []byte) ([]*M, error) {
	out := make([]*M, n)
	err := m.read(func() error {
		for i := range n {
			if err := m.checkRead(route(i)); err != nil {
				return err
			}
		}
		sn := m.db.NewSnapshot()
		defer sn.Close()
		for i := range n {
			v, ok, err := sn.Get(m.space, key(i))
			if err != nil {
				return err
			}
			if !ok {
				continue
			}
			rec := new(M)
			if err := proto.Unmarshal(v, PM(rec)); err != nil {
				return err
			}
			out[i] = rec
		}
		return nil
	})
	return out, err
}

// List returns up to limit keys with prefix, strictly after startAfter, in
// ascending order, and whether more follow. keysOnly drops values.
func (m *Machine) List(prefix, startAfter []byte, limit int, keysOnly bool) (out []Entry, more bool, err error) {
	start := kvKey(prefix)
	end := prefixEnd(start)
	if len(startAfter) > 0 && bytes.Compare(startAfter, prefix) >= 0 {
		// The smallest key strictly greater than startAfter.
		start = append(kvKey(startAfter), 0)
	}
	return scanPage(m, start, end, limit, nil, func() *logpb.KV { return &logpb.KV{} }, func(key []byte, kv *logpb.KV) Entry {
		if keysOnly {
			kv.Value = nil
		}
		return Entry{Key: append([]byte(nil), key...), KV: kv}
	})
}

// scanPage pages through [start, end) of a space whose keys are a prefix
// byte then the key: up to limit records, in key order, and whether more
// follow. It passes over the keys skip reports (when set) and those
// another group owns; each record is decoded into a fresh message and
// turned into an entry by entry (given the key without its prefix byte).
func scanPage[M proto.Message, E any](m *Machine, start, end []byte, limit int, skip func(key []byte) bool, fresh func() M, entry func(key []byte, msg M) E) (out []E, more bool, err error) {
	err = m.read(func() error {
		if err := m.checkList(); err != nil {
			return err
		}
		var derr error
		serr := m.space.Scan(start, end, func(k, v []byte) bool {
			if (skip != nil && skip(k[1:])) || !m.owns(k[1:]) {
				return true // listed by the group that owns it
			}
			if len(out) == limit {
				more = true
				return false
			}
			msg := fresh()
			if derr = proto.Unmarshal(v, msg); derr != nil {
				return false
			}
			out = append(out, entry(k[1:], msg))
			return true
		})
		if serr != nil {
			return serr
		}
		return derr
	})
	return out, more, err
}

// OffsetKey names one committed offset.
type OffsetKey = state.OffsetKey

// Offsets returns committed offsets (nil where none), all read from one
// consistent view, so a fetch never sees half of an atomic commit or of a
// group's deletion.
func (m *Machine) Offsets(keys []OffsetKey) ([]*logpb.Offset, error) {
	return readMany[logpb.Offset](m, len(keys), func(i int) []byte { return []byte(keys[i].Group) },
		func(i int) []byte { return offsetKey(keys[i].Group, keys[i].Topic, keys[i].Partition) })
}

// Offset returns one committed offset, or nil when none.
func (m *Machine) Offset(group, topic string, partition int32) (*logpb.Offset, error) {
	out, err := m.Offsets([]OffsetKey{{Group: group, Topic: topic, Partition: partition}})
	if err != nil {
		return nil, err
	}
	return out[0], nil
}

// decodeAll decodes, in order, every value that scan (a Scan bound to its
// range) visits, each into a fresh message; it stops at the first value
// that does not decode. A failing scan's error comes first.
func decodeAll[M proto.Message](scan func(fn func(k, v []byte) bool) error, fresh func() M) ([]M, error) {
	var out []M
	var derr error
	if err := scan(func(_, v []byte) bool {
		msg := fresh()
		if derr = proto.Unmarshal(v, msg); derr != nil {
			return false
		}
		out = append(out, msg)
		return true
	}); err != nil {
		return nil, err
	}
	return out, derr
}

// Cluster returns the cluster record of a metadata group (nil before the
// first ClusterInit) and its members in id order.
func (m *Machine) Cluster() (*logpb.ClusterInit, []*logpb.MemberPut, error) {
	var ci *logpb.ClusterInit
	var members []*logpb.MemberPut
	err := m.read(func() error {
		v, ok, err := m.space.Get(keyClusterID)
		if err != nil {
			return err
		}
		if ok {
			ci = &logpb.ClusterInit{}
			if err := proto.Unmarshal(v, ci); err != nil {
				return err
			}
		}
		p := []byte{prefixCluster, 'm'}
		members, err = decodeAll(func(fn func(k, v []byte) bool) error {
			return m.space.Scan(p, prefixEnd(p), fn)
		}, func() *logpb.MemberPut { return &logpb.MemberPut{} })
		return err
	})
	return ci, members, err
}

// StateHash digests the group's whole state from one consistent view: the
// applied state and an FNV-1a 64 over every data key and value in key order
// (each as a uvarint length and the bytes). Replicas at the same applied
// index must agree.
type StateHash = state.Hash

// Hash computes the state hash.
func (m *Machine) Hash() (StateHash, error) {
	var out StateHash
	err := m.view(func(sn *rocks.Snapshot, st *logpb.AppliedState) error {
		var err error
		out, err = m.digest(sn, st)
		return err
	})
	return out, err
}

// hasher computes a StateHash over keys and values fed in key order:
// FNV-1a over every pair as fnvPair encodes it.
type hasher struct {
	h, n uint64
}

func newHasher() *hasher { return &hasher{h: fnvOffset64} }

func (h *hasher) add(k, v []byte) {
	h.h = fnvPair(h.h, k, v)
	h.n++
}

func (h *hasher) sum(st *logpb.AppliedState) StateHash {
	return StateHash{Index: st.GetIndex(), Revision: st.GetRevision(), Hash: h.h, Keys: h.n}
}
