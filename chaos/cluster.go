package chaos

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"
	"golang.org/x/sync/errgroup"

	"github.com/metamq/meta/verify/smallfs"
)

var (
	// ErrNoDocker means no Docker engine answered.
	ErrNoDocker = errors.New("chaos: no Docker engine reachable")
	// ErrRyukEnabled means testcontainers would try to pull its reaper
	// image, which cannot work without a registry.
	ErrRyukEnabled = errors.New("chaos: testcontainers Ryuk reaper is enabled; set TESTCONTAINERS_RYUK_DISABLED=true")
	// ErrInvalidOptions wraps every problem Options.Validate finds.
	ErrInvalidOptions = errors.New("chaos: invalid options")
	// ErrUnknownNode is returned for a node name the cluster does not have.
	ErrUnknownNode = errors.New("chaos: unknown node")
	// ErrTerminated is returned by every operation after Terminate.
	ErrTerminated = errors.New("chaos: cluster terminated")
	// ErrNotReady means a node did not pass its readiness probe in time.
	ErrNotReady = errors.New("chaos: node not ready")
	// ErrNodeRunning is returned by operations that need a stopped node.
	ErrNodeRunning = errors.New("chaos: node is running")
)

// Defaults for Options.
const (
	DefaultDataPath = "/data"
	// CertPath is where a node's Options.CertDir folder is mounted.
	CertPath            = "/tls"
	DefaultStartTimeout = 60 * time.Second
	DefaultStopTimeout  = 10 * time.Second
	MaxNodes            = 9
)

// Options describe one cluster. Nodes are named n1..nN (NodeNames); spare
// nodes, if any, follow: n(N+1)..n(N+Spares).
type Options struct {
	Nodes  int    // number of nodes, 1..MaxNodes (3 or 5 for real runs)
	Spares int    // nodes created but not started (added to the cluster later); Nodes+Spares <= MaxNodes
	Image  string // image tag or id to run, e.g. Image.Tag from BuildImage
	// InitialImage, when set, is the image the nodes (not the spares)
	// are first created from; Recreate moves a node to Image. Runs that
	// upgrade from an older release's binary start from it.
	InitialImage string
	RunDir       string // host directory; data/<node> and logs/<node>.log go here
	RunID        string // labels and names; NewRunID() if empty
	Port         int    // the one container port each node serves clients and peers on

	// Args returns the command-line arguments (after the image's
	// entrypoint) for a node. Peers are reachable as "<name>:<Port>".
	Args func(node string) []string
	Env  map[string]string // environment for every node

	DataPath string // bind-mount target in the container; DefaultDataPath if empty
	// DataFS, when positive, puts each node's host data directory on a
	// tmpfs of that many bytes of its own (mounted before the container
	// is created, unmounted at Terminate, so its data goes then), for
	// disk-full faults: filling it fills the node's disk and no other.
	// Mounting needs root (CAP_SYS_ADMIN).
	DataFS int64
	// CertDir, when set, holds a folder per node (<CertDir>/<node>) that
	// is mounted read-only at CertPath in its container: its TLS files,
	// kept apart from the data directory (which Wipe empties).
	CertDir      string
	StartTimeout time.Duration // how long a node may take to pass Ready; DefaultStartTimeout if 0
	StopTimeout  time.Duration // SIGTERM grace before SIGKILL in Stop; DefaultStopTimeout if 0

	// Ready is probed repeatedly after a node starts until it returns nil.
	// addr is "<container ip>:<Port>", dialled from the host straight over
	// the run's bridge: the mapped host port is served by docker-proxy,
	// which accepts connections before the node listens, so it proves
	// nothing. Nil means: a TCP connection to addr succeeds.
	Ready func(ctx context.Context, addr string) error

	Log *slog.Logger // nil discards
}

// NodeNames returns the names of an n-node cluster: n1..nN.
func NodeNames(n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = "n" + strconv.Itoa(i+1)
	}
	return names
}

