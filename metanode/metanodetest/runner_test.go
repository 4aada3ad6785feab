package metanodetest_test

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/metamq/meta/controller"
	"github.com/metamq/meta/metanode"
	"github.com/metamq/meta/metanode/metanodetest"
	"github.com/metamq/meta/rpc/metapb"
	"github.com/metamq/meta/verify"
	"github.com/metamq/meta/verify/testkit"
)

// The nodes' own loops are checked by their Close.
func TestMain(m *testing.M) { testkit.VerifyTestMain(m) }

// inprocKinds are the fault kinds the in-process nemesis supports, in the
// order seeds draw them: with kinds[s mod 14], seeds 1..30 give kinds 1
// and 2 (member, move) three times and the others twice, so the kinds
// whose code paths are longest (membership, moves, scaling, snapshot
// installs, restarts) come first.
func inprocKinds() []verify.FaultKind {
	return []verify.FaultKind{
		verify.FaultTransfer, verify.FaultMember, verify.FaultMove, verify.FaultScale, verify.FaultLag, verify.FaultKill, verify.FaultKillAll,
		verify.FaultIsolate, verify.FaultSplit, verify.FaultPause, verify.FaultBridge, verify.FaultOneWay,
		verify.FaultFlap, verify.FaultDelay,
	}
}

// memberOps are the membership changes a member fault draws from.
var memberOps = []string{"remove-readd", "wipe-readd", "add"}

// plan is what a seed decides besides verify's schedule: the cluster size,
// the fault kind and, for member faults, the membership change. It depends
// on the seed only, so that META_INPROC_SEED=S replays exactly the run S
// of a longer sweep.
type plan struct {
	seed     int64
	nodes    int
	kinds    []verify.FaultKind
	memberOp string
	// scaleOp is the operation of a scale fault.
	scaleOp string
	// extra workload time for kinds whose heal is slow (a membership
	// change joins and promotes a node; kill-all restarts everything and
	// elects every leader), so the "after" window still sees the healed
	// cluster serve.
	extra time.Duration
	// broker turns on verify's broker workloads (sessions, watches, the
	// simulated brokers and the controller checker) besides KV and
	// offsets.
	broker bool
	// atController aims a kill, pause or isolate fault at the leader of
	// metadata-0, the node that runs the controller, instead of the
	// target verify's schedule drew.
	atController bool
}

// planFor gives seed s one fault kind, kinds[s mod n] (n = 14 kinds, or
// the kinds of META_INPROC_KINDS), the member op memberOps[(s/n) mod 3]
// and the scale op verify.ScaleOps[(s/n) mod 2], so that seeds 1..30
// inject every kind at least twice, do each membership change once (seeds
// 1, 15 and 29) and each scale op once (seeds 3 and 17); seeds divisible
// by 7 run on five nodes (among 1..30: isolate and transfer, twice each).
//
// A seed of an odd cycle of the default kinds (s/n odd) whose kind is a
// kill, a pause or a partition (reshardMixed) also splits a data group
// below hot keys (a reshard fault) in the same run, before or after that
// fault as verify's schedule draws: among 1..30, kill at seed 19, isolate
// at 21 (five nodes), split at 22 and pause at 23.
func planFor(seed int64, override []verify.FaultKind) plan {
	ks := inprocKinds()
	if len(override) > 0 {
		ks = override
	}
	n := int64(len(ks))
	pos := func(x, m int64) int64 { return ((x % m) + m) % m }
	p := plan{seed: seed, nodes: 3, kinds: []verify.FaultKind{ks[pos(seed, n)]},
		memberOp: memberOps[pos(seed/n, int64(len(memberOps)))],
		scaleOp:  verify.ScaleOps[pos(seed/n, int64(len(verify.ScaleOps)))]}
	if seed%7 == 0 {
		p.nodes = 5
	}
	if len(override) == 0 && pos(seed/n, 2) == 1 && slices.Contains(reshardMixed, p.kinds[0]) {
		p.kinds = append(p.kinds, verify.FaultReshard)
	}
	for _, k := range p.kinds {
		if k == verify.FaultMember || k == verify.FaultMove || k == verify.FaultScale || k == verify.FaultKillAll || k == verify.FaultReshard {
			p.extra = 4 * time.Second
		}
	}
	// Each further fault of the run: its window and a gap before it.
	p.extra += time.Duration(len(p.kinds)-1) * (faultMax + gapMax)
	return p
}

