package controller

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/metamq/meta/rpc/metapb"
	"github.com/metamq/meta/sm/logpb"
	"github.com/metamq/meta/sm/state"
)

// Nodes as a pool. Every node reports to the controller every report
// interval (metanode/report.go): it is alive, where it is, how each of its
// replicas stands, and, for the groups it leads, their configurations.
// The reports live in memory only; a new controller gives every node a
// full dead-node timeout of grace from its activation before it calls any
// dead. From the reports and the directory the controller places replicas
// (PlanPlacement), spreads leaders (PlanLeaders), and answers the views.

type nodeSeen struct {
	report *logpb.NodeReport
	at     time.Time
}

// Report takes a node's report.
func (c *Controller) Report(ctx context.Context, r *logpb.NodeReport) error {
	if !c.Active() {
		return ErrNotActive
	}
	c.mu.Lock()
	prev := c.nodes[r.NodeId].report
	c.nodes[r.NodeId] = nodeSeen{report: r, at: c.node.Now()}
	c.mu.Unlock()
	// A node's zone is its own to say: record it once it differs.
	if prev == nil || prev.Zone != r.Zone {
		if md, err := c.node.Metadata(); err == nil {
			if d, err := md.Directory(); err == nil {
				if m := d.Member(r.NodeId); m != nil && m.Zone != r.Zone && r.Zone != "" {
					_, err := c.node.ProposeMetadata(ctx, &logpb.Op{Op: &logpb.Op_MemberPut{MemberPut: &logpb.MemberPut{Id: m.Id, Addr: m.Addr, Zone: r.Zone}}})
					c.log.Info("member zone recorded", "node", m.Id, "zone", r.Zone, "err", err)
				}
			}
		}
	}
	return nil
}

// view builds what placement needs from the directory and the reports.
func (c *Controller) view(d *state.Directory) ([]NodeView, []GroupView) {
	now := c.node.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	grace := c.activeSince
	var nodes []NodeView
	leaderOf := map[string]*logpb.ReplicaReport{}
	leaderNode := map[string]string{}
	bytesOf := map[string]uint64{}
	// Leaders and configurations come from every fresh report, members or
	// not: a node removed while it leads a group still reports it, and
	// the group's record can only be changed once its state is known.
	for id, seen := range c.nodes {
		if now.Sub(seen.at) > c.cfg.NodeTimeout {
			continue
		}
		for _, rr := range seen.report.Replicas {
			if rr.Leader {
				if cur := leaderOf[rr.Group]; cur == nil || rr.Term > cur.Term {
					leaderOf[rr.Group], leaderNode[rr.Group] = rr, id
				}
			}
			bytesOf[rr.Group] = max(bytesOf[rr.Group], rr.Bytes)
		}
	}
	for _, m := range d.Members {
		nv := NodeView{ID: m.Id, Zone: m.Zone, Draining: m.State == logpb.MemberState_MEMBER_STATE_DRAINING}
		seen, ok := c.nodes[m.Id]
		last := grace
		if ok && seen.at.After(last) {
			last = seen.at
		}
		nv.Alive = ok && now.Sub(seen.at) <= c.cfg.NodeTimeout
		nv.Dead = now.Sub(last) > c.cfg.DeadNodeTimeout
		if ok {
			if seen.report.Zone != "" {
				nv.Zone = seen.report.Zone
			}
			for _, rr := range seen.report.Replicas {
				nv.Bytes += rr.Bytes
			}
		}
		nodes = append(nodes, nv)
	}
	var groups []GroupView
	for _, rec := range d.Groups {
		gv := GroupView{Record: rec, Bytes: bytesOf[rec.Name]}
		if rr := leaderOf[rec.Name]; rr != nil && rr.ConfigCommitted {
			gv.Config, gv.Known, gv.Leader, gv.EntriesPerSec = rr.Config, true, leaderNode[rec.Name], rr.OpsPerSec
		} else if rr != nil {
			gv.Leader = leaderNode[rec.Name]
		}
		groups = append(groups, gv)
	}
	return nodes, groups
}

