package verify

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/metamq/meta/rpc/metapb"
)

func TestChooseKeysCoversEveryGroup(t *testing.T) {
	for _, m := range []int{0, 1, 2, 3, 8} {
		keys := ChooseKeys("run", 12, m)
		if len(keys) != 12 || !slices.IsSorted(keys) || len(slices.Compact(slices.Clone(keys))) != 12 {
			t.Fatalf("m=%d: got %v, want 12 sorted distinct keys", m, keys)
		}
		if m > 0 {
			per := map[string]int{}
			for _, k := range keys {
				per[metapb.DataGroupFor([]byte(k), m)]++
			}
			if len(per) != m {
				t.Errorf("m=%d: got keys in %d groups (%v), want all %d", m, len(per), per, m)
			}
		}
	}
	groups := ChooseConsumerGroups("run", 3, 3)
	per := map[string]bool{}
	for _, g := range groups {
		per[metapb.OffsetGroupFor(g, 3)] = true
	}
	if len(groups) != 3 || len(per) != 3 {
		t.Errorf("consumer groups: got %v in %d offset groups, want 3 in 3", groups, len(per))
	}
}

// The KV batch calls' pairs route to one data group each, and no key is
// in two pairs (so that the KV checker's components stay two keys each).
func TestChoosePairs(t *testing.T) {
	keys := ChooseKeys("w", 12, 2)
	pairs := ChoosePairs(keys, 2)
	used := map[string]bool{}
	for _, p := range pairs {
		if g0, g1 := metapb.DataGroupFor([]byte(p[0]), 2), metapb.DataGroupFor([]byte(p[1]), 2); g0 != g1 {
			t.Errorf("pair %v: keys route to %s and %s, want one group", p, g0, g1)
		}
		if used[p[0]] || used[p[1]] || p[0] == p[1] {
			t.Errorf("pair %v: a key in two pairs", p)
		}
		used[p[0]], used[p[1]] = true, true
	}
	// At most one key per group is left over.
	if len(pairs) < (len(keys)-2)/2 {
		t.Errorf("got %d pairs of %d keys in 2 groups, want at least %d", len(pairs), len(keys), (len(keys)-2)/2)
	}
}

func TestWorkloadsRecordValidHistories(t *testing.T) {
	c := newMemCluster(1, "n1")
	cfg := DefaultWorkloadConfig()
	cfg.Prefix = "w"
	cfg.Interval = 0
	w := NewWorkload(11, cfg, 2, 2)
	h := &History{}
	rec := NewRecorder(NewClock(), h, time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	s1, s2 := rec.Session(&memConn{c: c, node: "n1"}, "n1"), rec.Session(&memConn{c: c, node: "n1"}, "n1")
	done := make(chan struct{}, 2)
	go func() { w.RunKV(ctx, s1, 0); done <- struct{}{} }()
	go func() { w.RunOffsets(ctx, s2, 1); done <- struct{}{} }()
	kinds := []OpKind{OpGet, OpPut, OpCAS, OpDelete, OpList, OpCommit, OpFetch, OpDeleteGroup}
	// Run until 2,000 ops and a success of every kind (a rare kind such
	// as delete-group may need more), or a deadline.
	everyKind := func() bool {
		st := Stats(h.Ops())
		return !slices.ContainsFunc(kinds, func(k OpKind) bool { return st.ByKind[k].OK == 0 })
	}
	deadline := time.Now().Add(10 * time.Second)
	for (h.Len() < 2000 || !everyKind()) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // poll, with a deadline
	}
	cancel()
	<-done
	<-done
	ops := h.Ops()
	st := Stats(ops)
	for _, k := range kinds {
		if st.ByKind[k].OK == 0 {
			t.Errorf("kind %s: got no successful op in %d, want some", k, st.Total)
		}
	}
	// Successful CASes show that clients expect what they saw.
	if st.ByKind[OpCAS].OK > 0 {
		succeeded := 0
		for _, op := range ops {
			if op.Kind == OpCAS && op.Outcome == OutcomeOK && op.Output.Succeeded {
				succeeded++
			}
		}
		if succeeded == 0 {
			t.Errorf("cas: got no successful swap in %d, want some", st.ByKind[OpCAS].OK)
		}
	}
	// Offsets are unique and increasing per partition in issue order.
	last := map[TopicPartition]int64{}
	for _, op := range ops {
		for _, e := range op.Input.Offsets {
			if e.Offset <= last[e.TP()] {
				t.Fatalf("offset %d for %s after %d, want increasing", e.Offset, e.TP(), last[e.TP()])
			}
			last[e.TP()] = e.Offset
		}
	}
	for _, r := range CheckLinearizability(ops, time.Minute).Results {
		if r.Verdict != Valid {
			t.Errorf("%s: got %s (%s), want valid on a correct store", r.Checker, r.Verdict, r.Details)
		}
	}
}
