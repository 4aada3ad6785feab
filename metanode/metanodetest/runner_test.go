package metanodetest_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/metamq/meta/metanode"
	"github.com/metamq/meta/metanode/metanodetest"
	"github.com/metamq/meta/rpc/metapb"
	"github.com/metamq/meta/verify"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// grpc and raft leave a few goroutines winding down briefly after
		// Close; the nodes' own loops are checked by their Close.
		goleak.IgnoreTopFunction("google.golang.org/grpc/internal/grpcsync.(*CallbackSerializer).run"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
	)
}

// inprocKinds are the fault kinds the in-process nemesis supports, in
// verify's order.
func inprocKinds() []verify.FaultKind {
	return slices.DeleteFunc(slices.Clone(verify.AllFaultKinds), func(k verify.FaultKind) bool {
		return k == verify.FaultCrashpoint
	})
}

// plan is what a seed decides besides verify's schedule: the cluster size
// and the fault kinds of the run. It depends on the seed only, so that
// META_INPROC_SEED=S replays exactly the run S of a longer sweep.
type plan struct {
	seed  int64
	nodes int
	kinds []verify.FaultKind
}

// planFor gives seed s one fault kind, kinds[s mod n] (n = 12 kinds, or
// the kinds of META_INPROC_KINDS), so that seeds 1..36 inject every kind
// three times; seeds divisible by 5 run on five nodes (seven different
// kinds among 1..36).
func planFor(seed int64, override []verify.FaultKind) plan {
	ks := inprocKinds()
	if len(override) > 0 {
		ks = override
	}
	n := int64(len(ks))
	p := plan{seed: seed, nodes: 3, kinds: []verify.FaultKind{ks[((seed%n)+n)%n]}}
	if seed%5 == 0 {
		p.nodes = 5
	}
	return p
}

// runnerSettings come from the environment so a maintainer can run more
// seeds or replay one:
//
//	META_INPROC_SEEDS=N   run seeds 1..N (default 36, -short 12)
//	META_INPROC_SEED=S    run only seed S (its plan and schedule)
//	META_INPROC_KINDS=k,… draw each seed's kind from these (verify.ParseKinds)
//	META_INPROC_DURATION  workload time per run (default 9s)
//	META_INPROC_LANES=L   3-node clusters running seeds side by side (default 2)
type runnerSettings struct {
	seeds    []int64
	lanes    int
	kinds    []verify.FaultKind
	duration time.Duration
	// sweep is true for the default seed set, whose coverage is checked.
	sweep bool
}

func settingsFromEnv(t *testing.T) runnerSettings {
	t.Helper()
	s := runnerSettings{duration: 9 * time.Second, lanes: 2, sweep: true}
	n := 36
	if testing.Short() {
		n = 12
	}
	if v := os.Getenv("META_INPROC_SEEDS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n <= 0 {
			t.Fatalf("META_INPROC_SEEDS=%q: want a positive number", v)
		}
		s.sweep = n >= 36
	}
	for i := 1; i <= n; i++ {
		s.seeds = append(s.seeds, int64(i))
	}
	if v := os.Getenv("META_INPROC_SEED"); v != "" {
		seed, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			t.Fatalf("META_INPROC_SEED=%q: want a number", v)
		}
		s.seeds, s.sweep = []int64{seed}, false
	}
	if v := os.Getenv("META_INPROC_KINDS"); v != "" {
		ks, err := verify.ParseKinds(v)
		if err != nil {
			t.Fatalf("META_INPROC_KINDS: %v", err)
		}
		s.kinds, s.sweep = ks, false
	}
	if v := os.Getenv("META_INPROC_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 8*time.Second {
			t.Fatalf("META_INPROC_DURATION=%q: want a duration of at least 8s", v)
		}
		s.duration = d
	}
	if v := os.Getenv("META_INPROC_LANES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			t.Fatalf("META_INPROC_LANES=%q: want a positive number", v)
		}
		s.lanes = n
	}
	return s
}

// clusterOptions: 2 offset and 2 data groups so that routing and
// multi-group batches are exercised; snapshots small and frequent so that
// a lag fault (and a long kill) needs a snapshot install within a run.
func clusterOptions(nodes int, seed uint64) metanodetest.Options {
	return metanodetest.Options{Nodes: nodes, OffsetGroups: 2, DataGroups: 2, Seed: seed,
		Configure: func(cfg *metanode.Config) {
			cfg.SnapshotThreshold = 128
			cfg.TrailingLogs = 64
			cfg.SnapshotInterval = 500 * time.Millisecond
			cfg.ReconcileInterval = 300 * time.Millisecond
		}}
}

// lane is one cluster and its nemesis, reused by consecutive runs.
type lane struct {
	t     *testing.T
	nodes int
	c     *metanodetest.Cluster
	nem   *metanodetest.Nemesis
	stats []metanodetest.NemesisStats // of nemeses retired after a failure
}

