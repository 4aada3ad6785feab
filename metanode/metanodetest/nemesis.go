package metanodetest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/metamq/meta/rpc/client"
	"github.com/metamq/meta/rpc/metapb"
	"github.com/metamq/meta/sm/logpb"
	"github.com/metamq/meta/verify"
	"github.com/metamq/meta/verify/poll"
)

// Nemesis errors.
var (
	// ErrNodeDown: a node a fault or a status query needs is not running.
	ErrNodeDown = errors.New("metanodetest: node not running")
	// ErrUnhealthy: the cluster did not reach the shape a heal promises
	// (every member running, a leader per group, each group on as many
	// voters as its replication factor, where the directory places it)
	// before the deadline.
	ErrUnhealthy = errors.New("metanodetest: cluster not healthy")
)

// NemesisOptions configure a Nemesis.
type NemesisOptions struct {
	// Logger, default the cluster's logger.
	Logger *slog.Logger
	// RequestTimeout bounds each call the nemesis makes through the public
	// client (membership, leadership transfer). Default 10s.
	RequestTimeout time.Duration
}

// Nemesis carries out verify's fault contract (verify/fault.go) on an
// in-process Cluster. It supports every kind except crashpoint:
//
//   - kill, kill-all: Cluster.Crash (RocksDB closed without flushing
//     memtables, no leadership handoff) at Inject; Restart at Heal, which
//     then waits until every group has a leader again, so that the "after"
//     window measures a serving cluster. Crashes and restarts are bounded
//     by the fault's context: a node whose shutdown hangs fails the run.
//
//   - pause: there is no SIGSTOP for a goroutine set, so a paused node is
//     one whose every link, to and from every other node and the client
//     pseudo-node, is blocked: its raft timers still run, but nobody hears
//     from it and clients hang on it as on a frozen process. Bytes written
//     during the pause are delivered at Heal, as a resumed process would
//     send them.
//
//   - isolate, split, bridge, oneway: Net.Block on Fault.CutLinks; clients
//     keep reaching every node.
//
//   - flap: a loop owned by the nemesis cuts Nodes[0] off for half of each
//     period and restores it for the other half until Heal.
//
//   - delay: every link touching Nodes (peer links and the client
//     pseudo-node's links) gets delay ± jitter (drawn once per link from
//     the fault's Pick) and loss: the probability that a write kills its
//     connection, losing what was in flight.
//
//   - member: remove-readd, wipe-readd and add, through the public client
//     (RemoveMember/AddMember) and the harness (Crash, Wipe, Join,
//     AddNode, Forget). A node is re-added only once no running node's
//     configuration of any group holds it any more; a wiped node comes
//     back on a new empty data directory but the same id and address, so
//     the run's pinned clients and endpoints stay valid. A removed node is
//     crashed once no configuration holds it any more (it may have led a
//     group and must hand it over first). Heal re-adds (or removes the
//     spare) and returns; the node catches up and is promoted while the
//     workload runs on. HealAll waits until the node set equals the
//     initial one and the groups are placed again (WaitHealthy).
//
//   - scale: "grow" adds a spare (AddNode, AddMember, Join) and lets the
//     controller fill it; "replace" adds a spare, crashes Nodes[0] and
//     removes it (forced), so that the controller re-creates its replicas
//     on the others. Heal brings a replaced node back wiped (as for
//     member faults) and drains and removes the spare.
//
//   - move: f.Nodes[0]'s replica of Params["group"] is moved through the
//     public MoveReplica (verify.MoveReplica) to a member that holds none
//     (replication factor below the node count; Heal has nothing to
//     undo: the controller may rebalance), or else to a spare added for it
//     (as for member add), which Heal drains and removes, so the replica
//     moves back.
//
//   - transfer: a loop owned by the nemesis calls TransferLeader every
//     Params["every"], alternating between Params["group"] and a random
//     group, each time to a random voter of that group (its leader's
//     configuration; a random member if no leader is known).
//
//   - lag: Nodes[0] is cut off like isolate, and a loop owned by the
//     nemesis proposes no-op entries (operations that change nothing:
//     removing an absent member, deleting an absent key or consumer group)
//     to Params["group"] through its leader until every other voter of
//     the group has compacted its log past the follower's last entry
//     (whichever leads when the follower returns must send it a
//     snapshot). Heal finishes that if the
//     fault was too short, then reconnects the follower; HealAll waits
//     until it has caught up and counts it in Stats().LagSnapshots if it
//     came back through a snapshot install. The cluster must run with a
//     small SnapshotThreshold and TrailingLogs and a short
//     SnapshotInterval (Options.Configure), or Heal runs into its deadline.
//
//   - reshard: a data group is split below a hot key through the public
//     SplitGroup; Heal waits until the split is done (nemesis_reshard.go).
//
//   - disk-full, corrupt, upgrade: see nemesis_ops.go.
//
// crashpoint is not supported: the node has no crash points to arm from
// outside, and adding them would mean changing metanode.
//
// Methods follow verify.Nemesis: Inject, Heal and HealAll come from one
// goroutine; the nemesis owns the flap, transfer and lag filler loops and
// stops them at Heal, HealAll and Close.
type Nemesis struct {
	c     *Cluster
	log   *slog.Logger
	nodes []string // the initial members, sorted
	cl    *client.Client
	// trailing is the nodes' TrailingLogs, for lag.
	trailing uint64
	// minFree is the nodes' MinFreeBytes, for disk-full; timeout bounds
	// each call through the client.
	minFree int64
	timeout time.Duration
	// rf and mdRF are the replication factors the cluster was configured
	// with (data and offset groups, metadata-0), for WaitHealthy.
	rf, mdRF int

	mu sync.Mutex // guards the fields below
	// loop is the flap, transfer or lag filler loop of the active fault,
	// or nil.
	loop *loop
	// lag is the lag fault in progress, or nil; lagChecks are healed lag
	// faults HealAll still has to check.
	lag       *lagState
	lagChecks []lagCheck
	// removed holds members a member fault removed and has not re-added.
	removed map[string]bool
	// spares holds nodes an "add" member fault added and has not removed.
	spares []string
	seq    int // names spares and wiped directories
	stats  NemesisStats
	// ops is the operations fault in progress and its counts
	// (nemesis_ops.go).
	ops opsState
	// children are the groups reshard faults made; resharding is set
	// from a reshard's Inject until its splits are done
	// (nemesis_reshard.go).
	children   []string
	resharding bool
	closed     bool
}

