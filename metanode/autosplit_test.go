package metanode_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/metamq/meta/controller"
	"github.com/metamq/meta/metanode/metanodetest"
	"github.com/metamq/meta/rpc/client"
	"github.com/metamq/meta/verify/poll"
)

// autoSplits reads meta_controller_auto_splits_total{reason} from the
// node leading metadata-0 (the active controller).
func autoSplits(t *testing.T, c *metanodetest.Cluster, reason string) float64 {
	t.Helper()
	n := c.Running(c.WaitLeader("metadata-0", 10*time.Second))
	if n == nil {
		t.Fatal("the metadata-0 leader is not running")
	}
	mfs, err := n.Metrics().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "meta_controller_auto_splits_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == reason {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no meta_controller_auto_splits_total{reason=%q} on the controller", reason)
	return 0
}

// groupsStay checks for d that no group of the names appears (automatic
// splits stopped, as SplitMaxGroups or the policy says).
func groupsStay(t *testing.T, cl *client.Client, d time.Duration, absent ...string) {
	t.Helper()
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		gs, err := cl.ListGroups(ctxT(t, 5*time.Second))
		if err != nil {
			continue
		}
		for _, name := range absent {
			if g := gs.Find(name); g != nil {
				t.Fatalf("%s exists (%v): an automatic split the policy forbids", name, g)
			}
		}
	}
}

// Automatic splits by size: with SplitBytes of one byte, data-0 splits
// by itself under a write load (the same split as metactl's, checked as
// awaitSplit checks it), then stops at SplitMaxGroups groups; every
// acknowledged write reads back, and the controller counts the split.
func TestAutomaticSplitBySize(t *testing.T) {
	c := metanodetest.Start(t, fastPlacement(metanodetest.Options{Controller: func(cfg *controller.Config) {
		cfg.SplitBytes, cfg.SplitCooldown, cfg.SplitMaxGroups = 1, time.Second, 2
		cfg.SpreadInterval = 0 // the counters are the active controller's: keep it
	}}))
	cl := c.Client("")
	l := startLoad(cl, 2)
	defer l.cancel()
	awaitSplit(t, c, cl, "data-0", "data-1", 90*time.Second)
	groupsStay(t, cl, 3*time.Second, "data-2", "offset-2")
	l.stop(t, cl)
	if n := autoSplits(t, c, "size"); n < 1 {
		t.Fatalf("%v automatic splits by size counted, want at least 1", n)
	}
}

// Automatic splits by load: with splits by size off, the data group that
// takes writes for SplitLoadFor splits; the offset group, idle, does not.
func TestAutomaticSplitByLoad(t *testing.T) {
	c := metanodetest.Start(t, fastPlacement(metanodetest.Options{Controller: func(cfg *controller.Config) {
		cfg.SplitBytes, cfg.SplitEntriesPerSec, cfg.SplitLoadFor = 0, 5, 2*time.Second
		cfg.SplitCooldown, cfg.SplitMaxGroups, cfg.SpreadInterval = time.Second, 2, 0
	}}))
	cl := c.Client("")
	l := startLoad(cl, 2)
	defer l.cancel()
	poll.For(t, "writes", 30*time.Second, func() error {
		return poll.Check(l.writes.Load() > 50, fmt.Sprintf("%d writes", l.writes.Load()))
	})
	awaitSplit(t, c, cl, "data-0", "data-1", 90*time.Second)
	groupsStay(t, cl, 3*time.Second, "offset-1", "data-2")
	l.stop(t, cl)
	if n := autoSplits(t, c, "load"); n != 1 {
		t.Fatalf("%v automatic splits by load counted, want 1", n)
	}
	if n := autoSplits(t, c, "size"); n != 0 {
		t.Fatalf("%v automatic splits by size counted with splits by size off", n)
	}
}