// Validate reports every problem with o at once. It does not change o.
func (o Options) Validate() error {
	var errs []error
	if o.Nodes < 1 || o.Nodes > MaxNodes {
		errs = append(errs, fmt.Errorf("Nodes = %d, want 1..%d", o.Nodes, MaxNodes))
	}
	if o.Spares < 0 || o.Nodes+o.Spares > MaxNodes {
		errs = append(errs, fmt.Errorf("Spares = %d, want 0..%d", o.Spares, max(MaxNodes-o.Nodes, 0)))
	}
	if o.Image == "" {
		errs = append(errs, errors.New("Image is empty"))
	}
	if o.RunDir == "" {
		errs = append(errs, errors.New("RunDir is empty"))
	}
	if o.RunID != "" && !validRunID(o.RunID) {
		errs = append(errs, fmt.Errorf("RunID %q: want 1..48 of [A-Za-z0-9_.-]", o.RunID))
	}
	if o.Port < 1 || o.Port > 65535 {
		errs = append(errs, fmt.Errorf("option Port = %d, want 1..65535", o.Port))
	}
	if o.Args == nil {
		errs = append(errs, errors.New("option Args is nil"))
	}
	if o.StartTimeout < 0 || o.StopTimeout < 0 {
		errs = append(errs, errors.New("negative StartTimeout or StopTimeout"))
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrInvalidOptions, errors.Join(errs...))
}

// docker is the part of the Docker client a Cluster uses, declared here so
// the dependency is visible.
type docker interface {
	ContainerInspect(ctx context.Context, id string, o client.ContainerInspectOptions) (client.ContainerInspectResult, error)
	ContainerKill(ctx context.Context, id string, o client.ContainerKillOptions) (client.ContainerKillResult, error)
	ContainerPause(ctx context.Context, id string, o client.ContainerPauseOptions) (client.ContainerPauseResult, error)
	ContainerUnpause(ctx context.Context, id string, o client.ContainerUnpauseOptions) (client.ContainerUnpauseResult, error)
	ContainerWait(ctx context.Context, id string, o client.ContainerWaitOptions) client.ContainerWaitResult
	ContainerLogs(ctx context.Context, id string, o client.ContainerLogsOptions) (client.ContainerLogsResult, error)
	NetworkCreate(ctx context.Context, name string, o client.NetworkCreateOptions) (client.NetworkCreateResult, error)
	NetworkRemove(ctx context.Context, id string, o client.NetworkRemoveOptions) (client.NetworkRemoveResult, error)
	Close() error
}

// Cluster is one run's nodes in containers on one user-defined bridge
// network.
//
// Design: one network per run, not one per node pair. Per-pair networks
// would need N*(N-1)/2 interfaces per container and still could not express
// one-way drops, loss or delay; with one network, every network fault is an
// iptables rule in a node's namespace (netfault.go) and the node-to-node
// addresses stay plain hostnames. Every node gets a fixed IP on a subnet
// chosen per run, because rules match peers by IP and Docker would hand a
// restarted container a new address otherwise.
//
// Names: a container is "meta-<run id>-<node>", so concurrent runs do not
// collide; its hostname and network alias are the bare node name, which is
// what peers dial. A node's client endpoint is a host port bound on
// 127.0.0.1 and fixed for the life of the cluster (Docker would pick a new
// ephemeral port on every restart), so clients keep one address per node.
//
// Methods are safe for concurrent use; operations on one node are
// serialised.
type Cluster struct {
	log      *slog.Logger
	opts     Options
	runID    string
	owner    string
	dc       docker
	netID    string
	netName  string
	subnet   netip.Prefix
	nodes    []*node
	byName   map[string]*node
	stopLogs context.CancelFunc // stops every log follower
	logsWG   sync.WaitGroup     // the log followers

	mu         sync.Mutex // guards the fields below
	terminated bool
	faults     map[dirLink]linkFault // the network faults in force; see netfault.go
	queues     map[dirLink]*delayQueue
}

