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
// An idle group need not be scanned every interval: once a scan found
// nothing due, the next one waits until something is applied or the
// earliest time it saw comes due (expiry and change-log compaction each
// keep their own). While both are quiet the loop sleeps until then, or
// quietRounds intervals at most, instead of waking every interval (a
// ticker per group was a share of an idle node's CPU); it still scans at
// most once an interval.
func (g *group) runTimers(ctx context.Context) {
	interval := g.env.cfg.TimerInterval
	var lastCompact, lastScan time.Time
	t := time.NewTimer(interval)
	defer t.Stop()
	var expiry, compaction quietScan
	for {
		lastScan = time.Now()
		// Taken before the scans: an entry applied during them wakes
		// the next round.
		applied := g.fsm.AppliedChanged()
		now := g.env.cfg.Clock.Now().UnixNano()
		if g.kind == sm.KindData && expiry.due(g.fsm.AppliedIndex(), now) {
			at := g.fsm.AppliedIndex()
			next, quiet := g.expire(ctx, now)
			expiry.set(at, next, quiet)
		}
		if g.kind != sm.KindOffset && time.Since(lastCompact) > 10*interval {
			lastCompact = time.Now()
			if compaction.due(g.fsm.AppliedIndex(), now) {
				at := g.fsm.AppliedIndex()
				_, next, quiet := g.compactEvents(ctx)
				compaction.set(at, next, quiet)
			}
		}
		wait := interval
		quiet := (g.kind != sm.KindData || expiry.quiet) && (g.kind == sm.KindOffset || compaction.quiet)
		if quiet {
			wait = quietRounds * interval
			for _, next := range []int64{expiry.next, compaction.next} {
				if next != 0 {
					wait = min(wait, time.Duration(next-now))
				}
			}
			wait = max(wait, interval)
		} else {
			applied = nil // busy: scan every interval, as applies come
		}
		t.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-applied:
			// Something was applied: scan again, but not sooner than an
			// interval after the last scan.
			t.Stop()
			if d := interval - time.Since(lastScan); d > 0 {
				t.Reset(d)
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
			}
		}
	}
}

// quietRounds bounds, in timer intervals, how long a quiet group's timers
// sleep before they look again (whatever they saw).
const quietRounds = 10

// quietScan remembers that a leader's periodic scan of its group found
// nothing to do, so that the next scan can wait for a change: the group's
// state changes only through applied entries, and time makes something
// due only at the earliest time the scan saw.
type quietScan struct {
	quiet   bool
	applied uint64 // the applied index the quiet scan saw
	next    int64  // unix ns (Config.Clock) when something comes due; 0: nothing
}

// due reports whether a scan is needed at applied index and time now.
func (q *quietScan) due(applied uint64, now int64) bool {
	return !q.quiet || applied != q.applied || (q.next != 0 && now >= q.next)
}

// set records a scan's outcome: whether it found nothing to do (quiet),
// the applied index it started at and the earliest time it saw.
func (q *quietScan) set(applied uint64, next int64, quiet bool) {
	q.quiet, q.applied, q.next = quiet, applied, next
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
// bounded number of entries per call. It returns how many it proposed;
// when none (and nothing failed) it returns quiet, with the time (unix ns, 0: none) at which the oldest event comes
// due: until then only an applied entry can make a compaction due (an
// OldestEvent scan of every idle group every round was most of an idle
// leader's timer work).
func (g *group) compactEvents(ctx context.Context) (proposed int, next int64, quiet bool) {
	for n := range compactChunksPerRound {
		more, due, err := g.compactEventsChunk(ctx)
		if err != nil {
			g.log.Debug("propose compaction", "err", err)
			return n, 0, false
		}
		if !more {
			return n, due, n == 0
		}
	}
	return compactChunksPerRound, 0, false
}

// compactEventsChunk proposes the compaction of one chunk if something is
// due; it reports whether it proposed one and, when not, the time (unix ns)
// the oldest event comes due if it is only too young (0 otherwise).
func (g *group) compactEventsChunk(ctx context.Context) (proposed bool, due int64, err error) {
	oldest, err := g.fsm.OldestEvent()
	if err != nil || oldest == nil {
		return false, 0, err
	}
	rev := g.fsm.Revision()
	if rev <= g.env.cfg.EventRetentionMin {
		return false, 0, nil
	}
	limit := rev - g.env.cfg.EventRetentionMin // may compact below this
	cutoff := g.env.cfg.Clock.Now().Add(-g.env.cfg.EventRetention).UnixNano()
	if oldest.Event.AtUnixNano > cutoff {
		return false, oldest.Event.AtUnixNano + g.env.cfg.EventRetention.Nanoseconds(), nil
	}
	// Find the first revision newer than the cutoff, within one chunk.
	below := min(oldest.Revision+compactChunk, limit)
	if below <= oldest.Revision {
		return false, 0, nil
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
		return false, 0, err
	}
	return true, 0, nil
}
