package metanode

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/raft"

	"github.com/metamq/meta/rocks"
	"github.com/metamq/meta/rpc/transport"
	"github.com/metamq/meta/sm"
	"github.com/metamq/meta/sm/state"
)

// env is what a group uses of its node, handed over explicitly: a group
// holds no pointer to the node.
type env struct {
	id    string // this node's id
	m     *metrics
	cfg   Config
	t     timings
	log   *slog.Logger
	db    *rocks.DB
	peers *transport.Manager
	// snapLimit bounds the rate at which the node's groups send snapshots,
	// all together (nil: no limit).
	snapLimit *sm.Limiter
	// logCaches shares Config.NodeLogCacheBytes among the groups' raft log
	// caches.
	logCaches *rocks.LogCacheBudget
	// serving reports whether the node serves requests (false once it
	// begins to stop).
	serving func() bool
	// handler returns the named call handler for method, or nil.
	handler func(method string) CallHandler
	// onLead runs once a term of this node's leadership of the group is
	// ready (its marker applied) and returns the tasks to run until the
	// term ends.
	onLead func(ctx context.Context, g *group) []func(context.Context)
	// candidates lists nodes that may lead a group (the leader hint, the
	// directory's replicas); noteLeader records a hint.
	candidates func(group string) []candidate
	noteLeader func(group string, c candidate)
	// stopping is closed when the node begins to stop.
	stopping <-chan struct{}
	// storageFailed stops every group of the node: RocksDB refused a
	// write (storage.go).
	storageFailed func(err error)
	// directory is the newest directory the node has seen; dirChanged is
	// closed at its next change.
	directory  func() *state.Directory
	dirChanged func() <-chan struct{}
	// clusterVersion is the cluster version this node last saw
	// (Node.ClusterVersion); nil: the directory's.
	clusterVersion func() uint32
}

// group is one raft group on this node.
type group struct {
	name  string
	kind  sm.Kind
	env   *env
	log   *slog.Logger
	raft  *raft.Raft
	fsm   *sm.Machine
	trans *transport.Transport
	snaps *sm.SnapStore
	// logCache is raft's log cache, holding a share of the node's budget
	// (env.logCaches) until the replica is closed.
	logCache *rocks.LogCache

	// life owns the group's goroutines (batcher, terms, timers).
	life *lifetime
	// calls counts raft calls awaiting answers (see raftCalls).
	calls raftCalls
	// guard stands between raft and its stores (storage.go).
	guard storeGuard
	// shutdownF is raft's shutdown, begun once (shutdownRaft).
	shutdownOnce sync.Once
	shutdownF    raft.Future
	// raftDone is closed once raft has shut down; watched once the
	// leadership watcher has returned after it.
	raftDone chan struct{}
	watched  chan struct{}
	started  atomic.Bool
	// notifyCh is raft's reliable leadership notification; observations
	// carry every leader change (this node's or another's).
	notifyCh     chan bool
	observations chan raft.Observation
	observer     *raft.Observer
	// changes is the one leadership-change notification of the group.
	changes changes

	// readyTerm is the term in which this node, as leader, applied its
	// term marker (see runTerm): from then on its commit index is current
	// and it may serve linearizable reads and leader-only work. 0 when
	// not ready.
	readyTerm atomic.Uint64

	proposals chan *proposal
	inflight  chan struct{}

	// Shared rounds for linearizable reads: leaderReads confirms
	// leadership on this node; remoteReads asks the leader for a read index.
	leaderReads rounds
	remoteReads rounds

	// transfers keeps leadership transfers from wedging raft
	// (transfer.go).
	transfers transferGuard

	// askingSnapshot is set while this follower asks its leader for a
	// fresh snapshot (see askFreshSnapshot).
	askingSnapshot atomic.Bool
}

