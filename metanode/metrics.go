package metanode

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/metamq/meta/rocks"
	"github.com/metamq/meta/rpc/metapb"
)

// Metrics and health. Every figure of a node is in its registry
// (Config.Metrics): the per-group and RocksDB figures are read when
// scraped (collector), the rest are counted where they happen (metrics).
// Labels are bounded: group names and nothing finer (never keys, clients
// or brokers).

// maxReadyLag is how many committed entries a replica may have left to
// apply and still call itself caught up (ready).
const maxReadyLag = 1000

// metrics are the figures counted as they happen.
type metrics struct {
	leaderChanges *prometheus.CounterVec   // group
	batchOps      *prometheus.HistogramVec // group
	raftApply     *prometheus.HistogramVec // group
	proposeFailed *prometheus.CounterVec   // group
	replicaGC     *prometheus.CounterVec   // group
	hashChecks    *prometheus.CounterVec   // group, result
}

func newMetrics(reg prometheus.Registerer, n *Node) *metrics {
	m := &metrics{
		leaderChanges: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meta_group_leader_changes_total",
			Help: "Times this replica saw a new leader of the group (a new leader id, or the same one in a new term)."}, []string{"group"}),
		batchOps: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "meta_group_batch_ops",
			Help:    "Client operations packed into one raft entry by this node as the group's leader.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 12)}, []string{"group"}),
		raftApply: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "meta_group_apply_seconds",
			Help:    "From handing an entry to raft until it is applied here as leader: log write, replication, commit and apply.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}, []string{"group"}),
		proposeFailed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meta_group_apply_failures_total",
			Help: "Entries raft did not apply as this node proposed them (leadership lost, shutdown), by group."}, []string{"group"}),
		replicaGC: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meta_group_replicas_deleted_total",
			Help: "Replicas of the group this node deleted once the group's leader confirmed the node had left its configuration (replica garbage collection)."}, []string{"group"}),
		hashChecks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meta_hash_checks_total",
			Help: "Hash checks this node ran as the group's leader, by result: ok, mismatch (a replica's state differed from the majority's: the CORRUPT alarm; it was fenced), undecided (digests differ, none has a majority), incomplete, skipped (a voter of an older release)."}, []string{"group", "result"}),
	}
	reg.MustRegister(m.leaderChanges, m.batchOps, m.raftApply, m.proposeFailed, m.replicaGC, m.hashChecks, collector{n})
	return m
}

// collector reads the per-group, storage and readiness figures at scrape
// time.
type collector struct{ n *Node }