// reshardMixed are the kinds that a seed of an odd cycle runs together
// with a reshard fault (planFor): the issue's "mixed with partitions,
// kills and pauses".
var reshardMixed = []verify.FaultKind{verify.FaultKill, verify.FaultIsolate, verify.FaultSplit, verify.FaultPause}

// The longest fault window and the longest gap between two faults of a
// run (runConfig's schedule).
const (
	faultMax = 3 * time.Second
	gapMax   = 3 * time.Second
)

// withBroker turns the broker workloads of p on or off. With them on, a
// kill, pause or isolate fault of a seed in an even cycle of the kinds
// (seed/n even: among 1..30 with the 14 default kinds, kill at seed 5,
// isolate at 7, pause at 9) is aimed at the controller's node; the odd
// cycle (kill 19, isolate 21, pause 23) keeps the target verify drew, so
// followers and random nodes are hit too.
func (p plan) withBroker(on bool, kinds int) plan {
	p.broker = on
	p.atController = on && (p.seed/int64(kinds))%2 == 0 && slices.ContainsFunc(p.kinds, hitsController)
	return p
}

// brokerCheckers are the checkers a run with the broker workloads must
// report: a broker run without them would pass without having checked
// anything about sessions, watches or the controller.
var brokerCheckers = []string{verify.CheckerSessions, verify.CheckerWatch, verify.CheckerController}

// hitsController reports whether a fault of kind k takes one node out in
// a way the controller must survive when that node is the one running it
// (the leader of metadata-0): crashed, frozen or cut off from its peers.
func hitsController(k verify.FaultKind) bool {
	return k == verify.FaultKill || k == verify.FaultPause || k == verify.FaultIsolate
}

// runnerSettings come from the environment so a maintainer can run more
// seeds or replay one:
//
//	META_INPROC_SEEDS=N   run seeds 1..N (default 30, -short one per kind: 14)
//	META_INPROC_SEED=S    run only seed S (its plan and schedule)
//	META_INPROC_KINDS=k,… draw each seed's kind from these (verify.ParseKinds)
//	META_INPROC_DURATION  workload time per run (default 10s)
//	META_INPROC_LANES=L   clusters running seeds side by side (default 2)
//	META_INPROC_BROKER=0  without the broker workloads (default: on)
type runnerSettings struct {
	seeds    []int64
	lanes    int
	kinds    []verify.FaultKind
	duration time.Duration
	// broker: the broker workloads run on every seed.
	broker bool
	// sweep is true for the default seed set, whose coverage is checked.
	sweep bool
}

func settingsFromEnv(t *testing.T) runnerSettings {
	t.Helper()
	s := runnerSettings{duration: 10 * time.Second, lanes: 2, sweep: true, broker: true}
	n := 30
	if testing.Short() {
		n = len(inprocKinds())
	}
	if v := os.Getenv("META_INPROC_SEEDS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n <= 0 {
			t.Fatalf("META_INPROC_SEEDS=%q: want a positive number", v)
		}
	}
	s.sweep = n >= 30
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
	if v := os.Getenv("META_INPROC_BROKER"); v != "" {
		on, err := strconv.ParseBool(v)
		if err != nil {
			t.Fatalf("META_INPROC_BROKER=%q: want 0 or 1", v)
		}
		s.broker, s.sweep = on, s.sweep && on
	}
	return s
}

// plan returns seed's plan under these settings.
func (s runnerSettings) plan(seed int64) plan {
	p := planFor(seed, s.kinds)
	n := len(inprocKinds())
	if len(s.kinds) > 0 {
		n = len(s.kinds)
	}
	return p.withBroker(s.broker, n)
}

// Controller timings of the in-process clusters: short, so that within a
// 10-second run the simulated brokers fall silent and come back a few
// times (every 2–4 session timeouts) and the controller declares them
// down and reassigns their connectors; long enough that a broker
// heartbeating on time under -race on a busy 2-core machine is not
// declared down (four heartbeats per timeout).
const (
	brokerHeartbeat = 500 * time.Millisecond
	brokerTimeout   = 2 * time.Second
	// assignSlack is verify's AssignSlack: after the cluster healed, a
	// connector must be assigned within brokerTimeout + assignSlack. The
	// controller checks every 200 ms and writes an assignment through
	// one raft round, so a connector whose owner is declared down is
	// reassigned in well under a second on a quiet machine; the rest is
	// room for -race and the other lane.
	assignSlack = 3 * time.Second
)

