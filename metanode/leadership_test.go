package metanode_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/metamq/meta/metanode"
	"github.com/metamq/meta/metanode/metanodetest"
	"github.com/metamq/meta/rpc/metapb"
	"github.com/metamq/meta/rpc/transport"
	"github.com/metamq/meta/sm/logpb"
	"github.com/metamq/meta/verify/poll"
)

// Leader work runs one term at a time: when a node loses a group's
// leadership and regains it while the old term's work is still stopping,
// the new term's work starts only after the old one returned. The task
// here takes a second to stop; leadership goes away and comes straight
// back.
func TestLeaderWorkRunsOneTermAtATime(t *testing.T) {
	const group = "data-0"
	var running, most, starts atomic.Int32
	var mu sync.Mutex
	var stoppedAt, startedAt []time.Time
	task := func(ctx context.Context) {
		n := running.Add(1)
		starts.Add(1)
		mu.Lock()
		startedAt = append(startedAt, time.Now())
		mu.Unlock()
		for {
			m := most.Load()
			if n <= m || most.CompareAndSwap(m, n) {
				break
			}
		}
		<-ctx.Done()
		time.Sleep(time.Second) // slow to stop
		mu.Lock()
		stoppedAt = append(stoppedAt, time.Now())
		mu.Unlock()
		running.Add(-1)
	}
	c := metanodetest.Start(t, metanodetest.Options{
		Prepare: func(id string, node *metanode.Node) {
			if id == "n1" {
				node.RunWhileLeading(group, task)
			}
		},
	})
	ctx := ctxT(t, 90*time.Second)
	n1 := c.Running("n1")
	if c.Leader(group) != "n1" {
		if err := n1.MoveLeader(ctx, group, "n1"); err != nil {
			t.Fatalf("move %s to n1: %v", group, err)
		}
	}
	poll.ForTrue(t, "n1 to lead and run its task", 30*time.Second, func() bool { return starts.Load() >= 1 })
	for round := 0; round < 3; round++ {
		before := starts.Load()
		// Away and straight back: the second transfer lands while the
		// first term's task is still stopping.
		if err := n1.MoveLeader(ctx, group, followerOf(t, c, group, "n1")); err != nil {
			t.Fatalf("move %s away: %v", group, err)
		}
		poll.ForTrue(t, "a new leader", 30*time.Second, func() bool { l := c.Leader(group); return l != "" && l != "n1" })
		if err := n1.MoveLeader(ctx, group, "n1"); err != nil {
			t.Fatalf("move %s back: %v", group, err)
		}
		poll.ForTrue(t, "the next term's task to start", 30*time.Second, func() bool { return starts.Load() > before })
	}
	if m := most.Load(); m > 1 {
		t.Fatalf("leader work of two terms ran at once (%d at most); starts %v, stops %v", m, startedAt, stoppedAt)
	}
}

// A group's leader runs raft with LeaderHeartbeatTimeout (fewer heartbeats
// per idle group), its followers with HeartbeatTimeout (a silent leader is
// noticed as soon as before); a leader that hands off goes back to the
// follower's timeout, and the new leader takes the leader's.
func TestLeaderRunsWithLeaderHeartbeatTimeout(t *testing.T) {
	const group = "data-0"
	c := metanodetest.Start(t, metanodetest.Options{Configure: func(cfg *metanode.Config) {
		cfg.HeartbeatTimeout = time.Second
		cfg.LeaderLeaseTimeout = time.Second
		cfg.LeaderHeartbeatTimeout = 2 * time.Second
	}})
	ctx := ctxT(t, 90*time.Second)
	// timeouts reports whether exactly leader runs with the leader's
	// timeout and every other node with the follower's.
	timeouts := func(leader string) error {
		for _, id := range c.IDs() {
			got, err := c.Running(id).RaftHeartbeatTimeoutForTest(group)
			if err != nil {
				return err
			}
			want := time.Second
			if id == leader {
				want = 2 * time.Second
			}
			if got != want {
				return fmt.Errorf("%s (leader %s): heartbeat timeout %s, want %s", id, leader, got, want)
			}
		}
		return nil
	}
	first := c.WaitLeader(group, 30*time.Second)
	if err := poll.Until(ctx, func() error { return timeouts(first) }); err != nil {
		t.Fatal(err)
	}
	next := followerOf(t, c, group, first)
	if err := c.Running(first).MoveLeader(ctx, group, next); err != nil {
		t.Fatalf("move %s to %s: %v", group, next, err)
	}
	if err := poll.Until(ctx, func() error { return timeouts(next) }); err != nil {
		t.Fatal(err)
	}
}