// placementView is what placement and automatic splits plan from: the
// directory and the views of nodes and groups, read once per placement
// interval; ok is false until the cluster is recorded and every node has
// had a report interval to report to this controller.
func (c *Controller) placementView() (d *state.Directory, nodes []NodeView, groups []GroupView, ok bool) {
	d, err := c.directory()
	if err != nil || d.Cluster == nil || len(d.Groups) == 0 {
		return nil, nil, nil, false
	}
	c.mu.Lock()
	warm := c.node.Now().Sub(c.activeSince) >= c.cfg.NodeTimeout
	c.mu.Unlock()
	if !warm {
		return nil, nil, nil, false // let every node report to the new controller first
	}
	nodes, groups = c.view(d)
	return d, nodes, groups, true
}

// place proposes the changes PlanPlacement finds, each compared on the
// record's configuration version (a change computed from an older record
// fails cleanly and is planned again from the new one).
func (c *Controller) place(ctx context.Context, d *state.Directory, nodes []NodeView, groups []GroupView) {
	rf, mdRF := int(d.Cluster.ReplicationFactor), int(d.Cluster.MetadataReplicationFactor)
	if rf == 0 {
		rf, mdRF = 3, 3
	}
	for _, rec := range PlanPlacement(Placement{RF: rf, MetadataRF: mdRF, Nodes: nodes, Groups: groups, MaxMoves: c.cfg.MaxReplicaMoves}) {
		res, err := c.node.ProposeMetadata(ctx, &logpb.Op{Op: &logpb.Op_GroupPut{GroupPut: &logpb.GroupPut{Group: rec, ExpectedConfVer: rec.ConfVer}}})
		c.log.Info("placing replicas", "group", rec.Name, "replicas", replicaNodes(rec), "conf_ver", rec.ConfVer+1, "err", err, "code", res.GetCode())
		if err != nil {
			return
		}
		c.mu.Lock()
		c.moves++
		c.mu.Unlock()
	}
}

// spread moves one leadership PlanLeaders finds.
func (c *Controller) spread(ctx context.Context) {
	d, err := c.directory()
	if err != nil {
		return
	}
	nodes, groups := c.view(d)
	group, to := PlanLeaders(nodes, groups)
	if group == "" {
		return
	}
	tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	err = c.node.MoveLeader(tctx, group, to)
	c.log.Info("spreading leaders", "group", group, "to", to, "err", err)
}

func replicaNodes(rec *logpb.GroupRecord) []string {
	var out []string
	for _, r := range rec.Replicas {
		out = append(out, r.Node)
	}
	return out
}

// RemoveMember removes a member if it may go: it holds no replica and
// leads nothing (drained), or it is dead, or force is set (its replicas
// are then re-created elsewhere). It returns the members left.
func (c *Controller) RemoveMember(ctx context.Context, id string, force bool) ([]*logpb.MemberPut, error) {
	if !c.Active() {
		return nil, ErrNotActive
	}
	d, err := c.directory()
	if err != nil {
		return nil, err
	}
	if d.Member(id) == nil {
		return nil, invalid("id", "no member %q", id)
	}
	if len(d.Members) == 1 {
		return nil, invalid("id", "%s is the last member", id)
	}
	nodes, groups := c.view(d)
	i := slices.IndexFunc(nodes, func(n NodeView) bool { return n.ID == id })
	if !force && nodes[i].Alive {
		var holds []string
		for _, g := range groups {
			if hostsNode(g.Record, id) || g.Leader == id || slices.ContainsFunc(g.Config, func(r *logpb.Replica) bool { return r.Node == id }) {
				holds = append(holds, g.Record.Name)
			}
		}
		if len(holds) > 0 {
			return nil, invalid("id", "%s is alive and still holds %v: drain it first (metactl member drain %s), or force", id, holds, id)
		}
	}
	res, err := c.node.ProposeMetadata(ctx, &logpb.Op{Op: &logpb.Op_MemberRemove{MemberRemove: &logpb.MemberRemove{Id: id}}})
	if err != nil {
		return nil, err
	}
	if res.Code != logpb.Code_CODE_OK && res.Code != logpb.Code_CODE_NOT_FOUND {
		return nil, invalid("id", "%s", res.Message)
	}
	c.mu.Lock()
	delete(c.nodes, id)
	c.mu.Unlock()
	return slices.DeleteFunc(slices.Clone(d.Members), func(m *logpb.MemberPut) bool { return m.Id == id }), nil
}

