package metanodetest

import (
	"context"
	"fmt"
	"time"

	"github.com/metamq/meta/verify"
)

// The reshard fault (verify.FaultReshard) on an in-process cluster: Inject
// splits a data group just below a recently written key through the
// public client (verify.StartReshard) and returns once the split is
// recorded; Heal waits until no split is under way (verify.
// AwaitSplitsDone, at most reshardHealLimit) and every group, the new one
// included, has a leader. A cluster holds at most verify.MaxDataGroups
// data groups: a reshard beyond that fails with verify.ErrTooManyGroups
// (a runner reusing clusters starts a fresh one first, ReshardRoom).

// reshardHealLimit bounds how long Heal waits for a split to finish: a
// split copies a few hundred keys here, so a minute is a stuck split.
const reshardHealLimit = 90 * time.Second

func (n *Nemesis) injectReshard(ctx context.Context, f *verify.Fault) error {
	rs, child, err := verify.StartReshard(ctx, n.cl, f.Pick)
	n.log.Info("nemesis: split a data group below a hot key", "fault", f.ID, "key", rs.Key, "hash", fmt.Sprintf("%#x", rs.Hash),
		"group", rs.Group, "at", fmt.Sprintf("%#x", rs.At), "child", child, "err", err)
	if err != nil {
		return fmt.Errorf("metanodetest: %w", err)
	}
	n.mu.Lock()
	n.resharding = true
	n.children = append(n.children, child)
	n.stats.Reshards++
	n.mu.Unlock()
	return nil
}

// healReshard waits until every split is done and every group, the new
// ones included, has a leader.
func (n *Nemesis) healReshard(ctx context.Context) error {
	if err := verify.AwaitSplitsDone(ctx, n.cl, reshardHealLimit); err != nil {
		return fmt.Errorf("metanodetest: %w", err)
	}
	n.mu.Lock()
	n.resharding = false
	n.mu.Unlock()
	return n.waitLeaders(ctx)
}

// ReshardRoom is how many more reshard faults the cluster takes before
// it holds verify.MaxDataGroups data groups.
func (n *Nemesis) ReshardRoom() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return verify.MaxDataGroups - n.c.opts.DataGroups - len(n.children)
}
