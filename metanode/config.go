package metanode

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/metamq/meta/rocks"
	"github.com/metamq/meta/rpc/metapb"
	"github.com/metamq/meta/rpc/transport"
	"github.com/metamq/meta/sm"
)

// Peer is a cluster member: a node id and its gRPC address.
type Peer struct {
	ID   string
	Addr string
}

// Config configures a Node. Start from DefaultConfig.
type Config struct {
	// ID is this node's id, unique in the cluster for all time.
	ID string
	// DataDir holds the node's RocksDB and raft snapshots.
	DataDir string
	// ListenAddr is where the gRPC server listens ("host:port"). Ignored
	// when Listener is set.
	ListenAddr string
	// Listener, when set, is used instead of listening on ListenAddr
	// (tests pass a listener bound to port 0).
	Listener net.Listener
	// AdvertiseAddr is the address peers and clients use to reach this
	// node; default ListenAddr (or the Listener's address).
	AdvertiseAddr string
	// MaxConnections bounds the connections the gRPC port holds at once
	// (peers and clients); one more waits to be accepted until another
	// closes. 0: no bound.
	MaxConnections int

	// InitialCluster lists every member of a new cluster, this node
	// included. All initial members must be started with the same list;
	// they form one cluster together, and no node ever forms a cluster on
	// its own. Ignored once the data directory holds a cluster.
	InitialCluster []Peer
	// Join lists addresses of members of an existing cluster; a node with
	// an empty data directory asks them for the cluster's identity. Add the
	// node first (Cluster.AddMember / metactl member add).
	Join []string
	// ClusterID names a new cluster; default: derived from InitialCluster.
	ClusterID string
	// OffsetGroups (k) and DataGroups (m) fix the shape of a new cluster.
	// A node whose data directory or cluster says otherwise refuses to
	// start. Zero means: take the counts from the data directory or the
	// cluster, or 1 for a new cluster.
	OffsetGroups int
	DataGroups   int
	// ReplicationFactor is how many replicas each group of a new cluster
	// has, MetadataReplicationFactor how many metadata-0 has (1, 3 or 5).
	// Groups run on that many nodes each (all nodes when there are fewer),
	// placed and balanced by the controller. Ignored once the cluster
	// exists (it is recorded in it).
	ReplicationFactor         int
	MetadataReplicationFactor int
	// Zone is an optional failure-domain label of this node: replicas of a
	// group are spread over zones when there are enough.
	Zone string
	// ReportInterval is how often the node tells the controller how its
	// replicas stand (the controller's liveness and placement input).
	ReportInterval time.Duration

	// Rocks sets RocksDB's memory budget and files. Dir is DataDir/db.
	Rocks rocks.Options

	// Raft timing. Heartbeat and election timeouts are raft's own defaults
	// (1s); shorter ones lost leadership under load on 2 cores. A follower
	// that has heard nothing from its leader for HeartbeatTimeout (checked
	// every 1-2 HeartbeatTimeouts) stands for election.
	HeartbeatTimeout time.Duration
	ElectionTimeout  time.Duration
	// LeaderLeaseTimeout: a leader that has not heard from a quorum for
	// this long steps down. Reads never rely on it (they confirm
	// leadership with a heartbeat round), so it only bounds how long a
	// cut-off leader keeps the title. Default 1s, as long as
	// HeartbeatTimeout allows: room for LeaderHeartbeatTimeout's slower
	// heartbeats.
	LeaderLeaseTimeout time.Duration
	// LeaderHeartbeatTimeout is the heartbeat timeout a group's leader
	// runs raft with (followers keep HeartbeatTimeout): raft heartbeats
	// each follower every tenth to fifth of it. Every group heartbeats
	// every follower separately, and on an idle node that is most of its
	// CPU: the default, 2s (with a 1s LeaderLeaseTimeout), sends one every
	// 200-400 ms instead of every 100-200 ms (ci/idlecpu.sh: 3 nodes × 100
	// idle groups, 12.5% to 7.8% of a core per node when first measured).
	// A follower still notices a silent leader after HeartbeatTimeout, so
	// failover after a leader dies is not slower; on a machine loaded far
	// past its cores, clusters with these defaults saw fewer leader changes
	// than with a 1s heartbeat and 500 ms lease (whose leaders stepped down
	// when starved). Zero, or anything below HeartbeatTimeout, means
	// HeartbeatTimeout. Its fifth must not exceed half of
	// LeaderLeaseTimeout nor half of HeartbeatTimeout: a follower and the
	// leader's lease hear at least two heartbeats per timeout (lowering
	// HeartbeatTimeout means lowering this and LeaderLeaseTimeout too).
	LeaderHeartbeatTimeout time.Duration
	// CommitTimeout is how often an idle group's leader sends its
	// followers the commit index (a busy group sends it with new entries).
	// Every group pays it on every follower, so it is most of an idle
	// node's CPU: 250 ms (raft's default is 50 ms) quarters that, and a
	// follower that has not heard a read's index is committed sends the
	// read to the leader instead of waiting (Read).
	CommitTimeout time.Duration
	// MaxAppendEntries bounds entries per AppendEntries and per batch.
	MaxAppendEntries int
	// LogCacheBytes bounds, per group, the recent raft log entries kept in
	// memory in front of RocksDB (rocks.LogCache).
	LogCacheBytes int
	// NodeLogCacheBytes bounds the log caches of all the node's groups
	// together: each holds at most an equal share of it (and at most
	// LogCacheBytes), so that their memory is bounded by this budget, not
	// by the number of groups the node hosts (rocks.LogCacheBudget).
	// Default 64 MiB: the whole of LogCacheBytes for up to 8 groups.
	NodeLogCacheBytes int
	// SnapshotThreshold and SnapshotInterval decide when a group snapshots;
	// TrailingLogs is how many entries stay after one.
	SnapshotThreshold uint64
	SnapshotInterval  time.Duration
	TrailingLogs      uint64
	// SnapshotBytesPerSecond bounds the rate at which this node sends
	// snapshots to followers (replica moves, lagging followers), all groups
	// together, so that they do not starve client traffic; 0 means no
	// limit. Concurrent sends share it; each must still get well over
	// 100 KiB/s, because the transport gives up on a 1 MiB chunk that makes
	// no progress for its Timeout (10 s).
	SnapshotBytesPerSecond int64

	// Proposal batching: client writes to one group are packed into one
	// raft entry, up to MaxBatchOps ops or MaxBatchBytes bytes, with at
	// most MaxInflight entries of a group in flight at once.
	MaxBatchOps   int
	MaxBatchBytes int
	MaxInflight   int

	// ReconcileInterval is how often a group leader makes the group's
	// membership match the member list in metadata-0.
	ReconcileInterval time.Duration
	// HashCheckInterval is how often (on average) a group's leader has
	// every replica digest its state at one index and compares the
	// digests, fencing a replica whose state differs from the majority's
	// (hashcheck.go); 0 turns the checks off.
	HashCheckInterval time.Duration
	// FeatureLevel is the feature level this node reports (sm/version.go):
	// at most, and by default (0), its binary's sm.FeatureLevel. Starting
	// freshly upgraded nodes one below keeps the cluster version where it
	// is, so that going back to the previous release stays possible until
	// the upgrade is declared done (restart them without it); a node whose
	// level is below the recorded cluster version refuses to start. A node
	// below its binary's level applies only what that level knows and
	// halts on the rest, as the older release would (sm.Config.Level).
	FeatureLevel uint32
	// QuotaBytes is how much this node may store (RocksDB's SST files
	// and memtables, all groups) before it raises the cluster's NOSPACE
	// alarm (alarm.go); 0 (the default) turns the quota off: a sane
	// size depends on the disk, which MinFreeBytes watches.
	QuotaBytes int64
	// MinFreeBytes is the free space of the data directory's filesystem
	// below which this node raises the NOSPACE alarm, so that RocksDB
	// never meets a full disk; 0 turns it off. Default 256 MiB: room for
	// a compaction's output and the raft logs of in-flight writes.
	MinFreeBytes int64
	// ShutdownTimeout bounds an orderly Close.
	ShutdownTimeout time.Duration

	// Clock tells the time. The leader stamps every entry it proposes with
	// it, and expiry (sessions, wills, leases) is decided from those
	// stamps; tests inject a clock they move by hand. Default: the system
	// clock.
	Clock Clock
	// TimerInterval is how often a data group's leader looks for expired
	// sessions, due wills and expired leases.
	TimerInterval time.Duration
	// EventRetention is how long the change log (watch history) keeps
	// events; EventRetentionMin revisions are kept regardless.
	EventRetention    time.Duration
	EventRetentionMin uint64

	// Metrics is the registry the node's figures go into (served on
	// /metrics); nil: the node makes its own. Register the public API's
	// (rpc/server.MetricsOptions) and the controller's in the same one.
	Metrics *prometheus.Registry
	// MetricsListen, when set, is where the node serves /metrics, /livez
	// and /readyz over HTTP; MetricsListener, when set, is used instead
	// (tests pass one bound to port 0).
	MetricsListen   string
	MetricsListener net.Listener

	// ServerOptions are added to the node's gRPC server (the public API's
	// codec and interceptors: rpc/server.ServerOptions).
	ServerOptions []grpc.ServerOption

	Logger *slog.Logger
	// Dialer, when set, makes every node-to-node connection (tests inject
	// faults through it).
	Dialer func(ctx context.Context, addr string) (net.Conn, error)
	// TLS, when set, turns on mutual TLS for every connection of the
	// node's gRPC port; raft and peer calls are admitted only from a
	// certificate naming a member, and the node's ID comes from its own
	// certificate. Nil (the default) is plaintext.
	TLS *transport.CertReloader
}

