package metanode

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/metamq/meta/rpc/transport/raftpb"
	"github.com/metamq/meta/sm/logpb"
	"github.com/metamq/meta/sm/state"
)

// Hosting. A node runs a replica of every group whose record in the
// directory places one on it, and no other: a replica placed on it is
// created empty (its column families, its raft) and filled by the group's
// leader (added as a non-voter, caught up by log or snapshot); a replica no
// longer placed on it is deleted only once the group's current leader
// confirms that the node has left the group's committed configuration
// (replica garbage collection: a replica deleted earlier could be counted
// as a voter of a configuration still in force, empty).

// hosted returns the running group of that name, or nil.
func (n *Node) hosted(name string) *group {
	n.groupsMu.RLock()
	defer n.groupsMu.RUnlock()
	return n.groups[name]
}

// hostedGroups returns the groups this node runs, by name.
func (n *Node) hostedGroups() []*group {
	n.groupsMu.RLock()
	defer n.groupsMu.RUnlock()
	return slices.SortedFunc(maps.Values(n.groups), func(a, b *group) int { return strings.Compare(a.name, b.name) })
}

// openGroup creates (or opens) a group's storage and raft and registers
// it; start starts it.
func (n *Node) openGroup(name string) (*group, error) {
	if err := n.db.AddGroup(name); err != nil {
		return nil, err
	}
	g, err := newGroup(n.env, name, n.life.ctx)
	if err != nil {
		return nil, err
	}
	n.groupsMu.Lock()
	n.groups[name] = g
	n.groupsMu.Unlock()
	return g, nil
}

// hostLoop makes the replicas this node runs follow the directory: at
// once when it changes, and every ReconcileInterval (a replica waiting to
// be deleted until its group's leader confirms it left).
func (n *Node) hostLoop(ctx context.Context) {
	for {
		changed := n.dirChanges.wait()
		n.host(ctx, n.Directory())
		d := n.cfg.ReconcileInterval
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-time.After(d/2 + rand.N(d)):
		}
	}
}

// host makes the replicas this node runs follow the directory.
func (n *Node) host(ctx context.Context, d *state.Directory) {
	if d.Cluster == nil || len(d.Groups) == 0 {
		return // a cluster still forming, or one from before the directory
	}
	member := d.Member(n.id) != nil
	for _, rec := range d.Groups {
		if member && hosts(rec, n.id) && n.hosted(rec.Name) == nil {
			g, err := n.openGroup(rec.Name)
			if err != nil {
				n.log.Error("create replica", "group", rec.Name, "err", err)
				continue
			}
			if err := n.bootstrapChild(g, d, rec); err != nil {
				n.log.Error("create replica", "group", rec.Name, "err", err)
			}
			g.start()
			n.log.Info("replica created; the group's leader fills it", "group", rec.Name)
		}
	}
	for _, g := range n.hostedGroups() {
		rec := d.Group(g.name)
		if member && rec != nil && hosts(rec, n.id) {
			continue
		}
		if deleted(rec) {
			// No configuration to leave first: the group is gone whole.
			if err := n.dropGroup(ctx, g); err != nil {
				n.log.Error("delete replica", "group", g.name, "err", err)
			}
			continue
		}
		left, err := n.leftGroup(ctx, g)
		if err != nil || !left {
			continue
		}
		if err := n.dropGroup(ctx, g); err != nil {
			n.log.Error("delete replica", "group", g.name, "err", err)
		}
	}
}

// deleted reports whether a group's record says it was deleted whole (a
// split's new group, aborted before it owned anything): deleting, with no
// replicas. The record stays (group names are never reused).
func deleted(rec *logpb.GroupRecord) bool {
	return rec != nil && rec.State == logpb.GroupState_GROUP_STATE_DELETING && len(rec.Replicas) == 0
}

// leftGroup asks the group's leader whether this node has left the
// group's committed configuration.
func (n *Node) leftGroup(ctx context.Context, g *group) (bool, error) {
	if g.isLeader() {
		return false, nil // it leads: the group's reconcile hands the leadership off first
	}
	payload, err := proto.Marshal(&raftpb.ConfigurationCall{Group: g.name})
	if err != nil {
		return false, err
	}
	cctx, cancel := context.WithTimeout(ctx, n.t.peerCall)
	defer cancel()
	out, err := g.callLeader(cctx, callConfiguration, payload)
	if err != nil {
		return false, err
	}
	a := &raftpb.ConfigurationAnswer{}
	if err := proto.Unmarshal(out, a); err != nil {
		return false, err
	}
	in := slices.ContainsFunc(append(a.Voters, a.Nonvoters...), func(p *raftpb.Peer) bool { return p.Id == n.id })
	return a.Committed && !in, nil
}

const callConfiguration = "metanode.configuration/v2"

// serveConfiguration answers, on a group's leader, with its configuration
// and whether it is committed.
func (n *Node) serveConfiguration(_ context.Context, req *raftpb.ConfigurationCall) ([]byte, error) {
	g, err := n.group(req.Group)
	if err != nil {
		return nil, err
	}
	if !g.ready() {
		return nil, g.notLeader()
	}
	f := g.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, err
	}
	a := &raftpb.ConfigurationAnswer{Index: f.Index(), Committed: f.Index() <= g.raft.CommitIndex()}
	for _, s := range f.Configuration().Servers {
		p := &raftpb.Peer{Id: string(s.ID), Addr: string(s.Address)}
		if s.Suffrage == 0 { // raft.Voter
			a.Voters = append(a.Voters, p)
		} else {
			a.Nonvoters = append(a.Nonvoters, p)
		}
	}
	return proto.Marshal(a)
}

// dropGroup stops a replica and deletes its data.
func (n *Node) dropGroup(ctx context.Context, g *group) error {
	n.groupsMu.Lock()
	delete(n.groups, g.name)
	n.groupsMu.Unlock()
	sctx, cancel := context.WithTimeout(ctx, n.cfg.ShutdownTimeout)
	defer cancel()
	if err := g.stop(sctx); err != nil {
		n.log.Warn("stop replica", "group", g.name, "err", err)
	}
	g.fsm.Close()
	g.logCache.Close()
	if err := n.db.DropGroup(g.name); err != nil {
		return err
	}
	if err := os.RemoveAll(filepath.Join(n.cfg.DataDir, "snapshots", g.name)); err != nil {
		return fmt.Errorf("delete snapshots of %s: %w", g.name, err)
	}
	n.m.replicaGC.WithLabelValues(g.name).Inc()
	n.log.Info("replica deleted: this node left the group's configuration", "group", g.name)
	return nil
}
