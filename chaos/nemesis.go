package chaos

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/metamq/meta/rpc/client"
	"github.com/metamq/meta/rpc/metapb"
	"github.com/metamq/meta/verify"
)

// The nemesis carries out verify's fault contract (verify/fault.go) on a
// container cluster. Each kind maps onto the Cluster's mechanisms:
//
//	kill        Kill (SIGKILL) the bound nodes; Start them at Heal
//	kill-all    Kill every node at once; Start them all at Heal
//	pause       Pause (cgroup freezer); Unpause at Heal
//	isolate, split, bridge, oneway
//	            DropLinks(f.CutLinks): iptables DROP on the receivers'
//	            ingress; HealNetwork at Heal
//	flap        a loop owned by the nemesis: cut the node off, wait
//	            period, heal, wait period, ... until Heal
//	delay       DegradeNodes: NFQUEUE delay line and statistic-match
//	            loss on every link of the bound nodes; HealNetwork at Heal
//	member      through the public client (RemoveMember, AddMember) plus
//	            Kill, Wipe, Recreate (the wiped node must come back with
//	            --join flags instead of --initial-cluster) and Start
//	move        MoveReplica of the group from the bound node to a member
//	            holding none of its replicas, or (every member holds one)
//	            to the spare it adds first; Heal retires the spare
//	scale       the spare joins (grow) or replaces a node killed for
//	            good (replace); Heal retires it
//	transfer    a loop owned by the nemesis: TransferLeader on the group
//	            every period, to a random follower or to raft's choice
//	lag         cut a follower off like isolate; at Heal read the
//	            leader's snapshot index to tell whether the follower now
//	            needs a snapshot, heal, and wait (bounded) for it to catch
//	            up, noting whether it installed one
//	crashpoint  not supported: metanode has no crash points to arm
//	disk-full, corrupt, upgrade
//	            see nemesis_ops.go
//
// The recovery window after every Heal and after HealAll (every group
// takes a write before the next fault begins) is verify.Run's, the same
// for every nemesis.

// containers is the part of *Cluster the nemesis drives, declared here so
// that the mapping from faults to container operations can be tested
// without Docker.
type containers interface {
	Kill(ctx context.Context, name string) error
	Start(ctx context.Context, name string) error
	Pause(ctx context.Context, name string) error
	Unpause(ctx context.Context, name string) error
	State(ctx context.Context, name string) (NodeState, error)
	Wipe(ctx context.Context, name string) error
	Recreate(ctx context.Context, name string, args []string) error
	DropLinks(ctx context.Context, links []Link) error
	HealPartitions(ctx context.Context) error
	DegradeNodes(ctx context.Context, names []string, d, jitter time.Duration, loss float64) error
	HealNetwork(ctx context.Context) error
	PeerAddr(name string) (string, error)
	// For the operations faults (nemesis_ops.go).
	Stop(ctx context.Context, name string) error
	DataDir(name string) (string, error)
	LogPath(name string) (string, error)
	Args(name string) ([]string, error)
}

var _ containers = (*Cluster)(nil)

// admin is the part of the public client the nemesis uses: Status for
// roles, membership, leadership transfer, and the writes of the recovery
// probe.
type admin interface {
	verify.StatusReader
	verify.MemberAdmin
	verify.ReplicaMover
	AddMember(ctx context.Context, id, addr string) (*metapb.AddMemberResponse, error)
	TransferLeader(ctx context.Context, group, target string) (*metapb.TransferLeaderResponse, error)
	verify.AlarmAdmin
	verify.ReshardAdmin
	CommitOffsets(ctx context.Context, req *metapb.CommitOffsetsRequest) (*metapb.CommitOffsetsResponse, error)
}

var _ admin = (*client.Client)(nil)

