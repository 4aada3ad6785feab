package sm

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/metamq/meta/sm/logpb"
)

func hashCheckOp() *logpb.Op {
	return &logpb.Op{Op: &logpb.Op_HashCheck{HashCheck: &logpb.HashCheck{}}}
}

// hashAt waits for m's digest at index.
func hashAt(t *testing.T, m *Machine, index uint64) StateHash {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		h, err := m.HashAt(index)
		if err == nil {
			return h
		}
		if !errors.Is(err, ErrHashPending) || time.Now().After(deadline) {
			t.Fatalf("HashAt(%d): %v", index, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A hash check digests the state exactly as of its entry, even when raft
// hands it over in one batch with the entries around it: a replica that
// applied only up to it has the same digest, one whose state differs has
// another; other indexes have none (pending until applied), and only the
// most recent checks are kept.
func TestHashCheckDigestsItsEntrysState(t *testing.T) {
	e := newEnv(t, KindData)
	e.m.ApplyBatch([]*raft.Log{
		entry(t, 1, putOp("a", "1")),
		entry(t, 2, putOp("b", "2"), hashCheckOp()),
		entry(t, 3, putOp("c", "3"), putOp("a", "9")),
	})
	got := hashAt(t, e.m, 2)

	ref := newEnv(t, KindData)
	ref.m.ApplyBatch([]*raft.Log{entry(t, 1, putOp("a", "1")), entry(t, 2, putOp("b", "2"), hashCheckOp())})
	want, err := ref.m.Hash()
	if err != nil {
		t.Fatal(err)
	}
	if got != want || got.Index != 2 {
		t.Fatalf("digest at the check: %+v, want %+v (the state as of entry 2)", got, want)
	}
	if now, _ := e.m.Hash(); now.Hash == got.Hash {
		t.Fatalf("the state after entry 3 has the same digest as at entry 2: %+v", now)
	}
	if h := hashAt(t, ref.m, 2); h != want {
		t.Fatalf("the reference replica's own check: %+v, want %+v", h, want)
	}

	if _, err := e.m.HashAt(3); !errors.Is(err, ErrHashUnknown) {
		t.Fatalf("HashAt(3) (no check there) = %v, want ErrHashUnknown", err)
	}
	if _, err := e.m.HashAt(4); !errors.Is(err, ErrHashPending) {
		t.Fatalf("HashAt(4) (not applied yet) = %v, want ErrHashPending", err)
	}

	// A replica whose stored state was damaged behind raft's back.
	bad := newEnv(t, KindData)
	bad.m.ApplyBatch([]*raft.Log{entry(t, 1, putOp("a", "1"))})
	if err := bad.m.space.Put(kvKey([]byte("a")), []byte("damaged"), false); err != nil {
		t.Fatal(err)
	}
	bad.m.ApplyBatch([]*raft.Log{entry(t, 2, putOp("b", "2"), hashCheckOp())})
	if h := hashAt(t, bad.m, 2); h.Hash == want.Hash || h.Index != want.Index {
		t.Fatalf("damaged replica's digest %+v, want one that differs from %+v at the same index", h, want)
	}

	for i := uint64(4); i < 4+hashChecksKept; i++ {
		e.m.Apply(entry(t, i, hashCheckOp()))
		hashAt(t, e.m, i)
	}
	if _, err := e.m.HashAt(2); !errors.Is(err, ErrHashUnknown) {
		t.Fatalf("HashAt(2) after %d newer checks = %v, want ErrHashUnknown (dropped)", hashChecksKept, err)
	}
}

// A fenced replica stops applying, stays fenced across a restart, and
// comes back through a snapshot of a good replica.
func TestFenceHaltsUntilASnapshot(t *testing.T) {
	e := newEnv(t, KindData)
	e.m.Apply(entry(t, 1, putOp("a", "1")))
	if err := e.m.Fence(errors.New("digest 1 at 1, majority 2")); err != nil {
		t.Fatal(err)
	}
	check := func(when string) {
		t.Helper()
		if err := e.m.Halted(); !errors.Is(err, ErrHalted) || !errors.Is(err, ErrCorrupt) {
			t.Fatalf("%s: Halted() = %v, want ErrHalted and ErrCorrupt", when, err)
		}
	}
	check("fenced")
	e.m.Apply(entry(t, 2, putOp("b", "2")))
	if kv, _ := e.m.Get([]byte("b")); kv != nil || e.m.AppliedIndex() != 1 {
		t.Fatalf("a fenced replica applied entry 2: %v, applied %d", kv, e.m.AppliedIndex())
	}
	e.reopen()
	check("after a restart")

	good := newEnv(t, KindData)
	good.m.ApplyBatch([]*raft.Log{entry(t, 1, putOp("a", "1")), entry(t, 2, putOp("b", "2"))})
	if err := e.m.Restore(io.NopCloser(bytes.NewReader(snapshotBytes(t, good.m)))); err != nil {
		t.Fatal(err)
	}
	if err := e.m.Halted(); err != nil {
		t.Fatalf("still fenced after a good replica's snapshot: %v", err)
	}
	e.m.Apply(entry(t, 3, putOp("c", "3")))
	if kv, _ := e.m.Get([]byte("c")); kv == nil {
		t.Fatal("not applying after the snapshot")
	}
	e.reopen()
	if err := e.m.Halted(); err != nil {
		t.Fatalf("fenced again after a restart that followed the snapshot: %v", err)
	}
}
