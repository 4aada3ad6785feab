package metanode

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/metamq/meta/rpc/metapb"
	"github.com/metamq/meta/rpc/transport/raftpb"
	"github.com/metamq/meta/sm/logpb"
	"github.com/metamq/meta/sm/state"
)

// Membership and placement have one source of truth: the directory in
// metadata-0 (members and their states; every group's record with its
// replica set). Every group's raft configuration follows its record: the
// group's leader reconciles the configuration with it, one change at a
// time, adding before removing (a new replica joins as a non-voter, is
// promoted once caught up, and only then is a replica that leaves
// removed; a leader that leaves hands its leadership off first), each
// change conditional on the configuration it read. A change interrupted
// halfway (a leader crash, a partition) is finished by whoever leads next.
// Where replicas go is the controller's decision (controller/placement.go).

// initCluster runs when this node becomes metadata-0's leader: it records
// the cluster's identity and, for a cluster bootstrapped from an initial
// member list, that list and the initial directory; a cluster created
// before the directory existed gets its directory (every member hosts
// every group, as it does).
func (n *Node) initCluster(ctx context.Context) {
	if h := clusterInitHold.Load(); h != nil {
		select {
		case <-*h:
		case <-ctx.Done():
			return
		}
	}
	md := n.hosted(metapb.MetadataGroup)
	d, err := md.fsm.Directory()
	if err != nil {
		n.log.Error("read cluster record", "err", err)
		return
	}
	var op *logpb.Op
	switch {
	case d.Cluster == nil:
		ci := &logpb.ClusterInit{ClusterId: n.identity.ClusterId, OffsetGroups: n.identity.OffsetGroups,
			DataGroups: n.identity.DataGroups, Members: n.identity.InitialMembers}
		if n.identity.ReplicationFactor > 0 {
			ci.ReplicationFactor = n.identity.ReplicationFactor
			ci.MetadataReplicationFactor = n.identity.MetadataReplicationFactor
			ci.Groups = initialRecords(n.identity)
		}
		op = &logpb.Op{Op: &logpb.Op_ClusterInit{ClusterInit: ci}}
	case len(d.Groups) == 0:
		var members []string
		for _, m := range d.Members {
			members = append(members, m.Id)
		}
		groups := metapb.Groups(int(d.Cluster.OffsetGroups), int(d.Cluster.DataGroups))
		op = &logpb.Op{Op: &logpb.Op_DirectoryInit{DirectoryInit: &logpb.DirectoryInit{Groups: legacyDirectory(members, groups),
			ReplicationFactor: DefaultReplicationFactor, MetadataReplicationFactor: DefaultMetadataReplicationFactor}}}
		n.log.Info("recording the directory of a cluster created before it: every member hosts every group", "members", members)
	default:
		return
	}
	res, err := md.proposeLocal(ctx, op)
	if err != nil {
		n.log.Warn("record cluster identity", "err", err)
		return
	}
	if res.Code != logpb.Code_CODE_OK {
		n.log.Error("cluster identity conflict: this node cannot serve this cluster", "err", res.Message)
	}
}

// clusterInitHold, set by tests only, holds initCluster back until the
// channel closes: the window before a new cluster's record is written.
var clusterInitHold atomic.Pointer[chan struct{}]

// Members returns the member list (a linearizable read of metadata-0)
// with each member's suffrage in metadata-0's configuration. Before the
// cluster record is written (a restored node serves at once; its first
// metadata leader writes the record) it fails with ErrNoClusterRecord: an
// empty list would read as a cluster without members.
func (n *Node) Members(ctx context.Context) ([]*metapb.Member, error) {
	d, err := n.readDirectory(ctx)
	if err != nil {
		return nil, err
	}
	if d.Cluster == nil {
		return nil, ErrNoClusterRecord
	}
	return membersOf(d.Members, n.hosted(metapb.MetadataGroup).configuration()), nil
}

// readDirectory reads metadata-0's directory linearizably.
func (n *Node) readDirectory(ctx context.Context) (*state.Directory, error) {
	m, err := n.Read(ctx, metapb.MetadataGroup, false)
	if err != nil {
		return nil, err
	}
	return m.Directory()
}

