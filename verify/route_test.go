package verify

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/metamq/meta/rpc/metapb"
)

// splitIDs returns two client ids of data-0 in a cluster of one data
// group, and the map after a split that puts them in two groups.
func splitIDs() (lo, hi string, final metapb.RangeMap) {
	type id struct {
		s string
		h uint32
	}
	a, b := id{"s-a", metapb.RouteHash([]byte("s-a"))}, id{"s-b", metapb.RouteHash([]byte("s-b"))}
	if a.h > b.h {
		a, b = b, a
	}
	at := uint64(a.h) + 1
	return a.s, b.s, metapb.RangeMap{{Lo: 0, Hi: at, Group: "data-0", Version: 2}, {Lo: at, Hi: metapb.HashSpace, Group: "data-1", Version: 2}}
}

func TestDataRoute(t *testing.T) {
	lo, hi, final := splitIDs()
	byCount := DataRoute{Count: 1}
	if byCount.Group([]byte(lo)) != "data-0" || byCount.Group([]byte(hi)) != "data-0" {
		t.Fatal("one group by count: every key is data-0's")
	}
	split := DataRoute{Count: 1, Final: final}
	if g := split.Group([]byte(lo)); g != "data-0" {
		t.Errorf("%s: %s, want data-0", lo, g)
	}
	if g := split.Group([]byte(hi)); g != "data-1" {
		t.Errorf("%s: %s, want data-1", hi, g)
	}
	if g := (DataRoute{Count: 2}).Group([]byte(hi)); g != metapb.DataGroupFor([]byte(hi), 2) {
		t.Errorf("by count 2: %s", g)
	}
}

// A batch of two sessions of one group by the cluster's first count,
// applied after a split put them in two groups, reports two revisions:
// the sessions checker judges it by the final map (each part whole in its
// group), not as one group's part torn in two.
func TestSessionsFollowSplits(t *testing.T) {
	lo, hi, final := splitIDs()
	sess := func(id, state string, rev uint64) *SessionValue {
		return &SessionValue{ClientID: id, BrokerID: "b0", Expiry: 3600, State: state, ModRevision: rev, CreateRevision: rev, Version: 1}
	}
	ops := []BrokerOp{
		{Index: 0, Client: 0, Process: 0, Kind: OpSessionPut, Input: BrokerInput{Sessions: []SessionValue{*sess(lo, "v1", 0), *sess(hi, "v2", 0)}},
			Call: 0, Return: 10, Outcome: OutcomeOK, Output: &BrokerOutput{Revisions: []uint64{5, 7}, Groups: 2}},
		{Index: 1, Client: 1, Process: 1, Kind: OpSessionGet, Input: BrokerInput{ClientID: lo}, Call: 20, Return: 30, Outcome: OutcomeOK,
			Output: &BrokerOutput{Session: sess(lo, "v1", 5)}, Final: true},
		{Index: 2, Client: 1, Process: 1, Kind: OpSessionGet, Input: BrokerInput{ClientID: hi}, Call: 40, Return: 50, Outcome: OutcomeOK,
			Output: &BrokerOutput{Session: sess(hi, "v2", 7)}, Final: true},
	}
	for i := range ops[0].Input.Sessions {
		ops[0].Input.Sessions[i].ModRevision, ops[0].Input.Sessions[i].CreateRevision, ops[0].Input.Sessions[i].Version = 0, 0, 0
	}
	byCount := CheckSessions(ops, DataRoute{Count: 1}, 10*time.Second).Result
	if byCount.Verdict != Invalid || !strings.Contains(byCount.Details, "reported revisions") {
		t.Fatalf("by the first count: %s (%s), want invalid: one group's part with two revisions", byCount.Verdict, byCount.Details)
	}
	split := CheckSessions(ops, DataRoute{Count: 1, Final: final}, 10*time.Second).Result
	if split.Verdict != Valid {
		t.Fatalf("by the final map: %s (%s), want valid", split.Verdict, split.Details)
	}
	if got := fmt.Sprint(split.Failing); got != "[]" {
		t.Errorf("failing %s", got)
	}
}

// A saved run re-checks by the final map it recorded: Recheck (metaverify
// check DIR) partitions sessions and watches as the live check did, not
// by the group count the cluster was created with.
func TestRecheckKeepsTheFinalMap(t *testing.T) {
	_, _, final := splitIDs()
	dir := t.TempDir()
	res := &Result{Seed: 1, Settings: RunSettings{DataGroups: 1}, DataRanges: final}
	if err := WriteRun(dir, res, nil, Evaluate(res, nil)); err != nil {
		t.Fatal(err)
	}
	again, err := Recheck(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := again.dataRoute(), res.dataRoute(); !slices.Equal(got.Final, want.Final) || got.Count != want.Count {
		t.Fatalf("recheck's route: %+v, want %+v", got, want)
	}
}