// NemesisStats count what a nemesis did, so a test can tell a fault that
// happened from one that was only scheduled.
type NemesisStats struct {
	// Injected counts successful Injects per kind.
	Injected map[verify.FaultKind]int
	// MemberOps counts completed member faults per op.
	MemberOps map[string]int
	// Transfers counts TransferLeader calls that succeeded.
	Transfers int
	// Flaps counts cut phases of flap faults.
	Flaps int
	// LagSnapshots counts lag faults whose follower came back through a
	// snapshot install (its snapshot index passed its old last index).
	LagSnapshots int
	// Moves counts move faults whose replica the directory moved.
	Moves int
	// ScaleOps counts completed scale faults per op.
	ScaleOps map[string]int
	// Reshards counts splits reshard faults started.
	Reshards int
	// SlowRemovals counts RemoveMember calls that did not return although
	// the member had left the list (see Nemesis.unlist).
	SlowRemovals int
	// Ops counts what the operations faults (disk-full, corrupt,
	// upgrade) did.
	Ops OpsStats
}

var (
	_ verify.Nemesis       = (*Nemesis)(nil)
	_ verify.KindSupporter = (*Nemesis)(nil)
)

// NewNemesis returns a nemesis over c. Its members are the cluster's nodes
// now. It is closed when the test ends (before the cluster stops).
func NewNemesis(c *Cluster, opts NemesisOptions) (*Nemesis, error) {
	if opts.Logger == nil {
		opts.Logger = c.log
	}
	if opts.RequestTimeout == 0 {
		opts.RequestTimeout = 10 * time.Second
	}
	nodes := slices.Sorted(slices.Values(c.IDs()))
	eps := make([]string, 0, len(nodes))
	for _, id := range nodes {
		eps = append(eps, c.Get(id).Addr)
	}
	cl, err := client.New(client.Config{Endpoints: eps, RequestTimeout: opts.RequestTimeout,
		Logger: opts.Logger, Dialer: c.Net.Dialer(Client)})
	if err != nil {
		return nil, fmt.Errorf("metanodetest: nemesis client: %w", err)
	}
	probe := c.config(c.Get(nodes[0]), nil)
	n := &Nemesis{c: c, log: opts.Logger, nodes: nodes, cl: cl, trailing: probe.TrailingLogs,
		minFree: probe.MinFreeBytes, timeout: opts.RequestTimeout,
		rf: probe.ReplicationFactor, mdRF: probe.MetadataReplicationFactor,
		removed: map[string]bool{}, stats: NemesisStats{Injected: map[verify.FaultKind]int{}, MemberOps: map[string]int{}, ScaleOps: map[string]int{}}}
	c.t.Cleanup(func() { _ = n.Close() })
	return n, nil
}

// Close stops the nemesis's loops and its client. It does not heal: call
// HealAll first if the cluster must go on. Safe to call twice.
func (n *Nemesis) Close() error {
	n.stopLoop()
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	n.mu.Unlock()
	return n.cl.Close()
}

// Nodes returns the initial members, sorted.
func (n *Nemesis) Nodes() []string { return slices.Clone(n.nodes) }

// Endpoints maps each initial member to its client address (the addresses
// never change, also across wipes), for verify.RunConfig.Endpoints.
func (n *Nemesis) Endpoints() map[string]string {
	out := make(map[string]string, len(n.nodes))
	for _, id := range n.nodes {
		out[id] = n.c.Get(id).Addr
	}
	return out
}

// Dialer returns a verify.Dialer whose connections go through the fault
// layer as the client pseudo-node, so that pause and delay reach clients.
func (n *Nemesis) Dialer(log *slog.Logger, requestTimeout time.Duration) verify.Dialer {
	return func(endpoints []string, pinned bool) (verify.Conn, error) {
		c, err := client.New(client.Config{Endpoints: endpoints, Pinned: pinned, RequestTimeout: requestTimeout,
			Logger: log, Dialer: n.c.Net.Dialer(Client)})
		if err != nil {
			return nil, err
		}
		return c, nil
	}
}

// Stats returns a copy of what the nemesis did so far.
func (n *Nemesis) Stats() NemesisStats {
	n.mu.Lock()
	defer n.mu.Unlock()
	s := n.stats
	s.Injected = maps.Clone(s.Injected)
	s.MemberOps = maps.Clone(s.MemberOps)
	s.ScaleOps = maps.Clone(s.ScaleOps)
	s.Ops = n.ops.OpsStats
	s.Ops.CorruptFiles = maps.Clone(s.Ops.CorruptFiles)
	return s
}

// Supports reports every kind but crashpoint.
func (n *Nemesis) Supports(k verify.FaultKind) bool {
	return n.faults().Supports(k)
}

// Resolve is verify.ResolveTarget over the nodes' in-process status (no
// network, so a fault on the client links cannot hide a leader): a
// follower of a group is one of its replicas, another voter of its
// leader's configuration.
func (n *Nemesis) Resolve(ctx context.Context, t verify.Target) ([]string, error) {
	return verify.ResolveTarget(ctx, localStatus{n.c}, n.Endpoints(), t)
}

// localStatus answers Status from the running nodes themselves.
type localStatus struct{ c *Cluster }

func (s localStatus) Status(_ context.Context, endpoint string) (*metapb.StatusResponse, error) {
	for _, id := range s.c.IDs() {
		if s.c.Get(id).Addr != endpoint {
			continue
		}
		node := s.c.Running(id)
		if node == nil {
			return nil, fmt.Errorf("%w: %s", ErrNodeDown, id)
		}
		k, m := node.GroupCounts()
		return &metapb.StatusResponse{NodeId: id, Addr: endpoint, ClusterId: node.ClusterID(),
			OffsetGroups: uint32(k), DataGroups: uint32(m), Groups: node.Status()}, nil
	}
	return nil, fmt.Errorf("metanodetest: no node at %s", endpoint)
}

// Inject starts f on f.Nodes.
func (n *Nemesis) Inject(ctx context.Context, f *verify.Fault) error {
	if len(f.Nodes) == 0 {
		return fmt.Errorf("metanodetest: fault %d: no nodes bound", f.ID)
	}
	if err := n.faults().Inject(ctx, "metanodetest", f); err != nil {
		return err
	}
	n.mu.Lock()
	n.stats.Injected[f.Kind]++
	n.mu.Unlock()
	return nil
}

