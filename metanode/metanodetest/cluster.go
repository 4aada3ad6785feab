package metanodetest

import (
	"cmp"
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/metamq/meta/controller"
	"github.com/metamq/meta/metanode"
	"github.com/metamq/meta/rpc/client"
	"github.com/metamq/meta/rpc/metapb"
	"github.com/metamq/meta/rpc/server"
	"github.com/metamq/meta/sm"
	"github.com/metamq/meta/verify/poll"
)

// Options configure a test cluster.
type Options struct {
	Nodes        int // default 3
	OffsetGroups int // default 1
	DataGroups   int // default 1
	// Configure, when set, adjusts every node's configuration.
	Configure func(*metanode.Config)
	// Controller, when set, adjusts every node's controller configuration.
	Controller func(*controller.Config)
	// Prepare, when set, is called with every node after it is created and
	// wired and before it starts (on every start), e.g. to register leader
	// tasks.
	Prepare func(id string, node *metanode.Node)
	// Seed seeds the fault layer's randomness.
	Seed uint64
	// Dir holds the nodes' data directories; default t.TempDir().
	Dir string
	// Metrics serves every node's /metrics, /livez and /readyz on a port
	// of its own (metanode.Node.MetricsAddr).
	Metrics bool
	// ClientTLS secures the clients Client returns (a cluster whose
	// nodes Configure gives TLS).
	ClientTLS *tls.Config
	// Patient gives raft timings 2.5 times the defaults (heartbeat and
	// election 2.5 s, leader lease 1.25 s), for tests that inject no node
	// fault and need the same leaders for their whole run: on a machine
	// starved of CPU (CI beside other work, -race) the defaults' 500 ms
	// lease lapses and leaderships churn, turning a test's calls into
	// unknown outcomes that have nothing to do with what it checks.
	// Failover tests keep the defaults. Configure runs after it.
	Patient bool
}

// Node is one member of a test cluster.
type Node struct {
	ID   string
	Addr string
	Dir  string
	// Node is nil while the node is down.
	Node *metanode.Node
	// public is the node's public API (closed after the node).
	public *server.Server
}

// Cluster is a set of in-process nodes. Methods may be called from any
// goroutine.
type Cluster struct {
	t    testing.TB
	opts Options
	Net  *Net
	log  *slog.Logger

	mu    sync.Mutex // guards nodes, order, levels and setLevels
	nodes map[string]*Node
	order []string
	// levels is each node's feature level as last configured.
	levels map[string]uint32
	// setLevels are the feature levels SetFeatureLevel gave nodes,
	// applied after Options.Configure on every later start.
	setLevels map[string]uint32
}

// logWriter sends log lines to t.Log while the test runs.
type logWriter struct {
	t    testing.TB
	mu   sync.Mutex
	done bool
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

// NewLogger returns a slog logger writing to t.Log (at Warn unless
// META_TEST_LOG=debug|info), silenced when the test ends.
func NewLogger(t testing.TB) *slog.Logger {
	w := &logWriter{t: t}
	t.Cleanup(func() { w.mu.Lock(); w.done = true; w.mu.Unlock() })
	lv := slog.LevelWarn
	switch os.Getenv("META_TEST_LOG") {
	case "debug":
		lv = slog.LevelDebug
	case "info":
		lv = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: lv}))
}

