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

// Change-log compaction proposes at most compactChunk revisions per entry
// (the entry's apply scans and deletes their events on every replica, so
// one entry stays short), and up to compactChunksPerRound entries per
// round while the log is behind its retention: one chunk every 10 timer
// intervals (4,000 revisions/s at the default 250 ms) fell behind a
// sustained put rate, and the change log then grew without bound. Eight
// entries a round allow 32,000 revisions/s; a replica applies a chunk in
// about 0.1-0.25 s (sm's BenchmarkEventsCompact: 43,000 revisions/s on a
// loaded 2-core machine), so a backlog costs at most a third to three
// quarters of the apply loop's time while it lasts, and nothing once the
// log has caught up.
const compactChunksPerRound = 8

// compactChunk is a variable so that a test can make chunks small.
var compactChunk uint64 = 10000

// compactEvents drops change-log entries older than the retention, keeping
// at least EventRetentionMin revisions, a bounded chunk per entry and a
// bounded number of entries per call. It returns how many it proposed.
func (g *group) compactEvents(ctx context.Context) int {
	for n := range compactChunksPerRound {
		more, err := g.compactEventsChunk(ctx)
		if err != nil {
			g.log.Debug("propose compaction", "err", err)
			return n
		}
		if !more {
			return n
		}
	}
	return compactChunksPerRound
}

// compactEventsChunk proposes the compaction of one chunk if something is
// due; it reports whether it proposed one.
func (g *group) compactEventsChunk(ctx context.Context) (bool, error) {
	oldest, err := g.fsm.OldestEvent()
	if err != nil || oldest == nil {
		return false, err
	}
	rev := g.fsm.Revision()
	if rev <= g.env.cfg.EventRetentionMin {
		return false, nil
	}
	limit := rev - g.env.cfg.EventRetentionMin // may compact below this
	cutoff := g.env.cfg.Clock.Now().Add(-g.env.cfg.EventRetention).UnixNano()
	if oldest.Event.AtUnixNano > cutoff {
		return false, nil
	}
	// Find the first revision newer than the cutoff, within one chunk.
	below := min(oldest.Revision+compactChunk, limit)
	if below <= oldest.Revision {
		return false, nil
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
		return false, err
	}
	return true, nil
}
