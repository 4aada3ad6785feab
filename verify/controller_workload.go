package verify

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// The controller workload: simulated brokers that register, heartbeat at
// the interval the controller returns, learn their assignments through
// linearizable ListAssignments and report each connector RUNNING under
// its assignment epoch (now and then also under an epoch they know is
// stale, which must be rejected); every few session timeouts a broker
// falls silent, for a third of the timeout (it must stay alive) or for
// one and a half to two timeouts (it may be declared down; a clean stop,
// below, two and a half to three), and comes
// back by heartbeating in its old epoch or by registering again. Long
// silences happen only where their declaration can be judged: once the
// cluster has been quiet for a timeout (no fault active, the last one
// healed and recovered a timeout ago), and the next fault is held back
// until they end (hold); elsewhere a broker falls silent only briefly,
// and the declarations the faults themselves cause (brokers cut off from
// the cluster) are the ones caught in faults. In each quiet period two
// brokers (all but one) also stop at once for a long silence. An observer reads
// ListBrokers and ListAssignments back to back every 300 ms, and a
// toggler flips a connector's desired state between RUNNING and STOPPED
// every few seconds. Everything is recorded in the broker history;
// CheckController judges it.

// Connector resources of a run: "<prefix>-c<i>"; brokers "<prefix>-b<i>".
func connectorNames(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-c%d", prefix, i)
	}
	return out
}

func brokerNames(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-b%d", prefix, i)
	}
	return out
}

// controllerWorkload runs the simulated brokers, the observer and the
// toggler of one run.
type controllerWorkload struct {
	w          *Workload
	connectors []string
	brokers    []string
	// chaos is true while brokers may fall silent and the toggler runs.
	chaos atomic.Bool
	// quietSince is when the cluster last became quiet (no fault active,
	// the last one healed and recovered), in Unix nanoseconds; 0 while a
	// fault is active. Run sets it (see brokerRun.faultPhase).
	quietSince atomic.Int64
	// final marks the observer's reads as final.
	final atomic.Bool

	mu sync.Mutex // guards the fields below
	// heartbeat and timeout as the controller announced them.
	heartbeat, timeout time.Duration
	// longUntil is when the long silences begun so far end, plus
	// declareSettle; holding is set while the runner holds the next fault
	// back (hold), until it is injected (release): no long silence begins
	// then.
	longUntil time.Time
	holding   bool
	// stoppedIn is the quietSince of the quiet period in which brokers
	// last stopped cleanly, and stopped how many did then.
	stoppedIn int64
	stopped   int
	// latest is the observer's latest pair of reads.
	latest *BrokerOp
	// healed is the latest return (run clock) of a broker op that moves
	// the checker's liveness bounds (movesHeal): settle counts reads
	// made after it only.
	healed int64
}

// note records a broker op's return when it moves the liveness bounds.
func (c *controllerWorkload) note(op BrokerOp) BrokerOp {
	if movesHeal(&op) {
		c.mu.Lock()
		c.healed = max(c.healed, op.Return)
		c.mu.Unlock()
	}
	return op
}

func newControllerWorkload(w *Workload) *controllerWorkload {
	c := &controllerWorkload{w: w, connectors: connectorNames(w.cfg.Prefix, w.cfg.Connectors),
		brokers: brokerNames(w.cfg.Prefix, w.cfg.Brokers), heartbeat: 2 * time.Second, timeout: 6 * time.Second}
	c.chaos.Store(true)
	c.quietSince.Store(time.Now().UnixNano())
	return c
}

// Timeout returns the session timeout the controller announced (6s until
// a broker registered).
func (c *controllerWorkload) Timeout() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.timeout
}

func (c *controllerWorkload) learn(op BrokerOp) {
	if op.Outcome != OutcomeOK || op.Output.HeartbeatMs == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.heartbeat = time.Duration(op.Output.HeartbeatMs) * time.Millisecond
	c.timeout = time.Duration(op.Output.TimeoutMs) * time.Millisecond
}

func (c *controllerWorkload) timing() (heartbeat, timeout time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.heartbeat, c.timeout
}

