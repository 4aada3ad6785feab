package metanode

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/hashicorp/raft"

	"github.com/metamq/meta/rpc/metapb"
	"github.com/metamq/meta/rpc/transport/raftpb"
	"github.com/metamq/meta/sm/logpb"
)

// Membership has one source of truth: the member list in metadata-0
// (MemberPut / MemberRemove). Every group's raft configuration follows it:
// the leader of each group reconciles its configuration with the list
// (adding new members as non-voters, promoting them once caught up,
// removing members no longer listed). A change interrupted halfway (a
// leader crash, a partition) is finished by whoever leads next.

// initCluster runs when this node becomes metadata-0's leader: it records
// the cluster's identity and, for a cluster bootstrapped from an initial
// member list, that list.
func (n *Node) initCluster(ctx context.Context) {
	md := n.groups[metapb.MetadataGroup]
	ci, _, err := md.fsm.Cluster()
	if err != nil {
		n.log.Error("read cluster record", "err", err)
		return
	}
	if ci != nil {
		return
	}
	res, err := md.proposeLocal(ctx, &logpb.Op{Op: &logpb.Op_ClusterInit{ClusterInit: &logpb.ClusterInit{
		ClusterId: n.identity.ClusterId, OffsetGroups: n.identity.OffsetGroups, DataGroups: n.identity.DataGroups,
		Members: n.identity.InitialMembers}}})
	if err != nil {
		n.log.Warn("record cluster identity", "err", err)
		return
	}
	if res.Code != logpb.Code_CODE_OK {
		n.log.Error("cluster identity conflict: this node cannot serve this cluster", "err", res.Message)
	}
}

// Members returns the member list (a linearizable read of metadata-0)
// with each member's suffrage in metadata-0's configuration.
func (n *Node) Members(ctx context.Context) ([]*metapb.Member, error) {
	m, err := n.Read(ctx, metapb.MetadataGroup, false)
	if err != nil {
		return nil, err
	}
	_, members, err := m.Cluster()
	if err != nil {
		return nil, err
	}
	voters := map[string]bool{}
	for _, s := range n.groups[metapb.MetadataGroup].configuration() {
		voters[string(s.ID)] = s.Suffrage == raft.Voter
	}
	out := make([]*metapb.Member, 0, len(members))
	for _, mp := range members {
		out = append(out, &metapb.Member{Id: mp.Id, Addr: mp.Addr, Voter: voters[mp.Id]})
	}
	return out, nil
}

// AddMember records a new member; the group leaders then add it to every
// group as a non-voter and promote it once it has caught up. Start the new
// node with Join after this returns.
func (n *Node) AddMember(ctx context.Context, id, addr string) ([]*metapb.Member, error) {
	if id == "" || len(id) > metapb.MaxMemberIDBytes {
		return nil, invalidf("id", "1..%d bytes required", metapb.MaxMemberIDBytes)
	}
	if addr == "" || len(addr) > metapb.MaxMemberAddrBytes {
		return nil, invalidf("addr", "1..%d bytes required", metapb.MaxMemberAddrBytes)
	}
	current, err := n.Members(ctx)
	if err != nil {
		return nil, err
	}
	for _, m := range current {
		if m.Id == id && m.Addr == addr {
			return current, nil
		}
		if m.Id == id {
			return nil, invalidf("id", "member %s already exists with address %s", id, m.Addr)
		}
		if m.Addr == addr {
			return nil, invalidf("addr", "%s is already the address of member %s", addr, m.Id)
		}
	}
	// A member removed a moment ago may still be in some group's
	// configuration; re-adding it (perhaps with a wiped disk) before the
	// removal finished could let it vote without its log.
	for _, g := range n.groupList {
		for _, s := range g.configuration() {
			if string(s.ID) == id {
				return nil, invalidf("id", "%s is still being removed from %s; retry shortly", id, g.name)
			}
		}
	}
	res, err := n.Propose(ctx, metapb.MetadataGroup, &logpb.Op{Op: &logpb.Op_MemberPut{MemberPut: &logpb.MemberPut{Id: id, Addr: addr}}})
	if err != nil {
		return nil, err
	}
	if res.Code != logpb.Code_CODE_OK {
		return nil, fmt.Errorf("%w: %s", ErrInvalid, res.Message)
	}
	// Applied: from here on nothing may fail the call. The answer is the
	// list as this change left it (a new member joins as a non-voter).
	return append(current, &metapb.Member{Id: id, Addr: addr}), nil
}

// RemoveMember removes a member from the list and waits (bounded by ctx)
// until no group's configuration on this node includes it. Once the
// removal is applied the call succeeds: the removed member may have led
// metadata-0 (or any group) and left it, so nothing read afterwards may
// turn an applied removal into a failure.
func (n *Node) RemoveMember(ctx context.Context, id string) ([]*metapb.Member, error) {
	current, err := n.Members(ctx)
	if err != nil {
		return nil, err
	}
	if !slices.ContainsFunc(current, func(m *metapb.Member) bool { return m.Id == id }) {
		return nil, invalidf("id", "no member %q", id)
	}
	if len(current) == 1 {
		return nil, invalidf("id", "%s is the last member", id)
	}
	res, err := n.Propose(ctx, metapb.MetadataGroup, &logpb.Op{Op: &logpb.Op_MemberRemove{MemberRemove: &logpb.MemberRemove{Id: id}}})
	if err != nil {
		return nil, err
	}
	if res.Code != logpb.Code_CODE_OK && res.Code != logpb.Code_CODE_NOT_FOUND {
		return nil, fmt.Errorf("%w: %s", ErrInvalid, res.Message)
	}
	left := slices.DeleteFunc(current, func(m *metapb.Member) bool { return m.Id == id })
	if id == n.id {
		return left, nil // this node leaves every group; it cannot watch that
	}
	for _, g := range n.groupList {
		for slices.ContainsFunc(g.configuration(), func(s raft.Server) bool { return string(s.ID) == id }) {
			select {
			case <-ctx.Done():
				n.log.Warn("member removed; a group still lists it", "member", id, "group", g.name, "err", ctx.Err())
				return left, nil
			case <-g.life.Done():
				return left, nil
			case <-g.fsm.Changed():
			}
		}
	}
	return left, nil
}

