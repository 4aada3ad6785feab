package metanode

import (
	"context"

	"github.com/metamq/meta/sm/logpb"
)

// initOwnership records, once, which ranges a data or offset group owns
// (sm/ownership.go): the ranges its directory record gives it, or, in a
// cluster that routes by Shard (no ranges), everything sent to it. Until
// then the group serves everything sent to it, as before ranges existed. A
// group made by a split gets its ownership from the split instead. It runs
// on the group's leader, as part of its term's work.
func (g *group) initOwnership(ctx context.Context) {
	for g.fsm.Ownership() == nil {
		changed := g.env.dirChanged()
		d := g.env.directory()
		rec := d.Group(g.name)
		if rec != nil && rec.Parent == "" {
			op := &logpb.OwnershipInit{Ranges: rec.Ranges, Legacy: len(rec.Ranges) == 0}
			if _, err := g.proposeLocal(ctx, &logpb.Op{Op: &logpb.Op_OwnershipInit{OwnershipInit: op}}); err != nil {
				g.log.Debug("record ownership", "err", err)
			} else {
				g.log.Info("ownership recorded", "ranges", len(op.Ranges), "legacy", op.Legacy)
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-g.fsm.Changed():
		}
	}
}
