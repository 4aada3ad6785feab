package sm

import (
	"encoding/binary"
	"errors"
	"hash/fnv"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

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

func trackOp(r *logpb.HashRange, to string) *logpb.Op {
	return &logpb.Op{Op: &logpb.Op_RangeTrack{RangeTrack: &logpb.RangeTrack{Range: r, To: to}}}
}

func replayOp(r *logpb.HashRange, since uint64, pairs []*logpb.RawPair) *logpb.Op {
	return &logpb.Op{Op: &logpb.Op_RangeIngest{RangeIngest: &logpb.RangeIngest{Range: r, From: "data-0", Pairs: pairs, Replay: true, Final: true, Since: since}}}
}

func catchUpOp(r *logpb.HashRange, since uint64, c *RangeChunk, after []byte) *logpb.Op {
	return &logpb.Op{Op: &logpb.Op_RangeIngest{RangeIngest: &logpb.RangeIngest{Range: r, From: "data-0", After: after, Pairs: c.Pairs,
		Done: c.Done, Replay: true, Since: since, ViewIndex: c.AppliedIndex}}}
}

func dropOp(r *logpb.HashRange, limit uint32) *logpb.Op {
	return &logpb.Op{Op: &logpb.Op_RangeDrop{RangeDrop: &logpb.RangeDrop{Range: r, Limit: limit}}}
}

// copyStateOf decodes an ingest's answer.
func copyStateOf(t *testing.T, r *logpb.Result) *logpb.RangeCopyState {
	t.Helper()
	st := &logpb.RangeCopyState{}
	if err := proto.Unmarshal(r.Value, st); err != nil {
		t.Fatalf("ingest answer: %v", err)
	}
	return st
}

// scanDigest digests the child's stored copy of r by reading it, for
// comparison with the digest its ingests kept.
func scanDigest(t *testing.T, m *Machine, r *logpb.HashRange) RangeDigest {
	t.Helper()
	d, err := digestRange(func(fn func(k, v []byte) bool) error { return m.space.Scan(userStart, userEnd, fn) }, r)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// wantChild checks that m holds each of keys with the value want gives
// it, or not at all when want has none.
func wantChild(t *testing.T, m *Machine, keys []string, want map[string]string) {
	t.Helper()
	for _, k := range keys {
		kv, err := m.Get([]byte(k))
		if err != nil {
			t.Fatal(err)
		}
		if w, ok := want[k]; !ok && kv != nil || ok && (kv == nil || string(kv.Value) != w) {
			t.Errorf("child %s: %v, want %q (present %v)", k, kv, w, ok)
		}
	}
}

// Every stored key a split moves is below movedEnd, which bounds the
// scans that copy and digest a range.
func TestMovedKeysBelowMovedEnd(t *testing.T) {
	all := &logpb.HashRange{Lo: 0, Hi: 1 << 32}
	for p := int(movedEnd[0]); p < 0x100; p++ {
		for _, k := range [][]byte{{byte(p)}, append([]byte{byte(p)}, "0123456789abcdef-key"...)} {
			if movedKey(k, all) {
				t.Errorf("stored key %x is moved by a split, but not below movedEnd", k)
			}
		}
	}
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

// splitEnvs opens two replicas of a parent data-0 and a child data-1, all
// bare; both applies ops to the two parent replicas as their next entry
// (same log, same outcomes: it checks they answer alike), applyC to the
// child.
func splitEnvs(t *testing.T) (p, p2, c *env, both, applyC func(ops ...*logpb.Op) []*logpb.Result) {
	p, p2, c = bareEnv(t, "data-0"), bareEnv(t, "data-0"), bareEnv(t, "data-1")
	applyP, applyP2 := p.applyNext(), p2.applyNext()
	both = func(ops ...*logpb.Op) []*logpb.Result {
		r := applyP(ops...)
		r2 := applyP2(ops...)
		for i := range r {
			if r[i].Code != r2[i].Code {
				t.Fatalf("replicas differ on op %d: %v vs %v", i, r[i], r2[i])
			}
		}
		return r
	}
	return p, p2, c, both, c.applyNext()
}

// A split through both logs: the parent's fence refuses, at apply, every
// op on the moving range (an op proposed before the fence and applied
// after it included) and lease changes, on every replica alike; the copy
// goes chunk by chunk, resumable at the child's cursor; the child acquires
// only a copy whose count and hash match the parent's at the fence, then
// serves the range with revisions continuing from the parent's; the
// parent's drop deletes its copy and the range is WRONG_GROUP there.
func TestSplitFenceCopyAcquireDrop(t *testing.T) {
	p, p2, c, both, applyC := splitEnvs(t)
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
			if cur := copyStateOf(t, r).Cursor; string(cur) != string(chunk.Pairs[len(chunk.Pairs)-1].Key) {
				t.Fatalf("cursor %x, want %x", cur, chunk.Pairs[len(chunk.Pairs)-1].Key)
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
	c := bareEnv(t, "data-1")
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
	if cur := copyStateOf(t, r).Cursor; string(cur) != string(pair.Key) {
		t.Fatalf("cursor %x, want %x", cur, pair.Key)
	}
	// A key outside the range is refused.
	low, _ := keysBySide(1)
	r = results(t, c.m.Apply(entry(t, 3, ingestOp(moving, pair.Key, []*logpb.RawPair{{Key: kvKey([]byte(low[0]))}}))))[0]
	wantCode(t, "ingest of a key outside the range", r, logpb.Code_CODE_INVALID)
}

// A first ingest refused after it recorded that the group copies (its
// cursor is not the child's) leaves the group as it was, in memory as in
// storage: it still serves (a put applies) and owns nothing new.
func TestRefusedIngestLeavesOwnership(t *testing.T) {
	c := bareEnv(t, "data-1")
	moving := &logpb.HashRange{Lo: 1 << 31, Hi: 1 << 32, Version: 2}
	_, high := keysBySide(1)
	pair := &logpb.RawPair{Key: kvKey([]byte(high[0])), Value: []byte{}}
	r := results(t, c.m.Apply(entry(t, 1, ingestOp(moving, []byte("elsewhere"), []*logpb.RawPair{pair}))))[0]
	wantCode(t, "a first ingest after another cursor", r, logpb.Code_CODE_CONFLICT)
	if own := c.m.Ownership(); own != nil {
		t.Fatalf("ownership in memory after the refused ingest: %v, want none", own)
	}
	r = results(t, c.m.Apply(entry(t, 2, putOp(high[0], "v"))))[0]
	wantCode(t, "a put after the refused ingest", r, logpb.Code_CODE_OK)
	c.reopen()
	if own := c.m.Ownership(); own != nil {
		t.Fatalf("ownership stored after the refused ingest: %v, want none", own)
	}
}

// A split copied while the parent serves the range: the bulk copy is read
// after the parent's RangeTrack, chunk by chunk from views at different
// indexes, while puts, deletes and lease changes go on in the range; the
// fence freezes it; the replay carries only the keys changed since the
// tracking began (an update, a new key, a deleted key, a lease), as they
// are at the fence; the child then holds exactly the parent's range at the
// fence (the count and hash check passes, every key reads the same, the
// deleted key is absent). Before the replay the same check refuses the
// copy: a copy that missed a change is never acquired.
func TestSplitCopyBeforeFenceReplaysChanges(t *testing.T) {
	p, p2, c, both, applyC := splitEnvs(t)
	low, high := keysBySide(12)
	both(ownOp(false, &logpb.HashRange{Lo: 0, Hi: 1 << 32, Version: 1}))
	both(leaseOp(7))
	for _, k := range append(low, high[:10]...) {
		both(putOp(k, "v-"+k))
	}
	moving := &logpb.HashRange{Lo: 1 << 31, Hi: 1 << 32, Version: 2}
	if _, err := p.m.ReadRange(moving, nil, 3, 1<<20, false); !errors.Is(err, ErrNotReleased) {
		t.Fatalf("bulk read before the tracking: got %v, want ErrNotReleased", err)
	}
	wantCode(t, "track", both(trackOp(moving, "data-1"))[0], logpb.Code_CODE_OK)
	wantCode(t, "track again", both(trackOp(moving, "data-1"))[0], logpb.Code_CODE_OK)
	wantCode(t, "track for another group", both(trackOp(moving, "data-2"))[0], logpb.Code_CODE_CONFLICT)
	if _, err := p.m.ReadRange(moving, nil, 3, 1<<20, true); !errors.Is(err, ErrNotReleased) {
		t.Fatalf("digest before the fence: got %v, want ErrNotReleased", err)
	}
	// The parent still serves the range; the bulk copy goes on in
	// between its writes, three keys a chunk. After the first chunk, two
	// of its keys change (one deleted, one updated: the copy holds their
	// old state); later, keys not copied yet change, a key is created,
	// one is attached to a lease and the lease kept alive (leases move).
	var copied []string // KV keys of the first chunk
	later := []string{high[10], high[11]}
	changes := []func() []*logpb.Op{
		func() []*logpb.Op { return []*logpb.Op{delOp(copied[0]), putOp(copied[1], "updated-after-copy")} },
		func() []*logpb.Op { return []*logpb.Op{putOp(later[0], "new")} },
		func() []*logpb.Op {
			return []*logpb.Op{{Op: &logpb.Op_Put{Put: &logpb.KVPut{Key: []byte(later[1]), Value: []byte("leased"), Lease: 7}}}, keepAliveOp(7)}
		},
		func() []*logpb.Op { return []*logpb.Op{putOp(low[0], "kept-side")} }, // outside the range
	}
	applied := 0
	var after []byte
	for i := 0; ; i++ {
		chunk, err := p.m.ReadRange(moving, after, 3, 1<<20, false)
		if err != nil {
			t.Fatalf("bulk read %d: %v", i, err)
		}
		if i == 0 {
			for _, pr := range chunk.Pairs {
				if k, ok := strings.CutPrefix(string(pr.Key), string([]byte{prefixKV})); ok {
					copied = append(copied, k)
				}
			}
			if len(copied) < 2 {
				t.Fatalf("the first chunk holds %d KV keys, want 2", len(copied))
			}
		}
		r := applyC(&logpb.Op{Op: &logpb.Op_RangeIngest{RangeIngest: &logpb.RangeIngest{Range: moving, From: "data-0", After: after, Pairs: chunk.Pairs, Done: chunk.Done}}})[0]
		wantCode(t, "bulk ingest", r, logpb.Code_CODE_OK)
		if applied < len(changes) {
			for _, r := range both(changes[applied]()...) {
				wantCode(t, "a change while copying", r, logpb.Code_CODE_OK)
			}
			applied++
		}
		if chunk.Done {
			if !copyStateOf(t, r).Done {
				t.Fatal("the last chunk did not mark the bulk copy done")
			}
			break
		}
		after = chunk.Pairs[len(chunk.Pairs)-1].Key
	}
	for ; applied < len(changes); applied++ {
		both(changes[applied]()...)
	}
	wantCode(t, "bulk ingest after the copy is done", applyC(ingestOp(moving, after, nil))[0], logpb.Code_CODE_CONFLICT)
	if _, err := p.m.ReadReplay(moving, nil, 0, 100, 1<<20, true); !errors.Is(err, ErrNotReleased) {
		t.Fatalf("replay read before the fence: got %v, want ErrNotReleased", err)
	}
	r := both(releaseOp(moving, "data-1"), putOp(high[3], "late"))
	wantCode(t, "release", r[0], logpb.Code_CODE_OK)
	wantCode(t, "put after the fence", r[1], logpb.Code_CODE_RANGE_MOVING)
	fenceRev := p.m.Revision()
	if own := p.m.Ownership(); len(own.Tracking) != 0 || len(own.Moving) != 1 || own.Moving[0].TrackIndex == 0 {
		t.Fatalf("parent ownership after the fence: %v", own)
	}
	first, err := p.m.ReadRange(moving, nil, 1, 1<<20, true)
	if err != nil {
		t.Fatal(err)
	}
	digest := *first.Digest
	wantCode(t, "acquire of a copy that missed the changes", applyC(acquireOp(moving, fenceRev, digest))[0], logpb.Code_CODE_CONFLICT)

	// The replay, two keys a chunk: exactly the changed keys.
	replayed := map[string]*logpb.RawPair{}
	after = nil
	for {
		chunk, err := p.m.ReadReplay(moving, after, 0, 2, 1<<20, true)
		if err != nil {
			t.Fatal(err)
		}
		for _, pr := range chunk.Pairs {
			replayed[string(pr.Key)] = pr
		}
		if len(chunk.Pairs) > 0 {
			wantCode(t, "replay", applyC(replayOp(moving, 0, chunk.Pairs))[0], logpb.Code_CODE_OK)
		}
		if chunk.Done {
			break
		}
		after = chunk.Pairs[len(chunk.Pairs)-1].Key
	}
	changed := []string{copied[0], copied[1], later[0], later[1]}
	for _, k := range changed {
		if replayed[string(kvKey([]byte(k)))] == nil {
			t.Errorf("the replay lacks %s", k)
		}
	}
	if len(replayed) > len(changed)+4 { // + the lease's record, its expiry index before and after the keepalive, the key attached to it
		t.Errorf("the replay holds %d keys, want the %d changed and the lease's: %v", len(replayed), len(changed), replayed)
	}
	if replayed[string(kvKey([]byte(low[0])))] != nil {
		t.Errorf("the replay holds %s, outside the range", low[0])
	}
	if pr := replayed[string(kvKey([]byte(copied[0])))]; pr == nil || !pr.Deleted {
		t.Errorf("the replay of the deleted %s: %v, want deleted", copied[0], pr)
	}
	wantCode(t, "acquire", applyC(acquireOp(moving, fenceRev, digest))[0], logpb.Code_CODE_OK)
	if d := scanDigest(t, c.m, moving); d != digest {
		t.Fatalf("the child's copy read back digests to %v, want the parent's %v at the fence", d, digest)
	}
	want := map[string]string{copied[1]: "updated-after-copy", later[0]: "new", later[1]: "leased"}
	for _, k := range high[:10] {
		if _, ok := want[k]; !ok && k != copied[0] {
			want[k] = "v-" + k
		}
	}
	wantChild(t, c.m, high, want)
	if l, err := c.m.Lease(7); err != nil || l == nil {
		t.Fatalf("child lease 7: %v %v", l, err)
	}
	// The parent's drop takes the marks with the range's keys; the
	// replicas agree all along.
	for {
		r := both(dropOp(moving, 0))[0]
		wantCode(t, "drop", r, logpb.Code_CODE_OK)
		if r.Succeeded {
			break
		}
	}
	sp, err := p.db.Data(p.group)
	if err != nil {
		t.Fatal(err)
	}
	if err := sp.Scan([]byte{prefixSplitMark}, []byte{prefixSplitMark + 1}, func(k, _ []byte) bool {
		t.Errorf("a mark left after the drop: %x", k)
		return true
	}); err != nil {
		t.Fatal(err)
	}
	h1, _ := p.m.Hash()
	if h2, _ := p2.m.Hash(); h1 != h2 {
		t.Fatalf("parent replicas differ: %v vs %v", h1, h2)
	}
}

// The parent's drop goes in bounded steps: each deletes at most its limit
// of the range's keys, from where the last one stopped (a cursor in the
// parent's hashed state: both replicas agree after each step); the range
// stays released (RANGE_MOVING) until the last step, which alone answers
// succeeded; the kept range is untouched.
func TestSplitDropInBoundedSteps(t *testing.T) {
	p, p2, _, bothP, _ := splitEnvs(t)
	both := func(ops ...*logpb.Op) []*logpb.Result {
		r := bothP(ops...)
		h1, _ := p.m.Hash()
		if h2, _ := p2.m.Hash(); h1 != h2 {
			t.Fatalf("replicas differ: %v vs %v", h1, h2)
		}
		return r
	}
	low, high := keysBySide(9)
	both(ownOp(false, &logpb.HashRange{Lo: 0, Hi: 1 << 32, Version: 1}))
	for _, k := range append(low, high...) {
		both(putOp(k, "v"))
	}
	moving := &logpb.HashRange{Lo: 1 << 31, Hi: 1 << 32, Version: 2}
	both(releaseOp(moving, "data-1"))
	steps, total := 0, uint64(0)
	for {
		r := both(dropOp(moving, 2))[0]
		wantCode(t, "drop step", r, logpb.Code_CODE_OK)
		steps++
		total += r.Count
		if r.Count > 2 {
			t.Fatalf("drop step %d deleted %d keys, want at most 2", steps, r.Count)
		}
		if r.Succeeded {
			break
		}
		var oe *OwnershipError
		if _, err := p.m.Get([]byte(high[0])); !errors.As(err, &oe) || !oe.Moving {
			t.Fatalf("read in the range between drop steps: got %v, want moving", err)
		}
		if steps > 100 {
			t.Fatal("the drop never ends")
		}
	}
	if total != uint64(len(high)) || steps < len(high)/2 {
		t.Fatalf("drop: %d keys in %d steps, want %d in at least %d", total, steps, len(high), len(high)/2)
	}
	var oe *OwnershipError
	if _, err := p.m.Get([]byte(high[0])); !errors.As(err, &oe) || oe.Moving {
		t.Fatalf("read in the dropped range: got %v, want wrong group", err)
	}
	entries, _, err := p.m.List(nil, nil, 100, false)
	if err != nil || len(entries) != len(low) {
		t.Fatalf("parent listing after the drop: %d entries (%v), want %d", len(entries), err, len(low))
	}
	if r := both(dropOp(moving, 2))[0]; !r.Succeeded || r.Count != 0 {
		t.Fatalf("drop again: %v, want succeeded with nothing deleted", r)
	}
}

// The drop step that removes a released range compacts the parent's data
// in the background, on every replica: the dropped keys' space is freed
// (the SST files shrink to about the half kept) without further writes
// to the group.
func TestSplitDropCompactsTheParent(t *testing.T) {
	p, p2, _, both, _ := splitEnvs(t)
	low, high := keysBySide(1000)
	both(ownOp(false, &logpb.HashRange{Lo: 0, Hi: 1 << 32, Version: 1}))
	rng := rand.New(rand.NewPCG(3, 4))
	for _, k := range append(low, high...) {
		v := make([]byte, 1024) // random: LZ4 would shrink repeated bytes to nothing
		for j := range v {
			v[j] = byte(rng.Uint32())
		}
		both(putOp(k, string(v)))
	}
	// The change log holds every value too: compact it away, so that
	// the keys' own data is what the files hold.
	both(&logpb.Op{Op: &logpb.Op_EventsCompact{EventsCompact: &logpb.EventsCompact{BelowRevision: p.m.Revision() + 1}}})
	sstBytes := func(e *env) uint64 {
		sp, err := e.db.Data(e.group)
		if err != nil {
			t.Fatal(err)
		}
		v, err := strconv.ParseUint(sp.Property("rocksdb.live-sst-files-size"), 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	full := map[*env]uint64{}
	for _, e := range []*env{p, p2} {
		if err := e.db.Flush(); err != nil {
			t.Fatal(err)
		}
		full[e] = sstBytes(e)
		if full[e] < uint64(len(low)+len(high))*1024 {
			t.Fatalf("SST files of the parent before the split: %d bytes, want at least %d", full[e], (len(low)+len(high))*1024)
		}
	}
	moving := &logpb.HashRange{Lo: 1 << 31, Hi: 1 << 32, Version: 2}
	both(releaseOp(moving, "data-1"))
	for steps := 0; ; steps++ {
		if r := both(dropOp(moving, 0))[0]; r.Succeeded {
			break
		}
		if steps > 100 {
			t.Fatal("the drop never ends")
		}
	}
	for _, e := range []*env{p, p2} {
		// Bounded wait for a background compaction of 2 MB, not a
		// speed: without one the files never shrink.
		deadline := time.Now().Add(30 * time.Second)
		for sstBytes(e) > full[e]*3/4 {
			if time.Now().After(deadline) {
				t.Fatalf("SST files of a parent replica 30 s after the drop: %d bytes, want at most %d (3/4 of %d; it holds half the keys)", sstBytes(e), full[e]*3/4, full[e])
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	entries, _, err := p.m.List(nil, nil, 5000, true)
	if err != nil || len(entries) != len(low) {
		t.Fatalf("parent listing after the drop: %d entries (%v), want %d", len(entries), err, len(low))
	}
}

// Catch-up passes before the fence shrink the final replay to what changed
// since the pass caught up: a pass copies the keys marked so far, one key
// a chunk, each from its own view while the parent keeps serving (a key
// the pass copied changes again meanwhile); the pass catches up to the
// lowest index it read at. After the fence, the final replay from that
// index holds the key changed again and a key written after the pass, and
// not the keys the pass copied and left unchanged (a delete among them);
// the child then acquires with the parent's count and hash at the fence.
// A stale catch-up chunk after the final replay began, and a final replay
// from above the caught-up index, are refused.
func TestSplitCatchUpLeavesOnlyTheTail(t *testing.T) {
	p, _, c, applyP, applyC := splitEnvs(t)
	low, high := keysBySide(8)
	applyP(ownOp(false, &logpb.HashRange{Lo: 0, Hi: 1 << 32, Version: 1}))
	for _, k := range append(low, high[:6]...) {
		applyP(putOp(k, "v-"+k))
	}
	moving := &logpb.HashRange{Lo: 1 << 31, Hi: 1 << 32, Version: 2}
	wantCode(t, "track", applyP(trackOp(moving, "data-1"))[0], logpb.Code_CODE_OK)
	bulk, err := p.m.ReadRange(moving, nil, 100, 1<<20, false)
	if err != nil || !bulk.Done {
		t.Fatalf("bulk read: %v %v", bulk, err)
	}
	wantCode(t, "bulk", applyC(&logpb.Op{Op: &logpb.Op_RangeIngest{RangeIngest: &logpb.RangeIngest{Range: moving, From: "data-0", Pairs: bulk.Pairs, Done: true}}})[0], logpb.Code_CODE_OK)
	// Changed during the bulk copy: three keys (one deleted).
	applyP(putOp(high[0], "changed"), delOp(high[1]), putOp(high[2], "changed"))
	// The pass, a key a chunk.
	var after, firstKey []byte
	var st *logpb.RangeCopyState
	for i := 0; ; i++ {
		chunk, err := p.m.ReadReplay(moving, after, 0, 1, 1<<20, false)
		if err != nil {
			t.Fatal(err)
		}
		r := applyC(catchUpOp(moving, 0, chunk, after))[0]
		wantCode(t, "catch-up", r, logpb.Code_CODE_OK)
		st = copyStateOf(t, r)
		if i == 0 {
			// The key just copied changes again, after the view the
			// pass read it from.
			firstKey = chunk.Pairs[0].Key
			applyP(putOp(string(firstKey[1:]), "changed-again"))
		}
		if chunk.Done {
			break
		}
		after = chunk.Pairs[len(chunk.Pairs)-1].Key
	}
	if st.CaughtUp == 0 || st.PassCursor != nil {
		t.Fatalf("after the pass: %v, want caught up", st)
	}
	applyP(putOp(high[6], "after-the-pass"))
	wantCode(t, "release", applyP(releaseOp(moving, "data-1"))[0], logpb.Code_CODE_OK)
	fenceRev := p.m.Revision()
	tail, err := p.m.ReadReplay(moving, nil, st.CaughtUp, 100, 1<<20, true)
	if err != nil || !tail.Done {
		t.Fatalf("final replay read: %v %v", tail, err)
	}
	var got []string
	for _, pr := range tail.Pairs {
		got = append(got, string(pr.Key[1:]))
	}
	if want := []string{string(firstKey[1:]), high[6]}; len(got) != 2 || !slices.Contains(got, want[0]) || !slices.Contains(got, want[1]) {
		t.Fatalf("the final replay holds %q, want %q", got, want)
	}
	wantCode(t, "final replay from above the caught-up index", applyC(replayOp(moving, st.CaughtUp+1, tail.Pairs))[0], logpb.Code_CODE_CONFLICT)
	wantCode(t, "final replay", applyC(replayOp(moving, st.CaughtUp, tail.Pairs))[0], logpb.Code_CODE_OK)
	stale, err := p.m.ReadReplay(moving, nil, st.CaughtUp, 100, 1<<20, false)
	if err != nil {
		t.Fatal(err)
	}
	wantCode(t, "a catch-up chunk after the final replay began", applyC(catchUpOp(moving, st.CaughtUp, stale, nil))[0], logpb.Code_CODE_CONFLICT)
	first, err := p.m.ReadRange(moving, nil, 1, 1<<20, true)
	if err != nil {
		t.Fatal(err)
	}
	wantCode(t, "acquire", applyC(acquireOp(moving, fenceRev, *first.Digest))[0], logpb.Code_CODE_OK)
	if d := scanDigest(t, c.m, moving); d != *first.Digest {
		t.Fatalf("the child's copy read back digests to %v, want the parent's %v at the fence", d, *first.Digest)
	}
	want := map[string]string{high[0]: "changed", high[2]: "changed", high[3]: "v-" + high[3], high[4]: "v-" + high[4], high[5]: "v-" + high[5], high[6]: "after-the-pass"}
	want[string(firstKey[1:])] = "changed-again"
	wantChild(t, c.m, high, want)
}

// The state hash and a split's per-key hash are hash/fnv's FNV-1a of
// each pair, length-prefixed (what they were before they were computed in
// place: hashes stored or compared across releases stay equal).
func TestHashesAreFNV1aOfTheEncodedPairs(t *testing.T) {
	pairs := []struct{ k, v string }{{"", ""}, {"a", ""}, {"\x01kv/007", "value"}, {strings.Repeat("k", 300), "v"}}
	all, h := fnv.New64a(), newHasher()
	for _, c := range pairs {
		var b []byte
		b = binary.AppendUvarint(b, uint64(len(c.k)))
		b = append(b, c.k...)
		b = binary.AppendUvarint(b, uint64(len(c.v)))
		b = append(b, c.v...)
		one := fnv.New64a()
		_, _ = one.Write(b)
		if got := keyHash([]byte(c.k), []byte(c.v)); got != one.Sum64() {
			t.Errorf("keyHash(%q, %q) = %#x, want %#x", c.k, c.v, got, one.Sum64())
		}
		_, _ = all.Write(b)
		h.add([]byte(c.k), []byte(c.v))
	}
	if h.h != all.Sum64() || h.n != uint64(len(pairs)) {
		t.Errorf("state hash %#x of %d pairs, want %#x of %d", h.h, h.n, all.Sum64(), len(pairs))
	}
}

// BenchmarkKeyHash: the per-key hash of a split's digest, which the
// parent's scan at the fence pays once per key of the range.
func BenchmarkKeyHash(b *testing.B) {
	k, v := []byte("\x01"+strings.Repeat("k", 40)), make([]byte, 100)
	b.ReportAllocs()
	var s uint64
	for b.Loop() {
		s += keyHash(k, v)
	}
	_ = s
}
