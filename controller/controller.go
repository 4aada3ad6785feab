package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/metamq/meta/rpc/metapb"
	"github.com/metamq/meta/sm"
	"github.com/metamq/meta/sm/logpb"
)

// Errors, in meta's vocabulary (rpc/metapb/errors.go): each says its
// reason, so the servers and the peer wire carry them as they are.
var (
	// ErrNotActive: this node is not running the controller (it does not
	// lead metadata-0, or its term has not started yet). NOT_LEADER: the
	// caller retries on metadata-0's leader.
	ErrNotActive = metapb.NewError(metapb.ReasonNotLeader, nil, "controller: not active on this node")
	// ErrNoClusterRecord: the cluster record (members, directory) is not
	// written yet; retry shortly.
	ErrNoClusterRecord = metapb.NewError(metapb.ReasonNoClusterRecord, nil, "controller: the cluster record is not written yet (metadata-0's leader writes it); retry shortly")
	// ErrStaleEpoch: a heartbeat or report names an epoch that is not the
	// current one.
	ErrStaleEpoch = metapb.NewError(metapb.ReasonStaleEpoch, nil, "controller: stale epoch")
	// ErrUnknownBroker: the broker never registered.
	ErrUnknownBroker = metapb.NewError(metapb.ReasonNotFound, map[string]string{metapb.MetaField: "broker_id"}, "controller: unknown broker")
)

// Node is what the controller needs from the node it runs on.
type Node interface {
	// Now is the node's clock (the one entries are stamped with).
	Now() time.Time
	// ProposeMetadata replicates an op in metadata-0, whose leader this
	// node is.
	ProposeMetadata(ctx context.Context, op *logpb.Op) (*logpb.Result, error)
	// Metadata is this node's replica of metadata-0 (current on its leader).
	Metadata() (*sm.Machine, error)
	// MoveLeader asks a group's leader to hand leadership to target.
	MoveLeader(ctx context.Context, group, target string) error
	// StartSplit records a split of group at the hash at (0: the middle
	// of its widest range) and returns the new group and the range it
	// takes; the split then runs in the background (split.go).
	StartSplit(ctx context.Context, group string, at uint64) (string, *logpb.HashRange, error)
}

// Config configures the controller.
type Config struct {
	// HeartbeatInterval is what brokers are told to use.
	HeartbeatInterval time.Duration
	// HeartbeatTimeout: a broker silent for longer is declared down.
	HeartbeatTimeout time.Duration
	// CheckInterval is how often liveness and assignments are checked.
	CheckInterval time.Duration
	// RebalanceInterval and MaxMoves bound churn: at most MaxMoves
	// connectors move between live brokers per interval.
	RebalanceInterval time.Duration
	MaxMoves          int
	// SpreadInterval is how often group leaders are spread (0: never).
	SpreadInterval time.Duration
	// NodeTimeout: a node silent for longer is not alive (it gets no new
	// replicas, and a live node must be drained before it is removed).
	// DeadNodeTimeout: a node silent for longer is dead, and its replicas
	// are re-created on the others.
	NodeTimeout     time.Duration
	DeadNodeTimeout time.Duration
	// PlacementInterval is how often replicas are placed; at most
	// MaxReplicaMoves changes run at once (and one per node).
	PlacementInterval time.Duration
	MaxReplicaMoves   int
	// Automatic splits (split.go), checked every PlacementInterval: a data
	// or offset group larger than SplitBytes (0: never by size), or whose
	// leader applied more than SplitEntriesPerSec entries a second for
	// SplitLoadFor (0: never by load), splits; a group split is not split
	// again for SplitCooldown; automatic splits stop at SplitMaxGroups
	// groups of a kind.
	SplitBytes         uint64
	SplitEntriesPerSec float64
	SplitLoadFor       time.Duration
	SplitCooldown      time.Duration
	SplitMaxGroups     int
	Logger             *slog.Logger
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		HeartbeatInterval: 2 * time.Second,
		HeartbeatTimeout:  6 * time.Second,
		CheckInterval:     200 * time.Millisecond,
		RebalanceInterval: 5 * time.Second,
		MaxMoves:          2,
		SpreadInterval:    10 * time.Second,
		NodeTimeout:       5 * time.Second,
		DeadNodeTimeout:   5 * time.Minute,
		PlacementInterval: time.Second,
		MaxReplicaMoves:   4,
		SplitBytes:        1 << 30,
		SplitLoadFor:      time.Minute,
		SplitCooldown:     5 * time.Minute,
		SplitMaxGroups:    256,
	}
}

