package server_test

import (
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/metamq/meta/rpc/metapb"
	"github.com/metamq/meta/sm/logpb"
)

// A listing counts a data group's page only when the group owns, by its
// own record, exactly the ranges the node's map gives it. A map that lags
// behind a split (the parent's range version moved on; the new group is
// not in the map yet) would leave the moved keys out of the listing
// without an error: the listing is refused as RANGE_MOVING instead, and
// served again once the map matches the groups' records.
func TestListingsNeedTheMapTheGroupsOwn(t *testing.T) {
	// data-0 was split at 2^31 (version 2); data-1 holds the upper half.
	n := newFakeNodeOwning(t, 2, [][]*logpb.HashRange{
		{{Lo: 0, Hi: 1 << 31, Version: 2}}, {{Lo: 1 << 31, Hi: 1 << 32, Version: 2}}})
	owned := metapb.RangeMap{{Lo: 0, Hi: 1 << 31, Group: "data-0", Version: 2}, {Lo: 1 << 31, Hi: 1 << 32, Group: "data-1", Version: 2}}
	conn, _ := serveFake(t, n)
	kv, sessions := metapb.NewKVClient(conn), metapb.NewSessionsClient(conn)
	set := func(m metapb.RangeMap) {
		n.mu.Lock()
		n.data = m
		n.mu.Unlock()
	}
	set(owned)
	for i := range 20 {
		if _, err := kv.Put(ctx10(t), &metapb.PutRequest{Key: fmt.Appendf(nil, "k%02d", i), Value: []byte("v")}); err != nil {
			t.Fatal(err)
		}
	}
	list := func() (int, error) {
		resp, err := kv.List(ctx10(t), &metapb.ListRequest{Prefix: []byte("k")})
		return len(resp.GetKvs()), err
	}
	listSessions := func() error {
		_, err := sessions.List(ctx10(t), &metapb.ListSessionsRequest{})
		return err
	}
	if got, err := list(); err != nil || got != 20 {
		t.Fatalf("listing with the map the groups own: %d keys (%v), want 20", got, err)
	}
	if err := listSessions(); err != nil {
		t.Fatalf("sessions listing with the map the groups own: %v", err)
	}

	// The map before the split: data-0 holds everything at version 1,
	// data-1 is not in it.
	set(metapb.RangeMap{{Lo: 0, Hi: 1 << 32, Group: "data-0", Version: 1}})
	_, err := list()
	wantStatus(t, err, codes.Unavailable, metapb.ReasonRangeMoving, "")
	wantStatus(t, listSessions(), codes.Unavailable, metapb.ReasonRangeMoving, "")

	// A map that names both groups, one at an older version.
	set(metapb.RangeMap{{Lo: 0, Hi: 1 << 31, Group: "data-0", Version: 1}, {Lo: 1 << 31, Hi: 1 << 32, Group: "data-1", Version: 2}})
	_, err = list()
	wantStatus(t, err, codes.Unavailable, metapb.ReasonRangeMoving, "")

	set(owned)
	if got, err := list(); err != nil || got != 20 {
		t.Fatalf("listing once the map matches again: %d keys (%v), want 20", got, err)
	}
}
