package verify

import (
	"strings"
	"testing"

	"github.com/metamq/meta/rpc/metapb"
)

// owned is a successful op on key served by group at range version v,
// called at call and returned at ret.
func owned(i int, kind OpKind, key, group string, v uint64, call, ret int64) Op {
	return Op{Index: i, Kind: kind, Input: Input{Key: key}, Outcome: OutcomeOK, Call: call, Return: ret,
		Output: &Output{Node: "n1", Group: group, RangeVersion: v}}
}

// staleRead is owned's get at stale consistency.
func staleRead(i int, key, group string, v uint64, call, ret int64) Op {
	op := owned(i, OpGet, key, group, v, call, ret)
	op.Input.Stale = true
	return op
}

func TestCheckOwnership(t *testing.T) {
	valid := []Op{
		owned(0, OpPut, "k", "data-0", 1, 0, 10),
		owned(1, OpGet, "k", "data-0", 1, 5, 15),
		// The split: the key moves to data-2 at version 2.
		owned(2, OpPut, "k", "data-2", 2, 20, 30),
		// Concurrent with op 2: may still see the old owner.
		owned(3, OpGet, "k", "data-0", 1, 25, 35),
		owned(4, OpCAS, "k", "data-2", 2, 40, 50),
		// Unknown version (a batched read, an old server): skipped.
		owned(5, OpGet, "k", "data-0", 0, 60, 70),
		// Failed ops say nothing.
		{Index: 6, Kind: OpPut, Input: Input{Key: "k"}, Outcome: OutcomeFail, Call: 60, Return: 70},
		owned(7, OpPut, "j", "data-1", 1, 0, 10),
		// A stale read may come from a replica that has not applied the
		// split yet: not judged.
		staleRead(8, "k", "data-0", 1, 80, 90),
	}
	r := CheckOwnership(valid)
	if r.Verdict != Valid || r.Ops != 6 || r.Partitions != 2 {
		t.Fatalf("valid history: got %s, %d ops on %d keys (%s), want valid, 6 ops on 2 keys", r.Verdict, r.Ops, r.Partitions, r.Details)
	}
	for _, tc := range []struct {
		name string
		ops  []Op
		want string
	}{
		{"two groups at one version", []Op{
			owned(0, OpPut, "k", "data-0", 2, 0, 10),
			owned(1, OpGet, "k", "data-2", 2, 20, 30),
		}, "range version 2 named by data-0 (op 0"},
		{"back to an older version after a response returned", []Op{
			owned(0, OpPut, "k", "data-2", 2, 0, 10),
			owned(1, OpPut, "k", "data-0", 1, 20, 30),
		}, "op 1 (put, data-0 on n1) carried range version 1 after op 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := CheckOwnership(tc.ops)
			if r.Verdict != Invalid || len(r.Failing) != 1 || r.Failing[0] != "k" || !strings.Contains(r.Details, tc.want) {
				t.Fatalf("got %s failing %v (%s), want invalid on k saying %q", r.Verdict, r.Failing, r.Details, tc.want)
			}
		})
	}
}

func TestRangesProblems(t *testing.T) {
	half := metapb.HashSpace / 2
	dir := func() *metapb.ListGroupsResponse {
		return &metapb.ListGroupsResponse{Groups: []*metapb.GroupInfo{
			{Group: "metadata-0", Kind: "metadata", State: "active"},
			{Group: "data-0", Kind: "data", State: "active", Ranges: []*metapb.KeyRange{{Lo: 0, Hi: half, Version: 2}}},
			{Group: "data-1", Kind: "data", State: "active", Ranges: []*metapb.KeyRange{{Lo: half, Hi: metapb.HashSpace, Version: 2}}},
		}}
	}
	own := func() map[string]*metapb.GroupStatus {
		return map[string]*metapb.GroupStatus{
			"data-0": {Group: "data-0", OwnershipRecorded: true, Owned: []*metapb.KeyRange{{Lo: 0, Hi: half, Version: 2}}},
			"data-1": {Group: "data-1", OwnershipRecorded: true, Owned: []*metapb.KeyRange{{Lo: half, Hi: metapb.HashSpace, Version: 2}}},
		}
	}
	if p, judged := RangesProblems(dir(), own()); len(p) > 0 || judged != 2 {
		t.Fatalf("settled: got %q (%d judged), want none and 2 judged", p, judged)
	}
	// An aborted split's child keeps its record, deleted, owning nothing.
	aborted := dir()
	aborted.Groups = append(aborted.Groups, &metapb.GroupInfo{Group: "data-2", Kind: "data", State: "deleting"})
	if p, judged := RangesProblems(aborted, own()); len(p) > 0 || judged != 2 {
		t.Fatalf("with a deleted group: got %q (%d judged), want none and 2 judged", p, judged)
	}
	for _, tc := range []struct {
		name  string
		spoil func(*metapb.ListGroupsResponse, map[string]*metapb.GroupStatus)
		want  string
	}{
		{"a group owns less than the map says", func(_ *metapb.ListGroupsResponse, o map[string]*metapb.GroupStatus) {
			o["data-1"].Owned[0].Lo = half + 1
		}, "do not tile"},
		{"two groups own one range", func(_ *metapb.ListGroupsResponse, o map[string]*metapb.GroupStatus) {
			o["data-0"].Owned[0].Hi = metapb.HashSpace
		}, "data-0: owns"},
		{"a version differs from the map's", func(_ *metapb.ListGroupsResponse, o map[string]*metapb.GroupStatus) {
			o["data-0"].Owned[0].Version = 1
		}, "the directory maps"},
		{"a split still under way", func(_ *metapb.ListGroupsResponse, o map[string]*metapb.GroupStatus) {
			o["data-0"].Splitting = true
		}, "still under way"},
		{"no leader", func(_ *metapb.ListGroupsResponse, o map[string]*metapb.GroupStatus) {
			delete(o, "data-1")
		}, "data-1: no leader"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gs, o := dir(), own()
			tc.spoil(gs, o)
			p, _ := RangesProblems(gs, o)
			if !strings.Contains(strings.Join(p, "; "), tc.want) {
				t.Fatalf("got %q, want a problem saying %q", p, tc.want)
			}
		})
	}
}