// NemesisConfig configures a Nemesis.
type NemesisConfig struct {
	// Endpoints maps each node of the cluster (not the spares) to its
	// client endpoint. Required.
	Endpoints map[string]string
	// Spares are nodes that may be added for member op=add. Their
	// containers must already run join flags.
	Spares []string
	// JoinArgs returns the flags that make a node with an empty data
	// directory join the running cluster. Required for member faults.
	JoinArgs func(node string) []string
	// OpTimeout bounds each call to the cluster. Default 3s.
	OpTimeout time.Duration
	// LagCatchUp bounds waiting, at the Heal of a lag fault, for the
	// follower to catch up. Default 20s.
	LagCatchUp time.Duration
	// TrailingLogs is the nodes' --trailing-logs, used to tell whether a
	// lagging follower needs a snapshot (0: unknown).
	TrailingLogs uint64
	// Log, nil discards.
	Log *slog.Logger
	// TLS secures the nemesis's client (nil: plaintext).
	TLS *tls.Config
	// MinFreeBytes is the nodes' --min-free-bytes on data directories of
	// their own small filesystems (Options.DataFS); zero: no disk-full
	// faults.
	MinFreeBytes int64
}

func (c NemesisConfig) withDefaults() NemesisConfig {
	if c.OpTimeout <= 0 {
		c.OpTimeout = 3 * time.Second
	}
	if c.LagCatchUp <= 0 {
		c.LagCatchUp = 20 * time.Second
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return c
}

// Note is something the nemesis observed while carrying out a fault. Notes
// are saved in run.json; Problem notes (a node found down that no fault
// stopped) fail the "nodes" checker.
type Note struct {
	Fault   int              `json:"fault,omitempty"` // 0: not tied to one fault (HealAll)
	Kind    verify.FaultKind `json:"kind,omitempty"`
	At      time.Time        `json:"at"`
	Text    string           `json:"text"`
	Problem bool             `json:"problem,omitempty"`
}

// Nemesis implements verify.Nemesis and verify.KindSupporter over a
// Cluster. Calls of the verify.Nemesis methods come from one goroutine
// (verify.Run's); Notes and Close may be called from another
// once Run has returned.
type Nemesis struct {
	c     containers
	adm   admin
	close func() error // closes adm when the nemesis made it
	cfg   NemesisConfig
	log   *slog.Logger
	nodes []string

	loop *loop // the flap or transfer loop in force; Run's goroutine only

	stop      chan struct{} // closed by Close: loops end
	closeOnce sync.Once

	mu      sync.Mutex // guards the fields below
	rf      int        // the cluster's replication factor as its directory records it; 0: not read
	killed  map[string]bool
	paused  map[string]bool
	removed map[string]bool // nodes taken out of the membership, not yet re-added
	added   map[string]bool // spares taken into the membership
	notes   []Note
	lag     map[int]lagState
	ops     opsState // the operations fault in progress
}

var (
	_ verify.Nemesis       = (*Nemesis)(nil)
	_ verify.KindSupporter = (*Nemesis)(nil)
)

// NewNemesis returns a nemesis for c. It opens its own client to the
// cluster's endpoints; Close closes it.
func NewNemesis(c *Cluster, cfg NemesisConfig) (*Nemesis, error) {
	cfg = cfg.withDefaults()
	eps := make([]string, 0, len(cfg.Endpoints))
	for _, id := range sortedKeys(cfg.Endpoints) {
		eps = append(eps, cfg.Endpoints[id])
	}
	cl, err := client.New(client.Config{Endpoints: eps, RequestTimeout: cfg.OpTimeout, Logger: cfg.Log, TLS: cfg.TLS})
	if err != nil {
		return nil, fmt.Errorf("chaos: nemesis client: %w", err)
	}
	n := newNemesis(c, cl, cfg)
	n.close = cl.Close
	return n, nil
}

func newNemesis(c containers, adm admin, cfg NemesisConfig) *Nemesis {
	cfg = cfg.withDefaults()
	return &Nemesis{
		c: c, adm: adm, cfg: cfg, log: cfg.Log, nodes: sortedKeys(cfg.Endpoints),
		stop:   make(chan struct{}),
		killed: map[string]bool{}, paused: map[string]bool{}, removed: map[string]bool{}, added: map[string]bool{},
	}
}

// Close stops the loops still running, waits for them, and
// closes the nemesis's client. Safe to call twice.
func (m *Nemesis) Close() error {
	var err error
	m.closeOnce.Do(func() {
		close(m.stop)
		if m.loop != nil {
			m.loop.halt()
			m.loop = nil
		}
		if m.close != nil {
			err = m.close()
		}
	})
	return err
}

// Nodes returns the cluster's nodes (not the spares), sorted.
func (m *Nemesis) Nodes() []string { return slices.Clone(m.nodes) }

// Supports reports the kinds of faults(): every kind but crashpoint (the
// node has no crash points: Inject returns ErrUnsupported); of those,
// disk-full only with
// MinFreeBytes (small data filesystems), scale only with a spare to put
// replicas on, and move with a spare or on a cluster whose replication
// factor (ReplicationFactors) is below its node count, where a member
// holding no replica of the group can take it.
func (m *Nemesis) Supports(k verify.FaultKind) bool {
	switch k {
	case verify.FaultScale:
		return len(m.cfg.Spares) > 0
	case verify.FaultMove:
		m.mu.Lock()
		rf := m.rf
		m.mu.Unlock()
		return len(m.cfg.Spares) > 0 || (rf > 0 && rf < len(m.nodes))
	case verify.FaultDiskFull:
		return m.cfg.MinFreeBytes > 0
	}
	return m.faults().Supports(k)
}

// ReplicationFactors reads the replication factors the cluster recorded
// at its creation (of the data and offset groups, and of metadata-0) from
// its directory, asking again until it answers or ctx ends, and keeps the
// first for Supports.
func (m *Nemesis) ReplicationFactors(ctx context.Context) (rf, metadataRF int, err error) {
	err = m.retry(ctx, "read the replication factor", func(ctx context.Context) (bool, error) {
		gs, err := m.adm.ListGroups(ctx)
		if err != nil {
			return false, err
		}
		if gs.ReplicationFactor == 0 {
			return false, errors.New("the directory records no replication factor yet")
		}
		rf, metadataRF = int(gs.ReplicationFactor), int(gs.MetadataReplicationFactor)
		return true, nil
	})
	if err != nil {
		return 0, 0, err
	}
	m.mu.Lock()
	m.rf = rf
	m.mu.Unlock()
	return rf, metadataRF, nil
}

// MemberOps returns the member operations this nemesis can do, for
// verify.ScheduleOptions.MemberOps: "add" only with a spare.
func (m *Nemesis) MemberOps() []string {
	ops := []string{"remove-readd", "wipe-readd"}
	if len(m.cfg.Spares) > 0 {
		ops = append(ops, "add")
	}
	return ops
}

// Resolve finds a target's candidates from every node's Status
// (verify.ResolveTarget: a follower of a group is another voter of its
// leader's configuration, one of the group's replicas).
func (m *Nemesis) Resolve(ctx context.Context, t verify.Target) ([]string, error) {
	return verify.ResolveTarget(ctx, m.adm, m.cfg.Endpoints, t)
}

// Notes returns what the nemesis observed, in order.
func (m *Nemesis) Notes() []Note {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.notes)
}

