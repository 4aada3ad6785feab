package sm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/metamq/meta/rocks"
	"github.com/metamq/meta/sm/logpb"
	"github.com/metamq/meta/sm/state"
)

// ErrClosed is returned by reads after Close.
var ErrClosed = errors.New("sm: closed")

// Config configures a Machine.
type Config struct {
	Kind   Kind
	Group  string
	DB     *rocks.DB
	Logger *slog.Logger
	// Level is the feature level this replica applies at (version.go):
	// 0 means FeatureLevel; a lower one halts on an operation that needs
	// more, as a release of that level does on one it does not know.
	Level uint32
}

// Machine is one group's state machine. Apply, Snapshot and Restore are
// called by raft on its FSM goroutine, one at a time; reads may come from
// any goroutine.
type Machine struct {
	kind  Kind
	group string
	db    *rocks.DB
	space *rocks.Space
	log   *slog.Logger
	// level is the feature level this replica applies at.
	level uint32

	// index, term and rev mirror the stored AppliedState; written only by
	// the FSM goroutine after the batch that stores them has committed.
	index atomic.Uint64
	term  atomic.Uint64
	rev   atomic.Uint64

	// restoreMu is held for writing while Restore replaces the data, so
	// that no read (and no snapshot export) sees half of the old state and
	// half of the new.
	restoreMu sync.RWMutex

	// workDir is where Restore stages a stream that is not one of a
	// SnapStore's snapshots; NewSnapStore sets it to its work directory.
	workDir atomic.Pointer[string]
	// afterClear, when set (by tests only), runs in Restore after the old
	// data is cleared and before the new is ingested; an error stops the
	// restore there, as a crash would.
	afterClear func() error

	// onStale is called when Restore refuses a stale snapshot.
	onStale atomic.Pointer[func(snapshotIndex, applied uint64)]

	// own mirrors the stored ownership record (ownership.go); replaced,
	// holding restoreMu for writing, when an apply changes it.
	own atomic.Pointer[ownView]
	// halted is set when an entry cannot be applied here (halt.go): from
	// it on, nothing more is applied, and the stored applied index stays
	// below it.
	halted atomic.Pointer[HaltError]

	// snaps counts the snapshots exported and restored (SnapshotStats).
	snaps snapCounters

	// Hash checks (hashcheck.go): the recent digests by index, and the
	// goroutines computing them (Close waits for them: they read the DB).
	hashMu  sync.Mutex
	hashes  map[uint64]*hashCheck
	hashing sync.WaitGroup

	// The compaction after a split's drop (compactAfterDrop): whether
	// one runs, and whether another drop completed meanwhile. Close does
	// not wait for it: closing the database (or dropping the group)
	// aborts it.
	compactMu    sync.Mutex
	compacting   bool
	compactAgain bool

	waitMu  sync.Mutex    // guards applied
	applied chan struct{} // closed and replaced after every apply
	closed  atomic.Bool
}

var (
	_ raft.FSM         = (*Machine)(nil)
	_ raft.BatchingFSM = (*Machine)(nil)
)