// replicationFactor is the replication factor of every group of the
// in-process clusters, metadata-0's included: metanode's default. The
// 3-node lanes hold every group on every node; the 5-node lane places each
// group on 3 of its 5 nodes, so that placement runs under faults: groups
// on replica sets smaller than the member list, nodes that hold no
// replica of metadata-0 following the directory from one that does,
// requests forwarded to groups a node does not host, moves between
// members, replicas re-created on the other members when one leaves.
// metadata-0 is at 3 too (not 5): the default a real pool runs, and the
// root group's own placement (its replicas moved or re-created, the
// controller on a subset of the nodes) is what a 5-node RF-5 metadata-0
// would leave untested.
const replicationFactor = 3

// clusterOptions: 2 offset and 2 data groups so that routing and
// multi-group batches are exercised; snapshots small and frequent so that
// a lag fault (and a long kill) needs a snapshot install within a run;
// short controller timings (above) for the broker workloads; every group
// on replicationFactor nodes (all of them on a 3-node cluster); replica
// hash checks every second or so.
func clusterOptions(nodes int, seed uint64) metanodetest.Options {
	return metanodetest.Options{Nodes: nodes, OffsetGroups: 2, DataGroups: 2, Seed: seed,
		Configure: func(cfg *metanode.Config) {
			cfg.ReplicationFactor, cfg.MetadataReplicationFactor = replicationFactor, replicationFactor
			cfg.SnapshotThreshold = 64
			cfg.TrailingLogs = 32
			cfg.SnapshotInterval = 300 * time.Millisecond
			cfg.ReconcileInterval = 300 * time.Millisecond
			// Hash checks run under every fault: a replica fenced by
			// mistake would stop converging and fail the run.
			cfg.HashCheckInterval = time.Second
		},
		Controller: func(cfg *controller.Config) {
			cfg.HeartbeatInterval = brokerHeartbeat
			cfg.HeartbeatTimeout = brokerTimeout
		}}
}

// lane is one cluster and its nemesis, reused by consecutive runs.
type lane struct {
	t     *testing.T
	nodes int
	c     *metanodetest.Cluster
	nem   *metanodetest.Nemesis
	// broken: the last run failed; the next one needs a fresh cluster.
	broken bool
	// noHashChecks turns the replica hash checks off (the planted bugs'
	// lanes: a replica a planted bug damages would be fenced, turning its
	// operations into unknown outcomes, and one such nosync history once
	// drove porcupine's search past the machine's memory).
	noHashChecks bool
	// adjust, when set, changes the cluster's options before each start
	// (the operations faults' lanes: a small filesystem per node, an
	// older feature level).
	adjust func(*metanodetest.Options)
	stats  []metanodetest.NemesisStats // of nemeses already retired
}

// start (re)starts the lane's cluster. It runs on the lane's goroutine.
func (l *lane) start() {
	l.t.Helper()
	l.retire()
	opts := clusterOptions(l.nodes, uint64(len(l.stats)))
	if l.noHashChecks {
		configure := opts.Configure
		opts.Configure = func(cfg *metanode.Config) {
			configure(cfg)
			cfg.HashCheckInterval = 0
		}
	}
	if l.adjust != nil {
		l.adjust(&opts)
	}
	l.c = metanodetest.Start(l.t, opts)
	nem, err := metanodetest.NewNemesis(l.c, metanodetest.NemesisOptions{})
	if err != nil {
		l.t.Fatal(err)
	}
	l.nem, l.broken = nem, false
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := nem.WaitHealthy(ctx); err != nil {
		l.t.Fatalf("new cluster: %v", err)
	}
}

// full reports whether the lane's cluster has no room for p's reshard
// faults (each one adds a data group for good; verify.MaxDataGroups
// bounds them): the seed then starts on a fresh cluster.
func (l *lane) full(p plan) bool {
	return l.nem != nil && slices.Contains(p.kinds, verify.FaultReshard) && l.nem.ReshardRoom() < 2
}

// retire stops the current cluster, keeping its nemesis's stats.
func (l *lane) retire() {
	if l.nem == nil {
		return
	}
	l.stats = append(l.stats, l.nem.Stats())
	_ = l.nem.Close()
	l.c.StopAll()
	l.nem, l.c = nil, nil
}

// stop retires the cluster (so the next lane of the slot has the CPU) and
// returns the stats of every nemesis the lane used.
func (l *lane) stop() []metanodetest.NemesisStats {
	l.retire()
	return l.stats
}

