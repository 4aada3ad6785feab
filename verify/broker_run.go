package verify

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/metamq/meta/rpc/metapb"
)

// SessionsReportFile is porcupine's view of the sessions partitions,
// written next to report.html by a run with the sessions workload.
const SessionsReportFile = "sessions.html"

// brokerRecords are a run's broker-facing records, in memory during a run
// and loaded from broker.jsonl and watch.jsonl by a re-check.
type brokerRecords struct {
	ops      []BrokerOp
	watch    []WatchRecord
	sessions *SessionsCheck
}

// brokerRun drives the broker workloads of one Run: watchers, session
// clients, the controller workload, and their final phase.
type brokerRun struct {
	cfg   RunConfig
	clock *Clock
	rec   *Recorder
	hist  *BrokerHistory
	wlog  *WatchLog
	wl    *Workload
	m     int
	admin Conn
	api   BrokerAPI
	ctl   *controllerWorkload

	conns    []Conn
	watchers []*watcher
	// stopWatch and stopCtl end the watchers and the simulated brokers
	// (with the observer and the toggler); wwg and cwg wait for them.
	stopWatch, stopCtl context.CancelFunc
	wwg, cwg           sync.WaitGroup
	stopOnce           sync.Once
}

// startBroker starts the watchers (and waits until each has its first
// response, so that they cover the whole workload), creates the
// controller workload's connectors and starts its brokers, observer and
// toggler. Session clients are started by Run with the other workers.
func startBroker(ctx context.Context, cfg RunConfig, clock *Clock, rec *Recorder, wl *Workload, m int, eps []string, admin Conn) (*brokerRun, error) {
	api, ok := admin.(BrokerAPI)
	if !ok {
		return nil, ErrNoBrokerAPI
	}
	b := &brokerRun{cfg: cfg, clock: clock, rec: rec, hist: &BrokerHistory{}, wlog: &WatchLog{}, wl: wl, m: m, admin: admin, api: api}
	wctx, stopWatch := context.WithCancel(context.WithoutCancel(ctx))
	cctx, stopCtl := context.WithCancel(context.WithoutCancel(ctx))
	b.stopWatch, b.stopCtl = stopWatch, stopCtl
	w := cfg.Workload
	var specs []watchSpec
	for i := range w.KVWatchers {
		specs = append(specs, watchSpec{Name: fmt.Sprintf("kv-%d", i), Space: "kv", Prefix: w.Prefix + "/kv/", KeyPrefix: w.Prefix + "/kv/"})
	}
	if w.ResourceWatch {
		specs = append(specs, watchSpec{Name: "resources", Space: "resources", Prefix: w.Prefix + "-", KeyPrefix: w.Prefix + "-"})
	}
	if w.Brokers > 0 {
		specs = append(specs,
			watchSpec{Name: "brokers", Space: "brokers", KeyPrefix: w.Prefix + "-b"},
			watchSpec{Name: "assignments", Space: "assignments", KeyPrefix: w.Prefix + "-c"})
	}
	for i, spec := range specs {
		// Each watcher has a connection of its own, starting at a
		// different node; the client resumes on the others.
		wapi, err := dialAt[WatchAPI](b, cfg.Dial, eps, i, "watcher")
		if err != nil {
			b.stop()
			return nil, err
		}
		wt := newWatcher(i, spec, wapi, b.wlog, clock)
		b.watchers = append(b.watchers, wt)
		b.wwg.Go(func() { wt.run(wctx) })
	}
	first, cancel := context.WithTimeout(ctx, cfg.ResolveTimeout)
	defer cancel()
	for _, wt := range b.watchers {
		select {
		case <-wt.first:
		case <-first.Done():
			cfg.Logger.Warn("verify: watcher has no first response yet; starting anyway", "watcher", wt.spec.Name)
		}
	}
	if w.Brokers > 0 {
		b.ctl = newControllerWorkload(wl)
		s := rec.BrokerSession(b.hist, api, "any")
		sctx, cancel := context.WithTimeout(ctx, cfg.ResolveTimeout+cfg.FinalTimeout)
		err := b.ctl.setup(sctx, s)
		cancel()
		if err != nil {
			b.stop()
			return nil, err
		}
		for i := range w.Brokers {
			bapi, err := dialAt[BrokerAPI](b, cfg.Dial, eps, i, "broker")
			if err != nil {
				b.stop()
				return nil, err
			}
			bs := rec.BrokerSession(b.hist, bapi, "any")
			b.cwg.Go(func() { b.ctl.runBroker(cctx, bs, i) })
		}
		obs := rec.BrokerSession(b.hist, api, "any")
		b.cwg.Go(func() { b.ctl.runObserver(cctx, obs) })
		tog := rec.BrokerSession(b.hist, api, "any")
		b.cwg.Go(func() { b.ctl.runToggler(cctx, tog) })
	}
	return b, nil
}

