package metanode_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/metamq/meta/metanode"
	"github.com/metamq/meta/metanode/metanodetest"
	"github.com/metamq/meta/rpc/metapb"
	"github.com/metamq/meta/verify/poll"
)

// A recovery interrupted after metadata-0 (its members and directory
// already rewritten, the data groups not yet recovered) is run again and
// finishes: the node then serves alone with every acknowledged write.
func TestRecoverInterruptedRunsAgain(t *testing.T) {
	c := metanodetest.Start(t, metanodetest.Options{DataGroups: 2, Dir: filepath.Join(t.TempDir(), "nodes")})
	cl := c.Client("")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const keys = 100
	for i := range keys {
		if _, err := cl.Put(ctx, &metapb.PutRequest{Key: fmt.Appendf(nil, "k%03d", i), Value: fmt.Appendf(nil, "v%d", i)}); err != nil {
			t.Fatalf("put k%03d: %v", i, err)
		}
	}
	survivor := c.IDs()[0]
	groups := []string{metapb.MetadataGroup, "offset-0", "data-0", "data-1"}
	poll.For(t, survivor+" to apply what every leader applied", 30*time.Second, func() error {
		for _, g := range groups {
			l := c.Leader(g)
			if l == "" {
				return fmt.Errorf("%s: no leader", g)
			}
			if have, want := c.Running(survivor).FSM(g).AppliedIndex(), c.Running(l).FSM(g).AppliedIndex(); have < want {
				return fmt.Errorf("%s: applied %d, leader %d", g, have, want)
			}
		}
		return nil
	})
	loseAllBut(t, c, survivor)

	cfg := metanode.DefaultConfig()
	cfg.ID, cfg.DataDir, cfg.Logger = survivor, c.Get(survivor).Dir, metanodetest.NewLogger(t)
	errCut := errors.New("cut short")
	undo := metanode.SetRecoverFault(func(group string) error {
		if group == "data-1" {
			return errCut
		}
		return nil
	})
	if _, err := metanode.Recover(cfg, metanode.RecoverOptions{}); !errors.Is(err, errCut) {
		t.Fatalf("interrupted recovery: %v", err)
	}
	undo()
	rep, err := metanode.Recover(cfg, metanode.RecoverOptions{})
	if err != nil {
		t.Fatalf("recovery run again: %v", err)
	}
	if len(rep.Removed) != 0 || len(rep.Groups) != len(groups) {
		t.Fatalf("recovery run again: %+v, want every group and no member left to remove", rep)
	}
	if err := c.Restart(survivor); err != nil {
		t.Fatal(err)
	}
	cl = c.Client(survivor)
	for i := range keys {
		k := fmt.Appendf(nil, "k%03d", i)
		got, err := cl.Get(ctx, &metapb.GetRequest{Key: k})
		if err != nil || got.Kv == nil || string(got.Kv.Value) != fmt.Sprintf("v%d", i) {
			t.Fatalf("acknowledged %s: %v, %v", k, got, err)
		}
	}
	ms, err := cl.Members(ctx)
	if err != nil || len(ms.Members) != 1 || ms.Members[0].Id != survivor {
		t.Fatalf("members %v, %v: want %s alone", ms, err, survivor)
	}
	if _, err := cl.Put(ctx, &metapb.PutRequest{Key: []byte("after"), Value: []byte("1")}); err != nil {
		t.Fatalf("put after recovery: %v", err)
	}
}

// An entry the survivor had in its log but never saw committed (a write
// whose client got no answer: an unknown outcome) is kept: recovery
// applies the survivor's whole log, as it may have been acknowledged.
func TestRecoverKeepsUncommittedEntries(t *testing.T) {
	c := metanodetest.Start(t, metanodetest.Options{Dir: filepath.Join(t.TempDir(), "nodes")})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	survivor := c.WaitLeader("data-0", 30*time.Second)
	cl := c.Client(survivor)
	if _, err := cl.Put(ctx, &metapb.PutRequest{Key: []byte("acked"), Value: []byte("1")}); err != nil {
		t.Fatal(err)
	}
	var others []string
	for _, id := range c.IDs() {
		if id != survivor {
			others = append(others, id)
		}
	}
	c.Net.Partition([]string{survivor}, others)
	pctx, pcancel := context.WithTimeout(ctx, 3*time.Second)
	_, err := cl.Put(pctx, &metapb.PutRequest{Key: []byte("limbo"), Value: []byte("?")})
	pcancel()
	if err == nil {
		t.Fatal("a put on a leader cut off from its followers was acknowledged")
	}
	poll.For(t, "the write to be in the survivor's log, not committed", 10*time.Second, func() error {
		st, err := cl.Status(ctx, c.Get(survivor).Addr)
		if err != nil {
			return err
		}
		for _, g := range st.Groups {
			if g.Group == "data-0" && g.LastLogIndex <= g.CommitIndex {
				return fmt.Errorf("data-0: last log %d, commit %d", g.LastLogIndex, g.CommitIndex)
			}
		}
		return nil
	})
	loseAllBut(t, c, survivor)
	c.Net.Heal()
	cfg := metanode.DefaultConfig()
	cfg.ID, cfg.DataDir, cfg.Logger = survivor, c.Get(survivor).Dir, metanodetest.NewLogger(t)
	if _, err := metanode.Recover(cfg, metanode.RecoverOptions{}); err != nil {
		t.Fatalf("recover: %v", err)
	}
	if err := c.Restart(survivor); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"acked", "limbo"} {
		got, err := cl.Get(ctx, &metapb.GetRequest{Key: []byte(k)})
		if err != nil || got.Kv == nil {
			t.Fatalf("%s after recovery: %v, %v (want it kept)", k, got, err)
		}
	}
}

// loseAllBut crashes every node of c and wipes every one but survivor, as
// losing a majority does.
func loseAllBut(t *testing.T, c *metanodetest.Cluster, survivor string) {
	t.Helper()
	for _, id := range c.IDs() {
		dir := c.Get(id).Dir
		c.Crash(id)
		if id != survivor {
			c.Forget(id)
			if err := os.RemoveAll(dir); err != nil {
				t.Fatal(err)
			}
		}
	}
}