// runConfig is one short run: both workloads (KV and offsets) on every
// node, a warm-up, one fault of 2–3s (one per kind of p: a seed that mixes
// a reshard in has two, 1–3 s apart), and a cool-down long enough for a
// slow heal (restart and election, re-add and catch-up take up to a few
// seconds) plus an "after" window in which the healed cluster must serve.
// One fault per kind, not more: more short runs cover as much, and each
// fault waits for the cluster to recover from the one before.
func runConfig(l *lane, p plan, dir string, d time.Duration, log *slog.Logger) verify.RunConfig {
	cfg := verify.DefaultRunConfig()
	cfg.Seed = p.seed
	cfg.Dir = dir
	cfg.Endpoints = l.nem.Endpoints()
	cfg.Dial = l.nem.Dialer(log, cfg.OpTimeout)
	cfg.Nemesis = l.nem
	cfg.Kinds = p.kinds
	cfg.Duration = d
	// A scale replace heal re-creates every group twice (on the others,
	// then back on the returning node): give it room on a loaded machine.
	cfg.NemesisTimeout = 2 * time.Minute
	cfg.Schedule = scheduleFor(p, d)
	if p.broker {
		cfg.Workload = cfg.Workload.WithBroker()
		cfg.Workload.AssignSlack = assignSlack
	}
	if p.atController {
		cfg.Faults = verify.Schedule(cfg.Seed, cfg.Kinds, cfg.Duration, cfg.Schedule)
		for i := range cfg.Faults {
			if hitsController(cfg.Faults[i].Kind) {
				cfg.Faults[i].Target = verify.LeaderOf(metapb.MetadataGroup)
			}
		}
	}
	cfg.ConvergeTimeout = 30 * time.Second
	// Five successful ops in each window prove the cluster served; the
	// machine may be slow (-race, other tests), so do not ask for more.
	cfg.MinOps = 5
	cfg.Logger = log
	return cfg
}

