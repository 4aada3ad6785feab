package sm

import (
	"errors"
	"testing"

	"github.com/metamq/meta/sm/logpb"
)

func releaseOp(r *logpb.HashRange, to string) *logpb.Op {
	return &logpb.Op{Op: &logpb.Op_RangeRelease{RangeRelease: &logpb.RangeRelease{Range: r, To: to}}}
}

func ingestOp(r *logpb.HashRange, after []byte, pairs []*logpb.RawPair) *logpb.Op {
	return &logpb.Op{Op: &logpb.Op_RangeIngest{RangeIngest: &logpb.RangeIngest{Range: r, From: "data-0", After: after, Pairs: pairs}}}
}

func acquireOp(r *logpb.HashRange, rev uint64, d RangeDigest) *logpb.Op {
	return &logpb.Op{Op: &logpb.Op_RangeAcquire{RangeAcquire: &logpb.RangeAcquire{Range: r, From: "data-0", FenceRevision: rev, Keys: d.Keys, Hash: d.Hash}}}
}

func keepAliveOp(id int64) *logpb.Op {
	return &logpb.Op{Op: &logpb.Op_LeaseKeepAlive{LeaseKeepAlive: &logpb.LeaseKeepAlive{Id: id}}}
}

func wantCode(t *testing.T, what string, r *logpb.Result, code logpb.Code) {
	t.Helper()
	if r.Code != code {
		t.Fatalf("%s: got %v (%s), want %v", what, r.Code, r.Message, code)
	}
}

// A split through both logs: the parent's fence refuses, at apply, every
// op on the moving range (an op proposed before the fence and applied
// after it included) and lease changes, on every replica alike; the copy
// goes chunk by chunk, resumable at the child's cursor; the child acquires
// only a copy whose count and hash match the parent's at the fence, then
// serves the range with revisions continuing from the parent's; the
// parent's drop deletes its copy and the range is WRONG_GROUP there.
func TestSplitFenceCopyAcquireDrop(t *testing.T) {
	p := &env{t: t, dir: t.TempDir(), group: "data-0", kind: KindData, bare: true}
	p.open()
	t.Cleanup(p.close)
	p2 := &env{t: t, dir: t.TempDir(), group: "data-0", kind: KindData, bare: true} // a second replica of the parent: same log, same outcomes
	p2.open()
	t.Cleanup(p2.close)
	c := &env{t: t, dir: t.TempDir(), group: "data-1", kind: KindData, bare: true}
	c.open()
	t.Cleanup(c.close)
	applyP, applyP2, applyC := p.applyNext(), p2.applyNext(), c.applyNext()
	both := func(ops ...*logpb.Op) []*logpb.Result {
		r := applyP(ops...)
		r2 := applyP2(ops...)
		for i := range r {
			if r[i].Code != r2[i].Code {
				t.Fatalf("replicas differ on op %d: %v vs %v", i, r[i], r2[i])
			}
		}
		return r
	}
	low, high := keysBySide(5)
	both(ownOp(false, &logpb.HashRange{Lo: 0, Hi: 1 << 32, Version: 1}))
	both(leaseOp(7))
	for _, k := range append(low, high...) {
		both(putOp(k, "v-"+k))
	}
	both(&logpb.Op{Op: &logpb.Op_Put{Put: &logpb.KVPut{Key: []byte(high[0]), Value: []byte("leased"), Lease: 7}}})
	moving := &logpb.HashRange{Lo: 1 << 31, Hi: 1 << 32, Version: 2}
	// The fence, in an entry that also carries a put proposed before it
	// (after it in the entry: applied after the fence).
	r := both(releaseOp(moving, "data-1"), putOp(high[1], "late"), putOp(low[0], "kept"))
	wantCode(t, "release", r[0], logpb.Code_CODE_OK)
	wantCode(t, "put in the moving range after the fence", r[1], logpb.Code_CODE_RANGE_MOVING)
	wantCode(t, "put in the kept range", r[2], logpb.Code_CODE_OK)
	fenceRev := p.m.Revision()
	wantCode(t, "keepalive while splitting", both(keepAliveOp(7))[0], logpb.Code_CODE_RANGE_MOVING)
	wantCode(t, "release again", both(releaseOp(moving, "data-1"))[0], logpb.Code_CODE_OK)
	var oe *OwnershipError
	if _, err := p.m.Get([]byte(high[2])); !errors.As(err, &oe) || !oe.Moving {
		t.Fatalf("parent read in the moving range: got %v, want moving", err)
	}
	if _, _, err := p.m.List(nil, nil, 100, false); !errors.As(err, &oe) || !oe.Moving {
		t.Fatalf("parent listing while splitting: got %v, want moving", err)
	}
	h1, err := p.m.Hash()
	if err != nil {
		t.Fatal(err)
	}
	if h2, _ := p2.m.Hash(); h1 != h2 {
		t.Fatalf("parent replicas differ after the fence: %v vs %v", h1, h2)
	}

	// The copy, two keys a chunk.
	first, err := p.m.ReadRange(moving, nil, 2, 1<<20, true)
	if err != nil {
		t.Fatal(err)
	}
	digest := *first.Digest
	if digest.Keys < uint64(len(high)) {
		t.Fatalf("digest counts %d keys, want at least the %d in the range", digest.Keys, len(high))
	}
	// An acquire before the copy is complete changes nothing.
	wantCode(t, "acquire of an empty copy", applyC(acquireOp(moving, fenceRev, digest))[0], logpb.Code_CODE_CONFLICT)
	var after []byte
	chunk := first
	for i := 0; ; i++ {
		r := applyC(ingestOp(moving, after, chunk.Pairs))[0]
		wantCode(t, "ingest", r, logpb.Code_CODE_OK)
		if i == 0 {
			// The same chunk again (a resumed copy): refused, with the
			// cursor to resume at.
			r := applyC(ingestOp(moving, after, chunk.Pairs))[0]
			wantCode(t, "ingest again", r, logpb.Code_CODE_CONFLICT)
			if string(r.Value) != string(chunk.Pairs[len(chunk.Pairs)-1].Key) {
				t.Fatalf("cursor %x, want %x", r.Value, chunk.Pairs[len(chunk.Pairs)-1].Key)
			}
		}
		if chunk.Done {
			break
		}
		after = chunk.Pairs[len(chunk.Pairs)-1].Key
		if chunk, err = p.m.ReadRange(moving, after, 2, 1<<20, false); err != nil {
			t.Fatal(err)
		}
	}
	// The child serves nothing before it acquires.
	wantCode(t, "put in the child before acquire", applyC(putOp(high[3], "x"))[0], logpb.Code_CODE_WRONG_GROUP)
	bad := digest
	bad.Hash++
	wantCode(t, "acquire with another hash", applyC(acquireOp(moving, fenceRev, bad))[0], logpb.Code_CODE_CONFLICT)
	wantCode(t, "acquire", applyC(acquireOp(moving, fenceRev, digest))[0], logpb.Code_CODE_OK)
	wantCode(t, "acquire again", applyC(acquireOp(moving, fenceRev, digest))[0], logpb.Code_CODE_OK)
	for _, k := range high {
		kv, err := c.m.Get([]byte(k))
		want := "v-" + k
		if k == high[0] {
			want = "leased"
		}
		if err != nil || string(kv.GetValue()) != want {
			t.Fatalf("child get %s: %v %v, want %s", k, kv, err, want)
		}
	}
	if l, err := c.m.Lease(7); err != nil || l == nil {
		t.Fatalf("child lease 7: %v %v", l, err)
	}
	r = applyC(putOp(high[1], "after"), putOp(low[1], "wrong"))
	wantCode(t, "child put in its range", r[0], logpb.Code_CODE_OK)
	if r[0].Revision <= fenceRev {
		t.Fatalf("child revision %d, want above the parent's %d at the fence", r[0].Revision, fenceRev)
	}
	wantCode(t, "child put outside its range", r[1], logpb.Code_CODE_WRONG_GROUP)

	// The drop.
	r = both(&logpb.Op{Op: &logpb.Op_RangeDrop{RangeDrop: &logpb.RangeDrop{Range: moving}}})
	wantCode(t, "drop", r[0], logpb.Code_CODE_OK)
	if r[0].Count < uint64(len(high)) {
		t.Fatalf("drop deleted %d keys, want at least %d", r[0].Count, len(high))
	}
	if _, err := p.m.Get([]byte(high[2])); !errors.As(err, &oe) || oe.Moving {
		t.Fatalf("parent read in the moved range: got %v, want wrong group", err)
	}
	wantCode(t, "keepalive after the split", both(keepAliveOp(7))[0], logpb.Code_CODE_OK)
	if kv, err := p.m.Get([]byte(low[0])); err != nil || string(kv.GetValue()) != "kept" {
		t.Fatalf("parent kept key: %v %v", kv, err)
	}
	entries, _, err := p.m.List(nil, nil, 100, false)
	if err != nil || len(entries) != len(low) {
		t.Fatalf("parent listing after the split: %d entries (%v), want %d", len(entries), err, len(low))
	}
	h1, _ = p.m.Hash()
	if h2, _ := p2.m.Hash(); h1 != h2 {
		t.Fatalf("parent replicas differ after the drop: %v vs %v", h1, h2)
	}
}