// node is one container. Its mutex serialises lifecycle operations and
// network-rule syncs on it.
type node struct {
	name     string
	index    int
	ip       netip.Addr
	hostPort int
	dataDir  string
	logPath  string
	// fs: dataDir is a tmpfs of its own (Options.DataFS).
	fs   bool
	ctr  *testcontainers.DockerContainer
	logs *logFollower

	mu  sync.Mutex // serialises operations on this node; guards gen and the fields below
	gen int        // container starts so far; a new start is a new netns
	// args are the flags the node's container runs with (its last
	// Recreate's), and image the image it runs.
	args  []string
	image string
	// applied is the rule set last written into the namespace of start
	// appliedGen. Rewriting an unchanged set is not free: the kernel drops
	// the packets a delay queue holds when the table is replaced.
	applied    string
	appliedGen int
}

// StartCluster creates the network and the containers, starts every node,
// waits until each passes Options.Ready, and returns the cluster. On any
// error, including ctx being cancelled, it removes whatever it created
// before returning. The caller must call Terminate.
func StartCluster(ctx context.Context, opts Options) (*Cluster, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if !testcontainers.ReadConfig().RyukDisabled {
		return nil, ErrRyukEnabled
	}
	if opts.RunID == "" {
		opts.RunID = NewRunID()
	}
	if opts.DataPath == "" {
		opts.DataPath = DefaultDataPath
	}
	if opts.StartTimeout == 0 {
		opts.StartTimeout = DefaultStartTimeout
	}
	if opts.StopTimeout == 0 {
		opts.StopTimeout = DefaultStopTimeout
	}
	logger := opts.Log
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	owner, err := ownerID()
	if err != nil {
		return nil, err
	}
	dc, err := testcontainers.NewDockerClientWithOpts(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNoDocker, err)
	}
	logCtx, stopLogs := context.WithCancel(context.Background())
	c := &Cluster{
		log:      logger.With("run", opts.RunID),
		opts:     opts,
		runID:    opts.RunID,
		owner:    owner,
		dc:       dc,
		byName:   map[string]*node{},
		stopLogs: stopLogs,
		faults:   map[dirLink]linkFault{},
		queues:   map[dirLink]*delayQueue{},
	}
	if err := c.start(ctx, logCtx); err != nil {
		// Clean up with a context of its own: ctx may be what failed.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if terr := c.Terminate(cctx); terr != nil {
			err = errors.Join(err, fmt.Errorf("chaos: cleanup after failed start: %w", terr))
		}
		return nil, err
	}
	return c, nil
}

func (c *Cluster) labels() map[string]string {
	return map[string]string{LabelManaged: "1", LabelRun: c.runID, LabelOwner: c.owner}
}

func (c *Cluster) start(ctx, logCtx context.Context) error {
	if err := os.MkdirAll(filepath.Join(c.opts.RunDir, "logs"), 0o755); err != nil {
		return fmt.Errorf("chaos: run dir: %w", err)
	}
	if err := c.createNetwork(ctx); err != nil {
		return err
	}
	for i, name := range NodeNames(c.opts.Nodes + c.opts.Spares) {
		n, err := c.createNode(ctx, i, name)
		if n != nil {
			c.nodes = append(c.nodes, n)
			c.byName[name] = n
		}
		if err != nil {
			return err
		}
		c.logsWG.Add(1)
		go func() {
			defer c.logsWG.Done()
			n.logs.run(logCtx)
		}()
	}
	var g errgroup.Group
	for _, n := range c.members() {
		g.Go(func() error { return c.startNode(ctx, n) })
	}
	if err := g.Wait(); err != nil {
		return err
	}
	c.log.Info("chaos: cluster up", "nodes", c.opts.Nodes, "spares", c.opts.Spares, "network", c.netName, "subnet", c.subnet)
	return nil
}

// createNetwork creates the run's bridge network on a /24 picked at random
// in 10.128.0.0/9, retrying on the engine's overlap errors; a fixed subnet
// is what lets nodes have fixed IPs.
func (c *Cluster) createNetwork(ctx context.Context) error {
	c.netName = "meta-" + c.runID
	var lastErr error
	for range 16 {
		base := netip.AddrFrom4([4]byte{10, byte(128 + rand.IntN(128)), byte(rand.IntN(256)), 0})
		subnet := netip.PrefixFrom(base, 24)
		gw := base.Next()
		res, err := c.dc.NetworkCreate(ctx, c.netName, client.NetworkCreateOptions{
			Driver: "bridge",
			Labels: c.labels(),
			IPAM: &network.IPAM{Driver: "default", Config: []network.IPAMConfig{{
				Subnet: subnet, Gateway: gw,
			}}},
		})
		if err == nil {
			c.netID, c.subnet = res.ID, subnet
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("chaos: create network: %w", err)
		}
		lastErr = err
		c.log.Debug("chaos: subnet taken, retrying", "subnet", subnet, "err", err)
	}
	return fmt.Errorf("chaos: create network %s: %w", c.netName, lastErr)
}

