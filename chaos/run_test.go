package chaos

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/metamq/meta/verify"
)

func TestSchedule(t *testing.T) {
	kinds := []verify.FaultKind{verify.FaultKill, verify.FaultKillAll, verify.FaultPause, verify.FaultMember, verify.FaultIsolate}
	for seed := int64(1); seed <= 30; seed++ {
		total := 60 * time.Second
		got := Schedule(seed, kinds, total, verify.ScheduleOptions{})
		if again := Schedule(seed, kinds, total, verify.ScheduleOptions{}); !slices.EqualFunc(got, again, sameFault) {
			t.Fatalf("seed %d: two schedules differ:\n%v\n%v", seed, got, again)
		}
		plain := verify.Schedule(seed, kinds, total, verify.ScheduleOptions{})
		if len(got) == 0 || len(got) > len(plain) {
			t.Fatalf("seed %d: got %d faults, want 1..%d", seed, len(got), len(plain))
		}
		cooldown := total / 8
		for i, f := range got {
			if !sameFault(stripStart(f), stripStart(plain[i])) {
				t.Errorf("seed %d fault %d: got %v, want verify's fault moved later: %v", seed, i, f, plain[i])
			}
			if f.Start+f.Duration > total-cooldown {
				t.Errorf("seed %d: fault %v ends after %s", seed, f.String(), total-cooldown)
			}
			if i == 0 {
				continue
			}
			prev := got[i-1]
			// verify drew a gap of at least 1s; chaos adds the allowance.
			if gap := f.Start - (prev.Start + prev.Duration); gap < time.Second+HealAllowance[prev.Kind] {
				t.Errorf("seed %d: gap after %s is %s, want at least %s", seed, prev.String(), gap, time.Second+HealAllowance[prev.Kind])
			}
		}
	}
}

// TestScheduleMemberOps: a run with as many member faults as operations
// plays each operation.
func TestScheduleMemberOps(t *testing.T) {
	ops := []string{"remove-readd", "wipe-readd", "add"}
	for seed := int64(1); seed <= 20; seed++ {
		faults := Schedule(seed, []verify.FaultKind{verify.FaultMember}, 60*time.Second, verify.ScheduleOptions{MemberOps: ops})
		if len(faults) < len(ops) {
			t.Fatalf("seed %d: got %d member faults in 60 s, want at least %d", seed, len(faults), len(ops))
		}
		var got []string
		for _, f := range faults[:len(ops)] {
			got = append(got, f.Params["op"])
		}
		slices.Sort(got)
		if want := []string{"add", "remove-readd", "wipe-readd"}; !slices.Equal(got, want) {
			t.Errorf("seed %d: ops of the first %d member faults: got %q, want each of %q", seed, len(ops), got, want)
		}
	}
}

// TestAimAtController: the first fault of each named kind is aimed at
// the leader of metadata-0; the others, and later faults of those kinds,
// keep their targets.
func TestAimAtController(t *testing.T) {
	kinds := []verify.FaultKind{verify.FaultKill, verify.FaultKillAll, verify.FaultPause, verify.FaultMember}
	aim := []verify.FaultKind{verify.FaultKill, verify.FaultPause, verify.FaultIsolate}
	controller := verify.LeaderOf("metadata-0")
	for seed := int64(1); seed <= 20; seed++ {
		drawn := Schedule(seed, kinds, 60*time.Second, verify.ScheduleOptions{})
		got := AimAtController(Schedule(seed, kinds, 60*time.Second, verify.ScheduleOptions{}), aim)
		if len(got) != len(drawn) {
			t.Fatalf("seed %d: got %d faults, want %d", seed, len(got), len(drawn))
		}
		first := map[verify.FaultKind]bool{}
		for i, f := range got {
			want := drawn[i].Target
			if slices.Contains(aim, f.Kind) && !first[f.Kind] {
				first[f.Kind] = true
				want = controller
			}
			if f.Target != want {
				t.Errorf("seed %d fault %s: got target %s, want %s", seed, f.String(), f.Target, want)
			}
			if f.Kind != drawn[i].Kind || f.Start != drawn[i].Start || f.Duration != drawn[i].Duration {
				t.Errorf("seed %d fault %d: got %s, want only the target of %s changed", seed, i, f.String(), drawn[i].String())
			}
		}
		for _, k := range []verify.FaultKind{verify.FaultKill, verify.FaultPause} {
			if !first[k] {
				t.Errorf("seed %d: no %s fault in 60 s of %v; want one aimed at the controller's node", seed, k, kinds)
			}
		}
	}
	if !CanAimAtController(verify.FaultPause) || CanAimAtController(verify.FaultKillAll) || CanAimAtController(verify.FaultMember) {
		t.Errorf("CanAimAtController: got pause %t, kill-all %t, member %t; want true, false, false",
			CanAimAtController(verify.FaultPause), CanAimAtController(verify.FaultKillAll), CanAimAtController(verify.FaultMember))
	}
}

