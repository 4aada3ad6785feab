package verify

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// fastBrokerRun is fastRun with every broker workload on, against a
// brokerFake (controller timeout 400 ms).
func fastBrokerRun(t *testing.T, f *brokerFake, seed int64, kinds []FaultKind) RunConfig {
	t.Helper()
	cfg := fastRun(t, f.c, &memNemesis{c: f.c}, seed, kinds)
	cfg.Dial = f.dial
	cfg.Duration = 3 * time.Second
	cfg.Workload = cfg.Workload.WithBroker()
	cfg.Workload.Connectors = 4
	cfg.Workload.AssignSlack = time.Second
	return cfg
}

func TestRunBrokerWorkloadsOnACorrectSystemPass(t *testing.T) {
	f := newBrokerFake(newMemCluster(21, "n1", "n2", "n3"))
	cfg := fastBrokerRun(t, f, 21, []FaultKind{FaultKill, FaultIsolate})
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{CheckerSessions, CheckerWatch, CheckerController} {
		c := res.Check(name)
		if c == nil {
			t.Fatalf("%s: got no result, want one", name)
		}
		t.Logf("%s: %s ops %d: %s", name, c.Verdict, c.Ops, c.Details)
	}
	for _, ch := range res.Checks {
		if ch.Verdict != Valid {
			t.Errorf("%s: got %s, want valid (failing %v: %s)", ch.Checker, ch.Verdict, ch.Failing, ch.Details)
		}
	}
	for _, file := range []string{BrokerFile, WatchFile, SessionsReportFile} {
		if _, err := os.Stat(filepath.Join(cfg.Dir, file)); err != nil {
			t.Errorf("run folder: %v", err)
		}
	}
	ops, err := LoadBrokerOps(filepath.Join(cfg.Dir, BrokerFile))
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[BrokerOpKind]int{}
	for _, op := range ops {
		if op.Outcome == OutcomeOK {
			kinds[op.Kind]++
		}
	}
	for _, k := range []BrokerOpKind{OpSessionPut, OpSessionDelete, OpSessionGet, OpSessionList, OpResourceCreate, OpResourceUpdate,
		OpRegister, OpHeartbeat, OpReport, OpListBrokers, OpListAssignments, OpSilence} {
		if kinds[k] == 0 {
			t.Errorf("kind %s: got no successful op, want some (%v)", k, kinds)
		}
	}
	if got := res.BrokerOps[OpSessionPut].OK; got == 0 || got != kinds[OpSessionPut] {
		t.Errorf("summary broker_ops[session-put].ok: got %d, want %d (> 0)", got, kinds[OpSessionPut])
	}
	again, err := Recheck(cfg.Dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{CheckerSessions, CheckerWatch, CheckerController} {
		a, b := res.Check(name), again.Check(name)
		if b == nil || a.Verdict != b.Verdict || a.Ops != b.Ops {
			t.Errorf("recheck %s: got %+v, want %s with %d ops", name, b, a.Verdict, a.Ops)
		}
	}
}

// TestRunBrokerWorkloadsCatchPlantedBugs plants each bug and asserts the
// verdict only once a run made the scenario the bug needs happen: a
// run that never exercised the bug proves nothing, so each bug is run on
// consecutive seeds until its scenario happened (at most scenarioTries
// runs), and a bug whose scenario never happened fails loudly.
func TestRunBrokerWorkloadsCatchPlantedBugs(t *testing.T) {
	const scenarioTries = 5
	// declared: some read showed a broker DOWN.
	declared := func(ops []BrokerOp, _ *Result) bool {
		return slices.ContainsFunc(ops, func(op BrokerOp) bool {
			return op.Kind == OpListBrokers && op.Outcome == OutcomeOK &&
				slices.ContainsFunc(op.Output.Brokers, func(b BrokerValue) bool { return b.Status == "DOWN" })
		})
	}
	// judged: the controller checker judged a down declaration.
	judged := func(_ []BrokerOp, res *Result) bool {
		c := res.Check(CheckerController)
		return c != nil && c.Judged > 0
	}
	staleSent := func(ops []BrokerOp, _ *Result) bool {
		return slices.ContainsFunc(ops, func(op BrokerOp) bool { return op.Kind == OpReport && op.Input.Stale })
	}
	watched := func(_ []BrokerOp, res *Result) bool {
		c := res.Check(CheckerWatch)
		return c != nil && c.Judged > 0
	}
	sessions := func(ops []BrokerOp, _ *Result) bool {
		return slices.ContainsFunc(ops, func(op BrokerOp) bool { return op.Kind == OpSessionPut && op.Outcome == OutcomeOK })
	}
	fired := func(f *brokerFake) bool {
		f.c.mu.Lock()
		defer f.c.mu.Unlock()
		return f.bugFired > 0
	}
	tests := []struct {
		name    string
		plant   func(f *brokerFake)
		checker string
		// noFaults: a fault window exempts brokers from the liveness
		// check, so that planted bug is tested without one.
		noFaults bool
		// scenario reports whether the run did what the bug needs.
		scenario func(ops []BrokerOp, res *Result) bool
		// fired, when set, reports whether the planted bug changed what
		// the fake did (a bug that can stay dormant through a run, such
		// as a broker declared down while it owned nothing).
		fired func(f *brokerFake) bool
	}{
		{"watch skips an event", func(f *brokerFake) { f.bugWatchDrop = true }, CheckerWatch, false, watched, nil},
		{"watch repeats an event", func(f *brokerFake) { f.bugWatchDup = true }, CheckerWatch, false, watched, nil},
		{"watch invents a value", func(f *brokerFake) { f.bugWatchInvent = true }, CheckerWatch, false, watched, nil},
		{"a session of a batch is lost", func(f *brokerFake) { f.bugSessionDrop = true }, CheckerSessions, false, sessions, nil},
		{"a down broker keeps its connectors", func(f *brokerFake) { f.bugOwnerDown = true }, CheckerController, false, declared, fired},
		{"two owners in one epoch", func(f *brokerFake) { f.bugTwoOwners = true }, CheckerController, false, declared, fired},
		{"connectors never reassigned", func(f *brokerFake) { f.bugNoReassign = true }, CheckerController, false, declared, fired},
		{"live brokers declared down", func(f *brokerFake) { f.bugEagerDown = true }, CheckerController, true, judged, nil},
		{"stale reports accepted", func(f *brokerFake) { f.bugAcceptStale = true }, CheckerController, false, staleSent, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for try := range scenarioTries {
				seed := int64(22 + try)
				f := newBrokerFake(newMemCluster(seed, "n1", "n2", "n3"))
				tt.plant(f)
				kinds := []FaultKind{FaultKill}
				if tt.noFaults {
					kinds = nil
				}
				cfg := fastBrokerRun(t, f, seed, kinds)
				res, err := Run(context.Background(), cfg)
				if err != nil {
					t.Fatal(err)
				}
				ops, err := LoadBrokerOps(filepath.Join(cfg.Dir, BrokerFile))
				if err != nil {
					t.Fatal(err)
				}
				if !tt.scenario(ops, res) || (tt.fired != nil && !tt.fired(f)) {
					t.Logf("seed %d: the scenario the bug needs did not happen; running the next seed", seed)
					continue
				}
				c := res.Check(tt.checker)
				if c == nil || c.Verdict != Invalid {
					t.Fatalf("seed %d, scenario exercised: %s: got %+v, want invalid", seed, tt.checker, c)
				}
				t.Logf("seed %d: caught: failing %v: %s", seed, c.Failing, firstChars(c.Details, 400))
				if res.Verdict != Invalid {
					t.Fatalf("run: got %s, want invalid", res.Verdict)
				}
				return
			}
			t.Fatalf("the scenario the bug needs never happened in %d runs (seeds 22..%d): the self-test proves nothing", scenarioTries, 22+scenarioTries-1)
		})
	}
}

func firstChars(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
