package controller

import (
	"cmp"
	"slices"

	"google.golang.org/protobuf/proto"

	"github.com/metamq/meta/rpc/metapb"
	"github.com/metamq/meta/sm/logpb"
)

// Placement: where every group's replicas go. PlanPlacement is pure (the
// controller feeds it the directory and the nodes' reports, and proposes
// what it returns, each change compared on the record's configuration
// version); the group leaders then make the groups' configurations follow
// their records, adding before removing (metanode/membership.go).
//
// Rules, in order of urgency, at most one change per group per round:
//  1. a replica on a node that is no longer a member, or dead (silent past
//     the dead-node timeout), is replaced;
//  2. a group with fewer replicas than its replication factor (or than
//     the nodes there are) gets one more; one with more loses one;
//  3. a replica on a draining node moves off it;
//  4. two replicas of a group in one zone are spread when another zone
//     has room;
//  5. replica counts are balanced: a replica moves from the node with the
//     most to the node with the fewest when they differ by more than one.
// Never two replicas of a group on one node. A node takes part in at most
// one change at a time (a group whose configuration differs from its
// record is a change under way, and occupies its nodes), and at most
// MaxMoves changes run at once.

// NodeView is what placement knows of a member.
type NodeView struct {
	ID, Zone string
	Draining bool
	// Alive: it reported recently. Dead: silent past the dead-node
	// timeout (its replicas are re-created elsewhere).
	Alive, Dead bool
	Bytes       uint64
}

// GroupView is a group's record and, when its leader reported it, its
// configuration.
type GroupView struct {
	Record *logpb.GroupRecord
	// Config is the group's raft configuration as its leader last
	// reported it; Known is false when no leader reported.
	Config []*logpb.Replica
	Known  bool
	Leader string
	Bytes  uint64
	// EntriesPerSec is the rate its leader last reported applying
	// entries at (with Known).
	EntriesPerSec float64
}

// Placement is the input of a plan.
type Placement struct {
	RF, MetadataRF int
	Nodes          []NodeView
	Groups         []GroupView
	// MaxMoves bounds the changes under way at once.
	MaxMoves int
}

