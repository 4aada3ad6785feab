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
// one and a half to two timeouts (it may be declared down), and comes
// back by heartbeating in its old epoch or by registering again. Once
// the cluster has been quiet for a timeout (no fault active, the last one
// healed and recovered a timeout ago), one broker stops at once for a
// long silence: a broker that stops cleanly outside every fault window,
// whose declaration the liveness check judges. An
// observer reads ListBrokers and ListAssignments back to back every
// 300 ms, and a toggler flips a connector's desired state between
// RUNNING and STOPPED every few seconds. Everything is recorded in the
// broker history; CheckController judges it.

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
	// stoppedIn is the quietSince of the quiet period in which a broker
	// last stopped cleanly.
	stoppedIn atomic.Int64
	// final marks the observer's reads as final.
	final atomic.Bool

	mu sync.Mutex // guards the fields below
	// heartbeat and timeout as the controller announced them.
	heartbeat, timeout time.Duration
	// latest is the observer's latest pair of reads.
	latest *BrokerOp
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
			if !wait(ctx, 100*time.Millisecond) {
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
			op := s.RegisterBroker(ctx, id)
			if op.Outcome == OutcomeOK {
				epoch = op.Output.Epoch
				c.learn(op)
				return true
			}
			wait(ctx, 100*time.Millisecond)
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
		clean := c.chaos.Load() && c.cleanStop(timeout)
		if clean || c.chaos.Load() && tick.After(nextSilence) {
			long := clean || rng.IntN(2) == 0
			d := timeout / 3
			if long {
				d = jitter(rng, timeout*3/2, 2*timeout)
			}
			from := s.r.clock.Now()
			c.silence(ctx, d)
			s.Silence(id, epoch, from, s.r.clock.Now())
			if ctx.Err() != nil {
				return
			}
			if long && rng.IntN(2) == 0 && !register() {
				return
			}
			nextSilence = time.Now().Add(jitter(rng, 2*timeout, 4*timeout))
		}
		hb := s.Heartbeat(ctx, id, epoch)
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
		if !wait(ctx, max(heartbeat-time.Since(tick), 20*time.Millisecond)) {
			return
		}
	}
}

// cleanStop reports whether the calling broker is the one to stop now:
// the cluster has been quiet for d and no broker stopped in this quiet
// period yet.
func (c *controllerWorkload) cleanStop(d time.Duration) bool {
	q := c.quietSince.Load()
	if q == 0 || time.Since(time.Unix(0, q)) < d {
		return false
	}
	for {
		prev := c.stoppedIn.Load()
		if prev == q {
			return false
		}
		if c.stoppedIn.CompareAndSwap(prev, q) {
			return true
		}
	}
}

// silence waits d, or less if the chaos phase ends first.
func (c *controllerWorkload) silence(ctx context.Context, d time.Duration) {
	end := time.Now().Add(d)
	for c.chaos.Load() && time.Now().Before(end) {
		if !wait(ctx, min(100*time.Millisecond, time.Until(end))) {
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
		if !wait(ctx, 300*time.Millisecond) {
			return
		}
	}
}

// runToggler flips a connector's desired state every 1-3 s while the
// chaos phase lasts (an update based on a fresh read, with a new marker).
func (c *controllerWorkload) runToggler(ctx context.Context, s *BrokerSession) {
	rng := c.w.brokerRng(saltController, 1000)
	for ctx.Err() == nil && c.chaos.Load() {
		if !wait(ctx, jitter(rng, time.Second, 3*time.Second)) || !c.chaos.Load() {
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
			if !wait(ctx, 100*time.Millisecond) {
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

// settle waits until two observer reads in a row, made after since, show
// every connector assigned, or until deadline (run-clock times).
func (c *controllerWorkload) settle(ctx context.Context, clock *Clock, since, deadline int64) {
	streak := 0
	var last *BrokerOp
	for ctx.Err() == nil && clock.Now() < deadline {
		c.mu.Lock()
		op := c.latest
		c.mu.Unlock()
		if op != nil && op != last && op.Call >= since {
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
		wait(ctx, 50*time.Millisecond)
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
			wait(ctx, 100*time.Millisecond)
		}
	}
}
