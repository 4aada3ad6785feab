package metanode_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/metamq/meta/metanode/metanodetest"
	"github.com/metamq/meta/rpc/metapb"
)

// TestSplitPauseFigures measures, and checks nothing about, how long a
// split of data-0 holding META_SPLIT_PAUSE_KEYS keys of 100 bytes in its
// moving half (and a quarter as many in the half it keeps) refuses writes
// to the moving range, while writers put to keys of that range:
//
//	META_SPLIT_PAUSE_KEYS=50000 go test -run TestSplitPauseFigures -v ./metanode/
//
// It logs the window in which the logs refuse the range (from the first
// replica of data-0 that applied the fence to the first replica of data-1
// that applied the acquire, polled every millisecond), the split's total
// time, and the writers' put latencies (the client retries RANGE_MOVING
// with a backoff, so a refused put shows as a slow one) and their longest
// gap between two acknowledged puts. Skipped without the variable.
func TestSplitPauseFigures(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("META_SPLIT_PAUSE_KEYS"))
	if n <= 0 {
		t.Skip("META_SPLIT_PAUSE_KEYS not set: nothing to measure")
	}
	c := metanodetest.Start(t, fastPlacement(metanodetest.Options{Patient: true}))
	cl := c.Client("")
	var moving, kept []string
	for i := 0; len(moving) < n || len(kept) < n/4; i++ {
		k := fmt.Sprintf("pause/%08d", i)
		if metapb.RouteHash([]byte(k)) >= 1<<31 {
			if len(moving) < n {
				moving = append(moving, k)
			}
		} else if len(kept) < n/4 {
			kept = append(kept, k)
		}
	}
	value := make([]byte, 100)
	load := time.Now()
	all := append(slices.Clone(moving), kept...)
	// Eight loaders, each with one batch of 500 keys in flight.
	const loaders, batch = 8, 500
	loadErr := make(chan error, loaders)
	for w := range loaders {
		go func() {
			for i := w * batch; i < len(all); i += loaders * batch {
				req := &metapb.MultiPutRequest{}
				for _, k := range all[i:min(i+batch, len(all))] {
					req.Puts = append(req.Puts, &metapb.PutRequest{Key: []byte(k), Value: value})
				}
				// A put of the same value again is harmless: a batch
				// whose outcome is unknown (a leadership lost on a
				// loaded machine) is sent again.
				for try := 1; ; try++ {
					_, err := cl.MultiPut(ctxT(t, 60*time.Second), req)
					if err == nil {
						break
					}
					if try == 5 {
						loadErr <- err
						return
					}
				}
			}
			loadErr <- nil
		}()
	}
	for range loaders {
		if err := <-loadErr; err != nil {
			t.Fatalf("load: %v", err)
		}
	}
	t.Logf("loaded %d keys in the moving range, %d in the kept one, in %v", len(moving), len(kept), time.Since(load).Round(time.Millisecond))

	// The writers: puts to keys of the moving range, one at a time each.
	type put struct {
		start, end time.Time
		ok         bool
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	var puts []put
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				k := moving[(w*7919+i*104729)%len(moving)]
				s := time.Now()
				pctx, pcancel := context.WithTimeout(ctx, 30*time.Second)
				_, err := cl.Put(pctx, &metapb.PutRequest{Key: []byte(k), Value: []byte("during")})
				pcancel()
				mu.Lock()
				puts = append(puts, put{start: s, end: time.Now(), ok: err == nil})
				mu.Unlock()
			}
		}()
	}
	// The window, as the replicas' logs decide it.
	var fenceAt, acquireAt time.Time // written by the poller, read once it is done
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil && acquireAt.IsZero() {
			now := time.Now()
			for _, id := range c.IDs() {
				nd := c.Running(id)
				if nd == nil {
					continue
				}
				if m := nd.FSM("data-0"); m != nil && fenceAt.IsZero() {
					if own := m.Ownership(); own != nil && len(own.Moving) > 0 {
						fenceAt = now
					}
				}
				if m := nd.FSM("data-1"); m != nil && !fenceAt.IsZero() {
					if own := m.Ownership(); own != nil && !own.Ingesting && len(own.Owned) > 0 {
						acquireAt = now
					}
				}
			}
			time.Sleep(time.Millisecond)
		}
	}()
	time.Sleep(2 * time.Second)
	start := time.Now()
	if _, err := cl.SplitGroup(ctxT(t, 20*time.Second), "data-0", 0); err != nil {
		t.Fatalf("split: %v", err)
	}
	// About a minute per 100,000 keys moved, at least 10.
	awaitSplit(t, c, cl, "data-0", "data-1", max(10, time.Duration(n/100000))*time.Minute)
	done := time.Since(start)
	time.Sleep(2 * time.Second)
	stopAt := time.Now()
	cancel()
	wg.Wait()

	var lat []time.Duration
	var gap time.Duration
	var lastOK time.Time
	slices.SortFunc(puts, func(a, b put) int { return a.end.Compare(b.end) })
	failed := 0
	for _, p := range puts {
		if p.end.After(stopAt) {
			continue // cut short by the end of the run
		}
		if !p.ok {
			failed++
			continue
		}
		lat = append(lat, p.end.Sub(p.start))
		if !lastOK.IsZero() && p.end.Sub(lastOK) > gap {
			gap = p.end.Sub(lastOK)
		}
		lastOK = p.end
	}
	slices.Sort(lat)
	q := func(f float64) time.Duration {
		return lat[min(len(lat)-1, int(f*float64(len(lat))))].Round(time.Millisecond)
	}
	t.Logf("split of %d keys: fence to acquire %v (refused window, by the logs); split total %v", len(moving), acquireAt.Sub(fenceAt).Round(time.Millisecond), done.Round(time.Millisecond))
	t.Logf("puts to the moving range: %d ok, %d failed; latency p50 %v p99 %v max %v; longest gap between acknowledged puts %v",
		len(lat), failed, q(0.5), q(0.99), lat[len(lat)-1].Round(time.Millisecond), gap.Round(time.Millisecond))
}