// New opens the machine of one group, reading the applied state stored with
// its data.
func New(cfg Config) (*Machine, error) {
	if cfg.DB == nil {
		return nil, errors.New("sm: Config.DB is nil")
	}
	if cfg.Kind < KindMetadata || cfg.Kind > KindData {
		return nil, fmt.Errorf("sm: Config.Kind: invalid %d", cfg.Kind)
	}
	space, err := cfg.DB.Data(cfg.Group)
	if err != nil {
		return nil, fmt.Errorf("sm: group %s: %w", cfg.Group, err)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Level == 0 || cfg.Level > FeatureLevel {
		cfg.Level = FeatureLevel
	}
	m := &Machine{kind: cfg.Kind, group: cfg.Group, db: cfg.DB, space: space, level: cfg.Level,
		log: cfg.Logger.With("group", cfg.Group), applied: make(chan struct{})}
	st, err := m.loadApplied(space.Get)
	if err != nil {
		return nil, err
	}
	m.index.Store(st.Index)
	m.term.Store(st.Term)
	m.rev.Store(st.Revision)
	if err := m.loadOwnership(space.Get); err != nil {
		return nil, err
	}
	if err := m.loadFence(); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *Machine) loadApplied(get func([]byte) ([]byte, bool, error)) (*logpb.AppliedState, error) {
	v, ok, err := get(keyApplied)
	if err != nil {
		return nil, fmt.Errorf("sm: read applied state: %w", err)
	}
	st := &logpb.AppliedState{}
	if ok {
		if err := proto.Unmarshal(v, st); err != nil {
			return nil, fmt.Errorf("sm: decode applied state: %w", err)
		}
	}
	return st, nil
}

// Kind returns the machine's kind.
func (m *Machine) Kind() Kind { return m.kind }

// Group returns the machine's group name.
func (m *Machine) Group() string { return m.group }

// AppliedIndex is the last raft index reflected in the stored state.
func (m *Machine) AppliedIndex() uint64 { return m.index.Load() }

// Revision is the group's mutation counter.
func (m *Machine) Revision() uint64 { return m.rev.Load() }

// RestoreIncomplete reports whether a snapshot restore was interrupted (the
// data is then unusable until a snapshot is restored again).
func (m *Machine) RestoreIncomplete() (bool, error) {
	_, ok, err := m.space.Get(keyRestoring)
	return ok, err
}

// WaitApplied blocks until the applied index reaches index or ctx ends.
func (m *Machine) WaitApplied(ctx context.Context, index uint64) error {
	for {
		m.waitMu.Lock()
		ch := m.applied
		m.waitMu.Unlock()
		if m.index.Load() >= index {
			return nil
		}
		if m.closed.Load() {
			return ErrClosed
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// AppliedChanged returns a channel closed when the next entry is applied.
func (m *Machine) AppliedChanged() <-chan struct{} {
	m.waitMu.Lock()
	defer m.waitMu.Unlock()
	return m.applied
}

func (m *Machine) notify() {
	m.waitMu.Lock()
	close(m.applied)
	m.applied = make(chan struct{})
	m.waitMu.Unlock()
}

// Close wakes every waiter; later waits fail with ErrClosed. It returns
// once no hash check reads the DB any more. The machine does not own the
// DB.
func (m *Machine) Close() {
	if m.closed.CompareAndSwap(false, true) {
		m.notify()
	}
	m.hashing.Wait()
}

var _ state.Reader = (*Machine)(nil)

// BatchResult is the response of an applied TypeBatch entry: one result per
// op, in order.
type BatchResult struct {
	Index   uint64
	Results []*logpb.Result
}

// Apply applies one entry.
func (m *Machine) Apply(l *raft.Log) interface{} {
	return m.ApplyBatch([]*raft.Log{l})[0]
}

// ApplyBatch applies entries in one write batch: the data they change and
// the new applied state commit together (unsynced: the raft log is the
// durable record, and RocksDB's single WAL orders these writes behind it).
// Entries at or below the stored applied index were applied before a
// restart and are skipped.
//
// A storage failure (a full disk: the commit fails with ENOSPC, or a read
// through the batch fails) halts the group on this node (halt.go) instead
// of stopping the process: every replica would hit the same full disk at
// once, and a process that panics on it restarts into the same failure, a
// crash loop of the whole cluster. Nothing of the uncommitted entries is
// stored, the applied index stays below the first of them, their
// outcomes here are unknown (other replicas may apply them), and a
// restart once space is freed applies them again from the raft log.
func (m *Machine) ApplyBatch(logs []*raft.Log) []interface{} {
	out := make([]interface{}, len(logs))
	st := &logpb.AppliedState{Index: m.index.Load(), Term: m.term.Load(), Revision: m.rev.Load()}
	b := m.db.NewBatch()
	defer func() { b.Close() }()
	// What an entry writes is about three times its size (a put stores
	// the value, and its event the value and the one replaced).
	size := 0
	for _, l := range logs {
		size += len(l.Data)
	}
	b.Grow(3 * size)
	changed, dropped := false, false
	own := m.own.Load()
	var ownChanged *logpb.Ownership
	// storageFailed halts the group at the first entry b holds
	// uncommitted and answers every uncommitted entry as unknown.
	storageFailed := func(err error) {
		stored := m.index.Load()
		m.haltWith(stored+1, err, "STORAGE: cannot store applied entries (disk full?); the group stops applying on this node until it restarts")
		for i, l := range logs {
			if l.Index > stored {
				out[i] = &BatchResult{Index: l.Index}
			}
		}
		changed = false
	}
	for i, l := range logs {
		if l.Index <= st.Index {
			continue
		}
		if m.halted.Load() != nil {
			// Its outcome here is unknown (no results): other replicas
			// may apply it.
			out[i] = &BatchResult{Index: l.Index}
			continue
		}
		if l.Type != raft.LogCommand {
			st.Index, st.Term = l.Index, l.Term
			changed = true
			continue
		}
		batch, err := decodeKnownBatch(l.Data, m.level)
		if err != nil {
			m.halt(l.Index, err)
			out[i] = &BatchResult{Index: l.Index}
			continue
		}
		st.Index, st.Term = l.Index, l.Term
		changed = true
		a := applier{m: m, b: b, st: st, now: batch.NowUnixNano, own: own}
		res := &BatchResult{Index: l.Index, Results: make([]*logpb.Result, len(batch.Ops))}
		for j, op := range batch.Ops {
			r := a.apply(op)
			if a.err != nil {
				break
			}
			r.Index = l.Index
			res.Results[j] = r
			if a.ownChanged != nil {
				ownChanged, own = a.ownChanged, &ownView{rec: a.ownChanged}
				a.ownChanged = nil
			}
		}
		if a.err != nil {
			storageFailed(a.err)
			break
		}
		out[i] = res
		dropped = dropped || a.dropped
		if a.hashCheck {
			// Digest the state exactly as of this entry: commit what
			// the batch holds so far and take a storage snapshot before
			// the next entry writes.
			if err := m.commitApplied(b, st, ownChanged); err != nil {
				storageFailed(err)
				break
			}
			m.startHash(st)
			b.Reset()
			changed, ownChanged = false, nil
		}
	}
	if changed {
		if err := m.commitApplied(b, st, ownChanged); err != nil {
			storageFailed(err)
			dropped = false
		}
	}
	if dropped && m.halted.Load() == nil {
		m.compactAfterDrop()
	}
	return out
}

// compactAfterDrop compacts the group's data in the background once a
// split's drop has deleted a released range: the deleted keys' space is
// freed now rather than whenever later writes compact those files, and
// the group's size, which the controller balances and splits by, is
// true again. One compaction runs at a time; a drop that completes during
// one makes it run once more.
func (m *Machine) compactAfterDrop() {
	m.compactMu.Lock()
	defer m.compactMu.Unlock()
	if m.compacting {
		m.compactAgain = true
		return
	}
	m.compacting = true
	go func() {
		for {
			start := time.Now()
			before := m.space.Property("rocksdb.live-sst-files-size")
			err := m.space.Compact()
			m.log.Info("compacted after a split's drop", "took", time.Since(start).Round(time.Millisecond),
				"sst_bytes_before", before, "sst_bytes_after", m.space.Property("rocksdb.live-sst-files-size"), "err", err)
			m.compactMu.Lock()
			if !m.compactAgain || err != nil {
				m.compacting, m.compactAgain = false, false
				m.compactMu.Unlock()
				return
			}
			m.compactAgain = false
			m.compactMu.Unlock()
		}
	}()
}

// ErrStorage is the cause of a halt on a storage failure (ApplyBatch).
var ErrStorage = errors.New("sm: storage failure")

// commitApplied commits b with the applied state st (and the ownership
// record, if the batch changed it), then publishes them. An error (wrapping
// ErrStorage) means nothing of b was stored.
func (m *Machine) commitApplied(b *rocks.Batch, st *logpb.AppliedState, ownChanged *logpb.Ownership) error {
	if err := putProto(b, m.space, keyApplied, st); err != nil {
		return fmt.Errorf("%w: encode applied state: %w", ErrStorage, err)
	}
	if ownChanged != nil {
		// Readers check ownership and read data in one view: they see
		// both before this batch or both after it.
		m.restoreMu.Lock()
		defer m.restoreMu.Unlock()
	}
	if err := b.Commit(false); err != nil {
		return fmt.Errorf("%w: commit applied batch: %w", ErrStorage, err)
	}
	if ownChanged != nil {
		m.own.Store(&ownView{rec: ownChanged})
	}
	m.index.Store(st.Index)
	m.term.Store(st.Term)
	m.rev.Store(st.Revision)
	m.notify()
	return nil
}

func putProto(b *rocks.Batch, s *rocks.Space, key []byte, msg proto.Message) error {
	v, err := marshal.Marshal(msg)
	if err != nil {
		return err
	}
	b.Put(s, key, v)
	return nil
}

// OnStaleSnapshot sets fn to be called (on the FSM goroutine, or on the
// goroutine receiving a snapshot for a SnapStore; it must not block) when
// a snapshot older than the applied state is refused.
func (m *Machine) OnStaleSnapshot(fn func(snapshotIndex, applied uint64)) {
	m.onStale.Store(&fn)
}

// refusedStale reports a refused stale snapshot to the log and to the
// OnStaleSnapshot handler.
func (m *Machine) refusedStale(se *staleError) {
	applied := m.index.Load()
	m.log.Warn("refused a snapshot older than this replica's state", "snapshot_index", se.index, "applied", applied)
	if fn := m.onStale.Load(); fn != nil {
		(*fn)(se.index, applied)
	}
}

// appliedState returns the applied state as last stored.
func (m *Machine) appliedState() *logpb.AppliedState {
	return &logpb.AppliedState{Index: m.index.Load(), Term: m.term.Load(), Revision: m.rev.Load()}
}