// MoveReplica moves group's replica from node from to node to: it
// changes the group's record, compared on the version it read, and the
// group's leader makes the configuration follow (metanode/membership.go).
// A move is refused while another change of the group is under way
// (REVISION_CONFLICT: try again once it settles), and when to cannot take
// the replica. Placement may later move another replica to rebalance.
func (c *Controller) MoveReplica(ctx context.Context, group, from, to string) (*logpb.GroupRecord, error) {
	if !c.Active() {
		return nil, ErrNotActive
	}
	d, err := c.directory()
	if err != nil {
		return nil, err
	}
	nodes, groups := c.view(d)
	gi := slices.IndexFunc(groups, func(g GroupView) bool { return g.Record.Name == group })
	if gi < 0 {
		return nil, invalid("group", "no group %q", group)
	}
	g := groups[gi]
	if !hostsNode(g.Record, from) {
		return nil, invalid("from", "%s holds no replica of %s (replicas %v)", from, group, replicaNodes(g.Record))
	}
	ni := slices.IndexFunc(nodes, func(n NodeView) bool { return n.ID == to })
	switch {
	case ni < 0:
		return nil, invalid("to", "no member %q", to)
	case hostsNode(g.Record, to):
		return nil, invalid("to", "%s already holds a replica of %s", to, group)
	case nodes[ni].Draining:
		return nil, invalid("to", "%s is draining", to)
	case !nodes[ni].Alive || nodes[ni].Dead:
		return nil, invalid("to", "%s has not reported for %s: it is not alive", to, c.cfg.NodeTimeout)
	}
	if moving(g) {
		return nil, metapb.NewError(metapb.ReasonRevisionConflict, map[string]string{metapb.MetaGroup: group},
			"%s is changing (record conf_ver %d, its leader's configuration differs or is unknown): try again once it settles", group, g.Record.ConfVer)
	}
	rec := replace(g.Record, from, to)
	res, err := c.node.ProposeMetadata(ctx, &logpb.Op{Op: &logpb.Op_GroupPut{GroupPut: &logpb.GroupPut{Group: rec, ExpectedConfVer: rec.ConfVer}}})
	if err != nil {
		return nil, err
	}
	switch res.Code {
	case logpb.Code_CODE_OK:
	case logpb.Code_CODE_COMPARE_FAILED:
		return nil, metapb.NewError(metapb.ReasonRevisionConflict, map[string]string{metapb.MetaGroup: group},
			"%s changed while the move was planned (%s): try again", group, res.Message)
	default:
		return nil, invalid("group", "%s", res.Message)
	}
	c.log.Info("moving a replica", "group", group, "from", from, "to", to, "conf_ver", rec.ConfVer+1)
	c.mu.Lock()
	c.moves++
	c.mu.Unlock()
	rec.ConfVer++
	return rec, nil
}

// invalid is an INVALID_ARGUMENT error naming the request field at
// fault, in its metadata and at the head of its message.
func invalid(field, format string, args ...any) error {
	return metapb.Invalid(field, "%s: %s", field, fmt.Sprintf(format, args...))
}

// directory reads metadata-0's directory on this node. Before the
// cluster record is written there are no members and no groups to list
// or change: ErrNoClusterRecord, never an empty view. (metadata-0's leader
// writes the record before it starts the controller, but that write can
// fail, a leader change for instance, and the controller runs anyway.)
func (c *Controller) directory() (*state.Directory, error) {
	md, err := c.node.Metadata()
	if err != nil {
		return nil, err
	}
	d, err := md.Directory()
	if err == nil && d.Cluster == nil {
		return nil, ErrNoClusterRecord
	}
	return d, err
}