func (m *Nemesis) note(f *verify.Fault, problem bool, format string, args ...any) {
	n := Note{At: time.Now(), Text: fmt.Sprintf(format, args...), Problem: problem}
	if f != nil {
		n.Fault, n.Kind = f.ID, f.Kind
	}
	if problem {
		m.log.Warn("chaos: nemesis: "+n.Text, "fault", n.Fault)
	} else {
		m.log.Info("chaos: nemesis: "+n.Text, "fault", n.Fault)
	}
	m.mu.Lock()
	m.notes = append(m.notes, n)
	m.mu.Unlock()
}

// Inject starts f on f.Nodes.
func (m *Nemesis) Inject(ctx context.Context, f *verify.Fault) error {
	m.reviveStrays(ctx, f)
	return m.faults().Inject(ctx, "chaos", f)
}

// Heal ends f.
func (m *Nemesis) Heal(ctx context.Context, f *verify.Fault) error {
	return m.faults().Heal(ctx, "chaos", f)
}

// faults maps every kind the nemesis carries out to its inject and heal
// (crashpoint is not there: ErrUnsupported).
func (m *Nemesis) faults() verify.FaultTable {
	healNetwork := func(ctx context.Context, _ *verify.Fault) error { return m.c.HealNetwork(ctx) }
	t := verify.FaultTable{
		verify.FaultPause: {
			Inject: func(ctx context.Context, f *verify.Fault) error {
				m.mark(m.paused, f.Nodes, true)
				return each(f.Nodes, func(n string) error { return m.c.Pause(ctx, n) })
			},
			Heal: func(ctx context.Context, f *verify.Fault) error {
				err := each(f.Nodes, func(n string) error { return m.c.Unpause(ctx, n) })
				if err == nil {
					m.mark(m.paused, f.Nodes, false)
				}
				return err
			},
		},
		verify.FaultDelay: {Inject: m.injectDelay, Heal: healNetwork},
		verify.FaultLag:   {Inject: m.injectLag, Heal: m.healLag},
		verify.FaultFlap: {Inject: m.injectFlap, Heal: func(ctx context.Context, f *verify.Fault) error {
			m.haltLoop(f)
			return m.c.HealNetwork(ctx)
		}},
		verify.FaultTransfer: {
			Inject: m.injectTransfer,
			Heal: func(_ context.Context, f *verify.Fault) error {
				m.haltLoop(f)
				return nil
			},
		},
		verify.FaultMember: {Inject: m.injectMember, Heal: m.healMember},
		// A move to a member has nothing to undo (the controller may
		// rebalance); a move to the spare undoes itself as the spare is
		// drained.
		verify.FaultMove:  {Inject: m.injectMove, Heal: m.retireSpares},
		verify.FaultScale: {Inject: m.injectScale, Heal: m.healScale},
		// The operations faults (nemesis_ops.go).
		verify.FaultDiskFull: {Inject: opsOnNode(m.injectDiskFull), Heal: m.healDiskFull},
		verify.FaultCorrupt:  {Inject: opsOnNode(m.injectCorrupt), Heal: m.healCorrupt},
		verify.FaultUpgrade:  {Inject: opsOnNode(m.injectUpgrade), Heal: m.healUpgrade},
		verify.FaultReshard:  {Inject: m.injectReshard, Heal: m.healReshard},
	}
	t.Set(verify.FaultOps{
		Inject: func(ctx context.Context, f *verify.Fault) error {
			m.mark(m.killed, f.Nodes, true)
			return each(f.Nodes, func(n string) error { return m.c.Kill(ctx, n) })
		},
		Heal: func(ctx context.Context, f *verify.Fault) error {
			err := each(f.Nodes, func(n string) error { return m.c.Start(ctx, n) })
			m.markStarted(ctx, f.Nodes, err)
			return err
		},
	}, verify.FaultKill, verify.FaultKillAll)
	return t.Set(verify.FaultOps{Inject: m.cut, Heal: healNetwork},
		verify.FaultIsolate, verify.FaultSplit, verify.FaultBridge, verify.FaultOneWay)
}