// Start starts a cluster of opts.Nodes nodes formed from an initial
// member list, all at the same moment, and waits until every node has
// started (the cluster has formed) and every group has a leader. Nodes
// stop at the end of the test.
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if opts.Nodes == 0 {
		opts.Nodes = 3
	}
	if opts.OffsetGroups == 0 {
		opts.OffsetGroups = 1
	}
	if opts.DataGroups == 0 {
		opts.DataGroups = 1
	}
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	c := &Cluster{t: t, opts: opts, Net: NewNet(opts.Seed), log: NewLogger(t), nodes: map[string]*Node{}, levels: map[string]uint32{}}
	t.Cleanup(c.StopAll)
	var initial []metanode.Peer
	lis := map[string]net.Listener{}
	for i := 1; i <= opts.Nodes; i++ {
		id := fmt.Sprintf("n%d", i)
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("listen: %v", err)
		}
		lis[id] = l
		n := &Node{ID: id, Addr: l.Addr().String(), Dir: filepath.Join(opts.Dir, id)}
		c.nodes[id] = n
		c.order = append(c.order, id)
		c.Net.Register(id, n.Addr)
		initial = append(initial, metanode.Peer{ID: id, Addr: n.Addr})
	}
	var wg sync.WaitGroup
	errs := make(chan error, opts.Nodes)
	for _, id := range c.order {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.start(id, lis[id], func(cfg *metanode.Config) { cfg.InitialCluster = initial }); err != nil {
				errs <- fmt.Errorf("%s: %w", id, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("start cluster: %v", err)
	}
	// A cluster serves once every group has elected a leader; tests that
	// start writing before then race the first elections and may see the
	// unknown outcome of a write whose leader lost a split vote.
	// Every node's groups, not only the first node's: with a replication
	// factor below the node count no node need host them all.
	groups := map[string]bool{}
	for _, id := range c.order {
		for _, st := range c.Running(id).Status() {
			groups[st.Group] = true
		}
	}
	for _, g := range slices.Sorted(maps.Keys(groups)) {
		c.WaitLeader(g, 60*time.Second)
	}
	c.mu.Lock()
	level := sm.FeatureLevel
	for _, l := range c.levels {
		level = min(level, l)
	}
	c.mu.Unlock()
	c.waitClusterVersion(level, 60*time.Second)
	return c
}

// waitClusterVersion waits until every running node sees the cluster
// version at level (the lowest feature level of the nodes, configured by
// Options.Configure): a new cluster of this release is raised to it once
// metadata-0's leader heard every member (metanode/version.go), and until
// then refuses this release's new operations (MultiPut, Txn) and runs no
// hash checks.
func (c *Cluster) waitClusterVersion(level uint32, timeout time.Duration) {
	c.t.Helper()
	poll.For(c.t, fmt.Sprintf("cluster version %d on every node", level), timeout, func() error {
		for _, id := range c.order {
			if n := c.Running(id); n != nil && n.ClusterVersion() < level {
				return fmt.Errorf("%s sees cluster version %d", id, n.ClusterVersion())
			}
		}
		return nil
	})
}

func (c *Cluster) config(n *Node, l net.Listener) metanode.Config {
	cfg := metanode.DefaultConfig()
	cfg.ID = n.ID
	cfg.DataDir = n.Dir
	cfg.Listener = l
	cfg.AdvertiseAddr = n.Addr
	cfg.OffsetGroups = c.opts.OffsetGroups
	cfg.DataGroups = c.opts.DataGroups
	cfg.Logger = c.log
	cfg.Dialer = c.Net.Dialer(n.ID)
	cfg.Rocks.BlockCacheBytes = 8 << 20
	cfg.Rocks.WriteBufferBytes = 16 << 20
	cfg.ShutdownTimeout = 5 * time.Second
	cfg.Metrics = prometheus.NewRegistry()
	cfg.ServerOptions = append(server.MetricsOptions(cfg.Metrics), server.ServerOptions()...)
	if c.opts.Metrics {
		cfg.MetricsListen = "127.0.0.1:0"
	}
	if c.opts.Patient {
		const f = 5 // halves: 2.5 times the defaults
		cfg.HeartbeatTimeout = cfg.HeartbeatTimeout * f / 2
		cfg.ElectionTimeout = cfg.ElectionTimeout * f / 2
		cfg.LeaderLeaseTimeout = cfg.LeaderLeaseTimeout * f / 2
	}
	if c.opts.Configure != nil {
		c.opts.Configure(&cfg)
	}
	c.mu.Lock()
	if l, ok := c.setLevels[n.ID]; ok {
		cfg.FeatureLevel = l
	}
	c.levels[n.ID] = cmp.Or(cfg.FeatureLevel, sm.FeatureLevel)
	c.mu.Unlock()
	return cfg
}

// SetFeatureLevel makes node id report feature level from its next start
// on (over Options.Configure's), as a node restarted on another release
// would: the upgrade fault's rolling restarts.
func (c *Cluster) SetFeatureLevel(id string, level uint32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.setLevels == nil {
		c.setLevels = map[string]uint32{}
	}
	c.setLevels[id] = level
}

// start creates, wires and starts one node.
func (c *Cluster) start(id string, l net.Listener, adjust func(*metanode.Config)) error {
	c.mu.Lock()
	n := c.nodes[id]
	c.mu.Unlock()
	if l == nil {
		var err error
		if l, err = listenRetry(n.Addr); err != nil {
			return err
		}
	}
	cfg := c.config(n, l)
	if adjust != nil {
		adjust(&cfg)
	}
	node, err := metanode.New(cfg)
	if err != nil {
		_ = l.Close()
		return err
	}
	ctlCfg := controller.DefaultConfig()
	ctlCfg.Logger = cfg.Logger
	if c.opts.Controller != nil {
		c.opts.Controller(&ctlCfg)
	}
	ctl, err := controller.New(ctlCfg, node)
	if err != nil {
		_ = l.Close()
		return err
	}
	node.RunWhileLeading(metapb.MetadataGroup, ctl.Run)
	node.Metrics().MustRegister(ctl.Collector())
	srv := server.Register(node.GRPCServer(), node, "test", server.WithDialer(cfg.Dialer))
	server.RegisterController(node.GRPCServer(), srv, node, ctl)
	if c.opts.Prepare != nil {
		c.opts.Prepare(id, node)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := node.Start(ctx); err != nil {
		return err
	}
	c.mu.Lock()
	n.Node, n.public = node, srv
	c.mu.Unlock()
	return nil
}

// listenRetry listens on addr again after a node restart (the port may
// take a moment to be released).
func listenRetry(addr string) (net.Listener, error) {
	var last error
	for i := 0; i < 100; i++ {
		l, err := net.Listen("tcp", addr)
		if err == nil {
			return l, nil
		}
		last = err
		time.Sleep(50 * time.Millisecond)
	}
	return nil, last
}

// IDs returns the node ids in creation order.
func (c *Cluster) IDs() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.order...)
}

