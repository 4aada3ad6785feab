package sm

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/metamq/meta/sm/logpb"
)

// unknownOpEntry is an entry as a newer release would write it: a batch
// whose one operation is of a kind this version does not know (oneof
// field 999).
func unknownOpEntry(t *testing.T, index uint64) *raft.Log {
	t.Helper()
	var op []byte
	op = protowire.AppendTag(op, 999, protowire.BytesType)
	op = protowire.AppendBytes(op, []byte("newer"))
	batch := mustMarshal(t, &logpb.Batch{NowUnixNano: 1})
	batch = protowire.AppendTag(batch, 2, protowire.BytesType) // Batch.ops
	batch = protowire.AppendBytes(batch, op)
	if f := (&logpb.Batch{}).ProtoReflect().Descriptor().Fields().ByName("ops"); f == nil || f.Number() != 2 {
		t.Fatalf("Batch.ops is not field 2 (%v): fix the test", f)
	}
	return &raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: append([]byte{TypeBatch}, batch...)}
}

// An entry this replica cannot apply stops the group here: it is never
// skipped, nothing after it applies, the applied index stays below it,
// no snapshot is taken, and a restart halts at the same entry again.
func TestEntryThatCannotBeAppliedHaltsTheGroup(t *testing.T) {
	for _, tc := range []struct {
		name string
		bad  func(t *testing.T, index uint64) *raft.Log
	}{
		{"undecodable", func(t *testing.T, index uint64) *raft.Log {
			return &raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: []byte{TypeBatch, 0xff, 0xff, 0xff}}
		}},
		{"unknown type byte", func(t *testing.T, index uint64) *raft.Log {
			return &raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: []byte{0x7e, 1}}
		}},
		{"operation of a newer release", unknownOpEntry},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, KindData)
			e.m.Apply(entry(t, 10, putOp("a", "1")))
			out := e.m.ApplyBatch([]*raft.Log{tc.bad(t, 11), entry(t, 12, putOp("b", "2"))})
			for i, r := range out {
				if br := r.(*BatchResult); len(br.Results) != 0 {
					t.Fatalf("entry %d answered %v: its outcome here must be unknown (no results)", 11+i, br.Results)
				}
			}
			if got := e.m.AppliedIndex(); got != 10 {
				t.Fatalf("applied index %d after the bad entry, want 10 (never skipped)", got)
			}
			if err := e.m.Halted(); !errors.Is(err, ErrHalted) {
				t.Fatalf("Halted() = %v, want ErrHalted", err)
			}
			var h *HaltError
			if !errors.As(e.m.Halted(), &h) || h.Index != 11 {
				t.Fatalf("Halted() = %v, want the entry at 11", e.m.Halted())
			}
			if kv, _ := e.m.Get([]byte("b")); kv != nil {
				t.Fatalf("an entry after the bad one was applied: %v", kv)
			}
			if _, err := e.m.Snapshot(); !errors.Is(err, ErrHalted) {
				t.Fatalf("Snapshot() = %v while halted, want ErrHalted", err)
			}
			e.m.Apply(entry(t, 13, putOp("c", "3")))
			if kv, _ := e.m.Get([]byte("c")); kv != nil {
				t.Fatal("a later entry was applied while halted")
			}

			// A restart replays from the stored applied index: the same
			// entry halts it again.
			e.reopen()
			if e.m.Halted() != nil || e.m.AppliedIndex() != 10 {
				t.Fatalf("after a restart: halted %v, applied %d, want not yet halted at 10", e.m.Halted(), e.m.AppliedIndex())
			}
			e.m.ApplyBatch([]*raft.Log{tc.bad(t, 11), entry(t, 12, putOp("b", "2"))})
			if h := e.m.Halted(); h == nil || e.m.AppliedIndex() != 10 {
				t.Fatalf("after a restart and replay: halted %v, applied %d", h, e.m.AppliedIndex())
			}

			// A snapshot of a replica that applied entry 11 (here: a good
			// entry in its place) and more clears the halt.
			good := newEnv(t, KindData)
			good.m.ApplyBatch([]*raft.Log{entry(t, 10, putOp("a", "1")), entry(t, 11, putOp("x", "1")), entry(t, 12, putOp("b", "2"))})
			if err := e.m.Restore(io.NopCloser(bytes.NewReader(snapshotBytes(t, good.m)))); err != nil {
				t.Fatal(err)
			}
			if e.m.Halted() != nil {
				t.Fatalf("still halted after a snapshot past the entry: %v", e.m.Halted())
			}
			e.m.Apply(entry(t, 13, putOp("c", "3")))
			if kv, _ := e.m.Get([]byte("c")); kv == nil || string(kv.Value) != "3" {
				t.Fatalf("after the snapshot the replica does not apply: %v", kv)
			}
		})
	}
}

// A batch whose operations are all known applies as before; an empty
// operation (no kind, nothing unknown) is refused as invalid, the same on
// every replica, without halting.
func TestKnownEntriesDoNotHalt(t *testing.T) {
	e := newEnv(t, KindData)
	rs := results(t, e.m.Apply(entry(t, 1, putOp("a", "1"), &logpb.Op{})))
	if rs[0].Code != logpb.Code_CODE_OK || rs[1].Code != logpb.Code_CODE_INVALID {
		t.Fatalf("results %v: want OK then INVALID", rs)
	}
	if e.m.Halted() != nil || e.m.AppliedIndex() != 1 {
		t.Fatalf("halted %v, applied %d", e.m.Halted(), e.m.AppliedIndex())
	}
}

// A replica that runs a lower feature level (--feature-level) applies
// what a release of that level knows and halts, never skipping, on an
// operation that needs more, as that release would; once it runs the
// higher level (a restart), it applies the entry.
func TestReplicaBelowAnOperationsLevelHalts(t *testing.T) {
	e := &env{t: t, dir: t.TempDir(), group: KindData.String() + "-0", kind: KindData, level: BaseLevel}
	e.open()
	t.Cleanup(func() { e.close() })
	e.m.Apply(entry(t, 1, putOp("a", "1")))
	puts := &logpb.Op{Op: &logpb.Op_KvPuts{KvPuts: &logpb.KVPuts{Puts: []*logpb.KVPut{{Key: []byte("b"), Value: []byte("2")}}}}}
	e.m.Apply(entry(t, 2, puts))
	var h *HaltError
	if !errors.As(e.m.Halted(), &h) || h.Index != 2 || !errors.Is(e.m.Halted(), errUnknownContent) || e.m.AppliedIndex() != 1 {
		t.Fatalf("a level-%d replica given KVPuts (level %d): halted %v, applied %d; want halted at entry 2 as an unknown operation, applied 1",
			BaseLevel, OpLevel(puts), e.m.Halted(), e.m.AppliedIndex())
	}
	e.level = 0
	e.reopen()
	e.m.Apply(entry(t, 2, puts))
	if kv, _ := e.m.Get([]byte("b")); e.m.Halted() != nil || kv == nil || string(kv.Value) != "2" {
		t.Fatalf("at this release's level: halted %v, b = %v; want the entry applied", e.m.Halted(), kv)
	}
}
