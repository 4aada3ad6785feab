package metanode

import (
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"

	"github.com/hashicorp/raft"

	"github.com/metamq/meta/rocks"
)

// Storage failures under raft. hashicorp/raft v1.8.0 panics when its
// stable store fails a write of the current term (setCurrentTerm: "failed
// to save current term", at every election and every newer term it
// hears of, on its main goroutine or in the heartbeat handler), and when
// its log store fails to read an entry it is about to apply (processLogs)
// or to make a bootstrap live. A RocksDB that meets a damaged table file
// in a compaction (or a write-ahead log it cannot write) enters a
// background error and refuses every write of every column family from
// then on: the node's next election killed the process, and a restart met
// the same compaction, a crash loop.
//
// raft is therefore given its stores through a guard. Once raft runs
// (armed), a store call that fails marks the failure instead of handing it
// to raft as it is:
//
//   - a failed write (log or stable store) means RocksDB refuses writes:
//     every group of this node stops (Node.storageFailed): each replica
//     halts (sm.Machine.StorageFailed: reads and writes are refused here,
//     /readyz, meta_group_halted and meta_storage_failed say why) and its
//     raft shuts down, so that it no longer votes or acknowledges. The
//     other replicas hold every acknowledged write and go on; the node
//     stays up until the runbook replaces its copy (README: forced member
//     remove, wipe, re-add).
//   - a failed read (a damaged block of this group's log or stable state)
//     stops this group only, the same way.
//
// Where raft would panic on the error (a stable-store write, a log read),
// the guard ends raft's goroutine that made the call instead
// (runtime.Goexit: its deferred calls run, among them the release of
// raft's goroutine wait group, so the shutdown completes) after it began
// the shutdown; rpc/transport runs raft's heartbeat handler on a
// goroutine of its own for this. Every other failure is returned to raft, which handles it
// (a follower refuses the append, a leader steps down). Before raft runs
// (NewRaft reading its state) errors pass through: the group fails to
// start with them. NewRaft itself panics on two of them (a configuration
// entry of the log it cannot read, a current term it cannot store);
// startRaft turns that panic into the failure the guard saw, so that the
// node refuses to start, saying why, instead of dying.
//
// A failure that only says the group or the database is closing
// (rocks.ErrGroupDropped, rocks.ErrClosed: a call racing the group's own
// stop) ends raft's goroutine the same way, without a halt: the group is
// being stopped anyway.
type storeGuard struct {
	armed atomic.Bool
	// failed is told of a failure once armed; write says whether it was
	// a write. It must not block on raft.
	failed func(err error, write bool)
	// startErr is the first failure before raft runs (startRaft).
	startErr atomic.Pointer[error]
}

// check reports err (nil: nothing) of the call what and returns it, or,
// when fatal (raft would panic on it), ends the calling goroutine.
func (sg *storeGuard) check(what string, err error, write, fatal bool) error {
	if err == nil {
		return nil
	}
	err = fmt.Errorf("raft %s: %w", what, err)
	if !sg.armed.Load() {
		sg.startErr.CompareAndSwap(nil, &err)
		return err
	}
	sg.failed(err, write)
	if fatal {
		runtime.Goexit()
	}
	return err
}

// closing reports whether err only says that the store is being closed.
func closing(err error) bool {
	return errors.Is(err, rocks.ErrClosed) || errors.Is(err, rocks.ErrGroupDropped)
}

// guardedStable is the stable store raft is given.
type guardedStable struct {
	s raft.StableStore
	g *storeGuard
}

var _ raft.StableStore = guardedStable{}

func (s guardedStable) Set(key, val []byte) error {
	return s.g.check("stable-store write", s.s.Set(key, val), true, true)
}

func (s guardedStable) SetUint64(key []byte, val uint64) error {
	return s.g.check("stable-store write", s.s.SetUint64(key, val), true, true)
}

