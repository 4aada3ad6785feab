package sm

import (
	"errors"
	"fmt"

	"github.com/metamq/meta/sm/logpb"
)

// Halting. An entry this replica cannot apply exactly as every other
// replica does must never be skipped: skipping it and moving the applied
// index on would let this replica's state silently differ from the
// others'. Two cases: an entry that does not decode (a damaged log
// record), and one that decodes but carries an operation or fields this
// version does not know (written by a newer release's leader during a
// rolling upgrade, where an older replica would refuse what newer ones
// apply). Either way the group stops on this node: nothing more is
// applied, its stored applied index stays just below the entry (so a
// restart, or this node running the newer release, applies it again),
// its outcome here is unknown to a proposer, no snapshot is taken (raft
// would label it with an index this state has not reached), and the node
// reports not ready with the reason. A snapshot from another replica
// taken past the entry clears it.

// ErrHalted is wrapped by every HaltError.
var ErrHalted = errors.New("sm: group halted")

// HaltError says where and why a group stopped applying on this node.
type HaltError struct {
	Group string
	// Index is the entry that could not be applied.
	Index uint64
	Cause error
}

func (e *HaltError) Error() string {
	return fmt.Sprintf("%s halted at entry %d: %v", e.Group, e.Index, e.Cause)
}

func (e *HaltError) Unwrap() []error { return []error{ErrHalted, e.Cause} }

// Halted returns the reason this replica stopped applying, or nil.
func (m *Machine) Halted() error {
	if h := m.halted.Load(); h != nil {
		return h
	}
	return nil
}

func (m *Machine) halt(index uint64, cause error) {
	m.haltWith(index, cause, "entry cannot be applied here; the group stops applying on this node")
}

// haltWith halts the group at index, logging msg the first time.
func (m *Machine) haltWith(index uint64, cause error, msg string) {
	h := &HaltError{Group: m.group, Index: index, Cause: cause}
	if m.halted.CompareAndSwap(nil, h) {
		m.log.Error(msg, "index", index, "err", cause)
	}
}

// errUnknownContent: the entry holds what this version does not know.
var errUnknownContent = errors.New("written by a newer release: holds an operation or fields this version does not know")

// decodeKnownBatch decodes an entry and refuses one whose batch or
// operations carry fields this version does not know, or an operation
// that needs a feature level above level (the replica runs at a lower
// level, --feature-level: it applies what a release of that level knows,
// and halts where that release would, so that going back to it stays
// possible and an in-process cluster's older members behave as older
// releases). (Unknown fields inside a known operation's message are not
// looked for here: that would cost a walk of every message on every
// apply; a cluster version that keeps leaders from proposing them early
// is the way to rule them out.)
func decodeKnownBatch(data []byte, level uint32) (*logpb.Batch, error) {
	b, err := DecodeBatch(data)
	if err != nil {
		return nil, err
	}
	if len(b.ProtoReflect().GetUnknown()) > 0 {
		return nil, fmt.Errorf("batch %w", errUnknownContent)
	}
	for i, op := range b.Ops {
		if op.Op == nil && len(op.ProtoReflect().GetUnknown()) > 0 {
			return nil, fmt.Errorf("operation %d %w", i, errUnknownContent)
		}
		if need := OpLevel(op); need > level {
			return nil, fmt.Errorf("operation %d (%s, feature level %d) %w: this replica runs feature level %d", i, OpName(op), need, errUnknownContent, level)
		}
	}
	return b, nil
}

// StorageFailed halts the group on this node because the storage under
// its raft failed (metanode's guard of the raft log and stable stores;
// ApplyBatch reports the state machine's own failures): nothing more is
// applied here and the node reports the group halted, with cause
// wrapped in ErrStorage. Like every halt it lasts until the process
// restarts; a RocksDB that refuses writes refuses them until then too.
func (m *Machine) StorageFailed(cause error) {
	m.haltWith(m.index.Load()+1, fmt.Errorf("%w: %w", ErrStorage, cause), "STORAGE: the raft log or stable store failed; the group stops on this node")
}