func (l *lane) start() {
	l.t.Helper()
	if l.nem != nil {
		l.stats = append(l.stats, l.nem.Stats())
		_ = l.nem.Close()
		l.c.StopAll()
	}
	l.c = metanodetest.Start(l.t, clusterOptions(l.nodes, uint64(len(l.stats))))
	nem, err := metanodetest.NewNemesis(l.c, metanodetest.NemesisOptions{})
	if err != nil {
		l.t.Fatal(err)
	}
	l.nem = nem
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := nem.WaitHealthy(ctx); err != nil {
		l.t.Fatalf("new cluster: %v", err)
	}
}

func (l *lane) allStats() []metanodetest.NemesisStats {
	if l.nem == nil {
		return l.stats
	}
	return append(slices.Clone(l.stats), l.nem.Stats())
}

// runConfig is one short run: both workloads (KV and offsets) on every
// node, a warm-up, one fault of 2–3s, and a cool-down long enough for a
// slow heal (restart and election, re-add and catch-up take up to a few
// seconds) plus an "after" window in which the healed cluster must serve.
// One fault per run, not several: a heal that overruns the gap before the
// next fault would leave the windows between them empty, and more short
// runs cover as much.
func runConfig(l *lane, p plan, dir string, d time.Duration, log *slog.Logger) verify.RunConfig {
	cfg := verify.DefaultRunConfig()
	cfg.Seed = p.seed
	cfg.Dir = dir
	cfg.Endpoints = l.nem.Endpoints()
	cfg.Dial = l.nem.Dialer(log, cfg.OpTimeout)
	cfg.Nemesis = l.nem
	cfg.Kinds = p.kinds
	cfg.Duration = d
	cfg.Schedule = verify.ScheduleOptions{
		Groups:    metapb.Groups(2, 2),
		Warmup:    1500 * time.Millisecond,
		Cooldown:  d - 1500*time.Millisecond - 3*time.Second,
		MinFault:  2 * time.Second,
		MaxFault:  3 * time.Second,
		MemberOps: []string{"remove-readd", "wipe-readd", "add"},
		MaxFaults: 1,
	}
	cfg.ConvergeTimeout = 30 * time.Second
	// Five successful ops in each window prove the cluster served; the
	// machine may be slow (-race, other tests), so do not ask for more.
	cfg.MinOps = 5
	cfg.Logger = log
	return cfg
}

// keep copies a failed run's folder out of the test's temporary directory
// and returns where it went.
func keep(t *testing.T, dir string, seed int64) string {
	t.Helper()
	dst, err := os.MkdirTemp("", fmt.Sprintf("meta-inproc-seed%d-", seed))
	if err != nil {
		t.Logf("keep run folder: %v", err)
		return dir
	}
	if err := os.CopyFS(dst, os.DirFS(dir)); err != nil {
		t.Logf("keep run folder: %v", err)
		return dir
	}
	return dst
}

// runSeed runs one seed on the lane and reports its verdict, and whether
// the cluster can take the next seed. A failed run leaves its folder
// outside the test's temporary directory.
func runSeed(t *testing.T, l *lane, p plan, base string, d time.Duration) (*verify.Result, bool) {
	t.Helper()
	dir := filepath.Join(base, fmt.Sprintf("seed-%d", p.seed))
	log := metanodetest.NewLogger(t)
	cfg := runConfig(l, p, dir, d, log)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	res, err := verify.Run(ctx, cfg)
	if res == nil {
		t.Errorf("seed %d: run not carried out: %v", p.seed, err)
		return &verify.Result{Verdict: verify.Unknown}, false
	}
	for i := range res.Faults {
		f := &res.Faults[i]
		line := fmt.Sprintf("seed %d fault %s began %s ended %s", p.seed, f.String(), f.Began.Round(time.Millisecond), f.Ended.Round(time.Millisecond))
		if f.Err != "" {
			line += " error: " + f.Err
		}
		t.Log(line)
	}
	var verdicts []string
	for _, c := range res.Checks {
		v := c.Checker + "=" + string(c.Verdict)
		if c.Verdict != verify.Valid {
			v += fmt.Sprintf(" (failing %v: %s)", c.Failing, c.Details)
		}
		verdicts = append(verdicts, v)
	}
	t.Logf("seed %d nodes %d kinds %v: verdict %s in %s; ops %d ok %d fail %d unknown %d; %s",
		p.seed, p.nodes, p.kinds, res.Verdict, time.Since(start).Round(100*time.Millisecond),
		res.Ops.Total, res.Ops.OK, res.Ops.Fail, res.Ops.Unknown, strings.Join(verdicts, " "))
	if err != nil || res.Verdict != verify.Valid {
		t.Errorf("seed %d: got verdict %s (err %v), want valid; run folder kept at %s (metaverify check DIR)",
			p.seed, res.Verdict, err, keep(t, dir, p.seed))
		return res, false
	}
	hctx, hcancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer hcancel()
	if err := l.nem.WaitHealthy(hctx); err != nil {
		t.Errorf("seed %d: cluster not healthy after the run: %v", p.seed, err)
		return res, false
	}
	return res, true
}

