package verify

import (
	"context"
	"strings"
	"testing"
	"time"
)

// A slow recovery moves the next fault later: it begins no sooner than
// its planned gap after the cluster served again, and each fault's
// recovery time is recorded and summarised per kind.
func TestRunWaitsForRecovery(t *testing.T) {
	c := newMemCluster(3, "n1", "n2", "n3")
	nem := &memNemesis{c: c, stall: 600 * time.Millisecond}
	cfg := fastRun(t, c, nem, 3, []FaultKind{FaultKill, FaultIsolate})
	cfg.Faults = []Fault{
		{ID: 1, Kind: FaultIsolate, Target: "random", Start: 300 * time.Millisecond, Duration: 300 * time.Millisecond},
		{ID: 2, Kind: FaultKill, Target: "random", Start: 800 * time.Millisecond, Duration: 300 * time.Millisecond},
	}
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	f1, f2 := res.Faults[0], res.Faults[1]
	for _, f := range res.Faults {
		if !f.Recovery.Recovered() || f.Recovery.Took < nem.stall {
			t.Errorf("fault %d: got recovery %+v, want recovered after at least %s", f.ID, f.Recovery, nem.stall)
		}
	}
	// Planned gap 200ms: fault 2 begins at least that long after fault 1's
	// recovery, although it was planned 200ms after fault 1's end.
	if gap := f2.Began - (f1.Ended + f1.Recovery.Took); gap < 200*time.Millisecond {
		t.Errorf("fault 2 began %s after fault 1 recovered, want at least the planned 200ms", gap)
	}
	st := res.Recovery[FaultIsolate]
	if st.Heals != 1 || st.Max != f1.Recovery.Took || st.P50 != st.Max {
		t.Errorf("recovery[isolate]: got %+v, want one heal of %s", st, f1.Recovery.Took)
	}
	if !res.FinalRecovery.Recovered() || res.Recovery[FinalHeal].Heals != 1 {
		t.Errorf("final recovery: got %+v, %+v, want recovered and counted", res.FinalRecovery, res.Recovery[FinalHeal])
	}
	if c := res.Check(CheckerRecovery); c == nil || c.Verdict != Valid || c.Judged != 3 {
		t.Errorf("recovery checker: got %+v, want valid, 3 heals judged", c)
	}
	if res.Verdict != Valid {
		t.Errorf("run: got %s, want valid", res.Verdict)
	}
}

// A cluster that does not serve again within the bound fails the
// recovery checker with a message that says so.
func TestRunFailsWithoutRecovery(t *testing.T) {
	c := newMemCluster(4, "n1", "n2", "n3")
	nem := &memNemesis{c: c, stall: 3 * time.Second}
	cfg := fastRun(t, c, nem, 4, []FaultKind{FaultKill})
	cfg.Faults = []Fault{{ID: 1, Kind: FaultKill, Target: "random", Start: 300 * time.Millisecond, Duration: 300 * time.Millisecond}}
	cfg.RecoveryTimeout = 500 * time.Millisecond
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	c1 := res.Check(CheckerRecovery)
	if c1 == nil || c1.Verdict != Invalid || len(c1.Failing) == 0 ||
		!strings.Contains(c1.Failing[0], "fault 1 (kill): the cluster did not serve again within 500ms of the heal") {
		t.Fatalf("recovery checker: got %+v, want invalid naming fault 1", c1)
	}
	if res.Verdict != Invalid {
		t.Errorf("run: got %s, want invalid", res.Verdict)
	}
}

func TestCheckRecoveryTable(t *testing.T) {
	ok := &Recovery{Took: time.Second, Slowest: "data-0"}
	bad := &Recovery{Took: 30 * time.Second, Missing: map[string]string{"offset-1": "no leader"}}
	began := Fault{ID: 1, Kind: FaultKill, Began: time.Second, Ended: 2 * time.Second}
	with := func(f Fault, r *Recovery) Fault { f.Recovery = r; return f }
	tests := []struct {
		name   string
		faults []Fault
		final  *Recovery
		want   Verdict
		judged int
	}{
		{"recovered", []Fault{with(began, ok)}, ok, Valid, 2},
		{"a fault's heal not recovered", []Fault{with(began, bad)}, ok, Invalid, 2},
		{"the final heal not recovered", []Fault{with(began, ok)}, bad, Invalid, 2},
		{"healed but not probed", []Fault{began}, nil, Unknown, 0},
		{"never injected", []Fault{{ID: 1, Kind: FaultKill, Began: time.Second, Ended: time.Second, Err: "resolve: no leader"}}, ok, Valid, 1},
		{"no faults, no nemesis", nil, nil, Valid, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := CheckRecovery(tt.faults, tt.final, 30*time.Second)
			if got.Verdict != tt.want || got.Ops != tt.judged {
				t.Errorf("got %s judging %d (%+v), want %s judging %d", got.Verdict, got.Ops, got, tt.want, tt.judged)
			}
		})
	}
}

func TestPercentile(t *testing.T) {
	ts := []time.Duration{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	for _, tt := range []struct {
		p    int
		want time.Duration
	}{{50, 5}, {99, 10}, {100, 10}, {0, 1}, {10, 1}, {11, 2}} {
		if got := Percentile(ts, tt.p); got != tt.want {
			t.Errorf("Percentile(1..10, %d): got %d, want %d", tt.p, got, tt.want)
		}
	}
	if got := Percentile(nil, 50); got != 0 {
		t.Errorf("Percentile(nil): got %d, want 0", got)
	}
}