// haltLoop ends the flap or transfer loop in force and notes its summary.
func (m *Nemesis) haltLoop(f *verify.Fault) {
	if m.loop != nil {
		m.loop.halt()
		m.note(f, false, "%s", m.loop.summary())
		m.loop = nil
	}
}

// HealAll ends every fault: no loop, no network fault, every node
// unpaused and running, every node of the cluster a member and no spare.
func (m *Nemesis) HealAll(ctx context.Context) error {
	if m.loop != nil {
		m.loop.halt()
		m.loop = nil
	}
	var errs []error
	errs = append(errs, m.c.HealNetwork(ctx), m.healAllOps(ctx))
	for _, n := range m.nodes {
		st, err := m.c.State(ctx, n)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if st.Paused {
			errs = append(errs, m.c.Unpause(ctx, n))
		}
		if !st.Running {
			m.mu.Lock()
			expected := m.killed[n]
			m.mu.Unlock()
			if !expected {
				m.note(nil, true, "%s was down at the end of the schedule though no fault stopped it", n)
			}
			err := m.c.Start(ctx, n)
			m.markStarted(ctx, []string{n}, err)
			errs = append(errs, err)
		}
	}
	m.mark(m.paused, m.nodes, false)
	m.mu.Lock()
	removed, added := sortedKeys(m.removed), sortedKeys(m.added)
	m.mu.Unlock()
	for _, n := range removed {
		errs = append(errs, m.rejoin(ctx, nil, n), m.waitPlaced(ctx, nil, n))
	}
	for _, n := range added {
		errs = append(errs, m.retire(ctx, nil, n))
	}
	errs = append(errs, m.checkMembers(ctx))
	return errors.Join(errs...)
}

