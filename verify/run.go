package verify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/metamq/meta/rpc/metapb"
)

// RunConfig configures one checked run.
type RunConfig struct {
	// Seed decides the fault schedule and the workload's choices. It is
	// logged and saved in summary.json; the same seed replays the same
	// schedule.
	Seed int64
	// Dir is the run folder, created if needed (empty: write nothing).
	Dir string
	// Endpoints maps node ids (as Status reports them and the nemesis
	// names them) to client endpoints. Required.
	Endpoints map[string]string
	// Dial opens connections. Default ClientDialer(Logger, OpTimeout).
	Dial Dialer
	// Nemesis injects the faults; nil runs without faults.
	Nemesis Nemesis
	// Faults is an explicit schedule. When nil, Schedule(Seed, Kinds,
	// Duration, Schedule) makes one.
	Faults   []Fault
	Kinds    []FaultKind
	Schedule ScheduleOptions
	// Duration of the workload, faults included. Default 20s.
	Duration time.Duration
	// Workload shape. Default DefaultWorkloadConfig().
	Workload WorkloadConfig
	// OpTimeout bounds each recorded call. Default 1s: a client must give up
	// well within a fault, or every client sits on one hung call (e.g. to a
	// cut-off leader) for the whole fault window and nothing is exercised.
	OpTimeout time.Duration
	// ResolveTimeout bounds finding a fault's target (a group may have no
	// leader for a while after the previous fault). Default 15s.
	ResolveTimeout time.Duration
	// NemesisTimeout bounds each Inject, Heal and HealAll. Default 60s.
	NemesisTimeout time.Duration
	// RecoveryTimeout bounds the recovery window after each heal: every
	// group must serve again within it (see AwaitRecovery). Default 30s.
	RecoveryTimeout time.Duration
	// FinalTimeout bounds the final reads. Default 30s.
	FinalTimeout time.Duration
	// ConvergeTimeout bounds waiting for replicas to converge. Default 60s.
	ConvergeTimeout time.Duration
	// CheckTimeout bounds the linearizability check. Default 60s.
	CheckTimeout time.Duration
	// MinOps successful ops are required before, during and after each
	// fault. Default 10.
	MinOps int
	// Logger, default slog.Default().
	Logger *slog.Logger
	// Progress, if set, is called from Run's goroutine at each phase and
	// about once a second during the workload.
	Progress func(Progress)
}

// Progress reports where a run is.
type Progress struct {
	Phase   string // "workload", "inject", "heal", "recovery", "final", "converge", "check", "done"
	Elapsed time.Duration
	Ops     int
	Fault   *Fault // the fault being injected or healed, or active
}

// DefaultRunConfig returns the defaults; set Endpoints (and a Nemesis).
func DefaultRunConfig() RunConfig {
	return RunConfig{
		Duration:        20 * time.Second,
		Workload:        DefaultWorkloadConfig(),
		OpTimeout:       time.Second,
		ResolveTimeout:  15 * time.Second,
		NemesisTimeout:  60 * time.Second,
		RecoveryTimeout: 30 * time.Second,
		FinalTimeout:    30 * time.Second,
		ConvergeTimeout: 60 * time.Second,
		CheckTimeout:    60 * time.Second,
		MinOps:          10,
	}
}

// withDefaults fills zero durations and helpers; it does not touch fields
// Validate must judge.
func (c RunConfig) withDefaults() RunConfig {
	d := DefaultRunConfig()
	orDefault(&c.Duration, d.Duration)
	orDefault(&c.Workload, d.Workload)
	orDefault(&c.OpTimeout, d.OpTimeout)
	orDefault(&c.ResolveTimeout, d.ResolveTimeout)
	orDefault(&c.NemesisTimeout, d.NemesisTimeout)
	orDefault(&c.RecoveryTimeout, d.RecoveryTimeout)
	orDefault(&c.FinalTimeout, d.FinalTimeout)
	orDefault(&c.ConvergeTimeout, d.ConvergeTimeout)
	orDefault(&c.CheckTimeout, d.CheckTimeout)
	orDefault(&c.MinOps, d.MinOps)
	orDefault(&c.Logger, slog.Default())
	if c.Dial == nil {
		c.Dial = ClientDialer(c.Logger, c.OpTimeout)
	}
	if c.Workload.Prefix == "" {
		c.Workload.Prefix = fmt.Sprintf("v%d-%d", c.Seed, time.Now().UnixMilli())
	}
	return c
}