var (
	descTerm         = prometheus.NewDesc("meta_group_term", "Current raft term of the group on this replica.", []string{"group"}, nil)
	descLeader       = prometheus.NewDesc("meta_group_is_leader", "1 when this replica leads the group.", []string{"group"}, nil)
	descHasLead      = prometheus.NewDesc("meta_group_has_leader", "1 when this replica knows a leader of the group.", []string{"group"}, nil)
	descCommit       = prometheus.NewDesc("meta_group_commit_index", "Raft commit index known to this replica.", []string{"group"}, nil)
	descApplied      = prometheus.NewDesc("meta_group_applied_index", "Index the state machine has applied on this replica.", []string{"group"}, nil)
	descLastLog      = prometheus.NewDesc("meta_group_last_log_index", "Last index in this replica's raft log.", []string{"group"}, nil)
	descSnapshot     = prometheus.NewDesc("meta_group_snapshot_index", "Index of this replica's latest raft snapshot.", []string{"group"}, nil)
	descHalted       = prometheus.NewDesc("meta_group_halted", "1 when this replica stopped applying: an entry it cannot apply, a storage failure, a fence after a hash check (sm/halt.go; /readyz names it).", []string{"group"}, nil)
	descQueue        = prometheus.NewDesc("meta_group_proposal_queue", "Client operations waiting to be packed into a raft entry.", []string{"group"}, nil)
	descInflight     = prometheus.NewDesc("meta_group_entries_inflight", "Raft entries this node has proposed and not yet seen applied.", []string{"group"}, nil)
	descSnapExports  = prometheus.NewDesc("meta_group_snapshot_exports", "Snapshots this replica built from its RocksDB files to send (to a lagging follower or a new replica): count and seconds spent building them.", []string{"group"}, nil)
	descSnapExportB  = prometheus.NewDesc("meta_group_snapshot_export_bytes_total", "Bytes of the snapshots this replica built to send.", []string{"group"}, nil)
	descSnapRestores = prometheus.NewDesc("meta_group_snapshot_restores", "Snapshots this replica installed: count and seconds spent installing them.", []string{"group"}, nil)
	descSnapRestoreB = prometheus.NewDesc("meta_group_snapshot_restore_bytes_total", "Bytes of the snapshots this replica installed.", []string{"group"}, nil)
	descSnapRefused  = prometheus.NewDesc("meta_group_snapshot_restores_refused_total", "Snapshots this replica refused to install (older than its state, corrupt, or of another kind), its state left as it was.", []string{"group"}, nil)
	descClusterVer   = prometheus.NewDesc("meta_cluster_version", "The cluster version as this node's replica of metadata-0 records it: the feature level every member runs at least (sm/version.go); operations that need a higher one are refused (CLUSTER_VERSION).", nil, nil)
	descFeatureLvl   = prometheus.NewDesc("meta_node_feature_level", "The feature level this node reports (its release's, or --feature-level).", nil, nil)
	descGroups       = prometheus.NewDesc("meta_node_groups_hosted", "Groups with a replica on this node.", nil, nil)
	descStorage      = prometheus.NewDesc("meta_storage_failed", "1 once RocksDB refused a write of the raft log or stable state (a damaged table file met by a compaction, a disk it cannot write): every group stopped on this node until its copy is replaced (/readyz says why).", nil, nil)
	descReady        = prometheus.NewDesc("meta_node_ready", "1 when the node is ready (/readyz): every group it hosts has a leader, it is caught up, storage is healthy.", nil, nil)
	descSplitStuck   = prometheus.NewDesc("meta_split_stuck", "1 for each split that gave up, by parent group, as this node's replica of metadata-0 records it: the new group's copy was refused at its acquire after every redo; the moving range stays fenced (its writes refused) until an operator acts (metactl group list shows why).", []string{"group"}, nil)
	descAlarm        = prometheus.NewDesc("meta_alarm", "1 for each alarm raised in the cluster, by alarm and the member that raised it, as this node's replica of metadata-0 records it (NOSPACE: writes that take space are refused; metactl alarm list, disarm).", []string{"alarm", "member"}, nil)
)

// rocksFigure is one RocksDB figure: how it is described and exported, and
// how it is read from the database's stats.
type rocksFigure struct {
	desc *prometheus.Desc
	kind prometheus.ValueType
	of   func(rocks.Stats) float64
}

func rocksGauge(name, help string, of func(rocks.Stats) float64) rocksFigure {
	return rocksFigure{prometheus.NewDesc(name, help, nil, nil), prometheus.GaugeValue, of}
}

func rocksCounter(name, help string, of func(rocks.Stats) float64) rocksFigure {
	return rocksFigure{prometheus.NewDesc(name, help, nil, nil), prometheus.CounterValue, of}
}

// rocksFigures are the RocksDB figures, in the order they are collected.
var rocksFigures = []rocksFigure{
	rocksGauge("meta_rocksdb_live_sst_bytes", "Bytes of live SST files, all column families.",
		func(s rocks.Stats) float64 { return float64(s.LiveSSTBytes) }),
	rocksGauge("meta_rocksdb_sst_bytes", "Bytes of all SST files, obsolete ones not yet deleted included.",
		func(s rocks.Stats) float64 { return float64(s.TotalSSTBytes) }),
	rocksGauge("meta_rocksdb_pending_compaction_bytes", "RocksDB's estimate of the bytes compaction must rewrite.",
		func(s rocks.Stats) float64 { return float64(s.PendingCompactionBytes) }),
	rocksGauge("meta_rocksdb_running_compactions", "Compactions running.",
		func(s rocks.Stats) float64 { return float64(s.RunningCompactions) }),
	rocksGauge("meta_rocksdb_memtable_bytes", "Bytes in memtables, all column families.",
		func(s rocks.Stats) float64 { return float64(s.MemTableBytes) }),
	rocksGauge("meta_rocksdb_write_stopped", "1 while RocksDB stops writes (a stall).",
		func(s rocks.Stats) float64 { return b2f(s.WriteStopped) }),
	rocksGauge("meta_rocksdb_delayed_write_rate_bytes", "Rate writes are throttled to; 0 when not throttled.",
		func(s rocks.Stats) float64 { return float64(s.DelayedWriteRate) }),
	rocksGauge("meta_rocksdb_background_errors", "Background (flush, compaction) errors since the node started.",
		func(s rocks.Stats) float64 { return float64(s.BackgroundErrors) }),
	rocksGauge("meta_rocksdb_block_cache_usage_bytes", "Bytes held in the shared block cache.",
		func(s rocks.Stats) float64 { return float64(s.BlockCacheUsage) }),
	rocksGauge("meta_rocksdb_block_cache_capacity_bytes", "Capacity of the shared block cache.",
		func(s rocks.Stats) float64 { return float64(s.BlockCacheCapacity) }),
	rocksCounter("meta_rocksdb_block_cache_hits_total", "Block cache hits.",
		func(s rocks.Stats) float64 { return float64(s.BlockCacheHits) }),
	rocksCounter("meta_rocksdb_block_cache_misses_total", "Block cache misses.",
		func(s rocks.Stats) float64 { return float64(s.BlockCacheMisses) }),
	rocksCounter("meta_rocksdb_stall_seconds_total", "Time writes waited in RocksDB stalls.",
		func(s rocks.Stats) float64 { return float64(s.StallMicros) / 1e6 }),
	rocksCounter("meta_rocksdb_written_bytes_total", "Bytes written to RocksDB.",
		func(s rocks.Stats) float64 { return float64(s.BytesWritten) }),
	rocksCounter("meta_rocksdb_read_bytes_total", "Bytes read from RocksDB.",
		func(s rocks.Stats) float64 { return float64(s.BytesRead) }),
}

