package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"

	"github.com/metamq/meta/controller"
	"github.com/metamq/meta/metanode"
	"github.com/metamq/meta/rpc/metapb"
	"github.com/metamq/meta/rpc/server"
	"github.com/metamq/meta/rpc/transport"
	"github.com/metamq/meta/sm"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	if err := command().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "metanode:", err)
		os.Exit(1)
	}
}

func command() *cobra.Command {
	cfg := metanode.DefaultConfig()
	ctlCfg := controller.DefaultConfig()
	var initial, join, logLevel, logFormat, debugListen, configFile string
	var maxRequest int
	var blockCache, writeBuffer int64
	var tlsFiles transport.TLSFiles
	var tlsDir string
	var authOn bool
	var tokensFile string
	var maxWatches int
	cmd := &cobra.Command{
		Use:           "metanode",
		Short:         "Run a Meta Node: metadata, offsets and KV raft groups over one RocksDB, served on one gRPC port",
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if configFile != "" {
				if err := applyConfigFile(cmd.Flags(), configFile); err != nil {
					return err
				}
			}
			tlsCfg, err := loadTLS(tlsFiles, tlsDir)
			if err != nil {
				return err
			}
			if tlsCfg != nil {
				cfg.TLS = tlsCfg
				if cfg.ID == "" {
					cfg.ID = tlsCfg.ID() // a node's id comes from its certificate
				}
			}
			if cfg.ID == "" || cfg.DataDir == "" {
				return errors.New("--id and --data-dir are required (flags, or the keys id and data-dir of --config)")
			}
			peers, err := metanode.ParsePeers(initial)
			if err != nil {
				return err
			}
			cfg.InitialCluster = peers
			if join != "" {
				cfg.Join = strings.Split(join, ",")
			}
			cfg.Rocks.BlockCacheBytes = blockCache
			cfg.Rocks.WriteBufferBytes = writeBuffer
			logger, err := newLogger(logLevel, logFormat)
			if err != nil {
				return err
			}
			cfg.Logger = logger
			ctlCfg.Logger = logger.With("node", cfg.ID)
			if maxRequest < 64<<10 || maxRequest > 64<<20 {
				return fmt.Errorf("--max-request-bytes: %d is outside 65536..67108864", maxRequest)
			}
			auth, err := loadAuth(authOn, tokensFile, cfg.TLS != nil)
			if err != nil {
				return err
			}
			if cfg.TLS == nil {
				warnPlaintext(logger, cfg.ListenAddr)
			}
			if maxWatches < 1 {
				return fmt.Errorf("--max-watches-per-conn: %d, want at least 1", maxWatches)
			}
			return run(cfg, ctlCfg, debugListen, maxRequest, auth, server.WithMaxWatchesPerConn(maxWatches))
		},
	}
	f := cmd.Flags()
	f.StringVar(&configFile, "config", "", "YAML file of flag values, keyed by flag name (flags given on the command line win)")
	f.StringVar(&cfg.ID, "id", "", "this node's id, unique in the cluster for all time (required)")
	f.StringVar(&cfg.DataDir, "data-dir", "", "directory for RocksDB and raft snapshots (required)")
	f.StringVar(&tlsFiles.Cert, "tls-cert", "", "PEM certificate naming this member (URI SAN meta://member/<id> or CN); turns on mutual TLS with --tls-key and --tls-ca")
	f.StringVar(&tlsFiles.Key, "tls-key", "", "PEM private key of --tls-cert")
	f.StringVar(&tlsFiles.CA, "tls-ca", "", "PEM CA bundle that signs members' certificates")
	f.StringVar(&tlsDir, "tls-dir", "", "folder holding node.crt, node.key and ca.crt (instead of --tls-cert/--tls-key/--tls-ca)")
	f.BoolVar(&authOn, "auth", false, "require every public API call to name its caller (a client certificate meta://<admin|broker|reader>/<name>, or a bearer token of --auth-tokens) and allow it by role; needs TLS")
	f.StringVar(&tokensFile, "auth-tokens", "", "with --auth: file of bearer tokens, one a line: <role> <name> <sha256 hex of the token> (metactl auth token makes one)")
	f.StringVar(&cfg.ListenAddr, "listen", cfg.ListenAddr, "gRPC listen address (public API and raft)")
	f.StringVar(&cfg.AdvertiseAddr, "advertise", "", "address peers and clients use to reach this node (default --listen)")
	f.StringVar(&initial, "initial-cluster", "", "members of a new cluster: id=host:port,... (this node included)")
	f.StringVar(&join, "join", "", "addresses of members of an existing cluster to join, comma separated")
	f.StringVar(&cfg.ClusterID, "cluster-id", "", "name of a new cluster (default: derived from --initial-cluster)")
	f.IntVar(&cfg.OffsetGroups, "offset-groups", 0, "number of offset groups of a new cluster (default 1; must match an existing cluster)")
	f.IntVar(&cfg.DataGroups, "data-groups", 0, "number of data groups of a new cluster (default 1; must match an existing cluster)")
	f.IntVar(&cfg.ReplicationFactor, "replication-factor", cfg.ReplicationFactor, "replicas of each offset and data group of a new cluster (recorded in it)")
	f.IntVar(&cfg.MetadataReplicationFactor, "metadata-replication-factor", cfg.MetadataReplicationFactor, "replicas of metadata-0 of a new cluster: 1, 3 or 5 (recorded in it)")
	f.StringVar(&cfg.Zone, "zone", "", "this node's failure-domain label: replicas of a group are spread over zones when there are enough")
	f.DurationVar(&ctlCfg.DeadNodeTimeout, "dead-node-timeout", ctlCfg.DeadNodeTimeout, "a node silent this long is dead: the controller re-creates its replicas on other nodes")
	f.IntVar(&ctlCfg.MaxReplicaMoves, "max-replica-moves", ctlCfg.MaxReplicaMoves, "replica moves under way at once at most (and one per node)")
	f.Uint64Var(&ctlCfg.SplitBytes, "split-bytes", ctlCfg.SplitBytes, "the controller splits a data or offset group larger than this many bytes (0: never by size)")
	f.Float64Var(&ctlCfg.SplitEntriesPerSec, "split-entries-per-sec", ctlCfg.SplitEntriesPerSec, "the controller splits a data or offset group whose leader applies more raft entries a second than this for --split-load-for (0: never by load)")
	f.DurationVar(&ctlCfg.SplitLoadFor, "split-load-for", ctlCfg.SplitLoadFor, "how long a group must stay above --split-entries-per-sec before it splits")
	f.DurationVar(&ctlCfg.SplitCooldown, "split-cooldown", ctlCfg.SplitCooldown, "a group split automatically (and its new group) is not split again for this long; a new controller waits this long before its first automatic split")
	f.IntVar(&ctlCfg.SplitMaxGroups, "split-max-groups", ctlCfg.SplitMaxGroups, "automatic splits stop when a kind has this many groups (manual splits are not limited)")
	f.Int64Var(&blockCache, "block-cache", cfg.Rocks.BlockCacheBytes, "RocksDB block cache bytes (shared by all groups; bounds read memory)")
	f.Int64Var(&writeBuffer, "write-buffer", cfg.Rocks.WriteBufferBytes, "RocksDB memtable budget bytes for the whole node")
	f.DurationVar(&cfg.HeartbeatTimeout, "heartbeat-timeout", cfg.HeartbeatTimeout, "raft heartbeat timeout")
	f.DurationVar(&cfg.ElectionTimeout, "election-timeout", cfg.ElectionTimeout, "raft election timeout")
	f.DurationVar(&cfg.LeaderLeaseTimeout, "leader-lease-timeout", cfg.LeaderLeaseTimeout, "raft leader lease timeout: a leader that has not heard from a quorum this long steps down")
	f.DurationVar(&cfg.LeaderHeartbeatTimeout, "leader-heartbeat-timeout", cfg.LeaderHeartbeatTimeout, "the raft heartbeat timeout a group's leader runs with (followers keep --heartbeat-timeout): it heartbeats each follower every tenth to fifth of it; raise it to spend less CPU on idle groups")
	f.Int64Var(&cfg.SnapshotBytesPerSecond, "snapshot-rate", 0, "bytes per second all snapshot sends of this node may take together (0: no limit), so moves do not starve client traffic")
	f.DurationVar(&cfg.HashCheckInterval, "hash-check-interval", cfg.HashCheckInterval, "how often (on average) each group's leader has its replicas digest their state at one index and fences a replica that differs from the majority (CORRUPT); 0 turns the checks off")
	f.Uint32Var(&cfg.FeatureLevel, "feature-level", 0, fmt.Sprintf("the feature level this node reports (default, 0: its release's, %d): one below keeps the cluster version, and a way back to the previous release, until every node runs without it; a node below the cluster version refuses to start", sm.FeatureLevel))
	f.Int64Var(&cfg.QuotaBytes, "quota-bytes", cfg.QuotaBytes, "bytes this node may store (RocksDB SST files and memtables) before it raises the cluster's NOSPACE alarm: writes that take space are refused (NOSPACE, ResourceExhausted) until an admin clears it (metactl alarm disarm); 0 turns the quota off")
	f.Int64Var(&cfg.MinFreeBytes, "min-free-bytes", cfg.MinFreeBytes, "free bytes on the data directory's filesystem below which this node raises the NOSPACE alarm, so that RocksDB never meets a full disk; 0 turns it off")
	f.DurationVar(&cfg.CommitTimeout, "commit-timeout", cfg.CommitTimeout, "how often an idle group's leader sends followers the commit index (each send costs CPU in every group)")
	f.Uint64Var(&cfg.SnapshotThreshold, "snapshot-threshold", cfg.SnapshotThreshold, "raft entries between snapshots")
	f.Uint64Var(&cfg.TrailingLogs, "trailing-logs", cfg.TrailingLogs, "raft entries kept after a snapshot")
	f.DurationVar(&cfg.SnapshotInterval, "snapshot-interval", cfg.SnapshotInterval, "how often raft checks whether to snapshot (--snapshot-threshold)")
	f.IntVar(&cfg.LogCacheBytes, "log-cache", cfg.LogCacheBytes, "bytes of recent raft log entries kept in memory per group, at most")
	f.IntVar(&cfg.NodeLogCacheBytes, "node-log-cache", cfg.NodeLogCacheBytes, "bytes of recent raft log entries kept in memory by all the node's groups together: each group holds at most an equal share (and at most --log-cache)")
	f.IntVar(&cfg.MaxBatchOps, "max-batch-ops", cfg.MaxBatchOps, "client operations packed into one raft entry at most")
	f.IntVar(&cfg.MaxInflight, "max-inflight", cfg.MaxInflight, "raft entries in flight per group at most")
	f.DurationVar(&ctlCfg.SpreadInterval, "spread-interval", ctlCfg.SpreadInterval, "how often the controller spreads group leaders over nodes, first one interval after it becomes active (0: never)")
	f.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", cfg.ShutdownTimeout, "bound on an orderly shutdown")
	f.DurationVar(&ctlCfg.HeartbeatInterval, "broker-heartbeat-interval", ctlCfg.HeartbeatInterval, "how often brokers are told to heartbeat")
	f.DurationVar(&ctlCfg.HeartbeatTimeout, "broker-session-timeout", ctlCfg.HeartbeatTimeout, "a broker silent this long is declared down")
	f.DurationVar(&ctlCfg.RebalanceInterval, "connector-rebalance-interval", ctlCfg.RebalanceInterval, "how often connectors are rebalanced")
	f.IntVar(&ctlCfg.MaxMoves, "connector-max-moves", ctlCfg.MaxMoves, "connectors moved between live brokers per rebalance at most")
	f.IntVar(&cfg.MaxConnections, "max-connections", cfg.MaxConnections, "connections the gRPC port holds at once at most (peers and clients; 0: no bound); one more waits to be accepted")
	f.IntVar(&maxWatches, "max-watches-per-conn", server.DefaultMaxWatchesPerConn, "watches one client connection may hold open at once; one more is refused (OVERLOADED, retryable)")
	f.IntVar(&maxRequest, "max-request-bytes", server.DefaultMaxRequestBytes, "largest public API request accepted; a larger one is refused (InvalidArgument) without being decoded")
	f.StringVar(&cfg.MetricsListen, "metrics-listen", "", "serve Prometheus /metrics, /livez and /readyz on http://ADDR (empty: off)")
	f.StringVar(&debugListen, "debug-listen", "", "serve Go's pprof profiles on http://ADDR/debug/pprof/ (empty: off; bind it to loopback)")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	f.StringVar(&logFormat, "log-format", "text", "text or json")
	cmd.Version = version
	cmd.AddCommand(restoreCommand(), recoverCommand())
	return cmd
}

