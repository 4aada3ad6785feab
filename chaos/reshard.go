package chaos

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/metamq/meta/verify"
)

// The reshard fault (verify.FaultReshard) on a cluster in containers, as
// in process: Inject splits a data group just below a recently written
// key through the public client (verify.StartReshard) and returns once
// the split is recorded, while the workload writes that key; Heal waits
// until no split is under way (verify.AwaitSplitsDone) and every group,
// the new one included, has a leader. A run starts a fresh cluster and a
// schedule holds at most ScheduleOptions.MaxReshards reshard faults, so
// a run's cluster never holds more than verify.MaxDataGroups data groups.

// reshardHealLimit bounds how long Heal waits for a split to finish and
// its groups to lead: the split copies what a run wrote (a few thousand
// keys), through containers that other faults may have slowed.
const reshardHealLimit = 2 * time.Minute

// SplitLevel is the feature level splits need (RangeRelease and the
// other split operations in sm/version.go, which chaos cannot import;
// ci/route_test.go holds them equal): a cluster whose version is below
// it (an upgrade from an older release not finished) refuses splits.
const SplitLevel = 3

func (m *Nemesis) injectReshard(ctx context.Context, f *verify.Fault) error {
	if v, _, err := m.clusterVersion(ctx); err == nil && v < SplitLevel {
		m.note(f, false, "ops: reshard skipped: cluster version %d cannot split (it needs %d)", v, SplitLevel)
		return nil
	}
	rs, child, err := verify.StartReshard(ctx, m.adm, f.Pick)
	if err != nil {
		return fmt.Errorf("chaos: %w", err)
	}
	m.note(f, false, "split %s at %#x, just below %q (hash %#x): %s takes the rest of its range", rs.Group, rs.At, rs.Key, rs.Hash, child)
	return nil
}

func (m *Nemesis) healReshard(ctx context.Context, f *verify.Fault) error {
	if err := verify.AwaitSplitsDone(ctx, m.adm, reshardHealLimit); err != nil {
		return fmt.Errorf("chaos: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, reshardHealLimit)
	defer cancel()
	var leaderless []string
	for {
		gs, err := m.adm.ListGroups(ctx)
		if err == nil {
			leaderless = leaderless[:0]
			for _, g := range gs.Groups {
				if g.State == "active" && g.Leader == "" {
					leaderless = append(leaderless, g.Group)
				}
			}
			if len(leaderless) == 0 {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			if len(leaderless) == 0 {
				return fmt.Errorf("chaos: reshard: no group list after the split: %w", err)
			}
			return fmt.Errorf("chaos: reshard: groups without a leader after the split: %s", strings.Join(leaderless, ", "))
		case <-time.After(200 * time.Millisecond):
		}
	}
}
