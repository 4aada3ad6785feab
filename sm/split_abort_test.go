package sm

import (
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/metamq/meta/sm/logpb"
)

func abortOp(r *logpb.HashRange, to string) *logpb.Op {
	return &logpb.Op{Op: &logpb.Op_RangeAbort{RangeAbort: &logpb.RangeAbort{Range: r, To: to}}}
}

func resetOp(r *logpb.HashRange, expect, limit uint32) *logpb.Op {
	return &logpb.Op{Op: &logpb.Op_RangeReset{RangeReset: &logpb.RangeReset{Range: r, From: "data-0", ExpectResets: expect, Limit: limit}}}
}

// marksOf counts the parent's change marks.
func marksOf(t *testing.T, m *Machine) int {
	t.Helper()
	n := 0
	if err := m.space.Scan([]byte{prefixSplitMark}, []byte{prefixSplitMark + 1}, func(_, _ []byte) bool { n++; return true }); err != nil {
		t.Fatal(err)
	}
	return n
}

// An abort in the parent's log before its fence ends the tracking and its
// marks, and refuses the split's fence (and a new tracking) from then on,
// on every replica alike; the parent goes on serving the range; another
// split of the range (to another child) may start. An abort applied after
// the fence is refused with the fence the log recorded: the parent's log
// order decides.
func TestSplitAbortBeforeFence(t *testing.T) {
	p, p2, _, both, _ := splitEnvs(t)
	low, high := keysBySide(4)
	both(ownOp(false, &logpb.HashRange{Lo: 0, Hi: 1 << 32, Version: 1}))
	for _, k := range append(low, high...) {
		both(putOp(k, "v-"+k))
	}
	moving := &logpb.HashRange{Lo: 1 << 31, Hi: 1 << 32, Version: 2}
	wantCode(t, "track", both(trackOp(moving, "data-1"))[0], logpb.Code_CODE_OK)
	both(putOp(high[0], "changed"), delOp(high[1]))
	if n := marksOf(t, p.m); n != 2 {
		t.Fatalf("marks while tracking: got %d, want 2", n)
	}
	wantCode(t, "abort", both(abortOp(moving, "data-1"))[0], logpb.Code_CODE_OK)
	own := p.m.Ownership()
	if len(own.Tracking) != 0 || len(own.Moving) != 0 || len(own.Aborted) != 1 || len(own.Owned) != 1 || own.Owned[0].Hi != 1<<32 {
		t.Fatalf("parent after the abort: %v, want the whole range owned, nothing tracked, one split aborted", own)
	}
	if n := marksOf(t, p.m); n != 0 {
		t.Fatalf("marks after the abort: got %d, want 0", n)
	}
	wantCode(t, "abort again", both(abortOp(moving, "data-1"))[0], logpb.Code_CODE_OK)
	// A step that raced the abort: its fence and its tracking come after.
	wantCode(t, "fence after the abort", both(releaseOp(moving, "data-1"))[0], logpb.Code_CODE_CONFLICT)
	wantCode(t, "track after the abort", both(trackOp(moving, "data-1"))[0], logpb.Code_CODE_CONFLICT)
	wantCode(t, "put in the range after the abort", both(putOp(high[2], "served"))[0], logpb.Code_CODE_OK)
	if kv, err := p.m.Get([]byte(high[2])); err != nil || string(kv.GetValue()) != "served" {
		t.Fatalf("parent read in the range after the abort: %v %v", kv, err)
	}
	if n := marksOf(t, p.m); n != 0 {
		t.Fatalf("marks after a put once the tracking was aborted: got %d, want 0", n)
	}
	h1, err := p.m.Hash()
	if err != nil {
		t.Fatal(err)
	}
	if h2, _ := p2.m.Hash(); h1 != h2 {
		t.Fatalf("parent replicas differ after the abort: %v vs %v", h1, h2)
	}

	// The next split of the range, to another group: the abort was of
	// data-1's only. Its fence comes first; its abort is refused then.
	wantCode(t, "track for data-2", both(trackOp(moving, "data-2"))[0], logpb.Code_CODE_OK)
	rel := both(releaseOp(moving, "data-2"))[0]
	wantCode(t, "fence for data-2", rel, logpb.Code_CODE_OK)
	r := both(abortOp(moving, "data-2"))[0]
	wantCode(t, "abort after the fence", r, logpb.Code_CODE_CONFLICT)
	mr, want := &logpb.MovingRange{}, &logpb.MovingRange{}
	if err := proto.Unmarshal(r.Value, mr); err != nil {
		t.Fatal(err)
	}
	if err := proto.Unmarshal(rel.Value, want); err != nil {
		t.Fatal(err)
	}
	if mr.FenceIndex == 0 || !proto.Equal(mr, want) {
		t.Fatalf("refused abort answers %v, want the fence recorded %v", mr, want)
	}
	if own := p.m.Ownership(); len(own.Moving) != 1 || len(own.Aborted) != 1 {
		t.Fatalf("parent after the refused abort: %v, want the range still released", own)
	}
}

