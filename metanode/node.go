package metanode

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/netutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/protobuf/proto"

	"github.com/metamq/meta/rocks"
	"github.com/metamq/meta/rpc/metapb"
	"github.com/metamq/meta/rpc/transport"
	"github.com/metamq/meta/sm"
	"github.com/metamq/meta/sm/logpb"
	"github.com/metamq/meta/sm/state"
)

var keyIdentity = []byte("identity")

// Node is one Meta Node. Create it with New, let rpc/server register the
// public API on GRPCServer(), then Start it; Close stops it in order.
type Node struct {
	cfg   Config
	log   *slog.Logger
	id    string
	grpc  *grpc.Server
	hlth  *health.Server
	trans *transport.Manager
	reg   *prometheus.Registry
	m     *metrics
	// metricsSrv serves /metrics, /livez and /readyz (nil when off).
	metricsSrv  *http.Server
	metricsAddr string

	// Set by Start before started is set; read-only afterwards.
	addr     string
	lis      net.Listener
	db       *rocks.DB
	quota    atomic.Int64 // Config.QuotaBytes; tests change it while running (alarm.go)
	identity *logpb.NodeIdentity

	groupsMu sync.RWMutex // guards groups
	// groups are the replicas this node runs (hosting.go).
	groups map[string]*group
	// dir is the newest directory seen; dirChanges fires when it changes.
	dir atomic.Pointer[state.Directory]
	// storedLevel is the cluster version the stored replica of
	// metadata-0 held at start (0: none), ClusterVersion's answer until
	// the node has fetched a directory.
	storedLevel atomic.Uint32
	router      atomic.Pointer[metapb.Router]
	dirChanges  changes
	// hints maps a group to the node last said to lead it.
	hints sync.Map

	t       timings
	env     *env
	tasksMu sync.Mutex // guards tasks and calls
	tasks   map[string][]func(context.Context)
	calls   map[string]CallHandler

	started atomic.Bool
	serving atomic.Bool
	// life owns the node's own goroutines (reconciliation); its context
	// is the node's lifetime and ends when Close begins. Each group has a
	// lifetime of its own inside it.
	life     *lifetime
	serveErr chan error
	// failed receives the one reason the node cannot go on (Failed).
	failed chan error
	// storageErr is the first write RocksDB refused (storage.go): every
	// group of the node stopped then.
	storageErr atomic.Pointer[error]

	closeMu sync.Mutex // serialises Close
	closed  bool
}

// New creates a node and its gRPC server; it listens on nothing yet.
func New(cfg Config) (*Node, error) {
	if err := checkTLSIdentity(&cfg); err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Clock == nil {
		cfg.Clock = systemClock{}
	}
	n := &Node{cfg: cfg, id: cfg.ID, log: cfg.Logger.With("node", cfg.ID), t: cfg.timings(),
		life: newLifetime(context.Background()), serveErr: make(chan error, 1), failed: make(chan error, 1), groups: map[string]*group{},
		tasks: map[string][]func(context.Context){}, calls: map[string]CallHandler{}}
	n.reg = cfg.Metrics
	if n.reg == nil {
		n.reg = prometheus.NewRegistry()
	}
	n.m = newMetrics(n.reg, n)
	n.addr = cfg.AdvertiseAddr
	if n.addr == "" {
		if cfg.Listener != nil {
			n.addr = cfg.Listener.Addr().String()
		} else {
			n.addr = cfg.ListenAddr
		}
	}
	tm, err := transport.NewManager(transport.Config{
		LocalAddr: n.addr,
		Logger:    n.log.With("component", "transport"),
		Dialer:    cfg.Dialer,
		TLS:       cfg.TLS,
		// Bound late: n is complete before any call arrives.
		PeerAllowed: func(id string) bool { return n.peerAllowed(id) },
	})
	if err != nil {
		return nil, err
	}
	n.trans = tm
	// The transport's options set the message limits and the keepalive
	// policy its peers' connections rely on.
	n.grpc = grpc.NewServer(append(tm.ServerOptions(), cfg.ServerOptions...)...)
	tm.Register(n.grpc)
	tm.SetPeerHandler(peerHandler{n})
	n.registerCalls()
	n.hlth = health.NewServer()
	n.hlth.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	healthpb.RegisterHealthServer(n.grpc, n.hlth)
	reflection.Register(n.grpc)
	return n, nil
}

