package controller

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/metamq/meta/rocks"
	"github.com/metamq/meta/sm"
	"github.com/metamq/meta/sm/logpb"
	"github.com/metamq/meta/verify/poll"
	"github.com/metamq/meta/verify/testkit"
)

// machineNode is a node whose metadata-0 is a real state machine, applied
// in process, on a clock the test sets; a down declaration can be held
// before it applies (a slow proposal on a loaded machine).
type machineNode struct {
	m *sm.Machine
	*testkit.FakeClock

	mu    sync.Mutex // guards the fields below
	index uint64
	// hold, when set, stops down declarations before they apply until it
	// is closed; entered is closed when one is waiting.
	hold, entered chan struct{}
}

func newMachineNode(t *testing.T) *machineNode {
	t.Helper()
	opts := rocks.DefaultOptions(filepath.Join(t.TempDir(), "db"))
	opts.BlockCacheBytes, opts.WriteBufferBytes = 4<<20, 8<<20
	db, err := rocks.Open(opts, []string{"metadata-0"})
	if err != nil {
		t.Fatal(err)
	}
	m, err := sm.New(sm.Config{Kind: sm.KindMetadata, Group: "metadata-0", DB: db})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		m.Close()
		_ = db.Close()
	})
	return &machineNode{m: m, FakeClock: testkit.NewFakeClock(time.Unix(1_000_000, 0))}
}

func (n *machineNode) ProposeMetadata(ctx context.Context, op *logpb.Op) (*logpb.Result, error) {
	if s := op.GetBrokerSetStatus(); s != nil && s.Status == sm.BrokerDown {
		n.mu.Lock()
		hold, entered := n.hold, n.entered
		n.mu.Unlock()
		if hold != nil {
			close(entered)
			select {
			case <-hold:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	data, err := sm.EncodeBatch(&logpb.Batch{NowUnixNano: n.Now().UnixNano(), Ops: []*logpb.Op{op}})
	if err != nil {
		return nil, err
	}
	n.index++
	return n.m.Apply(&raft.Log{Index: n.index, Term: 1, Type: raft.LogCommand, Data: data}).(*sm.BatchResult).Results[0], nil
}

func (n *machineNode) Metadata() (*sm.Machine, error)                   { return n.m, nil }
func (n *machineNode) MoveLeader(context.Context, string, string) error { return nil }
func (n *machineNode) StartSplit(context.Context, string, uint64) (string, *logpb.HashRange, error) {
	return "", nil, errors.New("no splits here")
}

// A heartbeat that arrives while a down declaration decided before it is
// still being applied is never answered ALIVE ahead of the declaration:
// the broker that was told ALIVE is ALIVE once both are done. (It used to
// be answered ALIVE at once, from the state before the declaration, which
// then applied: a broker told it is alive, declared down, its work failed
// over.)
func TestHeartbeatIsNotOvertakenByADownDeclaration(t *testing.T) {
	n := newMachineNode(t)
	cfg := DefaultConfig()
	c, err := New(cfg, n)
	if err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	c.run, c.active, c.activeSince = 1, 1, n.Now()
	c.mu.Unlock()
	ctx := context.Background()
	b, err := c.Register(ctx, &logpb.BrokerRegister{BrokerId: "b1", Endpoints: []string{"b1:1"}})
	if err != nil {
		t.Fatal(err)
	}
	// The broker falls silent past the timeout; the controller decides to
	// declare it down, and the declaration is slow to apply.
	n.Advance(cfg.HeartbeatTimeout + time.Second)
	n.mu.Lock()
	n.hold, n.entered = make(chan struct{}), make(chan struct{})
	hold, entered := n.hold, n.entered
	n.mu.Unlock()
	checked := make(chan struct{})
	go func() { defer close(checked); c.checkLiveness(ctx) }()
	<-entered
	// The broker heartbeats now.
	n.Advance(100 * time.Millisecond)
	type answer struct {
		status int32
		err    error
	}
	answered := make(chan answer, 1)
	go func() {
		st, err := c.Heartbeat(ctx, "b1", b.Epoch)
		answered <- answer{st, err}
	}()
	poll.ForTrue(t, "the heartbeat to be recorded", 10*time.Second, func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.seen["b1"].at.Equal(n.Now())
	})
	close(hold)
	<-checked
	a := <-answered
	if a.err != nil || a.status != sm.BrokerAlive {
		t.Fatalf("heartbeat: status %d, err %v; want ALIVE", a.status, a.err)
	}
	got, err := n.m.Broker("b1")
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != sm.BrokerAlive {
		t.Fatalf("broker told ALIVE by its heartbeat is %d after the declaration applied, want ALIVE", got.Status)
	}
}
