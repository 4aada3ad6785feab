package verify

import (
	"slices"
	"testing"

	"github.com/metamq/meta/rpc/metapb"
)

func TestMoveTarget(t *testing.T) {
	gs := &metapb.ListGroupsResponse{Groups: []*metapb.GroupInfo{
		{Group: "data-0", Replicas: []*metapb.ReplicaInfo{{Node: "n2"}, {Node: "n1"}}},
		{Group: "data-1"},
	}}
	replicas, ok := GroupReplicas(gs, "data-0")
	if !ok || !slices.Equal(replicas, []string{"n2", "n1"}) {
		t.Fatalf("GroupReplicas(data-0): got %v, %t; want [n2 n1], true", replicas, ok)
	}
	if r, ok := GroupReplicas(gs, "data-1"); !ok || len(r) != 0 {
		t.Errorf("GroupReplicas(data-1): got %v, %t; want none, true", r, ok)
	}
	if _, ok := GroupReplicas(gs, "data-2"); ok {
		t.Error("GroupReplicas(data-2): listed, want not")
	}
	nodes := []string{"n1", "n2", "n3", "n4", "n5"}
	up := func(n string) bool { return n != "n4" }
	for pick, want := range []string{"n3", "n5", "n3"} {
		if got := MoveTarget(nodes, replicas, up, uint64(pick)); got != want {
			t.Errorf("MoveTarget(pick %d): got %q, want %q", pick, got, want)
		}
	}
	if got := MoveTarget(nodes[:2], replicas, up, 7); got != "" {
		t.Errorf("MoveTarget with every node a replica: got %q, want none", got)
	}
}