// dialAt dials a connection of its own for the i-th watcher or broker (what),
// starting at endpoint i (mod their number) so that they spread over the
// nodes; the client resumes on the others. b keeps the connection, to close
// it when it stops. The connection must implement T.
func dialAt[T any](b *brokerRun, dial Dialer, eps []string, i int, what string) (T, error) {
	var none T
	rot := append(slices.Clone(eps[i%len(eps):]), eps[:i%len(eps)]...)
	conn, err := dial(rot, false)
	if err != nil {
		return none, fmt.Errorf("verify: dial %s: %w", what, err)
	}
	b.conns = append(b.conns, conn)
	api, ok := conn.(T)
	if !ok {
		return none, ErrNoBrokerAPI
	}
	return api, nil
}

// sessionClient returns a session client of the sessions workload on a
// pinned connection.
func (b *brokerRun) sessionClient(conn Conn, endpoint string) (*BrokerSession, error) {
	api, ok := conn.(BrokerAPI)
	if !ok {
		return nil, ErrNoBrokerAPI
	}
	return b.rec.BrokerSession(b.hist, api, endpoint), nil
}

// endChaos ends the controller workload's silences and toggles (the
// workload's end).
func (b *brokerRun) endChaos() {
	if b.ctl != nil {
		b.ctl.chaos.Store(false)
	}
}

// faultPhase tells the controller workload where the schedule is: a
// fault being injected, healed or recovered from (phase "inject", "heal",
// "recovery"), or none ("workload" with no fault: quiet from then on).
func (b *brokerRun) faultPhase(phase string, f *Fault) {
	if b.ctl == nil {
		return
	}
	switch {
	case phase == "inject" || phase == "heal" || phase == "recovery":
		b.ctl.quietSince.Store(0)
		b.ctl.release()
	case phase == "workload" && f == nil:
		b.ctl.quietSince.CompareAndSwap(0, time.Now().UnixNano())
	}
}

// hold keeps the next fault back until the brokers stopped in the quiet
// period have been silent for as long as they planned (see
// controllerWorkload.hold).
func (b *brokerRun) hold(ctx context.Context) {
	if b.ctl != nil {
		b.ctl.hold(ctx)
	}
}

// final runs after the workload stopped and every fault healed: final
// session reads; every connector back to RUNNING; the fences (a KV put
// per data group, a resource) and waiting for every watcher to deliver
// them; waiting for the connectors to be assigned. It returns what did
// not happen.
func (b *brokerRun) final(ctx context.Context, admin Conn) []string {
	var missed []string
	cfg := b.cfg
	fctx, cancel := context.WithTimeout(ctx, cfg.FinalTimeout)
	defer cancel()
	bs := b.rec.BrokerSession(b.hist, b.api, "any")
	bs.SetFinal(true)
	if cfg.Workload.SessionClientsPerNode > 0 {
		for _, id := range FinalSessionReads(fctx, bs, b.hist.Ops(), 100*time.Millisecond) {
			missed = append(missed, "session "+id)
		}
	}
	if b.ctl != nil && !b.ctl.restore(fctx, bs) {
		missed = append(missed, "connectors back to RUNNING")
	}
	// Fences.
	var waits []func() bool
	if cfg.Workload.KVWatchers > 0 {
		s := b.rec.Session(admin, "any")
		s.final = true
		groups := []string{metapb.DataGroup(0)}
		if b.m > 0 {
			groups = metapb.Groups(0, b.m)[1:]
		}
		for _, g := range groups {
			key := fenceKey(cfg.Workload.Prefix+"/kv/", g, b.m)
			for fctx.Err() == nil {
				v := s.NextValue()
				if s.Put(fctx, key, v).Outcome == OutcomeOK {
					for _, wt := range b.watchers {
						if wt.spec.Space == "kv" {
							waits = append(waits, func() bool { return wt.saw(key, v) })
						}
					}
					break
				}
				Sleep(fctx, 100*time.Millisecond)
			}
		}
	}
	if cfg.Workload.ResourceWatch {
		for i := 0; fctx.Err() == nil; i++ {
			r := ResourceValue{Kind: "topic", Name: fmt.Sprintf("%s-%s%d", cfg.Workload.Prefix, fenceMark, i), Marker: bs.NextValue()}
			op := bs.CreateResource(fctx, r)
			if op.Outcome == OutcomeOK {
				for _, wt := range b.watchers {
					if wt.spec.Space == "resources" {
						waits = append(waits, func() bool { return wt.saw(r.Name, r.Marker) })
					}
				}
				break
			}
			if op.Outcome == OutcomeFail && op.Code != "AlreadyExists" {
				i-- // definitely not created: the name is still free
				Sleep(fctx, 100*time.Millisecond)
			}
		}
	}
	for _, ok := range waits {
		for !ok() {
			if !Sleep(fctx, 20*time.Millisecond) {
				missed = append(missed, "watchers caught up")
				break
			}
		}
		if fctx.Err() != nil {
			break
		}
	}
	if b.ctl != nil {
		b.ctl.final.Store(true)
		timeout := b.ctl.Timeout()
		now := b.clock.Now()
		b.ctl.settle(ctx, b.clock, now, now+int64(timeout+cfg.Workload.AssignSlack+2*time.Second))
	}
	return missed
}

