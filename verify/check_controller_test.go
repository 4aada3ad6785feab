package verify

import (
	"strings"
	"testing"
	"time"
)

// ctlHistory builds broker histories for the controller checker, with
// times in milliseconds.
type ctlHistory struct{ ops []BrokerOp }

func ms(n int) int64 { return int64(time.Duration(n) * time.Millisecond) }

func (h *ctlHistory) add(kind BrokerOpKind, in BrokerInput, out *BrokerOutput, call, ret int) *BrokerOp {
	op := BrokerOp{Index: len(h.ops), Client: len(h.ops), Process: len(h.ops), Kind: kind, Input: in, Output: out,
		Call: ms(call), Return: ms(ret), Outcome: OutcomeOK}
	if out == nil {
		op.Outcome = OutcomeFail
	}
	h.ops = append(h.ops, op)
	return &h.ops[len(h.ops)-1]
}

// silence makes broker stop heartbeating in [from, to] (its heartbeats
// called then are dropped) and records the silence.
func silence(h *ctlHistory, broker string, from, to int) {
	kept := h.ops[:0]
	for _, op := range h.ops {
		if op.Kind == OpHeartbeat && op.Input.BrokerID == broker && op.Call >= ms(from) && op.Call <= ms(to) {
			continue
		}
		kept = append(kept, op)
	}
	h.ops = kept
	for i := range h.ops {
		h.ops[i].Index = i
	}
	h.add(OpSilence, BrokerInput{BrokerID: broker, Epoch: 12}, &BrokerOutput{}, from, to)
}

func (h *ctlHistory) observe(at int, rev uint64, brokers []BrokerValue, assigns []AssignmentValue) {
	h.add(OpListBrokers, BrokerInput{}, &BrokerOutput{Revision: rev, Brokers: brokers}, at, at+2)
	h.add(OpListAssignments, BrokerInput{}, &BrokerOutput{Revision: rev, Assignments: assigns}, at+3, at+5)
}

var (
	b0alive = BrokerValue{ID: "r-b0", Epoch: 10, Status: "ALIVE", Connectors: 1}
	b1alive = BrokerValue{ID: "r-b1", Epoch: 12, Status: "ALIVE"}
	c0onB0  = AssignmentValue{Connector: "r-c0", Broker: "r-b0", BrokerEpoch: 10, Epoch: 15, State: "ASSIGNED", ModRevision: 15}
	c0run   = AssignmentValue{Connector: "r-c0", Broker: "r-b0", BrokerEpoch: 10, Epoch: 15, State: "RUNNING", ModRevision: 16}
)

// ctlCase is a quiet, correct run: one connector, two brokers
// heartbeating every 500 ms (timeout 2 s), the connector assigned to
// r-b0, which reports it RUNNING; r-b1 reports under a stale epoch and
// is rejected.
func ctlCase() *ctlHistory {
	h := &ctlHistory{}
	h.add(OpResourceCreate, BrokerInput{Resource: &ResourceValue{Kind: "connector", Name: "r-c0", Marker: "m0", Desired: "RUNNING"}},
		&BrokerOutput{Resource: &ResourceValue{Kind: "connector", Name: "r-c0", Marker: "m0", Desired: "RUNNING", ModRevision: 3}}, 0, 1)
	h.add(OpRegister, BrokerInput{BrokerID: "r-b0"}, &BrokerOutput{Epoch: 10, HeartbeatMs: 500, TimeoutMs: 2000}, 2, 3)
	h.add(OpRegister, BrokerInput{BrokerID: "r-b1"}, &BrokerOutput{Epoch: 12, HeartbeatMs: 500, TimeoutMs: 2000}, 4, 5)
	for t := 500; t <= 12000; t += 500 {
		h.add(OpHeartbeat, BrokerInput{BrokerID: "r-b0", Epoch: 10}, &BrokerOutput{Status: "ALIVE"}, t, t+5)
		h.add(OpHeartbeat, BrokerInput{BrokerID: "r-b1", Epoch: 12}, &BrokerOutput{Status: "ALIVE"}, t+10, t+15)
	}
	h.observe(600, 15, []BrokerValue{b0alive, b1alive}, []AssignmentValue{c0onB0})
	h.add(OpReport, BrokerInput{BrokerID: "r-b0", Connector: "r-c0", Epoch: 15, State: "RUNNING"}, &BrokerOutput{Assignment: &c0run}, 700, 710)
	stale := h.add(OpReport, BrokerInput{BrokerID: "r-b1", Connector: "r-c0", Epoch: 14, State: "RUNNING", Stale: true}, nil, 720, 730)
	stale.Code, stale.Reason = "FailedPrecondition", "STALE_EPOCH"
	for t := 1000; t <= 12000; t += 1000 {
		h.observe(t, 16, []BrokerValue{b0alive, b1alive}, []AssignmentValue{c0run})
	}
	return h
}