// reviveStrays restarts nodes of the cluster that are down although no
// fault stopped them (a crash of the node itself: the "nodes" checker
// fails the run on the note), so the next fault meets the cluster it
// expects.
func (m *Nemesis) reviveStrays(ctx context.Context, f *verify.Fault) {
	for _, n := range m.nodes {
		m.mu.Lock()
		expected := m.killed[n]
		m.mu.Unlock()
		if expected {
			continue
		}
		st, err := m.c.State(ctx, n)
		if err != nil || st.Running {
			continue
		}
		m.note(f, true, "%s was down before fault #%d though no fault stopped it; restarting it", n, f.ID)
		if err := m.c.Start(ctx, n); err != nil {
			m.note(f, true, "restart %s: %v", n, err)
		}
	}
}

func (m *Nemesis) mark(set map[string]bool, nodes []string, on bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, n := range nodes {
		if on {
			set[n] = true
		} else {
			delete(set, n)
		}
	}
}

// markStarted forgets the kills of nodes that are running again.
func (m *Nemesis) markStarted(ctx context.Context, nodes []string, err error) {
	if err == nil {
		m.mark(m.killed, nodes, false)
		return
	}
	for _, n := range nodes {
		if st, serr := m.c.State(ctx, n); serr == nil && st.Running {
			m.mark(m.killed, []string{n}, false)
		}
	}
}

// cut drops the links the fault cuts.
func (m *Nemesis) cut(ctx context.Context, f *verify.Fault) error {
	cl := f.CutLinks(m.nodes)
	links := make([]Link, len(cl))
	for i, l := range cl {
		links[i] = Link(l)
	}
	return m.c.DropLinks(ctx, links)
}

func (m *Nemesis) injectDelay(ctx context.Context, f *verify.Fault) error {
	d, err := time.ParseDuration(f.Params["delay"])
	if err != nil || d <= 0 {
		return fmt.Errorf("chaos: delay: bad delay %q", f.Params["delay"])
	}
	jitter := time.Duration(0)
	if s := f.Params["jitter"]; s != "" {
		if jitter, err = time.ParseDuration(s); err != nil || jitter < 0 {
			return fmt.Errorf("chaos: delay: bad jitter %q", s)
		}
	}
	// The delay line needs jitter <= delay (it never sends a packet back
	// in time); the schedule may draw more.
	jitter = min(jitter, d)
	loss := 0.0
	if s := f.Params["loss"]; s != "" {
		if loss, err = strconv.ParseFloat(s, 64); err != nil || loss < 0 || loss > 1 {
			return fmt.Errorf("chaos: delay: bad loss %q", s)
		}
	}
	return m.c.DegradeNodes(ctx, f.Nodes, d, jitter, loss)
}