// Heal ends f.
func (n *Nemesis) Heal(ctx context.Context, f *verify.Fault) error {
	return n.faults().Heal(ctx, "metanodetest", f)
}

// faults maps every kind the nemesis carries out (all but crashpoint) to
// its inject and heal.
func (n *Nemesis) faults() verify.FaultTable {
	healNetwork := func(context.Context, *verify.Fault) error {
		n.c.Net.Heal()
		return nil
	}
	stopLoop := func(context.Context, *verify.Fault) error {
		n.stopLoop()
		n.c.Net.Heal()
		return nil
	}
	t := verify.FaultTable{
		verify.FaultPause:    {Inject: n.pause, Heal: healNetwork},
		verify.FaultDelay:    {Inject: verify.FaultOnly(n.delay), Heal: healNetwork},
		verify.FaultLag:      {Inject: verify.FaultOnly(n.injectLag), Heal: verify.CtxOnly(n.healLag)},
		verify.FaultFlap:     {Inject: verify.FaultOnly(n.startFlap), Heal: stopLoop},
		verify.FaultTransfer: {Inject: verify.FaultOnly(n.startTransfer), Heal: stopLoop},
		verify.FaultMember:   {Inject: n.injectMember, Heal: n.healMember},
		verify.FaultMove:     {Inject: n.injectMove, Heal: verify.CtxOnly(n.removeSpares)},
		verify.FaultScale:    {Inject: n.injectScale, Heal: n.healScale},
		verify.FaultReshard:  {Inject: n.injectReshard, Heal: verify.CtxOnly(n.healReshard)},
		// The operations faults (nemesis_ops.go).
		verify.FaultDiskFull: {Inject: n.injectDiskFull, Heal: verify.CtxOnly(n.healDiskFull)},
		verify.FaultCorrupt:  {Inject: n.injectCorrupt, Heal: verify.CtxOnly(n.healCorrupt)},
		verify.FaultUpgrade:  {Inject: n.injectUpgrade, Heal: verify.CtxOnly(n.healUpgrade)},
	}
	t.Set(verify.FaultOps{
		Inject: func(ctx context.Context, f *verify.Fault) error { return n.crash(ctx, f.Nodes...) },
		Heal:   n.healKill,
	}, verify.FaultKill, verify.FaultKillAll)
	cut := func(_ context.Context, f *verify.Fault) error {
		n.cut(f)
		return nil
	}
	return t.Set(verify.FaultOps{Inject: cut, Heal: healNetwork},
		verify.FaultIsolate, verify.FaultSplit, verify.FaultBridge, verify.FaultOneWay)
}

// healKill restarts the crashed nodes and waits until every group has a
// leader.
func (n *Nemesis) healKill(ctx context.Context, f *verify.Fault) error {
	start := time.Now()
	if err := n.restartDown(ctx, f.Nodes); err != nil {
		return err
	}
	restarted := time.Since(start)
	err := n.waitLeaders(ctx)
	n.log.Info("nemesis: restarted", "fault", f.ID, "nodes", f.Nodes, "restart", restarted, "leaders", time.Since(start)-restarted)
	return err
}

// pause holds every message to and from the nodes, and every request they
// serve.
func (n *Nemesis) pause(_ context.Context, f *verify.Fault) error {
	for _, id := range f.Nodes {
		for _, o := range append(n.c.IDs(), Client) {
			if o != id {
				n.c.Net.Block(id, o)
				n.c.Net.Block(o, id)
			}
		}
	}
	return nil
}

// HealAll ends whatever is left of any fault: stops the loops, heals the
// network, finishes membership changes (re-adds removed members, removes
// spares), restarts crashed members, and waits until the cluster is
// healthy (WaitHealthy).
func (n *Nemesis) HealAll(ctx context.Context) error {
	n.stopLoop()
	n.c.Net.Heal()
	var errs []error
	if err := n.healAllOps(ctx); err != nil {
		errs = append(errs, err)
	}
	n.mu.Lock()
	resharding := n.resharding
	n.mu.Unlock()
	if resharding {
		if err := n.healReshard(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	n.mu.Lock()
	n.lag = nil
	removed := slices.Sorted(maps.Keys(n.removed))
	spares := slices.Clone(n.spares)
	n.mu.Unlock()
	for _, id := range removed {
		if err := n.readd(ctx, id); err != nil {
			errs = append(errs, fmt.Errorf("re-add %s: %w", id, err))
		}
	}
	for _, id := range spares {
		if err := n.removeSpare(ctx, id); err != nil {
			errs = append(errs, fmt.Errorf("remove spare %s: %w", id, err))
		}
	}
	n.mu.Lock()
	var down []string
	for _, id := range n.nodes {
		if !n.removed[id] && n.c.Running(id) == nil {
			down = append(down, id)
		}
	}
	n.mu.Unlock()
	if err := n.restartDown(ctx, down); err != nil {
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		errs = append(errs, n.WaitHealthy(ctx))
	}
	if len(errs) == 1 && errs[0] == nil {
		errs = append(errs, n.checkLags(ctx))
	}
	return errors.Join(errs...)
}

// parallel runs f for every id at once and joins the errors. It returns
// early when ctx ends: a node whose Crash or Start hangs (a node bug) must
// fail the fault, not the whole test by its timeout. The goroutines still
// running then are abandoned (nothing can stop a hung Crash); goleak will
// name them, next to the run that failed.
func (n *Nemesis) parallel(ctx context.Context, ids []string, f func(id string) error) error {
	errs := make([]error, len(ids))
	done := make(chan struct{})
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Go(func() {
			if err := f(id); err != nil {
				errs[i] = fmt.Errorf("%s: %w", id, err)
			}
		})
	}
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return errors.Join(errs...)
	case <-ctx.Done():
		return fmt.Errorf("metanodetest: stopping or starting %v did not finish (a hung Crash or Start): %w", ids, ctx.Err())
	}
}

// crash crash-stops the nodes at once, bounded by ctx.
func (n *Nemesis) crash(ctx context.Context, ids ...string) error {
	return n.parallel(ctx, ids, func(id string) error { n.c.Crash(id); return nil })
}