func (c *Cluster) createNode(ctx context.Context, i int, name string) (*node, error) {
	ip := c.subnet.Addr()
	for range 11 + i { // n1 = .11
		ip = ip.Next()
	}
	// Absolute: Docker refuses relative bind-mount sources.
	dataDir, err := filepath.Abs(filepath.Join(c.opts.RunDir, "data", name))
	if err != nil {
		return nil, fmt.Errorf("chaos: data dir: %w", err)
	}
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return nil, fmt.Errorf("chaos: data dir: %w", err)
	}
	hostPort, err := freePort()
	if err != nil {
		return nil, err
	}
	n := &node{
		name: name, index: i, ip: ip, hostPort: hostPort, dataDir: dataDir,
		logPath: filepath.Join(c.opts.RunDir, "logs", name+".log"),
	}
	if c.opts.DataFS > 0 {
		if err := smallfs.Attach(dataDir, c.opts.DataFS); err != nil {
			return nil, fmt.Errorf("chaos: a %d-byte filesystem for %s's data (disk-full faults; needs root): %w", c.opts.DataFS, name, err)
		}
		n.fs = true
	}
	if n.logs, err = newLogFollower(c.log, c.dc, name, n.logPath); err != nil {
		return nil, err
	}
	n.args, n.image = c.opts.Args(name), c.opts.Image
	if i < c.opts.Nodes && c.opts.InitialImage != "" {
		n.image = c.opts.InitialImage
	}
	ctr, err := c.createContainer(ctx, n, n.args)
	if ctr != nil {
		n.ctr = ctr
		n.logs.setID(ctr.GetContainerID())
	}
	if err != nil {
		if n.ctr == nil {
			_ = n.logs.close()
			return nil, err
		}
		return n, err
	}
	return n, nil
}

// createContainer creates (does not start) node n's container running
// its image (n.image) with args. It may return a container together with an error; the
// caller must then remove it.
func (c *Cluster) createContainer(ctx context.Context, n *node, args []string) (*testcontainers.DockerContainer, error) {
	port, err := network.ParsePort(fmt.Sprintf("%d/tcp", c.opts.Port))
	if err != nil {
		return nil, fmt.Errorf("chaos: port: %w", err)
	}
	labels := c.labels()
	labels[LabelNode] = n.name
	env := map[string]string{}
	for k, v := range c.opts.Env {
		env[k] = v
	}
	req := testcontainers.GenericContainerRequest{
		ContainerRequest: testcontainers.ContainerRequest{
			Image:          n.image,
			Name:           c.containerName(n.name),
			Cmd:            args,
			Env:            env,
			Labels:         labels,
			ExposedPorts:   []string{port.String()},
			Networks:       []string{c.netName},
			NetworkAliases: map[string][]string{c.netName: {n.name}},
			ConfigModifier: func(cfg *container.Config) {
				cfg.Hostname = n.name
				cfg.StopSignal = "SIGTERM"
			},
			HostConfigModifier: func(hc *container.HostConfig) {
				hc.PortBindings = network.PortMap{port: {{
					HostIP: netip.AddrFrom4([4]byte{127, 0, 0, 1}), HostPort: strconv.Itoa(n.hostPort),
				}}}
				hc.Mounts = append(hc.Mounts, mount.Mount{Type: mount.TypeBind, Source: n.dataDir, Target: c.opts.DataPath})
				if c.opts.CertDir != "" {
					hc.Mounts = append(hc.Mounts, mount.Mount{Type: mount.TypeBind, ReadOnly: true,
						Source: filepath.Join(c.opts.CertDir, n.name), Target: CertPath})
				}
			},
			EndpointSettingsModifier: func(eps map[string]*network.EndpointSettings) {
				if ep := eps[c.netName]; ep != nil {
					ep.IPAMConfig = &network.EndpointIPAMConfig{IPv4Address: n.ip}
				}
			},
		},
		Logger: slogPrintf{c.log},
	}
	ctr, err := testcontainers.GenericContainer(ctx, req)
	dctr, _ := ctr.(*testcontainers.DockerContainer)
	if err != nil {
		return dctr, fmt.Errorf("chaos: create %s: %w", n.name, err)
	}
	if dctr == nil {
		return nil, fmt.Errorf("chaos: create %s: not a Docker container", n.name)
	}
	return dctr, nil
}

