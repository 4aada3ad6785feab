package verify

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/metamq/meta/rpc/client"
	"github.com/metamq/meta/rpc/metapb"
)

// CheckerPlacement judges where the groups ended: read from the directory
// (the controller's ListGroups and ListNodes) once every fault healed.
const CheckerPlacement = "placement"

// PlacementReader is the part of the public client the placement check
// needs. *client.Client is one.
type PlacementReader interface {
	ListGroups(ctx context.Context) (*metapb.ListGroupsResponse, error)
	ListNodes(ctx context.Context) (*metapb.ListNodesResponse, error)
}

var _ PlacementReader = (*client.Client)(nil)

// PlacementProblems says what is wrong with a placement, against the node
// set it should have ended on: every group active, with exactly its
// replication factor of replicas (capped at the node count; metadata-0's
// own factor), on distinct nodes of the set, each a voter in the group's
// configuration, nothing moving, a leader; every node of the set a live
// member. One line per problem, sorted; none when all holds. A group with
// two replicas on one node says "two replicas".
func PlacementProblems(gs *metapb.ListGroupsResponse, ns *metapb.ListNodesResponse, nodes []string) []string {
	var out []string
	listed := map[string]bool{}
	for _, n := range ns.GetNodes() {
		listed[n.Id] = true
		switch {
		case !slices.Contains(nodes, n.Id):
			out = append(out, fmt.Sprintf("node %s is still a member (%s)", n.Id, n.State))
		case !n.Alive:
			out = append(out, fmt.Sprintf("node %s is not alive (last seen %d ms ago)", n.Id, n.LastSeenMs))
		}
	}
	for _, id := range nodes {
		if !listed[id] {
			out = append(out, "node "+id+" is not a member")
		}
	}
	for _, g := range gs.GetGroups() {
		if g.State == "deleting" && len(g.Replicas) == 0 {
			continue // deleted (an aborted split's child keeps its record)
		}
		want := min(int(gs.ReplicationFactor), len(nodes))
		if g.Group == metapb.MetadataGroup {
			want = min(int(gs.MetadataReplicationFactor), len(nodes))
		}
		seen := map[string]bool{}
		for _, r := range g.Replicas {
			switch {
			case seen[r.Node]:
				out = append(out, fmt.Sprintf("%s has two replicas on %s", g.Group, r.Node))
			case !slices.Contains(nodes, r.Node):
				out = append(out, fmt.Sprintf("%s has a replica on %s, not one of %v", g.Group, r.Node, nodes))
			case !listed[r.Node]:
				out = append(out, fmt.Sprintf("%s has a replica on %s, which is not a member", g.Group, r.Node))
			case r.Role != "voter":
				out = append(out, fmt.Sprintf("%s: the replica on %s is %q in its configuration, want voter", g.Group, r.Node, r.Role))
			}
			seen[r.Node] = true
		}
		if len(g.Replicas) != want {
			out = append(out, fmt.Sprintf("%s has %d replicas, want %d", g.Group, len(g.Replicas), want))
		}
		switch {
		case g.State != "active":
			out = append(out, fmt.Sprintf("%s is %s", g.Group, g.State))
		case g.Moving:
			out = append(out, g.Group+" is still moving (its configuration differs from its record)")
		case g.Leader == "":
			out = append(out, g.Group+" has no leader the controller knows")
		}
	}
	slices.Sort(out)
	return out
}

// settle calls probe every so often until it finds no problem, or ctx
// ends, and returns the problems it found last (none: settled) and how
// long it polled. A probe that cannot ask counts as the problem "the
// controller did not answer".
func settle(ctx context.Context, every time.Duration, probe func() ([]string, error)) ([]string, time.Duration) {
	start := time.Now()
	for {
		last, err := probe()
		if err != nil {
			last = []string{"the controller did not answer: " + err.Error()}
		}
		if len(last) == 0 || !Sleep(ctx, every) {
			return last, time.Since(start)
		}
	}
}

// CheckPlacement polls the placement until PlacementProblems finds
// nothing, or ctx ends: then it fails with the problems it saw last. The
// groups are its partitions (each judged once the directory answered).
func CheckPlacement(ctx context.Context, pr PlacementReader, nodes []string, every time.Duration) CheckResult {
	r := CheckResult{Checker: CheckerPlacement, Verdict: Valid, Recorded: true}
	answered := false
	var last []string
	last, r.Elapsed = settle(ctx, every, func() ([]string, error) {
		gs, err := pr.ListGroups(ctx)
		if err != nil {
			return nil, err
		}
		ns, err := pr.ListNodes(ctx)
		if err != nil {
			return nil, err
		}
		answered = true
		r.Partitions = len(gs.Groups)
		return PlacementProblems(gs, ns, nodes), nil
	})
	if len(last) == 0 {
		return r
	}
	r.Verdict = Invalid
	if !answered {
		r.Failing = []string{"controller"}
	} else {
		for _, p := range last {
			// "node ID ..." or "GROUP ...": the failing node or group.
			f := strings.Fields(p)
			what := f[0]
			if what == "node" {
				what += " " + f[1]
			}
			if !slices.Contains(r.Failing, what) {
				r.Failing = append(r.Failing, what)
			}
		}
	}
	r.Details = fmt.Sprintf("not settled after %s: %s", r.Elapsed.Round(time.Millisecond), strings.Join(last, "; "))
	return r
}
