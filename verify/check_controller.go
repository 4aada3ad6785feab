package verify

import (
	"cmp"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// CheckerController names the controller checker.
const CheckerController = "controller"

// The controller checker judges the controller workload's broker history
// (and the assignment watch, when there is one) against the controller's
// contract. Every read is a linearizable ListAssignments or ListBrokers,
// so a read that returned before another was called saw an earlier (or
// the same) state. It checks:
//
//   - epochs rise: a connector's assignment epoch seen by a read (or in
//     a report's response) is never below one a read that returned
//     earlier saw; along an assignment watch, epochs never go down;
//   - one owner per epoch: every observation of (connector, epoch) names
//     the same broker and broker epoch;
//   - nothing on a down broker: ListBrokers never shows a DOWN broker
//     with connectors, and when a ListAssignments and a ListBrokers read
//     the same revision (so the same state), every assigned connector's
//     broker is ALIVE in it with the assignment's broker epoch; the same
//     holds at every revision of the state replayed from the brokers and
//     assignments watches (both streams of metadata-0, merged by
//     revision, each revision's changes applied whole);
//   - fencing: a report is accepted only under the current epoch (never
//     one below what a read saw before the report was called; the
//     response shows the report's epoch and broker), and a report by the
//     owner under an epoch that reads before and after it both show
//     current is not rejected;
//   - bounded assignment: once the cluster healed (the last fault ended,
//     every silent broker came back, every connector's desired state was
//     last written, the last outage ended: see outages), every observer read called more than the session
//     timeout plus AssignSlack later shows every connector that should
//     run assigned;
//   - liveness: a broker that heartbeats on time is not declared down:
//     when a read shows a broker DOWN in an epoch it registered, it must
//     be possible that no acknowledged heartbeat of that epoch reached
//     the controller within the timeout before the declaration (which
//     happened after the last evidence of it ALIVE: a read, its
//     registration, an acknowledged heartbeat; see liveness). Brokers that
//     stopped (a silence) are judged: their declaration must come a
//     timeout after their last acknowledged heartbeat. Declarations near
//     a fault (up to a timeout after it ended: a paused or cut-off
//     controller gives grace), or right after a silence ended (decided
//     during it, applied after), are exempt.

// ControllerSettings are what the checker needs besides the history.
type ControllerSettings struct {
	// AssignSlack: see WorkloadConfig.AssignSlack.
	AssignSlack time.Duration
	// Faults of the run (Began, Ended on the run clock).
	Faults []Fault
}

// assignObs is an observation of a connector's assignment.
type assignObs struct {
	AssignmentValue
	call, ret int64
	src       string
}

// CheckController checks a broker history's controller workload. recs
// are the watch records (assignment watches are used when present). Each
// property is its own function (checkEpochs, checkOwners,
// checkDownBroker, checkFencing, checkAssignment, liveness); this one
// gathers their problems into one result.
func CheckController(bops []BrokerOp, recs []WatchRecord, set ControllerSettings) CheckResult {
	start := time.Now()
	r := CheckResult{Checker: CheckerController, Verdict: Valid}
	h := controllerFacts(bops)
	if len(h.brokers) == 0 {
		r.Verdict = Unknown
		r.Details = "no broker registered: nothing to check"
		return r
	}
	failing := map[string]bool{}
	var problems []string
	note := func(what string, ps []string) {
		if len(ps) > 0 {
			failing[what] = true
			problems = append(problems, ps...)
		}
	}
	note("epochs", h.checkEpochs(recs))
	note("owners", h.checkOwners(recs))
	down, replayed, pairs := h.checkDownBroker(recs)
	note("down broker", down)
	fencing, reports, rejected := h.checkFencing()
	note("fencing", fencing)
	asg := h.checkAssignment(set)
	note("late", asg.problems)
	downs, judged, lproblems := liveness(bops, h.brokers, set.Faults, h.timeout)
	note("liveness", lproblems)

	r.Ops = h.nobs
	r.Partitions = len(h.names)
	r.Judged, r.Total = judged, downs
	for w := range failing {
		r.Failing = append(r.Failing, w)
	}
	slices.Sort(r.Failing)
	details := []string{fmt.Sprintf("%d brokers, %d connectors, heartbeat %s, timeout %s; %d assignment observations, %d same-revision pairs, %d revisions replayed from the watches, %d reports (%d rejected); %d brokers seen declared down (%d judged, the others near a fault or the end of a silence); %d heartbeats or registrations unanswered (outages); healed at %s, %d reads after the bound",
		len(h.brokers), len(h.connectors), h.heartbeat, h.timeout, h.nobs, pairs, replayed, reports, rejected, downs, judged,
		len(h.outages), time.Duration(asg.healed).Round(time.Millisecond), asg.checked)}
	switch {
	case len(r.Failing) > 0:
		r.Verdict = Invalid
	case asg.checked == 0 && !asg.settled:
		r.Verdict = Unknown
		details = append(details, "no read after the assignment bound and the last read was not settled: cannot tell whether connectors were assigned in time")
	}
	r.Details = detailsWith(details, problems)
	r.Elapsed = time.Since(start)
	return r
}

// ctlFacts is what every controller property reads from a broker
// history: the run's brokers and connectors, the timing the controller
// gave, and every observation of an assignment.
type ctlFacts struct {
	bops                []BrokerOp
	brokers, connectors map[string]bool
	timeout, heartbeat  time.Duration
	obs                 map[string][]assignObs // per connector
	names               []string               // connectors observed, sorted
	nobs                int
	outages             []Fault // see outages
}

func controllerFacts(bops []BrokerOp) *ctlFacts {
	h := &ctlFacts{bops: bops, brokers: map[string]bool{}, connectors: map[string]bool{}, obs: map[string][]assignObs{}}
	for i := range bops {
		op := &bops[i]
		switch op.Kind {
		case OpRegister:
			h.brokers[op.Input.BrokerID] = true
			if op.Outcome == OutcomeOK {
				h.timeout = max(h.timeout, time.Duration(op.Output.TimeoutMs)*time.Millisecond)
				h.heartbeat = max(h.heartbeat, time.Duration(op.Output.HeartbeatMs)*time.Millisecond)
			}
		case OpResourceCreate:
			if op.Input.Resource.Kind == "connector" {
				h.connectors[op.Input.Resource.Name] = true
			}
		}
	}
	if h.timeout == 0 {
		h.timeout = 6 * time.Second
	}
	h.outages = outages(bops, h.brokers)
	for op, src := range okBrokerOps(bops) {
		switch op.Kind {
		case OpListAssignments:
			for _, a := range op.Output.Assignments {
				h.obs[a.Connector] = append(h.obs[a.Connector], assignObs{a, op.Call, op.Return, src})
			}
		case OpReport:
			if a := op.Output.Assignment; a != nil {
				h.obs[a.Connector] = append(h.obs[a.Connector], assignObs{*a, op.Call, op.Return, src})
			}
		}
	}
	h.names = slices.Sorted(mapKeys(h.obs))
	for _, c := range h.names {
		h.nobs += len(h.obs[c])
	}
	return h
}

// checkEpochs: a connector's epoch seen by a read (or a report's
// response) is never below one a read that returned earlier saw; along an
// assignment watch, epochs never go down.
func (h *ctlFacts) checkEpochs(recs []WatchRecord) []string {
	var problems []string
	for _, c := range h.names {
		os := slices.Clone(h.obs[c])
		slices.SortFunc(os, func(a, b assignObs) int { return cmp.Compare(a.ret, b.ret) })
		best := make([]int, len(os)) // index of the highest epoch among os[:i+1]
		for i := range os {
			best[i] = i
			if i > 0 && os[best[i-1]].Epoch > os[i].Epoch {
				best[i] = best[i-1]
			}
		}
		for _, b := range os {
			j := sort.Search(len(os), func(i int) bool { return os[i].ret >= b.call }) - 1
			if j >= 0 && os[best[j]].Epoch > b.Epoch {
				a := os[best[j]]
				problems = append(problems, fmt.Sprintf("connector %s: epoch went back from %d (%s) to %d (%s, called after)", c, a.Epoch, a.src, b.Epoch, b.src))
				break
			}
		}
	}
	for _, s := range segments(recs) {
		if s.space != "assignments" {
			continue
		}
		last := map[string]uint64{}
		for _, ev := range s.events {
			if ev.Type != "put" {
				continue
			}
			if ev.Epoch < last[ev.Key] {
				problems = append(problems, fmt.Sprintf("%s: connector %s epoch went back from %d to %d at revision %d", s.name, ev.Key, last[ev.Key], ev.Epoch, ev.Revision))
			}
			last[ev.Key] = max(last[ev.Key], ev.Epoch)
		}
	}
	return problems
}

// checkOwners: every observation of (connector, epoch) — reads, reports,
// assignment watches — names the same broker and broker epoch.
func (h *ctlFacts) checkOwners(recs []WatchRecord) []string {
	var problems []string
	type ce struct {
		c     string
		epoch uint64
	}
	owner := map[ce]assignObs{}
	noteOwner := func(o assignObs) {
		k := ce{o.Connector, o.Epoch}
		p, ok := owner[k]
		if !ok {
			owner[k] = o
			return
		}
		if p.Broker != o.Broker || p.BrokerEpoch != o.BrokerEpoch {
			problems = append(problems, fmt.Sprintf("connector %s epoch %d: owned by %s@%d (%s) and by %s@%d (%s)", o.Connector, o.Epoch,
				p.Broker, p.BrokerEpoch, p.src, o.Broker, o.BrokerEpoch, o.src))
		}
	}
	for _, c := range h.names {
		for _, o := range h.obs[c] {
			noteOwner(o)
		}
	}
	for _, s := range segments(recs) {
		if s.space != "assignments" {
			continue
		}
		for _, ev := range s.events {
			if ev.Type != "put" {
				continue
			}
			a := AssignmentValue{Connector: ev.Key, Broker: ev.Broker, BrokerEpoch: ev.BrokerEpoch, Epoch: ev.Epoch, State: ev.Status}
			noteOwner(assignObs{a, ev.at, ev.at, fmt.Sprintf("%s event at revision %d", s.name, ev.Revision)})
		}
	}
	return problems
}

// checkDownBroker: nothing on a down broker, at every revision the
// brokers and assignments watches cover, in every ListBrokers read, and
// in every ListAssignments read paired with a ListBrokers read of the same
// revision.
func (h *ctlFacts) checkDownBroker(recs []WatchRecord) (problems []string, replayed, pairs int) {
	replayed, problems = replay(recs)
	brokersAt := map[uint64]*BrokerOp{}
	for i := range h.bops {
		op := &h.bops[i]
		if op.Kind != OpListBrokers || op.Outcome != OutcomeOK {
			continue
		}
		brokersAt[op.Output.Revision] = op
		for _, b := range op.Output.Brokers {
			if b.Status == "DOWN" && b.Connectors > 0 {
				problems = append(problems, fmt.Sprintf("broker op %d: broker %s is DOWN at revision %d with %d connectors", op.Index, b.ID, op.Output.Revision, b.Connectors))
			}
		}
	}
	for i := range h.bops {
		op := &h.bops[i]
		if op.Kind != OpListAssignments || op.Outcome != OutcomeOK {
			continue
		}
		lb := brokersAt[op.Output.Revision]
		if lb == nil {
			continue
		}
		pairs++
		state := map[string]BrokerValue{}
		for _, b := range lb.Output.Brokers {
			state[b.ID] = b
		}
		for _, a := range op.Output.Assignments {
			if a.Broker == "" {
				continue
			}
			b, ok := state[a.Broker]
			if !ok || b.Status != "ALIVE" || b.Epoch != a.BrokerEpoch {
				problems = append(problems, fmt.Sprintf("revision %d (broker ops %d, %d): connector %s assigned to %s@%d, brokers show %s",
					op.Output.Revision, op.Index, lb.Index, a.Connector, a.Broker, a.BrokerEpoch, describeBroker(b, ok)))
			}
		}
	}
	return problems, replayed, pairs
}

// checkFencing: a report is accepted only under the current epoch, and a
// report by the owner under an epoch reads before and after it both show
// current is not rejected.
func (h *ctlFacts) checkFencing() (problems []string, reports, rejected int) {
	for i := range h.bops {
		op := &h.bops[i]
		if op.Kind != OpReport {
			continue
		}
		reports++
		c, e, b := op.Input.Connector, op.Input.Epoch, op.Input.BrokerID
		switch {
		case op.Outcome == OutcomeOK:
			if a := op.Output.Assignment; a == nil || a.Epoch != e || a.Broker != b {
				problems = append(problems, fmt.Sprintf("broker op %d: report by %s under epoch %d of %s accepted, response shows %v", op.Index, b, e, c, a))
			}
			for _, o := range h.obs[c] {
				if o.ret < op.Call && o.Epoch > e {
					problems = append(problems, fmt.Sprintf("broker op %d: report by %s under epoch %d of %s accepted after %s saw epoch %d", op.Index, b, e, c, o.src, o.Epoch))
					break
				}
			}
		case op.Outcome == OutcomeFail && (op.Reason == "STALE_EPOCH" || op.Code == "NotFound"):
			rejected++
			current := func(o assignObs) bool { return o.Epoch == e && o.Broker == b }
			before := slices.IndexFunc(h.obs[c], func(o assignObs) bool { return current(o) && o.ret < op.Call })
			after := slices.IndexFunc(h.obs[c], func(o assignObs) bool { return current(o) && o.call > op.Return })
			if before >= 0 && after >= 0 {
				problems = append(problems, fmt.Sprintf("broker op %d: report by %s under epoch %d of %s rejected (%s), though %s and %s show that epoch current before and after",
					op.Index, b, e, c, op.Reason, h.obs[c][before].src, h.obs[c][after].src))
			}
		}
	}
	return problems, reports, rejected
}

// assignment is what checkAssignment found: its problems, when the
// cluster healed, how many observer reads it checked past the bound, and
// whether the last observer read was settled.
type assignment struct {
	problems []string
	healed   int64
	checked  int
	settled  bool
}

// outages are the windows in which a broker of the run could not reach
// the cluster with no fault to blame: a heartbeat or registration whose
// outcome is unknown (the cluster did not answer within the call's
// deadline, as on a machine loaded far beyond the run). The broker's
// session may have expired in such a window, so its declaration down and
// the reassignment of its connectors are legitimate, and a controller
// whose writes did not go through could not assign: the liveness bounds
// (late, stuck) count from its end, as from a fault's. Silences, definite
// refusals and successes are not outages, nor is a call the harness
// abandoned when the run stopped (the cluster was not slow: the broker
// left, and nothing after it is judged).
func outages(bops []BrokerOp, brokers map[string]bool) []Fault {
	var out []Fault
	for i := range bops {
		op := &bops[i]
		if (op.Kind == OpHeartbeat || op.Kind == OpRegister) && op.Outcome == OutcomeUnknown && !op.Abandoned && brokers[op.Input.BrokerID] {
			out = append(out, Fault{Kind: "outage", Began: time.Duration(op.Call), Ended: time.Duration(op.Return)})
		}
	}
	return out
}

// movesHeal reports whether a broker's op moves the point from which the
// liveness bounds count to its return: a silence (the broker came back),
// a registration, or an outage (see outages). The controller workload
// settles its last reads past the latest of them (controllerWorkload.settle).
func movesHeal(op *BrokerOp) bool {
	switch {
	case op.Abandoned:
		return false
	case op.Kind == OpSilence, op.Kind == OpRegister:
		return true
	}
	return op.Kind == OpHeartbeat && op.Outcome == OutcomeUnknown
}

// checkAssignment: once the cluster healed (the last fault ended, every
// silent broker came back, every connector's desired state was last
// written), every observer read called more than the session timeout
// plus AssignSlack later shows every connector that should run assigned;
// and during the chaos too, no connector stays unassigned longer than
// that while the cluster is whole and some broker is alive (stuck).
func (h *ctlFacts) checkAssignment(set ControllerSettings) assignment {
	var out assignment
	for _, f := range set.Faults {
		out.healed = max(out.healed, int64(f.Ended))
	}
	// desired[c]: when the connector's desired state was written or read,
	// and what it was, in history order (which is return order).
	const stateUnknown = "?"
	type want struct {
		at    int64
		state string
	}
	desired := map[string][]want{}
	for i := range h.bops {
		op := &h.bops[i]
		switch op.Kind {
		case OpSilence, OpRegister, OpHeartbeat:
			if h.brokers[op.Input.BrokerID] && movesHeal(op) {
				out.healed = max(out.healed, op.Return)
			}
		case OpResourceCreate, OpResourceUpdate:
			if h.connectors[op.Input.Resource.Name] && op.Outcome != OutcomeFail {
				out.healed = max(out.healed, op.Return)
				if op.Outcome == OutcomeOK {
					desired[op.Input.Resource.Name] = append(desired[op.Input.Resource.Name], want{op.Return, op.Input.Resource.Desired})
				} else {
					// Outcome unknown: it may have taken effect at any
					// moment from its call on, so the desired state is
					// unknown until a later write or read says it.
					desired[op.Input.Resource.Name] = append(desired[op.Input.Resource.Name], want{op.Call, stateUnknown})
				}
			}
		case OpResourceGet:
			// A read shows the desired state too (after an update whose
			// outcome was unknown, it is the only word on it).
			if h.connectors[op.Input.Resource.Name] && op.Outcome == OutcomeOK && op.Output.Resource != nil {
				desired[op.Input.Resource.Name] = append(desired[op.Input.Resource.Name], want{op.Return, op.Output.Resource.Desired})
			}
		case OpResourceDelete:
			if h.connectors[op.Input.Resource.Name] && op.Outcome != OutcomeFail {
				// Deleted (the cleanup), or maybe: nothing is expected from
				// its call on.
				desired[op.Input.Resource.Name] = append(desired[op.Input.Resource.Name], want{op.Call, ""})
			}
		}
	}
	// shouldRun: the connector's desired state, as last known before t,
	// is RUNNING (not unknown).
	shouldRun := func(c string, t int64) bool {
		state := ""
		for _, w := range desired[c] {
			if w.at < t {
				state = w.state
			}
		}
		return state == "RUNNING"
	}
	bound := out.healed + int64(h.timeout+set.AssignSlack)
	var lastObserver *BrokerOp
	for i := range h.bops {
		op := &h.bops[i]
		if op.Kind != OpListAssignments || op.Input.BrokerID != "" || op.Outcome != OutcomeOK || op.Call < out.healed {
			continue
		}
		if lastObserver == nil || op.Call > lastObserver.Call {
			lastObserver = op
		}
		if op.Call < bound {
			continue
		}
		out.checked++
		assigned := map[string]bool{}
		for _, a := range op.Output.Assignments {
			assigned[a.Connector] = a.Broker != ""
		}
		for _, c := range slices.Sorted(mapKeys(h.connectors)) {
			if shouldRun(c, op.Call) && !assigned[c] {
				out.problems = append(out.problems, fmt.Sprintf("broker op %d: connector %s unassigned %s after the cluster healed (bound %s)", op.Index, c,
					time.Duration(op.Call-out.healed).Round(time.Millisecond), h.timeout+set.AssignSlack))
				break
			}
		}
	}
	out.settled = lastObserver != nil && out.checked == 0 &&
		settledLast(lastObserver, h.connectors, func(c string) bool { return shouldRun(c, lastObserver.Call) })
	out.problems = append(out.problems, stuck(h.bops, h.connectors, h.brokers, append(slices.Clip(set.Faults), h.outages...), h.timeout, h.timeout+set.AssignSlack, shouldRun)...)
	return out
}

func describeBroker(b BrokerValue, ok bool) string {
	if !ok {
		return "no such broker"
	}
	return fmt.Sprintf("%s@%d %s", b.ID, b.Epoch, b.Status)
}

// settledLast reports whether the read shows every connector that should
// run assigned.
func settledLast(op *BrokerOp, connectors map[string]bool, shouldRun func(string) bool) bool {
	assigned := map[string]bool{}
	for _, a := range op.Output.Assignments {
		assigned[a.Connector] = a.Broker != ""
	}
	for c := range connectors {
		if shouldRun(c) && !assigned[c] {
			return false
		}
	}
	return true
}

// liveness finds brokers declared down although acknowledged heartbeats
// leave no moment for the declaration. It also counts the declarations
// seen (first DOWN per broker epoch) and those judged (not exempt).
//
// For a read D showing a broker DOWN in epoch e, the declaration that D
// sees came after the latest evidence of the broker ALIVE in e that
// completed before D was called: a read showing it ALIVE (from its call),
// its registration, or an acknowledged heartbeat (from its call: the
// controller answers a heartbeat of a DOWN broker by declaring it ALIVE
// again, so after the heartbeat was handled any DOWN needs a new
// declaration). The declaration is then impossible at any moment within
// the timeout after the call of a heartbeat the controller had handled by
// then: from the heartbeat's return on, or from that evidence on for the
// heartbeat that is the evidence. (A declaration is applied a little
// after the controller decided it; a fault within a timeout of the
// window, or evidence from the first timeout after a silence ended,
// exempts it, which covers that lag unless the proposal took longer than
// the timeout.)
func liveness(bops []BrokerOp, brokers map[string]bool, faults []Fault, timeout time.Duration) (downs, judged int, problems []string) {
	type key struct {
		broker string
		epoch  uint64
	}
	// alive: evidence of a broker epoch ALIVE, [call, return]; beats: the
	// acknowledged heartbeats and registrations, which also cover.
	alive := map[key][][2]int64{}
	beats := map[key][][2]int64{}
	var silences []BrokerOp
	var reads []*BrokerOp
	for i := range bops {
		op := &bops[i]
		switch {
		case op.Kind == OpHeartbeat && op.Outcome == OutcomeOK && op.Output.Status == "ALIVE":
			k := key{op.Input.BrokerID, op.Input.Epoch}
			beats[k] = append(beats[k], [2]int64{op.Call, op.Return})
			alive[k] = append(alive[k], [2]int64{op.Call, op.Return})
		case op.Kind == OpRegister && op.Outcome == OutcomeOK:
			// The controller hears from a broker when it registers, too.
			k := key{op.Input.BrokerID, op.Output.Epoch}
			beats[k] = append(beats[k], [2]int64{op.Call, op.Return})
			alive[k] = append(alive[k], [2]int64{op.Call, op.Return})
		case op.Kind == OpSilence:
			silences = append(silences, *op)
		case op.Kind == OpListBrokers && op.Outcome == OutcomeOK:
			reads = append(reads, op)
			for _, b := range op.Output.Brokers {
				if b.Status == "ALIVE" {
					k := key{b.ID, b.Epoch}
					alive[k] = append(alive[k], [2]int64{op.Call, op.Return})
				}
			}
		}
	}
	// A declaration near a fault is exempt. So is one whose interval
	// begins with evidence from the first timeout after a silence ended
	// (a heartbeat, a read showing the broker ALIVE): the controller may
	// have decided it during the silence and applied it after that
	// evidence. A declaration during a silence (a broker that stopped) is
	// judged.
	exempt := func(b string, lo, hi int64) bool {
		for _, f := range faults {
			if int64(f.Began) <= hi && int64(f.Ended)+int64(timeout) >= lo {
				return true
			}
		}
		for _, s := range silences {
			if s.Input.BrokerID == b && lo >= s.Return && lo <= s.Return+int64(timeout) {
				return true
			}
		}
		return false
	}
	slices.SortFunc(reads, func(a, b *BrokerOp) int { return cmp.Compare(a.Call, b.Call) })
	reported := map[key]bool{}
	seen := map[key]bool{}
	for _, op := range reads {
		for _, b := range op.Output.Brokers {
			k := key{b.ID, b.Epoch}
			if !brokers[b.ID] || b.Status == "ALIVE" || reported[k] || len(alive[k]) == 0 {
				continue
			}
			lo := int64(-1)
			for _, a := range alive[k] {
				if a[1] < op.Call {
					lo = max(lo, a[0])
				}
			}
			if lo < 0 {
				continue // no evidence of this epoch ALIVE before the read
			}
			first := !seen[k]
			seen[k] = true
			if first {
				downs++
			}
			// The declaration the read sees happened in (lo, hi].
			hi := op.Return
			if exempt(b.ID, lo, hi) {
				continue
			}
			if first {
				judged++
			}
			if covered(beats[k], lo, hi, int64(timeout)) {
				reported[k] = true
				problems = append(problems, fmt.Sprintf("broker op %d: broker %s epoch %d DOWN, declared in [%s, %s] while its acknowledged heartbeats leave no moment without one in the last %s",
					op.Index, b.ID, b.Epoch, time.Duration(lo).Round(time.Millisecond), time.Duration(hi).Round(time.Millisecond), timeout))
			}
		}
	}
	return downs, judged, problems
}

// livenessMargin is taken off each heartbeat's cover, for the
// controller's clock and the run clock (an eighth of short timeouts).
// Strictly none is needed: the controller stamps a heartbeat when it
// handles it, after the call started, and declares a broker down only
// when more than the timeout passed since.
const livenessMargin = 250 * time.Millisecond

// covered reports whether every moment t of [lo, hi] has an acknowledged
// heartbeat h with h.return <= t <= h.call + timeout (less a margin; from
// lo on for the heartbeat called at lo, the evidence): at any such t the
// controller had heard from the broker within the timeout, so it could
// not declare it down.
func covered(beats [][2]int64, lo, hi, timeout int64) bool {
	iv := make([][2]int64, 0, len(beats))
	for _, b := range beats {
		from := b[1]
		if b[0] == lo {
			from = lo // the heartbeat that is the evidence covers from it
		}
		if end := b[0] + timeout - min(int64(livenessMargin), timeout/8); from <= end {
			iv = append(iv, [2]int64{from, end})
		}
	}
	slices.SortFunc(iv, func(a, b [2]int64) int { return cmp.Compare(a[0], b[0]) })
	at := lo
	for _, x := range iv {
		if x[0] > at {
			break
		}
		at = max(at, x[1])
		if at >= hi {
			return true
		}
	}
	return at >= hi
}

// stuck finds connectors that two observer reads, more than bound apart,
// show unassigned in the same state (the same unassigned epoch, or no
// assignment at all), with no excuse in between: no fault (or its
// aftermath, a timeout long), no change of the desired state, and some
// broker of the run ALIVE in every ListBrokers read of the interval. The
// same unassigned epoch in both reads means no assignment was made in
// between (each one takes a new epoch).
func stuck(bops []BrokerOp, connectors, brokers map[string]bool, faults []Fault, timeout, bound time.Duration,
	shouldRun func(string, int64) bool) []string {
	type seen struct {
		op    *BrokerOp
		epoch uint64 // 0: no assignment at all
	}
	var reads, lists []*BrokerOp
	for op := range okBrokerOps(bops) {
		switch {
		case op.Kind == OpListAssignments && op.Input.BrokerID == "":
			reads = append(reads, op)
		case op.Kind == OpListBrokers:
			lists = append(lists, op)
		}
	}
	byCall := func(a, b *BrokerOp) int { return cmp.Compare(a.Call, b.Call) }
	slices.SortFunc(reads, byCall)
	slices.SortFunc(lists, byCall)
	excused := func(c string, a, b *BrokerOp) bool {
		for _, f := range faults {
			if int64(f.Began) <= b.Call && int64(f.Ended)+int64(timeout) >= a.Call {
				return true
			}
		}
		if !shouldRun(c, a.Call) || !shouldRun(c, a.Return) || !shouldRun(c, b.Call) {
			return true
		}
		for i := range bops {
			op := &bops[i]
			if (op.Kind == OpResourceUpdate || op.Kind == OpResourceCreate || op.Kind == OpResourceDelete) &&
				op.Input.Resource.Name == c && op.Outcome != OutcomeFail && op.Call <= b.Call && op.Return >= a.Call {
				return true
			}
		}
		for _, l := range lists {
			if l.Return < a.Call || l.Call > b.Return {
				continue
			}
			if !slices.ContainsFunc(l.Output.Brokers, func(v BrokerValue) bool { return brokers[v.ID] && v.Status == "ALIVE" }) {
				return true
			}
		}
		return false
	}
	var problems []string
	for _, c := range slices.Sorted(mapKeys(connectors)) {
		var first *seen
		for _, op := range reads {
			cur := &seen{op: op}
			assigned := false
			for _, a := range op.Output.Assignments {
				if a.Connector == c {
					cur.epoch, assigned = a.Epoch, a.Broker != ""
				}
			}
			if assigned {
				first = nil
				continue
			}
			if first == nil || first.epoch != cur.epoch {
				first = cur
				continue
			}
			if time.Duration(op.Call-first.op.Return) > bound && !excused(c, first.op, op) {
				problems = append(problems, fmt.Sprintf("connector %s unassigned (epoch %d) from broker op %d to broker op %d (%s) with brokers alive and no fault",
					c, cur.epoch, first.op.Index, op.Index, time.Duration(op.Call-first.op.Return).Round(time.Millisecond)))
				break
			}
		}
	}
	return problems
}

// replay merges the first segment of the brokers watch and of the
// assignments watch (both metadata-0, so one revision sequence) and
// replays them revision by revision, up to the revision both have
// delivered in full. After each revision every connector the run follows
// that is assigned to a broker the run follows must have that broker
// ALIVE in the assignment's broker epoch. The run's brokers register and
// its connectors are created after the watches start, so the replay has
// their whole history. It returns the number of revisions replayed.
func replay(recs []WatchRecord) (int, []string) {
	var bs, as *segment
	for _, s := range segments(recs) {
		switch {
		case s.space == "brokers" && bs == nil:
			bs = s
		case s.space == "assignments" && as == nil:
			as = s
		}
	}
	if bs == nil || as == nil {
		return 0, nil
	}
	const g = "metadata-0"
	hi := min(bs.hi[g], as.hi[g])
	type broker struct {
		epoch  uint64
		status string
	}
	brokers := map[string]broker{}
	assigns := map[string]WatchEvent{}
	var evs []recvEvent
	for _, s := range []*segment{bs, as} {
		for _, ev := range s.events {
			if strings.HasPrefix(ev.Key, s.prefix) && ev.Group == g && ev.Revision <= hi {
				ev.Kind = s.space // which stream it came from
				evs = append(evs, ev)
			}
		}
	}
	slices.SortStableFunc(evs, func(a, b recvEvent) int { return cmp.Compare(a.Revision, b.Revision) })
	var problems []string
	revisions := 0
	for i := 0; i < len(evs); {
		r := evs[i].Revision
		for ; i < len(evs) && evs[i].Revision == r; i++ {
			ev := evs[i]
			switch {
			case ev.Kind == "brokers" && ev.Type == "put":
				brokers[ev.Key] = broker{ev.Epoch, ev.Status}
			case ev.Kind == "brokers":
				delete(brokers, ev.Key)
			case ev.Type == "put":
				assigns[ev.Key] = ev.WatchEvent
			default:
				delete(assigns, ev.Key)
			}
		}
		revisions++
		for _, c := range slices.Sorted(mapKeys(assigns)) {
			a := assigns[c]
			b, ok := brokers[a.Broker]
			if a.Broker == "" || !ok || (b.status == "ALIVE" && b.epoch == a.BrokerEpoch) {
				continue
			}
			problems = append(problems, fmt.Sprintf("revision %d (watches): connector %s assigned to %s@%d while the broker is %s@%d",
				r, c, a.Broker, a.BrokerEpoch, b.status, b.epoch))
			if len(problems) >= 10 {
				return revisions, problems
			}
		}
	}
	return revisions, problems
}
