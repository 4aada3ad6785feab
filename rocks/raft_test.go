package rocks

import (
	"io"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// countFSM counts applied commands.
type countFSM struct {
	mu sync.Mutex
	n  int // guarded by mu
}

func (f *countFSM) Apply(l *raft.Log) interface{} {
	if l.Type == raft.LogCommand {
		f.mu.Lock()
		f.n++
		f.mu.Unlock()
	}
	return nil
}

func (f *countFSM) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.n
}

func (f *countFSM) Snapshot() (raft.FSMSnapshot, error) { return nopSnapshot{}, nil }
func (f *countFSM) Restore(rc io.ReadCloser) error      { return rc.Close() }

type nopSnapshot struct{}

func (nopSnapshot) Persist(sink raft.SnapshotSink) error { return sink.Close() }
func (nopSnapshot) Release()                             {}

func startRaft(t *testing.T, db *DB, fsm raft.FSM, snaps raft.SnapshotStore) *raft.Raft {
	t.Helper()
	conf := raft.DefaultConfig()
	conf.LocalID = "n1"
	conf.Logger = hclog.New(&hclog.LoggerOptions{Name: "raft", Output: io.Discard})
	conf.HeartbeatTimeout = 50 * time.Millisecond
	conf.ElectionTimeout = 50 * time.Millisecond
	conf.LeaderLeaseTimeout = 50 * time.Millisecond
	conf.CommitTimeout = 5 * time.Millisecond
	_, trans := raft.NewInmemTransport("n1")
	ls, st := mustLogStore(t, db, "g"), mustStable(t, db, "g")
	has, err := raft.HasExistingState(ls, st, snaps)
	if err != nil {
		t.Fatal(err)
	}
	if !has {
		cfg := raft.Configuration{Servers: []raft.Server{{ID: "n1", Address: trans.LocalAddr()}}}
		if err := raft.BootstrapCluster(conf, ls, st, snaps, trans, cfg); err != nil {
			t.Fatal(err)
		}
	}
	r, err := raft.NewRaft(conf, fsm, ls, st, snaps, trans)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for r.State() != raft.Leader {
		if time.Now().After(deadline) {
			t.Fatalf("no leader after 10s: state %v", r.State())
		}
		time.Sleep(5 * time.Millisecond) // polling with a deadline
	}
	return r
}

// TestRaftOverRocks runs a one-node raft on the LogStore and StableStore,
// restarts it on the reopened database and checks that the log and term
// survived and every entry is delivered again.
func TestRaftOverRocks(t *testing.T) {
	dir := t.TempDir()
	snaps := raft.NewInmemSnapshotStore()
	db := openAt(t, dir, "g")
	fsm := &countFSM{}
	r := startRaft(t, db, fsm, snaps)
	for i := range 20 {
		if err := r.Apply([]byte{byte(i)}, 5*time.Second).Error(); err != nil {
			t.Fatalf("Apply %d: %v", i, err)
		}
	}
	last := r.LastIndex()
	if err := r.Shutdown().Error(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db = openAt(t, dir, "g")
	if got, _ := mustLogStore(t, db, "g").LastIndex(); got != last {
		t.Fatalf("LastIndex after reopen: got %d, want %d", got, last)
	}
	term, err := mustStable(t, db, "g").GetUint64([]byte("CurrentTerm"))
	if err != nil || term == 0 {
		t.Fatalf("CurrentTerm after reopen: got (%d, %v), want > 0", term, err)
	}
	fsm2 := &countFSM{}
	r = startRaft(t, db, fsm2, snaps)
	t.Cleanup(func() { _ = r.Shutdown().Error() })
	if err := r.Barrier(5 * time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	if got := fsm2.count(); got != 20 {
		t.Fatalf("commands re-applied after restart: got %d, want 20", got)
	}
}
