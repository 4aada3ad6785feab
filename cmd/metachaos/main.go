package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	tclog "github.com/testcontainers/testcontainers-go/log"

	"github.com/metamq/meta/chaos"
	"github.com/metamq/meta/rpc/transport"
	"github.com/metamq/meta/verify"
)

// exitFailed is the exit status of a suite in which a run did not pass;
// usage and set-up errors exit with 2.
const (
	exitFailed = 1
	exitError  = 2
)

func main() {
	// testcontainers reads its configuration once, at its first use; there
	// is no registry to pull the Ryuk reaper from, and chaos cleans up by
	// itself (Cluster.Terminate, Sweep).
	os.Setenv("TESTCONTAINERS_RYUK_DISABLED", "true")
	code, err := execute(os.Args[1:], os.Stdout, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "metachaos:", err)
	}
	os.Exit(code)
}

// errSuiteFailed marks a suite that ran but did not pass everything.
var errSuiteFailed = errors.New("not every run passed")

func execute(args []string, stdout, stderr io.Writer) (int, error) {
	root := command(stdout, stderr)
	root.SetArgs(args)
	err := root.Execute()
	switch {
	case err == nil:
		return 0, nil
	case errors.Is(err, errSuiteFailed):
		return exitFailed, nil
	}
	return exitError, err
}

// suite holds the flags shared by run and smoke.
type suite struct {
	binary, bug, out, logLevel        string
	previous                          string
	race, keepData, spare, stopOnFail bool
	tls                               bool
	nodes, offsetGroups, dataGroups   int
	replicationFactor                 int
	snapshotThreshold, trailingLogs   uint64
	snapshotInterval                  time.Duration
	hashCheckInterval                 time.Duration
	// workload is verify's workload set; the broker settings shape its
	// controller workload and the nodes' controllers.
	workload, atController                      string
	brokerHeartbeat, brokerTimeout, assignSlack time.Duration
	stdout, stderr                              io.Writer
}

