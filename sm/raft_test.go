package sm

import (
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/metamq/meta/rocks"
	"github.com/metamq/meta/sm/logpb"
	"github.com/metamq/meta/verify/poll"
)

// raftNode is one replica of a data group driven by a real hashicorp/raft:
// rocks' log and stable stores, a Machine and a SnapStore, wired as
// metanode wires them, over raft's in-memory transport.
type raftNode struct {
	t     *testing.T
	id    string
	dir   string
	trans *raft.InmemTransport
	db    *rocks.DB
	m     *Machine
	store *SnapStore
	raft  *raft.Raft
}

func startRaftNode(t *testing.T, id, dir string, trans *raft.InmemTransport) *raftNode {
	t.Helper()
	n := &raftNode{t: t, id: id, dir: dir, trans: trans}
	opts := rocks.DefaultOptions(filepath.Join(dir, "db"))
	opts.BlockCacheBytes, opts.WriteBufferBytes = 4<<20, 8<<20
	var err error
	if n.db, err = rocks.Open(opts, []string{"data-0"}); err != nil {
		t.Fatal(err)
	}
	if n.m, err = New(Config{Kind: KindData, Group: "data-0", DB: n.db}); err != nil {
		t.Fatal(err)
	}
	if n.m.Ownership() == nil {
		ownEverything(t, n.m)
	}
	if n.store, err = NewSnapStore(SnapStoreConfig{Dir: filepath.Join(dir, "snap"), Machine: n.m, FileBytes: 8 << 10}); err != nil {
		t.Fatal(err)
	}
	logs, _ := n.db.LogStore("data-0")
	stable, _ := n.db.StableStore("data-0")
	restore, err := n.store.NeedsRestore()
	if err != nil {
		t.Fatal(err)
	}
	conf := raft.DefaultConfig()
	conf.LocalID = raft.ServerID(id)
	conf.Logger = hclog.New(&hclog.LoggerOptions{Name: id, Level: hclog.Warn, Output: testWriter{t}})
	conf.HeartbeatTimeout = 500 * time.Millisecond
	conf.ElectionTimeout = 500 * time.Millisecond
	conf.LeaderLeaseTimeout = 250 * time.Millisecond
	conf.SnapshotThreshold = 32
	conf.SnapshotInterval = 50 * time.Millisecond
	conf.TrailingLogs = 8
	conf.NoSnapshotRestoreOnStart = !restore
	if n.raft, err = raft.NewRaft(conf, n.m, logs, stable, n.store, trans); err != nil {
		t.Fatal(err)
	}
	return n
}

