package metanodetest_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/metamq/meta/metanode/metanodetest"
	"github.com/metamq/meta/rpc/metapb"
	"github.com/metamq/meta/verify"
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