func command(stdout, stderr io.Writer) *cobra.Command {
	s := &suite{stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:           "metachaos",
		Short:         "Run meta nodes in Docker containers, break them, and check what clients saw",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	pf := root.PersistentFlags()
	pf.StringVar(&s.binary, "binary", "bin/metanode", "metanode binary the node image is built from (make build puts it there)")
	pf.StringVar(&s.bug, "bug", "", "planted bug to switch on: builds ./cmd/metanode with -tags metabugs (into --out/.bin) and runs the nodes with META_BUG=<bug> (localreads, nosync; nospacelate: the NOSPACE refusal comes after the write, which disk-full faults expose; dupreplica: placement may pick a node that holds a replica already, which the placement check catches after member faults; openauth, with --tls: a caller without credentials let in as an admin, which the auth check catches)")
	pf.StringVar(&s.previous, "previous", "", "an older release that runs holding upgrade on even seeds start from, the upgrade fault moving each node to --binary: a metanode binary, or a commit of this repository (built from its history into --out/.bin; make chaos-upgrade passes PREVIOUS_RELEASE); empty: those runs start the same binary at --feature-level 1")
	pf.BoolVar(&s.race, "race", false, "build ./cmd/metanode with -race (into --out/.bin) and use that binary")
	pf.StringVar(&s.out, "out", chaos.DefaultRoot, "directory the run folders go in")
	pf.IntVar(&s.nodes, "nodes", 3, "cluster size (3 or 5)")
	pf.IntVar(&s.offsetGroups, "offset-groups", 2, "offset groups of each cluster")
	pf.IntVar(&s.dataGroups, "data-groups", 2, "data groups of each cluster")
	pf.IntVar(&s.replicationFactor, "replication-factor", 0, "replicas of each offset and data group, passed as the nodes' --replication-factor (0: metanode's default, 3); below --nodes each group runs on its own replica set, faults aimed at a follower hit one of its replicas, and a move needs no spare")
	pf.Uint64Var(&s.snapshotThreshold, "snapshot-threshold", 256, "nodes' --snapshot-threshold (small, so snapshots happen within a run)")
	pf.Uint64Var(&s.trailingLogs, "trailing-logs", 64, "nodes' --trailing-logs (small, so a lagging follower needs a snapshot)")
	pf.DurationVar(&s.snapshotInterval, "snapshot-interval", time.Second, "nodes' --snapshot-interval, passed only if the binary has that flag")
	pf.DurationVar(&s.hashCheckInterval, "hash-check-interval", 2*time.Second, "nodes' --hash-check-interval (replica hash checks; a replica fenced by mistake fails convergence), passed only if the binary has that flag; 0: metanode's default")
	pf.BoolVar(&s.spare, "spare", true, "create a spare node for member op=add")
	pf.BoolVar(&s.tls, "tls", false, "mutual TLS and authentication on every node (the harness connects as an admin); smoke plays its last run (membership) with TLS whatever this says")
	pf.BoolVar(&s.keepData, "keep-data", false, "keep the nodes' data directories of passing runs too")
	pf.BoolVar(&s.stopOnFail, "stop-on-failure", false, "stop the suite after the first run that does not pass")
	pf.StringVar(&s.logLevel, "log-level", "warn", "level of the harness log on stderr (every run folder has chaos.log at debug)")
	pf.StringVar(&s.workload, "workload", "broker", "verify's workload set: broker (KV, offsets, sessions, watches, simulated brokers and the controller checker) or default (KV and offsets)")
	pf.DurationVar(&s.brokerHeartbeat, "broker-heartbeat-interval", 500*time.Millisecond, "nodes' --broker-heartbeat-interval (short, so brokers are declared down and come back within a run; 0: metanode's default)")
	pf.DurationVar(&s.brokerTimeout, "broker-session-timeout", 2*time.Second, "nodes' --broker-session-timeout (0: metanode's default)")
	pf.DurationVar(&s.assignSlack, "assign-slack", 5*time.Second, "broker workload: once the cluster is whole, connectors must be assigned within the session timeout plus this")
	pf.StringVar(&s.atController, "at-controller", "kill,pause,isolate", "fault kinds whose first fault in each run is aimed at the leader of metadata-0, the node running the controller (none: keep the drawn targets)")

	var nemesis string
	var dur time.Duration
	var seed int64
	var runs int
	run := &cobra.Command{
		Use:   "run",
		Short: "Run N checked runs with seeds S, S+1, ... and print a table; exit 0 only if every run passed",
		Example: "  metachaos run --nodes 3 --nemesis kill,pause,partition,bridge,member --time 60s --seed 7 --runs 10\n" +
			"  metachaos run --nemesis all --runs 20                      # make chaos\n" +
			"  metachaos run --bug localreads --nemesis partition,pause --runs 10",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			kinds, err := parseKinds(nemesis, stderr)
			if err != nil {
				return err
			}
			for _, k := range []verify.FaultKind{verify.FaultMove, verify.FaultScale} {
				if s.spare || !slices.Contains(kinds, k) || !needsSpare(k, s.replicationFactor, s.nodes) {
					continue
				}
				// Scaling, and moves where every node holds every group,
				// need a node beyond the cluster: the spare.
				if slices.Contains(strings.Split(nemesis, ","), string(k)) {
					return fmt.Errorf("--nemesis %s needs the spare node (--spare)%s", k, spareHint(k))
				}
				kinds = slices.DeleteFunc(kinds, func(x verify.FaultKind) bool { return x == k })
				fmt.Fprintf(stderr, "metachaos: note: %s left out of \"all\": it needs the spare node (--spare)%s\n", k, spareHint(k))
			}
			if runs < 1 {
				return fmt.Errorf("--runs %d: want at least 1", runs)
			}
			if !cmd.Flags().Changed("seed") {
				seed = time.Now().Unix() % 100000
			}
			plan := make([]planned, runs)
			for i := range plan {
				plan[i] = planned{seed: seed + int64(i), kinds: kinds, dur: dur, tls: s.tls}
			}
			return s.play(cmd.Context(), plan, kinds)
		},
	}
	rf := run.Flags()
	rf.StringVar(&nemesis, "nemesis", "all", "fault kinds: "+kindNames()+", partition (= isolate,split,bridge,oneway) or all")
	rf.DurationVar(&dur, "time", 60*time.Second, "workload time of each run, faults included")
	rf.Int64Var(&seed, "seed", 0, "seed of the first run (default: from the clock, printed)")
	rf.IntVar(&runs, "runs", 1, "number of runs")

	var smokeSeed int64
	var smokeTime time.Duration
	smoke := &cobra.Command{
		Use:   "smoke",
		Short: "Every supported fault kind at least once, in four runs (make chaos-smoke)",
		Long: "smoke plays four runs that split the supported fault kinds between them\n" +
			"(processes: kill, kill-all, pause, member; partitions, a replica move and a split: isolate, split,\n" +
			"bridge, oneway, move, reshard;\n" +
			"unstable and scaling: flap, delay, transfer, lag, scale; then membership alone: add, remove-readd,\n" +
			"wipe-readd, with mutual TLS and authentication on), so each kind is injected at least once, and fails unless every run\n" +
			"passed and every kind was injected.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var plan []planned
			var all []verify.FaultKind
			for i, g := range smokeGroups {
				// The last run (membership: nodes join with their
				// certificates) has TLS and authentication on.
				plan = append(plan, planned{seed: smokeSeed + int64(i), kinds: g, dur: smokeTime, tls: i == len(smokeGroups)-1 || s.tls})
				all = append(all, g...)
			}
			return s.play(cmd.Context(), plan, all)
		},
	}
	sf := smoke.Flags()
	sf.Int64Var(&smokeSeed, "seed", 1, "seed of the first run")
	sf.DurationVar(&smokeTime, "time", 60*time.Second, "workload time of each run")

	var images bool
	sweep := &cobra.Command{
		Use:   "sweep",
		Short: "Remove containers and networks that dead chaos runs left behind",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			res, err := chaos.Sweep(cmd.Context(), chaos.SweepOptions{Images: images, Log: s.logger()})
			fmt.Fprintf(stdout, "removed %d containers, %d networks, %d volumes, %d images\n",
				len(res.Containers), len(res.Networks), len(res.Volumes), len(res.Images))
			return err
		},
	}
	sweep.Flags().BoolVar(&images, "images", false, "also remove node images no container uses")

	root.AddCommand(run, smoke, sweep, imageCommand(s), plotCommand(s))
	return root
}