// Get returns a missing key's error as it is: raft recognises it by its
// text (rocks.ErrNotFound).
func (s guardedStable) Get(key []byte) ([]byte, error) {
	v, err := s.s.Get(key)
	if errors.Is(err, rocks.ErrNotFound) {
		return v, err
	}
	return v, s.g.check("stable-store read", err, false, false)
}

func (s guardedStable) GetUint64(key []byte) (uint64, error) {
	v, err := s.s.GetUint64(key)
	if errors.Is(err, rocks.ErrNotFound) {
		return v, err
	}
	return v, s.g.check("stable-store read", err, false, false)
}

// guardedLogs is the log store raft is given.
type guardedLogs struct {
	l raft.LogStore
	g *storeGuard
}

var _ raft.LogStore = guardedLogs{}

func (l guardedLogs) FirstIndex() (uint64, error) {
	i, err := l.l.FirstIndex()
	return i, l.g.check("log first index", err, false, false)
}

func (l guardedLogs) LastIndex() (uint64, error) {
	i, err := l.l.LastIndex()
	return i, l.g.check("log last index", err, false, false)
}

// GetLog returns raft.ErrLogNotFound as it is (raft compares it with ==).
func (l guardedLogs) GetLog(index uint64, log *raft.Log) error {
	err := l.l.GetLog(index, log)
	if err == raft.ErrLogNotFound { // raft's contract: compared with ==
		return err
	}
	return l.g.check(fmt.Sprintf("log read at %d", index), err, false, true)
}

func (l guardedLogs) StoreLog(log *raft.Log) error {
	return l.g.check("log write", l.l.StoreLog(log), true, false)
}

func (l guardedLogs) StoreLogs(logs []*raft.Log) error {
	return l.g.check("log write", l.l.StoreLogs(logs), true, false)
}

func (l guardedLogs) DeleteRange(lo, hi uint64) error {
	return l.g.check("log delete", l.l.DeleteRange(lo, hi), true, false)
}

// startRaft runs start (raft.NewRaft). A panic of raft's after one of
// its store calls failed (raft panics on some, see storeGuard) is
// returned as that failure; raft has started no goroutine at those
// points. Any other panic goes on.
func (sg *storeGuard) startRaft(start func() (*raft.Raft, error)) (r *raft.Raft, err error) {
	defer func() {
		if p := recover(); p != nil {
			failed := sg.startErr.Load()
			if failed == nil {
				panic(p)
			}
			r, err = nil, fmt.Errorf("%w (raft stopped on it: %v)", *failed, p)
		}
	}()
	return start()
}

// storageFailed stops the group on this node after a failure of the
// storage under its raft: the replica halts and raft shuts down (not
// waited for here: the call may come from raft's own goroutine).
func (g *group) storageFailed(err error) {
	if !closing(err) {
		g.fsm.StorageFailed(err)
	}
	g.shutdownRaft()
}

// shutdownRaft begins raft's shutdown once and returns its future;
// waiting for it (in the background the first time) closes the group's
// transport, so that calls to the group are answered at once.
func (g *group) shutdownRaft() raft.Future {
	g.shutdownOnce.Do(func() {
		g.shutdownF = g.raft.Shutdown()
		go func() { _ = g.shutdownF.Error() }()
	})
	return g.shutdownF
}

// storageFailed stops every group of the node: its RocksDB refused a
// write, and refuses every write from then on (a background error).
func (n *Node) storageFailed(err error) {
	if closing(err) {
		return
	}
	if n.storageErr.CompareAndSwap(nil, &err) {
		n.log.Error("STORAGE: RocksDB refuses writes; every group stops on this node (replace its copy: README runbook)", "err", err)
	}
	for _, g := range n.hostedGroups() {
		g.storageFailed(fmt.Errorf("the node's storage refuses writes: %w", err))
	}
}

// DamagedWALTail says why the last record of a write-ahead log (its
// bytes), which RocksDB would drop as a write a crash cut short, is damage
// instead, on which a node refuses to start (rocks.DamagedWALTail); empty
// when it is not.
func DamagedWALTail(log []byte) string { return rocks.DamagedWALTail(log) }