// hashicorp/raft#696: a transfer to a target that cannot catch up times out
// and leaves its request in the target's replication channel; a second
// transfer to it would block on that channel while raft refuses every
// write of the group (for ever, if the leader stepped down meanwhile). The
// node refuses the second transfer at once, the group keeps taking writes,
// and the target is eligible again once it caught up.
func TestSecondTransferToAStalledTargetIsRefused(t *testing.T) {
	c := metanodetest.Start(t, metanodetest.Options{DataGroups: 1})
	group := metapb.DataGroupFor([]byte("k"), 1)
	ctx := ctxT(t, 120*time.Second)
	leader := c.WaitLeader(group, 30*time.Second)
	target := followerOf(t, c, group, leader)
	n := c.Running(leader)
	propose := func(ctx context.Context, v string) error {
		_, err := n.Propose(ctx, group, &logpb.Op{Op: &logpb.Op_Put{Put: &logpb.KVPut{Key: []byte("k"), Value: []byte(v)}}})
		return err
	}
	if err := propose(ctx, "before"); err != nil {
		t.Fatal(err)
	}
	// The target takes nothing more: once its pipeline is full (more
	// appends than its depth in flight), its replication goroutine waits.
	c.Net.Block(leader, target)
	defer c.Net.Heal()
	for i := range 3 * transport.DefaultPipelineDepth / 2 {
		if err := propose(ctx, fmt.Sprint(i)); err != nil {
			t.Fatalf("put %d with %s cut off: %v", i, target, err)
		}
	}
	if _, err := n.TransferLeader(ctx, group, target); err == nil {
		t.Fatalf("a transfer to %s, cut off, landed", target)
	} else {
		t.Logf("first transfer to %s: %v", target, err)
	}
	tctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	_, err := n.TransferLeader(tctx, group, target)
	cancel()
	t.Logf("second transfer to %s: %v", target, err)
	// Without the guard raft refuses this put (leadership transfer in
	// progress) until the target's replication goroutine takes the first
	// transfer's request.
	pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if err := propose(pctx, "after"); err != nil {
		t.Fatalf("a put after the second transfer: %v", err)
	}
	if metapb.ReasonOf(err) != metapb.ReasonTransferRefused {
		t.Fatalf("second transfer to %s: %v, want %s", target, err, metapb.ReasonTransferRefused)
	}
	c.Net.Heal()
	if err := poll.Until(ctx, func() error {
		tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_, err := n.TransferLeader(tctx, group, target)
		return err
	}); err != nil {
		t.Fatalf("a transfer to %s once it caught up: %v", target, err)
	}
}

// A transfer to a target that stopped answering would hold raft's
// transfer flag (every write of the group refused) until its TimeoutNow
// call times out; the node refuses it at once instead.
func TestTransferToASilentTargetIsRefused(t *testing.T) {
	c := metanodetest.Start(t, metanodetest.Options{DataGroups: 1})
	group := metapb.DataGroupFor([]byte("k"), 1)
	ctx := ctxT(t, 120*time.Second)
	leader := c.WaitLeader(group, 30*time.Second)
	target := followerOf(t, c, group, leader)
	n := c.Running(leader)
	propose := func(ctx context.Context, v string) error {
		_, err := n.Propose(ctx, group, &logpb.Op{Op: &logpb.Op_Put{Put: &logpb.KVPut{Key: []byte("k"), Value: []byte(v)}}})
		return err
	}
	if err := propose(ctx, "before"); err != nil {
		t.Fatal(err)
	}
	c.Net.Block(leader, target)
	defer c.Net.Heal()
	time.Sleep(3 * time.Second) // past 2 election timeouts without an answer
	tctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	_, err := n.TransferLeader(tctx, group, target)
	cancel()
	t.Logf("transfer to %s, cut off: %v", target, err)
	pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if err := propose(pctx, "after"); err != nil {
		t.Fatalf("a put after the transfer: %v", err)
	}
	if metapb.ReasonOf(err) != metapb.ReasonTransferRefused {
		t.Fatalf("transfer to %s: %v, want %s", target, err, metapb.ReasonTransferRefused)
	}
}
