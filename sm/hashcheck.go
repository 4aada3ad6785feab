package sm

import (
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/metamq/meta/rocks"
	"github.com/metamq/meta/sm/logpb"
)

// Hash checks. A HashCheck entry makes every replica digest its state as
// of that entry: the applier commits what it holds right after the entry
// and takes a storage snapshot before the next entry writes, and a
// goroutine digests the snapshot (Hash's digest) while the group goes on
// applying. Replicas that agree on the log agree on the digest at that
// index; one that does not has a state that differs (a damaged file, a
// bug that applied an entry differently). The group's leader compares the
// replicas' digests (metanode's hash checks) and fences one that
// disagrees with the majority: Fence halts its replica of the group as an
// entry it cannot apply does (halt.go), and records the fence with its
// data, so that a restart does not bring the replica back; a snapshot
// from another replica clears both.

// hashChecksKept is how many hash checks a replica remembers (the most
// recent ones).
const hashChecksKept = 8

var (
	// ErrHashPending: this replica has not yet applied the hash check's
	// entry, or is still digesting its state.
	ErrHashPending = errors.New("sm: hash check not done yet")
	// ErrHashUnknown: this replica holds no digest for that index (the
	// entry holds no hash check, the digest was dropped, or the replica
	// came past the entry through a snapshot).
	ErrHashUnknown = errors.New("sm: no hash check at that index")
	// ErrCorrupt is wrapped by the cause of a fenced replica's halt.
	ErrCorrupt = errors.New("sm: replica state differs from the group's majority (CORRUPT)")
)

// hashCheck is one digest, done or under way.
type hashCheck struct {
	done chan struct{} // closed when sum and err are set
	sum  StateHash
	err  error
}

// startHash digests the state as of st, which the FSM goroutine has just
// committed, in the background.
func (m *Machine) startHash(st *logpb.AppliedState) {
	sn := m.db.NewSnapshot()
	at := &logpb.AppliedState{Index: st.Index, Term: st.Term, Revision: st.Revision}
	hc := &hashCheck{done: make(chan struct{})}
	m.hashMu.Lock()
	if m.hashes == nil {
		m.hashes = map[uint64]*hashCheck{}
	}
	m.hashes[st.Index] = hc
	for len(m.hashes) > hashChecksKept {
		delete(m.hashes, slices.Min(slices.Collect(maps.Keys(m.hashes))))
	}
	m.hashing.Add(1)
	m.hashMu.Unlock()
	go func() {
		defer m.hashing.Done()
		defer sn.Close()
		hc.sum, hc.err = m.digest(sn, at)
		close(hc.done)
		if hc.err == nil {
			m.log.Debug("hash check", "index", at.Index, "hash", hc.sum.Hash, "keys", hc.sum.Keys)
		}
	}()
}

// HashAt returns this replica's digest of its state as of the hash check
// entry at index: ErrHashPending until it has one, ErrHashUnknown when it
// never will.
func (m *Machine) HashAt(index uint64) (StateHash, error) {
	m.hashMu.Lock()
	hc := m.hashes[index]
	m.hashMu.Unlock()
	if hc == nil {
		if index > m.index.Load() && m.halted.Load() == nil {
			return StateHash{}, fmt.Errorf("%w: applied %d of %d", ErrHashPending, m.index.Load(), index)
		}
		return StateHash{}, fmt.Errorf("%w: %d", ErrHashUnknown, index)
	}
	select {
	case <-hc.done:
		return hc.sum, hc.err
	default:
		return StateHash{}, fmt.Errorf("%w: digesting the state at %d", ErrHashPending, index)
	}
}

// digest is the state hash of one storage snapshot (see StateHash). It
// stops early, with ErrClosed, once the machine closes.
func (m *Machine) digest(sn *rocks.Snapshot, st *logpb.AppliedState) (StateHash, error) {
	h := newHasher()
	closed := false
	if err := sn.Scan(m.space, userStart, userEnd, func(k, v []byte) bool {
		if h.n%4096 == 0 && m.closed.Load() {
			closed = true
			return false
		}
		h.add(k, v)
		return true
	}); err != nil {
		return StateHash{}, fmt.Errorf("sm: hash scan: %w", err)
	}
	if closed {
		return StateHash{}, ErrClosed
	}
	return h.sum(st), nil
}

// Fence stops this replica of the group for good: a hash check found its
// state differs from the majority's. Nothing more is applied here (as
// after an entry that cannot be applied), the node reports the group
// halted (not ready, the meta_group_halted metric), and the fence is
// stored with the data so that a restart keeps it. A snapshot from
// another replica (restoring the majority's state) clears it.
func (m *Machine) Fence(cause error) error {
	if err := m.space.Put(keyFenced, []byte(cause.Error()), true); err != nil {
		return fmt.Errorf("sm: store fence: %w", err)
	}
	m.haltWith(m.index.Load()+1, fmt.Errorf("%w: %w", ErrCorrupt, cause), "replica fenced: the group stops applying on this node")
	return nil
}

// loadFence halts a replica fenced before a restart.
func (m *Machine) loadFence() error {
	v, ok, err := m.space.Get(keyFenced)
	if err != nil {
		return fmt.Errorf("sm: read fence: %w", err)
	}
	if ok {
		m.haltWith(m.index.Load()+1, fmt.Errorf("%w: fenced before a restart: %s", ErrCorrupt, v), "replica fenced: the group stops applying on this node")
	}
	return nil
}