// needsSpare says whether fault kind k needs the spare node on a cluster
// of nodes nodes whose --replication-factor is rf (0: metanode's
// default, which metachaos does not assume): scale always; move unless
// the factor is known to be below the node count, where a member that
// holds no replica of the group takes it.
func needsSpare(k verify.FaultKind, rf, nodes int) bool {
	switch k {
	case verify.FaultScale:
		return true
	case verify.FaultMove:
		return rf == 0 || rf >= nodes
	}
	return false
}

func spareHint(k verify.FaultKind) string {
	if k == verify.FaultMove {
		return " or a --replication-factor below --nodes"
	}
	return ""
}

// smokeGroups split the supported kinds into runs of related faults
// (reshard beside the partitions and the move: splits racing them); the
// last run is membership alone, long enough for each of its operations
// (add, remove-readd, wipe-readd: chaos.Schedule plays them in turn).
var smokeGroups = [][]verify.FaultKind{
	{verify.FaultKill, verify.FaultKillAll, verify.FaultPause, verify.FaultMember},
	{verify.FaultIsolate, verify.FaultSplit, verify.FaultBridge, verify.FaultOneWay, verify.FaultMove, verify.FaultReshard},
	{verify.FaultFlap, verify.FaultDelay, verify.FaultTransfer, verify.FaultLag, verify.FaultScale},
	{verify.FaultMember},
}

