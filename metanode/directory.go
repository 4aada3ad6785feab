package metanode

import (
	"context"
	"fmt"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/metamq/meta/rpc/metapb"
	"github.com/metamq/meta/rpc/transport/raftpb"
	"github.com/metamq/meta/sm/logpb"
	"github.com/metamq/meta/sm/state"
)

// The directory. metadata-0 holds it (sm: members, group records, a
// version raised by every change); every node keeps the newest version it
// has seen in memory and follows it: a node hosting metadata-0 reads its
// own replica, any other asks a node that hosts it (the directory call,
// which waits for a change, so following costs one idle call per node,
// not polling). The directory decides what a node hosts (hosting.go) and
// what each group's leader makes its configuration (reconcile), and lets a
// node forward requests for groups it does not host (remote.go).

const callDirectory = "metanode.directory/v2"

// directoryWait is how long a directory call waits for a change.
const directoryWait = 10 * time.Second

// Directory returns the newest directory this node has seen (empty before
// the first).
func (n *Node) Directory() *state.Directory {
	if d := n.dir.Load(); d != nil {
		return d
	}
	return &state.Directory{}
}

// Router routes keys to groups by the directory this node holds (a router
// of version 0 until it has one).
func (n *Node) Router() *metapb.Router {
	if r := n.router.Load(); r != nil {
		return r
	}
	return &metapb.Router{}
}

// routerOf builds the router of a directory.
func routerOf(d *state.Directory) *metapb.Router {
	r := &metapb.Router{Version: d.Version}
	if d.Cluster != nil {
		r.K, r.M = int(d.Cluster.OffsetGroups), int(d.Cluster.DataGroups)
	}
	r.Data, r.Offset = rangeMap(d, "data"), rangeMap(d, "offset")
	return r
}

// rangeMap is the map of one kind of group in d, or nil when its groups
// have no ranges (routing by Shard).
func rangeMap(d *state.Directory, kind string) metapb.RangeMap {
	var m metapb.RangeMap
	for _, g := range d.Groups {
		if g.Kind != kind {
			continue
		}
		for _, r := range g.Ranges {
			m = append(m, metapb.Range{Lo: r.Lo, Hi: r.Hi, Group: g.Name, Version: r.Version})
		}
	}
	return m.Sorted()
}

// DirectoryChanged is closed when the directory this node holds changes.
func (n *Node) DirectoryChanged() <-chan struct{} { return n.dirChanges.wait() }

// setDirectory keeps d if it is newer than the one held.
func (n *Node) setDirectory(d *state.Directory) bool {
	for {
		cur := n.dir.Load()
		if cur != nil && cur.Version >= d.Version {
			return false
		}
		if n.dir.CompareAndSwap(cur, d) {
			n.router.Store(routerOf(d))
			n.dirChanges.notify()
			if err := n.checkLevel(d.Level(), "the directory"); err != nil {
				n.fail(err)
			}
			return true
		}
	}
}

// directoryLoop follows the directory.
func (n *Node) directoryLoop(ctx context.Context) {
	for attempt := 0; ctx.Err() == nil; {
		d, err := n.fetchDirectory(ctx, n.Directory().Version)
		if err != nil {
			attempt++
			if attempt%10 == 1 {
				n.log.Debug("fetch directory", "err", err)
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(min(time.Duration(attempt)*n.t.joinPause, n.cfg.ReconcileInterval)):
			}
			continue
		}
		attempt = 0
		n.setDirectory(d)
	}
}

// fetchDirectory returns the directory once its version is above after
// (or after directoryWait, whatever it is then), from metadata-0's leader:
// this node's replica when it leads, else by asking the leader (a replica
// that is not the leader may have been removed without knowing it, and
// would answer an old directory for ever).
func (n *Node) fetchDirectory(ctx context.Context, after uint64) (*state.Directory, error) {
	payload, err := proto.Marshal(&raftpb.DirectoryCall{After: after, WaitMs: uint32(directoryWait / time.Millisecond)})
	if err != nil {
		return nil, err
	}
	md := n.hosted(metapb.MetadataGroup)
	return onLeader(ctx, n.env, metapb.MetadataGroup, md,
		func(ctx context.Context) (*state.Directory, error) {
			return waitDirectory(ctx, md.fsm, after, directoryWait)
		},
		func(ctx context.Context, addr string) (*state.Directory, error) {
			cctx, cancel := context.WithTimeout(ctx, directoryWait+n.t.peerCall)
			defer cancel()
			out, err := n.trans.Call(cctx, addr, callDirectory, payload)
			if err != nil {
				return nil, err
			}
			pd := &logpb.Directory{}
			if err := proto.Unmarshal(out, pd); err != nil {
				return nil, fmt.Errorf("%w: directory: %v", ErrNoLeader, err)
			}
			return fromProto(pd), nil
		})
}

// waitDirectory reads the directory from a replica of metadata-0 once its
// version is above after, waiting up to wait for a change.
func waitDirectory(ctx context.Context, md state.Reader, after uint64, wait time.Duration) (*state.Directory, error) {
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		changed := md.Changed()
		d, err := md.Directory()
		if err != nil || d.Version > after {
			return d, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-t.C:
			return d, nil
		case <-changed:
		}
	}
}

// knownAddrs lists every address this node knows of other nodes: the
// directory's members, then its initial members, then the addresses it
// was told to join.
func (n *Node) knownAddrs() []string {
	var out []string
	add := func(addr string) {
		if addr != "" && addr != n.addr && !slices.Contains(out, addr) {
			out = append(out, addr)
		}
	}
	for _, m := range n.Directory().Members {
		add(m.Addr)
	}
	if n.identity != nil {
		for _, m := range n.identity.InitialMembers {
			add(m.Addr)
		}
	}
	for _, a := range n.cfg.Join {
		add(a)
	}
	return out
}

// memberAddr is a member's address in d, or "".
func memberAddr(d *state.Directory, id string) string {
	if m := d.Member(id); m != nil {
		return m.Addr
	}
	return ""
}

// serveDirectory answers a directory call on metadata-0's leader (any
// other node says where the leader is, or that it does not host it: the
// caller asks another).
func (n *Node) serveDirectory(ctx context.Context, req *raftpb.DirectoryCall) ([]byte, error) {
	md := n.hosted(metapb.MetadataGroup)
	if md == nil {
		return nil, n.notHosted(metapb.MetadataGroup)
	}
	if !md.ready() {
		return nil, md.notLeader()
	}
	wait := min(time.Duration(req.WaitMs)*time.Millisecond, directoryWait)
	d, err := waitDirectory(ctx, md.fsm, req.After, wait)
	if err != nil {
		return nil, fmt.Errorf("%w: directory: %v", ErrNoLeader, err)
	}
	return proto.Marshal(toProto(d))
}

func toProto(d *state.Directory) *logpb.Directory {
	return &logpb.Directory{Version: d.Version, Cluster: d.Cluster, Members: d.Members, Groups: d.Groups, ClusterVersion: d.ClusterVersion, Alarms: d.Alarms}
}

func fromProto(d *logpb.Directory) *state.Directory {
	return &state.Directory{Version: d.Version, Cluster: d.Cluster, Members: d.Members, Groups: d.Groups, ClusterVersion: d.ClusterVersion, Alarms: d.Alarms}
}