func newLogger(level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("--log-format: %q is not text or json", format)
}

// serveDebug serves net/http/pprof on addr until the process ends.
func serveDebug(addr string, log *slog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("--debug-listen: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Warn("debug listener stopped", "err", err)
		}
	}()
	log.Info("pprof served", "addr", ln.Addr().String())
	return nil
}

func run(cfg metanode.Config, ctlCfg controller.Config, debugListen string, maxRequest int, auth *server.Auth, srvOpts ...server.Option) error {
	if debugListen != "" {
		if err := serveDebug(debugListen, cfg.Logger); err != nil {
			return err
		}
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	cfg.Metrics = reg
	cfg.ServerOptions = server.MetricsOptions(reg)
	var self atomic.Pointer[metanode.Node]
	if auth != nil {
		auth.IsMember = func(id string) bool {
			n := self.Load()
			return n != nil && n.PeerAllowed(id)
		}
		cfg.ServerOptions = append(cfg.ServerOptions, server.AuthOptions(auth)...)
	}
	cfg.ServerOptions = append(cfg.ServerOptions, server.ServerOptions(maxRequest)...)
	node, err := metanode.New(cfg)
	if err != nil {
		return err
	}
	self.Store(node)
	ctl, err := controller.New(ctlCfg, node)
	if err != nil {
		return err
	}
	node.RunWhileLeading(metapb.MetadataGroup, ctl.Run)
	reg.MustRegister(ctl.Collector())
	if cfg.TLS != nil {
		srvOpts = append(srvOpts, server.WithTransportCredentials(cfg.TLS.ClientCredentials()))
	}
	srv := server.Register(node.GRPCServer(), node, version, srvOpts...)
	defer srv.Close()
	server.RegisterController(node.GRPCServer(), srv, node, ctl)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := node.Start(ctx); err != nil {
		if errors.Is(err, context.Canceled) {
			return errors.New("interrupted before the cluster formed")
		}
		return err
	}
	var failed error
	select {
	case <-ctx.Done():
		cfg.Logger.Info("signal received; shutting down", "timeout", cfg.ShutdownTimeout)
	case failed = <-node.Failed():
		cfg.Logger.Error("shutting down: this node cannot go on running", "err", failed, "timeout", cfg.ShutdownTimeout)
	}
	stop()
	start := time.Now()
	if err := node.Close(); err != nil {
		return errors.Join(failed, fmt.Errorf("shutdown: %w", err))
	}
	cfg.Logger.Info("shutdown complete", "took", time.Since(start).Round(time.Millisecond))
	return failed
}
