package metanode_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/metamq/meta/metanode"
	"github.com/metamq/meta/metanode/metanodetest"
	"github.com/metamq/meta/rpc/metapb"
	"github.com/metamq/meta/sm"
	"github.com/metamq/meta/sm/logpb"
)

// A replica whose state was damaged behind raft's back is caught by the
// periodic hash check and fenced (halted with the CORRUPT cause) while
// the replicas that agree keep serving; replicas that agree are never
// fenced. A fenced leader hands its leadership off.
func TestHashCheckFencesADamagedReplica(t *testing.T) {
	for _, role := range []string{"follower", "leader"} {
		t.Run(role, func(t *testing.T) { testHashCheckFences(t, role) })
	}
}

func testHashCheckFences(t *testing.T, role string) {
	c := metanodetest.Start(t, metanodetest.Options{DataGroups: 1, Configure: func(cfg *metanode.Config) {
		cfg.HashCheckInterval = 200 * time.Millisecond
	}})
	cl := c.Client("")
	group := metapb.DataGroupFor([]byte("k0"), 1)
	for i := range 20 {
		put(t, cl, fmt.Sprintf("k%d", i), "v")
	}
	// Several rounds of checks on an undamaged cluster fence nothing.
	time.Sleep(2 * time.Second)
	for _, id := range c.IDs() {
		for _, g := range metapb.Groups(1, 1) {
			if err := c.Running(id).FSM(g).Halted(); err != nil {
				t.Fatalf("%s's replica of %s halted on a healthy cluster: %v", id, g, err)
			}
		}
	}

	victim := followerOf(t, c, group)
	if role == "leader" {
		victim = c.WaitLeader(group, 30*time.Second)
	}
	damaged := time.Now()
	if err := c.Running(victim).DamageForTest(group, []byte{0x02, 'x'}, []byte("damage")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := c.Running(victim).FSM(group).Halted()
		if errors.Is(err, sm.ErrCorrupt) {
			t.Logf("damaged replica fenced %s after the damage: %v", time.Since(damaged).Round(time.Millisecond), err)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("damaged replica of %s on %s not fenced within 30s (halted: %v)", group, victim, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, id := range c.IDs() {
		if id == victim {
			continue
		}
		if err := c.Running(id).FSM(group).Halted(); err != nil {
			t.Fatalf("undamaged replica on %s halted: %v", id, err)
		}
	}
	// Each node's status, read through the public client, names the
	// fenced replica (metactl status prints it): only the victim's.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, id := range c.IDs() {
		st, err := cl.Status(ctx, c.Get(id).Addr)
		if err != nil {
			t.Fatalf("status of %s: %v", id, err)
		}
		if id != victim {
			if len(st.Halted) != 0 {
				t.Fatalf("status of %s: halted %v, want none", id, st.Halted)
			}
			continue
		}
		if len(st.Halted) != 1 || st.Halted[0].Group != group || st.Halted[0].Kind != "corrupt" || st.Halted[0].Index == 0 || st.Halted[0].Reason == "" {
			t.Fatalf("status of the fenced %s: halted %v, want %s halted by kind corrupt at an entry, with a reason", id, st.Halted, group)
		}
	}
	// The two good replicas keep the group serving, under a leader of
	// their own.
	if role == "leader" {
		deadline := time.Now().Add(30 * time.Second)
		for c.WaitLeader(group, 30*time.Second) == victim {
			if time.Now().After(deadline) {
				t.Fatalf("the fenced leader %s still leads %s", victim, group)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	put(t, cl, "after", "v")
	if v, ok := get(t, cl, "after", lin); !ok || v != "v" {
		t.Fatalf("read after the fence: %q %v", v, ok)
	}
}

// A leader whose replica halted refuses a proposal before it is proposed
// (definitely not applied: the caller retries at the next leader) rather
// than proposing an entry whose outcome it could not tell.
func TestHaltedLeaderRefusesBeforeProposing(t *testing.T) {
	c := metanodetest.Start(t, metanodetest.Options{DataGroups: 1, Configure: func(cfg *metanode.Config) {
		cfg.ReconcileInterval = 5 * time.Second // the hand-off waits this long
	}})
	group := metapb.DataGroupFor([]byte("k"), 1)
	put(t, c.Client(""), "k", "v")
	leader := c.WaitLeader(group, 30*time.Second)
	if err := c.Running(leader).FSM(group).Fence(errors.New("test: halted")); err != nil {
		t.Fatal(err)
	}
	_, err := c.Running(leader).Propose(ctxT(t, 20*time.Second), group, &logpb.Op{Op: &logpb.Op_Put{Put: &logpb.KVPut{Key: []byte("k"), Value: []byte("w")}}})
	if err != nil && metapb.ClassOf(metapb.ReasonOf(err)) != metapb.ClassRetry {
		t.Fatalf("a put through a leader whose replica halted: %v (%v), want success at the next leader or a definite refusal", err, metapb.ClassOf(metapb.ReasonOf(err)))
	}
}
