package metanode

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
)

// callFreshSnapshot asks a group's leader for a snapshot newer than a
// follower's applied index.
const callFreshSnapshot = "metanode.fresh-snapshot"

// A follower refuses a snapshot older than its own state (see
// sm.Machine.Restore). Its leader keeps sending that snapshot, with growing
// back-off, until it takes a newer one, which without new writes may be
// never: the follower would stay behind. So the follower asks the leader
// for a fresh snapshot once per refusal burst, and the leader's next
// attempt carries a snapshot the follower can install.
func (g *group) askFreshSnapshot(applied uint64) {
	select {
	case <-g.n.stopping:
		return
	default:
	}
	if !g.askingSnapshot.CompareAndSwap(false, true) {
		return
	}
	g.n.loops.Add(1)
	go func() {
		defer g.n.loops.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		go func() {
			select {
			case <-g.n.stopping:
				cancel()
			case <-ctx.Done():
			}
		}()
		payload := binary.BigEndian.AppendUint64(nil, applied)
		payload = append(payload, g.name...)
		_, err := g.n.CallLeader(ctx, g.name, callFreshSnapshot, payload)
		g.n.log.Info("asked the leader for a fresh snapshot", "group", g.name, "applied", applied, "err", err)
		// One request per burst: the leader's retries of the old snapshot
		// come every few milliseconds at first.
		select {
		case <-time.After(time.Second):
		case <-g.n.stopping:
		}
		g.askingSnapshot.Store(false)
	}()
}

// serveFreshSnapshot is the leader's side of askFreshSnapshot: it takes a
// snapshot unless its latest one already covers the follower's index.
func (n *Node) serveFreshSnapshot(_ context.Context, payload []byte) ([]byte, error) {
	if len(payload) < 9 {
		return nil, fmt.Errorf("%w: fresh-snapshot request of %d bytes", ErrInvalid, len(payload))
	}
	applied := binary.BigEndian.Uint64(payload)
	g, err := n.group(string(payload[8:]))
	if err != nil {
		return nil, toPeerError(err)
	}
	if !g.isLeader() {
		return nil, toPeerError(g.notLeader())
	}
	if snaps, err := g.snaps.List(); err == nil && len(snaps) > 0 && snaps[0].Index >= applied {
		return nil, nil
	}
	switch err := g.raft.Snapshot().Error(); {
	case errors.Is(err, raft.ErrNothingNewToSnapshot):
	case err != nil:
		return nil, toPeerError(fmt.Errorf("%s: snapshot: %w", g.name, err))
	default:
		n.log.Info("took a snapshot for a follower that refused an older one", "group", g.name, "follower_applied", applied)
	}
	return nil, nil
}