// restartDown restarts, at once, every listed node that is not running.
func (n *Nemesis) restartDown(ctx context.Context, ids []string) error {
	return n.parallel(ctx, ids, func(id string) error {
		if n.c.Running(id) != nil {
			return nil
		}
		return n.c.Restart(id)
	})
}

// cut blocks the links f cuts.
func (n *Nemesis) cut(f *verify.Fault) {
	for _, l := range f.CutLinks(n.c.IDs()) {
		n.c.Net.Block(l.From, l.To)
	}
}

// groups lists the cluster's groups: those it started with and those
// reshard faults made.
func (n *Nemesis) groups() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append(metapb.Groups(n.c.opts.OffsetGroups, n.c.opts.DataGroups), n.children...)
}

// leader returns the running node that leads group with the highest term
// and its status of the group, or "" and nil.
func (n *Nemesis) leader(group string) (string, *metapb.GroupStatus) {
	var best string
	var bst *metapb.GroupStatus
	for _, id := range n.c.IDs() {
		node := n.c.Running(id)
		if node == nil {
			continue
		}
		for _, st := range node.Status() {
			if st.Group == group && st.State == "Leader" && (bst == nil || st.Term > bst.Term) {
				best, bst = id, st
			}
		}
	}
	return best, bst
}

// groupStatus returns node id's status of group, or nil.
func (n *Nemesis) groupStatus(id, group string) *metapb.GroupStatus {
	node := n.c.Running(id)
	if node == nil {
		return nil
	}
	for _, st := range node.Status() {
		if st.Group == group {
			return st
		}
	}
	return nil
}

// voters returns the running node that leads group with the highest term
// (as leader does) and the voters of its configuration, sorted: the
// group's replicas as raft has them. "" and nil if no running node leads
// it.
func (n *Nemesis) voters(group string) (string, []string) {
	id, st := n.leader(group)
	if st == nil {
		return "", nil
	}
	var voters []string
	for _, m := range st.Members {
		if m.Voter {
			voters = append(voters, m.Id)
		}
	}
	slices.Sort(voters)
	return id, voters
}

// want is how many replicas group has on a healthy cluster: its
// replication factor (metadata-0's own) capped at the node count, as
// verify.PlacementProblems counts them.
func (n *Nemesis) want(group string) int {
	if group == metapb.MetadataGroup {
		return min(n.mdRF, len(n.nodes))
	}
	return min(n.rf, len(n.nodes))
}

// waitLeaders waits until every group has a leader a majority of its
// voters agree on (Cluster.Leader).
func (n *Nemesis) waitLeaders(ctx context.Context) error {
	return poll.Until(ctx, func() error {
		for _, g := range n.groups() {
			if n.c.Leader(g) == "" {
				return fmt.Errorf("%w: no leader for %s", ErrUnhealthy, g)
			}
		}
		return nil
	})
}

// WaitHealthy waits until the cluster is in the shape it had when it
// started, so that it can take the next fault (or the next run) as if it
// had just started:
//
//   - every initial member runs;
//   - every group has a leader a majority of its voters report
//     (Cluster.Leader);
//   - the directory passes verify's placement checker against the initial
//     members (verify.PlacementProblems over the controller's ListGroups
//     and ListNodes: each group active, with its replication factor of
//     replicas on distinct members, each a voter, nothing moving; every
//     member alive; no other member) and records the replication factors
//     the cluster was configured with;
//   - each group's leader's configuration is exactly the group's replica
//     set in the directory, all voters, as many as the group's
//     replication factor, every one of them running and hosting the
//     group.
//
// With the replication factor at the node count this is every member a
// voter of every group; below it, each group on its own replica set.
func (n *Nemesis) WaitHealthy(ctx context.Context) error {
	var last error
	return poll.Until(ctx, func() error {
		err := n.healthy(ctx)
		if err != nil && ctx.Err() != nil && last != nil {
			// The deadline cut this round short (a directory read):
			// what the round before found says more.
			return last
		}
		last = err
		return err
	})
}

// healthy is one round of WaitHealthy.
func (n *Nemesis) healthy(ctx context.Context) error {
	for _, id := range n.nodes {
		if n.c.Running(id) == nil {
			return fmt.Errorf("%w: %s is down", ErrUnhealthy, id)
		}
	}
	leaders := map[string]string{}
	for _, g := range n.groups() {
		if leaders[g] = n.c.Leader(g); leaders[g] == "" {
			return fmt.Errorf("%w: no leader for %s", ErrUnhealthy, g)
		}
	}
	placed, err := n.placement(ctx)
	if err != nil {
		return err
	}
	for _, g := range n.groups() {
		replicas, ok := placed[g]
		if !ok {
			return fmt.Errorf("%w: %s is not in the directory", ErrUnhealthy, g)
		}
		st := n.groupStatus(leaders[g], g)
		if st == nil {
			return fmt.Errorf("%w: leader %s of %s went down", ErrUnhealthy, leaders[g], g)
		}
		var voters []string
		for _, m := range st.Members {
			if !m.Voter {
				return fmt.Errorf("%w: %s is not a voter of %s yet", ErrUnhealthy, m.Id, g)
			}
			voters = append(voters, m.Id)
		}
		slices.Sort(voters)
		if len(voters) != n.want(g) {
			return fmt.Errorf("%w: %s's voters are %v, want %d", ErrUnhealthy, g, voters, n.want(g))
		}
		if !slices.Equal(voters, replicas) {
			return fmt.Errorf("%w: %s's voters are %v, the directory places it on %v", ErrUnhealthy, g, voters, replicas)
		}
		for _, id := range voters {
			if n.groupStatus(id, g) == nil {
				return fmt.Errorf("%w: %s, a voter of %s, does not run it", ErrUnhealthy, id, g)
			}
		}
	}
	return nil
}

