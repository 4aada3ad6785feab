package transport

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/metamq/meta/rpc/transport/raftpb"
	"github.com/metamq/meta/verify/poll"
)

// testFSM keeps every applied command; its snapshot is all of them.
type testFSM struct {
	mu       sync.Mutex
	entries  [][]byte
	restores int
	restored int64 // bytes read by the last Restore
}

func (f *testFSM) Apply(l *raft.Log) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.entries = append(f.entries, l.Data)
	return len(f.entries)
}

func (f *testFSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return &testSnapshot{entries: append([][]byte(nil), f.entries...)}, nil
}

func (f *testFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var entries [][]byte
	var n uint32
	if err := binary.Read(rc, binary.BigEndian, &n); err != nil {
		return err
	}
	restored := int64(4) // the bytes read: the count, each size and entry
	for range n {
		var size uint32
		if err := binary.Read(rc, binary.BigEndian, &size); err != nil {
			return err
		}
		b := make([]byte, size)
		if _, err := io.ReadFull(rc, b); err != nil {
			return err
		}
		entries = append(entries, b)
		restored += 4 + int64(size)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.entries = entries
	f.restores++
	f.restored = restored
	return nil
}

// state returns the number of entries and a digest of them all.
func (f *testFSM) state() (int, [32]byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	h := sha256.New()
	for _, e := range f.entries {
		_ = binary.Write(h, binary.BigEndian, uint32(len(e)))
		h.Write(e)
	}
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return len(f.entries), sum
}

func (f *testFSM) restoreStats() (int, int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.restores, f.restored
}

type testSnapshot struct{ entries [][]byte }

func (s *testSnapshot) Persist(sink raft.SnapshotSink) error {
	err := binary.Write(sink, binary.BigEndian, uint32(len(s.entries)))
	for _, e := range s.entries {
		if err != nil {
			break
		}
		if err = binary.Write(sink, binary.BigEndian, uint32(len(e))); err == nil {
			_, err = sink.Write(e)
		}
	}
	if err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s *testSnapshot) Release() {}

// tlogWriter sends raft's logs to t.Log.
type tlogWriter struct{ t testing.TB }

func (w tlogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// member is one raft group on one node.
type member struct {
	id     raft.ServerID
	node   *testNode
	group  string
	raft   *raft.Raft
	fsm    *testFSM
	trans  *Transport
	logs   *raft.InmemStore
	stable *raft.InmemStore
	snaps  raft.SnapshotStore
	// preVotes counts RequestPreVote requests this member received.
	preVotes *raft.Observer
	// down is set once the test shut this member's raft down. raft's
	// State() is not enough: an RPC its follower loop takes as Shutdown
	// begins sets the state back to Follower (appendEntries), and it stays
	// so once raft has stopped (seen under load: a leader check waited a
	// minute on a stopped member that reported Follower with no leader).
	down atomic.Bool
}

// shutdown stops m's raft and marks m down.
func (m *member) shutdown() error {
	m.down.Store(true)
	return m.raft.Shutdown().Error()
}

type raftCluster struct {
	nodes   []*testNode
	members map[string][]*member // by group, in node order
}

const testCluster = "cluster-test"

func raftConfig(t testing.TB, id raft.ServerID, group string) *raft.Config {
	c := raft.DefaultConfig()
	c.LocalID = id
	// raft's default timeouts (1 s): shorter ones lose leadership when
	// two cores run nine rafts under the race detector.
	c.CommitTimeout = 10 * time.Millisecond
	c.TrailingLogs = 4
	c.SnapshotThreshold = 1 << 30 // snapshots only when the test asks
	c.SnapshotInterval = time.Hour
	c.Logger = hclog.New(&hclog.LoggerOptions{
		Name:   fmt.Sprintf("%s/%s", group, id),
		Level:  hclog.Warn,
		Output: tlogWriter{t},
	})
	return c
}

// startMember starts (or restarts, with the stores of a previous run) the
// raft of group on node.
func startMember(t *testing.T, node *testNode, id raft.ServerID, group string, prev *member) *member {
	t.Helper()
	m := &member{id: id, node: node, group: group, fsm: &testFSM{}}
	if prev != nil {
		m.logs, m.stable, m.snaps = prev.logs, prev.stable, prev.snaps
	} else {
		m.logs, m.stable = raft.NewInmemStore(), raft.NewInmemStore()
		snaps, err := raft.NewFileSnapshotStoreWithLogger(t.TempDir(), 2, hclog.NewNullLogger())
		if err != nil {
			t.Fatal(err)
		}
		m.snaps = snaps
	}
	tr, err := node.mgr.Group(group)
	if err != nil {
		t.Fatal(err)
	}
	m.trans = tr
	r, err := raft.NewRaft(raftConfig(t, id, group), m.fsm, m.logs, m.stable, m.snaps, tr)
	if err != nil {
		_ = tr.Close()
		t.Fatal(err)
	}
	m.raft = r
	m.preVotes = raft.NewObserver(make(chan raft.Observation, 1), false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.RequestPreVoteRequest)
		return ok
	})
	r.RegisterObserver(m.preVotes)
	t.Cleanup(func() {
		if err := r.Shutdown().Error(); err != nil {
			t.Errorf("shutdown %s/%s: %v", group, id, err)
		}
	})
	return m
}

