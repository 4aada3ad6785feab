package controller

import (
	"fmt"
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/metamq/meta/sm/logpb"
)

func rec(name string, nodes ...string) *logpb.GroupRecord {
	g := &logpb.GroupRecord{Name: name, Kind: "data", ConfVer: 1}
	for _, n := range nodes {
		g.Replicas = append(g.Replicas, &logpb.Replica{Node: n, Voter: true})
	}
	return g
}

// settled is a group whose configuration matches its record.
func settled(r *logpb.GroupRecord) GroupView {
	return GroupView{Record: r, Config: r.Replicas, Known: true, Leader: r.Replicas[0].Node}
}

func live(ids ...string) []NodeView {
	var out []NodeView
	for _, id := range ids {
		out = append(out, NodeView{ID: id, Alive: true})
	}
	return out
}

func nodesOf(r *logpb.GroupRecord) []string {
	var out []string
	for _, x := range r.Replicas {
		out = append(out, x.Node)
	}
	slices.Sort(out)
	return out
}

// simulate applies plans until none is left (each planned record becomes
// the settled state), checking the invariants after every round.
func simulate(t *testing.T, p Placement, rounds int) Placement {
	t.Helper()
	for i := 0; i < rounds; i++ {
		plan := PlanPlacement(p)
		if len(plan) == 0 {
			return p
		}
		if len(plan) > p.MaxMoves {
			t.Fatalf("round %d: %d changes, MaxMoves %d", i, len(plan), p.MaxMoves)
		}
		touched := map[string]string{}
		for _, r := range plan {
			for j, g := range p.Groups {
				if g.Record.Name != r.Name {
					continue
				}
				// One change per node at a time: a node is in at most one
				// changed group's old or new replica set, for the nodes the
				// change moves.
				old, cur := nodesOf(g.Record), nodesOf(r)
				for _, n := range symmetricDiff(old, cur) {
					if other, ok := touched[n]; ok {
						t.Fatalf("round %d: %s moves in %s and %s at once", i, n, other, r.Name)
					}
					touched[n] = r.Name
				}
				if r.ConfVer != g.Record.ConfVer {
					t.Fatalf("round %d: %s planned from version %d, record at %d", i, r.Name, r.ConfVer, g.Record.ConfVer)
				}
				nr := proto.CloneOf(r)
				nr.ConfVer++
				p.Groups[j] = settled(nr)
			}
		}
		checkInvariants(t, p)
	}
	t.Fatalf("placement did not settle in %d rounds", rounds)
	return p
}

func symmetricDiff(a, b []string) []string {
	var out []string
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	for _, x := range b {
		if !slices.Contains(a, x) {
			out = append(out, x)
		}
	}
	return out
}

func checkInvariants(t *testing.T, p Placement) {
	t.Helper()
	for _, g := range p.Groups {
		seen := map[string]bool{}
		for _, r := range g.Record.Replicas {
			if seen[r.Node] {
				t.Fatalf("%s has two replicas on %s", g.Record.Name, r.Node)
			}
			seen[r.Node] = true
		}
		if len(g.Record.Replicas) == 0 {
			t.Fatalf("%s lost every replica", g.Record.Name)
		}
	}
}

func counts(p Placement) map[string]int {
	out := map[string]int{}
	for _, g := range p.Groups {
		for _, r := range g.Record.Replicas {
			out[r.Node]++
		}
	}
	return out
}

func replicaSpread(c map[string]int, ids []string) int {
	lo, hi := 1<<30, 0
	for _, id := range ids {
		lo, hi = min(lo, c[id]), max(hi, c[id])
	}
	return hi - lo
}

// 12 groups on 3 nodes, then 3 more nodes: balanced within one replica
// per node, RF 3 everywhere, never two replicas on a node, one change per
// node at a time.
func TestPlacementFillsNewNodes(t *testing.T) {
	p := Placement{RF: 3, MetadataRF: 3, MaxMoves: 4, Nodes: live("n1", "n2", "n3", "n4", "n5", "n6")}
	for i := range 12 {
		p.Groups = append(p.Groups, settled(rec(fmt.Sprintf("data-%d", i), "n1", "n2", "n3")))
	}
	p = simulate(t, p, 200)
	c := counts(p)
	ids := []string{"n1", "n2", "n3", "n4", "n5", "n6"}
	if d := replicaSpread(c, ids); d > 1 {
		t.Fatalf("replicas per node %v differ by %d", c, d)
	}
	for _, g := range p.Groups {
		if len(g.Record.Replicas) != 3 {
			t.Fatalf("%s has %d replicas", g.Record.Name, len(g.Record.Replicas))
		}
	}
}

// A draining node ends with nothing; the others stay balanced.
func TestPlacementDrains(t *testing.T) {
	p := Placement{RF: 3, MetadataRF: 3, MaxMoves: 4, Nodes: live("n1", "n2", "n3", "n4")}
	p.Nodes[3].Draining = true
	for i := range 8 {
		p.Groups = append(p.Groups, settled(rec(fmt.Sprintf("data-%d", i), "n4", []string{"n1", "n2", "n3"}[i%3], []string{"n2", "n3", "n1"}[i%3])))
	}
	p = simulate(t, p, 200)
	c := counts(p)
	if c["n4"] != 0 {
		t.Fatalf("draining node still holds %d replicas", c["n4"])
	}
	if d := replicaSpread(c, []string{"n1", "n2", "n3"}); d > 1 {
		t.Fatalf("replicas per node %v", c)
	}
}

