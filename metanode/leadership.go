package metanode

import (
	"context"
	"time"

	"github.com/hashicorp/raft"
)

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
