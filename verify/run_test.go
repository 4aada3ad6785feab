package verify

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testLogger sends the run's log lines to t.Log.
func testLogger(t *testing.T) *slog.Logger {
	t.Helper()
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// fastRun is a short run against a memCluster: three faults of about half
// a second each.
func fastRun(t *testing.T, c *memCluster, nem Nemesis, seed int64, kinds []FaultKind) RunConfig {
	t.Helper()
	cfg := DefaultRunConfig()
	cfg.Seed = seed
	cfg.Dir = t.TempDir()
	cfg.Endpoints = c.endpoints()
	cfg.Dial = c.dial
	cfg.Nemesis = nem
	cfg.Kinds = kinds
	cfg.Duration = 2500 * time.Millisecond
	cfg.Schedule = ScheduleOptions{
		Warmup: 300 * time.Millisecond, Cooldown: 400 * time.Millisecond,
		MinFault: 400 * time.Millisecond, MaxFault: 500 * time.Millisecond,
		MinGap: 200 * time.Millisecond, MaxGap: 300 * time.Millisecond,
	}
	cfg.Workload.Interval = 4 * time.Millisecond
	cfg.MinOps = 5
	cfg.CheckTimeout = 30 * time.Second
	cfg.ConvergeTimeout = 2 * time.Second
	cfg.FinalTimeout = 5 * time.Second
	cfg.ResolveTimeout = time.Second
	cfg.Logger = testLogger(t)
	return cfg
}

func TestRunOnACorrectSystemPasses(t *testing.T) {
	c := newMemCluster(1, "n1", "n2", "n3")
	nem := &memNemesis{c: c}
	cfg := fastRun(t, c, nem, 1, []FaultKind{FaultKill, FaultIsolate, FaultSplit})
	var phases []string
	cfg.Progress = func(p Progress) {
		if len(phases) == 0 || phases[len(phases)-1] != p.Phase {
			phases = append(phases, p.Phase)
		}
	}
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, ch := range res.Checks {
		if ch.Verdict != Valid {
			t.Errorf("%s: got %s, want valid (failing %v: %s)", ch.Checker, ch.Verdict, ch.Failing, ch.Details)
		}
	}
	if res.Verdict != Valid {
		t.Fatalf("run: got %s, want valid", res.Verdict)
	}
	if got := len(res.Faults); got != 3 {
		t.Fatalf("faults: got %d, want 3", got)
	}
	for _, f := range res.Faults {
		if f.Began <= 0 || f.Ended <= f.Began || len(f.Nodes) == 0 {
			t.Errorf("fault %s: got began %s ended %s nodes %v, want a window and nodes", f.String(), f.Began, f.Ended, f.Nodes)
		}
	}
	if res.Ops.Unknown == 0 || res.Ops.Fail == 0 {
		t.Errorf("ops: got %d unknown and %d failed, want some of each from the faults", res.Ops.Unknown, res.Ops.Fail)
	}
	if nem.healAll == 0 {
		t.Errorf("HealAll: got 0 calls, want at least 1")
	}
	for _, want := range []string{"workload", "inject", "heal", "final", "converge", "check", "done"} {
		if !slices.Contains(phases, want) {
			t.Errorf("progress phases %v: missing %q", phases, want)
		}
	}
	for _, f := range []string{HistoryFile, FaultsFile, SummaryFile, ReportFile} {
		if _, err := os.Stat(filepath.Join(cfg.Dir, f)); err != nil {
			t.Errorf("run folder: %v", err)
		}
	}
	report, err := os.ReadFile(filepath.Join(cfg.Dir, ReportFile))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(report), `"Tag":"faults"`) {
		t.Errorf("report.html: got no fault annotations, want one per fault")
	}

	// The saved run re-checks to the same verdicts.
	again, err := Recheck(cfg.Dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	if again.Verdict != res.Verdict || len(again.Checks) != len(res.Checks) {
		t.Fatalf("recheck: got %s with %d checks, want %s with %d", again.Verdict, len(again.Checks), res.Verdict, len(res.Checks))
	}
	for i := range res.Checks {
		a, b := res.Checks[i], again.Checks[i]
		if a.Checker != b.Checker || a.Verdict != b.Verdict || a.Ops != b.Ops {
			t.Errorf("recheck %s: got %s/%d ops, want %s/%d ops", a.Checker, b.Verdict, b.Ops, a.Verdict, a.Ops)
		}
	}
}

// Planted bugs in the fake system must be caught.
func TestRunCatchesPlantedBugs(t *testing.T) {
	tests := []struct {
		name    string
		plant   func(c *memCluster)
		kinds   []FaultKind
		checker string
	}{
		{"stale reads from a deposed node", func(c *memCluster) { c.bugStale = true }, []FaultKind{FaultIsolate}, ""},
		{"unknown outcome reported as failure", func(c *memCluster) { c.bugUnknownAsFail = true }, []FaultKind{FaultKill}, ""},
		{"acknowledged writes lost", func(c *memCluster) { c.bugLoseWrites = true }, []FaultKind{FaultKill}, ""},
		{"replicas diverge", func(c *memCluster) { c.bugDiverge = true }, []FaultKind{FaultPause}, CheckerConvergence},
		{"two replicas of a group on one node", func(c *memCluster) { c.bugPlacement = true }, []FaultKind{FaultPause}, CheckerPlacement},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newMemCluster(7, "n1", "n2", "n3")
			tt.plant(c)
			cfg := fastRun(t, c, &memNemesis{c: c}, 7, tt.kinds)
			res, err := Run(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			if res.Verdict != Invalid {
				t.Fatalf("run: got %s, want invalid; checks %+v", res.Verdict, res.Checks)
			}
			if tt.checker != "" {
				if c := res.Check(tt.checker); c == nil || c.Verdict != Invalid {
					t.Fatalf("%s: got %+v, want invalid", tt.checker, c)
				}
			}
			var bad []string
			for _, ch := range res.Checks {
				if ch.Verdict == Invalid {
					bad = append(bad, ch.Checker+" "+strings.Join(ch.Failing, ","))
				}
			}
			t.Logf("caught by %v", bad)
		})
	}
}