// setup creates the connector resources, desired RUNNING, each with a
// unique marker. A create with an unknown outcome is settled by reading
// the resource back.
func (c *controllerWorkload) setup(ctx context.Context, s *BrokerSession) error {
	for _, name := range c.connectors {
		for {
			r := ResourceValue{Kind: "connector", Name: name, Marker: s.NextValue(), Desired: "RUNNING"}
			op := s.CreateResource(ctx, r)
			if op.Outcome == OutcomeOK {
				break
			}
			if op.Outcome == OutcomeUnknown || op.Code == "AlreadyExists" {
				if g := s.GetResource(ctx, "connector", name); g.Outcome == OutcomeOK && g.Output.Resource != nil {
					break
				}
			}
			if !Sleep(ctx, 100*time.Millisecond) {
				return fmt.Errorf("verify: create connector %s: %w", name, ctx.Err())
			}
		}
	}
	return nil
}

// runBroker is one simulated broker, until ctx ends.
func (c *controllerWorkload) runBroker(ctx context.Context, s *BrokerSession, idx int) {
	id := c.brokers[idx]
	rng := c.w.brokerRng(saltController, idx)
	var epoch uint64
	register := func() bool {
		for ctx.Err() == nil {
			op := c.note(s.RegisterBroker(ctx, id))
			if op.Outcome == OutcomeOK {
				epoch = op.Output.Epoch
				c.learn(op)
				return true
			}
			Sleep(ctx, 100*time.Millisecond)
		}
		return false
	}
	if !register() {
		return
	}
	reported := map[string]uint64{} // connector → epoch reported RUNNING
	stale := map[string]uint64{}    // connector → an epoch it had before its current one
	current := map[string]uint64{}  // connector → the latest epoch seen
	sentStale := false
	_, timeout := c.timing()
	nextSilence := time.Now().Add(jitter(rng, 2*timeout, 4*timeout))
	for ctx.Err() == nil {
		tick := time.Now()
		heartbeat, timeout := c.timing()
		long, silent, clean := false, false, false
		if c.chaos.Load() {
			clean = c.beginLong(timeout, true)
			long = clean
			if !long && tick.After(nextSilence) {
				silent = true
				long = rng.IntN(2) == 0 && c.beginLong(timeout, false)
			}
		}
		if long || silent {
			d := timeout / 3
			if long {
				lo, hi := longSilence(timeout, clean)
				d = jitter(rng, lo, hi)
			}
			from := s.r.clock.Now()
			c.silence(ctx, d)
			c.note(s.Silence(id, epoch, from, s.r.clock.Now()))
			if ctx.Err() != nil {
				return
			}
			if long && rng.IntN(2) == 0 && !register() {
				return
			}
			nextSilence = time.Now().Add(jitter(rng, 2*timeout, 4*timeout))
		}
		hb := c.note(s.Heartbeat(ctx, id, epoch))
		if hb.Outcome == OutcomeFail && (hb.Reason == "STALE_EPOCH" || hb.Code == "NotFound") && !register() {
			return
		}
		la := s.ListAssignments(ctx, id)
		if la.Outcome == OutcomeOK {
			for _, a := range la.Output.Assignments {
				if prev := current[a.Connector]; prev != 0 && prev < a.Epoch {
					stale[a.Connector] = prev
				}
				current[a.Connector] = max(current[a.Connector], a.Epoch)
				if a.Broker != id || a.BrokerEpoch != epoch || reported[a.Connector] == a.Epoch {
					continue
				}
				if op := s.Report(ctx, id, a.Connector, a.Epoch, "RUNNING", false); op.Outcome == OutcomeOK {
					reported[a.Connector] = a.Epoch
				}
			}
		}
		// The first stale epoch a broker learns is reported at once (a
		// run may see few reassignments), later ones one round in ten.
		if len(stale) > 0 && (!sentStale || rng.IntN(10) == 0) {
			sentStale = true
			names := slices.Sorted(mapKeys(stale))
			name := names[rng.IntN(len(names))]
			s.Report(ctx, id, name, stale[name], "RUNNING", true)
		}
		if !Sleep(ctx, max(heartbeat-time.Since(tick), 20*time.Millisecond)) {
			return
		}
	}
}

// declareSettle is how long after a long silence the next fault stays
// held: the observer's next read (every 300 ms) sees the declaration.
const declareSettle = time.Second