func sameFault(a, b verify.Fault) bool {
	return a.ID == b.ID && a.Kind == b.Kind && a.Target == b.Target && a.Start == b.Start && a.Duration == b.Duration && a.Pick == b.Pick
}

func stripStart(f verify.Fault) verify.Fault { f.Start = 0; return f }

func TestNodeArgs(t *testing.T) {
	o := RunOptions{OffsetGroups: 2, DataGroups: 3, ReplicationFactor: 3, SnapshotThreshold: 256, TrailingLogs: 64, SnapshotInterval: time.Second, HashCheckInterval: 2 * time.Second,
		BrokerHeartbeat: 500 * time.Millisecond, BrokerSessionTimeout: 2 * time.Second,
		ExtraFlags: []string{"--log-level", "debug"}}
	members := []string{"n1", "n2", "n3"}
	tests := []struct {
		name string
		join bool
		want string
	}{
		{"form", false, "--id n2 --data-dir /data --listen 0.0.0.0:7000 --advertise n2:7000 " +
			"--initial-cluster n1=n1:7000,n2=n2:7000,n3=n3:7000 --offset-groups 2 --data-groups 3 --replication-factor 3 " +
			"--snapshot-threshold 256 --trailing-logs 64 --snapshot-interval 1s --hash-check-interval 2s " +
			"--broker-heartbeat-interval 500ms --broker-session-timeout 2s --log-level debug"},
		{"join asks the others", true, "--id n2 --data-dir /data --listen 0.0.0.0:7000 --advertise n2:7000 " +
			"--join n1:7000,n3:7000 --snapshot-threshold 256 --trailing-logs 64 --snapshot-interval 1s --hash-check-interval 2s " +
			"--broker-heartbeat-interval 500ms --broker-session-timeout 2s --log-level debug"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := strings.Join(o.nodeArgs("n2", members, tt.join), " "); got != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
	if got := strings.Join(RunOptions{}.nodeArgs("n1", []string{"n1"}, false), " "); strings.Contains(got, "snapshot") ||
		strings.Contains(got, "groups") || strings.Contains(got, "broker") || strings.Contains(got, "replication") || strings.Contains(got, "hash") {
		t.Errorf("zero options: got %s, want no group, replication, snapshot or broker flags", got)
	}
}

func TestRunOptionsValidate(t *testing.T) {
	good := RunOptions{Image: Image{Tag: "meta-node:x"}, Kinds: []verify.FaultKind{verify.FaultKill}}
	if err := good.withDefaults().Validate(); err != nil {
		t.Fatalf("good options: %v", err)
	}
	tests := []struct {
		name string
		edit func(*RunOptions)
		want string
	}{
		{"no image", func(o *RunOptions) { o.Image = Image{} }, "Image"},
		{"crashpoint", func(o *RunOptions) { o.Kinds = []verify.FaultKind{verify.FaultCrashpoint} }, "crashpoint"},
		{"unknown kind", func(o *RunOptions) { o.Kinds = []verify.FaultKind{"meteor"} }, "meteor"},
		{"too many nodes", func(o *RunOptions) { o.Nodes = MaxNodes }, "Nodes"},
		{"negative replication factor", func(o *RunOptions) { o.ReplicationFactor = -1 }, "ReplicationFactor"},
		{"session timeout not above heartbeat", func(o *RunOptions) {
			o.BrokerHeartbeat, o.BrokerSessionTimeout = 2*time.Second, 2*time.Second
		}, "BrokerSessionTimeout"},
		{"negative broker timing", func(o *RunOptions) { o.BrokerHeartbeat = -time.Second }, "BrokerHeartbeat"},
		{"kill-all at the controller", func(o *RunOptions) {
			o.AtController = []verify.FaultKind{verify.FaultPause, verify.FaultKillAll}
		}, "kill-all"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := good.withDefaults()
			tt.edit(&o)
			err := o.Validate()
			if !errors.Is(err, ErrInvalidOptions) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want ErrInvalidOptions naming %s", err, tt.want)
			}
		})
	}
}