func TestControllerCheckerOnKnownHistories(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(h *ctlHistory)
		faults []Fault
		want   Verdict
		detail string
	}{
		{"good", nil, nil, Valid, "2 reports (1 rejected)"},
		{"a connector owned by a down broker", func(h *ctlHistory) {
			b0 := b0alive
			b0.Status = "DOWN"
			h.observe(12500, 20, []BrokerValue{b0, b1alive}, nil)
		}, nil, Invalid, "broker r-b0 is DOWN at revision 20 with 1 connectors"},
		{"an assignment to a broker the same revision shows down", func(h *ctlHistory) {
			b0 := b0alive
			b0.Status, b0.Connectors = "DOWN", 0
			h.observe(12500, 20, []BrokerValue{b0, b1alive}, []AssignmentValue{c0run})
		}, nil, Invalid, "connector r-c0 assigned to r-b0@10, brokers show r-b0@10 DOWN"},
		{"an owner with an old broker epoch", func(h *ctlHistory) {
			b0 := b0alive
			b0.Epoch = 18
			h.observe(12500, 20, []BrokerValue{b0, b1alive}, []AssignmentValue{c0run})
		}, nil, Invalid, "brokers show r-b0@18 ALIVE"},
		{"two owners in one epoch", func(h *ctlHistory) {
			a := c0run
			a.Broker, a.BrokerEpoch = "r-b1", 12
			h.observe(12500, 20, []BrokerValue{b0alive, b1alive}, []AssignmentValue{a})
		}, nil, Invalid, "connector r-c0 epoch 15: owned by r-b0@10"},
		{"an epoch going back", func(h *ctlHistory) {
			a := c0run
			a.Epoch = 14
			h.observe(12500, 20, []BrokerValue{b0alive, b1alive}, []AssignmentValue{a})
		}, nil, Invalid, "epoch went back from 15"},
		{"a stale report accepted", func(h *ctlHistory) {
			a := c0run
			a.Epoch = 14
			h.add(OpReport, BrokerInput{BrokerID: "r-b0", Connector: "r-c0", Epoch: 14, State: "RUNNING", Stale: true}, &BrokerOutput{Assignment: &a}, 5000, 5010)
		}, nil, Invalid, "accepted after"},
		{"a current report rejected", func(h *ctlHistory) {
			op := h.add(OpReport, BrokerInput{BrokerID: "r-b0", Connector: "r-c0", Epoch: 15, State: "RUNNING"}, nil, 5100, 5110)
			op.Code, op.Reason = "FailedPrecondition", "STALE_EPOCH"
		}, nil, Invalid, "rejected (STALE_EPOCH), though"},
		{"a late assignment", func(h *ctlHistory) {
			un := AssignmentValue{Connector: "r-c0", Epoch: 20}
			h.observe(13000, 20, []BrokerValue{b0alive, b1alive}, []AssignmentValue{un})
		}, nil, Invalid, "connector r-c0 unassigned"},
		{"a connector stuck unassigned mid-run", func(h *ctlHistory) { unassignBetween(h, 5000, 9000) }, nil, Invalid, "unassigned (epoch 20) from broker op"},
		{"unassigned after an update to STOPPED of unknown outcome is fine", func(h *ctlHistory) {
			unassignBetween(h, 5000, 9000)
			op := h.add(OpResourceUpdate, BrokerInput{Resource: &ResourceValue{Kind: "connector", Name: "r-c0", Marker: "m1", Desired: "STOPPED"}}, nil, 4800, 4900)
			op.Outcome = OutcomeUnknown
		}, nil, Valid, ""},
		{"unassigned during a fault is fine", func(h *ctlHistory) { unassignBetween(h, 5000, 9000) },
			[]Fault{{ID: 1, Kind: FaultPause, Began: 5 * time.Second, Ended: 6 * time.Second}}, Valid, ""},
		// On a machine loaded far beyond the run, the cluster may not answer
		// a broker within the call's deadline with no fault at all: the
		// broker's session may expire, and the liveness bounds count from
		// the unanswered call's end (ci23: a heartbeat unanswered 14 s after
		// the heal, the connector reassigned a second later).
		{"unassigned right after an unanswered heartbeat is fine", func(h *ctlHistory) {
			unanswered(h, 12100)
			un := AssignmentValue{Connector: "r-c0", Epoch: 20}
			h.observe(13000, 20, []BrokerValue{b0alive, b1alive}, []AssignmentValue{un})
			b1 := AssignmentValue{Connector: "r-c0", Broker: "r-b1", BrokerEpoch: 12, Epoch: 21, State: "RUNNING", ModRevision: 22}
			h.observe(16000, 22, []BrokerValue{b0alive, b1alive}, []AssignmentValue{b1})
		}, nil, Valid, "1 heartbeats or registrations unanswered"},
		{"unassigned long after an unanswered heartbeat", func(h *ctlHistory) {
			unanswered(h, 12100)
			un := AssignmentValue{Connector: "r-c0", Epoch: 20}
			h.observe(13000, 20, []BrokerValue{b0alive, b1alive}, []AssignmentValue{un})
			h.observe(16000, 20, []BrokerValue{b0alive, b1alive}, []AssignmentValue{un})
		}, nil, Invalid, "connector r-c0 unassigned 2.903s after the cluster healed"},
		// A call the harness cut short when the run stopped is no outage:
		// counted as one it pushed the bound past every read (ci26 seed 2:
		// controller unknown).
		{"a heartbeat abandoned at the run's end is judged past", func(h *ctlHistory) {
			unanswered(h, 30000).Abandoned = true
		}, nil, Valid, "0 heartbeats or registrations unanswered"},
		{"a registration abandoned at the run's end is judged past", func(h *ctlHistory) {
			op := h.add(OpRegister, BrokerInput{BrokerID: "r-b1"}, nil, 30000, 30500)
			op.Outcome, op.Abandoned = OutcomeUnknown, true
		}, nil, Valid, "0 heartbeats or registrations unanswered"},
		{"stuck across an unanswered heartbeat is fine", func(h *ctlHistory) {
			unassignBetween(h, 5000, 9000)
			unanswered(h, 6000)
		}, nil, Valid, ""},
		{"a heartbeat refused, not unanswered, excuses nothing", func(h *ctlHistory) {
			unassignBetween(h, 5000, 9000)
			op := h.add(OpHeartbeat, BrokerInput{BrokerID: "r-b1", Epoch: 12}, nil, 6000, 6010)
			op.Code, op.Reason = "FailedPrecondition", "STALE_EPOCH"
		}, nil, Invalid, "unassigned (epoch 20) from broker op"},
		{"stuck long after an unanswered heartbeat", func(h *ctlHistory) {
			unassignBetween(h, 5000, 12000)
			unanswered(h, 3000)
		}, nil, Invalid, "connector r-c0 unassigned"},
		{"a live broker declared down", func(h *ctlHistory) {
			b1DeclaredDown(h, 8000)
		}, nil, Invalid, "broker r-b1 epoch 12 DOWN"},
		{"a stopped broker declared down is fine", func(h *ctlHistory) {
			silence(h, "r-b1", 5000, 7900)
			b1DeclaredDown(h, 8000)
		}, nil, Valid, ""},
		{"a stopped broker declared down before its timeout", func(h *ctlHistory) {
			silence(h, "r-b1", 5000, 7900)
			b1DeclaredDown(h, 5600)
		}, nil, Invalid, "broker r-b1 epoch 12 DOWN"},
		{"a declaration applied right after a silence ended is fine", func(h *ctlHistory) {
			silence(h, "r-b1", 5000, 7400)
			b1DeclaredDown(h, 8000)
		}, nil, Valid, ""},
		{"a broker declared down near a fault is fine", func(h *ctlHistory) {
			b1DeclaredDown(h, 8000)
		}, []Fault{{ID: 1, Kind: FaultIsolate, Began: 6 * time.Second, Ended: 7 * time.Second}}, Valid, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := ctlCase()
			if tt.mutate != nil {
				tt.mutate(h)
			}
			r := CheckController(h.ops, nil, ControllerSettings{AssignSlack: 500 * time.Millisecond, Faults: tt.faults})
			if r.Verdict != tt.want {
				t.Fatalf("got %s, want %s (failing %v: %s)", r.Verdict, tt.want, r.Failing, r.Details)
			}
			if !strings.Contains(r.Details, tt.detail) {
				t.Fatalf("details: got %q, want it to mention %q", r.Details, tt.detail)
			}
		})
	}
}