func newRaftCluster(t *testing.T, n int, groups []string) *raftCluster {
	t.Helper()
	c := &raftCluster{members: map[string][]*member{}}
	var servers []raft.Server
	for i := range n {
		node := startNode(t, testCluster, nil)
		c.nodes = append(c.nodes, node)
		servers = append(servers, raft.Server{ID: raft.ServerID(fmt.Sprintf("n%d", i+1)), Address: raft.ServerAddress(node.addr)})
	}
	for _, g := range groups {
		for i, node := range c.nodes {
			m := startMember(t, node, servers[i].ID, g, nil)
			if err := m.raft.BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil {
				t.Fatalf("bootstrap %s on %s: %v", g, servers[i].ID, err)
			}
			c.members[g] = append(c.members[g], m)
		}
	}
	return c
}

// leader waits until the group has one leader that every running member
// follows, and returns it.
func (c *raftCluster) leader(t *testing.T, group string) *member {
	t.Helper()
	var l *member
	poll.ForTrue(t, "a leader of "+group, 60*time.Second, func() bool {
		l = nil
		for _, m := range c.members[group] {
			if m.raft.State() == raft.Leader {
				if l != nil {
					return false
				}
				l = m
			}
		}
		if l == nil {
			return false
		}
		for _, m := range c.members[group] {
			if m.down.Load() {
				continue
			}
			if addr, _ := m.raft.LeaderWithID(); string(addr) != l.node.addr {
				return false
			}
		}
		return true
	})
	return l
}

// apply applies data to the group through its leader, retrying on
// leadership changes until the deadline.
func (c *raftCluster) apply(t *testing.T, group string, data []byte) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := c.leader(t, group).raft.Apply(data, 10*time.Second).Error()
		if err == nil {
			return
		}
		if !errors.Is(err, raft.ErrNotLeader) && !errors.Is(err, raft.ErrLeadershipLost) || time.Now().After(deadline) {
			t.Fatalf("apply to %s: %v", group, err)
		}
	}
}

// converged waits until the running members of group hold the same
// entries, at least min of them.
func (c *raftCluster) converged(t *testing.T, group string, min int) {
	t.Helper()
	poll.ForTrue(t, group+" members to converge", 60*time.Second, func() bool {
		var first [32]byte
		seen := false
		for _, m := range c.members[group] {
			if m.down.Load() {
				continue
			}
			n, sum := m.fsm.state()
			if n < min || (seen && sum != first) {
				return false
			}
			first, seen = sum, true
		}
		return true
	})
}

func (c *raftCluster) follower(t *testing.T, group string) *member {
	t.Helper()
	l := c.leader(t, group)
	for _, m := range c.members[group] {
		if m != l && m.raft.State() != raft.Shutdown {
			return m
		}
	}
	t.Fatalf("%s has no running follower", group)
	return nil
}

func rawRaftClient(t *testing.T, addr string) raftpb.RaftServiceClient {
	t.Helper()
	cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return raftpb.NewRaftServiceClient(cc)
}