func (c *Cluster) containerName(node string) string { return "meta-" + c.runID + "-" + node }

// Host ports for node endpoints come from [hostPortMin, hostPortMax),
// below Linux's default ephemeral range (32768-60999). A port from the
// ephemeral range can be taken, while its node is down, as the source
// port of some outgoing connection, and the node's restart then fails
// with "port is already allocated".
const (
	hostPortMin = 20000
	hostPortMax = 32000
)

var (
	portsMu  sync.Mutex
	reserved = map[int]bool{} // host ports handed out in this process; guarded by portsMu
)

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago and
// that no cluster of this process has been given before: two nodes are
// created before either binds its port, so "free now" alone could hand
// out the same port twice.
func freePort() (int, error) {
	portsMu.Lock()
	defer portsMu.Unlock()
	var lastErr error
	for range 200 {
		p := hostPortMin + rand.IntN(hostPortMax-hostPortMin)
		if reserved[p] {
			continue
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			lastErr = err
			continue
		}
		l.Close()
		reserved[p] = true
		return p, nil
	}
	return 0, fmt.Errorf("chaos: no free port in [%d, %d): %w", hostPortMin, hostPortMax, lastErr)
}

func (c *Cluster) node(name string) (*node, error) {
	n, ok := c.byName[name]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownNode, name)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.terminated {
		return nil, ErrTerminated
	}
	return n, nil
}

// lockNode is node, with the node's lock taken; the caller unlocks n.mu.
func (c *Cluster) lockNode(name string) (*node, error) {
	n, err := c.node(name)
	if err != nil {
		return nil, err
	}
	n.mu.Lock()
	return n, nil
}

// withNode runs fn on the named node, holding its lock.
func (c *Cluster) withNode(name string, fn func(n *node) error) error {
	n, err := c.lockNode(name)
	if err != nil {
		return err
	}
	defer n.mu.Unlock()
	return fn(n)
}

// RunID returns the run id that names and labels everything of this run.
func (c *Cluster) RunID() string { return c.runID }

// Nodes returns the names of the nodes started with the cluster, n1..nN.
func (c *Cluster) Nodes() []string {
	var out []string
	for _, n := range c.members() {
		out = append(out, n.name)
	}
	return out
}

// Spares returns the names of the spare nodes, created but not started by
// StartCluster: n(N+1)..n(N+Spares).
func (c *Cluster) Spares() []string {
	var out []string
	for _, n := range c.nodes[len(c.members()):] {
		out = append(out, n.name)
	}
	return out
}

// members returns the nodes that are not spares (the spares come last).
func (c *Cluster) members() []*node { return c.nodes[:max(len(c.nodes)-c.opts.Spares, 0)] }

// NetworkName returns the name of the run's Docker network.
func (c *Cluster) NetworkName() string { return c.netName }

// Endpoint returns the node's client address as seen from the host,
// "127.0.0.1:<port>"; it does not change when the node restarts.
func (c *Cluster) Endpoint(name string) (string, error) {
	n, err := c.node(name)
	if err != nil {
		return "", err
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(n.hostPort)), nil
}

// PeerAddr returns the address other nodes use for the node: "<name>:<Port>".
func (c *Cluster) PeerAddr(name string) (string, error) {
	if _, err := c.node(name); err != nil {
		return "", err
	}
	return net.JoinHostPort(name, strconv.Itoa(c.opts.Port)), nil
}