// stop ends the watchers and the controller workload and waits for them.
// Safe to call twice.
func (b *brokerRun) stop() {
	b.stopOnce.Do(func() {
		b.stopCtl()
		b.stopWatch()
		b.cwg.Wait()
		b.wwg.Wait()
		for _, c := range b.conns {
			c.Close()
		}
	})
}

// cleanup deletes the run's connectors and fence resources (after stop).
func (b *brokerRun) cleanup(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.FinalTimeout)
	defer cancel()
	bs := b.rec.BrokerSession(b.hist, b.api, "any")
	bs.SetFinal(true)
	if b.ctl != nil {
		b.ctl.cleanup(ctx, bs)
	}
	for _, op := range b.hist.Ops() {
		if op.Kind == OpResourceCreate && op.Outcome != OutcomeFail && op.Input.Resource.Kind == "topic" {
			bs.DeleteResource(ctx, "topic", op.Input.Resource.Name)
		}
	}
}

// records returns what the run recorded.
func (b *brokerRun) records() *brokerRecords {
	return &brokerRecords{ops: b.hist.Ops(), watch: b.wlog.Records()}
}

// loadBrokerRecords reads broker.jsonl and watch.jsonl from a run folder;
// nil when neither exists.
func loadBrokerRecords(dir string) (*brokerRecords, error) {
	ops, err1 := LoadBrokerOps(filepath.Join(dir, BrokerFile))
	recs, err2 := LoadWatchRecords(filepath.Join(dir, WatchFile))
	if errors.Is(err1, os.ErrNotExist) && errors.Is(err2, os.ErrNotExist) {
		return nil, nil
	}
	for _, err := range []error{err1, err2} {
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
	}
	return &brokerRecords{ops: ops, watch: recs}, nil
}

// writeBrokerRecords writes broker.jsonl, watch.jsonl and sessions.html.
func writeBrokerRecords(dir string, ext *brokerRecords) error {
	errs := []error{
		SaveBrokerOps(filepath.Join(dir, BrokerFile), ext.ops),
		SaveWatchRecords(filepath.Join(dir, WatchFile), ext.watch),
	}
	if ext.sessions != nil {
		errs = append(errs, writeFile(filepath.Join(dir, SessionsReportFile), func(w io.Writer) error { return ext.sessions.Visualize(w) }))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("verify: write broker records %s: %w", dir, err)
	}
	return nil
}

// brokerChecks runs the broker checkers that the run's workload settings
// enable: sessions, watch, controller. Records come from res (a live run)
// or from the run folder (a re-check); missing records make the verdict
// Unknown.
func brokerChecks(res *Result, ops []Op) []CheckResult {
	w := res.Settings.Workload
	if !w.broker() {
		return nil
	}
	ext := res.ext
	if ext == nil && res.Dir != "" {
		var err error
		ext, err = loadBrokerRecords(res.Dir)
		if err != nil {
			return []CheckResult{{Checker: CheckerWatch, Verdict: Unknown, Details: err.Error()}}
		}
		res.ext = ext
	}
	if ext == nil {
		ext = &brokerRecords{}
	}
	res.BrokerOps = map[BrokerOpKind]Counts{}
	for i := range ext.ops {
		c := res.BrokerOps[ext.ops[i].Kind]
		c.add(ext.ops[i].Outcome)
		res.BrokerOps[ext.ops[i].Kind] = c
	}
	var out []CheckResult
	if w.SessionClientsPerNode > 0 {
		ext.sessions = CheckSessions(ext.ops, res.dataRoute(), res.Settings.CheckTimeout)
		c := ext.sessions.Result
		if len(ext.ops) == 0 {
			c.Verdict, c.Details = Unknown, "no broker history"
		}
		out = append(out, c)
	}
	if w.KVWatchers > 0 || w.ResourceWatch || w.Brokers > 0 {
		c := CheckWatch(ext.watch, ops, ext.ops, res.dataRoute())
		if len(ext.watch) == 0 {
			c.Verdict, c.Details = Unknown, "no watch records"
		}
		out = append(out, c)
	}
	if w.Brokers > 0 {
		slack := w.AssignSlack
		if slack == 0 {
			slack = defaultAssignSlack
		}
		out = append(out, CheckController(ext.ops, ext.watch, ControllerSettings{AssignSlack: slack, Faults: res.Faults}))
	}
	return out
}