// Groups is the group view.
func (c *Controller) Groups() (*metapb.ListGroupsResponse, error) {
	d, err := c.directory()
	if err != nil {
		return nil, err
	}
	_, groups := c.view(d)
	out := &metapb.ListGroupsResponse{DirectoryVersion: d.Version}
	if d.Cluster != nil {
		out.ReplicationFactor, out.MetadataReplicationFactor = d.Cluster.ReplicationFactor, d.Cluster.MetadataReplicationFactor
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, g := range groups {
		gi := &metapb.GroupInfo{Group: g.Record.Name, Kind: g.Record.Kind, ConfVer: g.Record.ConfVer,
			State: groupState(g.Record.State), Leader: g.Leader, Bytes: g.Bytes, Moving: moving(g)}
		for _, r := range g.Record.Replicas {
			ri := &metapb.ReplicaInfo{Node: r.Node, Voter: r.Voter}
			for _, cr := range g.Config {
				if cr.Node == r.Node {
					ri.Role = map[bool]string{true: "voter", false: "nonvoter"}[cr.Voter]
				}
			}
			gi.Replicas = append(gi.Replicas, ri)
		}
		gi.Parent = g.Record.Parent
		if sp := g.Record.Split; sp != nil {
			gi.SplitChild, gi.SplitPhase, gi.SplitError = sp.Child, strings.ToLower(strings.TrimPrefix(sp.Phase.String(), "SPLIT_PHASE_")), sp.Stuck
		}
		for _, r := range g.Record.Ranges {
			gi.Ranges = append(gi.Ranges, &metapb.KeyRange{Lo: r.Lo, Hi: r.Hi, Version: r.Version})
		}
		if seen, ok := c.nodes[g.Leader]; ok {
			for _, rr := range seen.report.Replicas {
				if rr.Group == g.Record.Name {
					gi.AppliedIndex, gi.OpsPerSec = rr.AppliedIndex, rr.OpsPerSec
				}
			}
		}
		out.Groups = append(out.Groups, gi)
	}
	return out, nil
}

func groupState(s logpb.GroupState) string {
	switch s {
	case logpb.GroupState_GROUP_STATE_CREATING:
		return "creating"
	case logpb.GroupState_GROUP_STATE_DELETING:
		return "deleting"
	}
	return "active"
}

// Nodes is the node view.
func (c *Controller) Nodes() (*metapb.ListNodesResponse, error) {
	d, err := c.directory()
	if err != nil {
		return nil, err
	}
	nodes, groups := c.view(d)
	now := c.node.Now()
	out := &metapb.ListNodesResponse{}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range nodes {
		ni := &metapb.NodeInfo{Id: n.ID, Addr: memberAddr(d, n.ID), Zone: n.Zone, Alive: n.Alive, Bytes: n.Bytes, LastSeenMs: -1}
		if seen, ok := c.nodes[n.ID]; ok {
			ni.LastSeenMs = now.Sub(seen.at).Milliseconds()
		}
		holds := false
		for _, g := range groups {
			if hostsNode(g.Record, n.ID) {
				ni.Replicas++
				holds = true
			}
			if g.Leader == n.ID {
				ni.Leaders++
				holds = true
			}
			if slices.ContainsFunc(g.Config, func(r *logpb.Replica) bool { return r.Node == n.ID }) {
				holds = true
			}
		}
		switch {
		case n.Dead:
			ni.State = "dead"
		case n.Draining && !holds:
			ni.State = "drained"
		case n.Draining:
			ni.State = "draining"
		default:
			ni.State = "active"
		}
		out.Nodes = append(out.Nodes, ni)
	}
	return out, nil
}

func memberAddr(d *state.Directory, id string) string {
	if m := d.Member(id); m != nil {
		return m.Addr
	}
	return ""
}
