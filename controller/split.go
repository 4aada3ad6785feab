package controller

import (
	"cmp"
	"context"
	"slices"
	"time"

	"github.com/metamq/meta/sm/logpb"
)

// Automatic splits. The controller splits a data or offset group whose
// size passes SplitBytes, or whose leader has applied more than
// SplitEntriesPerSec entries a second for SplitLoadFor, in the middle of
// its widest range (Node.StartSplit: the same split as `metactl group
// split`, recorded in the directory and driven by metadata-0's leader).
// One split runs at a time in the whole cluster, manual or automatic; a
// group split (the parent or the new group) is left alone for
// SplitCooldown after the controller started that split, so that sizes
// and rates reported for the group before its keys moved do not split it
// again. A new controller knows nothing of earlier splits and waits a
// cooldown from its activation before its first. No kind grows past
// SplitMaxGroups groups by automatic splits (manual splits are not
// limited).

// SplitPolicy is the input of PlanSplit besides the groups.
type SplitPolicy struct {
	// Bytes: a group larger splits (0: never by size).
	Bytes uint64
	// EntriesPerSec and LoadFor: a group whose leader applied more
	// entries a second than EntriesPerSec, in every report for LoadFor,
	// splits (0: never by load).
	EntriesPerSec float64
	LoadFor       time.Duration
	// MaxGroups bounds the groups of a kind automatic splits make.
	MaxGroups int
}

// splitState is what the controller keeps between plans: since when each
// group has been hot, and until when each is cooling down.
type splitState struct {
	hotSince  map[string]time.Time
	coolUntil map[string]time.Time
	// allUntil: no automatic split before it (a new controller's wait).
	allUntil time.Time
	splits   map[string]uint64 // automatic splits started, by reason
}

func newSplitState(now time.Time, cooldown time.Duration) *splitState {
	return &splitState{hotSince: map[string]time.Time{}, coolUntil: map[string]time.Time{},
		allUntil: now.Add(cooldown), splits: map[string]uint64{}}
}

// PlanSplit returns the group to split at now and why ("size" or "load"),
// or "" when none should. hotSince (updated) holds since when each group's
// reported rate has been above the policy's; coolUntil holds the groups
// cooling down after a split.
func PlanSplit(p SplitPolicy, groups []GroupView, hotSince, coolUntil map[string]time.Time, now time.Time) (group, reason string) {
	perKind := map[string]int{}
	busy := false
	for _, g := range groups {
		perKind[g.Record.Kind]++
		busy = busy || g.Record.Split != nil
		if p.EntriesPerSec > 0 && g.Known && g.EntriesPerSec > p.EntriesPerSec {
			if _, ok := hotSince[g.Record.Name]; !ok {
				hotSince[g.Record.Name] = now
			}
		} else {
			delete(hotSince, g.Record.Name)
		}
	}
	if busy {
		return "", "" // one split at a time
	}
	type candidate struct {
		name, reason string
		bytes        uint64
	}
	var cands []candidate
	for _, g := range groups {
		rec := g.Record
		if (rec.Kind != "data" && rec.Kind != "offset") || rec.State != logpb.GroupState_GROUP_STATE_ACTIVE ||
			len(rec.Ranges) == 0 || now.Before(coolUntil[rec.Name]) || perKind[rec.Kind] >= p.MaxGroups {
			continue
		}
		if p.Bytes > 0 && g.Bytes > p.Bytes {
			cands = append(cands, candidate{rec.Name, "size", g.Bytes})
		} else if since, ok := hotSince[rec.Name]; ok && now.Sub(since) >= p.LoadFor {
			cands = append(cands, candidate{rec.Name, "load", g.Bytes})
		}
	}
	if len(cands) == 0 {
		return "", ""
	}
	// The largest first, by size before load.
	best := slices.MinFunc(cands, func(a, b candidate) int {
		return cmp.Or(cmp.Compare(b.reason, a.reason), cmp.Compare(b.bytes, a.bytes), cmp.Compare(a.name, b.name))
	})
	return best.name, best.reason
}

// autoSplit starts the split PlanSplit finds in groups (placementView),
// if any.
func (c *Controller) autoSplit(ctx context.Context, groups []GroupView) {
	p := SplitPolicy{Bytes: c.cfg.SplitBytes, EntriesPerSec: c.cfg.SplitEntriesPerSec, LoadFor: c.cfg.SplitLoadFor, MaxGroups: c.cfg.SplitMaxGroups}
	if p.Bytes == 0 && p.EntriesPerSec == 0 {
		return
	}
	now := c.node.Now()
	c.mu.Lock()
	st := c.splitting
	if now.Before(st.allUntil) {
		c.mu.Unlock()
		return
	}
	group, reason := PlanSplit(p, groups, st.hotSince, st.coolUntil, now)
	c.mu.Unlock()
	if group == "" {
		return
	}
	child, r, err := c.node.StartSplit(ctx, group, 0)
	c.log.Info("automatic split", "group", group, "reason", reason, "child", child, "range", r, "err", err)
	if err != nil {
		return
	}
	c.mu.Lock()
	until := now.Add(c.cfg.SplitCooldown)
	st.coolUntil[group], st.coolUntil[child] = until, until
	delete(st.hotSince, group)
	st.splits[reason]++
	c.mu.Unlock()
}
