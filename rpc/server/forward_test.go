package server_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/metamq/meta/controller"
	"github.com/metamq/meta/metanode"
	"github.com/metamq/meta/metanode/metanodetest"
	"github.com/metamq/meta/rpc/metapb"
	"github.com/metamq/meta/verify/poll"
)

// Any node serves any request, although no node hosts every group: five
// nodes, RF 3, four data groups and two offset groups. Through each node
// alone (a pinned client: it never goes elsewhere), reads of one group,
// listings and fetches over all groups, a lease's keys and a watch over
// every data group answer exactly what was written.
func TestAnyNodeServesAnyRequest(t *testing.T) {
	c := metanodetest.Start(t, metanodetest.Options{Nodes: 5, DataGroups: 4, OffsetGroups: 2,
		Configure: func(cfg *metanode.Config) {
			cfg.ReportInterval = 200 * time.Millisecond
			cfg.ReconcileInterval = 200 * time.Millisecond
		},
		Controller: func(cfg *controller.Config) {
			cfg.PlacementInterval = 200 * time.Millisecond
			cfg.NodeTimeout = 2 * time.Second
		}})
	cl := c.Client("")
	// Wait until every node hosts only some groups (RF 3 of 5).
	poll.For(t, "a placement where no node hosts every group", 60*time.Second, func() error {
		ns, err := cl.ListNodes(ctx10(t))
		if err != nil {
			return err
		}
		for _, n := range ns.Nodes {
			if n.Replicas >= 7 {
				return fmt.Errorf("%s hosts %d of 7 groups", n.Id, n.Replicas)
			}
		}
		return nil
	})
	lease := must(cl.LeaseGrant(ctx10(t), &metapb.LeaseGrantRequest{TtlSeconds: 600}))(t).Id
	var keys []string
	var parts []*metapb.TopicPartition
	for i := range 40 {
		k := fmt.Sprintf("k%02d", i)
		keys = append(keys, k)
		tp := &metapb.TopicPartition{Group: fmt.Sprintf("cg%d", i), Topic: "t", Partition: 0}
		parts = append(parts, tp)
		// Leaderships still move while the controller balances them: a
		// write caught by a move may end unknown; these writes are
		// idempotent, so they are simply made again.
		poll.For(t, "put "+k, 30*time.Second, func() error {
			_, err := cl.Put(ctx10(t), &metapb.PutRequest{Key: []byte(k), Value: []byte(k), Lease: lease})
			return err
		})
		poll.For(t, "commit the offset of "+tp.Group, 30*time.Second, func() error {
			_, err := cl.CommitOffsets(ctx10(t), &metapb.CommitOffsetsRequest{Offsets: []*metapb.OffsetCommit{
				{Group: tp.Group, Topic: tp.Topic, Partition: 0, Offset: int64(i)}}})
			return err
		})
	}
	for _, id := range c.IDs() {
		t.Run(id, func(t *testing.T) {
			pc := c.Client(id)
			for _, k := range keys {
				got := must(pc.Get(ctx10(t), &metapb.GetRequest{Key: []byte(k)}))(t)
				if got.Kv == nil || string(got.Kv.Value) != k {
					t.Fatalf("get %s through %s: %v", k, id, got.Kv)
				}
			}
			list := must(pc.List(ctx10(t), &metapb.ListRequest{Prefix: []byte("k")}))(t)
			var listed []string
			for _, kv := range list.Kvs {
				listed = append(listed, string(kv.Key))
			}
			if !slices.Equal(listed, keys) {
				t.Fatalf("list through %s: got %v, want %v", id, listed, keys)
			}
			fetched := must(pc.FetchOffsets(ctx10(t), &metapb.FetchOffsetsRequest{Partitions: parts}))(t)
			for i, o := range fetched.Offsets {
				if !o.Found || o.Offset != int64(i) {
					t.Fatalf("fetch through %s: partition %d: %v", id, i, o)
				}
			}
			ttl := must(pc.LeaseTimeToLive(ctx10(t), &metapb.LeaseTimeToLiveRequest{Id: lease, Keys: true}))(t)
			if len(ttl.Keys) != len(keys) {
				t.Fatalf("lease keys through %s: got %d, want %d", id, len(ttl.Keys), len(keys))
			}
			// A watch over every data group from revision 1 sees every put.
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			var mu sync.Mutex
			seen := map[string]bool{}
			err := pc.Watch(ctx, &metapb.WatchRequest{Space: metapb.WatchSpace_WATCH_SPACE_KV, Prefix: []byte("k"),
				StartRevisions: map[string]uint64{"data-0": 1, "data-1": 1, "data-2": 1, "data-3": 1}},
				func(resp *metapb.WatchResponse) error {
					mu.Lock()
					defer mu.Unlock()
					for _, e := range resp.Events {
						seen[string(e.Kv.Key)] = true
					}
					if len(seen) == len(keys) {
						return errDone
					}
					return nil
				})
			if err != errDone {
				t.Fatalf("watch through %s: %v after %d of %d keys", id, err, len(seen), len(keys))
			}
		})
	}
}

var errDone = fmt.Errorf("done")