// A refused acquire's fallback in the child's log: a reset deletes the
// copy in bounded steps, refusing ingests and the acquire meanwhile; the
// last step leaves a fresh copy state with one more reset; a reset of an
// earlier round changes nothing; the range copied again is acquired.
func TestSplitResetRecopies(t *testing.T) {
	p, _, c, both, applyC := splitEnvs(t)
	_, high := keysBySide(6)
	both(ownOp(false, &logpb.HashRange{Lo: 0, Hi: 1 << 32, Version: 1}))
	both(leaseOp(7))
	for _, k := range high {
		both(putOp(k, "v-"+k))
	}
	moving := &logpb.HashRange{Lo: 1 << 31, Hi: 1 << 32, Version: 2}
	wantCode(t, "release", both(releaseOp(moving, "data-1"))[0], logpb.Code_CODE_OK)
	fenceRev := p.m.Revision()
	all, err := p.m.ReadRange(moving, nil, 1000, 1<<20, true)
	if err != nil || !all.Done {
		t.Fatalf("read the range: %v (done %v)", err, all.Done)
	}
	digest := *all.Digest
	// A copy that differs: one value changed on the way.
	bad := make([]*logpb.RawPair, len(all.Pairs))
	for i, pr := range all.Pairs {
		bad[i] = proto.CloneOf(pr)
	}
	bad[len(bad)/2].Value = append(bad[len(bad)/2].Value, 'x')
	r := applyC(&logpb.Op{Op: &logpb.Op_RangeIngest{RangeIngest: &logpb.RangeIngest{Range: moving, From: "data-0", Pairs: bad, Done: true}}})[0]
	wantCode(t, "ingest", r, logpb.Code_CODE_OK)
	r = applyC(acquireOp(moving, fenceRev, digest))[0]
	wantCode(t, "acquire of a copy that differs", r, logpb.Code_CODE_CONFLICT)
	if st := copyStateOf(t, r); st.Resets != 0 || !st.Done {
		t.Fatalf("refused acquire answers %v, want the copy state (done, no resets)", st)
	}
	// The reset, two keys a step.
	steps := 0
	for {
		r := applyC(resetOp(moving, 0, 2))[0]
		wantCode(t, "reset", r, logpb.Code_CODE_OK)
		steps++
		if r.Succeeded {
			break
		}
		if st := copyStateOf(t, r); !st.Resetting {
			t.Fatalf("copy state during the reset: %v, want resetting", st)
		}
		wantCode(t, "ingest during the reset", applyC(ingestOp(moving, nil, nil))[0], logpb.Code_CODE_CONFLICT)
		wantCode(t, "acquire during the reset", applyC(acquireOp(moving, fenceRev, RangeDigest{}))[0], logpb.Code_CODE_CONFLICT)
		if steps > len(all.Pairs) {
			t.Fatal("the reset never ends")
		}
	}
	if steps < 2 {
		t.Fatalf("the reset took %d steps of two keys for %d keys, want several", steps, len(all.Pairs))
	}
	if d := scanDigest(t, c.m, moving); d.Keys != 0 {
		t.Fatalf("child after the reset holds %d keys of the range, want 0", d.Keys)
	}
	st, err := c.m.CopyState()
	if err != nil || st == nil || st.Resets != 1 || st.Done || st.Resetting || st.Keys != 0 || len(st.Cursor) != 0 {
		t.Fatalf("copy state after the reset: %v (%v), want fresh with one reset", st, err)
	}
	// The copy again, right this time; a late step of the first round's
	// reset changes nothing.
	wantCode(t, "ingest again", applyC(&logpb.Op{Op: &logpb.Op_RangeIngest{RangeIngest: &logpb.RangeIngest{Range: moving, From: "data-0", Pairs: all.Pairs, Done: true}}})[0], logpb.Code_CODE_OK)
	if r := applyC(resetOp(moving, 0, 2))[0]; r.Code != logpb.Code_CODE_OK || r.Count != 0 {
		t.Fatalf("a reset of the first round after the second copy: %v, want OK deleting nothing", r)
	}
	wantCode(t, "acquire of the copy made again", applyC(acquireOp(moving, fenceRev, digest))[0], logpb.Code_CODE_OK)
	for _, k := range high {
		if kv, err := c.m.Get([]byte(k)); err != nil || string(kv.GetValue()) != "v-"+k {
			t.Fatalf("child get %s: %v %v", k, kv, err)
		}
	}
	wantCode(t, "reset once acquired", applyC(resetOp(moving, 1, 2))[0], logpb.Code_CODE_CONFLICT)
}