func (n *raftNode) stop() {
	if n.raft == nil {
		return
	}
	if err := n.raft.Shutdown().Error(); err != nil {
		n.t.Errorf("%s: shutdown: %v", n.id, err)
	}
	n.m.Close()
	_ = n.db.Close()
	n.raft = nil
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

// A new replica joins a group whose leader has compacted its log, while
// writes continue: it receives a snapshot through raft (exported from the
// leader's data as SST files, often newer than the snapshot's index),
// ingests it, and catches up; every replica ends with the same state (a
// re-delivered entry applied twice would change the revision and the
// hash). It then restarts and still agrees.
func TestRaftInstallsSnapshotWhileWritesContinue(t *testing.T) {
	addrs := []raft.ServerAddress{"n1", "n2", "n3"}
	trans := make([]*raft.InmemTransport, 3)
	for i, a := range addrs {
		_, trans[i] = raft.NewInmemTransport(a)
	}
	for i := range trans {
		for j := range trans {
			if i != j {
				trans[i].Connect(addrs[j], trans[j])
			}
		}
	}
	dirs := []string{t.TempDir(), t.TempDir(), t.TempDir()}
	nodes := make([]*raftNode, 3)
	for i := range 2 {
		nodes[i] = startRaftNode(t, string(addrs[i]), dirs[i], trans[i])
	}
	t.Cleanup(func() {
		for _, n := range nodes {
			if n != nil {
				n.stop()
			}
		}
	})
	boot := raft.Configuration{Servers: []raft.Server{
		{Suffrage: raft.Voter, ID: "n1", Address: "n1"},
		{Suffrage: raft.Voter, ID: "n2", Address: "n2"},
	}}
	if err := nodes[0].raft.BootstrapCluster(boot).Error(); err != nil {
		t.Fatal(err)
	}
	leader := func() *raftNode {
		for _, n := range nodes {
			if n != nil && n.raft != nil && n.raft.State() == raft.Leader {
				return n
			}
		}
		return nil
	}
	poll.ForTrue(t, "a leader", 20*time.Second, func() bool { return leader() != nil })

	var mu sync.Mutex
	written := 0
	write := func(i int) error {
		l := leader()
		if l == nil {
			return raft.ErrNotLeader
		}
		data, err := EncodeBatch(&logpb.Batch{NowUnixNano: int64(i), Ops: []*logpb.Op{
			putOp(fmt.Sprintf("k%04d", i%500), fmt.Sprintf("v%d", i)), putOp("last", fmt.Sprint(i)),
		}})
		if err != nil {
			return err
		}
		return l.raft.Apply(data, 5*time.Second).Error()
	}
	stop := make(chan struct{})
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if write(i) == nil {
				mu.Lock()
				written++
				mu.Unlock()
			}
		}
	}()
	count := func() int { mu.Lock(); defer mu.Unlock(); return written }
	poll.ForTrue(t, "300 writes and a compacted log on the leader", 60*time.Second, func() bool {
		l := leader()
		if l == nil || count() < 300 {
			return false
		}
		logs, _ := l.db.LogStore("data-0")
		first, _ := logs.FirstIndex()
		return first > 1
	})

	// The new replica can only catch up through a snapshot.
	nodes[2] = startRaftNode(t, "n3", dirs[2], trans[2])
	poll.For(t, "n3 added as a voter", 30*time.Second, func() error {
		l := leader()
		if l == nil {
			return raft.ErrNotLeader
		}
		return l.raft.AddVoter("n3", "n3", 0, 10*time.Second).Error()
	})
	// "More writes" is counted in n3's log, not in its applied index: a
	// received snapshot's data is often newer than its index, so the
	// applied index can pass the index by 50 with no entry replicated.
	n3logs, _ := nodes[2].db.LogStore("data-0")
	poll.ForTrue(t, "n3 to install a snapshot and then replicate 50 more writes", 60*time.Second, func() bool {
		snaps, err := nodes[2].store.List()
		if err != nil || len(snaps) == 0 {
			return false
		}
		last, err := n3logs.LastIndex()
		return err == nil && last > snaps[0].Index+50
	})
	close(stop)
	<-writerDone

	converge := func(what string) {
		t.Helper()
		var want StateHash
		poll.For(t, what, 60*time.Second, func() error {
			l := leader()
			if l == nil {
				return raft.ErrNotLeader
			}
			if err := l.raft.Barrier(5 * time.Second).Error(); err != nil {
				return err
			}
			var err error
			if want, err = l.m.Hash(); err != nil {
				return err
			}
			for _, n := range nodes {
				got, err := n.m.Hash()
				if err != nil {
					return err
				}
				if got.Index == want.Index && got != want {
					t.Fatalf("%s and %s differ at index %d: %+v, %+v", n.id, l.id, got.Index, got, want)
				}
				if got != want {
					return fmt.Errorf("%s at %+v, leader at %+v", n.id, got, want)
				}
			}
			return nil
		})
		if want.Keys == 0 {
			t.Fatalf("%s: the converged state is empty", what)
		}
	}
	converge("every replica to reach the leader's state")
	// n3 started from a snapshot: its log never held the group's first
	// entry. (Its log may be empty here: a later snapshot, sent while it
	// lagged again, compacts every entry it had, and its data can be
	// ahead of all of them.)
	var first raft.Log
	if err := n3logs.GetLog(1, &first); err != raft.ErrLogNotFound {
		t.Fatalf("n3's log holds index 1 (err %v); it should have started from a snapshot", err)
	}

	// n3 restarts: its data is whole, nothing to restore; raft re-delivers
	// entries after its snapshot and the machine skips those it has.
	nodes[2].stop()
	for _, j := range []int{0, 1} { // raft's Shutdown closed n3's transport
		trans[2].Connect(addrs[j], trans[j])
	}
	nodes[2] = startRaftNode(t, "n3", dirs[2], trans[2])
	for i := range 20 {
		poll.For(t, "a write after n3's restart", 20*time.Second, func() error { return write(100000 + i) })
	}
	converge("every replica to agree after n3's restart")
}