// orDefault sets *v to d when it is the zero value.
func orDefault[T comparable](v *T, d T) {
	var zero T
	if *v == zero {
		*v = d
	}
}

// Validate reports every problem of the configuration at once.
func (c RunConfig) Validate() error {
	var errs []error
	if len(c.Endpoints) == 0 {
		errs = append(errs, errors.New("verify: Endpoints: at least one node is required"))
	}
	for id, ep := range c.Endpoints {
		if id == "" || ep == "" {
			errs = append(errs, fmt.Errorf("verify: Endpoints: empty id or endpoint (%q: %q)", id, ep))
		}
	}
	if c.Duration < 0 || c.OpTimeout < 0 || c.ResolveTimeout < 0 || c.NemesisTimeout < 0 || c.RecoveryTimeout < 0 ||
		c.FinalTimeout < 0 || c.ConvergeTimeout < 0 || c.CheckTimeout < 0 {
		errs = append(errs, errors.New("verify: negative duration"))
	}
	if c.MinOps < 0 {
		errs = append(errs, errors.New("verify: MinOps: negative"))
	}
	if c.Nemesis == nil && (len(c.Faults) > 0 || len(c.Kinds) > 0) {
		errs = append(errs, errors.New("verify: faults requested without a Nemesis"))
	}
	for _, k := range c.Kinds {
		if !slices.Contains(AllFaultKinds, k) {
			errs = append(errs, fmt.Errorf("%w: %q", ErrBadKind, k))
		} else if s, ok := c.Nemesis.(KindSupporter); ok && !s.Supports(k) {
			errs = append(errs, fmt.Errorf("verify: %w: %s", ErrUnsupported, k))
		}
	}
	for _, f := range c.Faults {
		if s, ok := c.Nemesis.(KindSupporter); ok && !s.Supports(f.Kind) {
			errs = append(errs, fmt.Errorf("verify: fault %d: %w: %s", f.ID, ErrUnsupported, f.Kind))
		}
		if f.Start+f.Duration > c.Duration && c.Duration > 0 {
			errs = append(errs, fmt.Errorf("verify: fault %d ends after the workload (%s > %s)", f.ID, f.Start+f.Duration, c.Duration))
		}
	}
	if err := c.Workload.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// RunSettings are the settings a re-check needs, saved in summary.json.
type RunSettings struct {
	Duration     time.Duration  `json:"duration_ns"`
	Kinds        []FaultKind    `json:"kinds,omitempty"`
	Nodes        []string       `json:"nodes"`
	Endpoints    []string       `json:"endpoints"`
	Workload     WorkloadConfig `json:"workload"`
	MinOps       int            `json:"min_ops"`
	CheckTimeout time.Duration  `json:"check_timeout_ns"`
	OpTimeout    time.Duration  `json:"op_timeout_ns"`
	DataGroups   int            `json:"data_groups"`
	OffsetGroups int            `json:"offset_groups"`
	// RecoveryTimeout is the recovery checker's bound.
	RecoveryTimeout time.Duration `json:"recovery_timeout_ns,omitempty"`
}

// Result is the outcome of a run; summary.json is its JSON.
type Result struct {
	Seed     int64         `json:"seed"`
	Verdict  Verdict       `json:"valid"`
	Started  time.Time     `json:"started"`
	Elapsed  time.Duration `json:"elapsed_ns"`
	Settings RunSettings   `json:"settings"`
	Ops      OpStats       `json:"ops"`
	Checks   []CheckResult `json:"checks"`
	Windows  []Window      `json:"windows"`
	// Error is why the run stopped early, if it did.
	Error string `json:"error,omitempty"`
	// FinalRecovery is how long the cluster took to serve again after
	// the final heal (HealAll); nil without a nemesis.
	FinalRecovery *Recovery `json:"final_recovery,omitempty"`
	// CoverageGaps names the checkers that judged nothing they were meant
	// to judge (see CheckResult.Judged): a failure of the suite, which did
	// not exercise what the checker checks, not of the cluster; Verdict
	// does not count them.
	CoverageGaps []string `json:"coverage_gaps,omitempty"`
	// Recovery summarises the recovery times per fault kind (and the
	// final heal's, under FinalHeal).
	Recovery map[FaultKind]RecoveryStats `json:"recovery,omitempty"`
	// Faults are saved in faults.jsonl.
	Faults []Fault `json:"-"`
	// Dir is the run folder.
	Dir string `json:"-"`
	// BrokerOps counts broker.jsonl's ops by kind and outcome (broker
	// workloads only).
	BrokerOps map[BrokerOpKind]Counts `json:"broker_ops,omitempty"`
	// DataRanges is the data groups' map as the directory listed it once
	// every fault healed (empty: not read, or a cluster routing by
	// count); the sessions and watch checkers partition keys by it
	// (DataRoute).
	DataRanges []metapb.Range `json:"data_ranges,omitempty"`
	// ext holds the broker workloads' records (broker.jsonl, watch.jsonl)
	// while a run evaluates them; a re-check loads them from Dir.
	ext *brokerRecords
}

// Check returns the result of one checker, or nil.
func (r *Result) Check(name string) *CheckResult {
	for i := range r.Checks {
		if r.Checks[i].Checker == name {
			return &r.Checks[i]
		}
	}
	return nil
}

// Run runs one checked run against a live cluster: it starts the
// workloads (clients pinned to every node), plays the fault schedule
// against the nemesis, heals everything, lets the workload run on until
// Duration, stops it, reads every key and partition it touched, waits for
// the replicas to converge, checks the history and writes the run folder.
//
// The returned error is for runs that could not be carried out (a bad
// configuration, ctx cancelled); a run that was carried out and found a
// problem returns a Result whose Verdict is not Valid, and no error. When
// ctx is cancelled mid-run the faults are still healed and the partial
// history is still saved.
func Run(ctx context.Context, cfg RunConfig) (*Result, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	clock := NewClock()
	nodes := make([]string, 0, len(cfg.Endpoints))
	for id := range cfg.Endpoints {
		nodes = append(nodes, id)
	}
	slices.Sort(nodes)
	eps := make([]string, len(nodes))
	for i, id := range nodes {
		eps[i] = cfg.Endpoints[id]
	}
	res := &Result{Seed: cfg.Seed, Started: clock.Base(), Dir: cfg.Dir, Verdict: Unknown, Settings: RunSettings{
		Duration: cfg.Duration, Kinds: cfg.Kinds, Nodes: nodes, Endpoints: eps, Workload: cfg.Workload,
		MinOps: cfg.MinOps, CheckTimeout: cfg.CheckTimeout, OpTimeout: cfg.OpTimeout, RecoveryTimeout: cfg.RecoveryTimeout,
	}}
	if cfg.Dir != "" {
		if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
			return nil, fmt.Errorf("verify: run folder: %w", err)
		}
	}
	progress := func(phase string, f *Fault, ops int) {
		if cfg.Progress != nil {
			cfg.Progress(Progress{Phase: phase, Elapsed: clock.Since(), Ops: ops, Fault: f})
		}
	}

	admin, err := cfg.Dial(eps, false)
	if err != nil {
		return nil, fmt.Errorf("verify: dial: %w", err)
	}
	defer admin.Close()
	res.Settings.OffsetGroups, res.Settings.DataGroups = topology(ctx, admin, eps, cfg.ResolveTimeout)

	faults := slices.Clone(cfg.Faults)
	if faults == nil && cfg.Nemesis != nil {
		faults = Schedule(cfg.Seed, cfg.Kinds, cfg.Duration, cfg.Schedule)
	}
	log.Info("verify: run", "seed", cfg.Seed, "nodes", nodes, "duration", cfg.Duration, "faults", len(faults),
		"prefix", cfg.Workload.Prefix, "dir", cfg.Dir)
	for i := range faults {
		log.Info("verify: scheduled", "fault", faults[i].String())
	}

	hist := &History{}
	rec := NewRecorder(clock, hist, cfg.OpTimeout)
	wl := NewWorkload(cfg.Seed, cfg.Workload, res.Settings.DataGroups, res.Settings.OffsetGroups)
	// The broker workloads (opt-in): watchers first, so that they see the
	// whole workload, then the controller workload.
	var br *brokerRun
	if cfg.Workload.broker() {
		br, err = startBroker(ctx, cfg, clock, rec, wl, res.Settings.DataGroups, eps, admin)
		if err != nil {
			return nil, err
		}
		defer br.stop()
	}
	var conns []Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	wctx, stopWorkload := context.WithCancel(ctx)
	defer stopWorkload()
	var wg sync.WaitGroup
	worker := 0
	for _, id := range nodes {
		conn, err := cfg.Dial([]string{cfg.Endpoints[id]}, true)
		if err != nil {
			stopWorkload()
			wg.Wait()
			return nil, fmt.Errorf("verify: dial %s: %w", id, err)
		}
		conns = append(conns, conn)
		for range cfg.Workload.KVClientsPerNode {
			s, w := rec.Session(conn, id), worker
			worker++
			wg.Go(func() { wl.RunKV(wctx, s, w) })
		}
		for range cfg.Workload.OffsetClientsPerNode {
			s, w := rec.Session(conn, id), worker
			worker++
			wg.Go(func() { wl.RunOffsets(wctx, s, w) })
		}
		for range cfg.Workload.SessionClientsPerNode {
			s, err := br.sessionClient(conn, id)
			if err != nil {
				stopWorkload()
				wg.Wait()
				return nil, err
			}
			w := worker
			worker++
			wg.Go(func() { wl.RunSessions(wctx, s, w) })
		}
	}
	start := clock.Since()
	progress("workload", nil, 0)

	// Faults, each followed by its recovery window, then the cool-down
	// until Duration (later when recoveries moved the schedule).
	groups := metapb.Groups(res.Settings.OffsetGroups, res.Settings.DataGroups)
	// The recovery probe goes through one node (the first), which forwards
	// what it does not serve: the unpinned client would follow the
	// directory's member addresses, which a harness outside the cluster's
	// network (containers) may not resolve.
	prober, err := cfg.Dial(eps, true)
	if err != nil {
		stopWorkload()
		wg.Wait()
		return nil, fmt.Errorf("verify: dial %s: %w", eps[0], err)
	}
	conns = append(conns, prober)
	var hold func(context.Context)
	if br != nil {
		hold = br.hold
	}
	end, final, runErr := playSchedule(ctx, cfg, clock, start, faults, prober, groups, hold,
		func(phase string, f *Fault) {
			if br != nil {
				br.faultPhase(phase, f)
			}
			progress(phase, f, hist.Len())
		})
	res.FinalRecovery = final
	tick := func() { progress("workload", nil, hist.Len()) }
	if !sleepUntil(ctx, clock, end, tick) && runErr == nil {
		runErr = ctx.Err()
	}
	stopWorkload()
	wg.Wait()
	if br != nil {
		br.endChaos()
	}
	res.Faults = faults

	var conv, place, ranges CheckResult
	if runErr == nil {
		progress("final", nil, hist.Len())
		fctx, cancel := context.WithTimeout(ctx, cfg.FinalTimeout)
		missed := FinalReads(fctx, rec.Session(admin, "any"), hist.Ops(), 100*time.Millisecond)
		cancel()
		if len(missed) > 0 {
			log.Warn("verify: final reads failed", "missed", missed)
		}
		if br != nil {
			if missed := br.final(ctx, admin); len(missed) > 0 {
				log.Warn("verify: broker workloads' final phase incomplete", "missed", missed)
			}
			br.stop()
			br.cleanup(ctx)
		}
		// The live checks, each its phase, each bounded by ConvergeTimeout.
		live := func(phase string, check func(ctx context.Context) CheckResult) CheckResult {
			progress(phase, nil, hist.Len())
			cctx, cancel := context.WithTimeout(ctx, cfg.ConvergeTimeout)
			defer cancel()
			return check(cctx)
		}
		conv = live("converge", func(ctx context.Context) CheckResult {
			return Converge(ctx, admin, cfg.Endpoints, nil, 200*time.Millisecond)
		})
		place = live("placement", func(ctx context.Context) CheckResult {
			return CheckPlacement(ctx, admin, slices.Sorted(maps.Keys(cfg.Endpoints)), 200*time.Millisecond)
		})
		ranges = live("ranges", func(ctx context.Context) CheckResult {
			return CheckRanges(ctx, admin, cfg.Endpoints, 200*time.Millisecond)
		})
		if gs, err := admin.ListGroups(ctx); err == nil {
			res.DataRanges = finalDataRanges(gs)
		}
		if ctx.Err() != nil {
			runErr = ctx.Err()
		}
	}
	if runErr != nil {
		stopped := func(checker string) CheckResult {
			return CheckResult{Checker: checker, Verdict: Unknown, Recorded: true, Details: "run stopped: " + runErr.Error()}
		}
		conv, place, ranges = stopped(CheckerConvergence), stopped(CheckerPlacement), stopped(CheckerRanges)
		res.Error = runErr.Error()
	}

	progress("check", nil, hist.Len())
	if br != nil {
		br.stop()
		res.ext = br.records()
	}
	ops := hist.Ops()
	lin := Evaluate(res, ops, conv, place, ranges)
	res.Elapsed = clock.Since()
	if cfg.Dir != "" {
		if err := WriteRun(cfg.Dir, res, ops, lin); err != nil {
			return res, err
		}
		if res.ext != nil {
			if err := writeBrokerRecords(cfg.Dir, res.ext); err != nil {
				return res, err
			}
		}
	}
	log.Info("verify: run done", "seed", cfg.Seed, "valid", res.Verdict, "ops", res.Ops.Total, "dir", cfg.Dir)
	progress("done", nil, len(ops))
	return res, runErr
}