func membersOf(members []*logpb.MemberPut, config []raft.Server) []*metapb.Member {
	voters := map[string]bool{}
	for _, s := range config {
		voters[string(s.ID)] = s.Suffrage == raft.Voter
	}
	out := make([]*metapb.Member, 0, len(members))
	for _, mp := range members {
		out = append(out, &metapb.Member{Id: mp.Id, Addr: mp.Addr, Voter: voters[mp.Id], Zone: mp.Zone,
			Draining: mp.State == logpb.MemberState_MEMBER_STATE_DRAINING})
	}
	return out
}

// AddMember records a new member (with an optional zone); the controller
// then places replicas on it. Start the new node with Join after this
// returns.
func (n *Node) AddMember(ctx context.Context, id, addr, zone string) ([]*metapb.Member, error) {
	if id == "" || len(id) > metapb.MaxMemberIDBytes {
		return nil, invalidf("id", "1..%d bytes required", metapb.MaxMemberIDBytes)
	}
	if addr == "" || len(addr) > metapb.MaxMemberAddrBytes {
		return nil, invalidf("addr", "1..%d bytes required", metapb.MaxMemberAddrBytes)
	}
	if len(zone) > metapb.MaxNameBytes {
		return nil, invalidf("zone", "at most %d bytes", metapb.MaxNameBytes)
	}
	current, err := n.Members(ctx)
	if err != nil {
		return nil, err
	}
	for _, m := range current {
		if m.Id == id && m.Addr == addr && m.Zone == zone {
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
	for _, g := range n.hostedGroups() {
		for _, s := range g.configuration() {
			if string(s.ID) == id {
				return nil, invalidf("id", "%s is still being removed from %s; retry shortly", id, g.name)
			}
		}
	}
	res, err := n.Propose(ctx, metapb.MetadataGroup, &logpb.Op{Op: &logpb.Op_MemberPut{MemberPut: &logpb.MemberPut{Id: id, Addr: addr, Zone: zone}}})
	if err != nil {
		return nil, err
	}
	if res.Code != logpb.Code_CODE_OK {
		return nil, fmt.Errorf("%w: %s", ErrInvalid, res.Message)
	}
	// Applied: from here on nothing may fail the call. The answer is the
	// list as this change left it.
	return append(current, &metapb.Member{Id: id, Addr: addr, Zone: zone}), nil
}

// SetMemberState drains a member (the controller moves every replica and
// leadership off it) or makes it active again.
func (n *Node) SetMemberState(ctx context.Context, id string, state logpb.MemberState) error {
	res, err := n.Propose(ctx, metapb.MetadataGroup, &logpb.Op{Op: &logpb.Op_MemberSetState{MemberSetState: &logpb.MemberSetState{Id: id, State: state}}})
	if err != nil {
		return err
	}
	if res.Code == logpb.Code_CODE_NOT_FOUND {
		return invalidf("id", "no member %q", id)
	}
	if res.Code != logpb.Code_CODE_OK {
		return fmt.Errorf("%w: %s", ErrInvalid, res.Message)
	}
	return nil
}

// RemoveMember removes a member from the list. Whether it may be removed
// (drained, or dead, or forced) is the controller's decision; the groups
// then drop it as their records do. Once the removal is applied the call
// succeeds: the removed member may have led metadata-0 (or any group) and
// left it, so nothing read afterwards may turn an applied removal into a
// failure.
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
	return slices.DeleteFunc(current, func(m *metapb.Member) bool { return m.Id == id }), nil
}

// reconcileLoop runs while this node leads the group (part of the term's
// work): every ReconcileInterval, and at once when the directory changes,
// it makes the group's configuration follow its record. Each group has its
// own, so a change that waits (a commit, a peer) holds up no other group.
func (g *group) reconcileLoop(ctx context.Context) {
	for {
		d := g.env.cfg.ReconcileInterval
		changed := g.env.dirChanged()
		if halted := g.fsm.Halted(); halted != nil {
			// This replica cannot apply the log (sm/halt.go): a leader
			// here could neither answer its proposals nor serve reads.
			g.log.Error("replica halted while leading; handing leadership off", "err", halted)
			if err := g.transferLeadership(ctx, "hand off a halted replica", "", nil); err != nil && ctx.Err() == nil {
				g.log.Warn("hand off leadership of a halted replica", "err", err)
			}
		} else if dir := g.env.directory(); len(dir.Groups) > 0 {
			if rec := dir.Group(g.name); rec != nil && g.ready() {
				addrs := map[string]string{}
				for _, m := range dir.Members {
					addrs[m.Id] = m.Addr
				}
				rctx, cancel := context.WithTimeout(ctx, g.env.t.reconcileRound)
				if err := g.reconcile(rctx, rec, addrs); err != nil && ctx.Err() == nil {
					g.log.Warn("reconcile group configuration", "err", err)
				}
				cancel()
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(d/2 + rand.N(d)):
		case <-changed:
		}
	}
}

// reconcile makes at most one configuration change towards rec: add a
// missing replica as a non-voter; promote a caught-up one that should
// vote; demote a voter that should not; and only once every replica that
// should vote does, remove one that is not in rec (handing leadership off
// first when it is this node). Each change is conditional on the
// configuration it read (raft's prevIndex).
func (g *group) reconcile(ctx context.Context, rec *logpb.GroupRecord, addrs map[string]string) error {
	f := g.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return err
	}
	servers, prev := f.Configuration().Servers, f.Index()
	have := map[string]raft.Server{}
	for _, s := range servers {
		have[string(s.ID)] = s
	}
	timeout := g.env.t.configChange
	change := func(what string, call func() raft.Future) error {
		g.log.Info("configuration change", "change", what, "conf_ver", rec.ConfVer)
		_, err := g.await(ctx, what, call)
		return err
	}
	want := map[string]bool{}
	for _, r := range rec.Replicas {
		want[r.Node] = r.Voter
		addr := addrs[r.Node]
		if _, ok := have[r.Node]; !ok && addr != "" {
			return change("add non-voter "+r.Node, func() raft.Future {
				return g.raft.AddNonvoter(raft.ServerID(r.Node), raft.ServerAddress(addr), prev, timeout)
			})
		}
	}
	complete := true
	for _, r := range rec.Replicas {
		s, ok := have[r.Node]
		if !ok {
			complete = false
			continue
		}
		switch {
		case r.Voter && s.Suffrage != raft.Voter:
			complete = false
			if !g.caughtUp(ctx, s) {
				continue
			}
			return change("promote "+r.Node, func() raft.Future { return g.raft.AddVoter(s.ID, s.Address, prev, timeout) })
		case !r.Voter && s.Suffrage == raft.Voter && string(s.ID) != g.env.id:
			return change("demote "+r.Node, func() raft.Future { return g.raft.DemoteVoter(s.ID, prev, timeout) })
		}
	}
	if !complete {
		return nil
	}
	for _, s := range servers {
		if _, ok := want[string(s.ID)]; ok {
			continue
		}
		if string(s.ID) == g.env.id {
			return g.handOff(ctx, rec)
		}
		return change("remove "+string(s.ID), func() raft.Future { return g.raft.RemoveServer(s.ID, prev, timeout) })
	}
	return nil
}

// caughtUp reports whether a non-voter holds (nearly) what the leader
// committed, as this leader saw it accept appends in its term
// (transport.Matched), and says it has applied as much. What the replica
// says of itself alone is never enough: anyone reaching the port could
// answer for it.
func (g *group) caughtUp(ctx context.Context, s raft.Server) bool {
	slack, commit := uint64(g.env.cfg.MaxAppendEntries), g.raft.CommitIndex()
	matched, ok := g.trans.Matched(s.Address, g.raft.CurrentTerm())
	if !ok || matched+slack < commit {
		return false
	}
	actx, cancel := context.WithTimeout(ctx, g.env.t.peerCall)
	defer cancel()
	applied, err := g.env.peers.Applied(actx, string(s.Address), g.name)
	return err == nil && applied+slack >= commit
}

// handOff transfers the leadership of a group this node leaves to a voter
// that stays.
func (g *group) handOff(ctx context.Context, rec *logpb.GroupRecord) error {
	return g.transferLeadership(ctx, "hand off", "", func(id raft.ServerID) bool { return hosts(rec, string(id)) })
}

// serveRemoveServer removes a server from a group this node leads, at
// another node's request. This release never asks (the directory decides
// every group's configuration); it is served for nodes of the previous
// release during a rolling upgrade.
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