// PlanPlacement returns new records for the groups to change (each still
// carrying the configuration version it was computed from).
func PlanPlacement(p Placement) []*logpb.GroupRecord {
	nodes := map[string]NodeView{}
	for _, n := range p.Nodes {
		nodes[n.ID] = n
	}
	// A group being deleted (a split's new group, aborted) has no
	// replicas to place.
	p.Groups = slices.DeleteFunc(slices.Clone(p.Groups), func(g GroupView) bool { return g.Record.State == logpb.GroupState_GROUP_STATE_DELETING })
	busy := map[string]bool{}
	underway := 0
	for _, g := range p.Groups {
		if moving(g) {
			underway++
			for _, r := range g.Record.Replicas {
				busy[r.Node] = true
			}
			for _, r := range g.Config {
				busy[r.Node] = true
			}
		}
	}
	// Replicas per node, as the records say (the target).
	count := map[string]int{}
	for _, g := range p.Groups {
		for _, r := range g.Record.Replicas {
			count[r.Node]++
		}
	}
	eligible := func(id string) bool {
		n, ok := nodes[id]
		return ok && n.Alive && !n.Dead && !n.Draining
	}
	var out []*logpb.GroupRecord
	change := func(g GroupView, rec *logpb.GroupRecord) {
		for _, r := range g.Record.Replicas {
			busy[r.Node] = true
		}
		for _, r := range rec.Replicas {
			busy[r.Node] = true
		}
		out = append(out, rec)
	}
	// best picks the eligible, idle node for a new replica of g: one in a
	// zone g does not use yet if there is one, then the fewest replicas,
	// then the fewest bytes, then the smallest id.
	best := func(g GroupView, except string) string {
		zones := map[string]bool{}
		for _, r := range g.Record.Replicas {
			if r.Node != except {
				zones[nodes[r.Node].Zone] = true
			}
		}
		var cands []NodeView
		for _, n := range p.Nodes {
			if eligible(n.ID) && !busy[n.ID] && (!hostsNode(g.Record, n.ID) || plantedDupReplica()) {
				cands = append(cands, n)
			}
		}
		if len(cands) == 0 {
			return ""
		}
		slices.SortFunc(cands, func(a, b NodeView) int {
			za, zb := zones[a.Zone] && a.Zone != "", zones[b.Zone] && b.Zone != ""
			if za != zb {
				if za {
					return 1
				}
				return -1
			}
			return cmp.Or(cmp.Compare(count[a.ID], count[b.ID]), cmp.Compare(a.Bytes, b.Bytes), cmp.Compare(a.ID, b.ID))
		})
		return cands[0].ID
	}
	// A group wants RF replicas, or as many as there are nodes not dead
	// (a node silent for a moment is not a reason to shrink a group).
	live := 0
	for _, n := range p.Nodes {
		if !n.Dead {
			live++
		}
	}
	for _, g := range p.Groups {
		if underway+len(out) >= p.MaxMoves {
			return out
		}
		if moving(g) {
			continue
		}
		rf := p.RF
		if g.Record.Name == metapb.MetadataGroup {
			rf = p.MetadataRF
		}
		want := max(min(rf, live), 1)
		rec := g.Record
		// 1. Replicas on departed or dead nodes.
		if r := firstReplica(rec, func(id string) bool { n, ok := nodes[id]; return !ok || n.Dead }); r != "" {
			if busy[r] {
				continue
			}
			to := best(g, r)
			if to == "" && len(rec.Replicas) <= 1 {
				continue // never the last replica without a successor
			}
			change(g, replace(rec, r, to))
			continue
		}
		// 2. Too few or too many replicas.
		if len(rec.Replicas) < want {
			if to := best(g, ""); to != "" {
				change(g, replace(rec, "", to))
			}
			continue
		}
		if len(rec.Replicas) > want {
			if r := leastWanted(rec, nodes, count); r != "" && !busy[r] {
				change(g, replace(rec, r, ""))
			}
			continue
		}
		// 3. Draining nodes.
		if r := firstReplica(rec, func(id string) bool { return nodes[id].Draining }); r != "" {
			if to := best(g, r); to != "" && !busy[r] {
				change(g, replace(rec, r, to))
			}
			continue
		}
		// 4. Zones: two replicas in one zone while another has room.
		if r := crowded(rec, nodes); r != "" && !busy[r] {
			if to := best(g, r); to != "" && nodes[to].Zone != nodes[r].Zone && !zoneUsed(rec, nodes, nodes[to].Zone) {
				change(g, replace(rec, r, to))
				continue
			}
		}
	}
	// 5. Balance replica counts.
	for underway+len(out) < p.MaxMoves {
		var ids []string
		for _, n := range p.Nodes {
			if eligible(n.ID) {
				ids = append(ids, n.ID)
			}
		}
		if len(ids) < 2 {
			return out
		}
		slices.SortFunc(ids, func(a, b string) int { return cmp.Or(cmp.Compare(count[a], count[b]), cmp.Compare(a, b)) })
		few := ""
		for _, id := range ids {
			if !busy[id] {
				few = id
				break
			}
		}
		moved := false
		for i := len(ids) - 1; i >= 0 && few != "" && !moved; i-- {
			most := ids[i]
			if busy[most] || count[most]-count[few] <= 1 {
				continue
			}
			for _, g := range p.Groups {
				if moving(g) || !hostsNode(g.Record, most) || hostsNode(g.Record, few) {
					continue
				}
				if nodes[few].Zone != nodes[most].Zone && zoneUsed(g.Record, nodes, nodes[few].Zone) && nodes[few].Zone != "" {
					continue // would crowd a zone
				}
				rec := replace(g.Record, most, few)
				change(g, rec)
				count[most]--
				count[few]++
				moved = true
				break
			}
		}
		if !moved {
			return out
		}
	}
	return out
}

// moving reports whether a group's configuration differs from its record
// (a change under way), or is unknown.
func moving(g GroupView) bool {
	if !g.Known || g.Record.Split != nil || g.Record.State == logpb.GroupState_GROUP_STATE_CREATING {
		// A split under way (metanode/split.go) keeps the replicas of
		// both groups where they are until it is done.
		return true
	}
	if len(g.Config) != len(g.Record.Replicas) {
		return true
	}
	for _, r := range g.Record.Replicas {
		if !slices.ContainsFunc(g.Config, func(c *logpb.Replica) bool { return c.Node == r.Node && c.Voter == r.Voter }) {
			return true
		}
	}
	return false
}