// Evaluate runs every checker over a history and its faults, fills res
// (checks, windows, op stats, verdict) and returns the linearizability
// result for the report. live are the results observed on the running
// cluster (convergence, placement), which cannot be recomputed from a
// history.
func Evaluate(res *Result, ops []Op, live ...CheckResult) *Linearizability {
	lin := CheckLinearizability(ops, res.Settings.CheckTimeout)
	res.Checks = slices.Clone(lin.Results)
	res.Checks = append(res.Checks, CheckFinalReads(ops))
	res.Checks = append(res.Checks, CheckOwnership(ops))
	res.Checks = append(res.Checks, live...)
	res.Checks = append(res.Checks,
		CheckActivity(ops, res.Faults, res.Settings.MinOps),
		CheckNemesis(res.Faults),
		CheckRecovery(res.Faults, res.FinalRecovery, res.Settings.RecoveryTimeout),
	)
	res.Recovery = RecoveryByKind(res.Faults, res.FinalRecovery)
	// The broker workloads' checkers (sessions, watch, controller), when
	// the run had them.
	res.Checks = append(res.Checks, brokerChecks(res, ops)...)
	res.Windows = Windows(ops, res.Faults)
	res.Ops = Stats(ops)
	res.CoverageGaps = coverage(res.Checks)
	verdicts := make([]Verdict, len(res.Checks))
	for i, c := range res.Checks {
		verdicts[i] = c.Verdict
	}
	res.Verdict = worst(verdicts...)
	if res.Error != "" && res.Verdict == Valid {
		res.Verdict = Unknown
	}
	return lin
}

