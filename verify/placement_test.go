package verify

import (
	"slices"
	"strings"
	"testing"

	"github.com/metamq/meta/rpc/metapb"
)

// PlacementProblems names each way a placement can end wrong, and
// nothing for a settled one.
func TestPlacementProblems(t *testing.T) {
	nodes := []string{"n1", "n2", "n3", "n4"}
	group := func(name string, mod func(*metapb.GroupInfo), on ...string) *metapb.GroupInfo {
		g := &metapb.GroupInfo{Group: name, State: "active", Leader: on[0]}
		for _, n := range on {
			g.Replicas = append(g.Replicas, &metapb.ReplicaInfo{Node: n, Voter: true, Role: "voter"})
		}
		if mod != nil {
			mod(g)
		}
		return g
	}
	settled := func() (*metapb.ListGroupsResponse, *metapb.ListNodesResponse) {
		gs := &metapb.ListGroupsResponse{ReplicationFactor: 3, MetadataReplicationFactor: 3, Groups: []*metapb.GroupInfo{
			group(metapb.MetadataGroup, nil, "n1", "n2", "n3"),
			group("data-0", nil, "n2", "n3", "n4"),
		}}
		ns := &metapb.ListNodesResponse{}
		for _, n := range nodes {
			ns.Nodes = append(ns.Nodes, &metapb.NodeInfo{Id: n, Alive: true, State: "active"})
		}
		return gs, ns
	}
	gs, ns := settled()
	if p := PlacementProblems(gs, ns, nodes); len(p) != 0 {
		t.Fatalf("settled placement: got %v, want none", p)
	}
	tests := []struct {
		name  string
		spoil func(gs *metapb.ListGroupsResponse, ns *metapb.ListNodesResponse)
		want  string
	}{
		{"two replicas on one node", func(gs *metapb.ListGroupsResponse, _ *metapb.ListNodesResponse) {
			gs.Groups[1] = group("data-0", nil, "n2", "n3", "n3")
		}, "data-0 has two replicas on n3"},
		{"too few replicas", func(gs *metapb.ListGroupsResponse, _ *metapb.ListNodesResponse) {
			gs.Groups[1] = group("data-0", nil, "n2", "n3")
		}, "data-0 has 2 replicas, want 3"},
		{"too many replicas", func(gs *metapb.ListGroupsResponse, _ *metapb.ListNodesResponse) {
			gs.Groups[0] = group(metapb.MetadataGroup, nil, "n1", "n2", "n3", "n4")
		}, "metadata-0 has 4 replicas, want 3"},
		{"a replica off the node set", func(gs *metapb.ListGroupsResponse, _ *metapb.ListNodesResponse) {
			gs.Groups[1] = group("data-0", nil, "n2", "n3", "s1")
		}, "data-0 has a replica on s1"},
		{"a non-voter", func(gs *metapb.ListGroupsResponse, _ *metapb.ListNodesResponse) {
			gs.Groups[1].Replicas[2].Role = "nonvoter"
		}, `data-0: the replica on n4 is "nonvoter"`},
		{"moving", func(gs *metapb.ListGroupsResponse, _ *metapb.ListNodesResponse) { gs.Groups[1].Moving = true }, "data-0 is still moving"},
		{"no leader", func(gs *metapb.ListGroupsResponse, _ *metapb.ListNodesResponse) { gs.Groups[1].Leader = "" }, "data-0 has no leader"},
		{"deleting", func(gs *metapb.ListGroupsResponse, _ *metapb.ListNodesResponse) { gs.Groups[1].State = "deleting" }, "data-0 is deleting"},
		{"a dead node", func(_ *metapb.ListGroupsResponse, ns *metapb.ListNodesResponse) { ns.Nodes[3].Alive = false }, "node n4 is not alive"},
		{"a spare left", func(_ *metapb.ListGroupsResponse, ns *metapb.ListNodesResponse) {
			ns.Nodes = append(ns.Nodes, &metapb.NodeInfo{Id: "s1", Alive: true, State: "draining"})
		}, "node s1 is still a member (draining)"},
		{"a node missing", func(_ *metapb.ListGroupsResponse, ns *metapb.ListNodesResponse) { ns.Nodes = ns.Nodes[:3] }, "node n4 is not a member"},
		{"a replica on a departed node", func(_ *metapb.ListGroupsResponse, ns *metapb.ListNodesResponse) { ns.Nodes = ns.Nodes[:3] },
			"data-0 has a replica on n4, which is not a member"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gs, ns := settled()
			tt.spoil(gs, ns)
			got := PlacementProblems(gs, ns, nodes)
			if !slices.ContainsFunc(got, func(p string) bool { return strings.HasPrefix(p, tt.want) }) {
				t.Fatalf("got %q, want a problem starting %q", got, tt.want)
			}
		})
	}
}
