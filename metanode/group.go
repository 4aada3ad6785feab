package metanode

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/metamq/meta/rocks"
	"github.com/metamq/meta/rpc/metapb"
	"github.com/metamq/meta/rpc/transport"
	"github.com/metamq/meta/sm"
	"github.com/metamq/meta/sm/logpb"
)

// group is one raft group on this node.
type group struct {
	name  string
	kind  sm.Kind
	n     *Node
	raft  *raft.Raft
	fsm   *sm.Machine
	trans *transport.Transport
	snaps *raft.FileSnapshotStore

	notifyCh chan bool
	// raftDone is closed once raft has shut down (the leadership watcher
	// drains notifyCh until then, so raft never blocks on it).
	raftDone chan struct{}

	// readyTerm is the term in which this node, as leader, applied its
	// term marker (see lead): from then on its commit index is current and it may serve
	// linearizable reads and leader-only work. 0 when not ready.
	readyTerm atomic.Uint64

	// leaderMu guards leaderCancel, the context of leader-only work.
	leaderMu     sync.Mutex
	leaderCancel context.CancelFunc

	proposals chan *proposal
	inflight  chan struct{}

	// Shared rounds for linearizable reads: leaderReads confirms
	// leadership on this node; remoteReads asks the leader for a read index.
	leaderReads rounds
	remoteReads rounds

	// askingSnapshot is set while this follower asks its leader for a
	// fresh snapshot (see askFreshSnapshot).
	askingSnapshot atomic.Bool
}

func (n *Node) newGroup(name string) (*group, error) {
	kindName, err := metapb.GroupKind(name)
	if err != nil {
		return nil, err
	}
	kind, err := sm.ParseKind(kindName)
	if err != nil {
		return nil, err
	}
	g := &group{name: name, kind: kind, n: n,
		notifyCh:  make(chan bool, 8),
		raftDone:  make(chan struct{}),
		proposals: make(chan *proposal, 4096),
		inflight:  make(chan struct{}, n.cfg.MaxInflight),
	}
	log := n.log.With("group", name)
	if g.fsm, err = sm.New(sm.Config{Kind: kind, Group: name, DB: n.db, Logger: log}); err != nil {
		return nil, err
	}
	g.fsm.OnStaleSnapshot(func(_, applied uint64) { g.askFreshSnapshot(applied) })
	logs, err := n.db.LogStore(name)
	if err != nil {
		return nil, err
	}
	cached := rocks.NewLogCache(logs, n.cfg.LogCacheBytes)
	stable, err := n.db.StableStore(name)
	if err != nil {
		return nil, err
	}
	snapDir := filepath.Join(n.cfg.DataDir, "snapshots", name)
	if err := os.MkdirAll(snapDir, 0o755); err != nil {
		return nil, err
	}
	if g.snaps, err = raft.NewFileSnapshotStoreWithLogger(snapDir, 2, newHclog(log, "snapshots")); err != nil {
		return nil, err
	}
	if g.trans, err = n.trans.Group(name); err != nil {
		return nil, err
	}
	restore, err := g.needsSnapshotRestore()
	if err != nil {
		return nil, err
	}
	conf := raft.DefaultConfig()
	conf.LocalID = raft.ServerID(n.id)
	conf.Logger = newHclog(log, "raft")
	conf.HeartbeatTimeout = n.cfg.HeartbeatTimeout
	conf.ElectionTimeout = n.cfg.ElectionTimeout
	conf.LeaderLeaseTimeout = n.cfg.LeaderLeaseTimeout
	conf.CommitTimeout = n.cfg.CommitTimeout
	conf.MaxAppendEntries = n.cfg.MaxAppendEntries
	// No buffered apply channel: raft leaves a future in that buffer
	// unanswered at shutdown; our batcher already packs many writes into
	// each entry, and raft still drains what waits into one dispatch.
	conf.BatchApplyCh = false
	conf.SnapshotThreshold = n.cfg.SnapshotThreshold
	conf.SnapshotInterval = n.cfg.SnapshotInterval
	conf.TrailingLogs = n.cfg.TrailingLogs
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
	if g.raft, err = raft.NewRaft(conf, g.fsm, cached, stable, g.snaps, g.trans); err != nil {
		return nil, fmt.Errorf("metanode: %s: start raft: %w", name, err)
	}
	g.leaderReads.run = g.confirmLeadership
	g.remoteReads.run = g.askLeaderReadIndex
	return g, nil
}