// placement reads the directory through the controller and judges it as
// verify's placement checker does (verify.PlacementProblems against the
// initial members), and wants the replication factors the cluster was
// configured with. It returns each group's replica nodes, sorted.
func (n *Nemesis) placement(ctx context.Context) (map[string][]string, error) {
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	gs, err := n.cl.ListGroups(rctx)
	var ns *metapb.ListNodesResponse
	if err == nil {
		ns, err = n.cl.ListNodes(rctx)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: the directory: %w", ErrUnhealthy, err)
	}
	if p := verify.PlacementProblems(gs, ns, n.nodes); len(p) > 0 {
		return nil, fmt.Errorf("%w: %s", ErrUnhealthy, strings.Join(p, "; "))
	}
	if int(gs.ReplicationFactor) != n.rf || int(gs.MetadataReplicationFactor) != n.mdRF {
		return nil, fmt.Errorf("%w: the directory's replication factors are %d (metadata-0 %d), the cluster was configured with %d (%d)",
			ErrUnhealthy, gs.ReplicationFactor, gs.MetadataReplicationFactor, n.rf, n.mdRF)
	}
	placed := map[string][]string{}
	for _, g := range gs.Groups {
		var nodes []string
		for _, r := range g.Replicas {
			nodes = append(nodes, r.Node)
		}
		slices.Sort(nodes)
		placed[g.Group] = nodes
	}
	return placed, nil
}

// Wipe gives the stopped node id a new, empty data directory (the old one
// stays on disk for post-mortems): restarted with Join, it comes back as a
// new replica under the same id and address.
func (c *Cluster) Wipe(id string) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.nodes[id]
	if n == nil {
		return "", fmt.Errorf("metanodetest: no node %s", id)
	}
	if n.Node != nil {
		return "", fmt.Errorf("metanodetest: wipe %s: still running", id)
	}
	for i := 1; ; i++ {
		dir := filepath.Join(c.opts.Dir, fmt.Sprintf("%s.wipe%d", id, i))
		if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
			n.Dir = dir
			return dir, nil
		}
	}
}

// ---- loops: flap, transfer (and the lag filler) ----

// loop is a goroutine owned by the nemesis, stopped by stopLoop.
type loop struct {
	cancel context.CancelFunc
	done   chan struct{}
}

func (n *Nemesis) startLoop(f func(ctx context.Context)) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return errors.New("metanodetest: nemesis closed")
	}
	if n.loop != nil {
		return errors.New("metanodetest: a fault loop is already running")
	}
	ctx, cancel := context.WithCancel(context.Background())
	l := &loop{cancel: cancel, done: make(chan struct{})}
	n.loop = l
	go func() {
		defer close(l.done)
		f(ctx)
	}()
	return nil
}

// stopLoop stops the running loop, if any, and waits for it.
func (n *Nemesis) stopLoop() {
	n.mu.Lock()
	l := n.loop
	n.loop = nil
	n.mu.Unlock()
	if l != nil {
		l.cancel()
		<-l.done
	}
}

func durationParam(f *verify.Fault, key string, def time.Duration) (time.Duration, error) {
	s, ok := f.Params[key]
	if !ok || s == "" {
		return def, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("metanodetest: fault %d: %s=%q: want a duration", f.ID, key, s)
	}
	return d, nil
}

// startFlap cuts Nodes[0] off for the first half of every period and
// restores it for the second, until stopped. It returns once the first cut
// is in effect.
func (n *Nemesis) startFlap(f *verify.Fault) error {
	period, err := durationParam(f, "period", 2*time.Second)
	if err != nil {
		return err
	}
	period = max(period, 100*time.Millisecond)
	cut := &verify.Fault{Kind: verify.FaultIsolate, Nodes: f.Nodes[:1]}
	first := make(chan struct{})
	err = n.startLoop(func(ctx context.Context) {
		for i := 0; ; i++ {
			n.cut(cut)
			n.mu.Lock()
			n.stats.Flaps++
			n.mu.Unlock()
			if i == 0 {
				close(first)
			}
			if !verify.Sleep(ctx, period/2) {
				return
			}
			n.c.Net.Heal()
			if !verify.Sleep(ctx, period-period/2) {
				return
			}
		}
	})
	if err != nil {
		return err
	}
	<-first
	return nil
}

// startTransfer runs the leadership storm.
func (n *Nemesis) startTransfer(f *verify.Fault) error {
	every, err := durationParam(f, "every", 500*time.Millisecond)
	if err != nil {
		return err
	}
	every = max(every, 50*time.Millisecond)
	named := f.Params["group"]
	groups := n.groups()
	if named != "" && !slices.Contains(groups, named) {
		return fmt.Errorf("metanodetest: fault %d: unknown group %q", f.ID, named)
	}
	rng := rand.New(rand.NewPCG(f.Pick, uint64(f.ID)))
	return n.startLoop(func(ctx context.Context) {
		for tick := 0; ; tick++ {
			g := groups[rng.IntN(len(groups))]
			if named != "" && tick%2 == 0 {
				g = named
			}
			// A voter of g: leadership cannot go to a node outside the
			// group's replica set.
			targets := n.nodes
			if _, voters := n.voters(g); len(voters) > 0 {
				targets = voters
			}
			target := targets[rng.IntN(len(targets))]
			cctx, cancel := context.WithTimeout(ctx, max(every, 2*time.Second))
			_, err := n.cl.TransferLeader(cctx, g, target)
			cancel()
			if err == nil {
				n.mu.Lock()
				n.stats.Transfers++
				n.mu.Unlock()
			} else if ctx.Err() == nil {
				n.log.Debug("nemesis: transfer", "group", g, "to", target, "err", err)
			}
			if !verify.Sleep(ctx, every) {
				return
			}
		}
	})
}

// delay slows down (and makes lossy) every link touching f.Nodes.
func (n *Nemesis) delay(f *verify.Fault) error {
	d, err := durationParam(f, "delay", 50*time.Millisecond)
	if err != nil {
		return err
	}
	jitter, err := durationParam(f, "jitter", 0)
	if err != nil {
		return err
	}
	loss := 0.0
	if s := f.Params["loss"]; s != "" {
		if loss, err = strconv.ParseFloat(s, 64); err != nil || loss < 0 || loss > 1 {
			return fmt.Errorf("metanodetest: fault %d: loss=%q: want 0..1", f.ID, s)
		}
	}
	rng := rand.New(rand.NewPCG(f.Pick, uint64(f.ID)))
	draw := func() time.Duration {
		if jitter <= 0 {
			return d
		}
		return max(d-jitter+time.Duration(rng.Int64N(int64(2*jitter)+1)), 0)
	}
	others := append(slices.Sorted(slices.Values(n.c.IDs())), Client)
	done := map[link]bool{}
	for _, id := range f.Nodes {
		for _, o := range others {
			if o == id {
				continue
			}
			for _, l := range []link{{id, o}, {o, id}} {
				if !done[l] {
					done[l] = true
					n.c.Net.Delay(l.from, l.to, draw(), loss)
				}
			}
		}
	}
	return nil
}