// DefaultConfig returns a configuration with every default set.
func DefaultConfig() Config {
	return Config{
		ListenAddr:                "127.0.0.1:7001",
		MaxConnections:            10000,
		Rocks:                     rocks.DefaultOptions(""),
		HeartbeatTimeout:          time.Second,
		ElectionTimeout:           time.Second,
		LeaderLeaseTimeout:        time.Second,
		LeaderHeartbeatTimeout:    2 * time.Second,
		CommitTimeout:             250 * time.Millisecond,
		MaxAppendEntries:          64,
		LogCacheBytes:             8 << 20,
		NodeLogCacheBytes:         64 << 20,
		SnapshotThreshold:         8192,
		SnapshotInterval:          2 * time.Minute,
		TrailingLogs:              10240,
		MaxBatchOps:               1024,
		MaxBatchBytes:             4 << 20,
		MaxInflight:               4,
		ReplicationFactor:         DefaultReplicationFactor,
		ReportInterval:            time.Second,
		MetadataReplicationFactor: DefaultMetadataReplicationFactor,
		ReconcileInterval:         2 * time.Second,
		HashCheckInterval:         5 * time.Minute,
		ShutdownTimeout:           10 * time.Second,
		MinFreeBytes:              256 << 20,
		TimerInterval:             250 * time.Millisecond,
		EventRetention:            10 * time.Minute,
		EventRetentionMin:         10000,
	}
}