// coverage fills Judged and Total of the checkers that leave them to it
// (every one but the controller's: its partitions, less the undecided
// ones) and returns the coverage gaps: checkers meant to judge something
// that judged nothing. The controller is meant to judge down
// declarations (brokers stop cleanly outside fault windows), so judging
// none is a gap even when none was seen.
func coverage(checks []CheckResult) []string {
	var gaps []string
	for i := range checks {
		c := &checks[i]
		if c.Checker != CheckerController {
			c.Total = c.Partitions
			c.Judged = max(c.Partitions-len(c.Undecided), 0)
		}
		switch {
		case c.Checker == CheckerController && c.Judged == 0:
			gaps = append(gaps, fmt.Sprintf("%s: judged 0 of %d down declarations (no broker declared down outside a fault window)", c.Checker, c.Total))
		case c.Total > 0 && c.Judged == 0:
			gaps = append(gaps, fmt.Sprintf("%s: judged 0 of %d", c.Checker, c.Total))
		}
	}
	return gaps
}

// topology learns the group counts (offset, data) from any node, waiting
// up to timeout for one to answer; 0, 0 if none does.
func topology(ctx context.Context, sr StatusReader, eps []string, timeout time.Duration) (k, m int) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		for _, ep := range eps {
			st, err := sr.Status(ctx, ep)
			if err == nil && st.DataGroups > 0 {
				return int(st.OffsetGroups), int(st.DataGroups)
			}
		}
		if !Sleep(ctx, 100*time.Millisecond) {
			return 0, 0
		}
	}
}