// IP returns the node's fixed address on the run network, without asking
// the engine or the container.
func (c *Cluster) IP(name string) (netip.Addr, error) {
	n, err := c.node(name)
	if err != nil {
		return netip.Addr{}, err
	}
	return n.ip, nil
}

// DataDir returns the host directory bind-mounted as the node's data path.
func (c *Cluster) DataDir(name string) (string, error) {
	n, err := c.node(name)
	if err != nil {
		return "", err
	}
	return n.dataDir, nil
}

// Args returns the flags the node's container runs with.
func (c *Cluster) Args(name string) ([]string, error) {
	n, err := c.lockNode(name)
	if err != nil {
		return nil, err
	}
	defer n.mu.Unlock()
	return slices.Clone(n.args), nil
}

// LogPath returns the host file the node's stdout and stderr are copied to,
// across restarts.
func (c *Cluster) LogPath(name string) (string, error) {
	n, err := c.node(name)
	if err != nil {
		return "", err
	}
	return n.logPath, nil
}

// Kill sends SIGKILL to the node's process and waits until the container
// has stopped. Its data directory stays. Killing a stopped node does
// nothing; a paused node is killed too.
func (c *Cluster) Kill(ctx context.Context, name string) error {
	return c.withNode(name, func(n *node) error {
		st, err := c.state(ctx, n)
		if err != nil {
			return err
		}
		if !st.Running {
			return nil
		}
		n.logs.mark("SIGKILL")
		if _, err := c.dc.ContainerKill(ctx, n.ctr.GetContainerID(), client.ContainerKillOptions{Signal: "KILL"}); err != nil {
			return fmt.Errorf("chaos: kill %s: %w", name, err)
		}
		if st.Paused {
			// A frozen process cannot act on the signal until it is thawed.
			if _, err := c.dc.ContainerUnpause(ctx, n.ctr.GetContainerID(), client.ContainerUnpauseOptions{}); err != nil && !errdefs.IsConflict(err) {
				c.log.Debug("chaos: unpause after kill", "node", name, "err", err)
			}
		}
		return c.waitStopped(ctx, n)
	})
}

// Stop sends SIGTERM and waits for the process to exit, SIGKILLing it after
// Options.StopTimeout.
func (c *Cluster) Stop(ctx context.Context, name string) error {
	return c.withNode(name, func(n *node) error {
		n.logs.mark("SIGTERM")
		timeout := c.opts.StopTimeout
		if err := n.ctr.Stop(ctx, &timeout); err != nil {
			return fmt.Errorf("chaos: stop %s: %w", name, err)
		}
		return c.waitStopped(ctx, n)
	})
}

// Start starts a stopped or killed node again: the same container, so the
// same filesystem, IP, name, data directory and endpoint. Network faults in
// force are applied to it, then Start waits for Options.Ready. Starting a
// running node does nothing.
func (c *Cluster) Start(ctx context.Context, name string) error {
	n, err := c.node(name)
	if err != nil {
		return err
	}
	return c.startNode(ctx, n)
}

func (c *Cluster) startNode(ctx context.Context, n *node) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	st, err := c.state(ctx, n)
	if err != nil {
		return err
	}
	if !st.Running {
		n.logs.mark("start")
		if err := n.ctr.Start(ctx); err != nil {
			return fmt.Errorf("chaos: start %s: %w", n.name, err)
		}
		n.gen++
		n.logs.started()
		// The process runs for a moment before the rules below are in place
		// in its fresh namespace; see "Restarts" in netfault.go.
		if err := c.syncNodeLocked(ctx, n); err != nil {
			return err
		}
	}
	return c.waitReady(ctx, n)
}

// Pause freezes every process of the node (cgroup freezer). Its kernel
// network stack still answers at the TCP level, like a stalled process.
func (c *Cluster) Pause(ctx context.Context, name string) error {
	return c.freeze(name, "pause", func(id string) error {
		_, err := c.dc.ContainerPause(ctx, id, client.ContainerPauseOptions{})
		return err
	})
}