// b1DeclaredDown has the observer read r-b1 DOWN at revision 21 at t
// (ms), r-c0 still running on r-b0.
func b1DeclaredDown(h *ctlHistory, t int) {
	b1 := b1alive
	b1.Status = "DOWN"
	h.observe(t, 21, []BrokerValue{b0alive, b1}, []AssignmentValue{c0run})
}

// unanswered adds a heartbeat of r-b1 at t (ms) whose outcome is unknown:
// the cluster did not answer it within its 1 s deadline.
func unanswered(h *ctlHistory, t int) *BrokerOp {
	op := h.add(OpHeartbeat, BrokerInput{BrokerID: "r-b1", Epoch: 12}, nil, t, t+1000)
	op.Outcome = OutcomeUnknown
	return op
}

// unassignBetween rewrites the observer's reads: from..to (ms) show the
// connector unassigned at epoch 20, after that owned by r-b1 at epoch 21.
func unassignBetween(h *ctlHistory, from, to int) {
	b1 := AssignmentValue{Connector: "r-c0", Broker: "r-b1", BrokerEpoch: 12, Epoch: 21, State: "RUNNING", ModRevision: 22}
	for i := range h.ops {
		op := &h.ops[i]
		if (op.Kind != OpListAssignments && op.Kind != OpListBrokers) || op.Call < ms(from) {
			continue
		}
		op.Output.Revision = 20
		as := []AssignmentValue{{Connector: "r-c0", Epoch: 20, ModRevision: 20}}
		if op.Call >= ms(to) {
			op.Output.Revision, as = 22, []AssignmentValue{b1}
		}
		if op.Kind == OpListAssignments {
			op.Output.Assignments = as
		}
	}
}

