package chaos

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/metamq/meta/verify"
)

// buildMetanode builds ./cmd/metanode into a temporary directory.
func buildMetanode(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "metanode")
	cmd := exec.Command("go", "build", "-o", bin, "../cmd/metanode")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build metanode: %v\n%s", err, out)
	}
	return bin
}

// TestRunEndToEnd plays one short run against real nodes (kill, isolate
// and a membership change) and checks the verdict and the run folder.
func TestRunEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("a 30 s run against real nodes; skipped with -short")
	}
	requireDocker(t)
	requireTools(t)
	bin := buildMetanode(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	img, err := BuildImage(ctx, bin, ImageOptions{Log: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	rep, err := Run(ctx, RunOptions{
		Seed: 5, Nodes: 3, Duration: 30 * time.Second, Image: img, Root: root, Spare: true,
		Kinds:        []verify.FaultKind{verify.FaultKill, verify.FaultIsolate, verify.FaultMember},
		OffsetGroups: 2, DataGroups: 2, SnapshotThreshold: 256, TrailingLogs: 64,
		Log: testLogger(t),
	})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if rep.Verdict != verify.Valid {
		for _, c := range rep.Checks {
			t.Logf("%s: %s %v %s", c.Checker, c.Verdict, c.Failing, c.Details)
		}
		t.Fatalf("verdict: got %s, want valid; run folder %s", rep.Verdict, rep.Dir)
	}
	if got := len(rep.Injected()); got == 0 {
		t.Errorf("injected: got no fault, want some (faults %v)", rep.Faults)
	}
	for _, f := range []string{RunFile, IndexFile, HarnessLog, ThroughputPlot, LatencyPlot,
		verify.SummaryFile, verify.ReportFile, verify.HistoryFile, verify.FaultsFile, "logs/n1.log", "logs/n4.log"} {
		if _, err := os.Stat(filepath.Join(rep.Dir, f)); err != nil {
			t.Errorf("run folder: %v", err)
		}
	}
	if _, err := os.Stat(filepath.Join(rep.Dir, DataDir)); !os.IsNotExist(err) {
		t.Errorf("data of a passing run: got %v, want it removed", err)
	}
	var rec struct {
		Seed    int64          `json:"seed"`
		Valid   verify.Verdict `json:"valid"`
		Cluster struct {
			RunID string `json:"run_id"`
		} `json:"cluster"`
	}
	b, err := os.ReadFile(filepath.Join(rep.Dir, RunFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		t.Fatalf("run.json: %v", err)
	}
	if rec.Seed != 5 || rec.Valid != verify.Valid {
		t.Errorf("run.json: got seed %d valid %s, want seed 5, valid", rec.Seed, rec.Valid)
	}
	res, _, err := verify.LoadRun(rep.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if !res.FinalRecovery.Recovered() || len(res.Recovery) == 0 {
		t.Errorf("summary.json: got final recovery %+v, recovery per kind %v; want the final heal recovered and figures", res.FinalRecovery, res.Recovery)
	}
	for _, name := range []string{verify.CheckerRecovery, CheckerNodes, verify.CheckerKV, verify.CheckerConvergence} {
		if c := res.Check(name); c == nil || c.Verdict != verify.Valid {
			t.Errorf("summary.json %s: got %+v, want valid", name, c)
		}
	}
	if left := leftovers(t, rec.Cluster.RunID); len(left) > 0 {
		t.Errorf("after the run, objects of run %s left: %v", rec.Cluster.RunID, left)
	}
}
