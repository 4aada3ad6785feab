package metanode_test

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/metamq/meta/metanode"
	"github.com/metamq/meta/metanode/metanodetest"
	"github.com/metamq/meta/rpc/client"
	"github.com/metamq/meta/rpc/metapb"
	"github.com/metamq/meta/verify/poll"
)

// A node restored from a backup knows the new cluster id at once and
// serves before the new cluster's first metadata leader writes its record
// (members, directory). In that window Members answers NO_CLUSTER_RECORD (a
// retry), never the new id with no members; once the record is written
// it lists every member.
func TestMembersBeforeTheClusterRecord(t *testing.T) {
	dir := t.TempDir()
	c := metanodetest.Start(t, metanodetest.Options{Dir: filepath.Join(dir, "nodes")})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	old, err := c.Client("").Members(ctx)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "backup.meta")
	man, err := c.Client("").SaveBackup(ctx, file, nil)
	if err != nil {
		t.Fatalf("save: %v", err)
	}
	c.StopAll()

	var initial []metanode.Peer
	for _, id := range c.IDs() {
		initial = append(initial, metanode.Peer{ID: id, Addr: c.Get(id).Addr})
	}
	b, err := client.OpenBackup(file)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	var groups []metanode.RestoreGroup
	for _, g := range man.Groups {
		groups = append(groups, metanode.RestoreGroup{Name: g.Group, AppliedIndex: g.AppliedIndex, Revision: g.Revision,
			Hash: g.Hash, Keys: g.Keys, Open: func() io.Reader { return b.Section(g) }})
	}
	const newID = "restored-cluster"
	for _, id := range c.IDs() {
		if err := os.RemoveAll(c.Get(id).Dir); err != nil {
			t.Fatal(err)
		}
		cfg := metanode.DefaultConfig()
		cfg.ID, cfg.DataDir, cfg.InitialCluster, cfg.ClusterID = id, c.Get(id).Dir, initial, newID
		cfg.OffsetGroups, cfg.DataGroups = int(man.OffsetGroups), int(man.DataGroups)
		if _, err := metanode.Restore(cfg, groups); err != nil {
			t.Fatalf("restore %s: %v", id, err)
		}
	}

	release := metanode.HoldClusterInit(t)
	var wg sync.WaitGroup
	errs := make(chan error, len(c.IDs()))
	for _, id := range c.IDs() {
		wg.Go(func() {
			if err := c.Restart(id); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	cl := c.Client("")
	// Until a metadata leader is elected the answer is NO_LEADER; then,
	// the record held back, NO_CLUSTER_RECORD: never a list.
	poll.For(t, "NO_CLUSTER_RECORD from Members", 30*time.Second, func() error {
		rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
		defer rcancel()
		ms, err := cl.Members(rctx)
		if err == nil {
			t.Fatalf("Members before the cluster record: got id %q with %d members, want NO_CLUSTER_RECORD", ms.ClusterId, len(ms.Members))
		}
		return poll.Check(reasonOf(err) == metapb.ReasonNoClusterRecord, "got "+err.Error())
	})

	release()
	var ms *metapb.MembersResponse
	poll.For(t, "the restored cluster's members", 30*time.Second, func() error {
		ms, err = cl.Members(ctx)
		return err
	})
	if ms.ClusterId != newID || ms.ClusterId == old.ClusterId || len(ms.Members) != 3 {
		t.Fatalf("restored cluster: id %q with %d members, want %q and 3 members", ms.ClusterId, len(ms.Members), newID)
	}
}