// TestInProcessFaultRuns runs seeded fault runs against in-process
// clusters (3 nodes; every fifth seed 5 nodes), with both workloads and
// one fault per run, the kinds drawn so that every supported kind is
// covered, and checks every run's verdict. Each lane is one cluster that runs its seeds
// one after the other (each run heals, converges and leaves the cluster
// healthy for the next); lanes run side by side, since a run mostly waits
// for its fault windows. See verify/README.md, "In-process runs", for the
// environment variables.
func TestInProcessFaultRuns(t *testing.T) {
	s := settingsFromEnv(t)
	began := time.Now()
	type laneSpec struct {
		name  string
		nodes int
		plans []plan
	}
	var specs []*laneSpec
	bySize := map[int][]*laneSpec{}
	count := map[int]int{}
	for _, seed := range s.seeds {
		p := planFor(seed, s.kinds)
		want := 1
		if p.nodes == 3 {
			want = s.lanes
		}
		ls := bySize[p.nodes]
		if len(ls) < want {
			l := &laneSpec{name: fmt.Sprintf("nodes=%d/lane=%d", p.nodes, len(ls)+1), nodes: p.nodes}
			ls = append(ls, l)
			bySize[p.nodes] = ls
			specs = append(specs, l)
		}
		// Round-robin over the lanes of this size.
		l := ls[count[p.nodes]%len(ls)]
		count[p.nodes]++
		l.plans = append(l.plans, p)
	}
	var (
		mu       sync.Mutex
		stats    []metanodetest.NemesisStats
		verdicts = map[verify.Verdict]int{}
	)
	t.Run("lanes", func(t *testing.T) {
		for _, spec := range specs {
			t.Run(spec.name, func(t *testing.T) {
				t.Parallel()
				l := &lane{t: t, nodes: spec.nodes}
				l.start()
				base := t.TempDir()
				for i, p := range spec.plans {
					healthy := false
					t.Run(fmt.Sprintf("seed=%d", p.seed), func(t *testing.T) {
						var res *verify.Result
						res, healthy = runSeed(t, l, p, base, s.duration)
						mu.Lock()
						verdicts[res.Verdict]++
						mu.Unlock()
						if i == 0 && res.Verdict == verify.Valid {
							recheck(t, res)
						}
					})
					if !healthy {
						// A failed run may leave the cluster in any state:
						// the next seed gets a fresh one.
						l.start()
					}
				}
				mu.Lock()
				stats = append(stats, l.allStats()...)
				mu.Unlock()
			})
		}
	})
	t.Logf("%d runs in %s: %v", len(s.seeds), time.Since(began).Round(time.Second), verdicts)
	if s.sweep && !t.Failed() {
		checkCoverage(t, stats)
	}
}

// recheck re-checks a saved run offline, as metaverify check does, and
// wants the same verdicts.
func recheck(t *testing.T, res *verify.Result) {
	t.Helper()
	again, err := verify.Recheck(res.Dir, 0)
	if err != nil {
		t.Fatalf("recheck %s: %v", res.Dir, err)
	}
	if again.Verdict != res.Verdict {
		t.Fatalf("recheck %s: got %s, want %s", res.Dir, again.Verdict, res.Verdict)
	}
}

// checkCoverage wants every supported kind injected, every member op
// done, and at least one lag fault that really needed a snapshot.
func checkCoverage(t *testing.T, stats []metanodetest.NemesisStats) {
	t.Helper()
	injected := map[verify.FaultKind]int{}
	ops := map[string]int{}
	var lagSnaps, transfers int
	for _, s := range stats {
		for k, v := range s.Injected {
			injected[k] += v
		}
		for k, v := range s.MemberOps {
			ops[k] += v
		}
		lagSnaps += s.LagSnapshots
		transfers += s.Transfers
	}
	t.Logf("injected %v; member ops %v; lag snapshot installs %d; leadership transfers %d", injected, ops, lagSnaps, transfers)
	for _, k := range inprocKinds() {
		if injected[k] == 0 {
			t.Errorf("fault kind %s: got 0 injections, want at least 1", k)
		}
	}
	for _, op := range []string{"remove-readd", "wipe-readd", "add"} {
		if ops[op] == 0 {
			t.Errorf("member op %s: got 0, want at least 1", op)
		}
	}
	if lagSnaps == 0 {
		t.Errorf("lag: got 0 snapshot installs, want at least 1")
	}
	if transfers == 0 {
		t.Errorf("transfer: got 0 successful leadership transfers, want at least 1")
	}
}