// playSchedule injects and heals faults in order, each followed by its
// recovery window, then heals everything and waits for the final
// recovery. A fault begins at its planned start (relative to the
// run-clock time base), moved later by as much as the recoveries before
// it overran: never sooner than its planned gap after the previous
// fault's recovery. It returns when the workload should end: Duration
// after base, moved the same way (the last fault's planned tail after its
// recovery). Before each fault, hold (if not nil) may keep it back while
// the workload finishes something that must happen away from faults (a
// broker stopped cleanly, waiting to be declared down); the schedule moves
// later by as much. Heal and HealAll run even when ctx is cancelled, each
// bounded by NemesisTimeout.
func playSchedule(ctx context.Context, cfg RunConfig, clock *Clock, base time.Duration, faults []Fault, p Prober, groups []string, hold func(context.Context), progress func(string, *Fault)) (end time.Duration, final *Recovery, err error) {
	end = base + cfg.Duration
	nem := cfg.Nemesis
	if nem == nil {
		return end, nil, nil
	}
	log := cfg.Logger
	healCtx := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.WithoutCancel(ctx), cfg.NemesisTimeout)
	}
	probe := func(name string) *Recovery {
		rctx, cancel := context.WithTimeout(ctx, cfg.RecoveryTimeout)
		defer cancel()
		r := AwaitRecovery(rctx, p, groups, cfg.OpTimeout)
		if ctx.Err() != nil {
			return nil // stopped: proves nothing either way
		}
		if r.Recovered() {
			log.Info("verify: recovered", "after", name, "took", r.Took, "slowest", r.Slowest)
		} else {
			log.Error("verify: the cluster did not serve again within the recovery bound", "after", name,
				"bound", cfg.RecoveryTimeout, "missing", r.Missing)
		}
		return &r
	}
	healedAll := false
	defer func() {
		if healedAll {
			return
		}
		hctx, cancel := healCtx()
		defer cancel()
		if err := nem.HealAll(hctx); err != nil {
			log.Error("verify: heal all", "err", err)
		}
	}()
	tick := func(f *Fault) func() { return func() { progress("workload", f) } }
	// shift is how much later than planned the schedule runs; gap is the
	// planned quiet time after the previous fault (from its end to the
	// next start, or to the end of the workload); recovered is when the
	// previous fault's recovery window closed.
	var shift, gap, recovered time.Duration
	after := func(planned time.Duration) time.Duration {
		at := base + planned + shift
		if recovered > 0 && recovered+gap > at {
			shift += recovered + gap - at
			at = recovered + gap
		}
		return at
	}
	for i := range faults {
		f := &faults[i]
		if !sleepUntil(ctx, clock, after(f.Start), tick(nil)) {
			return end, nil, ctx.Err()
		}
		if hold != nil {
			held := clock.Since()
			hold(ctx)
			if ctx.Err() != nil {
				return end, nil, ctx.Err()
			}
			shift += clock.Since() - held
		}
		gap = cfg.Duration - (f.Start + f.Duration)
		if i+1 < len(faults) {
			gap = faults[i+1].Start - (f.Start + f.Duration)
		}
		gap = max(gap, 0)
		rctx, cancel := context.WithTimeout(ctx, cfg.ResolveTimeout)
		candidates, err := resolve(rctx, nem, f.Target)
		cancel()
		if err == nil {
			err = f.Bind(candidates, nem.Nodes())
		}
		if err != nil {
			f.Began = clock.Since()
			f.Ended = f.Began
			f.Err = "resolve: " + err.Error()
			log.Error("verify: fault not injected", "fault", f.String(), "err", err)
			recovered = 0
			continue
		}
		progress("inject", f)
		log.Info("verify: inject", "fault", f.String())
		f.Began = clock.Since()
		ictx, cancel := context.WithTimeout(ctx, cfg.NemesisTimeout)
		err = nem.Inject(ictx, f)
		cancel()
		if err != nil {
			f.Err = "inject: " + err.Error()
			log.Error("verify: inject", "fault", f.String(), "err", err)
		} else {
			sleepUntil(ctx, clock, f.Began+f.Duration, tick(f))
		}
		progress("heal", f)
		hctx, cancel := healCtx()
		if err := nem.Heal(hctx, f); err != nil {
			f.Err = joinErr(f.Err, "heal: "+err.Error())
			log.Error("verify: heal", "fault", f.String(), "err", err)
		}
		cancel()
		f.Ended = clock.Since()
		log.Info("verify: healed", "fault", f.ID, "began", f.Began, "ended", f.Ended)
		if ctx.Err() != nil {
			return end, nil, ctx.Err()
		}
		progress("recovery", f)
		f.Recovery = probe(fmt.Sprintf("fault %d (%s)", f.ID, f.Kind))
		if ctx.Err() != nil {
			return end, nil, ctx.Err()
		}
		recovered = clock.Since()
		progress("workload", nil)
	}
	if len(faults) == 0 {
		gap = cfg.Duration
	}
	healedAll = true
	hctx, cancel := healCtx()
	if err := nem.HealAll(hctx); err != nil {
		log.Error("verify: heal all", "err", err)
	}
	cancel()
	progress("recovery", nil)
	final = probe("the final heal")
	if ctx.Err() != nil {
		return end, nil, ctx.Err()
	}
	progress("workload", nil)
	return after(cfg.Duration), final, nil
}

func joinErr(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

// resolve asks the nemesis for a target's candidates until it answers or
// ctx ends: right after a fault a group may have no leader for a while.
func resolve(ctx context.Context, nem Nemesis, t Target) ([]string, error) {
	for {
		c, err := nem.Resolve(ctx, t)
		if err == nil && len(c) > 0 {
			return c, nil
		}
		if err == nil {
			err = fmt.Errorf("verify: no node for %s", t)
		}
		if errors.Is(err, ErrBadTarget) || !Sleep(ctx, 100*time.Millisecond) {
			return nil, err
		}
	}
}

// sleepUntil waits until the run clock reads at, calling tick about once
// a second; it reports false if ctx ended first.
func sleepUntil(ctx context.Context, clock *Clock, at time.Duration, tick func()) bool {
	for {
		left := at - clock.Since()
		if left <= 0 {
			return true
		}
		if !Sleep(ctx, min(left, time.Second)) {
			return false
		}
		if tick != nil && at-clock.Since() > 0 {
			tick()
		}
	}
}