// Now is the node's clock (the one entries are stamped with).
func (n *Node) Now() time.Time { return n.cfg.Clock.Now() }

// GRPCServer is the node's one gRPC server; register services on it before
// Start.
func (n *Node) GRPCServer() *grpc.Server { return n.grpc }

// ID returns the node id.
func (n *Node) ID() string { return n.id }

// Addr returns the advertised address.
func (n *Node) Addr() string { return n.addr }

// ClusterID returns the cluster id (empty before Start).
func (n *Node) ClusterID() string {
	if !n.started.Load() {
		return ""
	}
	return n.identity.ClusterId
}

// GroupCounts returns k (offset groups) and m (data groups); 0, 0 before
// Start.
func (n *Node) GroupCounts() (k, m int) {
	if !n.started.Load() {
		return 0, 0
	}
	return int(n.identity.OffsetGroups), int(n.identity.DataGroups)
}

// Start listens, serves, opens the data directory, forms or joins the
// cluster and starts the groups. For a new cluster it returns once the
// cluster's identity is recorded in metadata-0 and matches this node's.
func (n *Node) Start(ctx context.Context) (err error) {
	lis := n.cfg.Listener
	if lis == nil {
		if lis, err = net.Listen("tcp", n.cfg.ListenAddr); err != nil {
			return fmt.Errorf("metanode: listen: %w", err)
		}
	}
	if n.cfg.MaxConnections > 0 {
		lis = netutil.LimitListener(lis, n.cfg.MaxConnections)
	}
	n.lis = lis
	go func() { n.serveErr <- n.grpc.Serve(lis) }()
	defer func() {
		if err != nil {
			n.abort()
		}
	}()
	if n.cfg.MetricsListen != "" || n.cfg.MetricsListener != nil {
		if err := n.serveMetrics(); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(n.cfg.DataDir, 0o755); err != nil {
		return fmt.Errorf("metanode: data dir: %w", err)
	}
	fresh, err := n.openStorage(ctx)
	if err != nil {
		return err
	}
	n.trans.SetClusterID(n.identity.ClusterId)
	n.env = &env{id: n.id, m: n.m, cfg: n.cfg, t: n.t, log: n.log, db: n.db, peers: n.trans,
		snapLimit: sm.NewLimiter(n.cfg.SnapshotBytesPerSecond),
		logCaches: rocks.NewLogCacheBudget(n.cfg.NodeLogCacheBytes, n.cfg.LogCacheBytes),
		serving:   n.serving.Load, handler: n.callHandler, onLead: n.onLead,
		candidates: n.candidates, noteLeader: n.noteLeader, stopping: n.life.Done(), storageFailed: n.storageFailed,
		directory: n.Directory, dirChanged: n.DirectoryChanged, clusterVersion: n.ClusterVersion}
	for _, name := range n.db.Groups() {
		if _, err := n.openGroup(name); err != nil {
			return err
		}
	}
	if err := n.checkStoredVersion(); err != nil {
		return err
	}
	if n.identity.Bootstrap && fresh {
		if err := n.bootstrap(); err != nil {
			return err
		}
	}
	n.started.Store(true)
	for _, g := range n.hostedGroups() {
		g.start()
	}
	n.life.Go(n.directoryLoop)
	n.life.Go(n.hostLoop)
	n.life.Go(n.reportLoop)
	n.life.Go(n.alarmLoop)
	if err := n.checkClusterRecord(ctx, fresh); err != nil {
		return err
	}
	n.serving.Store(true)
	n.life.Go(n.healthLoop)
	n.log.Info("node started", "addr", n.addr, "cluster", n.identity.ClusterId,
		"offset_groups", n.identity.OffsetGroups, "data_groups", n.identity.DataGroups,
		"hosted", n.db.Groups(), "fresh", fresh)
	return nil
}

// onLead is what a group runs once a term of this node's leadership is
// ready: the cluster record for metadata-0 (and its cluster version's
// loop), then the registered tasks.
func (n *Node) onLead(ctx context.Context, g *group) []func(context.Context) {
	var tasks []func(context.Context)
	if g.name == metapb.MetadataGroup {
		n.initCluster(ctx)
		tasks = append(tasks, n.versionLoop, n.splitLoop)
	}
	n.tasksMu.Lock()
	defer n.tasksMu.Unlock()
	return append(tasks, n.tasks[g.name]...)
}

// openStorage opens (or creates) the RocksDB and settles the node's
// identity. fresh reports a data directory created by this start.
func (n *Node) openStorage(ctx context.Context) (fresh bool, err error) {
	dbDir := filepath.Join(n.cfg.DataDir, "db")
	existing, err := rocks.ListGroups(dbDir)
	if err != nil {
		return false, fmt.Errorf("metanode: inspect %s: %w", dbDir, err)
	}
	var id *logpb.NodeIdentity
	if existing != nil {
		if err := n.openDB(dbDir, existing); err != nil {
			return false, err
		}
		v, ok, err := n.db.Node().Get(keyIdentity)
		if err != nil {
			return false, fmt.Errorf("metanode: read identity: %w", err)
		}
		if ok {
			id = &logpb.NodeIdentity{}
			if err := proto.Unmarshal(v, id); err != nil {
				return false, fmt.Errorf("metanode: decode identity: %w", err)
			}
			if err := n.checkIdentity(id, existing); err != nil {
				return false, err
			}
			n.identity = id
			return false, nil
		}
		// A previous first start died before recording its identity: the
		// directory holds nothing yet; start afresh.
	}
	if id, err = n.newIdentity(ctx); err != nil {
		return false, err
	}
	groups := initialGroups(id)
	if n.db != nil && !slices.Equal(sorted(n.db.Groups()), sorted(groups)) {
		_ = n.db.Close()
		n.db = nil
		if err := os.RemoveAll(dbDir); err != nil {
			return false, err
		}
	}
	if n.db == nil {
		if err := n.openDB(dbDir, groups); err != nil {
			return false, err
		}
	}
	v, err := proto.Marshal(id)
	if err != nil {
		return false, err
	}
	if err := n.db.Node().Put(keyIdentity, v, true); err != nil {
		return false, fmt.Errorf("metanode: write identity: %w", err)
	}
	n.identity = id
	return true, nil
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

func (n *Node) openDB(dir string, groups []string) error {
	opts := n.cfg.Rocks
	opts.Dir = dir
	db, err := rocks.Open(opts, groups)
	if err != nil {
		if errors.Is(err, rocks.ErrCorruptFiles) {
			return fmt.Errorf("metanode: open rocksdb: %w (this node's copy cannot be trusted: remove the member, `metactl member remove %s`, wipe %s, and add it back empty with `metactl member add` and `metanode --join`; the other replicas hold the data)", err, n.cfg.ID, n.cfg.DataDir)
		}
		return fmt.Errorf("metanode: open rocksdb: %w", err)
	}
	n.db = db
	return nil
}

// initialGroups are the groups a new node starts with: for an initial
// member, those the initial directory places on it; for a joining node,
// none (the controller places replicas on it).
func initialGroups(id *logpb.NodeIdentity) []string {
	if !id.Bootstrap {
		return nil
	}
	var out []string
	for _, rec := range initialRecords(id) {
		if hosts(rec, id.NodeId) {
			out = append(out, rec.Name)
		}
	}
	return out
}

// initialRecords is the directory an initial member computes from its
// identity (every initial member computes the same).
func initialRecords(id *logpb.NodeIdentity) []*logpb.GroupRecord {
	var members []string
	for _, m := range id.InitialMembers {
		members = append(members, m.Id)
	}
	groups := metapb.Groups(int(id.OffsetGroups), int(id.DataGroups))
	if id.ReplicationFactor == 0 {
		return legacyDirectory(members, groups)
	}
	if len(id.RestoredGroups) == 0 {
		return initialDirectory(members, groups, int(id.ReplicationFactor), int(id.MetadataReplicationFactor))
	}
	// A restored split cluster: its own groups, placed as a new
	// cluster's, each owning the ranges its backup owns.
	groups = []string{metapb.MetadataGroup}
	for _, g := range id.RestoredGroups {
		groups = append(groups, g.Name)
	}
	recs := initialDirectory(members, groups, int(id.ReplicationFactor), int(id.MetadataReplicationFactor))
	for i, g := range id.RestoredGroups {
		recs[i+1].Ranges = nil
		for _, r := range g.Ranges {
			recs[i+1].Ranges = append(recs[i+1].Ranges, proto.CloneOf(r))
		}
	}
	return recs
}

// checkIdentity compares a stored identity with the configuration.
func (n *Node) checkIdentity(id *logpb.NodeIdentity, _ []string) error {
	var errs []error
	if id.NodeId != n.cfg.ID {
		errs = append(errs, fmt.Errorf("data directory %s belongs to node %q, not %q", n.cfg.DataDir, id.NodeId, n.cfg.ID))
	}
	if n.cfg.ClusterID != "" && n.cfg.ClusterID != id.ClusterId {
		errs = append(errs, fmt.Errorf("data directory holds cluster %q, --cluster-id says %q", id.ClusterId, n.cfg.ClusterID))
	}
	if n.cfg.OffsetGroups != 0 && n.cfg.OffsetGroups != int(id.OffsetGroups) {
		errs = append(errs, fmt.Errorf("cluster %s was created with %d offset groups; this node was started with %d",
			id.ClusterId, id.OffsetGroups, n.cfg.OffsetGroups))
	}
	if n.cfg.DataGroups != 0 && n.cfg.DataGroups != int(id.DataGroups) {
		errs = append(errs, fmt.Errorf("cluster %s was created with %d data groups; this node was started with %d",
			id.ClusterId, id.DataGroups, n.cfg.DataGroups))
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrClusterMismatch, errors.Join(errs...))
	}
	return nil
}

// newIdentity settles the identity of a node whose data directory is new:
// from the cluster it joins, or from its initial cluster.
func (n *Node) newIdentity(ctx context.Context) (*logpb.NodeIdentity, error) {
	if len(n.cfg.Join) > 0 {
		return n.joinIdentity(ctx)
	}
	if len(n.cfg.InitialCluster) == 0 {
		return nil, fmt.Errorf("metanode: data directory %s is empty: give an initial cluster (--initial-cluster) or members to join (--join)", n.cfg.DataDir)
	}
	id := &logpb.NodeIdentity{NodeId: n.cfg.ID, ClusterId: n.cfg.ClusterID,
		OffsetGroups: uint32(max(n.cfg.OffsetGroups, 1)), DataGroups: uint32(max(n.cfg.DataGroups, 1)), Bootstrap: true,
		ReplicationFactor:         uint32(n.cfg.ReplicationFactor),
		MetadataReplicationFactor: uint32(n.cfg.MetadataReplicationFactor)}
	if id.ClusterId == "" {
		id.ClusterId = DeriveClusterID(n.cfg.InitialCluster)
	}
	for _, p := range n.cfg.InitialCluster {
		id.InitialMembers = append(id.InitialMembers, &logpb.MemberPut{Id: p.ID, Addr: p.Addr})
	}
	return id, nil
}

func (n *Node) joinIdentity(ctx context.Context) (*logpb.NodeIdentity, error) {
	var last error
	for attempt := 0; ; attempt++ {
		for _, addr := range n.cfg.Join {
			cctx, cancel := context.WithTimeout(ctx, n.t.peerCall)
			info, err := n.trans.ClusterInfo(cctx, addr, n.cfg.featureLevel())
			cancel()
			if errors.Is(err, ErrClusterVersion) || metapb.ReasonOf(err) == metapb.ReasonClusterVersion {
				return nil, fmt.Errorf("metanode: join refused by %s: %w", addr, err)
			}
			if err != nil {
				last = fmt.Errorf("ask %s: %w", addr, err)
				continue
			}
			if err := n.checkLevel(max(info.ClusterVersion, sm.BaseLevel), "told by "+addr); err != nil {
				return nil, err
			}
			member := false
			for _, p := range info.Members {
				if p.Id == n.cfg.ID {
					member = true
				}
			}
			if !member {
				return nil, fmt.Errorf("metanode: node %q is not a member of cluster %s: run `metactl member add %s %s` first",
					n.cfg.ID, info.ClusterId, n.cfg.ID, n.addr)
			}
			id := &logpb.NodeIdentity{NodeId: n.cfg.ID, ClusterId: info.ClusterId,
				OffsetGroups: info.OffsetGroups, DataGroups: info.DataGroups}
			if err := n.checkIdentity(id, nil); err != nil {
				return nil, err
			}
			return id, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("metanode: join %v: %w (last: %v)", n.cfg.Join, ctx.Err(), last)
		case <-time.After(time.Duration(min(attempt+1, 10)) * n.t.joinPause):
		}
	}
}

// bootstrap gives every group this node hosts its initial configuration:
// the replicas of the initial directory. Every initial member computes the
// same directory and bootstraps the groups it is given with the same
// configuration, so they agree; a node alone can never win an election in
// a configuration of several voters.
func (n *Node) bootstrap() error {
	for name, conf := range initialConfigurations(n.identity) {
		g := n.hosted(name)
		if g == nil {
			continue
		}
		err := g.raft.BootstrapCluster(conf).Error()
		if err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
			return fmt.Errorf("metanode: bootstrap %s: %w", g.name, err)
		}
	}
	return nil
}