// Validate reports every problem at once.
func (c Config) Validate() error {
	var errs []error
	if c.HeartbeatInterval <= 0 || c.HeartbeatTimeout <= c.HeartbeatInterval {
		errs = append(errs, errors.New("controller: HeartbeatTimeout must exceed a positive HeartbeatInterval"))
	}
	if c.CheckInterval <= 0 || c.RebalanceInterval <= 0 {
		errs = append(errs, errors.New("controller: CheckInterval and RebalanceInterval must be positive"))
	}
	if c.MaxMoves < 1 {
		errs = append(errs, errors.New("controller: MaxMoves must be at least 1"))
	}
	if c.SpreadInterval < 0 {
		errs = append(errs, errors.New("controller: SpreadInterval must not be negative"))
	}
	if c.NodeTimeout <= 0 || c.DeadNodeTimeout < c.NodeTimeout {
		errs = append(errs, errors.New("controller: DeadNodeTimeout must be at least a positive NodeTimeout"))
	}
	if c.PlacementInterval <= 0 || c.MaxReplicaMoves < 1 {
		errs = append(errs, errors.New("controller: PlacementInterval must be positive and MaxReplicaMoves at least 1"))
	}
	if c.SplitEntriesPerSec < 0 || c.SplitLoadFor < 0 || c.SplitCooldown < 0 {
		errs = append(errs, errors.New("controller: SplitEntriesPerSec, SplitLoadFor and SplitCooldown must not be negative"))
	}
	if (c.SplitBytes > 0 || c.SplitEntriesPerSec > 0) && c.SplitMaxGroups < 2 {
		errs = append(errs, errors.New("controller: SplitMaxGroups must be at least 2 when automatic splits are on"))
	}
	return errors.Join(errs...)
}

// Controller is safe for concurrent use; Run runs it while active.
type Controller struct {
	cfg  Config
	node Node
	log  *slog.Logger

	mu sync.Mutex // guards the fields below
	// run counts the runs started; active is the run that is active now
	// (0: none). Each run ends only its own activity, so a run that is
	// slow to stop can never deactivate the next one.
	run         uint64
	active      uint64
	activeSince time.Time
	// seen holds the last heartbeat per broker (in memory only).
	seen map[string]heartbeat
	// declaring holds, per broker, a channel closed when the down
	// declaration in flight for it has been applied or has failed: a
	// heartbeat arriving meanwhile waits for it, so that it is never
	// answered ALIVE and then overtaken by the declaration.
	declaring map[string]chan struct{}
	// nodes holds the last report per node (in memory only).
	nodes map[string]nodeSeen
	// moves counts placement changes proposed since activation.
	moves uint64
	// splitting is the automatic splits' state since activation.
	splitting *splitState
	// counters since activation.
	declaredDown, assigned, checks uint64
}

type heartbeat struct {
	epoch uint64
	at    time.Time
}

// New returns an inactive controller.
func New(cfg Config, node Node) (*Controller, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Controller{cfg: cfg, node: node, log: cfg.Logger.With("component", "controller"), seen: map[string]heartbeat{},
		nodes: map[string]nodeSeen{}, declaring: map[string]chan struct{}{}}, nil
}

// Run makes this controller active until ctx ends (leadership lost).
func (c *Controller) Run(ctx context.Context) {
	c.mu.Lock()
	c.run++
	run := c.run
	c.active, c.activeSince = run, c.node.Now()
	c.seen = map[string]heartbeat{}
	c.nodes = map[string]nodeSeen{}
	c.declaredDown, c.assigned, c.checks, c.moves = 0, 0, 0, 0
	c.splitting = newSplitState(c.activeSince, c.cfg.SplitCooldown)
	c.mu.Unlock()
	c.log.Info("controller active")
	defer func() {
		c.mu.Lock()
		if c.active == run {
			c.active = 0
		}
		c.mu.Unlock()
		c.log.Info("controller inactive")
	}()
	tick := time.NewTicker(c.cfg.CheckInterval)
	defer tick.Stop()
	// The first spread waits one interval: a controller becomes active
	// right after an election, often as the cluster forms, and moving
	// leaders before the other groups have settled would only add
	// elections (and unknown outcomes for writes in flight).
	var lastRebalance, lastPlace time.Time
	lastSpread := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		c.checkLiveness(ctx)
		c.mu.Lock()
		c.checks++
		c.mu.Unlock()
		rebalance := time.Since(lastRebalance) >= c.cfg.RebalanceInterval
		if c.schedule(ctx, rebalance) && rebalance {
			lastRebalance = time.Now()
		}
		if time.Since(lastPlace) >= c.cfg.PlacementInterval {
			lastPlace = time.Now()
			if d, nodes, groups, ok := c.placementView(); ok {
				c.place(ctx, d, nodes, groups)
				c.autoSplit(ctx, groups)
			}
		}
		if c.cfg.SpreadInterval > 0 && time.Since(lastSpread) >= c.cfg.SpreadInterval {
			lastSpread = time.Now()
			c.spread(ctx)
		}
	}
}

