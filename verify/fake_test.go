package verify

import (
	"context"
	"fmt"
	"hash/fnv"
	"maps"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/metamq/meta/rpc/client"
	"github.com/metamq/meta/rpc/metapb"
)

// memCluster is a tiny linearizable KV and offsets store behind the
// public API, for testing the recorder, the workloads and Run without a
// real cluster. Every call takes one lock, so it is linearizable unless a
// planted bug says otherwise. Faults (set by memNemesis) only do what a
// correct system may do: fail definitely without applying, or return an
// unknown outcome after applying or not.
type memCluster struct {
	mu    sync.Mutex // guards everything below
	nodes []string
	st    memState
	rng   *rand.Rand
	// faulty: writes fail or end unknown at random; reads fail at random.
	faulty bool
	// down: the node is killed, paused or cut off: its calls fail.
	down map[string]bool
	// stallUntil: every call of every node fails until then (a cluster
	// slow to serve again after a heal).
	stallUntil time.Time
	// Planted bugs, each enabled by a test.
	bugStale         bool // a faulted node serves reads from its stale copy
	bugUnknownAsFail bool // an unknown outcome that applied is reported failed
	bugLoseWrites    bool // healing a fault rolls state back to its start
	bugDiverge       bool // the last node reports another state hash
	bugPlacement     bool // data-0 ends with two replicas on the first node
	// placedOn lists the nodes of groups not placed on every node
	// (ListGroups says so; StateHash on another node fails).
	placedOn map[string][]string
	stale    map[string]memState
	rollback *memState
}

type memKV struct {
	value                string
	create, mod, version uint64
	offset               int64
	metadata             string
}

type memState struct {
	rev uint64
	kv  map[string]memKV
	off map[TopicPartition]memKV
}

func (s memState) clone() memState {
	return memState{rev: s.rev, kv: maps.Clone(s.kv), off: maps.Clone(s.off)}
}

func newMemCluster(seed int64, nodes ...string) *memCluster {
	return &memCluster{
		nodes: nodes,
		st:    memState{kv: map[string]memKV{}, off: map[TopicPartition]memKV{}},
		rng:   rand.New(rand.NewPCG(uint64(seed), 1)),
		down:  map[string]bool{},
	}
}

func (c *memCluster) endpoints() map[string]string {
	m := map[string]string{}
	for _, n := range c.nodes {
		m[n] = "mem://" + n
	}
	return m
}

func (c *memCluster) dial(endpoints []string, pinned bool) (Conn, error) {
	node := ""
	if pinned {
		node = strings.TrimPrefix(endpoints[0], "mem://")
	}
	return &memConn{c: c, node: node}, nil
}

// memConn is one client connection; node is where it is pinned ("" for
// any node).
type memConn struct {
	c    *memCluster
	node string
}

var _ Conn = (*memConn)(nil)

func (m *memConn) Close() error { return nil }

var errUnavailable = status.Error(codes.Unavailable, "mem: not leader")

// write runs apply under the lock, with faults: definitely failed (not
// applied), unknown (applied or not), or ok.
func (m *memConn) write(apply func(s *memState)) error {
	c := m.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.down[m.node] {
		return errUnavailable
	}
	if c.faulty {
		switch n := c.rng.IntN(10); {
		case n == 0:
			return errUnavailable
		case n <= 2:
			applied := n == 1
			if applied {
				apply(&c.st)
			}
			if applied && c.bugUnknownAsFail {
				return status.Error(codes.Aborted, "mem: planted bug: unknown reported as failure")
			}
			return fmt.Errorf("mem: leadership lost: %w", client.ErrUnknownOutcome)
		}
	}
	if time.Now().Before(c.stallUntil) {
		return errUnavailable
	}
	apply(&c.st)
	return nil
}

// read runs look under the lock on the state the node serves.
func (m *memConn) read(look func(s *memState)) error {
	c := m.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.down[m.node] || time.Now().Before(c.stallUntil) {
		return errUnavailable
	}
	if c.faulty && c.rng.IntN(10) == 0 {
		return errUnavailable
	}
	if st, ok := c.stale[m.node]; ok && c.bugStale {
		look(&st)
		return nil
	}
	look(&c.st)
	return nil
}