// Clock tells the time.
type Clock interface {
	Now() time.Time
}

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

// ParsePeers parses "id=host:port,id=host:port".
func ParsePeers(s string) ([]Peer, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out []Peer
	for i, part := range strings.Split(s, ",") {
		id, addr, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || id == "" || addr == "" {
			return nil, fmt.Errorf("metanode: initial cluster entry %d %q: want id=host:port", i, part)
		}
		out = append(out, Peer{ID: id, Addr: addr})
	}
	return out, nil
}

// DeriveClusterID names a cluster after its initial members, so that every
// initial member computes the same id from the same flag.
func DeriveClusterID(peers []Peer) string {
	ps := slices.Clone(peers)
	sort.Slice(ps, func(i, j int) bool { return ps[i].ID < ps[j].ID })
	h := fnv.New64a()
	for _, p := range ps {
		fmt.Fprintf(h, "%s=%s,", p.ID, p.Addr)
	}
	return fmt.Sprintf("meta-%016x", h.Sum64())
}

// Validate reports every problem at once, naming the field. It does not
// change the configuration.
func (c Config) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf("metanode: "+format, args...)) }
	if c.ID == "" {
		add("ID: required")
	} else if len(c.ID) > metapb.MaxMemberIDBytes || strings.ContainsAny(c.ID, "=, \t\n") {
		add("ID %q: at most %d bytes, no '=', ',' or spaces", c.ID, metapb.MaxMemberIDBytes)
	}
	if c.DataDir == "" {
		add("DataDir: required")
	}
	if c.MaxConnections < 0 {
		add("MaxConnections (%d): must not be negative", c.MaxConnections)
	}
	if c.Listener == nil && c.ListenAddr == "" {
		add("ListenAddr: required")
	}
	seen := map[string]bool{}
	self := false
	for i, p := range c.InitialCluster {
		if p.ID == "" || p.Addr == "" {
			add("InitialCluster[%d]: id and address required", i)
		}
		if seen[p.ID] {
			add("InitialCluster: duplicate id %q", p.ID)
		}
		seen[p.ID] = true
		if p.ID == c.ID {
			self = true
		}
	}
	if len(c.InitialCluster) > 0 && !self {
		add("InitialCluster: does not include this node's ID %q", c.ID)
	}
	if len(c.InitialCluster) > 0 && len(c.Join) > 0 {
		add("InitialCluster and Join: give one, not both")
	}
	if c.OffsetGroups < 0 || c.OffsetGroups > 64 {
		add("OffsetGroups: %d out of range 0..64", c.OffsetGroups)
	}
	if c.DataGroups < 0 || c.DataGroups > 64 {
		add("DataGroups: %d out of range 0..64", c.DataGroups)
	}
	if c.ReplicationFactor < 1 || c.ReplicationFactor > 7 {
		add("ReplicationFactor: %d out of range 1..7", c.ReplicationFactor)
	}
	if c.MetadataReplicationFactor != 1 && c.MetadataReplicationFactor != 3 && c.MetadataReplicationFactor != 5 {
		add("MetadataReplicationFactor: %d is not 1, 3 or 5", c.MetadataReplicationFactor)
	}
	if len(c.Zone) > metapb.MaxNameBytes {
		add("Zone: at most %d bytes", metapb.MaxNameBytes)
	}
	if c.ReportInterval <= 0 {
		add("ReportInterval: must be positive")
	}
	if c.HeartbeatTimeout <= 0 || c.ElectionTimeout <= 0 || c.LeaderLeaseTimeout <= 0 || c.CommitTimeout <= 0 {
		add("HeartbeatTimeout, ElectionTimeout, LeaderLeaseTimeout, CommitTimeout: must be positive")
	}
	if c.LeaderLeaseTimeout > c.HeartbeatTimeout {
		add("LeaderLeaseTimeout (%s): must not exceed HeartbeatTimeout (%s)", c.LeaderLeaseTimeout, c.HeartbeatTimeout)
	}
	if every := c.leaderHeartbeatTimeout() / 5; every > c.LeaderLeaseTimeout/2 || every > c.HeartbeatTimeout/2 {
		add("LeaderHeartbeatTimeout (%s): a leader heartbeats up to every %s, more than half of LeaderLeaseTimeout (%s) or of HeartbeatTimeout (%s)",
			c.LeaderHeartbeatTimeout, every, c.LeaderLeaseTimeout, c.HeartbeatTimeout)
	}
	if c.MaxAppendEntries <= 0 || c.MaxAppendEntries > 1024 {
		add("MaxAppendEntries: %d out of range 1..1024", c.MaxAppendEntries)
	}
	if c.SnapshotThreshold == 0 || c.SnapshotInterval <= 0 {
		add("SnapshotThreshold, SnapshotInterval: must be positive")
	}
	if c.LogCacheBytes < 0 || c.NodeLogCacheBytes < 0 {
		add("LogCacheBytes, NodeLogCacheBytes: %d, %d: must not be negative", c.LogCacheBytes, c.NodeLogCacheBytes)
	}
	if c.SnapshotBytesPerSecond < 0 {
		add("SnapshotBytesPerSecond: %d is negative", c.SnapshotBytesPerSecond)
	}
	if c.MaxBatchOps <= 0 || c.MaxBatchBytes <= 0 || c.MaxInflight <= 0 {
		add("MaxBatchOps, MaxBatchBytes, MaxInflight: must be positive")
	}
	if c.TimerInterval <= 0 || c.EventRetention <= 0 {
		add("TimerInterval, EventRetention: must be positive")
	}
	if c.FeatureLevel > sm.FeatureLevel {
		add("FeatureLevel (%d): above this release's feature level %d", c.FeatureLevel, sm.FeatureLevel)
	}
	if c.QuotaBytes < 0 || c.MinFreeBytes < 0 {
		add("QuotaBytes (%d), MinFreeBytes (%d): must not be negative (0 turns each off)", c.QuotaBytes, c.MinFreeBytes)
	}
	if c.HashCheckInterval < 0 {
		add("HashCheckInterval (%s): must not be negative (0 turns hash checks off)", c.HashCheckInterval)
	}
	if c.ReconcileInterval <= 0 || c.ShutdownTimeout <= 0 {
		add("ReconcileInterval, ShutdownTimeout: must be positive")
	}
	return errors.Join(errs...)
}

// leaderHeartbeatTimeout is the heartbeat timeout a group's leader runs
// raft with: LeaderHeartbeatTimeout, but never below HeartbeatTimeout.
func (c Config) leaderHeartbeatTimeout() time.Duration {
	return max(c.LeaderHeartbeatTimeout, c.HeartbeatTimeout)
}