// newGroup opens a group's storage and starts its raft; start then starts
// its goroutines.
func newGroup(e *env, name string, parent context.Context) (*group, error) {
	kind, err := groupKind(name)
	if err != nil {
		return nil, err
	}
	g := &group{name: name, kind: kind, env: e, log: e.log.With("group", name),
		life:         newLifetime(parent),
		raftDone:     make(chan struct{}),
		watched:      make(chan struct{}),
		notifyCh:     make(chan bool, 8),
		observations: make(chan raft.Observation, 16),
		proposals:    make(chan *proposal, 4096),
		inflight:     make(chan struct{}, e.cfg.MaxInflight),
	}
	// The group's counters exist from the start (at 0), so that a rate
	// over them is defined before the first event.
	e.m.leaderChanges.WithLabelValues(name)
	e.m.proposeFailed.WithLabelValues(name)
	g.leaderReads.run = g.confirmLeadership
	g.leaderReads.timeout = e.t.readRound
	g.remoteReads.run = g.askLeaderReadIndex
	g.remoteReads.timeout = e.t.readRound
	if g.fsm, err = sm.New(sm.Config{Kind: kind, Group: name, DB: e.db, Logger: g.log, Level: e.cfg.featureLevel()}); err != nil {
		return nil, err
	}
	g.fsm.OnStaleSnapshot(func(_, applied uint64) { g.askFreshSnapshot(applied) })
	logs, err := e.db.LogStore(name)
	if err != nil {
		return nil, err
	}
	stable, err := e.db.StableStore(name)
	if err != nil {
		return nil, err
	}
	// Snapshots are markers over the data in RocksDB, exported as SST files
	// when sent (sm.SnapStore). The directory is the one raft's
	// FileSnapshotStore used, whose snapshots the store still reads.
	snapDir := filepath.Join(e.cfg.DataDir, "snapshots", name)
	if g.snaps, err = sm.NewSnapStore(sm.SnapStoreConfig{Dir: snapDir, Machine: g.fsm, Limiter: e.snapLimit, Logger: g.log}); err != nil {
		return nil, err
	}
	if g.trans, err = e.peers.Group(name); err != nil {
		return nil, err
	}
	// Heartbeats wait to travel with other groups' (rpc/transport), but
	// not while a read waits for a leadership confirmation.
	g.trans.SetUrgent(g.leaderReads.busy)
	restore, err := g.needsSnapshotRestore()
	if err != nil {
		return nil, err
	}
	cfg := e.cfg
	conf := raft.DefaultConfig()
	conf.LocalID = raft.ServerID(e.id)
	conf.Logger = newHclog(g.log, "raft")
	conf.HeartbeatTimeout = cfg.HeartbeatTimeout
	conf.ElectionTimeout = cfg.ElectionTimeout
	conf.LeaderLeaseTimeout = cfg.LeaderLeaseTimeout
	conf.CommitTimeout = cfg.CommitTimeout
	conf.MaxAppendEntries = cfg.MaxAppendEntries
	// No buffered apply channel: raft leaves a future in that buffer
	// unanswered at shutdown; our batcher already packs many writes into
	// each entry, and raft still drains what waits into one dispatch.
	conf.BatchApplyCh = false
	conf.SnapshotThreshold = cfg.SnapshotThreshold
	conf.SnapshotInterval = cfg.SnapshotInterval
	conf.TrailingLogs = cfg.TrailingLogs
	conf.NotifyCh = g.notifyCh
	// The state machine's data survives restarts with the index it
	// reflects, so raft need not rebuild it from a snapshot: it re-delivers
	// the entries after the snapshot and the machine skips those it has.
	// Unless the stored state is behind the snapshot or a restore was cut
	// short: then raft restores the snapshot first.
	conf.NoSnapshotRestoreOnStart = !restore
	if err := raft.ValidateConfig(conf); err != nil {
		return nil, fmt.Errorf("metanode: %s: raft config: %w", name, err)
	}
	g.guard.failed = func(err error, write bool) {
		g.storageFailed(err)
		if write {
			e.storageFailed(err)
		}
	}
	cached := e.logCaches.NewCache(logs)
	g.raft, err = g.guard.startRaft(func() (*raft.Raft, error) {
		return raft.NewRaft(conf, g.fsm, guardedLogs{cached, &g.guard}, guardedStable{stable, &g.guard}, g.snaps, g.trans)
	})
	if err != nil {
		cached.Close()
		return nil, fmt.Errorf("metanode: %s: start raft: %w", name, err)
	}
	g.logCache = cached
	g.guard.armed.Store(true)
	g.observer = raft.NewObserver(g.observations, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	})
	g.raft.RegisterObserver(g.observer)
	return g, nil
}