func kindNames() string {
	return verify.JoinKinds(verify.AllFaultKinds)
}

// parseKinds parses --nemesis; crashpoint, which the container nemesis
// cannot do, is dropped from "all" with a notice and refused if named.
func parseKinds(s string, stderr io.Writer) ([]verify.FaultKind, error) {
	kinds, err := verify.ParseKinds(s)
	if err != nil {
		return nil, fmt.Errorf("--nemesis: %w", err)
	}
	var out []verify.FaultKind
	for _, k := range kinds {
		if k == verify.FaultCrashpoint {
			if strings.Contains(s, string(verify.FaultCrashpoint)) {
				return nil, fmt.Errorf("--nemesis: crashpoint is not supported: metanode has no crash points")
			}
			fmt.Fprintln(stderr, "metachaos: note: crashpoint left out of \"all\": metanode has no crash points")
			continue
		}
		out = append(out, k)
	}
	return out, nil
}

// parseAtController parses --at-controller: fault kinds, or "none".
func parseAtController(s string) ([]verify.FaultKind, error) {
	if s == "" || s == "none" {
		return nil, nil
	}
	kinds, err := verify.ParseKinds(s)
	if err != nil {
		return nil, fmt.Errorf("--at-controller: %w", err)
	}
	for _, k := range kinds {
		if !chaos.CanAimAtController(k) {
			return nil, fmt.Errorf("--at-controller: %s is not aimed at one node", k)
		}
	}
	return kinds, nil
}

// planned is one run of a suite.
type planned struct {
	seed  int64
	kinds []verify.FaultKind
	dur   time.Duration
	tls   bool
}

func (s *suite) logger() *slog.Logger {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(s.logLevel)); err != nil {
		lv = slog.LevelWarn
	}
	return slog.New(slog.NewTextHandler(s.stderr, &slog.HandlerOptions{Level: lv}))
}