// Active reports whether a run of the controller is active.
func (c *Controller) Active() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.active != 0
}

// lastSeenLocked is when a broker last showed life in its current epoch: its
// last heartbeat, its registration, or the controller's activation (the
// grace every broker gets from a new controller), whichever is latest.
// c.mu held.
func (c *Controller) lastSeenLocked(b *logpb.Broker) time.Time {
	last := c.activeSince
	if reg := time.Unix(0, b.RegisteredAtUnixNano); reg.After(last) {
		last = reg
	}
	if hb, ok := c.seen[b.BrokerId]; ok && hb.epoch == b.Epoch && hb.at.After(last) {
		last = hb.at
	}
	return last
}

func (c *Controller) checkLiveness(ctx context.Context) {
	md, err := c.node.Metadata()
	if err != nil {
		return
	}
	brokers, err := md.Brokers()
	if err != nil {
		return
	}
	for _, b := range brokers {
		if b.Status != sm.BrokerAlive {
			continue
		}
		now := c.node.Now()
		done, silent := c.startDeclaring(b, now)
		if done == nil {
			continue
		}
		res, err := c.node.ProposeMetadata(ctx, &logpb.Op{Op: &logpb.Op_BrokerSetStatus{BrokerSetStatus: &logpb.BrokerSetStatus{
			BrokerId: b.BrokerId, Epoch: b.Epoch, Status: sm.BrokerDown}}})
		c.mu.Lock()
		delete(c.declaring, b.BrokerId)
		c.mu.Unlock()
		close(done)
		if err != nil {
			c.log.Warn("declare broker down", "broker", b.BrokerId, "err", err)
			return
		}
		if res.Code == logpb.Code_CODE_OK {
			c.mu.Lock()
			c.declaredDown++
			c.mu.Unlock()
			c.log.Info("broker declared down", "broker", b.BrokerId, "epoch", b.Epoch, "silent_for", silent.Round(time.Millisecond))
		}
	}
}

// startDeclaring decides, under one lock with the heartbeats, whether a
// broker has been silent past the timeout at now; if so it marks a down
// declaration in flight (heartbeats wait for it) and returns the channel
// to close when it is over, and how long the broker was silent; else nil.
func (c *Controller) startDeclaring(b *logpb.Broker, now time.Time) (chan struct{}, time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	silent := now.Sub(c.lastSeenLocked(b))
	if silent <= c.cfg.HeartbeatTimeout || c.declaring[b.BrokerId] != nil {
		return nil, silent
	}
	done := make(chan struct{})
	c.declaring[b.BrokerId] = done
	return done, silent
}

// state reads what a plan is made from.
func (c *Controller) state() (State, error) {
	md, err := c.node.Metadata()
	if err != nil {
		return State{}, err
	}
	var st State
	f, err := md.Fleet() // brokers and assignments at one revision
	if err != nil {
		return st, err
	}
	st.Brokers, st.Assignments = f.Brokers, f.Assignments
	after := ""
	for {
		rs, more, err := md.Resources(int32(metapb.ResourceKind_RESOURCE_KIND_CONNECTOR), "", after, 1000)
		if err != nil {
			return st, err
		}
		for _, r := range rs {
			spec := &metapb.ConnectorSpec{}
			run := true
			if proto.Unmarshal(r.Spec, spec) == nil && spec.DesiredState == metapb.ConnectorState_CONNECTOR_STATE_STOPPED {
				run = false
			}
			st.Connectors = append(st.Connectors, Connector{Name: r.Name, Run: run})
			after = r.Name
		}
		if !more {
			return st, nil
		}
	}
}