// Epochs along an assignment watch never go down, and one epoch has one
// owner there too.
func TestControllerCheckerReadsAssignmentWatches(t *testing.T) {
	ev := func(rev, epoch uint64, broker string) WatchEvent {
		return WatchEvent{Group: "metadata-0", Revision: rev, Type: "put", Key: "r-c0", Broker: broker, BrokerEpoch: 10, Epoch: epoch, Status: "ASSIGNED"}
	}
	recs := []WatchRecord{
		{Watcher: 3, Type: WatchStart, Name: "assignments", Space: "assignments", KeyPrefix: "r-c"},
		{Watcher: 3, Type: WatchResponse, Time: ms(1), Revisions: map[string]uint64{"metadata-0": 2}, Progress: true},
		{Watcher: 3, Type: WatchResponse, Time: ms(600), Revisions: map[string]uint64{"metadata-0": 30},
			Events: []WatchEvent{ev(15, 15, "r-b0"), ev(25, 14, "r-b0"), ev(30, 15, "r-b1")}},
	}
	r := CheckController(ctlCase().ops, recs, ControllerSettings{AssignSlack: time.Second})
	if r.Verdict != Invalid || !strings.Contains(r.Details, "assignments: connector r-c0 epoch went back from 15 to 14") ||
		!strings.Contains(r.Details, "owned by r-b0@10") {
		t.Fatalf("got %s (%s), want invalid: epoch back and two owners", r.Verdict, r.Details)
	}
}