// quietFor reports whether the cluster has been quiet for d.
func (c *controllerWorkload) quietFor(d time.Duration) bool {
	q := c.quietSince.Load()
	return q != 0 && time.Since(time.Unix(0, q)) >= d
}

// beginLong reports whether the calling broker may fall silent for long
// now (then the next fault waits until it ended): only where its
// declaration can be judged, the cluster quiet for timeout and no fault
// held back. clean asks to be one of the quiet period's clean stops,
// which only the first cleanStops brokers to ask get. Otherwise it falls
// silent only briefly, or not at all.
func (c *controllerWorkload) beginLong(timeout time.Duration, clean bool) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	q := c.quietSince.Load()
	if c.holding || !c.quietFor(timeout) || clean && c.stoppedIn == q && c.stopped >= c.cleanStops() {
		return false
	}
	if clean {
		if c.stoppedIn != q {
			c.stoppedIn, c.stopped = q, 0
		}
		c.stopped++
	}
	c.reserveLong(timeout, clean)
	return true
}

// longSilence bounds a long silence: a clean stop lasts long enough that
// its declaration is all but certain (the controller declares a broker a
// timeout after its last heartbeat, give or take its sweep, the proposal,
// and a new controller's grace after a fault: stops of one and a half to
// two timeouts often ended first, and left nothing to judge); any other
// lasts one and a half to two timeouts, where a declaration may come or
// not.
func longSilence(timeout time.Duration, clean bool) (lo, hi time.Duration) {
	if clean {
		return timeout * 5 / 2, 3 * timeout
	}
	return timeout * 3 / 2, 2 * timeout
}

// reserveLong holds the next fault for a long silence beginning now.
// c.mu is held.
func (c *controllerWorkload) reserveLong(timeout time.Duration, clean bool) {
	_, longest := longSilence(timeout, clean)
	if end := time.Now().Add(longest + declareSettle); end.After(c.longUntil) {
		c.longUntil = end
	}
}

// cleanStops is how many brokers stop cleanly in each quiet period: two
// of the three a run has by default (all but one, so that a live broker
// takes their connectors over). Each is a declaration the liveness check
// judges; the faults' own declarations it cannot (a broker cut off by a
// fault may be declared down or not), so a quiet period with one stop
// left about a third of a suite's declarations unjudged.
func (c *controllerWorkload) cleanStops() int { return max(min(2, len(c.brokers)-1), 1) }

// hold keeps the next fault back so that each quiet period holds its
// clean stops, whose declarations can be judged: it waits (at most until
// two heartbeats and a second after the period became old enough) for
// the brokers to stop cleanly, then until every long silence begun has ended
// and declareSettle passed; no long silence begins from then until the
// fault is injected (release). It returns early when ctx ends.
func (c *controllerWorkload) hold(ctx context.Context) {
	heartbeat, timeout := c.timing()
	if q := c.quietSince.Load(); q != 0 && c.chaos.Load() {
		deadline := time.Unix(0, q).Add(timeout + 2*heartbeat + time.Second)
		for time.Now().Before(deadline) && !c.stoppedSince(q) {
			if !Sleep(ctx, 20*time.Millisecond) {
				return
			}
		}
	}
	c.mu.Lock()
	c.holding = true
	until := c.longUntil
	c.mu.Unlock()
	if d := time.Until(until); d > 0 {
		Sleep(ctx, d)
	}
}

// stoppedSince reports whether the quiet period that began at q had its
// clean stops.
func (c *controllerWorkload) stoppedSince(q int64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stoppedIn == q && c.stopped >= c.cleanStops()
}

// release ends a hold: the fault it held back has begun.
func (c *controllerWorkload) release() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.holding = false
}

// silence waits d, or less if the chaos phase ends first.
func (c *controllerWorkload) silence(ctx context.Context, d time.Duration) {
	end := time.Now().Add(d)
	for c.chaos.Load() && time.Now().Before(end) {
		if !Sleep(ctx, min(100*time.Millisecond, time.Until(end))) {
			return
		}
	}
}

func jitter(rng *rand.Rand, lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	return lo + time.Duration(rng.Int64N(int64(hi-lo)))
}