// The child's cursor and ownership are in its hashed, snapshotted state:
// a child restarted mid-copy resumes at the same key.
func TestSplitIngestSurvivesRestart(t *testing.T) {
	c := &env{t: t, dir: t.TempDir(), group: "data-1", kind: KindData, bare: true}
	c.open()
	t.Cleanup(c.close)
	moving := &logpb.HashRange{Lo: 1 << 31, Hi: 1 << 32, Version: 2}
	_, high := keysBySide(2)
	pair := &logpb.RawPair{Key: kvKey([]byte(high[0])), Value: []byte{}}
	results(t, c.m.Apply(entry(t, 1, ingestOp(moving, nil, []*logpb.RawPair{pair}))))
	c.reopen()
	if own := c.m.Ownership(); own == nil || !own.Ingesting {
		t.Fatalf("ownership after restart: %v", own)
	}
	r := results(t, c.m.Apply(entry(t, 2, ingestOp(moving, nil, []*logpb.RawPair{pair}))))[0]
	wantCode(t, "ingest of the first chunk again", r, logpb.Code_CODE_CONFLICT)
	if string(r.Value) != string(pair.Key) {
		t.Fatalf("cursor %x, want %x", r.Value, pair.Key)
	}
	// A key outside the range is refused.
	low, _ := keysBySide(1)
	r = results(t, c.m.Apply(entry(t, 3, ingestOp(moving, pair.Key, []*logpb.RawPair{{Key: kvKey([]byte(low[0]))}}))))[0]
	wantCode(t, "ingest of a key outside the range", r, logpb.Code_CODE_INVALID)
}
