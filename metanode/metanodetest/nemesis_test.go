package metanodetest_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/metamq/meta/metanode"
	"github.com/metamq/meta/metanode/metanodetest"
	"github.com/metamq/meta/rpc/metapb"
	"github.com/metamq/meta/verify"
	"github.com/metamq/meta/verify/poll"
)

func ctxFor(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// The nemesis's own contract, checked directly on one small cluster:
// which kinds it takes, how it resolves targets, that a pause reaches the
// clients and heals, that a membership fault restores the node set, and
// that Close stops its loops (goleak in TestMain checks the goroutines).
func TestNemesisContract(t *testing.T) {
	c := metanodetest.Start(t, clusterOptions(3, 7))
	nem, err := metanodetest.NewNemesis(c, metanodetest.NemesisOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := nem.WaitHealthy(ctxFor(t, 60*time.Second)); err != nil {
		t.Fatal(err)
	}

	t.Run("supports", func(t *testing.T) {
		for _, k := range verify.AllFaultKinds {
			if got, want := nem.Supports(k), k != verify.FaultCrashpoint; got != want {
				t.Errorf("Supports(%s): got %v, want %v", k, got, want)
			}
		}
		if got, want := nem.Nodes(), []string{"n1", "n2", "n3"}; !slices.Equal(got, want) {
			t.Errorf("Nodes: got %v, want %v", got, want)
		}
	})

	t.Run("resolve", func(t *testing.T) {
		g := metapb.DataGroup(1)
		leader := c.WaitLeader(g, 30*time.Second)
		got, err := nem.Resolve(ctxFor(t, 10*time.Second), verify.LeaderOf(g))
		if err != nil || !slices.Equal(got, []string{leader}) {
			t.Fatalf("Resolve(leader:%s): got %v, %v; want [%s]", g, got, err, leader)
		}
		got, err = nem.Resolve(ctxFor(t, 10*time.Second), verify.FollowerOf(g))
		want := slices.DeleteFunc([]string{"n1", "n2", "n3"}, func(id string) bool { return id == leader })
		if err != nil || !slices.Equal(got, want) {
			t.Fatalf("Resolve(follower:%s): got %v, %v; want %v", g, got, err, want)
		}
	})

	t.Run("pause reaches clients and heals", func(t *testing.T) {
		f := &verify.Fault{ID: 1, Kind: verify.FaultPause, Nodes: []string{"n2"}}
		pinned := c.Client("n2")
		read := func(d time.Duration) error {
			ctx, cancel := context.WithTimeout(context.Background(), d)
			defer cancel()
			_, err := pinned.Get(ctx, &metapb.GetRequest{Key: []byte("nemesis-test")})
			return err
		}
		if err := read(20 * time.Second); err != nil {
			t.Fatalf("read before the pause: %v", err)
		}
		if err := nem.Inject(ctxFor(t, 10*time.Second), f); err != nil {
			t.Fatal(err)
		}
		if err := read(time.Second); err == nil {
			t.Errorf("read from a paused node: got success, want a timeout")
		}
		if err := nem.Heal(ctxFor(t, 10*time.Second), f); err != nil {
			t.Fatal(err)
		}
		if err := read(20 * time.Second); err != nil {
			t.Errorf("read after the pause healed: got %v, want success", err)
		}
	})

	t.Run("member add restores the node set", func(t *testing.T) {
		f := &verify.Fault{ID: 2, Kind: verify.FaultMember, Nodes: []string{"n1"}, Params: map[string]string{"op": "add"}}
		if err := nem.Inject(ctxFor(t, 60*time.Second), f); err != nil {
			t.Fatal(err)
		}
		if got := c.IDs(); len(got) != 4 {
			t.Errorf("nodes during an add: got %v, want 4", got)
		}
		if err := nem.Heal(ctxFor(t, 60*time.Second), f); err != nil {
			t.Fatal(err)
		}
		if err := nem.HealAll(ctxFor(t, 60*time.Second)); err != nil {
			t.Fatal(err)
		}
		if got, want := c.IDs(), []string{"n1", "n2", "n3"}; !slices.Equal(got, want) {
			t.Errorf("nodes after heal: got %v, want %v", got, want)
		}
		if got := nem.Stats().MemberOps["add"]; got != 1 {
			t.Errorf("member ops add: got %d, want 1", got)
		}
	})

	t.Run("close stops a running loop", func(t *testing.T) {
		f := &verify.Fault{ID: 3, Kind: verify.FaultTransfer, Nodes: []string{"n1"},
			Params: map[string]string{"group": metapb.MetadataGroup, "every": "100ms"}}
		if err := nem.Inject(ctxFor(t, 10*time.Second), f); err != nil {
			t.Fatal(err)
		}
		for range 2 {
			if err := nem.Close(); err != nil {
				t.Errorf("Close: got %v, want nil", err)
			}
		}
		if err := nem.Inject(ctxFor(t, 10*time.Second), &verify.Fault{ID: 4, Kind: verify.FaultFlap, Nodes: []string{"n1"}}); err == nil {
			t.Errorf("a loop fault after Close: got nil, want an error")
		}
	})
}

// The 5-node lane runs each group on 3 of its 5 nodes, and the nemesis
// judges and aims at that placement: WaitHealthy wants each group on
// exactly its replication factor of voters, where the directory places it
// (not on every member); a follower target is one of the group's
// replicas; a group keeps a leader while one of its replicas is down; a
// move goes to a member that holds no replica, without a spare.
func TestNemesisOnPlacedCluster(t *testing.T) {
	seed := int64(7)
	p := planFor(seed, nil)
	opts := clusterOptions(p.nodes, uint64(seed))
	cfg := metanode.DefaultConfig()
	opts.Configure(&cfg)
	if p.nodes != 5 || cfg.ReplicationFactor != 3 || cfg.MetadataReplicationFactor != 3 {
		t.Fatalf("seed %d's lane: %d nodes, replication factors %d (metadata-0 %d); want 5 nodes, 3 (3): its groups placed on fewer nodes than the pool",
			seed, p.nodes, cfg.ReplicationFactor, cfg.MetadataReplicationFactor)
	}
	c := metanodetest.Start(t, opts)
	nem, err := metanodetest.NewNemesis(c, metanodetest.NemesisOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := nem.WaitHealthy(ctxFor(t, 60*time.Second)); err != nil {
		t.Fatalf("a new 5-node cluster, groups at RF 3: %v", err)
	}
	cl := c.Client("")
	gs, err := cl.ListGroups(ctxFor(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	placed := map[string][]string{}
	for _, g := range gs.Groups {
		for _, r := range g.Replicas {
			placed[g.Group] = append(placed[g.Group], r.Node)
		}
		slices.Sort(placed[g.Group])
	}
	for _, g := range metapb.Groups(2, 2) {
		if len(placed[g]) != 3 {
			t.Errorf("%s placed on %v, want 3 replicas", g, placed[g])
		}
	}
	g := metapb.DataGroup(0)

	t.Run("a follower is a replica", func(t *testing.T) {
		leader := c.WaitLeader(g, 30*time.Second)
		want := slices.DeleteFunc(slices.Clone(placed[g]), func(id string) bool { return id == leader })
		got, err := nem.Resolve(ctxFor(t, 10*time.Second), verify.FollowerOf(g))
		if err != nil || !slices.Equal(got, want) {
			t.Fatalf("Resolve(follower:%s): got %v, %v; want %v (the replicas %v but the leader %s)", g, got, err, want, placed[g], leader)
		}
	})

	t.Run("a replica down keeps the leader", func(t *testing.T) {
		leader := c.WaitLeader(g, 30*time.Second)
		follower := slices.DeleteFunc(slices.Clone(placed[g]), func(id string) bool { return id == leader })[0]
		f := &verify.Fault{ID: 1, Kind: verify.FaultKill, Nodes: []string{follower}}
		if err := nem.Inject(ctxFor(t, 30*time.Second), f); err != nil {
			t.Fatal(err)
		}
		// 2 of its 3 voters: a majority of the group, not of the 4
		// running nodes.
		poll.ForTrue(t, g+" led with "+follower+" down", 10*time.Second, func() bool { return c.Leader(g) != "" })
		if err := nem.Heal(ctxFor(t, 60*time.Second), f); err != nil {
			t.Fatal(err)
		}
		if err := nem.WaitHealthy(ctxFor(t, 60*time.Second)); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("a move stays in the pool", func(t *testing.T) {
		leader := c.WaitLeader(g, 30*time.Second)
		f := &verify.Fault{ID: 2, Kind: verify.FaultMove, Nodes: []string{leader}, Params: map[string]string{"group": g}, Pick: 1}
		if err := nem.Inject(ctxFor(t, 60*time.Second), f); err != nil {
			t.Fatal(err)
		}
		// The move succeeded once the directory had the replica off the
		// leader and on its target (verify.MoveReplica); the target must
		// be a member: no spare joined.
		if got := c.IDs(); len(got) != 5 {
			t.Errorf("nodes during a move on a placed cluster: got %v, want the 5 members (no spare)", got)
		}
		if got := nem.Stats().Moves; got != 1 {
			t.Errorf("moves: got %d, want 1", got)
		}
		if err := nem.Heal(ctxFor(t, 60*time.Second), f); err != nil {
			t.Fatal(err)
		}
		if err := nem.HealAll(ctxFor(t, 60*time.Second)); err != nil {
			t.Fatal(err)
		}
	})
}