// reconcileLoop makes the configuration of every group this node leads
// follow the member list.
func (n *Node) reconcileLoop(ctx context.Context) {
	for {
		d := n.cfg.ReconcileInterval
		select {
		case <-ctx.Done():
			return
		case <-time.After(d/2 + rand.N(d)):
		}
		n.reconcileOnce(ctx)
	}
}

func (n *Node) reconcileOnce(ctx context.Context) {
	var led []*group
	for _, g := range n.groupList {
		if g.ready() {
			led = append(led, g)
		}
	}
	if len(led) == 0 {
		return
	}
	leadsMetadata := n.LeadsMetadata()
	ctx, cancel := context.WithTimeout(ctx, n.t.reconcileRound)
	defer cancel()
	md, err := n.Read(ctx, metapb.MetadataGroup, false)
	if err != nil {
		return
	}
	_, members, err := md.Cluster()
	if err != nil || len(members) == 0 {
		return
	}
	want := map[string]string{}
	for _, m := range members {
		want[m.Id] = m.Addr
	}
	for _, g := range led {
		if err := g.reconcile(ctx, want); err != nil {
			n.log.Warn("membership reconcile", "group", g.name, "err", err)
		}
	}
	if leadsMetadata {
		n.removeFromOthers(ctx, want)
	}
}

// removeFromOthers makes the leaders of the groups this node does not lead
// drop servers that are no longer members. A group's own leader does that
// itself, except when the leader is the removed member: out of metadata-0
// it can no longer read the member list, so it would keep the group
// forever. The metadata leader can always read the list, so it asks.
func (n *Node) removeFromOthers(ctx context.Context, want map[string]string) {
	for _, g := range n.groupList {
		if g.isLeader() {
			continue
		}
		for _, s := range g.configuration() {
			if _, ok := want[string(s.ID)]; ok {
				continue
			}
			cctx, cancel := context.WithTimeout(ctx, n.t.peerCall)
			err := g.callOnLeader(cctx, callRemoveServer, &raftpb.RemoveServerCall{Group: g.name, ServerId: string(s.ID)})
			cancel()
			n.log.Info("asked group leader to remove a former member", "group", g.name, "server", s.ID, "err", err)
			break // one change per group per round
		}
	}
}

// serveRemoveServer removes a server from a group this node leads, at the
// metadata leader's request (it read the member list linearizably).
func (n *Node) serveRemoveServer(ctx context.Context, req *raftpb.RemoveServerCall) error {
	g, err := n.group(req.Group)
	if err != nil {
		return err
	}
	if req.ServerId == "" {
		return invalidf("server_id", "required")
	}
	if !g.isLeader() {
		return g.notLeader()
	}
	if _, err := g.await(ctx, "remove server "+req.ServerId, func() raft.Future {
		return g.raft.RemoveServer(raft.ServerID(req.ServerId), 0, n.t.configChange)
	}); err != nil {
		return unknown(err)
	}
	return nil
}

// reconcile makes at most one configuration change.
func (g *group) reconcile(ctx context.Context, want map[string]string) error {
	servers := g.configuration()
	have := map[string]raft.Server{}
	for _, s := range servers {
		have[string(s.ID)] = s
	}
	timeout := g.env.t.configChange
	change := func(call func() raft.Future) error {
		_, err := g.await(ctx, "configuration change", call)
		return err
	}
	// Removals first, so a replaced member never coexists with its twin.
	for _, s := range servers {
		if _, ok := want[string(s.ID)]; !ok {
			g.log.Info("removing server from group", "server", s.ID)
			return change(func() raft.Future { return g.raft.RemoveServer(s.ID, 0, timeout) })
		}
	}
	ids := make([]string, 0, len(want))
	for id := range want {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		if _, ok := have[id]; !ok {
			g.log.Info("adding non-voter to group", "server", id)
			return change(func() raft.Future {
				return g.raft.AddNonvoter(raft.ServerID(id), raft.ServerAddress(want[id]), 0, timeout)
			})
		}
	}
	for _, id := range ids {
		s := have[id]
		if s.Suffrage == raft.Voter {
			continue
		}
		actx, cancel := context.WithTimeout(ctx, g.env.t.peerCall)
		applied, err := g.env.peers.Applied(actx, string(s.Address), g.name)
		cancel()
		if err != nil {
			continue // not up yet
		}
		if applied+uint64(g.env.cfg.MaxAppendEntries) >= g.raft.CommitIndex() {
			g.log.Info("promoting caught-up member to voter", "server", id, "applied", applied)
			return change(func() raft.Future { return g.raft.AddVoter(s.ID, s.Address, 0, timeout) })
		}
	}
	return nil
}
