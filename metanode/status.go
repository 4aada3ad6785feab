package metanode

import (
	"errors"
	"slices"
	"strconv"
	"strings"

	"github.com/hashicorp/raft"

	"github.com/metamq/meta/rpc/metapb"
	"github.com/metamq/meta/sm"
)

// HaltedGroups lists this node's replicas that halted (sm/halt.go), in
// group order, each with what halted it: "corrupt" (a fence after a hash
// check), "storage" (a write to the raft log, stable store or state
// failed) or "entry" (an entry it cannot apply). Empty when none did.
func (n *Node) HaltedGroups() []*metapb.HaltedGroup {
	var out []*metapb.HaltedGroup
	for _, g := range n.hostedGroups() {
		err := g.fsm.Halted()
		if err == nil {
			continue
		}
		h := &metapb.HaltedGroup{Group: g.name, Kind: "entry", Reason: err.Error()}
		var he *sm.HaltError
		if errors.As(err, &he) {
			h.Index = he.Index
			h.Reason = he.Cause.Error()
		}
		switch {
		case errors.Is(err, sm.ErrCorrupt):
			h.Kind = "corrupt"
		case errors.Is(err, sm.ErrStorage):
			h.Kind = "storage"
		}
		out = append(out, h)
	}
	slices.SortFunc(out, func(a, b *metapb.HaltedGroup) int { return strings.Compare(a.Group, b.Group) })
	return out
}

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
		if own := g.fsm.Ownership(); own != nil {
			st.OwnershipRecorded, st.OwnershipLegacy = true, own.Legacy
			st.Splitting = len(own.Moving) > 0 || own.Ingesting
			for _, r := range own.Owned {
				st.Owned = append(st.Owned, &metapb.KeyRange{Lo: r.Lo, Hi: r.Hi, Version: r.Version})
			}
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