// sameKinds reports whether a and b hold the same kinds, each as often.
func sameKinds(a, b []verify.FaultKind) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// scheduleFor is the fault schedule of p's run of length d: one fault
// per kind, each 2–3 s, after a warm-up of 1.5 s.
func scheduleFor(p plan, d time.Duration) verify.ScheduleOptions {
	return verify.ScheduleOptions{
		Groups:    metapb.Groups(2, 2),
		Warmup:    1500 * time.Millisecond,
		Cooldown:  d - 1500*time.Millisecond - faultMax - time.Duration(len(p.kinds)-1)*(faultMax+gapMax),
		MinFault:  2 * time.Second,
		MaxFault:  faultMax,
		MaxGap:    gapMax,
		MemberOps: []string{p.memberOp},
		ScaleOps:  []string{p.scaleOp},
		MaxFaults: len(p.kinds),
	}
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

// runSeed runs one seed on the lane and reports its verdict; a failed run
// leaves its folder outside the test's temporary directory and marks the
// lane broken.
//
// A run whose only complaint is the activity checker (too few successful
// ops in some window: the machine starved the cluster, e.g. other tests
// under -race) proved nothing either way; it is run once more, on the same
// seed, and both attempts are logged. Any other failure counts at once.
func runSeed(t *testing.T, l *lane, p plan, base string, d time.Duration) (res *verify.Result, retried bool) {
	t.Helper()
	for attempt := 1; ; attempt++ {
		dir := filepath.Join(base, fmt.Sprintf("seed-%d-attempt-%d", p.seed, attempt))
		res, err := runOnce(t, l, p, dir, d)
		if err == nil && res.Verdict == verify.Valid && len(res.CoverageGaps) > 0 {
			// The cluster passed, but some checker judged nothing it was
			// meant to judge in this run (counted; see brokerCoverage).
			t.Logf("seed %d: coverage gap (the suite's, not the cluster's): %q", p.seed, res.CoverageGaps)
		}
		if err == nil && res.Verdict == verify.Valid {
			return res, attempt > 1
		}
		if attempt == 1 && err == nil && verify.Starved(res.Checks) {
			var short []string
			for _, c := range res.Checks {
				if c.Verdict != verify.Valid {
					short = append(short, fmt.Sprintf("%s=%s", c.Checker, c.Verdict))
				}
			}
			t.Logf("seed %d: too little to judge (%s: a starved machine?); running it again", p.seed, strings.Join(short, " "))
			hctx, hcancel := context.WithTimeout(context.Background(), 60*time.Second)
			err := l.nem.WaitHealthy(hctx)
			hcancel()
			if err == nil {
				continue
			}
			t.Logf("seed %d: cluster not healthy after the run: %v", p.seed, err)
		}
		t.Errorf("seed %d: got verdict %s (err %v), want valid; run folder kept at %s (metaverify check DIR)",
			p.seed, res.Verdict, err, keep(t, dir, p.seed))
		l.broken = true
		return res, attempt > 1
	}
}

// runOnce runs one seed's schedule into dir and logs the faults and the
// verdicts. After a valid run it waits until the cluster is healthy again
// (an unhealthy cluster makes the run fail).
func runOnce(t *testing.T, l *lane, p plan, dir string, d time.Duration) (*verify.Result, error) {
	t.Helper()
	log := metanodetest.NewLogger(t)
	cfg := runConfig(l, p, dir, d+p.extra, log)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	res, err := verify.Run(ctx, cfg)
	if res == nil {
		return &verify.Result{Verdict: verify.Unknown}, fmt.Errorf("run not carried out: %w", err)
	}
	for i := range res.Faults {
		f := &res.Faults[i]
		line := fmt.Sprintf("seed %d fault %s began %s ended %s", p.seed, f.String(), f.Began.Round(time.Millisecond), f.Ended.Round(time.Millisecond))
		if r := f.Recovery; r != nil {
			line += fmt.Sprintf(" recovered in %s (%s)", r.Took.Round(time.Millisecond), r.Slowest)
			if !r.Recovered() {
				line += fmt.Sprintf(" NOT RECOVERED: %v", r.Missing)
			}
		}
		if f.Err != "" {
			line += " error: " + f.Err
		}
		t.Log(line)
	}
	var verdicts []string
	for _, c := range res.Checks {
		v := fmt.Sprintf("%s=%s(%d/%d)", c.Checker, c.Verdict, c.Judged, c.Total)
		if c.Verdict != verify.Valid {
			v += fmt.Sprintf(" (failing %v: %s)", c.Failing, c.Details)
		}
		verdicts = append(verdicts, v)
	}
	workloads := "kv+offsets"
	if p.broker {
		var b verify.Counts
		for _, c := range res.BrokerOps {
			b.OK, b.Fail, b.Unknown = b.OK+c.OK, b.Fail+c.Fail, b.Unknown+c.Unknown
		}
		workloads = fmt.Sprintf("kv+offsets+broker (broker ops %d ok %d fail %d unknown %d)",
			b.OK+b.Fail+b.Unknown, b.OK, b.Fail, b.Unknown)
	}
	t.Logf("seed %d nodes %d kinds %v %s: verdict %s in %s; ops %d ok %d fail %d unknown %d; %s",
		p.seed, p.nodes, p.kinds, workloads, res.Verdict, time.Since(start).Round(100*time.Millisecond),
		res.Ops.Total, res.Ops.OK, res.Ops.Fail, res.Ops.Unknown, strings.Join(verdicts, " "))
	if err != nil || res.Verdict != verify.Valid {
		return res, err
	}
	if p.broker {
		for _, name := range brokerCheckers {
			if res.Check(name) == nil {
				return res, fmt.Errorf("broker workloads on but no %s checker in the result", name)
			}
		}
	}
	hctx, hcancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer hcancel()
	if err := l.nem.WaitHealthy(hctx); err != nil {
		return res, fmt.Errorf("cluster not healthy after the run: %w", err)
	}
	return res, nil
}

// TestInProcessFaultRuns runs seeded fault runs against in-process
// clusters (3 nodes; every seventh seed 5 nodes, each group on 3 of them),
// with both workloads and one fault per run, the kinds drawn so that every
// supported kind is covered, and checks every run's verdict.
//
// A lane is one cluster that runs its seeds one after the other: each run
// heals, converges and leaves the cluster healthy, so the next run starts
// without paying for a new cluster (a failed run gets the next seed a
// fresh one). Slots run side by side, since a run mostly waits for its
// fault windows; each slot runs its lanes one after the other, so at most
// META_INPROC_LANES clusters run at once. See verify/README.md,
// "In-process runs", for the environment variables.
func TestInProcessFaultRuns(t *testing.T) {
	t.Parallel() // beside TestInProcessOpsFaults
	s := settingsFromEnv(t)
	began := time.Now()
	slots := planSlots(s)
	var (
		mu       sync.Mutex
		stats    []metanodetest.NemesisStats
		verdicts = map[verify.Verdict]int{}
		retries  int
		broker   = newBrokerCoverage()
		recovery = map[verify.FaultKind][]time.Duration{}
	)
	t.Run("slots", func(t *testing.T) {
		for i, slot := range slots {
			t.Run(fmt.Sprintf("slot=%d", i+1), func(t *testing.T) {
				t.Parallel()
				for _, spec := range slot {
					t.Run(fmt.Sprintf("nodes=%d", spec.nodes), func(t *testing.T) {
						l := &lane{t: t, nodes: spec.nodes}
						defer func() {
							mu.Lock()
							stats = append(stats, l.stop()...)
							mu.Unlock()
						}()
						base := t.TempDir()
						for j, p := range spec.plans {
							if l.nem == nil || l.broken || l.full(p) {
								l.start()
							}
							t.Run(fmt.Sprintf("seed=%d", p.seed), func(t *testing.T) {
								res, retried := runSeed(t, l, p, base, s.duration)
								mu.Lock()
								verdicts[res.Verdict]++
								if retried {
									retries++
								}
								for _, f := range res.Faults {
									if f.Recovery.Recovered() {
										recovery[f.Kind] = append(recovery[f.Kind], f.Recovery.Took)
									}
								}
								if p.broker && res.Verdict == verify.Valid {
									broker.add(res)
								}
								mu.Unlock()
								if j == 0 && res.Verdict == verify.Valid {
									recheck(t, res)
								}
							})
						}
					})
				}
			})
		}
	})
	t.Logf("%d seeds in %s: %v (%d run again after too little activity)",
		len(s.seeds), time.Since(began).Round(time.Second), verdicts, retries)
	logRecovery(t, recovery)
	checkCoverage(t, stats, s.sweep && !t.Failed())
	broker.check(t, s.sweep && !t.Failed())
}

// logRecovery logs the recovery times per fault kind over every seed:
// how long after each heal every group served again.
func logRecovery(t *testing.T, times map[verify.FaultKind][]time.Duration) {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(times)) {
		ts := times[k]
		slices.Sort(ts)
		parts = append(parts, fmt.Sprintf("%s %d: p50 %s p99 %s max %s", k, len(ts), verify.Percentile(ts, 50).Round(time.Millisecond),
			verify.Percentile(ts, 99).Round(time.Millisecond), ts[len(ts)-1].Round(time.Millisecond)))
	}
	t.Logf("recovery after heal, per kind: %s", strings.Join(parts, "; "))
}