// runObserver reads ListBrokers and ListAssignments back to back every
// 300 ms until ctx ends.
func (c *controllerWorkload) runObserver(ctx context.Context, s *BrokerSession) {
	for ctx.Err() == nil {
		s.SetFinal(c.final.Load())
		s.ListBrokers(ctx)
		op := s.ListAssignments(ctx, "")
		if op.Outcome == OutcomeOK {
			c.mu.Lock()
			c.latest = &op
			c.mu.Unlock()
		}
		if !Sleep(ctx, 300*time.Millisecond) {
			return
		}
	}
}

// runToggler flips a connector's desired state every 1-3 s while the
// chaos phase lasts (an update based on a fresh read, with a new marker).
func (c *controllerWorkload) runToggler(ctx context.Context, s *BrokerSession) {
	rng := c.w.brokerRng(saltController, 1000)
	for ctx.Err() == nil && c.chaos.Load() {
		if !Sleep(ctx, jitter(rng, time.Second, 3*time.Second)) || !c.chaos.Load() {
			return
		}
		name := c.connectors[rng.IntN(len(c.connectors))]
		g := s.GetResource(ctx, "connector", name)
		if g.Outcome != OutcomeOK || g.Output.Resource == nil {
			continue
		}
		desired := "STOPPED"
		if g.Output.Resource.Desired == "STOPPED" {
			desired = "RUNNING"
		}
		s.UpdateResource(ctx, ResourceValue{Kind: "connector", Name: name, Marker: s.NextValue(), Desired: desired}, g.Output.Resource.ModRevision)
	}
}

// restore sets every connector's desired state back to RUNNING (after the
// chaos phase): read, and update when it is not RUNNING, until a read
// shows RUNNING.
func (c *controllerWorkload) restore(ctx context.Context, s *BrokerSession) bool {
	for _, name := range c.connectors {
		for {
			g := s.GetResource(ctx, "connector", name)
			if g.Outcome == OutcomeOK && g.Output.Resource != nil {
				if g.Output.Resource.Desired == "RUNNING" {
					break
				}
				s.UpdateResource(ctx, ResourceValue{Kind: "connector", Name: name, Marker: s.NextValue(), Desired: "RUNNING"}, g.Output.Resource.ModRevision)
				continue
			}
			if !Sleep(ctx, 100*time.Millisecond) {
				return false
			}
		}
	}
	return true
}

// settled reports whether a list-assignments read shows every connector
// of the run assigned to a broker.
func (c *controllerWorkload) settledRead(op *BrokerOp) bool {
	if op == nil || op.Outcome != OutcomeOK {
		return false
	}
	owned := map[string]bool{}
	for _, a := range op.Output.Assignments {
		owned[a.Connector] = a.Broker != ""
	}
	for _, name := range c.connectors {
		if !owned[name] {
			return false
		}
	}
	return true
}

// settle waits until two observer reads in a row, made after since and
// after the latest op of a broker that moves the checker's liveness
// bounds (a registration, the end of a silence, an outage: c.healed),
// show every connector assigned, or until deadline (run-clock times).
// Such an op while it waits moves the deadline on by as much, up to
// three times the wait first given: a read before it could not be
// judged.
func (c *controllerWorkload) settle(ctx context.Context, clock *Clock, since, deadline int64) {
	streak := 0
	var last *BrokerOp
	span, counted := deadline-since, since
	for ctx.Err() == nil {
		c.mu.Lock()
		op, from := c.latest, max(since, c.healed)
		c.mu.Unlock()
		if now := clock.Now(); now >= min(max(deadline, from+span), since+3*span) {
			return
		}
		if from != counted {
			streak, counted = 0, from // reads before from do not count
		}
		if op != nil && op != last && op.Call >= from {
			last = op
			if c.settledRead(op) {
				streak++
			} else {
				streak = 0
			}
			if streak >= 2 {
				return
			}
		}
		Sleep(ctx, 50*time.Millisecond)
	}
}

// cleanup deletes the run's connectors, so that they do not linger on a
// cluster that serves more runs.
func (c *controllerWorkload) cleanup(ctx context.Context, s *BrokerSession) {
	for _, name := range c.connectors {
		for range 20 {
			op := s.DeleteResource(ctx, "connector", name)
			if op.Outcome == OutcomeOK || op.Code == "NotFound" || ctx.Err() != nil {
				break
			}
			Sleep(ctx, 100*time.Millisecond)
		}
	}
}