// replace returns rec with the replica on from replaced by one on to (a
// voter); an empty from adds, an empty to removes.
func replace(rec *logpb.GroupRecord, from, to string) *logpb.GroupRecord {
	out := proto.CloneOf(rec)
	out.Replicas = nil
	for _, r := range rec.Replicas {
		if r.Node != from {
			out.Replicas = append(out.Replicas, proto.CloneOf(r))
		}
	}
	if to != "" {
		out.Replicas = append(out.Replicas, &logpb.Replica{Node: to, Voter: true})
	}
	return out
}

func hostsNode(rec *logpb.GroupRecord, id string) bool {
	return slices.ContainsFunc(rec.Replicas, func(r *logpb.Replica) bool { return r.Node == id })
}

func firstReplica(rec *logpb.GroupRecord, pred func(string) bool) string {
	for _, r := range rec.Replicas {
		if pred(r.Node) {
			return r.Node
		}
	}
	return ""
}

// leastWanted is the replica to drop from a group with too many: on a
// draining node first, then on the node with the most replicas.
func leastWanted(rec *logpb.GroupRecord, nodes map[string]NodeView, count map[string]int) string {
	if r := firstReplica(rec, func(id string) bool { return nodes[id].Draining || !nodes[id].Alive }); r != "" {
		return r
	}
	out := ""
	for _, r := range rec.Replicas {
		if out == "" || count[r.Node] > count[out] || (count[r.Node] == count[out] && r.Node > out) {
			out = r.Node
		}
	}
	return out
}

// crowded returns a replica that shares its zone with another replica of
// the group, or "".
func crowded(rec *logpb.GroupRecord, nodes map[string]NodeView) string {
	seen := map[string]bool{}
	for _, r := range rec.Replicas {
		z := nodes[r.Node].Zone
		if z == "" {
			continue
		}
		if seen[z] {
			return r.Node
		}
		seen[z] = true
	}
	return ""
}

func zoneUsed(rec *logpb.GroupRecord, nodes map[string]NodeView, zone string) bool {
	return slices.ContainsFunc(rec.Replicas, func(r *logpb.Replica) bool { return nodes[r.Node].Zone == zone })
}

// PlanLeaders returns one leadership to move (group, target), or "", "":
// from the node leading the most groups to the live voter of that group
// leading the fewest, when they differ by more than one. Draining nodes
// lead nothing: their leaderships move first.
func PlanLeaders(nodes []NodeView, groups []GroupView) (string, string) {
	lead := map[string]int{}
	alive := map[string]NodeView{}
	for _, n := range nodes {
		if n.Alive && !n.Dead {
			alive[n.ID] = n
			lead[n.ID] = 0
		}
	}
	for _, g := range groups {
		if _, ok := lead[g.Leader]; ok {
			lead[g.Leader]++
		}
	}
	target := func(g GroupView, except string) string {
		out := ""
		for _, r := range g.Config {
			n, ok := alive[r.Node]
			if !r.Voter || !ok || n.Draining || r.Node == except {
				continue
			}
			if out == "" || lead[r.Node] < lead[out] || (lead[r.Node] == lead[out] && r.Node < out) {
				out = r.Node
			}
		}
		return out
	}
	// Draining leaders first.
	for _, g := range groups {
		if n, ok := alive[g.Leader]; ok && n.Draining && g.Known {
			if to := target(g, g.Leader); to != "" {
				return g.Record.Name, to
			}
		}
	}
	var best, bestTo string
	gap := 1
	for _, g := range groups {
		if !g.Known || g.Record.Name == metapb.MetadataGroup {
			continue
		}
		if _, ok := alive[g.Leader]; !ok {
			continue
		}
		if to := target(g, g.Leader); to != "" && lead[g.Leader]-lead[to] > gap {
			best, bestTo, gap = g.Record.Name, to, lead[g.Leader]-lead[to]
		}
	}
	return best, bestTo
}
