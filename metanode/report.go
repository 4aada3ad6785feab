package metanode

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/metamq/meta/rpc/metapb"
	"github.com/metamq/meta/sm/logpb"
)

// CallNodeReport is the named call by which every node tells the
// controller, every ReportInterval, that it is alive and how its replicas
// stand (registered by the controller's service; see doc.go).
const CallNodeReport = "controller.node-report" // must equal rpc/server.CallNodeReport

// reportLoop sends this node's reports to the controller.
func (n *Node) reportLoop(ctx context.Context) {
	t := time.NewTicker(n.cfg.ReportInterval)
	defer t.Stop()
	prev := &reportState{applied: map[string]uint64{}, bytes: map[string]uint64{}}
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		r := n.report(prev, now.Sub(last))
		last = now
		payload, err := proto.Marshal(r)
		if err != nil {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, n.cfg.ReportInterval)
		if _, err := n.CallLeader(cctx, metapb.MetadataGroup, CallNodeReport, payload); err != nil {
			n.log.Debug("node report", "err", err)
		}
		cancel()
	}
}

// sizesEvery: a report reads RocksDB's size estimate of every hosted
// group (two properties each, through cgo) only every sizesEvery reports,
// and repeats the last one in between. Read every second, they cost an
// idle node hosting 100 groups about a fifteenth of its CPU; sizes change
// slowly and only placement by bytes uses them.
const sizesEvery = 10

// reportState is what a report keeps for the next: each group's applied
// index (for the rate) and size, and how many reports were made.
type reportState struct {
	applied, bytes map[string]uint64
	reports        int
}

// report describes this node's replicas; prev holds each group's applied
// index and size at the previous report (updated).
func (n *Node) report(prev *reportState, elapsed time.Duration) *logpb.NodeReport {
	r := &logpb.NodeReport{NodeId: n.id, Addr: n.addr, Zone: n.cfg.Zone, AtUnixNano: n.cfg.Clock.Now().UnixNano()}
	seen := map[string]bool{}
	sizes := prev.reports%sizesEvery == 0
	prev.reports++
	for _, g := range n.hostedGroups() {
		seen[g.name] = true
		applied := g.fsm.AppliedIndex()
		size, ok := prev.bytes[g.name]
		if sizes || !ok {
			size = g.bytes()
			prev.bytes[g.name] = size
		}
		rr := &logpb.ReplicaReport{Group: g.name, Leader: g.ready(), Term: g.raft.CurrentTerm(),
			AppliedIndex: applied, CommitIndex: g.raft.CommitIndex(), Bytes: size}
		if p, ok := prev.applied[g.name]; ok && applied >= p && elapsed > 0 {
			rr.OpsPerSec = float64(applied-p) / elapsed.Seconds()
		}
		prev.applied[g.name] = applied
		if rr.Leader {
			f := g.raft.GetConfiguration()
			if f.Error() == nil {
				for _, s := range f.Configuration().Servers {
					rr.Config = append(rr.Config, &logpb.Replica{Node: string(s.ID), Voter: s.Suffrage == raft.Voter})
				}
				rr.ConfigIndex = f.Index()
				rr.ConfigCommitted = f.Index() <= g.raft.CommitIndex()
			}
		}
		r.Replicas = append(r.Replicas, rr)
	}
	for name := range prev.applied {
		if !seen[name] {
			delete(prev.applied, name)
			delete(prev.bytes, name)
		}
	}
	return r
}

// bytes is RocksDB's estimate of the group's data on this node.
func (g *group) bytes() uint64 {
	sp, err := g.env.db.Data(g.name)
	if err != nil {
		return 0
	}
	var total uint64
	for _, p := range []string{"rocksdb.estimate-live-data-size", "rocksdb.cur-size-all-mem-tables"} {
		var v uint64
		if _, err := fmt.Sscan(sp.Property(p), &v); err == nil {
			total += v
		}
	}
	return total
}