// brokerCoverage counts what the valid runs with the broker workloads
// exercised: the fault kinds injected (and healed) while they ran, and
// the kill, pause and isolate faults that hit the controller's node.
type brokerCoverage struct {
	runs int
	// judged of declared: down declarations the controller checker
	// judged, of those seen, over every run.
	judged, declared int
	injected         map[verify.FaultKind]int
	atController     map[verify.FaultKind]int
}

func newBrokerCoverage() *brokerCoverage {
	return &brokerCoverage{injected: map[verify.FaultKind]int{}, atController: map[verify.FaultKind]int{}}
}

func (b *brokerCoverage) add(res *verify.Result) {
	b.runs++
	if c := res.Check(verify.CheckerController); c != nil {
		b.judged += c.Judged
		b.declared += c.Total
	}
	for i := range res.Faults {
		f := &res.Faults[i]
		if f.Err != "" || f.Ended <= f.Began {
			continue
		}
		b.injected[f.Kind]++
		if hitsController(f.Kind) && f.Target == verify.LeaderOf(metapb.MetadataGroup) {
			b.atController[f.Kind]++
		}
	}
}

// check logs the coverage and, if assert is set (the default sweep
// passed), wants every supported kind injected under the broker
// workloads and each of kill, pause and isolate aimed at the controller's
// node at least once.
func (b *brokerCoverage) check(t *testing.T, assert bool) {
	t.Helper()
	t.Logf("broker workloads: %d valid runs; kinds injected %v; at the controller's node (leader:%s) %v; controller judged %d of %d down declarations",
		b.runs, b.injected, metapb.MetadataGroup, b.atController, b.judged, b.declared)
	if !assert {
		return
	}
	if b.runs > 0 && b.judged == 0 {
		t.Errorf("coverage failure of the suite (not of the cluster): the controller checker judged 0 of %d down declarations in %d runs",
			b.declared, b.runs)
	}
	for _, k := range inprocKinds() {
		if b.injected[k] == 0 {
			t.Errorf("broker workloads under %s: got 0 runs, want at least 1", k)
		}
		if hitsController(k) && b.atController[k] == 0 {
			t.Errorf("%s of the controller's node (leader:%s) under the broker workloads: got 0, want at least 1",
				k, metapb.MetadataGroup)
		}
	}
}

