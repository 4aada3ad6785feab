package chaos

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/metamq/meta/rpc/client"
	"github.com/metamq/meta/rpc/metapb"
	"github.com/metamq/meta/verify"
)

// NodePort is the port every node serves clients and peers on, inside its
// container.
const NodePort = 7000

// Files chaos adds to verify's run folder.
const (
	RunFile     = "run.json"
	IndexFile   = "index.html"
	HarnessLog  = "chaos.log"
	LogsDir     = "logs"
	DataDir     = "data"
	DefaultRoot = "chaos-runs"
)

// RunOptions configure one chaos run: a fresh cluster in containers, a
// checked verify.Run against it, extra checks and the run folder.
type RunOptions struct {
	Seed     int64
	Nodes    int                // cluster size; default 3
	Kinds    []verify.FaultKind // fault kinds to schedule (none: no faults)
	Duration time.Duration      // workload time, faults included; default 60s
	Image    Image              // built by BuildImage; required
	// Previous is an older release's node image (BuildImage of its
	// binary), for upgrades from a real older binary: a run holding
	// upgrade on an even seed starts its cluster from it (rather than at
	// the base feature level), and the upgrade fault's restarts move each
	// node to Image. The older binary must accept the flags nodeArgs
	// passes. withDefaults clears it on other runs.
	Previous Image
	Root     string            // run folders go in Root/<time>-<seed>; default DefaultRoot
	Env      map[string]string // environment of every node (e.g. META_BUG)
	// Spare creates one more node, started only by member op=add.
	Spare bool
	// Node flags. Zero values leave metanode's defaults (groups: 1).
	OffsetGroups, DataGroups int
	// ReplicationFactor is passed as --replication-factor to the nodes
	// that form the cluster when positive (zero: metanode's default, 3):
	// below the node count, each group runs on its own replica set and a
	// follower of a group is one of its replicas, not any other node.
	// The run reads what the cluster recorded from its directory
	// (run.json, "cluster").
	ReplicationFactor int
	SnapshotThreshold uint64
	TrailingLogs      uint64
	// SnapshotInterval is passed as --snapshot-interval when positive;
	// only binaries that have the flag accept it.
	SnapshotInterval time.Duration
	// HashCheckInterval is passed as --hash-check-interval when positive
	// (replica hash checks within a run's minutes; metanode's default is
	// 5m); only binaries that have the flag accept it.
	HashCheckInterval time.Duration
	// BrokerHeartbeat and BrokerSessionTimeout are passed as
	// --broker-heartbeat-interval and --broker-session-timeout when
	// positive (zero: metanode's defaults, 2s and 6s). Runs with the
	// controller workload want them short, so that within a minute the
	// simulated brokers fall silent, are declared down and come back
	// several times; Workload.AssignSlack should suit them.
	BrokerHeartbeat, BrokerSessionTimeout time.Duration
	ExtraFlags                            []string // appended to every node's flags
	// DataFS, when positive, puts each node's data directory on a tmpfs
	// of that many bytes of its own (Options.DataFS; needs root), and
	// MinFreeBytes is passed as --min-free-bytes: the disk-full fault
	// fills one node's filesystem below it. withDefaults sets 512 MiB and
	// 128 MiB when the kinds hold disk-full.
	DataFS, MinFreeBytes int64
	// FeatureLevel, when positive, is passed as --feature-level to the
	// nodes that form the cluster (a node joining later runs its
	// binary's level): the cluster version starts there, and an upgrade
	// fault's rolling restart (without the flag) raises it. withDefaults
	// sets the base level (1) on even seeds when the kinds hold upgrade;
	// odd seeds keep every feature (hash checks, the newer operations)
	// from the start, and their upgrade faults are rolling restarts.
	FeatureLevel uint32
	// TLS turns on mutual TLS and authentication on every node
	// (--tls-dir, --auth): WriteCerts makes a development CA and member
	// certificates in the run folder (tls/), and the harness connects as
	// an admin (a client certificate meta://admin/admin).
	TLS bool
	// WriteCerts writes, for TLS runs, a development CA and a member
	// certificate per node under dir in the layout of
	// rpc/transport.WriteDevCerts (which the caller passes: chaos sees the
	// system only as a client does). Required when TLS is set.
	WriteCerts func(dir string, nodes []string) error
	// AtController lists fault kinds (kill, pause, isolate and the other
	// kinds aimed at one node's role) whose first fault in the schedule
	// is aimed at the leader of metadata-0, the node that runs the
	// controller, instead of the target the schedule drew (see
	// AimAtController).
	AtController []verify.FaultKind
	// KeepData keeps the nodes' data directories of passing runs too
	// (failing runs always keep them).
	KeepData bool
	// Workload and Schedule refine verify's defaults (zero: defaults;
	// Schedule.MemberOps defaults to what the nemesis can do).
	Workload verify.WorkloadConfig
	Schedule verify.ScheduleOptions
	// Meta is copied into run.json as "meta" (command line, git commit,
	// binary): what the caller knows and the package does not.
	Meta map[string]any
	// Progress, if set, is called from Run's goroutine.
	Progress func(verify.Progress)
	// Log receives the harness's progress; chaos.log in the run folder
	// gets everything at debug level regardless. Nil: only chaos.log.
	Log *slog.Logger
}

