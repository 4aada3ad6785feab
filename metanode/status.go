package metanode

import (
	"strconv"

	"github.com/hashicorp/raft"

	"github.com/metamq/meta/rpc/metapb"
	"github.com/metamq/meta/sm"
)

// Status describes every group on this node. It never blocks on the
// network.
func (n *Node) Status() []*metapb.GroupStatus {
	if !n.started.Load() {
		return nil
	}
	groups := n.hostedGroups()
	out := make([]*metapb.GroupStatus, 0, len(groups))
	for _, g := range groups {
		id, addr := g.leader()
		st := &metapb.GroupStatus{
			Group:        g.name,
			State:        g.raft.State().String(),
			LeaderId:     id,
			LeaderAddr:   addr,
			Term:         g.raft.CurrentTerm(),
			CommitIndex:  g.raft.CommitIndex(),
			AppliedIndex: g.fsm.AppliedIndex(),
			LastLogIndex: g.raft.LastIndex(),
			Revision:     g.fsm.Revision(),
		}
		if v, err := strconv.ParseUint(g.raft.Stats()["last_snapshot_index"], 10, 64); err == nil {
			st.LastSnapshotIndex = v
		}
		for _, s := range g.configuration() {
			st.Members = append(st.Members, &metapb.Member{Id: string(s.ID), Addr: string(s.Address), Voter: s.Suffrage == raft.Voter})
		}
		out = append(out, st)
	}
	return out
}

// StateHash digests one group's state on this node.
func (n *Node) StateHash(groupName string) (sm.StateHash, error) {
	g, err := n.group(groupName)
	if err != nil {
		return sm.StateHash{}, err
	}
	return g.fsm.Hash()
}

// Serving reports whether the node serves the public API.
func (n *Node) Serving() bool { return n.serving.Load() }