func TestRunNemesisFailureIsNotAPass(t *testing.T) {
	c := newMemCluster(3, "n1", "n2", "n3")
	nem := &memNemesis{c: c, failOn: FaultPause}
	cfg := fastRun(t, c, nem, 3, []FaultKind{FaultPause})
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ch := res.Check(CheckerNemesis)
	if ch == nil || ch.Verdict != Invalid {
		t.Fatalf("nemesis check: got %+v, want invalid", ch)
	}
	if res.Verdict == Valid {
		t.Fatalf("run: got valid, want not valid")
	}
}

func TestRunTooLittleWorkIsNotAPass(t *testing.T) {
	c := newMemCluster(4, "n1", "n2", "n3")
	cfg := fastRun(t, c, &memNemesis{c: c}, 4, []FaultKind{FaultKill})
	cfg.MinOps = 1 << 30
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if ch := res.Check(CheckerActivity); ch == nil || ch.Verdict != Invalid {
		t.Fatalf("activity: got %+v, want invalid", ch)
	}
}

func TestRunCancelledStillHealsAndSaves(t *testing.T) {
	c := newMemCluster(5, "n1", "n2", "n3")
	nem := &memNemesis{c: c}
	cfg := fastRun(t, c, nem, 5, []FaultKind{FaultKill})
	ctx, cancel := context.WithCancel(context.Background())
	cfg.Progress = func(p Progress) {
		if p.Phase == "inject" {
			cancel()
		}
	}
	res, err := Run(ctx, cfg)
	if err == nil {
		t.Fatal("got no error from a cancelled run, want context.Canceled")
	}
	if res == nil || res.Verdict == Valid {
		t.Fatalf("got result %+v, want a saved result that is not valid", res)
	}
	if nem.healAll == 0 {
		t.Fatal("HealAll: got 0 calls after cancel, want 1")
	}
	if _, err := os.Stat(filepath.Join(cfg.Dir, HistoryFile)); err != nil {
		t.Fatalf("history after cancel: %v", err)
	}
}

func TestRunConfigValidate(t *testing.T) {
	c := newMemCluster(1, "n1")
	tests := []struct {
		name   string
		mutate func(*RunConfig)
		want   string
	}{
		{"no endpoints", func(r *RunConfig) { r.Endpoints = nil }, "Endpoints"},
		{"faults without nemesis", func(r *RunConfig) { r.Nemesis = nil }, "without a Nemesis"},
		{"bad kind", func(r *RunConfig) { r.Kinds = []FaultKind{"meteor"} }, "unknown fault kind"},
		{"no clients", func(r *RunConfig) { r.Workload.KVClientsPerNode, r.Workload.OffsetClientsPerNode = 0, 0 }, "no clients"},
		{"fault after the end", func(r *RunConfig) {
			r.Faults = []Fault{{ID: 1, Kind: FaultKill, Start: time.Hour, Duration: time.Second}}
		}, "ends after the workload"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := fastRun(t, c, &memNemesis{c: c}, 1, []FaultKind{FaultKill})
			tt.mutate(&cfg)
			err := cfg.withDefaults().Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error mentioning %q", err, tt.want)
			}
		})
	}
}