// initialConfigurations returns the initial raft configuration of every
// group of the initial directory: its replicas, all voters.
func initialConfigurations(id *logpb.NodeIdentity) map[string]raft.Configuration {
	addr := map[string]string{}
	for _, p := range id.InitialMembers {
		addr[p.Id] = p.Addr
	}
	out := map[string]raft.Configuration{}
	for _, rec := range initialRecords(id) {
		var servers []raft.Server
		for _, r := range rec.Replicas {
			servers = append(servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(r.Node), Address: raft.ServerAddress(addr[r.Node])})
		}
		out[rec.Name] = raft.Configuration{Servers: servers}
	}
	return out
}

// checkClusterRecord makes sure metadata-0's cluster record matches this
// node. A fresh node waits for the record (the first metadata leader writes
// it): in its own replica of metadata-0, or else through the directory it
// follows; a restarted node checks it if it has it.
func (n *Node) checkClusterRecord(ctx context.Context, fresh bool) error {
	for {
		changed := n.dirChanges.wait()
		var ci *logpb.ClusterInit
		if md := n.hosted(metapb.MetadataGroup); md != nil {
			c, _, err := md.fsm.Cluster()
			if err != nil {
				return err
			}
			ci = c
			changed = md.fsm.Changed()
		} else {
			ci = n.Directory().Cluster
		}
		if ci != nil {
			if ci.ClusterId != n.identity.ClusterId || ci.OffsetGroups != n.identity.OffsetGroups || ci.DataGroups != n.identity.DataGroups {
				return fmt.Errorf("%w: cluster %s was created with %d offset groups and %d data groups; this node has cluster %s with %d and %d",
					ErrClusterMismatch, ci.ClusterId, ci.OffsetGroups, ci.DataGroups,
					n.identity.ClusterId, n.identity.OffsetGroups, n.identity.DataGroups)
			}
			return nil
		}
		if !fresh {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("metanode: waiting for the cluster to form: %w", ctx.Err())
		case <-changed:
		}
	}
}

