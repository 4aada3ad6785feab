package metanode_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/metamq/meta/metanode/metanodetest"
	"github.com/metamq/meta/rpc/client"
	"github.com/metamq/meta/rpc/metapb"
	"github.com/metamq/meta/verify/poll"
)

// A watch open across a split delivers every change after it, the moved
// keys' included (now the new group's), each key's revisions rising.
func TestWatchAcrossSplit(t *testing.T) {
	c := metanodetest.Start(t, fastPlacement(metanodetest.Options{}))
	cl := c.Client("")
	low, high := hotKeys(2)
	keys := append(low, high...)
	// Each round's puts, sent again after an unknown outcome (a leader
	// change on a loaded machine): a repeat delivers the same value twice,
	// which the checks below allow.
	put := func(round int) {
		for _, k := range keys {
			err := client.ErrUnknownOutcome
			for try := 0; try < 5 && client.IsUnknown(err); try++ {
				_, err = cl.Put(ctxT(t, 10*time.Second), &metapb.PutRequest{Key: []byte(k), Value: fmt.Appendf(nil, "%d", round)})
			}
			if err != nil {
				t.Fatalf("put %s: %v", k, err)
			}
		}
	}
	put(0)
	var mu sync.Mutex
	seen := map[string][]string{} // key -> values in delivery order
	last := map[string]uint64{}   // key -> last mod revision delivered
	var problems []string
	started := false
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- cl.Watch(ctx, &metapb.WatchRequest{Space: metapb.WatchSpace_WATCH_SPACE_KV, Prefix: []byte("hot/")},
			func(r *metapb.WatchResponse) error {
				mu.Lock()
				defer mu.Unlock()
				started = true
				for _, e := range r.Events {
					k := string(e.Kv.Key)
					if e.Kv.ModRevision <= last[k] {
						problems = append(problems, fmt.Sprintf("%s: revision %d after %d", k, e.Kv.ModRevision, last[k]))
					}
					last[k] = e.Kv.ModRevision
					if v := string(e.Kv.Value); len(seen[k]) == 0 || seen[k][len(seen[k])-1] != v {
						seen[k] = append(seen[k], v) // a repeated put's second event adds nothing
					}
				}
				return nil
			})
	}()
	defer func() { cancel(); <-done }()
	// The first response (a progress notification) says where the watch
	// starts: every put after it is delivered.
	poll.For(t, "the watch to start", 30*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		return poll.Check(started, "no response yet")
	})
	put(1)
	if _, err := cl.SplitGroup(ctxT(t, 20*time.Second), "data-0", 0); err != nil {
		t.Fatalf("split: %v", err)
	}
	awaitSplit(t, c, cl, "data-0", "data-1", 60*time.Second)
	put(2)
	put(3)
	poll.For(t, "every change after the split delivered", 30*time.Second, func() error {
		select {
		case err := <-done:
			t.Fatalf("watch ended: %v", err)
		default:
		}
		mu.Lock()
		defer mu.Unlock()
		for _, k := range keys {
			if v := seen[k]; len(v) == 0 || v[len(v)-1] != "3" {
				return fmt.Errorf("%s: delivered %v, want it to end with 3", k, v)
			}
		}
		return nil
	})
	// A node that does not know a data group a client names yet says
	// so as a retry (the client keeps trying), not as bad input.
	short, cancelShort := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancelShort()
	err := cl.Watch(short, &metapb.WatchRequest{Space: metapb.WatchSpace_WATCH_SPACE_KV, StartRevisions: map[string]uint64{"data-9": 1}},
		func(*metapb.WatchResponse) error { return nil })
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a watch from a data group no node knows yet: got %v, want it retried until its context ended", err)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, k := range keys {
		if v := seen[k]; len(v) < 3 || v[len(v)-3] != "1" || v[len(v)-2] != "2" {
			problems = append(problems, fmt.Sprintf("%s: delivered %v, want ... 1 2 3", k, v))
		}
	}
	if len(problems) > 0 {
		t.Fatalf("watch across the split: %v", problems)
	}
}