// play prepares the image, sweeps leftovers, plays the runs one after the
// other, and prints the table. It returns errSuiteFailed unless every run
// passed (and, for a suite that names kinds, every kind was injected).
func (s *suite) play(ctx context.Context, plan []planned, kinds []verify.FaultKind) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := s.logger()
	// testcontainers prints a banner and its steps on stdout by default.
	tclog.SetDefault(printfLogger{log})
	if s.nodes < 1 || s.nodes > chaos.MaxNodes-1 {
		return fmt.Errorf("--nodes %d: want 1..%d", s.nodes, chaos.MaxNodes-1)
	}
	if s.replicationFactor < 0 {
		return fmt.Errorf("--replication-factor %d: want 0 (metanode's default) or more", s.replicationFactor)
	}
	workload, err := verify.WorkloadSet(s.workload)
	if err != nil {
		return fmt.Errorf("--workload: %w", err)
	}
	if workload.Brokers > 0 {
		workload.AssignSlack = s.assignSlack
	}
	atController, err := parseAtController(s.atController)
	if err != nil {
		return err
	}
	binary, err := s.prepareBinary(ctx)
	if err != nil {
		return err
	}
	previous, err := s.preparePrevious(ctx, plan)
	if err != nil {
		return err
	}
	bins := []string{binary}
	if previous != "" {
		bins = append(bins, previous)
	}
	meta := map[string]any{"command": "metachaos " + strings.Join(os.Args[1:], " "), "binary": binary}
	if previous != "" {
		meta["previous_binary"] = previous
	}
	if commit, dirty, err := gitCommit(); err == nil {
		meta["git_commit"], meta["git_dirty"] = commit, dirty
	}
	interval := time.Duration(0)
	if s.snapshotInterval > 0 {
		if hasFlag(ctx, "--snapshot-interval", bins...) {
			interval = s.snapshotInterval
		} else {
			fmt.Fprintf(s.stderr, "metachaos: note: %s has no --snapshot-interval flag; raft snapshots every 2-4 minutes, so a lag fault rarely forces a snapshot install within a run\n", binary)
		}
	}
	hashChecks := time.Duration(0)
	if s.hashCheckInterval > 0 && hasFlag(ctx, "--hash-check-interval", bins...) {
		hashChecks = s.hashCheckInterval
	}
	if s.replicationFactor > 0 && !hasFlag(ctx, "--replication-factor", bins...) {
		return fmt.Errorf("--replication-factor: %s has no --replication-factor flag", strings.Join(bins, " or "))
	}
	heartbeat, timeout := s.brokerHeartbeat, s.brokerTimeout
	if (heartbeat > 0 || timeout > 0) && !hasFlag(ctx, "--broker-session-timeout", bins...) {
		fmt.Fprintf(s.stderr, "metachaos: note: %s has no --broker-session-timeout flag; the nodes' controllers keep their defaults\n", binary)
		heartbeat, timeout = 0, 0
	}
	if _, err := chaos.Sweep(ctx, chaos.SweepOptions{Log: log}); err != nil {
		return fmt.Errorf("sweep leftovers: %w", err)
	}
	fmt.Fprintf(s.stdout, "metachaos: building the node image from %s\n", binary)
	img, err := chaos.BuildImage(ctx, binary, chaos.ImageOptions{Log: log})
	if err != nil {
		return err
	}
	var prevImg chaos.Image
	if previous != "" {
		fmt.Fprintf(s.stdout, "metachaos: building the previous release's image from %s\n", previous)
		if prevImg, err = chaos.BuildImage(ctx, previous, chaos.ImageOptions{Log: log}); err != nil {
			return err
		}
		fmt.Fprintf(s.stdout, "metachaos: runs holding upgrade on even seeds start from %s\n", prevImg.Tag)
	}
	var env map[string]string
	if s.bug != "" {
		env = map[string]string{"META_BUG": s.bug}
	}
	fmt.Fprintf(s.stdout, "metachaos: %d runs, image %s, seeds %d..%d, run folders in %s\n",
		len(plan), img.Tag, plan[0].seed, plan[len(plan)-1].seed, s.out)
	rf := "metanode's default"
	if s.replicationFactor > 0 {
		rf = strconv.Itoa(s.replicationFactor)
	}
	fmt.Fprintf(s.stdout, "metachaos: %d nodes, replication factor %s\n", s.nodes, rf)
	fmt.Fprintf(s.stdout, "metachaos: workload %s; broker heartbeat %s, session timeout %s (0: metanode's defaults); first %s of each run at the controller's node\n",
		s.workload, heartbeat, timeout, orNone(atController))

	var reports []*chaos.RunReport
	start := time.Now()
	for i, p := range plan {
		if ctx.Err() != nil {
			break
		}
		var rep *chaos.RunReport
		// A run whose only complaint is activity (too few successful ops
		// in some window: the machine starved the cluster) proved nothing
		// either way; the seed is played once more and the second
		// attempt counts. Both attempts are printed and keep their folders.
		for attempt := 1; attempt <= 2; attempt++ {
			name := fmt.Sprintf("run %d/%d seed %d", i+1, len(plan), p.seed)
			if attempt > 1 {
				name += " (again)"
			}
			pr := newProgress(s.stderr, name)
			var err error
			rep, err = chaos.Run(ctx, chaos.RunOptions{
				Seed: p.seed, Nodes: s.nodes, Kinds: p.kinds, Duration: p.dur, Image: img, Previous: prevImg, Root: s.out, Env: env,
				Spare: s.spare, OffsetGroups: s.offsetGroups, DataGroups: s.dataGroups, ReplicationFactor: s.replicationFactor,
				SnapshotThreshold: s.snapshotThreshold, TrailingLogs: s.trailingLogs, SnapshotInterval: interval,
				HashCheckInterval: hashChecks, BrokerHeartbeat: heartbeat, BrokerSessionTimeout: timeout, Workload: workload, AtController: atController,
				KeepData: s.keepData, Meta: meta, Progress: pr.update, Log: log, TLS: p.tls, WriteCerts: transport.WriteDevCerts,
			})
			pr.done()
			if rep == nil {
				return fmt.Errorf("run %d (seed %d): %w", i+1, p.seed, err)
			}
			if err != nil {
				fmt.Fprintf(s.stderr, "metachaos: run %d (seed %d): %v\n", i+1, p.seed, err)
			}
			fmt.Fprintf(s.stdout, "%s: %s  %d ops%s, %d faults (%s), RF %d, %s  %s\n", name,
				verdictWord(rep.Verdict), rep.Ops.Total, brokerOps(rep), len(rep.Faults), injectedList(rep), rep.ReplicationFactor, rep.Elapsed.Round(time.Second),
				filepath.Join(rep.Dir, chaos.IndexFile))
			if rep.Verdict != verify.Valid {
				for _, c := range rep.Checks {
					if c.Verdict != verify.Valid {
						fmt.Fprintf(s.stdout, "  %s: %s %s\n", c.Checker, c.Verdict, firstLine(c.Details))
					}
				}
			}
			if ctx.Err() != nil || !playAgain(rep, err, attempt) {
				break
			}
			fmt.Fprintf(s.stdout, "  too little activity to judge (a starved machine?); playing seed %d again\n", p.seed)
		}
		reports = append(reports, rep)
		if s.stopOnFail && rep.Verdict != verify.Valid {
			fmt.Fprintf(s.stdout, "stopping after the first run that did not pass (run %d of %d)\n", i+1, len(plan))
			break
		}
	}
	t := chaos.NewTally(reports, kinds)
	fmt.Fprintf(s.stdout, "\n%d runs in %s\n", len(reports), time.Since(start).Round(time.Second))
	if err := t.Write(s.stdout); err != nil {
		return err
	}
	var missing []string
	for _, k := range t.Kinds {
		if k.Faults == 0 {
			missing = append(missing, string(k.Kind))
		}
	}
	if ctx.Err() != nil {
		fmt.Fprintln(s.stdout, "interrupted")
		return errSuiteFailed
	}
	if len(missing) > 0 {
		fmt.Fprintf(s.stdout, "kinds never injected: %s\n", strings.Join(missing, ", "))
	}
	blind := t.Blind()
	if len(blind) > 0 {
		fmt.Fprintf(s.stdout, "COVERAGE FAILURE of the suite (not of the cluster): judged nothing in any run: %s\n", strings.Join(blind, ", "))
	}
	if !t.AllPassed() || len(reports) < len(plan) || len(missing) > 0 || len(blind) > 0 {
		fmt.Fprintln(s.stdout, "FAILED")
		return errSuiteFailed
	}
	fmt.Fprintln(s.stdout, "PASSED")
	return nil
}