// TestRunnerPlans checks what the default sweeps (30 seeds, and the 14 of
// -short) plan, before any cluster starts: every kind under the broker
// workloads, and kill, pause and isolate aimed at the controller's node
// at least once each and left to verify's draw at least once each in the
// full sweep; a reshard in the same run as each of reshardMixed in the
// full sweep, each seed's schedule holding one fault of each of its
// kinds; seeds on the 5-node lane, whose groups are placed on 3 of its
// nodes.
func TestRunnerPlans(t *testing.T) {
	for _, n := range []int64{int64(len(inprocKinds())), 30} {
		s := runnerSettings{broker: true, lanes: 2}
		for seed := int64(1); seed <= n; seed++ {
			s.seeds = append(s.seeds, seed)
		}
		kinds := map[verify.FaultKind]int{}
		mixed := map[verify.FaultKind]int{} // kinds run with a reshard
		aimed := map[verify.FaultKind]int{}
		drawn := map[verify.FaultKind]int{}
		five := 0
		var work []time.Duration // planned per slot
		for _, slot := range planSlots(s) {
			work = append(work, 0)
			for _, l := range slot {
				for _, p := range l.plans {
					work[len(work)-1] += planCost(p)
				}
				if l.nodes == 5 {
					five += len(l.plans)
				}
				for _, p := range l.plans {
					if !p.broker {
						t.Errorf("%d seeds: seed %d: broker workloads off, want on", n, p.seed)
					}
					if len(p.kinds) > 1 {
						mixed[p.kinds[0]]++
					}
					// The schedule holds one fault of each of the
					// seed's kinds.
					d := 10*time.Second + p.extra
					var got []verify.FaultKind
					for _, f := range verify.Schedule(p.seed, p.kinds, d, scheduleFor(p, d)) {
						got = append(got, f.Kind)
					}
					if !sameKinds(got, p.kinds) {
						t.Errorf("%d seeds: seed %d: scheduled faults %v, want one of each of %v", n, p.seed, got, p.kinds)
					}
					// A second fault does not eat the time left for
					// the heal and the "after" window.
					if cd, base := scheduleFor(p, d).Cooldown, scheduleFor(plan{kinds: p.kinds[:1]}, 10*time.Second).Cooldown; cd < base {
						t.Errorf("%d seeds: seed %d (%v): cool-down %v, want at least %v as a one-fault run has", n, p.seed, p.kinds, cd, base)
					}
					for _, k := range p.kinds {
						kinds[k]++
						switch {
						case hitsController(k) && p.atController:
							aimed[k]++
						case hitsController(k):
							drawn[k]++
						}
					}
				}
			}
		}
		if five == 0 {
			t.Errorf("%d seeds: got no seed on the 5-node lane, want at least 1", n)
		}
		// The slots end about together: within one long run.
		if d := slices.Max(work) - slices.Min(work); len(work) != 2 || d > time.Minute {
			t.Errorf("%d seeds: work planned per slot %v, want 2 slots within a minute of each other", n, work)
		}
		for _, k := range reshardMixed {
			if n == 30 && mixed[k] == 0 {
				t.Errorf("%d seeds: %s with a reshard in the same run: got 0 seeds, want at least 1", n, k)
			}
		}
		if len(mixed) != len(reshardMixed) && n == 30 || len(mixed) > len(reshardMixed) {
			t.Errorf("%d seeds: kinds run with a reshard: %v, want each of %v once", n, mixed, reshardMixed)
		}
		for _, k := range inprocKinds() {
			if kinds[k] == 0 {
				t.Errorf("%d seeds: kind %s: got 0 seeds, want at least 1", n, k)
			}
			if hitsController(k) && aimed[k] == 0 {
				t.Errorf("%d seeds: %s at the controller's node: got 0 seeds, want at least 1", n, k)
			}
			if hitsController(k) && n == 30 && drawn[k] == 0 {
				t.Errorf("%d seeds: %s at a drawn target: got 0 seeds, want at least 1", n, k)
			}
		}
	}
	// The 5-node lane runs every group on 3 of its nodes (placement under
	// faults); the 3-node lanes hold every group on every node.
	for _, nodes := range []int{3, 5} {
		cfg := metanode.DefaultConfig()
		clusterOptions(nodes, 0).Configure(&cfg)
		if want := min(nodes, 3); cfg.ReplicationFactor != want || cfg.MetadataReplicationFactor != want {
			t.Errorf("%d-node lane: replication factors %d (metadata-0 %d), want %d (%d)",
				nodes, cfg.ReplicationFactor, cfg.MetadataReplicationFactor, want, want)
		}
	}
	if p := (runnerSettings{broker: false}).plan(7); p.broker || p.atController {
		t.Errorf("broker workloads off: got plan %+v, want broker and atController false", p)
	}
}