func (collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descTerm, descLeader, descHasLead, descCommit, descApplied, descLastLog,
		descSnapshot, descHalted, descAlarm, descSplitStuck, descQueue, descInflight, descGroups, descReady, descStorage,
		descSnapExports, descSnapExportB, descSnapRestores, descSnapRestoreB, descSnapRefused, descClusterVer, descFeatureLvl} {
		ch <- d
	}
	for _, f := range rocksFigures {
		ch <- f.desc
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	n := c.n
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	gauge(descReady, b2f(n.Ready() == nil))
	gauge(descStorage, b2f(n.storageErr.Load() != nil))
	if !n.started.Load() {
		return
	}
	for _, a := range n.Alarms() {
		gauge(descAlarm, 1, a.Alarm, a.Member)
	}
	for _, g := range n.Directory().Groups {
		if g.Split != nil && g.Split.Stuck != "" {
			gauge(descSplitStuck, 1, g.Name)
		}
	}
	groups := n.hostedGroups()
	gauge(descGroups, float64(len(groups)))
	gauge(descClusterVer, float64(n.ClusterVersion()))
	gauge(descFeatureLvl, float64(n.cfg.featureLevel()))
	for _, g := range groups {
		id, _ := g.leader()
		gauge(descTerm, float64(g.raft.CurrentTerm()), g.name)
		gauge(descLeader, b2f(g.raft.State() == raft.Leader), g.name)
		gauge(descHasLead, b2f(id != ""), g.name)
		gauge(descCommit, float64(g.raft.CommitIndex()), g.name)
		gauge(descApplied, float64(g.fsm.AppliedIndex()), g.name)
		gauge(descLastLog, float64(g.raft.LastIndex()), g.name)
		snap, _ := strconv.ParseUint(g.raft.Stats()["last_snapshot_index"], 10, 64)
		gauge(descSnapshot, float64(snap), g.name)
		gauge(descHalted, b2f(g.fsm.Halted() != nil), g.name)
		gauge(descQueue, float64(len(g.proposals)), g.name)
		gauge(descInflight, float64(len(g.inflight)), g.name)
		st := g.fsm.SnapshotStats()
		ch <- prometheus.MustNewConstSummary(descSnapExports, st.Exports, st.ExportSeconds, nil, g.name)
		ch <- prometheus.MustNewConstMetric(descSnapExportB, prometheus.CounterValue, float64(st.ExportBytes), g.name)
		ch <- prometheus.MustNewConstSummary(descSnapRestores, st.Restores, st.RestoreSeconds, nil, g.name)
		ch <- prometheus.MustNewConstMetric(descSnapRestoreB, prometheus.CounterValue, float64(st.RestoreBytes), g.name)
		ch <- prometheus.MustNewConstMetric(descSnapRefused, prometheus.CounterValue, float64(st.Refused), g.name)
	}
	s := n.db.Stats()
	for _, f := range rocksFigures {
		ch <- prometheus.MustNewConstMetric(f.desc, f.kind, f.of(s))
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Metrics returns the node's registry (Config.Metrics, or the node's own).
func (n *Node) Metrics() *prometheus.Registry { return n.reg }

// ErrNotReady is wrapped by Ready's errors.
var ErrNotReady = errors.New("metanode: not ready")

// Ready returns nil when the node is ready to serve: it has started and is
// not stopping, every group it hosts has a leader, each of its replicas
// has applied all but at most maxReadyLag of the entries it knows
// committed and has not halted (an entry it cannot apply, sm/halt.go; see
// Halted), and
// RocksDB reports no background error. Otherwise it says
// every reason.
func (n *Node) Ready() error {
	if !n.started.Load() || !n.serving.Load() {
		return fmt.Errorf("%w: not serving (starting or stopping)", ErrNotReady)
	}
	var why []string
	for _, g := range n.hostedGroups() {
		if id, _ := g.leader(); id == "" {
			why = append(why, g.name+" has no leader")
		}
		if err := g.fsm.Halted(); err != nil {
			why = append(why, err.Error())
		} else if commit, applied := g.raft.CommitIndex(), g.fsm.AppliedIndex(); commit > applied+maxReadyLag {
			why = append(why, fmt.Sprintf("%s has applied %d of %d committed entries", g.name, applied, commit))
		}
	}
	if e := n.storageErr.Load(); e != nil {
		why = append(why, fmt.Sprintf("storage failed, every group stopped: %v", *e))
	}
	if e := n.db.BackgroundErrors(); e > 0 {
		why = append(why, fmt.Sprintf("storage: %d RocksDB background errors", e))
	}
	if len(why) > 0 {
		return fmt.Errorf("%w: %s", ErrNotReady, strings.Join(why, "; "))
	}
	return nil
}

// healthLoop keeps the gRPC health service in step with Ready: the
// overall status ("") and every public service are SERVING only while the
// node is ready; the internal services (raft, peer calls) serve while the
// node runs, since a group without a leader needs them to elect one.
func (n *Node) healthLoop(ctx context.Context) {
	var last error
	first := true
	tick := time.NewTicker(n.t.healthInterval)
	defer tick.Stop()
	for {
		err := n.Ready()
		if first || (err == nil) != (last == nil) {
			st := healthpb.HealthCheckResponse_SERVING
			if err != nil {
				st = healthpb.HealthCheckResponse_NOT_SERVING
				n.log.Warn("node not ready", "why", err)
			} else if !first {
				n.log.Info("node ready")
			}
			n.setHealth(st)
		}
		first, last = false, err
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (n *Node) setHealth(st healthpb.HealthCheckResponse_ServingStatus) {
	n.hlth.SetServingStatus(metapb.HealthStarted, healthpb.HealthCheckResponse_SERVING)
	n.hlth.SetServingStatus("", st)
	for name := range n.grpc.GetServiceInfo() {
		if strings.HasPrefix(name, "meta.v1.") {
			n.hlth.SetServingStatus(name, st)
		} else if name != healthpb.Health_ServiceDesc.ServiceName {
			n.hlth.SetServingStatus(name, healthpb.HealthCheckResponse_SERVING)
		}
	}
}

// serveMetrics serves /metrics, /livez and /readyz on the metrics
// listener until Close.
func (n *Node) serveMetrics() error {
	lis := n.cfg.MetricsListener
	if lis == nil {
		var err error
		if lis, err = net.Listen("tcp", n.cfg.MetricsListen); err != nil {
			return fmt.Errorf("metanode: metrics listen: %w", err)
		}
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(n.reg, promhttp.HandlerOpts{Registry: n.reg}))
	mux.HandleFunc("/livez", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := n.Ready(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = fmt.Fprintln(w, "ok")
	})
	n.metricsSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	n.metricsAddr = lis.Addr().String()
	go func() {
		if err := n.metricsSrv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Warn("metrics listener stopped", "err", err)
		}
	}()
	n.log.Info("metrics served", "addr", n.metricsAddr, "paths", "/metrics /livez /readyz")
	return nil
}

// MetricsAddr is the address /metrics is served on ("" when off).
func (n *Node) MetricsAddr() string { return n.metricsAddr }

// Halted returns, by group, why each replica of this node stopped
// applying (a storage failure, an entry it cannot apply, a fence after a
// hash check); empty when none did.
func (n *Node) Halted() map[string]error {
	out := map[string]error{}
	for _, g := range n.hostedGroups() {
		if err := g.fsm.Halted(); err != nil {
			out[g.name] = err
		}
	}
	return out
}