// Get returns a node by id.
func (c *Cluster) Get(id string) *Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[id]
}

// Running returns the live metanode of id, or nil.
func (c *Cluster) Running(id string) *metanode.Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n := c.nodes[id]; n != nil {
		return n.Node
	}
	return nil
}

// Endpoints returns every node's address.
func (c *Cluster) Endpoints() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, id := range c.order {
		out = append(out, c.nodes[id].Addr)
	}
	return out
}

// Client returns a client of the whole cluster (closed at test end); with
// pinned set to a node id it is pinned to that node.
func (c *Cluster) Client(pinned string) *client.Client {
	c.t.Helper()
	cfg := client.Config{Endpoints: c.Endpoints(), RequestTimeout: 10 * time.Second, Dialer: c.Net.Dialer(Client), TLS: c.opts.ClientTLS}
	if pinned != "" {
		cfg.Endpoints = []string{c.Get(pinned).Addr}
		cfg.Pinned = true
	}
	cl, err := client.New(cfg)
	if err != nil {
		c.t.Fatalf("client: %v", err)
	}
	c.t.Cleanup(func() { _ = cl.Close() })
	return cl
}

// Crash stops a node abruptly, as kill -9 would.
func (c *Cluster) Crash(id string) {
	c.stop(id, false)
}

// Stop shuts a node down in order (as SIGTERM does).
func (c *Cluster) Stop(id string) {
	c.stop(id, true)
}

func (c *Cluster) stop(id string, orderly bool) {
	c.mu.Lock()
	n := c.nodes[id]
	node, public := n.Node, n.public
	n.Node, n.public = nil, nil
	c.mu.Unlock()
	if node == nil {
		return
	}
	var err error
	if orderly {
		err = node.Close()
	} else {
		err = node.Crash()
	}
	if err != nil {
		c.t.Logf("stop %s: %v", id, err)
	}
	_ = public.Close()
}