// Validate reports every problem at once.
func (o RunOptions) Validate() error {
	var errs []error
	if o.Nodes < 0 || o.Nodes > MaxNodes-1 {
		errs = append(errs, fmt.Errorf("Nodes = %d, want 1..%d", o.Nodes, MaxNodes-1))
	}
	if o.Duration < 0 {
		errs = append(errs, errors.New("option Duration: negative"))
	}
	if o.Image.Tag == "" {
		errs = append(errs, errors.New("Image: no tag (use BuildImage)"))
	}
	if o.OffsetGroups < 0 || o.DataGroups < 0 {
		errs = append(errs, errors.New("OffsetGroups, DataGroups: negative"))
	}
	if o.ReplicationFactor < 0 {
		errs = append(errs, fmt.Errorf("ReplicationFactor = %d: negative", o.ReplicationFactor))
	}
	if o.BrokerHeartbeat < 0 || o.BrokerSessionTimeout < 0 {
		errs = append(errs, errors.New("BrokerHeartbeat, BrokerSessionTimeout: negative"))
	}
	if o.BrokerHeartbeat > 0 && o.BrokerSessionTimeout > 0 && o.BrokerSessionTimeout <= o.BrokerHeartbeat {
		errs = append(errs, fmt.Errorf("BrokerSessionTimeout %s: want more than BrokerHeartbeat %s", o.BrokerSessionTimeout, o.BrokerHeartbeat))
	}
	for _, k := range o.AtController {
		if !slices.Contains(aimable, k) {
			errs = append(errs, fmt.Errorf("AtController: %q is not aimed at one node (want one of %s)", k, kindList(aimable)))
		}
	}
	for _, k := range o.Kinds {
		if !slices.Contains(verify.AllFaultKinds, k) {
			errs = append(errs, fmt.Errorf("%w: %q", verify.ErrBadKind, k))
		} else if k == verify.FaultCrashpoint {
			errs = append(errs, fmt.Errorf("%w: %s (metanode has no crash points)", verify.ErrUnsupported, k))
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrInvalidOptions, errors.Join(errs...))
}

func (o RunOptions) withDefaults() RunOptions {
	if o.Nodes == 0 {
		o.Nodes = 3
	}
	if o.Duration == 0 {
		o.Duration = 60 * time.Second
	}
	if o.Root == "" {
		o.Root = DefaultRoot
	}
	if o.Workload == (verify.WorkloadConfig{}) {
		o.Workload = verify.DefaultWorkloadConfig()
	}
	if slices.Contains(o.Kinds, verify.FaultDiskFull) && o.DataFS == 0 {
		o.DataFS, o.MinFreeBytes = 512<<20, 128<<20
	}
	if !slices.Contains(o.Kinds, verify.FaultUpgrade) || o.Seed%2 != 0 {
		o.Previous = Image{}
	}
	if slices.Contains(o.Kinds, verify.FaultUpgrade) && o.FeatureLevel == 0 && o.Seed%2 == 0 && o.Previous.Tag == "" {
		o.FeatureLevel = baseLevel
	}
	return o
}

// baseLevel is the feature level of every release before feature levels
// (sm.BaseLevel; chaos sees the system only as a client does).
const baseLevel = 1

// nodeArgs returns a node's metanode flags: forming the cluster from the
// initial member list, or (join) joining it through the other nodes.
func (o RunOptions) nodeArgs(node string, members []string, join bool) []string {
	peer := func(n string) string { return n + ":" + strconv.Itoa(NodePort) }
	args := []string{"--id", node, "--data-dir", DefaultDataPath,
		"--listen", "0.0.0.0:" + strconv.Itoa(NodePort), "--advertise", peer(node)}
	if join {
		// Not itself: a joining node asking its own half-started server
		// who the members are would learn nothing.
		var others []string
		for _, m := range members {
			if m != node {
				others = append(others, peer(m))
			}
		}
		args = append(args, "--join", strings.Join(others, ","))
	} else {
		var initial []string
		for _, m := range members {
			initial = append(initial, m+"="+peer(m))
		}
		args = append(args, "--initial-cluster", strings.Join(initial, ","))
		if o.OffsetGroups > 0 {
			args = append(args, "--offset-groups", strconv.Itoa(o.OffsetGroups))
		}
		if o.DataGroups > 0 {
			args = append(args, "--data-groups", strconv.Itoa(o.DataGroups))
		}
		if o.ReplicationFactor > 0 {
			args = append(args, "--replication-factor", strconv.Itoa(o.ReplicationFactor))
		}
		if o.FeatureLevel > 0 {
			args = append(args, "--feature-level", strconv.FormatUint(uint64(o.FeatureLevel), 10))
		}
	}
	if o.MinFreeBytes > 0 {
		args = append(args, "--min-free-bytes", strconv.FormatInt(o.MinFreeBytes, 10))
	}
	if o.SnapshotThreshold > 0 {
		args = append(args, "--snapshot-threshold", strconv.FormatUint(o.SnapshotThreshold, 10))
	}
	if o.TrailingLogs > 0 {
		args = append(args, "--trailing-logs", strconv.FormatUint(o.TrailingLogs, 10))
	}
	if o.SnapshotInterval > 0 {
		args = append(args, "--snapshot-interval", o.SnapshotInterval.String())
	}
	if o.HashCheckInterval > 0 {
		args = append(args, "--hash-check-interval", o.HashCheckInterval.String())
	}
	if o.BrokerHeartbeat > 0 {
		args = append(args, "--broker-heartbeat-interval", o.BrokerHeartbeat.String())
	}
	if o.BrokerSessionTimeout > 0 {
		args = append(args, "--broker-session-timeout", o.BrokerSessionTimeout.String())
	}
	if o.TLS {
		args = append(args, "--tls-dir", CertPath, "--auth")
	}
	return append(args, o.ExtraFlags...)
}

// RunReport is the outcome of one run.
type RunReport struct {
	Dir     string
	Seed    int64
	Verdict verify.Verdict
	Started time.Time
	Elapsed time.Duration
	// ReplicationFactor is the cluster's, as its directory recorded it (0:
	// not read).
	ReplicationFactor int
	// Kinds requested; Faults as played (with errors, if any).
	Kinds  []verify.FaultKind
	Faults []verify.Fault
	Checks []verify.CheckResult
	Ops    verify.OpStats
	// BrokerOps counts the broker workloads' ops by kind and outcome
	// (nil without them).
	BrokerOps map[verify.BrokerOpKind]verify.Counts
	// Recovery is the recovery time per fault kind (and the final heal's):
	// how long after each heal every group served again.
	Recovery map[verify.FaultKind]verify.RecoveryStats
	// FinalRecovery is the final heal's (nil if not probed).
	FinalRecovery *verify.Recovery
	// CoverageGaps: checkers that judged nothing they were meant to judge
	// (verify.Result.CoverageGaps).
	CoverageGaps []string
	// OpsObserved counts what the operations faults observed (OpsObserved
	// over the nemesis's notes): that a fault happened, not only that it
	// was scheduled.
	OpsObserved map[string]int
	// Err is why the run could not be carried out (the verdict is then
	// unknown), e.g. the cluster did not start.
	Err error
}

// Injected counts the faults of each kind that were injected and healed
// without error.
func (r *RunReport) Injected() map[verify.FaultKind]int {
	out := map[verify.FaultKind]int{}
	for _, f := range r.Faults {
		if f.Err == "" && f.Ended > f.Began {
			out[f.Kind]++
		}
	}
	return out
}

// runRecord is run.json. Its fields are documented in README.md ("Reading
// a run folder").
type runRecord struct {
	Seed     int64                    `json:"seed"`
	Verdict  verify.Verdict           `json:"valid"`
	Started  time.Time                `json:"started"`
	Elapsed  time.Duration            `json:"elapsed_ns"`
	Error    string                   `json:"error,omitempty"`
	Options  runOptionsRecord         `json:"options"`
	Meta     map[string]any           `json:"meta,omitempty"`
	Image    Image                    `json:"image"`
	Previous *Image                   `json:"previous_image,omitempty"`
	Cluster  clusterRecord            `json:"cluster"`
	Checks   []verify.CheckResult     `json:"checks,omitempty"`
	Injected map[verify.FaultKind]int `json:"injected"`
	Notes    []Note                   `json:"notes,omitempty"`
	LogHits  []LogHit                 `json:"log_hits,omitempty"`
	DataKept bool                     `json:"data_kept"`
}

type runOptionsRecord struct {
	Nodes             int                    `json:"nodes"`
	Kinds             []verify.FaultKind     `json:"kinds"`
	Duration          time.Duration          `json:"duration_ns"`
	Env               map[string]string      `json:"env,omitempty"`
	Spare             bool                   `json:"spare"`
	OffsetGroups      int                    `json:"offset_groups"`
	DataGroups        int                    `json:"data_groups"`
	ReplicationFactor int                    `json:"replication_factor"`
	SnapshotThreshold uint64                 `json:"snapshot_threshold,omitempty"`
	TrailingLogs      uint64                 `json:"trailing_logs,omitempty"`
	SnapshotInterval  time.Duration          `json:"snapshot_interval_ns,omitempty"`
	HashCheckInterval time.Duration          `json:"hash_check_interval_ns,omitempty"`
	BrokerHeartbeat   time.Duration          `json:"broker_heartbeat_ns,omitempty"`
	BrokerTimeout     time.Duration          `json:"broker_session_timeout_ns,omitempty"`
	ExtraFlags        []string               `json:"extra_flags,omitempty"`
	AtController      []verify.FaultKind     `json:"at_controller,omitempty"`
	TLS               bool                   `json:"tls,omitempty"`
	Workload          verify.WorkloadConfig  `json:"workload"`
	Schedule          verify.ScheduleOptions `json:"schedule"`
}

type clusterRecord struct {
	RunID     string              `json:"run_id,omitempty"`
	Network   string              `json:"network,omitempty"`
	Endpoints map[string]string   `json:"endpoints,omitempty"`
	Spares    []string            `json:"spares,omitempty"`
	Args      map[string][]string `json:"args,omitempty"`
	// ReplicationFactor and MetadataReplicationFactor are what the
	// cluster recorded in its directory at creation (0: not read).
	ReplicationFactor         int `json:"replication_factor,omitempty"`
	MetadataReplicationFactor int `json:"metadata_replication_factor,omitempty"`
}

// Run carries out one run: it starts a fresh cluster from opts.Image,
// runs verify.Run against it with a Nemesis (which waits for the cluster
// to serve again after every heal), tears the cluster down, scans the node logs, and writes the run
// folder (see README.md). The returned error is for runs that could not be
// carried out or whose folder could not be written; a run that found a
// problem returns a report whose Verdict is not Valid and no error. When
// ctx is cancelled, the faults are healed, the partial run is saved and
// the cluster removed.
func Run(ctx context.Context, opts RunOptions) (*RunReport, error) {
	opts = opts.withDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	started := time.Now()
	dir, err := runDir(opts.Root, started, opts.Seed)
	if err != nil {
		return nil, err
	}
	logFile, err := os.Create(filepath.Join(dir, HarnessLog))
	if err != nil {
		return nil, fmt.Errorf("chaos: harness log: %w", err)
	}
	defer logFile.Close()
	handlers := []slog.Handler{slog.NewTextHandler(logFile, &slog.HandlerOptions{Level: slog.LevelDebug})}
	if opts.Log != nil {
		handlers = append(handlers, opts.Log.Handler())
	}
	log := slog.New(slog.NewMultiHandler(handlers...)).With("seed", opts.Seed)
	progress := func(phase string) {
		if opts.Progress != nil {
			opts.Progress(verify.Progress{Phase: phase, Elapsed: time.Since(started)})
		}
	}

	rep := &RunReport{Dir: dir, Seed: opts.Seed, Verdict: verify.Unknown, Started: started, Kinds: opts.Kinds}
	rec := &runRecord{Seed: opts.Seed, Verdict: verify.Unknown, Started: started, Meta: opts.Meta, Image: opts.Image,
		Options: runOptionsRecord{Nodes: opts.Nodes, Kinds: opts.Kinds, Duration: opts.Duration, Env: opts.Env,
			Spare: opts.Spare, OffsetGroups: opts.OffsetGroups, DataGroups: opts.DataGroups, ReplicationFactor: opts.ReplicationFactor,
			SnapshotThreshold: opts.SnapshotThreshold, TrailingLogs: opts.TrailingLogs,
			SnapshotInterval: opts.SnapshotInterval, HashCheckInterval: opts.HashCheckInterval, BrokerHeartbeat: opts.BrokerHeartbeat,
			BrokerTimeout: opts.BrokerSessionTimeout, ExtraFlags: opts.ExtraFlags, AtController: opts.AtController, TLS: opts.TLS,
			Workload: opts.Workload}}
	if opts.Previous.Tag != "" {
		rec.Previous = &opts.Previous
	}
	finish := func(runErr error) (*RunReport, error) {
		rep.Elapsed = time.Since(started)
		rep.Err = runErr
		rec.Elapsed, rec.Verdict = rep.Elapsed, rep.Verdict
		if runErr != nil {
			rec.Error = runErr.Error()
		}
		rec.Checks = rep.Checks
		rec.Injected = rep.Injected()
		rec.DataKept = opts.KeepData || rep.Verdict != verify.Valid
		if !rec.DataKept {
			if err := os.RemoveAll(filepath.Join(dir, DataDir)); err != nil {
				log.Warn("chaos: remove data", "err", err)
				rec.DataKept = true
			}
		}
		werr := writeJSON(filepath.Join(dir, RunFile), rec)
		werr = errors.Join(werr, writeIndex(dir, rec, rep))
		log.Info("chaos: run done", "valid", rep.Verdict, "dir", dir, "took", rep.Elapsed.Round(time.Second))
		if runErr != nil {
			return rep, runErr
		}
		return rep, werr
	}

	// The cluster.
	progress("cluster")
	members := NodeNames(opts.Nodes)
	spares := []string{}
	if opts.Spare {
		spares = NodeNames(opts.Nodes + 1)[opts.Nodes:]
	}
	args := func(n string) []string { return opts.nodeArgs(n, members, slices.Contains(spares, n)) }
	joinArgs := func(n string) []string { return opts.nodeArgs(n, members, true) }
	rec.Cluster.Args = map[string][]string{}
	for _, n := range append(slices.Clone(members), spares...) {
		rec.Cluster.Args[n] = args(n)
	}
	var certDir string
	var clientTLS *tls.Config
	if opts.TLS {
		certDir = filepath.Join(dir, TLSDir)
		if clientTLS, err = writeCerts(opts.WriteCerts, certDir, append(slices.Clone(members), spares...)); err != nil {
			return finish(err)
		}
	}
	log.Info("chaos: starting cluster", "nodes", members, "spares", spares, "image", opts.Image.Tag, "previous_image", opts.Previous.Tag, "dir", dir, "tls", opts.TLS)
	cl, err := StartCluster(ctx, Options{
		Nodes: opts.Nodes, Spares: len(spares), Image: opts.Image.Tag, InitialImage: opts.Previous.Tag, RunDir: dir, Port: NodePort,
		Args: args, Env: opts.Env, Ready: readyProbe(clientTLS), Log: log, CertDir: certDir, DataFS: opts.DataFS,
	})
	if err != nil {
		return finish(fmt.Errorf("chaos: start cluster: %w", err))
	}
	teardown := func() {
		progress("teardown")
		tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
		defer cancel()
		if err := cl.Terminate(tctx); err != nil {
			log.Error("chaos: terminate", "err", err)
		}
	}
	rec.Cluster.RunID, rec.Cluster.Network, rec.Cluster.Spares = cl.RunID(), cl.NetworkName(), spares
	endpoints := map[string]string{}
	for _, n := range members {
		if endpoints[n], err = cl.Endpoint(n); err != nil {
			teardown()
			return finish(err)
		}
	}
	rec.Cluster.Endpoints = endpoints

	nem, err := NewNemesis(cl, NemesisConfig{
		Endpoints: endpoints, Spares: spares, JoinArgs: joinArgs, TrailingLogs: opts.TrailingLogs, Log: log, TLS: clientTLS,
		MinFreeBytes: opts.MinFreeBytes,
	})
	if err != nil {
		teardown()
		return finish(err)
	}
	// What the cluster recorded, whatever was asked: the nemesis moves
	// replicas between members only below the node count, and the run
	// folder says which cluster this was.
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	rf, mdRF, err := nem.ReplicationFactors(rctx)
	cancel()
	if err != nil {
		log.Warn("chaos: the directory's replication factor", "err", err)
	}
	rep.ReplicationFactor = rf
	rec.Cluster.ReplicationFactor, rec.Cluster.MetadataReplicationFactor = rf, mdRF
	log.Info("chaos: cluster placement", "replication_factor", rf, "metadata_replication_factor", mdRF, "nodes", len(members))
	sched := opts.Schedule
	if len(sched.MemberOps) == 0 {
		sched.MemberOps = nem.MemberOps()
	}
	rec.Options.Schedule = sched
	vcfg := verify.DefaultRunConfig()
	vcfg.Seed, vcfg.Dir, vcfg.Endpoints, vcfg.Nemesis = opts.Seed, dir, endpoints, nem
	vcfg.Kinds, vcfg.Schedule, vcfg.Duration, vcfg.Workload = opts.Kinds, sched, opts.Duration, opts.Workload
	// A heal that brings a replaced node back and drains the spare
	// re-creates every group twice, one snapshot at a time per node:
	// about a minute in containers on a loaded 2-core machine.
	vcfg.NemesisTimeout = 2 * time.Minute
	vcfg.Faults = AimAtController(Schedule(opts.Seed, opts.Kinds, opts.Duration, sched), opts.AtController)
	vcfg.Logger, vcfg.Progress = log, opts.Progress
	if clientTLS != nil {
		vcfg.Dial = verify.TLSClientDialer(log, vcfg.OpTimeout, clientTLS)
	}
	res, runErr := verify.Run(ctx, vcfg)
	var authCheck *verify.CheckResult
	if clientTLS != nil && res != nil {
		c := checkAuth(ctx, log, vcfg.OpTimeout, clientTLS, endpoints, opts.Seed)
		authCheck = &c
	}

	notes := nem.Notes()
	if err := nem.Close(); err != nil {
		log.Debug("chaos: close nemesis", "err", err)
	}
	teardown()

	var logs []string
	for _, n := range append(slices.Clone(members), spares...) {
		logs = append(logs, filepath.Join(dir, LogsDir, n+".log"))
	}
	hits, scanErr := ScanLogs(logs)
	rec.Notes, rec.LogHits = notes, hits
	rep.OpsObserved = OpsObserved(notes)
	if res == nil {
		if runErr == nil {
			runErr = errors.New("chaos: verify returned no result")
		}
		return finish(runErr)
	}
	progress("report")
	res.Checks = append(res.Checks, CheckNodes(hits, notes, len(logs), scanErr))
	if authCheck != nil {
		res.Checks = append(res.Checks, *authCheck)
	}
	if runErr != nil {
		// A run stopped early (interrupted) did not play its schedule:
		// what the schedule promised cannot be judged. What the history
		// shows (kv, offsets) still can.
		for i := range res.Checks {
			c := &res.Checks[i]
			switch c.Checker {
			case verify.CheckerActivity, verify.CheckerNemesis, verify.CheckerFinal, verify.CheckerRecovery:
				if c.Verdict == verify.Invalid {
					c.Verdict = verify.Unknown
					c.Details = "run stopped early (" + runErr.Error() + "); " + c.Details
				}
			}
		}
	}
	res.Verdict = combine(res)
	rep.Verdict, rep.Faults, rep.Checks, rep.Ops = res.Verdict, res.Faults, res.Checks, res.Ops
	rep.BrokerOps, rep.Recovery, rep.FinalRecovery = res.BrokerOps, res.Recovery, res.FinalRecovery
	rep.CoverageGaps = res.CoverageGaps
	// summary.json again, with chaos's checkers; report.html keeps
	// verify's (index.html shows all).
	werr := writeJSON(filepath.Join(dir, verify.SummaryFile), res)
	if ops, err := verify.LoadHistory(filepath.Join(dir, verify.HistoryFile)); err == nil {
		werr = errors.Join(werr, WritePlots(dir, ops, res.Faults))
	} else {
		werr = errors.Join(werr, err)
	}
	if werr != nil {
		log.Error("chaos: write run folder", "err", werr)
	}
	rep2, err := finish(runErr)
	return rep2, errors.Join(err, werr)
}

// combine is the verdict of a run: any invalid check is invalid, else any
// check not valid (or a run stopped early) is unknown.
func combine(res *verify.Result) verify.Verdict {
	v := verify.Valid
	for _, c := range res.Checks {
		switch c.Verdict {
		case verify.Valid:
		case verify.Invalid:
			return verify.Invalid
		default:
			v = verify.Unknown
		}
	}
	if res.Error != "" && v == verify.Valid {
		v = verify.Unknown
	}
	return v
}

// runDir creates root/<UTC time>-<seed>, with a suffix if it exists.
func runDir(root string, t time.Time, seed int64) (string, error) {
	// Absolute, because the nodes' data directories in it are bind
	// mounts, and Docker refuses relative mount paths.
	root, err := filepath.Abs(root)
	if err != nil {
		return "", fmt.Errorf("chaos: run folder: %w", err)
	}
	base := filepath.Join(root, t.UTC().Format("20060102-150405")+"-"+strconv.FormatInt(seed, 10))
	dir := base
	for i := 2; ; i++ {
		err := os.Mkdir(dir, 0o755)
		if err == nil {
			return dir, nil
		}
		if errors.Is(err, os.ErrNotExist) {
			if err := os.MkdirAll(root, 0o755); err != nil {
				return "", fmt.Errorf("chaos: run folder: %w", err)
			}
			continue
		}
		if !errors.Is(err, os.ErrExist) || i > 100 {
			return "", fmt.Errorf("chaos: run folder: %w", err)
		}
		dir = fmt.Sprintf("%s-%d", base, i)
	}
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("chaos: %s: %w", filepath.Base(path), err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("chaos: %s: %w", filepath.Base(path), err)
	}
	return os.Rename(tmp, path)
}

// checkAuth runs verify.CheckAuth on a TLS run's cluster, still up and
// healed: an anonymous connection (the CA, no certificate, no token)
// against the harness's admin one.
func checkAuth(ctx context.Context, log *slog.Logger, timeout time.Duration, admin *tls.Config, nodes map[string]string, seed int64) verify.CheckResult {
	var endpoints []string
	for _, id := range slices.Sorted(maps.Keys(nodes)) {
		endpoints = append(endpoints, nodes[id])
	}
	anonTLS := admin.Clone()
	anonTLS.Certificates, anonTLS.GetClientCertificate = nil, nil
	fail := func(err error) verify.CheckResult {
		return verify.CheckResult{Checker: verify.CheckerAuth, Verdict: verify.Unknown, Details: err.Error()}
	}
	anon, err := verify.TLSClientDialer(log, timeout, anonTLS)(endpoints, false)
	if err != nil {
		return fail(err)
	}
	defer anon.Close()
	adm, err := verify.TLSClientDialer(log, timeout, admin)(endpoints, false)
	if err != nil {
		return fail(err)
	}
	defer adm.Close()
	return verify.CheckAuth(ctx, anon, adm, endpoints[0], fmt.Sprintf("chaos-auth-probe/%d", seed))
}

// TLSDir is the folder of a TLS run's certificates in its run folder:
// the CA (ca.crt, ca.key), <node>/ per node (mounted at CertPath) and the
// harness's admin certificate (client.crt, client.key).
const TLSDir = "tls"

// writeCerts makes a development CA and member certificates for nodes
// under dir with write, and returns the harness's client TLS (as the
// admin).
func writeCerts(write func(string, []string) error, dir string, nodes []string) (*tls.Config, error) {
	if write == nil {
		return nil, errors.New("chaos: TLS: RunOptions.WriteCerts is nil")
	}
	if err := write(dir, nodes); err != nil {
		return nil, fmt.Errorf("chaos: certificates: %w", err)
	}
	cfg, err := client.LoadTLSDir(dir)
	if err != nil {
		return nil, fmt.Errorf("chaos: certificates: %w", err)
	}
	return cfg, nil
}

// readyProbe is metaReady over TLS with cfg (nil: plaintext). The node's
// certificate names the container's loopback and localhost, not its
// bridge address, so the probe checks the chain only.
func readyProbe(cfg *tls.Config) func(ctx context.Context, addr string) error {
	creds := insecure.NewCredentials()
	if cfg != nil {
		c := cfg.Clone()
		c.ServerName = "localhost"
		creds = credentials.NewTLS(c)
	}
	return func(ctx context.Context, addr string) error { return metaReady(ctx, addr, creds) }
}

// metaReady is the start probe of a node: its gRPC health service says
// SERVING for metapb.HealthStarted, which metanode sets once it has joined
// or formed the cluster, whether or not its groups have leaders yet (a
// node restarted while its peers are down or cut off must pass it). A
// binary older than that name is asked for the overall status, which
// meant the same there.
func metaReady(ctx context.Context, addr string, creds credentials.TransportCredentials) error {
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return err
	}
	defer conn.Close()
	hc := healthpb.NewHealthClient(conn)
	resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: metapb.HealthStarted})
	if status.Code(err) == codes.NotFound {
		resp, err = hc.Check(ctx, &healthpb.HealthCheckRequest{})
	}
	if err != nil {
		return err
	}
	if resp.Status != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("health: %s", resp.Status)
	}
	return nil
}