// Unpause thaws a paused node.
func (c *Cluster) Unpause(ctx context.Context, name string) error {
	return c.freeze(name, "unpause", func(id string) error {
		_, err := c.dc.ContainerUnpause(ctx, id, client.ContainerUnpauseOptions{})
		return err
	})
}

// freeze marks op ("pause", "unpause") in the node's log and asks the
// engine to do it to the node's container.
func (c *Cluster) freeze(name, op string, do func(id string) error) error {
	return c.withNode(name, func(n *node) error {
		n.logs.mark(op)
		if err := do(n.ctr.GetContainerID()); err != nil {
			return fmt.Errorf("chaos: %s %s: %w", op, name, err)
		}
		return nil
	})
}

// NodeState is what the engine says about a node's container.
type NodeState struct {
	Running bool
	Paused  bool
	Pid     int // host pid of the node's process, 0 unless running
}

// State asks the engine about the node's container.
func (c *Cluster) State(ctx context.Context, name string) (NodeState, error) {
	n, err := c.lockNode(name)
	if err != nil {
		return NodeState{}, err
	}
	defer n.mu.Unlock()
	return c.state(ctx, n)
}

// Wipe empties a stopped node's data directory, as a replaced disk would.
// The directory itself stays: it is the container's bind-mount source.
func (c *Cluster) Wipe(ctx context.Context, name string) error {
	return c.withNode(name, func(n *node) error {
		if err := c.requireStopped(ctx, n); err != nil {
			return err
		}
		entries, err := os.ReadDir(n.dataDir)
		if err != nil {
			return fmt.Errorf("chaos: wipe %s: %w", name, err)
		}
		var errs []error
		for _, e := range entries {
			errs = append(errs, os.RemoveAll(filepath.Join(n.dataDir, e.Name())))
		}
		if err := errors.Join(errs...); err != nil {
			return fmt.Errorf("chaos: wipe %s: %w", name, err)
		}
		n.logs.mark("wipe")
		return nil
	})
}

// Recreate replaces a stopped node's container by a new one that runs
// args: same name, hostname, IP, endpoint, data directory and log file.
// It exists because the engine cannot change a container's command, and a
// node whose data directory was wiped must come back with other flags (join
// an existing cluster rather than form a new one). The new container runs
// Options.Image, also on a node created from Options.InitialImage (an
// upgrade). The node stays stopped until Start.
func (c *Cluster) Recreate(ctx context.Context, name string, args []string) error {
	return c.withNode(name, func(n *node) error {
		if err := c.requireStopped(ctx, n); err != nil {
			return err
		}
		if err := n.ctr.Terminate(ctx, testcontainers.StopTimeout(0)); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("chaos: recreate %s: remove: %w", name, err)
		}
		n.image = c.opts.Image
		ctr, err := c.createContainer(ctx, n, args)
		if ctr != nil {
			n.ctr = ctr
			n.logs.setID(ctr.GetContainerID())
		}
		if err != nil {
			return err
		}
		n.args = slices.Clone(args)
		n.logs.mark("recreated: " + strings.Join(args, " "))
		return nil
	})
}

// requireStopped fails with ErrNodeRunning unless n's container has
// stopped. The caller holds n.mu.
func (c *Cluster) requireStopped(ctx context.Context, n *node) error {
	st, err := c.state(ctx, n)
	if err != nil {
		return err
	}
	if st.Running {
		return fmt.Errorf("%w: %s", ErrNodeRunning, n.name)
	}
	return nil
}

func (c *Cluster) state(ctx context.Context, n *node) (NodeState, error) {
	res, err := c.dc.ContainerInspect(ctx, n.ctr.GetContainerID(), client.ContainerInspectOptions{})
	if err != nil {
		return NodeState{}, fmt.Errorf("chaos: inspect %s: %w", n.name, err)
	}
	st := res.Container.State
	if st == nil {
		return NodeState{}, fmt.Errorf("chaos: inspect %s: no state", n.name)
	}
	out := NodeState{Running: st.Running, Paused: st.Paused}
	if st.Running {
		out.Pid = st.Pid
	}
	return out, nil
}