// ---- lag ----

// fillerOp is an operation for group that changes nothing but still takes
// a log entry.
func fillerOp(group string) (*logpb.Op, error) {
	kind, err := metapb.GroupKind(group)
	if err != nil {
		return nil, err
	}
	switch kind {
	case "metadata":
		return &logpb.Op{Op: &logpb.Op_MemberRemove{MemberRemove: &logpb.MemberRemove{Id: "nemesis-filler"}}}, nil
	case "offset":
		return &logpb.Op{Op: &logpb.Op_OffsetDeleteGroup{OffsetDeleteGroup: &logpb.OffsetDeleteGroup{Group: "nemesis-filler"}}}, nil
	default:
		return &logpb.Op{Op: &logpb.Op_Delete{Delete: &logpb.KVDelete{Key: []byte("nemesis-filler")}}}, nil
	}
}

// lagState is a lag fault in progress: the cut-off follower, its group,
// the filler operation and the follower's last index when it was cut off.
type lagState struct {
	follower, group string
	op              *logpb.Op
	last            uint64
}

// lagCheck is a healed lag fault whose follower has yet to catch up.
type lagCheck struct {
	lagState
	want uint64 // the leader's commit index at heal
}

// injectLag cuts the follower off and starts the filler loop, so the
// group's log is compacted past the follower while the fault lasts.
func (n *Nemesis) injectLag(f *verify.Fault) error {
	group := f.Params["group"]
	if !slices.Contains(n.groups(), group) {
		return fmt.Errorf("metanodetest: fault %d: lag needs a group of the cluster, got %q", f.ID, group)
	}
	op, err := fillerOp(group)
	if err != nil {
		return err
	}
	n.cut(f)
	st := n.groupStatus(f.Nodes[0], group)
	switch {
	case st == nil && n.c.Running(f.Nodes[0]) == nil:
		return fmt.Errorf("%w: lagging follower %s", ErrNodeDown, f.Nodes[0])
	case st == nil:
		return fmt.Errorf("metanodetest: fault %d: lag: %s holds no replica of %s", f.ID, f.Nodes[0], group)
	}
	// Entries the follower received but had not yet heard committed may
	// still arrive in flight; its last index after the cut is what counts.
	ls := &lagState{follower: f.Nodes[0], group: group, op: op, last: st.LastLogIndex}
	n.mu.Lock()
	n.lag = ls
	n.mu.Unlock()
	return n.startLoop(func(ctx context.Context) {
		for ctx.Err() == nil {
			if err := n.compactPast(ctx, ls); err == nil {
				return
			}
			verify.Sleep(ctx, 50*time.Millisecond)
		}
	})
}

// compactPast proposes one round of filler entries unless every voter of
// the group but the follower has compacted its log past the follower's
// last entry; it returns nil once they have. Every voter, not only the
// leader: leadership may change before the follower is reconnected (its
// higher term on reconnecting forces an election, the controller spreads
// leaders), and a new leader still holding the entries the follower lacks
// would send them instead of a snapshot. After a snapshot at index S raft
// deletes the log up to min(S, last index then - TrailingLogs), which is
// at least S - TrailingLogs (the last index then was at least S); a
// voter's last index now may be larger, so only that lower bound is safe.
func (n *Nemesis) compactPast(ctx context.Context, ls *lagState) error {
	if st := n.groupStatus(ls.follower, ls.group); st != nil && st.LastLogIndex > ls.last {
		ls.last = st.LastLogIndex // late deliveries from before the cut
	}
	id, voters := n.voters(ls.group)
	if id == "" || id == ls.follower {
		return fmt.Errorf("metanodetest: lag: no leader of %s", ls.group)
	}
	behind := ""
	compacted := uint64(0)
	for _, v := range voters {
		if v == ls.follower {
			continue
		}
		st := n.groupStatus(v, ls.group)
		if st == nil {
			return fmt.Errorf("%w: voter %s of %s", ErrNodeDown, v, ls.group)
		}
		c := uint64(0)
		if st.LastSnapshotIndex > n.trailing {
			c = st.LastSnapshotIndex - n.trailing
		}
		if c <= ls.last && (behind == "" || c < compacted) {
			behind, compacted = v, c
		}
	}
	if behind == "" {
		return nil
	}
	node := n.c.Running(id)
	if node == nil {
		return fmt.Errorf("%w: leader %s", ErrNodeDown, id)
	}
	// One by one: concurrent proposals would be packed into one entry.
	for range 16 {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := node.Propose(pctx, ls.group, ls.op)
		cancel()
		if err != nil {
			return fmt.Errorf("metanodetest: lag filler on %s: %w", ls.group, err)
		}
	}
	return fmt.Errorf("metanodetest: lag: %s compacted to %d on %s, follower %s ends at %d", ls.group, compacted, behind, ls.follower, ls.last)
}

// healLag finishes compacting the group's log past the cut-off follower
// (if the fault was too short for the filler loop), then reconnects the
// follower. Whether it came back through a snapshot is checked by HealAll
// once it has caught up.
func (n *Nemesis) healLag(ctx context.Context) error {
	n.stopLoop()
	n.mu.Lock()
	ls := n.lag
	n.lag = nil
	n.mu.Unlock()
	if ls == nil {
		n.c.Net.Heal()
		return errors.New("metanodetest: lag: not injected")
	}
	err := poll.Until(ctx, func() error { return n.compactPast(ctx, ls) })
	n.c.Net.Heal()
	if err != nil {
		return err
	}
	chk := lagCheck{lagState: *ls}
	if _, st := n.leader(ls.group); st != nil {
		chk.want = st.CommitIndex
	}
	n.mu.Lock()
	n.lagChecks = append(n.lagChecks, chk)
	n.mu.Unlock()
	return nil
}