// An older release's image is kept only for runs that upgrade from it
// (upgrade on an even seed), which then start at its own level rather
// than at --feature-level 1 of the same binary.
func TestRunOptionsPrevious(t *testing.T) {
	prev := Image{Tag: "meta-node:old"}
	upgrade := []verify.FaultKind{verify.FaultKill, verify.FaultUpgrade}
	for _, tt := range []struct {
		seed     int64
		kinds    []verify.FaultKind
		previous Image
		keep     bool
		level    uint32
	}{
		{2, upgrade, prev, true, 0},
		{3, upgrade, prev, false, 0},
		{2, []verify.FaultKind{verify.FaultKill}, prev, false, 0},
		{2, upgrade, Image{}, false, baseLevel},
	} {
		o := RunOptions{Image: Image{Tag: "meta-node:x"}, Seed: tt.seed, Kinds: tt.kinds, Previous: tt.previous}.withDefaults()
		if (o.Previous.Tag != "") != tt.keep || o.FeatureLevel != tt.level {
			t.Errorf("seed %d, kinds %v, previous %q: got previous %q, feature level %d; want kept %v, level %d",
				tt.seed, tt.kinds, tt.previous.Tag, o.Previous.Tag, o.FeatureLevel, tt.keep, tt.level)
		}
	}
}

func TestScanLogs(t *testing.T) {
	dir := t.TempDir()
	clean := filepath.Join(dir, "n1.log")
	dirty := filepath.Join(dir, "n2.log")
	os.WriteFile(clean, []byte("time=... level=INFO msg=\"node started\"\n# chaos 2026 n1 SIGKILL panic: in a marker is ignored\n"), 0o644)
	os.WriteFile(dirty, []byte("ok line\npanic: runtime error: index out of range\n\ngoroutine 1 [running]:\nWARNING: DATA RACE\n"), 0o644)
	hits, err := ScanLogs([]string{clean, dirty, filepath.Join(dir, "missing.log")})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, h := range hits {
		got = append(got, h.File+":"+h.Pattern)
	}
	if want := []string{"n2.log:panic:", "n2.log:WARNING: DATA RACE"}; !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	if hits[0].Line != 2 {
		t.Errorf("line: got %d, want 2", hits[0].Line)
	}
	tests := []struct {
		name    string
		hits    []LogHit
		notes   []Note
		scanErr error
		want    verify.Verdict
	}{
		{"clean", nil, []Note{{Text: "fine"}}, nil, verify.Valid},
		{"log hit", hits, nil, nil, verify.Invalid},
		{"problem note", nil, []Note{{Text: "n2 down", Problem: true}}, nil, verify.Invalid},
		{"unreadable", nil, nil, errors.New("eio"), verify.Unknown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := CheckNodes(tt.hits, tt.notes, 3, tt.scanErr); got.Verdict != tt.want {
				t.Errorf("got %s (%+v), want %s", got.Verdict, got, tt.want)
			}
		})
	}
}