func TestMultiGroupRaft(t *testing.T) {
	groups := []string{"metadata-0", "offset-0", "data-0"}
	c := newRaftCluster(t, 3, groups)

	t.Run("every group elects a leader", func(t *testing.T) {
		for _, g := range groups {
			l := c.leader(t, g)
			t.Logf("%s: leader %s", g, l.id)
		}
	})

	t.Run("pre-vote is on", func(t *testing.T) {
		for _, g := range groups {
			var seen uint64
			for _, m := range c.members[g] {
				seen += m.preVotes.GetNumObserved() + m.preVotes.GetNumDropped()
			}
			if seen == 0 {
				t.Errorf("%s: got 0 RequestPreVote requests received, want > 0", g)
			}
		}
	})

	t.Run("apply replicates", func(t *testing.T) {
		for _, g := range groups {
			for i := range 20 {
				c.apply(t, g, fmt.Appendf(nil, "%s-%d", g, i))
			}
		}
		for _, g := range groups {
			c.converged(t, g, 20)
		}
	})

	t.Run("leadership transfer", func(t *testing.T) {
		g := "metadata-0"
		l := c.leader(t, g)
		target := c.follower(t, g)
		if err := l.raft.LeadershipTransferToServer(target.id, raft.ServerAddress(target.node.addr)).Error(); err != nil {
			t.Fatalf("transfer: %v", err)
		}
		if got := c.leader(t, g); got != target {
			t.Fatalf("leader after transfer: got %s, want %s", got.id, target.id)
		}
	})

	t.Run("unknown group is unavailable at once", func(t *testing.T) {
		client := rawRaftClient(t, c.nodes[0].addr)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_, err := client.AppendEntries(ctx, &raftpb.AppendEntriesRequest{ClusterId: testCluster, Group: "nope", Term: 1})
		// A blocked handler would end in DeadlineExceeded instead.
		if got := status.Code(err); got != codes.Unavailable {
			t.Fatalf("got code %v (%v), want %v", got, err, codes.Unavailable)
		}
	})

	t.Run("cluster mismatch is rejected", func(t *testing.T) {
		client := rawRaftClient(t, c.nodes[0].addr)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_, err := client.RequestVote(ctx, &raftpb.RequestVoteRequest{ClusterId: "other", Group: "metadata-0", Term: 1 << 40})
		if got := status.Code(err); got != codes.FailedPrecondition {
			t.Fatalf("got code %v (%v), want %v", got, err, codes.FailedPrecondition)
		}
		for _, m := range c.members["metadata-0"] {
			if term := m.raft.CurrentTerm(); term >= 1<<40 {
				t.Fatalf("%s: got term %d: the rejected vote reached raft", m.id, term)
			}
		}
	})

	t.Run("lagging follower gets a large snapshot while other groups serve", func(t *testing.T) {
		g := "offset-0"
		lagging := c.follower(t, g)
		idx := indexOf(c.members[g], lagging)
		if err := lagging.shutdown(); err != nil {
			t.Fatal(err)
		}

		// The node answers for the closed group at once: Unavailable.
		l := c.leader(t, g)
		var resp raft.AppendEntriesResponse
		hb := &raft.AppendEntriesRequest{RPCHeader: raft.RPCHeader{Addr: []byte(l.node.addr)}, Term: l.raft.CurrentTerm()}
		err := l.trans.AppendEntries(lagging.id, raft.ServerAddress(lagging.node.addr), hb, &resp)
		if !errors.Is(err, ErrUnknownGroup) || status.Code(err) != codes.Unavailable {
			t.Fatalf("heartbeat to closed group: got %v, want %v with code Unavailable", err, ErrUnknownGroup)
		}

		// More than 8 MiB of state, then compaction on the live members.
		const entries, size = 40, 256 << 10
		for i := range entries {
			data := make([]byte, size)
			for j := range data {
				data[j] = byte(i + j)
			}
			c.apply(t, g, data)
		}
		// The other groups keep serving, on the lagging node too.
		for _, other := range []string{"metadata-0", "data-0"} {
			c.apply(t, other, []byte("while "+g+" is down"))
			c.converged(t, other, 21)
		}
		for _, m := range c.members[g] {
			if m == lagging {
				continue
			}
			if err := m.raft.Snapshot().Error(); err != nil {
				t.Fatalf("snapshot on %s: %v", m.id, err)
			}
		}
		if first, _ := c.leader(t, g).logs.FirstIndex(); first <= 1 {
			t.Fatalf("leader's first log: got %d, want > 1 (compacted)", first)
		}

		// The follower restarts with an empty log (its term and vote
		// kept). With its old log it would race with a request the leader
		// built before compacting and that may still be on its way (a
		// 10 MiB AppendEntries takes a while): that request is valid and
		// would let it catch up without a snapshot. An empty log can only
		// be caught up by a snapshot.
		lagging.logs = raft.NewInmemStore()
		restarted := startMember(t, lagging.node, lagging.id, g, lagging)
		c.members[g][idx] = restarted
		c.converged(t, g, 20+entries)
		restores, restored := restarted.fsm.restoreStats()
		if restores != 1 || restored <= 8<<20 {
			n, _ := restarted.fsm.state()
			t.Fatalf("restored %d times, last %d bytes (fsm has %d entries, state %v); want 1 restore of more than %d bytes", restores, restored, n, restarted.raft.State(), 8<<20)
		}
		if got := lagging.node.called("/meta.raft.v1.RaftService/InstallSnapshot"); got == 0 {
			t.Fatalf("InstallSnapshot calls received by the lagging node: got 0, want > 0")
		}
		c.apply(t, g, []byte("after catch-up"))
		c.converged(t, g, 21+entries)
	})

	t.Run("one connection per peer address", func(t *testing.T) {
		// Followers that never campaigned have sent nothing yet: a peer
		// call from every node to every other makes sure each pair has
		// been used by both raft (from some nodes) and peer calls.
		for _, from := range c.nodes {
			for _, to := range c.nodes {
				if from == to {
					continue
				}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				_, err := from.mgr.Applied(ctx, to.addr, "metadata-0")
				cancel()
				if !errors.Is(err, ErrNoHandler) {
					t.Fatalf("Applied from %s to %s: got %v, want %v", from.addr, to.addr, err, ErrNoHandler)
				}
			}
		}
		for _, from := range c.nodes {
			for _, to := range c.nodes {
				if from == to {
					continue
				}
				if got := from.dialer.count(to.addr); got != 1 {
					t.Errorf("%s dialed %s %d times, want 1", from.addr, to.addr, got)
				}
			}
		}
	})
}

func indexOf(ms []*member, m *member) int {
	for i := range ms {
		if ms[i] == m {
			return i
		}
	}
	return -1
}