// waitStopped waits until n's container has stopped, then closes its
// delay queues (closeQueues). The caller holds n.mu.
func (c *Cluster) waitStopped(ctx context.Context, n *node) error {
	res := c.dc.ContainerWait(ctx, n.ctr.GetContainerID(), client.ContainerWaitOptions{Condition: container.WaitConditionNotRunning})
	select {
	case <-res.Result:
		c.closeQueues(n)
		return nil
	case err := <-res.Error:
		return fmt.Errorf("chaos: wait for %s to stop: %w", n.name, err)
	case <-ctx.Done():
		return fmt.Errorf("chaos: wait for %s to stop: %w", n.name, ctx.Err())
	}
}

// waitReady polls Options.Ready until it passes, the start timeout passes
// or ctx ends.
func (c *Cluster) waitReady(ctx context.Context, n *node) error {
	ctx, cancel := context.WithTimeout(ctx, c.opts.StartTimeout)
	defer cancel()
	addr := net.JoinHostPort(n.ip.String(), strconv.Itoa(c.opts.Port))
	ready := c.opts.Ready
	if ready == nil {
		ready = dialReady
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var lastErr error
	for {
		pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
		lastErr = ready(pctx, addr)
		pcancel()
		if lastErr == nil {
			return nil
		}
		if st, err := c.state(ctx, n); err == nil && !st.Running {
			// It exited (refused to start): no use waiting.
			return fmt.Errorf("%w: %s exited while starting: %w", ErrNotReady, n.name, lastErr)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %s after %s: %w", ErrNotReady, n.name, c.opts.StartTimeout, lastErr)
		case <-tick.C:
		}
	}
}

func dialReady(ctx context.Context, addr string) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	return conn.Close()
}

// Terminate removes every container and the network of the run, and stops
// the log followers and delay queues. RunDir (data and logs) stays. It is
// safe to call more than once and after a failed start; later calls do
// nothing. Give it a context that is not already cancelled: after SIGINT,
// use context.WithoutCancel plus a timeout.
func (c *Cluster) Terminate(ctx context.Context) error {
	c.mu.Lock()
	if c.terminated {
		c.mu.Unlock()
		return nil
	}
	c.terminated = true
	queues := c.queues
	c.queues = map[dirLink]*delayQueue{}
	c.mu.Unlock()

	var errs []error
	for _, q := range queues {
		if err := q.close(); err != nil {
			errs = append(errs, err)
		}
	}
	// Stop the nodes first so every log line is written before the
	// followers stop and the containers go away.
	var g errgroup.Group
	for _, n := range c.nodes {
		if n.ctr == nil {
			continue
		}
		g.Go(func() error {
			n.mu.Lock()
			defer n.mu.Unlock()
			_, _ = c.dc.ContainerUnpause(ctx, n.ctr.GetContainerID(), client.ContainerUnpauseOptions{})
			timeout := 2 * time.Second
			if err := n.ctr.Stop(ctx, &timeout); err != nil && !errdefs.IsNotFound(err) {
				c.log.Debug("chaos: stop before remove", "node", n.name, "err", err)
			}
			return nil
		})
	}
	_ = g.Wait()
	c.stopLogs()
	c.logsWG.Wait()
	for _, n := range c.nodes {
		if n.ctr != nil {
			n.logs.drain(ctx)
			if err := n.ctr.Terminate(ctx, testcontainers.StopTimeout(0)); err != nil && !errdefs.IsNotFound(err) {
				errs = append(errs, fmt.Errorf("chaos: remove %s: %w", n.name, err))
			}
		}
		if err := n.logs.close(); err != nil {
			errs = append(errs, err)
		}
		if n.fs {
			if err := smallfs.Detach(n.dataDir); err != nil {
				errs = append(errs, fmt.Errorf("chaos: unmount %s's data filesystem: %w", n.name, err))
			}
		}
	}
	if c.netID != "" {
		if _, err := c.dc.NetworkRemove(ctx, c.netID, client.NetworkRemoveOptions{}); err != nil && !errdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("chaos: remove network %s: %w", c.netName, err))
		}
	}
	if err := c.dc.Close(); err != nil {
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		c.log.Info("chaos: cluster removed")
	}
	return errors.Join(errs...)
}
