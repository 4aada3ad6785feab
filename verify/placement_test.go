package verify

import (
	"context"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

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
	// An aborted split's child keeps its record, deleted and placed
	// nowhere; one still being dropped is not settled.
	gs.Groups = append(gs.Groups, &metapb.GroupInfo{Group: "data-1", State: "deleting"})
	if p := PlacementProblems(gs, ns, nodes); len(p) != 0 {
		t.Fatalf("with a deleted group: got %v, want none", p)
	}
	gs.Groups[len(gs.Groups)-1] = group("data-1", func(g *metapb.GroupInfo) { g.State = "deleting" }, "n1", "n2", "n3")
	if p := PlacementProblems(gs, ns, nodes); len(p) != 1 || p[0] != "data-1 is deleting" {
		t.Fatalf("with a group still being deleted: got %v, want it named", p)
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

// fakeDirectory is a directory that changes as a script says: each
// ListGroups or ListNodes call takes the next state (the last one stays).
type fakeDirectory struct {
	groups   []*metapb.ListGroupsResponse
	nodes    []*metapb.ListNodesResponse
	moveErrs []error // MoveReplica's answers, in turn (then nil)
	moves    []string
	moved    *metapb.ListGroupsResponse // what ListGroups says once a move is accepted
	accepted bool
}

func (f *fakeDirectory) ListGroups(context.Context) (*metapb.ListGroupsResponse, error) {
	if f.accepted {
		return f.moved, nil
	}
	g := f.groups[0]
	if len(f.groups) > 1 {
		f.groups = f.groups[1:]
	}
	return g, nil
}

func (f *fakeDirectory) ListNodes(context.Context) (*metapb.ListNodesResponse, error) {
	n := f.nodes[0]
	if len(f.nodes) > 1 {
		f.nodes = f.nodes[1:]
	}
	return n, nil
}

func (f *fakeDirectory) MoveReplica(_ context.Context, group, from, to string) (*metapb.MoveReplicaResponse, error) {
	f.moves = append(f.moves, group+" "+from+" "+to)
	if len(f.moveErrs) > 0 {
		err := f.moveErrs[0]
		f.moveErrs = f.moveErrs[1:]
		return nil, err
	}
	f.accepted = true
	return &metapb.MoveReplicaResponse{}, nil
}

func groupsOf(moving bool, placed map[string][]string) *metapb.ListGroupsResponse {
	gs := &metapb.ListGroupsResponse{}
	for _, name := range slices.Sorted(maps.Keys(placed)) {
		g := &metapb.GroupInfo{Group: name, Moving: moving}
		for _, n := range placed[name] {
			g.Replicas = append(g.Replicas, &metapb.ReplicaInfo{Node: n})
		}
		gs.Groups = append(gs.Groups, g)
	}
	return gs
}

// MoveReplica asks again while the move is refused as "not yet", and
// reads the outcome back from the directory; a move that cannot be (from
// holds nothing) ends at once.
func TestMoveReplicaHelper(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	before := groupsOf(false, map[string][]string{"data-0": {"n1", "n2", "n3"}})
	after := groupsOf(false, map[string][]string{"data-0": {"n2", "n3", "s1"}})
	busy := metapb.NewError(metapb.ReasonRevisionConflict, nil, "data-0 is changing")
	f := &fakeDirectory{groups: []*metapb.ListGroupsResponse{before}, moveErrs: []error{busy, busy}, moved: after}
	replicas, err := MoveReplica(ctx, f, "data-0", "n1", "s1", time.Second)
	if err != nil || !slices.Equal(replicas, []string{"n2", "n3", "s1"}) {
		t.Fatalf("got %v, %v; want the replicas moved", replicas, err)
	}
	if len(f.moves) != 3 {
		t.Errorf("MoveReplica called %d times, want 3 (two refusals, then accepted)", len(f.moves))
	}
	// Already where it should be: nothing to ask.
	f = &fakeDirectory{groups: []*metapb.ListGroupsResponse{after}}
	if _, err := MoveReplica(ctx, f, "data-0", "n1", "s1", time.Second); err != nil || len(f.moves) != 0 {
		t.Errorf("already moved: got %v with %d calls, want nil and none", err, len(f.moves))
	}
	// Placement put a replica on to first, from another node: the move
	// can never be made, and the group has moved; nothing to ask.
	filled := groupsOf(false, map[string][]string{"data-0": {"n1", "n2", "s1"}})
	f = &fakeDirectory{groups: []*metapb.ListGroupsResponse{filled}, moved: filled,
		moveErrs: []error{metapb.Invalid("to", "to: s1 already holds a replica of data-0")}}
	short, cancelShort := context.WithTimeout(ctx, 2*time.Second)
	defer cancelShort()
	if replicas, err := MoveReplica(short, f, "data-0", "n1", "s1", time.Second); err != nil || len(f.moves) != 0 || !slices.Contains(replicas, "s1") {
		t.Errorf("to filled by placement: got %v, %v with %d calls, want its replicas and no call", replicas, err, len(f.moves))
	}
	// from holds nothing (and to holds nothing either): a final error.
	f = &fakeDirectory{groups: []*metapb.ListGroupsResponse{before}}
	if _, err := MoveReplica(ctx, f, "data-0", "n9", "s1", time.Second); err == nil || !strings.Contains(err.Error(), "n9 holds none") || ctx.Err() != nil {
		t.Errorf("from without a replica: got %v, want an error at once naming n9", err)
	}
	if _, err := MoveReplica(ctx, f, "data-7", "n1", "s1", time.Second); err == nil || !strings.Contains(err.Error(), "no such group") {
		t.Errorf("unknown group: got %v, want an error naming it", err)
	}
}

// WaitFilled waits until the node holds a replica and nothing moves.
func TestWaitFilled(t *testing.T) {
	nodes := func(replicas uint32) *metapb.ListNodesResponse {
		return &metapb.ListNodesResponse{Nodes: []*metapb.NodeInfo{{Id: "n1", Replicas: 3}, {Id: "s1", Replicas: replicas}}}
	}
	placed := map[string][]string{"data-0": {"n1", "s1"}}
	f := &fakeDirectory{
		nodes:  []*metapb.ListNodesResponse{nodes(0), nodes(0), nodes(1)},
		groups: []*metapb.ListGroupsResponse{groupsOf(true, placed), groupsOf(false, placed)},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := WaitFilled(ctx, f, "s1", time.Second); err != nil {
		t.Fatalf("got %v, want nil once s1 holds a replica and nothing moves", err)
	}
	if len(f.nodes) != 1 || len(f.groups) != 1 {
		t.Errorf("returned before the last states: %d node and %d group states left", len(f.nodes), len(f.groups))
	}
	short, cancel2 := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel2()
	f = &fakeDirectory{nodes: []*metapb.ListNodesResponse{nodes(0)}, groups: []*metapb.ListGroupsResponse{groupsOf(false, placed)}}
	if err := WaitFilled(short, f, "s1", time.Second); err == nil || !strings.Contains(err.Error(), "s1 holds no replica") {
		t.Errorf("never filled: got %v, want an error naming s1", err)
	}
}