// A dead node's replicas are re-created on live nodes; a node not yet
// dead (only silent) is not a reason to move anything.
func TestPlacementReplacesDeadNodes(t *testing.T) {
	p := Placement{RF: 3, MetadataRF: 3, MaxMoves: 4, Nodes: live("n1", "n2", "n3", "n4")}
	for i := range 4 {
		p.Groups = append(p.Groups, settled(rec(fmt.Sprintf("data-%d", i), "n1", "n2", "n4")))
	}
	p.Nodes[3].Alive = false // silent, not dead yet
	for _, r := range PlanPlacement(p) {
		if !slices.Contains(nodesOf(r), "n4") {
			t.Fatalf("a silent node's replica moved: %v", nodesOf(r))
		}
	}
	p.Nodes[3].Dead = true
	p = simulate(t, p, 100)
	for _, g := range p.Groups {
		if got := nodesOf(g.Record); !slices.Equal(got, []string{"n1", "n2", "n3"}) {
			t.Fatalf("%s on %v, want n1 n2 n3", g.Record.Name, got)
		}
	}
}

// Replicas of a group spread over zones when there are enough.
func TestPlacementSpreadsZones(t *testing.T) {
	p := Placement{RF: 3, MetadataRF: 3, MaxMoves: 4}
	for i, z := range []string{"a", "a", "b", "b", "c", "c"} {
		p.Nodes = append(p.Nodes, NodeView{ID: fmt.Sprintf("n%d", i+1), Zone: z, Alive: true})
	}
	for i := range 6 {
		p.Groups = append(p.Groups, settled(rec(fmt.Sprintf("data-%d", i), "n1", "n2", "n3")))
	}
	p = simulate(t, p, 300)
	zone := map[string]string{}
	for _, n := range p.Nodes {
		zone[n.ID] = n.Zone
	}
	for _, g := range p.Groups {
		zs := map[string]bool{}
		for _, r := range g.Record.Replicas {
			zs[zone[r.Node]] = true
		}
		if len(zs) != 3 {
			t.Fatalf("%s on %v spans zones %v, want all three", g.Record.Name, nodesOf(g.Record), zs)
		}
	}
}

// A group whose configuration differs from its record is a change under
// way: nothing else touches its nodes, and it counts against MaxMoves.
func TestPlacementWaitsForMovesUnderWay(t *testing.T) {
	p := Placement{RF: 3, MetadataRF: 3, MaxMoves: 1, Nodes: live("n1", "n2", "n3", "n4")}
	moving := rec("data-0", "n1", "n2", "n4")
	p.Groups = []GroupView{{Record: moving, Config: rec("x", "n1", "n2", "n3", "n4").Replicas, Known: true},
		settled(rec("data-1", "n1", "n2", "n3")), settled(rec("data-2", "n1", "n2", "n3"))}
	if plan := PlanPlacement(p); len(plan) != 0 {
		t.Fatalf("planned %d changes with one under way and MaxMoves 1", len(plan))
	}
	p.MaxMoves = 4
	for _, r := range PlanPlacement(p) {
		t.Fatalf("planned %s on %v while n1..n4 are all in a move", r.Name, nodesOf(r))
	}
}

// Too many replicas (a cluster from before placement, where every member
// hosted every group) shrink to RF; too few grow.
func TestPlacementEnforcesRF(t *testing.T) {
	p := Placement{RF: 3, MetadataRF: 3, MaxMoves: 4, Nodes: live("n1", "n2", "n3", "n4", "n5")}
	p.Groups = []GroupView{settled(rec("data-0", "n1", "n2", "n3", "n4", "n5")), settled(rec("data-1", "n1"))}
	p = simulate(t, p, 100)
	for _, g := range p.Groups {
		if len(g.Record.Replicas) != 3 {
			t.Fatalf("%s has %d replicas, want 3", g.Record.Name, len(g.Record.Replicas))
		}
	}
}

// Leaders move from the node leading most to the voter leading fewest;
// a draining node's leaderships move first.
func TestPlanLeaders(t *testing.T) {
	nodes := live("n1", "n2", "n3")
	var groups []GroupView
	for i := range 6 {
		g := settled(rec(fmt.Sprintf("data-%d", i), "n1", "n2", "n3"))
		groups = append(groups, g)
	}
	g, to := PlanLeaders(nodes, groups)
	if g == "" || to == "n1" {
		t.Fatalf("all six led by n1: moved %q to %q", g, to)
	}
	for i := range groups {
		groups[i].Leader = []string{"n1", "n2", "n3"}[i%3]
	}
	if g, to := PlanLeaders(nodes, groups); g != "" {
		t.Fatalf("balanced leaders: moved %s to %s", g, to)
	}
	nodes[0].Draining = true
	g, to = PlanLeaders(nodes, groups)
	if g == "" || to == "n1" || groups[slices.IndexFunc(groups, func(x GroupView) bool { return x.Record.Name == g })].Leader != "n1" {
		t.Fatalf("draining n1: moved %q to %q, want one of n1's leaderships elsewhere", g, to)
	}
}
