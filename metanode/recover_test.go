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