// each runs fn for every node at once (a kill-all must look like one power
// cut, not a slow sweep) and joins the errors.
func each(nodes []string, fn func(string) error) error {
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Go(func() { errs[i] = fn(n) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

func sortedKeys[K cmp.Ordered, V any](m map[K]V) []K {
	out := make([]K, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// loop is a background activity of one fault (flap, transfer) that runs
// until halt, which waits for it.
type loop struct {
	done    chan struct{}
	stopped chan struct{}
	mu      sync.Mutex // guards the counters
	rounds  int
	ok      int
	errs    int
	lastErr string
	label   string
}

func (m *Nemesis) startLoop(label string, every time.Duration, step func(ctx context.Context, round int) error) *loop {
	l := &loop{done: make(chan struct{}), stopped: make(chan struct{}), label: label}
	go func() {
		defer close(l.stopped)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() {
			select {
			case <-l.done:
			case <-m.stop:
			}
			cancel()
		}()
		t := time.NewTicker(every)
		defer t.Stop()
		for round := 0; ; round++ {
			err := step(ctx, round)
			l.mu.Lock()
			l.rounds++
			if err != nil {
				l.errs++
				l.lastErr = err.Error()
			} else {
				l.ok++
			}
			l.mu.Unlock()
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return l
}

func (l *loop) halt() {
	select {
	case <-l.done:
	default:
		close(l.done)
	}
	<-l.stopped
}

func (l *loop) summary() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := fmt.Sprintf("%s: %d rounds, %d ok, %d failed", l.label, l.rounds, l.ok, l.errs)
	if l.lastErr != "" {
		s += " (last error: " + l.lastErr + ")"
	}
	return s
}

// injectFlap isolates Nodes[0] and heals it, alternately, every period.
func (m *Nemesis) injectFlap(ctx context.Context, f *verify.Fault) error {
	period, err := time.ParseDuration(f.Params["period"])
	if err != nil || period <= 0 {
		return fmt.Errorf("chaos: flap: bad period %q", f.Params["period"])
	}
	// The first cut is in effect before Inject returns, as the contract
	// asks; the loop then alternates.
	if err := m.cut(ctx, f); err != nil {
		return err
	}
	m.loop = m.startLoop(fmt.Sprintf("flap %v every %s", f.Nodes, period), period, func(ctx context.Context, round int) error {
		if round == 0 {
			return nil // cut above
		}
		if round%2 == 1 {
			return m.c.HealPartitions(ctx)
		}
		return m.cut(ctx, f)
	})
	return nil
}

// injectTransfer moves the group's leadership every period: to a random
// follower (another voter of the leader's configuration: leadership
// cannot go to a node that holds no replica), or (one time in three, and
// when no follower is known) to raft's choice of follower.
func (m *Nemesis) injectTransfer(_ context.Context, f *verify.Fault) error {
	group := f.Params["group"]
	every, err := time.ParseDuration(f.Params["every"])
	if group == "" || err != nil || every <= 0 {
		return fmt.Errorf("chaos: transfer: bad group %q or every %q", group, f.Params["every"])
	}
	rng := rand.New(rand.NewPCG(f.Pick, 0x7472616e73666572)) // "transfer"
	m.loop = m.startLoop(fmt.Sprintf("transfer storm on %s every %s", group, every), every, func(ctx context.Context, _ int) error {
		cctx, cancel := context.WithTimeout(ctx, m.cfg.OpTimeout)
		defer cancel()
		target := ""
		if rng.IntN(3) != 0 {
			if fs, err := m.Resolve(cctx, verify.FollowerOf(group)); err == nil {
				target = fs[rng.IntN(len(fs))]
			}
		}
		_, err := m.adm.TransferLeader(cctx, group, target)
		return err
	})
	return nil
}

// timedStatus is the nemesis's client with every Status call bounded by
// OpTimeout.
type timedStatus struct{ m *Nemesis }

func (s timedStatus) Status(ctx context.Context, endpoint string) (*metapb.StatusResponse, error) {
	cctx, cancel := context.WithTimeout(ctx, s.m.cfg.OpTimeout)
	defer cancel()
	return s.m.adm.Status(cctx, endpoint)
}

// status asks one node of the cluster for its status.
func (m *Nemesis) status(ctx context.Context, node string) (*metapb.StatusResponse, error) {
	return timedStatus{m}.Status(ctx, m.cfg.Endpoints[node])
}

// groupStatus returns one node's status of one group.
func (m *Nemesis) groupStatus(ctx context.Context, node, group string) (*metapb.GroupStatus, error) {
	st, err := m.status(ctx, node)
	if err != nil {
		return nil, err
	}
	for _, g := range st.Groups {
		if g.Group == group {
			return g, nil
		}
	}
	return nil, fmt.Errorf("chaos: %s reports no group %s", node, group)
}

// leaders returns, per group, the status reported by the node that leads
// it with the highest term, as seen by the cluster's nodes.
func (m *Nemesis) leaders(ctx context.Context) map[string]*metapb.GroupStatus {
	return verify.LeaderStatuses(ctx, timedStatus{m}, m.cfg.Endpoints)
}

// lagState is what injectLag saw, for healLag.
type lagState struct {
	lastLog, snapshot uint64
}

func (m *Nemesis) injectLag(ctx context.Context, f *verify.Fault) error {
	if len(f.Nodes) == 0 {
		return fmt.Errorf("chaos: lag: no node")
	}
	group := f.Params["group"]
	follower := f.Nodes[0]
	st, err := m.groupStatus(ctx, follower, group)
	if err != nil {
		return fmt.Errorf("chaos: lag: status of %s: %w", follower, err)
	}
	m.mu.Lock()
	if m.lag == nil {
		m.lag = map[int]lagState{}
	}
	m.lag[f.ID] = lagState{lastLog: st.LastLogIndex, snapshot: st.LastSnapshotIndex}
	m.mu.Unlock()
	return m.cut(ctx, f)
}

// healLag notes whether the leader compacted its log past the follower,
// heals, and waits (bounded by LagCatchUp) for the follower to apply what
// the leader had committed at the heal.
func (m *Nemesis) healLag(ctx context.Context, f *verify.Fault) error {
	group := f.Params["group"]
	follower := f.Nodes[0]
	m.mu.Lock()
	before := m.lag[f.ID]
	m.mu.Unlock()
	leader := m.leaders(ctx)[group]
	if err := m.c.HealNetwork(ctx); err != nil {
		return err
	}
	if leader == nil {
		m.note(f, false, "lag %s: no leader seen at heal; cannot tell whether %s needed a snapshot", group, follower)
		return nil
	}
	// After a snapshot at S the leader keeps TrailingLogs entries, so its
	// first entry is about S-TrailingLogs+1; a follower whose last entry
	// is older needs the snapshot.
	needed := "unknown (trailing logs not given)"
	if m.cfg.TrailingLogs > 0 || leader.LastSnapshotIndex == 0 {
		first := uint64(1)
		if leader.LastSnapshotIndex > m.cfg.TrailingLogs {
			first = leader.LastSnapshotIndex - m.cfg.TrailingLogs + 1
		}
		needed = strconv.FormatBool(first > before.lastLog+1)
	}
	start := time.Now()
	wctx, cancel := context.WithTimeout(ctx, m.cfg.LagCatchUp)
	defer cancel()
	var after *metapb.GroupStatus
	for {
		st, err := m.groupStatus(wctx, follower, group)
		if err == nil && st.AppliedIndex >= leader.CommitIndex {
			after = st
			break
		}
		if !verify.Sleep(wctx, 100*time.Millisecond) {
			break
		}
	}
	if after == nil {
		m.note(f, false, "lag %s: %s last log %d at the cut; leader %s commit %d, snapshot %d at heal; snapshot needed: %s; not caught up within %s",
			group, follower, before.lastLog, leader.LeaderId, leader.CommitIndex, leader.LastSnapshotIndex, needed, m.cfg.LagCatchUp)
		return nil
	}
	installed := after.LastSnapshotIndex > before.snapshot && after.LastSnapshotIndex > before.lastLog
	m.note(f, false, "lag %s: %s last log %d at the cut; leader %s commit %d, snapshot %d at heal; snapshot needed: %s; caught up in %s; follower snapshot %d -> %d (installed from leader: %t)",
		group, follower, before.lastLog, leader.LeaderId, leader.CommitIndex, leader.LastSnapshotIndex, needed,
		time.Since(start).Round(time.Millisecond), before.snapshot, after.LastSnapshotIndex, installed)
	return nil
}