// playAgain says whether a run's seed is played once more: its first
// attempt ran to the end and failed only the activity checker.
func playAgain(rep *chaos.RunReport, err error, attempt int) bool {
	return attempt == 1 && err == nil && rep.Err == nil && rep.Verdict != verify.Valid && verify.Starved(rep.Checks)
}

func verdictWord(v verify.Verdict) string {
	switch v {
	case verify.Valid:
		return "PASS"
	case verify.Invalid:
		return "FAIL"
	}
	return "UNKNOWN"
}

// brokerOps renders the broker workloads' op count (empty without them).
func brokerOps(rep *chaos.RunReport) string {
	if len(rep.BrokerOps) == 0 {
		return ""
	}
	n := 0
	for _, c := range rep.BrokerOps {
		n += c.OK + c.Fail + c.Unknown
	}
	return fmt.Sprintf(" + %d broker ops", n)
}

func orNone(kinds []verify.FaultKind) string {
	return cmp.Or(verify.JoinKinds(kinds), "nothing")
}

// firstLine cuts a checker's details to one line of at most 300 bytes.
func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

func injectedList(rep *chaos.RunReport) string {
	inj := rep.Injected()
	var s []string
	for _, k := range verify.AllFaultKinds {
		if inj[k] > 0 {
			s = append(s, fmt.Sprintf("%s×%d", k, inj[k]))
		}
	}
	if len(s) == 0 {
		return "none injected"
	}
	return strings.Join(s, " ")
}