// checkLags waits until each healed lag fault's follower has caught up and
// counts those that did so through a snapshot install (their snapshot
// index passed their last index when cut off).
func (n *Nemesis) checkLags(ctx context.Context) error {
	n.mu.Lock()
	checks := n.lagChecks
	n.lagChecks = nil
	n.mu.Unlock()
	var errs []error
	for _, chk := range checks {
		var caughtUp time.Time
		err := poll.Until(ctx, func() error {
			st := n.groupStatus(chk.follower, chk.group)
			if st == nil {
				return fmt.Errorf("%w: %s", ErrNodeDown, chk.follower)
			}
			if st.AppliedIndex < chk.want {
				return fmt.Errorf("metanodetest: lag: %s applied %d of %s, want %d", chk.follower, st.AppliedIndex, chk.group, chk.want)
			}
			snapshot := st.LastSnapshotIndex > chk.last
			if !snapshot {
				// The state machine's applied index passes the
				// snapshot's while raft installs it, before raft records
				// the snapshot's index: give it a moment.
				if caughtUp.IsZero() {
					caughtUp = time.Now()
				}
				if time.Since(caughtUp) < lagSnapshotGrace {
					return fmt.Errorf("metanodetest: lag: %s caught up on %s, snapshot index %d not past %d yet", chk.follower, chk.group, st.LastSnapshotIndex, chk.last)
				}
				n.log.Warn("nemesis: lagging follower caught up without a snapshot", "node", chk.follower, "group", chk.group)
				return nil
			}
			n.mu.Lock()
			n.stats.LagSnapshots++
			n.mu.Unlock()
			return nil
		})
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// lagSnapshotGrace is how long checkLags waits, once a lagging follower
// has applied what the leader had committed at heal, for raft to record
// the snapshot it installed.
const lagSnapshotGrace = 3 * time.Second

// ---- member ----

// members returns the member ids (a linearizable read through the client).
func (n *Nemesis) members(ctx context.Context) ([]string, error) {
	resp, err := n.cl.Members(ctx)
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, m := range resp.Members {
		ids = append(ids, m.Id)
	}
	return ids, nil
}

// unlist takes id out of the member list by removal (see
// verify.TakeOut). RemoveMember also waits until the serving node's
// configurations no longer hold the member; a call that failed although
// the member left the list is counted in Stats().SlowRemovals and logged,
// and the removal is then judged by waitGone.
func (n *Nemesis) unlist(ctx context.Context, id string, removal verify.Removal) error {
	slow, err := verify.TakeOut(ctx, n.cl, id, removal, 10*time.Second)
	if slow > 0 {
		n.log.Warn("nemesis: member unlisted but RemoveMember did not return", "member", id, "calls", slow)
		n.mu.Lock()
		n.stats.SlowRemovals += slow
		n.mu.Unlock()
	}
	if err != nil {
		return fmt.Errorf("metanodetest: %w", err)
	}
	return nil
}

// waitGone waits until no running node's configuration of any group holds
// id.
func (n *Nemesis) waitGone(ctx context.Context, id string) error {
	return poll.Until(ctx, func() error {
		for _, other := range n.c.IDs() {
			if other == id {
				continue
			}
			node := n.c.Running(other)
			if node == nil {
				continue
			}
			for _, st := range node.Status() {
				if slices.ContainsFunc(st.Members, func(m *metapb.Member) bool { return m.Id == id }) {
					return fmt.Errorf("metanodetest: %s still in %s's configuration of %s", id, other, st.Group)
				}
			}
		}
		return nil
	})
}

// addMember adds id at addr to the member list, retrying (a removal may
// still be finishing somewhere) until the list holds it.
func (n *Nemesis) addMember(ctx context.Context, id, addr string) error {
	return poll.Until(ctx, func() error {
		_, err := n.cl.AddMember(ctx, id, addr)
		if err == nil {
			return nil
		}
		if ids, lerr := n.members(ctx); lerr == nil && slices.Contains(ids, id) {
			return nil
		}
		return fmt.Errorf("metanodetest: add %s: %w", id, err)
	})
}

// removeAndStop removes member id (forced: it is a live voter of its
// groups, and on a cluster of RF nodes nothing else could take its
// replicas), waits until no configuration holds it while it still runs
// (the careful operator's order: the removed node may lead a group, and
// must hand it over), then crashes it, remembering that it must come
// back.
func (n *Nemesis) removeAndStop(ctx context.Context, id string) error {
	n.mu.Lock()
	n.removed[id] = true
	n.mu.Unlock()
	if err := n.unlist(ctx, id, verify.RemoveForced); err != nil {
		return err
	}
	if err := n.waitGone(ctx, id); err != nil {
		return err
	}
	return n.crash(ctx, id)
}

// readd brings back a member removed by removeAndStop: on a wiped data
// directory, through AddMember and Join. If the removal never happened it
// only makes sure the node runs.
func (n *Nemesis) readd(ctx context.Context, id string) error {
	ids, err := n.membersRetry(ctx)
	if err != nil {
		return err
	}
	if slices.Contains(ids, id) {
		// Never removed (or already re-added): it only needs to run.
		if err := n.restartDown(ctx, []string{id}); err != nil {
			return err
		}
	} else {
		if err := n.crash(ctx, id); err != nil {
			return err
		}
		if err := n.waitGone(ctx, id); err != nil {
			return err
		}
		if _, err := n.c.Wipe(id); err != nil {
			return err
		}
		if err := n.addMember(ctx, id, n.c.Get(id).Addr); err != nil {
			return err
		}
		if err := n.c.Join(id); err != nil {
			return fmt.Errorf("join %s: %w", id, err)
		}
	}
	n.mu.Lock()
	delete(n.removed, id)
	n.mu.Unlock()
	return nil
}

func (n *Nemesis) membersRetry(ctx context.Context) ([]string, error) {
	var ids []string
	err := poll.Until(ctx, func() error {
		var err error
		ids, err = n.members(ctx)
		return err
	})
	return ids, err
}

// addSpare starts a new node and adds it as a member.
func (n *Nemesis) addSpare(ctx context.Context) (string, error) {
	n.mu.Lock()
	n.seq++
	id := fmt.Sprintf("s%d", n.seq)
	n.spares = append(n.spares, id)
	n.mu.Unlock()
	node := n.c.AddNode(id)
	if err := n.addMember(ctx, id, node.Addr); err != nil {
		return id, err
	}
	if err := n.c.Join(id); err != nil {
		return id, fmt.Errorf("join %s: %w", id, err)
	}
	return id, nil
}

// removeSpare drains a spare, removes it from the cluster and the harness.
func (n *Nemesis) removeSpare(ctx context.Context, id string) error {
	if err := n.unlist(ctx, id, verify.RemoveDrained); err != nil {
		return err
	}
	if err := n.waitGone(ctx, id); err != nil {
		return err
	}
	if err := n.crash(ctx, id); err != nil {
		return err
	}
	n.c.Forget(id)
	n.mu.Lock()
	n.spares = slices.DeleteFunc(n.spares, func(s string) bool { return s == id })
	n.mu.Unlock()
	return nil
}

// removeSpares drains and removes every spare a fault added.
func (n *Nemesis) removeSpares(ctx context.Context) error {
	n.mu.Lock()
	spares := slices.Clone(n.spares)
	n.mu.Unlock()
	var errs []error
	for _, id := range spares {
		errs = append(errs, n.removeSpare(ctx, id))
	}
	return errors.Join(errs...)
}

// retireFilled heals a spare's joining (scale "grow", member "add"): it lets the controller fill every spare
// (verify.WaitFilled), so that the drain that follows moves replicas and
// leaderships off a node that holds some, then removes them.
func (n *Nemesis) retireFilled(ctx context.Context) error {
	n.mu.Lock()
	spares := slices.Clone(n.spares)
	n.mu.Unlock()
	for _, id := range spares {
		if err := verify.WaitFilled(ctx, n.cl, id, 10*time.Second); err != nil {
			return fmt.Errorf("metanodetest: %w", err)
		}
	}
	return n.removeSpares(ctx)
}

// injectMove moves f.Nodes[0]'s replica of f.Params["group"] to a member
// that holds none (drawn with f.Pick among them, in sorted order) or, on a
// cluster where every member holds the group (its replication factor is
// the node count), to a spare it adds first; Heal then drains and removes
// the spare, so the replica moves back.
func (n *Nemesis) injectMove(ctx context.Context, f *verify.Fault) error {
	group := f.Params["group"]
	to, err := n.moveTarget(ctx, f, group)
	if err != nil {
		return err
	}
	if to == "" {
		if to, err = n.addSpare(ctx); err != nil {
			return err
		}
	}
	replicas, err := verify.MoveReplica(ctx, n.cl, group, f.Nodes[0], to, 10*time.Second)
	n.log.Info("nemesis: moved a replica", "fault", f.ID, "group", group, "from", f.Nodes[0], "to", to, "replicas", replicas, "err", err)
	if err == nil {
		n.mu.Lock()
		n.stats.Moves++
		n.mu.Unlock()
	}
	return err
}

// moveTarget draws the running initial member that is to take a replica
// of group: one that holds none in the directory, chosen by f.Pick among
// them, or "" when every member holds one.
func (n *Nemesis) moveTarget(ctx context.Context, f *verify.Fault, group string) (string, error) {
	var replicas []string
	err := poll.Until(ctx, func() error {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		gs, err := n.cl.ListGroups(rctx)
		if err != nil {
			return err
		}
		var listed bool
		if replicas, listed = verify.GroupReplicas(gs, group); !listed {
			return fmt.Errorf("metanodetest: fault %d: move: no group %q in the directory", f.ID, group)
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return verify.MoveTarget(n.nodes, replicas, func(id string) bool {
		return !n.removed[id] && n.c.Running(id) != nil
	}, f.Pick), nil
}

// injectScale grows the pool by a spare, or replaces Nodes[0] (dead for
// good) by one.
func (n *Nemesis) injectScale(ctx context.Context, f *verify.Fault) error {
	switch op := f.Params["op"]; op {
	case "grow":
		_, err := n.addSpare(ctx)
		return err
	case "replace":
		id := f.Nodes[0]
		if _, err := n.addSpare(ctx); err != nil {
			return err
		}
		n.mu.Lock()
		n.removed[id] = true
		n.mu.Unlock()
		if err := n.crash(ctx, id); err != nil {
			return err
		}
		// Forced: the node is not drained, and not yet past the
		// controller's dead-node timeout.
		return n.unlist(ctx, id, verify.RemoveForced)
	default:
		return fmt.Errorf("metanodetest: fault %d: %w: scale op %q", f.ID, verify.ErrUnsupported, op)
	}
}

// healScale retires the spare: for "grow" once the controller has given
// it replicas (retireFilled: the pool rebalanced onto it); for "replace" after bringing
// the dead node back, wiped, once no configuration holds it (its replicas
// were re-created elsewhere).
func (n *Nemesis) healScale(ctx context.Context, f *verify.Fault) error {
	if f.Params["op"] == "replace" {
		n.mu.Lock()
		pending := n.removed[f.Nodes[0]]
		n.mu.Unlock()
		if pending {
			if err := n.readd(ctx, f.Nodes[0]); err != nil {
				return err
			}
		}
	}
	retire := n.removeSpares
	if f.Params["op"] == "grow" {
		retire = n.retireFilled
	}
	if err := retire(ctx); err != nil {
		return err
	}
	n.mu.Lock()
	n.stats.ScaleOps[f.Params["op"]]++
	n.mu.Unlock()
	return nil
}

func (n *Nemesis) injectMember(ctx context.Context, f *verify.Fault) error {
	id := f.Nodes[0]
	switch op := f.Params["op"]; op {
	case "remove-readd":
		return n.removeAndStop(ctx, id)
	case "wipe-readd":
		if err := n.removeAndStop(ctx, id); err != nil {
			return err
		}
		return n.readd(ctx, id)
	case "add":
		_, err := n.addSpare(ctx)
		return err
	default:
		return fmt.Errorf("metanodetest: fault %d: %w: member op %q", f.ID, verify.ErrUnsupported, op)
	}
}

func (n *Nemesis) healMember(ctx context.Context, f *verify.Fault) error {
	op := f.Params["op"]
	var errs []error
	switch op {
	case "remove-readd", "wipe-readd":
		n.mu.Lock()
		pending := n.removed[f.Nodes[0]]
		n.mu.Unlock()
		if pending {
			errs = append(errs, n.readd(ctx, f.Nodes[0]))
		}
	case "add":
		errs = append(errs, n.retireFilled(ctx))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	n.mu.Lock()
	n.stats.MemberOps[op]++
	n.mu.Unlock()
	return nil
}