func TestPlots(t *testing.T) {
	var ops []verify.Op
	ms := int64(time.Millisecond)
	for i := range 400 {
		call := int64(i) * 25 * ms
		outcome := verify.OutcomeOK
		if i%50 == 0 {
			outcome = verify.OutcomeUnknown
		}
		if i >= 160 && i < 200 {
			continue // an outage: no ops, the latency lines must break
		}
		ops = append(ops, verify.Op{Index: i, Kind: verify.OpPut, Call: call, Return: call + int64(i%7+1)*ms, Outcome: outcome})
	}
	ops = append(ops, verify.Op{Kind: verify.OpGet, Call: 11000 * ms, Return: 11001 * ms, Outcome: verify.OutcomeOK, Final: true})
	faults := []verify.Fault{
		{ID: 1, Kind: verify.FaultKill, Began: 2 * time.Second, Ended: 3 * time.Second},
		{ID: 2, Kind: verify.FaultIsolate, Began: 4 * time.Second, Ended: 5 * time.Second, Err: "inject: boom <&>"},
	}
	dir := t.TempDir()
	if err := WritePlots(dir, ops, faults); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{ThroughputPlot, LatencyPlot} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		rects, lines := svgCount(t, b)
		// Background, two fault windows, the frame, one legend mark per series.
		if want := 1 + 2 + 1 + 3; rects != want {
			t.Errorf("%s: got %d rects, want %d", name, rects, want)
		}
		if name == LatencyPlot && lines != 6 {
			t.Errorf("%s: got %d polylines, want 6 (3 series broken once by the outage)", name, lines)
		}
		if name == ThroughputPlot && lines != 3 {
			t.Errorf("%s: got %d polylines, want 3", name, lines)
		}
	}
	tp, _ := plots(ops, faults)
	var total float64
	for _, s := range tp.series {
		for _, y := range s.ys {
			total += y * 0.25 // ops/s in 250 ms buckets
		}
	}
	if want := float64(len(ops) - 1); total != want {
		t.Errorf("throughput counts %v ops, want %v (the final read left out)", total, want)
	}
}

// svgCount parses an SVG (failing on malformed XML) and counts its rect
// and polyline elements.
func svgCount(t *testing.T, b []byte) (rects, lines int) {
	t.Helper()
	dec := xml.NewDecoder(bytes.NewReader(b))
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return rects, lines
		}
		if err != nil {
			t.Fatalf("malformed SVG: %v\n%s", err, b)
		}
		if se, ok := tok.(xml.StartElement); ok {
			switch se.Name.Local {
			case "rect":
				rects++
			case "polyline":
				lines++
			}
		}
	}
}

func TestTally(t *testing.T) {
	f := func(id int, k verify.FaultKind, errText string) verify.Fault {
		return verify.Fault{ID: id, Kind: k, Began: time.Second, Ended: 2 * time.Second, Err: errText}
	}
	reports := []*RunReport{
		{Dir: "a", Verdict: verify.Valid, Faults: []verify.Fault{f(1, verify.FaultKill, ""), f(2, verify.FaultKill, "")}, Ops: verify.OpStats{Total: 10}},
		{Dir: "b", Verdict: verify.Invalid, Faults: []verify.Fault{f(1, verify.FaultKill, ""), f(2, verify.FaultPause, "")}, Ops: verify.OpStats{Total: 5}},
		{Dir: "c", Verdict: verify.Unknown, Faults: []verify.Fault{f(1, verify.FaultPause, "inject: x")}},
	}
	tl := NewTally(reports, []verify.FaultKind{verify.FaultKill, verify.FaultPause, verify.FaultLag})
	if tl.Runs != 3 || tl.Passed != 1 || tl.Failed != 1 || tl.Unknown != 1 || tl.Ops != 15 || tl.Faults != 4 {
		t.Errorf("totals: got %+v", tl)
	}
	if tl.AllPassed() {
		t.Errorf("AllPassed: got true, want false")
	}
	want := []KindTally{
		{Kind: verify.FaultKill, Faults: 3, Runs: 2, Passed: 1, Failed: 1},
		{Kind: verify.FaultPause, Faults: 1, Errors: 1, Runs: 2, Failed: 1, Unknown: 1},
		{Kind: verify.FaultLag},
	}
	if !slices.Equal(tl.Kinds, want) {
		t.Errorf("per kind:\ngot  %+v\nwant %+v", tl.Kinds, want)
	}
	if !slices.Equal(tl.Failing, []string{"b", "c"}) {
		t.Errorf("failing: got %q, want b and c", tl.Failing)
	}
	var out strings.Builder
	if err := tl.Write(&out); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"runs", "passed", "failed", "unknown", "kill", "pause", "lag"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("table lacks %q:\n%s", s, out.String())
		}
	}
	if (Tally{}).AllPassed() {
		t.Errorf("AllPassed of no runs: got true, want false")
	}
}