// prepareBinary returns the node binary to use: --binary, or one built
// from ./cmd/metanode with the tags and flags --bug and --race ask for.
func (s *suite) prepareBinary(ctx context.Context) (string, error) {
	if s.bug == "" && !s.race {
		if _, err := os.Stat(s.binary); err != nil {
			return "", fmt.Errorf("--binary: %w (run make build first)", err)
		}
		return s.binary, nil
	}
	name := "metanode"
	args := []string{"build"}
	if s.bug != "" {
		name += "-metabugs"
		args = append(args, "-tags", "metabugs")
	}
	if s.race {
		name += "-race"
		args = append(args, "-race")
	}
	out, err := filepath.Abs(filepath.Join(s.out, ".bin", name))
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return "", err
	}
	args = append(args, "-o", out, "./cmd/metanode")
	fmt.Fprintf(s.stdout, "metachaos: go %s\n", strings.Join(args, " "))
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build %s (run from the repository root): %w\n%s", name, err, b)
	}
	return out, nil
}

// preparePrevious returns the older release's binary (--previous): the
// file it names, or one built from the commit it names (reused from
// --out/.bin when built before); "" when it is not set or no run of plan
// holds upgrade on an even seed.
func (s *suite) preparePrevious(ctx context.Context, plan []planned) (string, error) {
	if s.previous == "" || !slices.ContainsFunc(plan, func(p planned) bool {
		return p.seed%2 == 0 && slices.Contains(p.kinds, verify.FaultUpgrade)
	}) {
		return "", nil
	}
	if st, err := os.Stat(s.previous); err == nil && !st.IsDir() {
		return s.previous, nil
	}
	full, err := exec.CommandContext(ctx, "git", "rev-parse", "--verify", s.previous+"^{commit}").Output()
	if err != nil {
		return "", fmt.Errorf("--previous %s: neither a file nor a commit of this repository (run from its root; a shallow clone lacks history)", s.previous)
	}
	out, err := filepath.Abs(filepath.Join(s.out, ".bin", "metanode-"+strings.TrimSpace(string(full))[:12]))
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(out); err == nil {
		return out, nil
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return "", err
	}
	fmt.Fprintf(s.stdout, "metachaos: building the previous release %s into %s\n", s.previous, out)
	if err := chaos.BuildRelease(ctx, ".", s.previous, out+".tmp"); err != nil {
		return "", fmt.Errorf("--previous: %w", err)
	}
	return out, os.Rename(out+".tmp", out)
}

// printfLogger hands testcontainers' messages to slog at debug level.
type printfLogger struct{ log *slog.Logger }

func (p printfLogger) Printf(format string, args ...any) {
	p.log.Debug("testcontainers: " + strings.TrimSpace(fmt.Sprintf(format, args...)))
}

// hasFlag reports whether every binary's --help lists flag.
func hasFlag(ctx context.Context, flag string, binaries ...string) bool {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for _, b := range binaries {
		out, _ := exec.CommandContext(ctx, b, "--help").CombinedOutput()
		if !strings.Contains(string(out), flag+" ") {
			return false
		}
	}
	return true
}

// gitCommit returns HEAD's commit and whether tracked files differ from it.
func gitCommit() (string, bool, error) {
	out, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		return "", false, err
	}
	st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output()
	if err != nil {
		return "", false, err
	}
	return strings.TrimSpace(string(out)), len(strings.TrimSpace(string(st))) > 0, nil
}
