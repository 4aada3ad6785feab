package metanode

import (
	"context"
	"time"

	"github.com/metamq/meta/sm"
	"github.com/metamq/meta/sm/logpb"
)

// Leader-only timers. Expiry is decided by the leader of the owning group
// from its clock and applied through raft: the leader proposes the ids it
// found past their time, and apply re-checks each one against the entry's
// time stamp, so a session that reconnected (or a lease kept alive) in
// between survives. No replica deletes anything on its own timer.

const timerBatch = 1000

// runTimers runs while this node leads the group (ctx ends on step-down).
func (g *group) runTimers(ctx context.Context) {
	interval := g.env.cfg.TimerInterval
	lastCompact := time.Time{}
	t := time.NewTicker(interval)
	defer t.Stop()
	// An idle group need not be scanned every interval: once a scan found
	// nothing due, the next one waits until something is applied or the
	// earliest timer it saw comes due.
	var quietAt uint64
	var next int64
	quiet := false
	for {
		if g.kind == sm.KindData {
			now := g.env.cfg.Clock.Now().UnixNano()
			if !quiet || g.fsm.AppliedIndex() != quietAt || (next != 0 && now >= next) {
				quietAt = g.fsm.AppliedIndex()
				next, quiet = g.expire(ctx, now)
			}
		}
		if g.kind != sm.KindOffset && time.Since(lastCompact) > 10*interval {
			lastCompact = time.Now()
			g.compactEvents(ctx)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// expire proposes what is past its time: sessions, wills, leases. It
// returns the earliest timer still to come (0: none), and whether nothing
// was due.
func (g *group) expire(ctx context.Context, now int64) (next int64, quiet bool) {
	tm, err := g.fsm.DueTimers(now, timerBatch)
	if err != nil {
		g.log.Warn("scan timers", "err", err)
		return 0, false
	}
	if len(tm.Sessions)+len(tm.Wills)+len(tm.Leases) == 0 {
		return tm.Next, true
	}
	var ops []*logpb.Op
	if len(tm.Sessions) > 0 {
		ops = append(ops, &logpb.Op{Op: &logpb.Op_SessionsExpire{SessionsExpire: &logpb.SessionsExpire{ClientIds: tm.Sessions}}})
	}
	if len(tm.Wills) > 0 {
		ops = append(ops, &logpb.Op{Op: &logpb.Op_WillsMarkDue{WillsMarkDue: &logpb.WillsMarkDue{ClientIds: tm.Wills}}})
	}
	if len(tm.Leases) > 0 {
		ops = append(ops, &logpb.Op{Op: &logpb.Op_LeasesExpire{LeasesExpire: &logpb.LeasesExpire{Ids: tm.Leases}}})
	}
	for _, op := range ops {
		if _, err := g.proposeLocal(ctx, op); err != nil {
			g.log.Debug("propose expiry", "err", err)
			return tm.Next, false
		}
	}
	return tm.Next, false
}

// compactEvents drops change-log entries older than the retention, keeping
// at least EventRetentionMin revisions, a bounded chunk at a time.
func (g *group) compactEvents(ctx context.Context) {
	oldest, err := g.fsm.OldestEvent()
	if err != nil || oldest == nil {
		return
	}
	rev := g.fsm.Revision()
	if rev <= g.env.cfg.EventRetentionMin {
		return
	}
	limit := rev - g.env.cfg.EventRetentionMin // may compact below this
	cutoff := g.env.cfg.Clock.Now().Add(-g.env.cfg.EventRetention).UnixNano()
	if oldest.Event.AtUnixNano > cutoff {
		return
	}
	// Find the first revision newer than the cutoff, within one chunk.
	below := min(oldest.Revision+10000, limit)
	if below <= oldest.Revision {
		return
	}
	if ev, err := g.fsm.EventAt(below); err == nil && ev != nil && ev.Event.AtUnixNano > cutoff {
		// Some events before `below` are newer than the cutoff: bisect.
		lo, hi := oldest.Revision, below
		for lo+1 < hi {
			mid := (lo + hi) / 2
			e, err := g.fsm.EventAt(mid)
			if err != nil || e == nil || e.Event.AtUnixNano > cutoff {
				hi = mid
			} else {
				lo = mid
			}
		}
		below = hi
	}
	if _, err := g.proposeLocal(ctx, &logpb.Op{Op: &logpb.Op_EventsCompact{EventsCompact: &logpb.EventsCompact{BelowRevision: below}}}); err != nil {
		g.log.Debug("propose compaction", "err", err)
	}
}