// schedule proposes the current plan; it reports whether the state could
// be read (so rebalancing counts as done).
func (c *Controller) schedule(ctx context.Context, rebalance bool) bool {
	st, err := c.state()
	if err != nil {
		return false
	}
	moves := 0
	if rebalance {
		moves = c.cfg.MaxMoves
	}
	for _, a := range Plan(st, moves) {
		res, err := c.node.ProposeMetadata(ctx, &logpb.Op{Op: &logpb.Op_Assign{Assign: a}})
		if err != nil {
			c.log.Warn("assign", "connector", a.Connector, "err", err)
			return true
		}
		if res.Code == logpb.Code_CODE_OK {
			c.mu.Lock()
			c.assigned++
			c.mu.Unlock()
		}
	}
	return true
}

// Register registers a broker and returns its new epoch.
func (c *Controller) Register(ctx context.Context, req *logpb.BrokerRegister) (*logpb.Broker, error) {
	if !c.Active() {
		return nil, ErrNotActive
	}
	res, err := c.node.ProposeMetadata(ctx, &logpb.Op{Op: &logpb.Op_BrokerRegister{BrokerRegister: req}})
	if err != nil {
		return nil, err
	}
	if res.Code != logpb.Code_CODE_OK {
		return nil, metapb.NewError(metapb.ReasonInvalidArgument, nil, "controller: register: %s", res.Message)
	}
	b := &logpb.Broker{}
	if err := proto.Unmarshal(res.Value, b); err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.seen[b.BrokerId] = heartbeat{epoch: b.Epoch, at: c.node.Now()}
	c.mu.Unlock()
	return b, nil
}

// Heartbeat records that a broker is alive (in memory). A broker declared
// down that heartbeats in its current epoch is declared alive again,
// through raft.
func (c *Controller) Heartbeat(ctx context.Context, brokerID string, epoch uint64) (int32, error) {
	if !c.Active() {
		return 0, ErrNotActive
	}
	md, err := c.node.Metadata()
	if err != nil {
		return 0, err
	}
	b, err := md.Broker(brokerID)
	if err != nil {
		return 0, err
	}
	if b == nil {
		return 0, fmt.Errorf("%w: %q", ErrUnknownBroker, brokerID)
	}
	if b.Epoch != epoch {
		return 0, fmt.Errorf("%w: broker %s is at epoch %d, heartbeat says %d", ErrStaleEpoch, brokerID, b.Epoch, epoch)
	}
	c.mu.Lock()
	c.seen[brokerID] = heartbeat{epoch: epoch, at: c.node.Now()}
	declaring := c.declaring[brokerID]
	c.mu.Unlock()
	if declaring != nil {
		// A down declaration decided before this heartbeat is in flight:
		// answer only once it is applied (then declare the broker alive
		// again), never ALIVE ahead of it.
		select {
		case <-declaring:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
		if md, err = c.node.Metadata(); err != nil {
			return 0, err
		}
		if b, err = md.Broker(brokerID); err != nil {
			return 0, err
		}
		if b == nil || b.Epoch != epoch {
			return 0, fmt.Errorf("%w: broker %s is no longer at epoch %d", ErrStaleEpoch, brokerID, epoch)
		}
	}
	if b.Status == sm.BrokerAlive {
		return sm.BrokerAlive, nil
	}
	res, err := c.node.ProposeMetadata(ctx, &logpb.Op{Op: &logpb.Op_BrokerSetStatus{BrokerSetStatus: &logpb.BrokerSetStatus{
		BrokerId: brokerID, Epoch: epoch, Status: sm.BrokerAlive}}})
	if err != nil {
		return 0, err
	}
	if res.Code != logpb.Code_CODE_OK {
		return 0, fmt.Errorf("%w: %s", ErrStaleEpoch, res.Message)
	}
	c.log.Info("broker back up", "broker", brokerID, "epoch", epoch)
	return sm.BrokerAlive, nil
}

// HeartbeatTiming is what brokers are told: how often to heartbeat, and
// after how long a silent broker is declared down.
func (c *Controller) HeartbeatTiming() (interval, timeout time.Duration) {
	return c.cfg.HeartbeatInterval, c.cfg.HeartbeatTimeout
}

// Describe fills what the controller knows of itself: when it became
// active, its heartbeat timeout, and its counters since then.
func (c *Controller) Describe(out *metapb.ControllerStatusResponse) {
	c.mu.Lock()
	defer c.mu.Unlock()
	out.ActiveSinceUnixNano = c.activeSince.UnixNano()
	out.HeartbeatTimeoutMs = uint32(c.cfg.HeartbeatTimeout / time.Millisecond)
	out.BrokersDeclaredDown = c.declaredDown
	out.AssignmentsMade = c.assigned
	out.Checks = c.checks
}