// needsSnapshotRestore decides whether raft must restore the latest
// snapshot at start: when a restore was interrupted, or when the stored
// state is older than the latest snapshot (the entries between are gone
// from the log once it was compacted).
func (g *group) needsSnapshotRestore() (bool, error) {
	incomplete, err := g.fsm.RestoreIncomplete()
	if err != nil {
		return false, err
	}
	snaps, err := g.snaps.List()
	if err != nil {
		return false, err
	}
	behind := len(snaps) > 0 && g.fsm.AppliedIndex() < snaps[0].Index
	if incomplete || behind {
		g.n.log.Warn("state machine will be restored from snapshot", "group", g.name,
			"restore_incomplete", incomplete, "applied", g.fsm.AppliedIndex())
	}
	return incomplete || behind, nil
}

// watchLeadership follows raft's reliable notify channel. On gaining
// leadership it waits for a barrier (so the commit index is current) before
// marking the term ready and starting leader-only work; on losing it, it
// cancels that work at once.
func (g *group) watchLeadership(stop <-chan struct{}) {
	defer g.stepDown()
	for {
		select {
		case leader := <-g.notifyCh:
			if !leader {
				g.stepDown()
				continue
			}
			g.stepDown()
			ctx, cancel := context.WithCancel(context.Background())
			g.leaderMu.Lock()
			g.leaderCancel = cancel
			g.leaderMu.Unlock()
			g.n.loops.Add(1)
			go func() {
				defer g.n.loops.Done()
				g.lead(ctx)
			}()
		case <-g.raftDone:
			return
		case <-stop:
			// Keep draining until raft is down so it never blocks on us.
			for {
				select {
				case <-g.notifyCh:
				case <-g.raftDone:
					return
				}
			}
		}
	}
}

func (g *group) stepDown() {
	g.readyTerm.Store(0)
	g.leaderMu.Lock()
	if g.leaderCancel != nil {
		g.leaderCancel()
		g.leaderCancel = nil
	}
	g.leaderMu.Unlock()
}

// lead runs while this node leads the group.
func (g *group) lead(ctx context.Context) {
	term := g.raft.CurrentTerm()
	// The term starts with an empty command batch rather than a bare
	// Barrier: like a barrier, its future completes once everything before
	// it is applied, so the commit index is current; unlike one, the state
	// machine sees it (raft never hands no-op and barrier entries to the
	// FSM), so every replica's applied index moves past the new leader's
	// no-op and a read index never points at an entry no FSM will apply.
	marker, err := sm.EncodeBatch(&logpb.Batch{})
	if err != nil {
		g.n.log.Error("encode term marker", "err", err)
		return
	}
	for ctx.Err() == nil {
		err := g.raft.Apply(marker, g.n.cfg.ElectionTimeout*5).Error()
		if err == nil {
			break
		}
		if g.raft.State() != raft.Leader {
			return
		}
		g.n.log.Warn("term marker after election failed; retrying", "group", g.name, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
	if ctx.Err() != nil || g.raft.CurrentTerm() != term {
		return
	}
	g.readyTerm.Store(term)
	g.n.log.Info("leading group", "group", g.name, "term", term)
	if g.name == metapb.MetadataGroup {
		g.n.initCluster(ctx)
	}
	for _, task := range g.n.leaderTasks(g.name) {
		g.n.loops.Add(1)
		go func() {
			defer g.n.loops.Done()
			task(ctx)
		}()
	}
	g.runTimers(ctx)
}

// leader returns the group's leader as this node knows it.
func (g *group) leader() (id, addr string) {
	a, i := g.raft.LeaderWithID()
	return string(i), string(a)
}

func (g *group) isLeader() bool { return g.raft.State() == raft.Leader }

// voters returns the voters of the group's latest configuration.
func (g *group) voters() []raft.Server {
	f := g.raft.GetConfiguration()
	if f.Error() != nil {
		return nil
	}
	var out []raft.Server
	for _, s := range f.Configuration().Servers {
		if s.Suffrage == raft.Voter {
			out = append(out, s)
		}
	}
	return out
}

func (g *group) configuration() []raft.Server {
	f := g.raft.GetConfiguration()
	if f.Error() != nil {
		return nil
	}
	return f.Configuration().Servers
}