// The brokers and assignments watches, replayed revision by revision,
// must never leave a connector on a broker that is down or in another
// epoch, even for one revision.
func TestControllerCheckerReplaysWatches(t *testing.T) {
	brk := func(rev, epoch uint64, status string) WatchEvent {
		return WatchEvent{Group: "metadata-0", Revision: rev, Type: "put", Key: "r-b0", Epoch: epoch, Status: status}
	}
	asg := func(rev uint64, broker string, brokerEpoch, epoch uint64) WatchEvent {
		return WatchEvent{Group: "metadata-0", Revision: rev, Type: "put", Key: "r-c0", Broker: broker, BrokerEpoch: brokerEpoch, Epoch: epoch, Status: "ASSIGNED"}
	}
	watches := func(brokers, assigns []WatchEvent) []WatchRecord {
		return []WatchRecord{
			{Watcher: 1, Type: WatchStart, Name: "brokers", Space: "brokers", KeyPrefix: "r-b"},
			{Watcher: 2, Type: WatchStart, Name: "assignments", Space: "assignments", KeyPrefix: "r-c"},
			{Watcher: 1, Type: WatchResponse, Time: ms(1), Revisions: map[string]uint64{"metadata-0": 1}, Progress: true},
			{Watcher: 2, Type: WatchResponse, Time: ms(1), Revisions: map[string]uint64{"metadata-0": 1}, Progress: true},
			{Watcher: 1, Type: WatchResponse, Time: ms(100), Revisions: map[string]uint64{"metadata-0": 9}, Events: brokers},
			{Watcher: 2, Type: WatchResponse, Time: ms(100), Revisions: map[string]uint64{"metadata-0": 9}, Events: assigns},
		}
	}
	tests := []struct {
		name             string
		brokers, assigns []WatchEvent
		want             string // "" for valid
	}{
		{"unassigned in the op that declares the broker down",
			[]WatchEvent{brk(2, 2, "ALIVE"), brk(5, 2, "DOWN")},
			[]WatchEvent{asg(3, "r-b0", 2, 3), asg(5, "", 0, 5)}, ""},
		{"left on the broker for a revision after it went down",
			[]WatchEvent{brk(2, 2, "ALIVE"), brk(5, 2, "DOWN")},
			[]WatchEvent{asg(3, "r-b0", 2, 3), asg(6, "", 0, 6)}, "revision 5 (watches): connector r-c0 assigned to r-b0@2 while the broker is DOWN@2"},
		{"left on the old epoch after a registration",
			[]WatchEvent{brk(2, 2, "ALIVE"), brk(7, 7, "ALIVE")},
			[]WatchEvent{asg(3, "r-b0", 2, 3), asg(8, "r-b0", 7, 8)}, "revision 7 (watches): connector r-c0 assigned to r-b0@2 while the broker is ALIVE@7"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, problems := replay(watches(tt.brokers, tt.assigns))
			if n == 0 {
				t.Fatalf("replayed %d revisions, want some", n)
			}
			got := strings.Join(problems, "; ")
			if (tt.want == "") != (got == "") || !strings.Contains(got, tt.want) {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}