// laneSpec is the seeds one cluster of one size runs, in order.
type laneSpec struct {
	nodes int
	plans []plan
}

// planSlots spreads the seeds over s.lanes slots, one 3-node lane each,
// and one lane of the 5-node seeds after the 3-node lane of the first
// slot: each 3-node seed goes, in seed order, to the slot with the least
// work planned so far (planCost), so that the slots end about together
// (by count alone, the slot with the 5-node lane ran 2.5 minutes longer:
// ci46, 8m52s against 6m18s).
func planSlots(s runnerSettings) [][]*laneSpec {
	slots := make([][]*laneSpec, s.lanes)
	work := make([]time.Duration, s.lanes)
	var three []*laneSpec
	for i := range slots {
		l := &laneSpec{nodes: 3}
		three = append(three, l)
		slots[i] = []*laneSpec{l}
	}
	five := &laneSpec{nodes: 5}
	var threes []plan
	for _, seed := range s.seeds {
		if p := s.plan(seed); p.nodes == 5 {
			five.plans = append(five.plans, p)
			work[0] += planCost(p)
		} else {
			threes = append(threes, p)
		}
	}
	slots[0] = append(slots[0], five)
	for _, p := range threes {
		i := 0
		for j := range work {
			if work[j] < work[i] {
				i = j
			}
		}
		three[i].plans = append(three[i].plans, p)
		work[i] += planCost(p)
	}
	for i := range slots {
		slots[i] = slices.DeleteFunc(slots[i], func(l *laneSpec) bool { return len(l.plans) == 0 })
	}
	return slices.DeleteFunc(slots, func(ls []*laneSpec) bool { return len(ls) == 0 })
}

// planCost is about how long p's run takes on the 2-core CI machine: its
// workload and about 20 s of set-up, final reads and checks (5-node runs
// about 30 s: ci46's 5-node lane ran 4 seeds in 1m57s).
func planCost(p plan) time.Duration {
	c := 10*time.Second + p.extra + 20*time.Second
	if p.nodes == 5 {
		c += 10 * time.Second
	}
	return c
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

// checkCoverage logs what the nemeses did and, if assert is set (the
// default sweep passed), wants every supported kind injected, every member
// op done, at least one lag fault that really needed a snapshot and at
// least one leadership transfer.
func checkCoverage(t *testing.T, stats []metanodetest.NemesisStats, assert bool) {
	t.Helper()
	injected := map[verify.FaultKind]int{}
	ops := map[string]int{}
	scale := map[string]int{}
	var lagSnaps, transfers, slow, moves int
	for _, s := range stats {
		for k, v := range s.ScaleOps {
			scale[k] += v
		}
		for k, v := range s.Injected {
			injected[k] += v
		}
		for k, v := range s.MemberOps {
			ops[k] += v
		}
		lagSnaps += s.LagSnapshots
		transfers += s.Transfers
		slow += s.SlowRemovals
		moves += s.Moves
	}
	t.Logf("injected %v; member ops %v; scale ops %v; replicas moved %d; lag snapshot installs %d; leadership transfers %d; slow removals %d",
		injected, ops, scale, moves, lagSnaps, transfers, slow)
	if !assert {
		return
	}
	for _, k := range append(inprocKinds(), verify.FaultReshard) {
		if injected[k] == 0 {
			t.Errorf("fault kind %s: got 0 injections, want at least 1", k)
		}
	}
	for _, op := range memberOps {
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
	for _, op := range verify.ScaleOps {
		if scale[op] == 0 {
			t.Errorf("scale op %s: got 0, want at least 1", op)
		}
	}
	if moves == 0 {
		t.Errorf("move: got 0 replicas moved, want at least 1")
	}
}