// start starts the group's goroutines: the leadership watcher (outside the
// lifetime: it must drain raft's notifications until raft is down), the
// terms and the batcher.
func (g *group) start() {
	g.started.Store(true)
	go func() {
		defer close(g.watched)
		g.watchLeadership()
	}()
	g.life.Go(g.runTerms)
	g.life.Go(g.runProposals)
}

// stop ends the group's work, waits for raft to answer every call the
// group made, then shuts raft down (bounded by ctx).
func (g *group) stop(ctx context.Context) error {
	g.life.End()
	if left := g.calls.close(ctx); len(left) > 0 {
		g.log.Warn("raft calls still unanswered at shutdown; shutting raft down regardless", "calls", left)
	}
	g.raft.DeregisterObserver(g.observer)
	err := g.shutdownRaft().Error()
	close(g.raftDone)
	if g.started.Load() {
		<-g.watched
	}
	if err != nil {
		return fmt.Errorf("%s: raft shutdown: %w", g.name, err)
	}
	return nil
}

// await makes a raft call and waits for its answer or ctx, whichever comes
// first. A call abandoned by ctx is still answered by raft later, to the
// goroutine waiting for it (raftCalls makes sure of that).
func (g *group) await(ctx context.Context, what string, call func() raft.Future) (raft.Future, error) {
	f, done, err := g.calls.start(what, call)
	if err != nil {
		return nil, err
	}
	answered := make(chan error, 1)
	go func() {
		defer done()
		answered <- f.Error()
	}()
	select {
	case err := <-answered:
		return f, err
	case <-ctx.Done():
		return f, ctx.Err()
	}
}

// needsSnapshotRestore decides whether raft must restore the latest
// snapshot at start: when a restore was interrupted, or when the stored
// state is older than the data the latest snapshot stands for (a snapshot
// received just before a crash); see sm.SnapStore.NeedsRestore.
func (g *group) needsSnapshotRestore() (bool, error) {
	restore, err := g.snaps.NeedsRestore()
	if err != nil {
		return false, err
	}
	if restore {
		g.log.Warn("state machine will be restored from snapshot", "applied", g.fsm.AppliedIndex())
	}
	return restore, nil
}

// leader returns the group's leader as this node knows it.
func (g *group) leader() (id, addr string) {
	a, i := g.raft.LeaderWithID()
	return string(i), string(a)
}

func (g *group) isLeader() bool { return g.raft.State() == raft.Leader }

// ready reports whether this node leads the group in a term whose marker it
// applied.
func (g *group) ready() bool {
	return g.isLeader() && g.readyTerm.Load() == g.raft.CurrentTerm()
}

// voters returns the voters of the group's latest configuration.
func (g *group) voters() []raft.Server {
	var out []raft.Server
	for _, s := range g.configuration() {
		if s.Suffrage == raft.Voter {
			out = append(out, s)
		}
	}
	return out
}

// configuration returns the group's latest configuration (raft answers it
// at once, from memory).
func (g *group) configuration() []raft.Server {
	f := g.raft.GetConfiguration()
	if f.Error() != nil {
		return nil
	}
	return f.Configuration().Servers
}

func (g *group) notLeader() error {
	id, addr := g.leader()
	if id == "" {
		return fmt.Errorf("%s: %w", g.name, ErrNoLeader)
	}
	return &NotLeaderError{Group: g.name, LeaderID: id, LeaderAddr: addr}
}
