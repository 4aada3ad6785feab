package metanode_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/metamq/meta/metanode"
	"github.com/metamq/meta/metanode/metanodetest"
	"github.com/metamq/meta/rpc/metapb"
	"github.com/metamq/meta/sm"
	"github.com/metamq/meta/sm/logpb"
	"github.com/metamq/meta/verify/poll"
)

// The cluster version in process: with one member reporting the base
// level (--feature-level, as a node of the previous release would be),
// every node refuses this release's operations before proposing them with
// ErrClusterVersion naming both versions; once that member runs at this
// release's level the cluster version rises on every node and they are
// served; the member restarted below it then refuses to run.
func TestClusterVersionGatesNewOperations(t *testing.T) {
	var n3Level atomic.Uint32
	n3Level.Store(sm.BaseLevel)
	c := metanodetest.Start(t, metanodetest.Options{DataGroups: 1, Configure: func(cfg *metanode.Config) {
		cfg.ReconcileInterval = 200 * time.Millisecond
		if cfg.ID == "n3" {
			cfg.FeatureLevel = n3Level.Load()
		}
	}})
	group := metapb.DataGroupFor([]byte("k"), 1)
	kvPuts := &logpb.Op{Op: &logpb.Op_KvPuts{KvPuts: &logpb.KVPuts{Puts: []*logpb.KVPut{{Key: []byte("k"), Value: []byte("v")}}}}}
	propose := func(id string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := c.Running(id).Propose(ctx, group, kvPuts)
		return err
	}
	for _, id := range c.IDs() {
		err := propose(id)
		var cv *metanode.ClusterVersionError
		if !errors.Is(err, metanode.ErrClusterVersion) || !errors.As(err, &cv) || cv.Cluster != sm.BaseLevel || cv.Required != sm.OpLevel(kvPuts) {
			t.Fatalf("KVPuts through %s with n3 at the base level: got %v, want ErrClusterVersion naming %d and %d", id, err, sm.BaseLevel, sm.OpLevel(kvPuts))
		}
		if metapb.ReasonOf(err) != metapb.ReasonClusterVersion {
			t.Fatalf("reason %q, want %s", metapb.ReasonOf(err), metapb.ReasonClusterVersion)
		}
	}

	c.Stop("n3")
	n3Level.Store(0)
	if err := c.Restart("n3"); err != nil {
		t.Fatal(err)
	}
	poll.For(t, "the cluster version to rise on every node", 60*time.Second, func() error {
		for _, id := range c.IDs() {
			if v := c.Running(id).ClusterVersion(); v != sm.FeatureLevel {
				return errors.New(id + " still at the lower cluster version")
			}
		}
		return nil
	})
	for _, id := range c.IDs() {
		if err := propose(id); err != nil {
			t.Fatalf("KVPuts through %s once every member runs level %d: %v", id, sm.FeatureLevel, err)
		}
	}

	// A downgrade below the cluster version: refused at start (its stored
	// replica) or, when its replica applied the raise only after, as soon
	// as it sees the directory.
	c.Stop("n3")
	n3Level.Store(sm.BaseLevel)
	err := c.Restart("n3")
	if err == nil {
		select {
		case err = <-c.Running("n3").Failed():
		case <-time.After(60 * time.Second):
			t.Fatal("n3 runs below the cluster version")
		}
	}
	if !errors.Is(err, metanode.ErrClusterVersion) {
		t.Fatalf("n3 restarted below the cluster version: got %v, want ErrClusterVersion", err)
	}
}

// A node restarted where it cannot fetch the directory (cut off from
// the others) reports the cluster version its stored replica of
// metadata-0 holds, not the base level: the harness's upgrade saw the
// version go down when a node restarted on a real newer release.
func TestRestartedNodeReportsItsStoredClusterVersion(t *testing.T) {
	c := metanodetest.Start(t, metanodetest.Options{})
	poll.ForTrue(t, "n1's replica of metadata-0 to apply the cluster version at this release's level", 30*time.Second, func() bool {
		d, err := c.Running("n1").FSM(metapb.MetadataGroup).Directory()
		return err == nil && d.Level() == sm.FeatureLevel
	})
	// A synced write after it makes n1's applied state of the raise
	// durable (the state machines write without a sync; one write-ahead
	// log for all).
	if _, err := c.Client("n1").Put(ctxT(t, 10*time.Second), &metapb.PutRequest{Key: []byte("k"), Value: []byte("v")}); err != nil {
		t.Fatal(err)
	}
	c.Stop("n1")
	for _, other := range []string{"n2", "n3"} {
		c.Net.Block("n1", other)
		c.Net.Block(other, "n1")
	}
	if err := c.Restart("n1"); err != nil {
		t.Fatal(err)
	}
	if v := c.Running("n1").ClusterVersion(); v != sm.FeatureLevel {
		t.Fatalf("n1 restarted without the others: cluster version %d, want %d (its stored replica's)", v, sm.FeatureLevel)
	}
}
