package metanode

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"

	"github.com/metamq/meta/rpc/transport/raftpb"
)

// A follower refuses a snapshot older than its own state (see
// sm.Machine.Restore). Its leader keeps sending that snapshot, with growing
// back-off, until it takes a newer one, which without new writes may be
// never: the follower would stay behind. So the follower asks the leader
// for a fresh snapshot once per refusal burst, and the leader's next
// attempt carries a snapshot the follower can install.
func (g *group) askFreshSnapshot(applied uint64) {
	if !g.askingSnapshot.CompareAndSwap(false, true) {
		return
	}
	started := g.life.Go(func(ctx context.Context) {
		defer g.askingSnapshot.Store(false)
		cctx, cancel := context.WithTimeout(ctx, g.env.t.peerCall)
		err := g.callOnLeader(cctx, callFreshSnapshot, &raftpb.FreshSnapshotCall{Group: g.name, Applied: applied})
		cancel()
		g.log.Info("asked the leader for a fresh snapshot", "applied", applied, "err", err)
		// One request per burst: the leader's retries of the old snapshot
		// come every few milliseconds at first.
		select {
		case <-time.After(g.env.t.freshSnapshotPause):
		case <-ctx.Done():
		}
	})
	if !started {
		g.askingSnapshot.Store(false)
	}
}

// serveFreshSnapshot is the leader's side of askFreshSnapshot: it takes a
// snapshot unless its latest one already covers the follower's index.
func (n *Node) serveFreshSnapshot(ctx context.Context, req *raftpb.FreshSnapshotCall) error {
	g, err := n.group(req.Group)
	if err != nil {
		return err
	}
	if !g.isLeader() {
		return g.notLeader()
	}
	if snaps, err := g.snaps.List(); err == nil && len(snaps) > 0 && snaps[0].Index >= req.Applied {
		return nil
	}
	_, err = g.await(ctx, "snapshot", func() raft.Future { return g.raft.Snapshot() })
	switch {
	case errors.Is(err, raft.ErrNothingNewToSnapshot):
	case err != nil:
		return fmt.Errorf("%s: snapshot: %w", g.name, err)
	default:
		n.log.Info("took a snapshot for a follower that refused an older one", "group", g.name, "follower_applied", req.Applied)
	}
	return nil
}