// Restart starts a stopped node again on its data directory.
func (c *Cluster) Restart(id string) error {
	if c.Running(id) != nil {
		return fmt.Errorf("metanodetest: %s is running", id)
	}
	return c.start(id, nil, nil)
}

// AddNode creates a node that is not yet a member (use AddMember first,
// then Join).
func (c *Cluster) AddNode(id string) *Node {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		c.t.Fatalf("listen: %v", err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	n := &Node{ID: id, Addr: addr, Dir: filepath.Join(c.opts.Dir, id)}
	c.mu.Lock()
	c.nodes[id] = n
	c.order = append(c.order, id)
	c.mu.Unlock()
	c.Net.Register(id, addr)
	return n
}

// Join starts a node created by AddNode, joining through the other nodes.
func (c *Cluster) Join(id string) error {
	var join []string
	for _, other := range c.IDs() {
		if other != id && c.Running(other) != nil {
			join = append(join, c.Get(other).Addr)
		}
	}
	return c.start(id, nil, func(cfg *metanode.Config) { cfg.Join = join })
}

// Forget drops a stopped node from the harness (after it was removed
// from the cluster).
func (c *Cluster) Forget(id string) {
	c.Crash(id)
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.nodes, id)
	for i, o := range c.order {
		if o == id {
			c.order = append(c.order[:i], c.order[i+1:]...)
			break
		}
	}
}

// StopAll crashes every running node (the test is over; speed matters more
// than handoffs).
func (c *Cluster) StopAll() {
	c.Net.Heal()
	var wg sync.WaitGroup
	for _, id := range c.IDs() {
		wg.Add(1)
		go func() { defer wg.Done(); c.Crash(id) }()
	}
	wg.Wait()
}

// Leader returns the id of the running node that leads group, or "": the
// node that says it leads the group (the highest term first) and whose
// leadership a majority of the voters of its configuration report (those
// that run; a voter that is down counts against it). A group need not run
// on every node (replication factor below the node count), so the
// majority is counted among the group's voters, not among all nodes.
func (c *Cluster) Leader(group string) string {
	reports := map[string]string{} // running node hosting group → the leader it reports
	type claim struct {
		id string
		st *metapb.GroupStatus
	}
	var claims []claim
	for _, id := range c.IDs() {
		node := c.Running(id)
		if node == nil {
			continue
		}
		for _, st := range node.Status() {
			if st.Group != group {
				continue
			}
			reports[id] = st.LeaderId
			if st.State == "Leader" {
				claims = append(claims, claim{id, st})
			}
		}
	}
	slices.SortFunc(claims, func(a, b claim) int { return cmp.Compare(b.st.Term, a.st.Term) })
	for _, cl := range claims {
		voters, votes := 0, 0
		for _, m := range cl.st.Members {
			if !m.Voter {
				continue
			}
			voters++
			if reports[m.Id] == cl.id {
				votes++
			}
		}
		if votes*2 > voters && c.Running(cl.id) != nil {
			return cl.id
		}
	}
	return ""
}

// MakeLeader makes id lead group within timeout, asking for a transfer
// as often as it takes. On a loaded machine a transfer's outcome can be
// unknown (the leader asked lost its leadership to an election while
// answering) or an election can undo it; what counts is who leads.
func (c *Cluster) MakeLeader(group, id string, timeout time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if c.Leader(group) == id {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := c.Client("").TransferLeader(ctx, group, id)
		cancel()
		if err != nil {
			c.t.Logf("transfer %s to %s: %v (asking again while %s does not lead it)", group, id, err, id)
		}
		for wait := time.Now().Add(2 * time.Second); time.Now().Before(wait) && c.Leader(group) != id; {
			time.Sleep(20 * time.Millisecond)
		}
	}
	c.t.Fatalf("%s does not lead %s within %s (leader: %q)", id, group, timeout, c.Leader(group))
}

// WaitLeader waits until group has a leader that a majority agrees on.
func (c *Cluster) WaitLeader(group string, timeout time.Duration) string {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if id := c.Leader(group); id != "" {
			return id
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.t.Fatalf("no leader for %s within %s", group, timeout)
	return ""
}