func pb(key string, kv memKV) *metapb.KeyValue {
	return &metapb.KeyValue{Key: []byte(key), Value: []byte(kv.value), CreateRevision: kv.create, ModRevision: kv.mod, Version: kv.version}
}

func (m *memConn) Put(ctx context.Context, req *metapb.PutRequest) (*metapb.PutResponse, error) {
	resp := &metapb.PutResponse{}
	return respond(resp, m.write(func(s *memState) {
		k := string(req.Key)
		old, ok := s.kv[k]
		s.rev++
		nv := memKV{value: string(req.Value), create: s.rev, mod: s.rev, version: 1}
		if ok {
			if req.PrevKv {
				resp.PrevKv = pb(k, old)
			}
			nv.create, nv.version = old.create, old.version+1
		}
		s.kv[k] = nv
		resp.Header = &metapb.ResponseHeader{NodeId: m.node, Revision: s.rev}
	}))
}

func (m *memConn) Get(ctx context.Context, req *metapb.GetRequest) (*metapb.GetResponse, error) {
	resp := &metapb.GetResponse{}
	return respond(resp, m.read(func(s *memState) {
		if kv, ok := s.kv[string(req.Key)]; ok {
			resp.Kv = pb(string(req.Key), kv)
		}
	}))
}

// respond is what a fake call returns: resp, unless err.
func respond[R any](resp R, err error) (R, error) {
	if err != nil {
		var none R
		return none, err
	}
	return resp, nil
}

func (m *memConn) Delete(ctx context.Context, req *metapb.DeleteRequest) (*metapb.DeleteResponse, error) {
	resp := &metapb.DeleteResponse{}
	return respond(resp, m.write(func(s *memState) {
		k := string(req.Key)
		if old, ok := s.kv[k]; ok {
			s.rev++
			resp.Deleted = true
			if req.PrevKv {
				resp.PrevKv = pb(k, old)
			}
			delete(s.kv, k)
		}
	}))
}

func (m *memConn) CompareAndSwap(ctx context.Context, req *metapb.CompareAndSwapRequest) (*metapb.CompareAndSwapResponse, error) {
	resp := &metapb.CompareAndSwapResponse{}
	return respond(resp, m.write(func(s *memState) {
		s.cas(req, resp, func() uint64 { s.rev++; return s.rev })
	}))
}

// cas applies req to s: resp.Current is the key's pair, if any; when req's
// expectation holds of it, the new value is written at the revision next
// returns (called only then) and resp.Succeeded says so. It returns the
// pair written, or false.
func (s *memState) cas(req *metapb.CompareAndSwapRequest, resp *metapb.CompareAndSwapResponse, next func() uint64) (memKV, bool) {
	k := string(req.Key)
	old, ok := s.kv[k]
	if ok {
		resp.Current = pb(k, old)
	}
	match := !ok
	if !req.ExpectAbsent {
		match = ok && old.value == string(req.ExpectedValue)
	}
	if !match {
		return memKV{}, false
	}
	rev := next()
	nv := memKV{value: string(req.NewValue), create: rev, mod: rev, version: 1}
	if ok {
		nv.create, nv.version = old.create, old.version+1
	}
	s.kv[k] = nv
	resp.Succeeded = true
	return nv, true
}

