package metanode

import (
	"context"
	"sync"
	"time"

	"github.com/metamq/meta/sm"
	"github.com/metamq/meta/sm/logpb"
)

// FSM returns the state machine of a group on this node, for tests.
func (n *Node) FSM(group string) *sm.Machine {
	g, err := n.group(group)
	if err != nil {
		return nil
	}
	return g.fsm
}

// DamageForTest writes key (raw, in the state's user range) into this
// node's replica of group behind raft's back, as a damaged file or a bug
// would, for tests of the hash checks.
func (n *Node) DamageForTest(group string, key, value []byte) error {
	sp, err := n.db.Data(group)
	if err != nil {
		return err
	}
	return sp.Put(key, value, false)
}

// CompactEventsForTest runs one round of change-log compaction of group on
// this node (its leader) and returns how many entries it proposed.
func (n *Node) CompactEventsForTest(ctx context.Context, group string) (int, error) {
	g, err := n.group(group)
	if err != nil {
		return 0, err
	}
	proposed, _, _ := g.compactEvents(ctx)
	return proposed, nil
}

// SetCompactChunkForTest sets how many revisions one compaction entry
// covers, until the test ends. Call it before the cluster starts.
func SetCompactChunkForTest(t interface{ Cleanup(func()) }, n uint64) {
	saved := compactChunk
	compactChunk = n
	t.Cleanup(func() { compactChunk = saved })
}

// CompactChunksPerRound is how many compaction entries one round proposes
// at the most.
const CompactChunksPerRound = compactChunksPerRound

// SetRecoverFault makes Recover fail with f's error before recovering a
// group (an interruption), until the returned function is called.
func SetRecoverFault(f func(group string) error) (restore func()) {
	recoverFault = f
	return func() { recoverFault = nil }
}

// SetQuotaBytesForTest changes the node's quota while it runs.
func (n *Node) SetQuotaBytesForTest(v int64) { n.quota.Store(v) }

// StoredBytesForTest is what the quota is measured on.
func (n *Node) StoredBytesForTest() int64 {
	s := n.db.Stats()
	return int64(s.TotalSSTBytes + s.MemTableBytes)
}

// RaftHeartbeatTimeoutForTest returns the heartbeat timeout group's raft
// runs with on this node.
func (n *Node) RaftHeartbeatTimeoutForTest(group string) (time.Duration, error) {
	g, err := n.group(group)
	if err != nil {
		return 0, err
	}
	return g.raft.ReloadableConfig().HeartbeatTimeout, nil
}

// FlushForTest writes this node's memtables to SST files.
func (n *Node) FlushForTest() error { return n.db.Flush() }

// SetSplitHook sets the function every split step driven in this process
// runs first (nil: none), for tests of crashes between a split's phases.
func SetSplitHook(f func(ctx context.Context, group string, phase logpb.SplitPhase)) {
	if f == nil {
		splitHook.Store(nil)
		return
	}
	splitHook.Store(&f)
}

// HoldClusterInit holds back the writing of the cluster record by
// metadata-0's leaders until release is called (at the latest when the
// test ends).
func HoldClusterInit(t interface{ Cleanup(func()) }) (release func()) {
	ch := make(chan struct{})
	clusterInitHold.Store(&ch)
	var once sync.Once
	release = func() { once.Do(func() { close(ch) }) }
	t.Cleanup(func() { release(); clusterInitHold.Store(nil) })
	return release
}

// SetSplitFenceHook sets the function a split step runs between reading
// the range's base digest and proposing its release (nil: none).
func SetSplitFenceHook(f func(ctx context.Context, group string)) {
	if f == nil {
		splitFenceHook.Store(nil)
		return
	}
	splitFenceHook.Store(&f)
}

// SetSplitCopyHook sets the function that sees (and may change) each
// chunk of a split's bulk copy before the child ingests it (nil: none).
func SetSplitCopyHook(f func(child string, pairs []*logpb.RawPair)) {
	if f == nil {
		splitCopyHook.Store(nil)
		return
	}
	splitCopyHook.Store(&f)
}

// ReportSizesEvery is how many reports share one reading of the sizes.
const ReportSizesEvery = sizesEvery

// ReportState is what the report loop keeps between reports.
type ReportState = reportState

// NewReportStateForTest is the report loop's state before its first
// report.
func NewReportStateForTest() *ReportState {
	return &reportState{applied: map[string]uint64{}, bytes: map[string]uint64{}}
}

// ReportBytesForTest makes the next report and returns its size per group.
func (n *Node) ReportBytesForTest(st *ReportState) map[string]uint64 {
	out := map[string]uint64{}
	for _, rr := range n.report(st, time.Second).Replicas {
		out[rr.Group] = rr.Bytes
	}
	return out
}

// LogCacheShareForTest is what each of the node's raft log caches may hold
// now (its share of Config.NodeLogCacheBytes).
func (n *Node) LogCacheShareForTest() int { return n.env.logCaches.Share() }