// abort undoes a failed Start.
func (n *Node) abort() {
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.ShutdownTimeout)
	defer cancel()
	_ = n.shutdown(ctx, false)
}

// Close shuts the node down in order within ShutdownTimeout: stop serving
// the public API, hand off the leaderships it holds, stop raft, stop the
// gRPC server and the transport, close RocksDB. Safe to call twice.
func (n *Node) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.ShutdownTimeout)
	defer cancel()
	return n.shutdown(ctx, true)
}

// Crash stops the node abruptly, as kill -9 would: no leadership handoff,
// no waiting for in-flight requests. Data already handed to RocksDB's WAL
// survives (as it would in the OS page cache); tests use it.
//
// Unlike Close it is not bound by ShutdownTimeout: it waits (up to a
// minute) until raft has answered every call the node made, which raft
// always does while it runs, so that no goroutine is left waiting for an
// answer after raft is gone (raft's main loop can be busy for longer than
// ShutdownTimeout, installing a snapshot from a peer that went silent).
func (n *Node) Crash() error {
	ctx, cancel := context.WithTimeout(context.Background(), max(n.cfg.ShutdownTimeout, time.Minute))
	defer cancel()
	return n.shutdown(ctx, false)
}

func (n *Node) shutdown(ctx context.Context, orderly bool) error {
	n.closeMu.Lock()
	defer n.closeMu.Unlock()
	if n.closed {
		return nil
	}
	n.closed = true
	n.serving.Store(false)
	// Every service NOT_SERVING from now on, whatever the health loop
	// does before it stops.
	n.hlth.Shutdown()
	// The node's lifetime ends first: watches and the groups' loops see it
	// at once; raft keeps running (and answering) until each group stops.
	n.life.End()
	if orderly {
		n.handOffLeaderships(ctx)
	}
	var errs []error
	var wg sync.WaitGroup
	groups := n.hostedGroups()
	errc := make(chan error, len(groups))
	for _, g := range groups {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errc <- g.stop(ctx)
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		if err != nil {
			errs = append(errs, err)
		}
	}
	// The transport goes first: its streams (peers' append pipelines)
	// never end on their own, so a graceful gRPC stop would wait for them.
	if err := n.trans.Close(); err != nil {
		errs = append(errs, err)
	}
	if orderly {
		stopped := make(chan struct{})
		go func() { n.grpc.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-ctx.Done():
			n.grpc.Stop()
		}
	} else {
		n.grpc.Stop()
	}
	for _, g := range groups {
		g.fsm.Close()
		g.logCache.Close()
	}
	if n.db != nil {
		if err := n.db.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if n.metricsSrv != nil {
		_ = n.metricsSrv.Close()
	}
	n.log.Info("node stopped", "orderly", orderly)
	return errors.Join(errs...)
}

// handOffLeaderships transfers each group this node leads to another
// voter, so the cluster does not wait an election timeout for it.
func (n *Node) handOffLeaderships(ctx context.Context) {
	var wg sync.WaitGroup
	for _, g := range n.hostedGroups() {
		if g.raft.State() != raft.Leader || len(g.voters()) < 2 {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := g.transferLeadership(ctx, "leadership handoff", "", nil); err != nil {
				n.log.Warn("leadership handoff failed", "group", g.name, "err", err)
			}
		}()
	}
	wg.Wait()
}

// group returns a started group.
func (n *Node) group(name string) (*group, error) {
	if !n.started.Load() {
		return nil, ErrNotStarted
	}
	if g := n.hosted(name); g != nil {
		return g, nil
	}
	if _, err := metapb.GroupKind(name); err != nil {
		return nil, fmt.Errorf("%w: %q", ErrUnknownGroup, name)
	}
	return nil, n.notHosted(name)
}

// Machine returns a group's state machine for local reads (tests and the
// stale-read path).
func (n *Node) Machine(name string) (*sm.Machine, error) {
	g, err := n.group(name)
	if err != nil {
		return nil, err
	}
	return g.fsm, nil
}

// Stopping is closed when the node begins to shut down; long-lived
// streams (watches) end then, so an orderly stop need not wait for them.
func (n *Node) Stopping() <-chan struct{} { return n.life.Done() }