// The tally sums judged/total per checker and the recovery times per
// kind, and names a checker that judged nothing in any run.
func TestTallyCoverageAndRecovery(t *testing.T) {
	ctl := func(judged, total int) verify.CheckResult {
		return verify.CheckResult{Checker: verify.CheckerController, Verdict: verify.Valid, Judged: judged, Total: total}
	}
	kill := func(took time.Duration) verify.Fault {
		return verify.Fault{ID: 1, Kind: verify.FaultKill, Began: time.Second, Ended: 2 * time.Second, Recovery: &verify.Recovery{Took: took}}
	}
	gap := []string{verify.CheckerController + ": judged 0 of 2 down declarations"}
	blind := NewTally([]*RunReport{
		{Dir: "a", Verdict: verify.Valid, Checks: []verify.CheckResult{ctl(0, 2)}, CoverageGaps: gap, Faults: []verify.Fault{kill(time.Second)}},
		{Dir: "b", Verdict: verify.Valid, Checks: []verify.CheckResult{ctl(0, 2)}, CoverageGaps: gap, Faults: []verify.Fault{kill(3 * time.Second)}},
	}, nil)
	if got := blind.Blind(); len(got) != 1 || !strings.HasPrefix(got[0], verify.CheckerController) {
		t.Errorf("Blind: got %q, want the controller", got)
	}
	if st := blind.Recovery[verify.FaultKill]; st.Heals != 2 || st.P50 != time.Second || st.Max != 3*time.Second {
		t.Errorf("recovery[kill]: got %+v, want 2 heals, p50 1s, max 3s", st)
	}
	seen := NewTally([]*RunReport{
		{Dir: "a", Verdict: verify.Valid, Checks: []verify.CheckResult{ctl(0, 2)}, CoverageGaps: gap},
		{Dir: "b", Verdict: verify.Valid, Checks: []verify.CheckResult{ctl(1, 3)}},
	}, nil)
	if got := seen.Blind(); len(got) != 0 {
		t.Errorf("Blind with one judged run: got %q, want none", got)
	}
	if c := seen.Checkers; len(c) != 1 || c[0].Judged != 1 || c[0].Total != 5 || c[0].Blind != 1 {
		t.Errorf("checkers: got %+v, want controller judged 1 of 5, blind in 1 run", c)
	}
	var out strings.Builder
	if err := seen.Write(&out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "coverage gaps") || !strings.Contains(out.String(), "judged") {
		t.Errorf("table lacks the coverage:\n%s", out.String())
	}
}

// TestRunDirIsAbsolute: the run folder holds the nodes' bind-mounted data
// directories, and Docker refuses relative mount sources, so a relative
// --out (metachaos's default, "chaos-runs") must become absolute.
func TestRunDirIsAbsolute(t *testing.T) {
	t.Chdir(t.TempDir())
	dir, err := runDir("chaos-runs", time.Now(), 7)
	if err != nil {
		t.Fatal(err)
	}
	if !filepath.IsAbs(dir) {
		t.Fatalf("runDir(%q): got %q, want an absolute path", "chaos-runs", dir)
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		t.Fatalf("runDir: %v", err)
	}
}
