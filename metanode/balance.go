package metanode

import (
	"context"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/hashicorp/raft"
)

// Leader spread. A node that leads more than its share of groups hands one
// of them to the voter that leads the fewest, once per BalanceInterval
// (with jitter, so nodes do not act in lockstep). Each node decides only
// about the groups it leads, from its own view of who leads what, so no
// coordination is needed; a transfer that fails is tried again later.

func (n *Node) balanceLoop(stop <-chan struct{}) {
	if n.cfg.BalanceInterval <= 0 {
		return
	}
	for {
		d := n.cfg.BalanceInterval
		select {
		case <-stop:
			return
		case <-time.After(d/2 + rand.N(d)):
		}
		n.balanceOnce(stop)
	}
}

// leaderCounts counts, from this node's view, how many groups each voter
// of metadata-0 leads.
func (n *Node) leaderCounts() map[string]int {
	counts := map[string]int{}
	for _, s := range n.groups[n.groupList[0].name].voters() {
		counts[string(s.ID)] = 0
	}
	for _, g := range n.groupList {
		if id, _ := g.leader(); id != "" {
			if _, ok := counts[id]; ok {
				counts[id]++
			}
		}
	}
	return counts
}

func (n *Node) balanceOnce(stop <-chan struct{}) {
	counts := n.leaderCounts()
	if len(counts) < 2 {
		return
	}
	mine := counts[n.id]
	fair := (len(n.groupList) + len(counts) - 1) / len(counts) // ceil(G/N)
	ids := make([]string, 0, len(counts))
	for id := range counts {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	target := ""
	for _, id := range ids {
		if id != n.id && (target == "" || counts[id] < counts[target]) {
			target = id
		}
	}
	if target == "" || !(mine > fair || mine >= counts[target]+2) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	go func() {
		select {
		case <-stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	for _, g := range n.groupList {
		if !g.isLeader() || g.readyTerm.Load() != g.raft.CurrentTerm() {
			continue
		}
		var addr raft.ServerAddress
		for _, s := range g.voters() {
			if string(s.ID) == target {
				addr = s.Address
			}
		}
		if addr == "" {
			continue
		}
		// Only to a live replica that has caught up, or the group would
		// wait for an election.
		applied, err := n.trans.Applied(ctx, string(addr), g.name)
		if err != nil || applied+uint64(n.cfg.MaxAppendEntries) < g.raft.CommitIndex() {
			continue
		}
		n.log.Info("moving leadership to spread leaders", "group", g.name, "to", target,
			"leads", mine, "fair", fair, "target_leads", counts[target])
		if err := g.raft.LeadershipTransferToServer(raft.ServerID(target), addr).Error(); err != nil {
			n.log.Warn("leadership transfer failed", "group", g.name, "to", target, "err", err)
		}
		return
	}
}

// TransferLeader moves a group's leadership to target (a node id), or to
// the most up-to-date follower when target is empty. It runs on the
// group's leader; other nodes answer NOT_LEADER.
func (n *Node) TransferLeader(ctx context.Context, groupName, target string) (string, error) {
	g, err := n.group(groupName)
	if err != nil {
		return "", err
	}
	if !g.isLeader() {
		return "", g.notLeader()
	}
	var f raft.Future
	if target == "" {
		f = g.raft.LeadershipTransfer()
	} else {
		var addr raft.ServerAddress
		for _, s := range g.voters() {
			if string(s.ID) == target {
				addr = s.Address
			}
		}
		if addr == "" {
			return "", invalidf("target_id", "%s is not a voter of %s", target, groupName)
		}
		if target == n.id {
			return n.id, nil
		}
		f = g.raft.LeadershipTransferToServer(raft.ServerID(target), addr)
	}
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		if err != nil {
			return "", err
		}
	case <-ctx.Done():
		return "", ctx.Err()
	}
	// Report the new leader once this node knows it.
	for {
		if id, _ := g.leader(); id != "" && id != n.id {
			return id, nil
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}