// page is one page of a fake list of m: its keys after startAfter that
// keep holds of, sorted, at most limit of them (0: 1000), and whether it
// left some out.
func page[V any](m map[string]V, startAfter string, limit uint32, keep func(string) bool) ([]string, bool) {
	var keys []string
	for k := range m {
		if k > startAfter && keep(k) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	n := int(limit)
	if n == 0 {
		n = 1000
	}
	if len(keys) > n {
		return keys[:n], true
	}
	return keys, false
}

func (m *memConn) List(ctx context.Context, req *metapb.ListRequest) (*metapb.ListResponse, error) {
	resp := &metapb.ListResponse{}
	return respond(resp, m.read(func(s *memState) {
		keys, more := page(s.kv, string(req.StartAfter), req.Limit, func(k string) bool { return strings.HasPrefix(k, string(req.Prefix)) })
		if more {
			resp.More = true
			resp.NextStartAfter = []byte(keys[len(keys)-1])
		}
		for _, k := range keys {
			resp.Kvs = append(resp.Kvs, pb(k, s.kv[k]))
		}
	}))
}

func (m *memConn) CommitOffsets(ctx context.Context, req *metapb.CommitOffsetsRequest) (*metapb.CommitOffsetsResponse, error) {
	resp := &metapb.CommitOffsetsResponse{}
	return respond(resp, m.write(func(s *memState) {
		s.rev++
		for _, o := range req.Offsets {
			s.off[TopicPartition{o.Group, o.Topic, o.Partition}] = memKV{offset: o.Offset, metadata: o.Metadata, mod: s.rev}
			resp.Revisions = append(resp.Revisions, s.rev)
		}
	}))
}

func (m *memConn) FetchOffsets(ctx context.Context, req *metapb.FetchOffsetsRequest) (*metapb.FetchOffsetsResponse, error) {
	resp := &metapb.FetchOffsetsResponse{}
	return respond(resp, m.read(func(s *memState) {
		for _, p := range req.Partitions {
			v := &metapb.OffsetValue{Partition: p, Offset: -1}
			if o, ok := s.off[TopicPartition{p.Group, p.Topic, p.Partition}]; ok {
				v.Found, v.Offset, v.Metadata, v.ModRevision = true, o.offset, o.metadata, o.mod
			}
			resp.Offsets = append(resp.Offsets, v)
		}
	}))
}

func (m *memConn) DeleteGroup(ctx context.Context, req *metapb.DeleteGroupRequest) (*metapb.DeleteGroupResponse, error) {
	resp := &metapb.DeleteGroupResponse{}
	return respond(resp, m.write(func(s *memState) {
		for tp := range s.off {
			if tp.Group == req.Group {
				delete(s.off, tp)
				resp.Deleted++
			}
		}
		s.rev++
	}))
}

var memGroups = metapb.Groups(2, 2)

func (m *memConn) Status(ctx context.Context, endpoint string) (*metapb.StatusResponse, error) {
	node := strings.TrimPrefix(endpoint, "mem://")
	c := m.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if !slices.Contains(c.nodes, node) {
		return nil, fmt.Errorf("mem: no node %q", node)
	}
	if c.down[node] {
		return nil, errUnavailable
	}
	st := &metapb.StatusResponse{NodeId: node, Addr: endpoint, OffsetGroups: 2, DataGroups: 2}
	leader := c.nodes[0]
	// Every node holds every group, a voter of it.
	var members []*metapb.Member
	for _, n := range c.nodes {
		members = append(members, &metapb.Member{Id: n, Addr: "mem://" + n, Voter: true})
	}
	for _, g := range memGroups {
		state := "Follower"
		if node == leader {
			state = "Leader"
		}
		st.Groups = append(st.Groups, &metapb.GroupStatus{Group: g, State: state, LeaderId: leader, Term: 1, Members: members})
	}
	return st, nil
}

func (m *memConn) Members(ctx context.Context) (*metapb.MembersResponse, error) {
	out := &metapb.MembersResponse{}
	err := m.read(func(*memState) {
		for _, n := range m.c.nodes {
			out.Members = append(out.Members, &metapb.Member{Id: n, Addr: "mem://" + n, Voter: true})
		}
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// ListGroups places every group on every node, all voters, led by the
// first node (with bugPlacement: data-0's last replica on the first node
// again).
func (m *memConn) ListGroups(ctx context.Context) (*metapb.ListGroupsResponse, error) {
	out := &metapb.ListGroupsResponse{ReplicationFactor: uint32(len(m.c.nodes)), MetadataReplicationFactor: uint32(len(m.c.nodes))}
	err := m.read(func(*memState) {
		for _, g := range memGroups {
			gi := &metapb.GroupInfo{Group: g, State: "active", Leader: m.c.nodes[0]}
			for _, n := range m.c.nodes {
				if on, ok := m.c.placedOn[g]; ok && !slices.Contains(on, n) {
					continue
				}
				if m.c.bugPlacement && g == "data-0" && n == m.c.nodes[len(m.c.nodes)-1] {
					n = m.c.nodes[0]
				}
				gi.Replicas = append(gi.Replicas, &metapb.ReplicaInfo{Node: n, Voter: true, Role: "voter"})
			}
			out.Groups = append(out.Groups, gi)
		}
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func (m *memConn) ListNodes(ctx context.Context) (*metapb.ListNodesResponse, error) {
	out := &metapb.ListNodesResponse{}
	err := m.read(func(*memState) {
		for _, n := range m.c.nodes {
			out.Nodes = append(out.Nodes, &metapb.NodeInfo{Id: n, Alive: true, State: "active", Replicas: uint32(len(memGroups))})
		}
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func (m *memConn) StateHash(ctx context.Context, endpoint, group string) (*metapb.StateHashResponse, error) {
	node := strings.TrimPrefix(endpoint, "mem://")
	c := m.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.down[node] {
		return nil, errUnavailable
	}
	if on, ok := c.placedOn[group]; ok && !slices.Contains(on, node) {
		return nil, status.Errorf(codes.NotFound, "mem: %s holds no replica of %s", node, group)
	}
	h := fnv.New64a()
	keys := slices.Sorted(maps.Keys(c.st.kv))
	for _, k := range keys {
		fmt.Fprintf(h, "%s=%s;", k, c.st.kv[k].value)
	}
	hash := h.Sum64()
	if c.bugDiverge && node == c.nodes[len(c.nodes)-1] {
		hash++
	}
	return &metapb.StateHashResponse{Group: group, AppliedIndex: c.st.rev, Hash: hash, Keys: uint64(len(keys))}, nil
}

// memNemesis injects faults into a memCluster and records the calls.
type memNemesis struct {
	c       *memCluster
	mu      sync.Mutex // guards calls
	calls   []string
	failOn  FaultKind // Inject fails for this kind
	healAll int
	// stall: after each Heal, the cluster serves nothing for this long.
	stall time.Duration
}

var _ Nemesis = (*memNemesis)(nil)

func (n *memNemesis) Nodes() []string { return slices.Clone(n.c.nodes) }

func (n *memNemesis) Resolve(ctx context.Context, t Target) ([]string, error) {
	return ResolveTarget(ctx, &memConn{c: n.c}, n.c.endpoints(), t)
}

func (n *memNemesis) record(s string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.calls = append(n.calls, s)
}

func (n *memNemesis) Inject(ctx context.Context, f *Fault) error {
	n.record(fmt.Sprintf("inject %d %s %v", f.ID, f.Kind, f.Nodes))
	if f.Kind == n.failOn {
		return fmt.Errorf("mem: cannot %s", f.Kind)
	}
	c := n.c
	c.mu.Lock()
	defer c.mu.Unlock()
	c.faulty = true
	if c.bugStale {
		c.stale = map[string]memState{}
		for _, node := range f.Nodes {
			c.stale[node] = c.st.clone()
		}
	}
	if c.bugLoseWrites {
		s := c.st.clone()
		c.rollback = &s
	}
	if f.Kind == FaultKill && !c.bugStale {
		for _, node := range f.Nodes {
			c.down[node] = true
		}
	}
	return nil
}

func (n *memNemesis) Heal(ctx context.Context, f *Fault) error {
	n.record(fmt.Sprintf("heal %d", f.ID))
	n.c.heal()
	if n.stall > 0 {
		n.c.mu.Lock()
		n.c.stallUntil = time.Now().Add(n.stall)
		n.c.mu.Unlock()
	}
	return nil
}

func (n *memNemesis) HealAll(ctx context.Context) error {
	n.mu.Lock()
	n.healAll++
	n.mu.Unlock()
	n.c.heal()
	return nil
}

func (c *memCluster) heal() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.faulty = false
	c.down = map[string]bool{}
	c.stale = nil
	if c.rollback != nil {
		c.st = *c.rollback
		c.rollback = nil
	}
}
