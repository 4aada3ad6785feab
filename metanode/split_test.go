package metanode_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/metamq/meta/metanode"
	"github.com/metamq/meta/metanode/metanodetest"
	"github.com/metamq/meta/rpc/client"
	"github.com/metamq/meta/rpc/metapb"
	"github.com/metamq/meta/sm/logpb"
	"github.com/metamq/meta/verify"
	"github.com/metamq/meta/verify/poll"
)

// hotKeys returns n keys on each side of the middle of the route hash
// space (the moving range of a midpoint split of data-0 is the upper
// side).
func hotKeys(n int) (low, high []string) {
	for i := 0; len(low) < n || len(high) < n; i++ {
		k := fmt.Sprintf("hot/%d", i)
		if metapb.RouteHash([]byte(k)) < 1<<31 {
			if len(low) < n {
				low = append(low, k)
			}
		} else if len(high) < n {
			high = append(high, k)
		}
	}
	return low, high
}

// kvLoad runs sessions of puts and linearizable gets on hot keys on both
// sides of the split, recorded for the KV checker.
type kvLoad struct {
	rec    *verify.Recorder
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func startKVLoad(cl *client.Client, keys []string, sessions int) *kvLoad {
	ctx, cancel := context.WithCancel(context.Background())
	l := &kvLoad{rec: verify.NewRecorder(verify.NewClock(), &verify.History{}, 10*time.Second), cancel: cancel}
	for p := range sessions {
		s := l.rec.Session(cl, "any")
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			rng := rand.New(rand.NewPCG(uint64(p), 7))
			for ctx.Err() == nil {
				k := keys[rng.IntN(len(keys))]
				if rng.IntN(2) == 0 {
					s.Put(ctx, k, s.NextValue())
				} else {
					s.Get(ctx, k, false)
				}
			}
		}()
	}
	return l
}

// check stops the load and checks its history is linearizable (and that
// it holds successful operations on the moving side after the split).
func (l *kvLoad) check(t *testing.T) {
	t.Helper()
	l.cancel()
	l.wg.Wait()
	ops := l.rec.History().Ops()
	okOps := 0
	for _, op := range ops {
		if op.Outcome == verify.OutcomeOK {
			okOps++
		}
	}
	for _, r := range verify.CheckLinearizability(ops, 60*time.Second).Results {
		if r.Checker == verify.CheckerKV {
			if r.Verdict != verify.Valid {
				t.Fatalf("kv across the split: got %s (%v: %s), want valid", r.Verdict, r.Failing, r.Details)
			}
			t.Logf("kv across the split: %d ops (%d ok), linearizable", len(ops), okOps)
			return
		}
	}
	t.Fatal("no kv result")
}

// awaitSplit waits until the split of parent into child is done, and
// checks the map: the parent holds the lower half, the child the upper,
// both at the split's version; the child's own log owns its range.
func awaitSplit(t *testing.T, c *metanodetest.Cluster, cl *client.Client, parent, child string, timeout time.Duration) {
	t.Helper()
	poll.For(t, "split of "+parent+" done", timeout, func() error {
		gs, err := cl.ListGroups(ctxT(t, 5*time.Second))
		if err != nil {
			return err
		}
		p, ch := gs.Find(parent), gs.Find(child)
		if p == nil || ch == nil || p.SplitChild != "" || ch.State != "active" {
			return fmt.Errorf("parent %v, child %v", p, ch)
		}
		if len(p.Ranges) != 1 || len(ch.Ranges) != 1 || p.Ranges[0].Hi != ch.Ranges[0].Lo || ch.Ranges[0].Hi != metapb.HashSpace ||
			p.Ranges[0].Version != ch.Ranges[0].Version || p.Ranges[0].Version < 2 {
			return fmt.Errorf("ranges after the split: %s %v, %s %v", parent, p.Ranges, child, ch.Ranges)
		}
		return nil
	})
	// Every replica of either group, wherever it is now: once the split
	// is done the controller may move the child's replicas (it is made on
	// the parent's nodes, which a balanced placement then spreads).
	poll.For(t, child+" owns its range by its own log on every replica", timeout, func() error {
		hosts := 0
		for _, id := range c.IDs() {
			n := c.Running(id)
			if n == nil {
				continue
			}
			if m := n.FSM(child); m != nil {
				hosts++
				if own := m.Ownership(); own == nil || own.Ingesting || len(own.Owned) != 1 || own.Owned[0].Lo != 1<<31 {
					return fmt.Errorf("%s: %s owns %v", id, child, own)
				}
			}
			if pm := n.FSM(parent); pm != nil {
				if own := pm.Ownership(); own == nil || len(own.Moving) != 0 || len(own.Owned) != 1 || own.Owned[0].Hi != 1<<31 {
					return fmt.Errorf("%s: %s owns %v", id, parent, own)
				}
			}
		}
		return poll.Check(hosts > 0, "no node hosts "+child)
	})
}

// A split while puts and gets run on hot keys in both halves: the history
// is linearizable across it, every acknowledged write reads back after
// it, the client made before the split (its map names data-0 alone) still
// answers right, and the two groups' logs own the halves the map gives
// them.
func TestSplitUnderLoad(t *testing.T) {
	c := metanodetest.Start(t, fastPlacement(metanodetest.Options{}))
	cl := c.Client("")
	low, high := hotKeys(3)
	kv := startKVLoad(cl, append(low, high...), 4)
	defer kv.cancel()
	l := startLoad(cl, 2)
	defer l.cancel()
	poll.For(t, "writes before the split", 30*time.Second, func() error {
		return poll.Check(l.writes.Load() > 50, fmt.Sprintf("%d writes", l.writes.Load()))
	})
	resp, err := cl.SplitGroup(ctxT(t, 20*time.Second), "data-0", 0)
	if err != nil {
		t.Fatalf("split: %v", err)
	}
	if resp.Child != "data-1" || resp.Range.Lo != 1<<31 || resp.Range.Hi != metapb.HashSpace {
		t.Fatalf("split: got %v, want data-1 taking the upper half", resp)
	}
	if _, err := cl.SplitGroup(ctxT(t, 20*time.Second), "data-0", 0); reasonOf(err) != metapb.ReasonRevisionConflict {
		t.Fatalf("a second split while one is under way: got %v, want REVISION_CONFLICT", err)
	}
	awaitSplit(t, c, cl, "data-0", "data-1", 60*time.Second)
	before := l.writes.Load()
	poll.For(t, "writes after the split", 30*time.Second, func() error {
		return poll.Check(l.writes.Load() > before+50, fmt.Sprintf("%d writes", l.writes.Load()-before))
	})
	l.stop(t, cl)
	kv.check(t)
}

// The node leading metadata-0 (which drives the split) crashes before each
// step: the next leader resumes from the recorded phase, and the split
// completes with every acknowledged write intact.
func TestSplitResumesAfterControllerCrashAtEachPhase(t *testing.T) {
	for _, phase := range []logpb.SplitPhase{logpb.SplitPhase_SPLIT_PHASE_PREPARED, logpb.SplitPhase_SPLIT_PHASE_COPIED, logpb.SplitPhase_SPLIT_PHASE_FENCED,
		logpb.SplitPhase_SPLIT_PHASE_ACQUIRED, logpb.SplitPhase_SPLIT_PHASE_PUBLISHED} {
		t.Run(phase.String(), func(t *testing.T) {
			reached := make(chan struct{})
			var once sync.Once
			metanode.SetSplitHook(func(ctx context.Context, _ string, at logpb.SplitPhase) {
				if at != phase {
					return
				}
				first := false
				once.Do(func() { first = true; close(reached) })
				if first {
					<-ctx.Done() // this leader never takes the step
				}
			})
			t.Cleanup(func() { metanode.SetSplitHook(nil) })
			c := metanodetest.Start(t, fastPlacement(metanodetest.Options{}))
			cl := c.Client("")
			l := startLoad(cl, 2)
			defer l.cancel()
			poll.For(t, "writes before the split", 30*time.Second, func() error {
				return poll.Check(l.writes.Load() > 30, fmt.Sprintf("%d writes", l.writes.Load()))
			})
			if _, err := cl.SplitGroup(ctxT(t, 20*time.Second), "data-0", 0); err != nil {
				t.Fatalf("split: %v", err)
			}
			select {
			case <-reached:
			case <-time.After(60 * time.Second):
				t.Fatalf("the split never reached %s", phase)
			}
			crashed := c.Leader(metapb.MetadataGroup)
			t.Logf("split at %s: crashing metadata-0's leader %s", phase, crashed)
			c.Crash(crashed)
			c.WaitLeader(metapb.MetadataGroup, 30*time.Second)
			if err := c.Restart(crashed); err != nil {
				t.Fatalf("restart %s: %v", crashed, err)
			}
			awaitSplit(t, c, cl, "data-0", "data-1", 90*time.Second)
			l.stop(t, cl)
		})
	}
}

// A move of a group that is splitting fails cleanly (REVISION_CONFLICT,
// nothing changed); the split completes.
func TestSplitRacingMoveFailsCleanly(t *testing.T) {
	hold := make(chan struct{})
	metanode.SetSplitHook(func(ctx context.Context, _ string, at logpb.SplitPhase) {
		if at == logpb.SplitPhase_SPLIT_PHASE_FENCED {
			select {
			case <-hold:
			case <-ctx.Done():
			}
		}
	})
	t.Cleanup(func() { metanode.SetSplitHook(nil) })
	c := metanodetest.Start(t, fastPlacement(metanodetest.Options{Nodes: 4, DataGroups: 1}))
	cl := c.Client("")
	waitPlacement(t, cl, 3, []string{"n1", "n2", "n3", "n4"}, 60*time.Second)
	gs, err := cl.ListGroups(ctxT(t, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var from, to string
	for _, g := range gs.Groups {
		if g.Group == "data-0" {
			held := map[string]bool{}
			for _, r := range g.Replicas {
				held[r.Node] = true
			}
			from = g.Replicas[0].Node
			for _, id := range []string{"n1", "n2", "n3", "n4"} {
				if !held[id] {
					to = id
				}
			}
		}
	}
	if _, err := cl.SplitGroup(ctxT(t, 20*time.Second), "data-0", 0); err != nil {
		t.Fatalf("split: %v", err)
	}
	if _, err := cl.MoveReplica(ctxT(t, 20*time.Second), "data-0", from, to); reasonOf(err) != metapb.ReasonRevisionConflict {
		t.Fatalf("move of a splitting group: got %v, want REVISION_CONFLICT", err)
	}
	close(hold)
	awaitSplit(t, c, cl, "data-0", "data-1", 60*time.Second)
}

// putAll writes keys (value: the key) in batches.
func putAll(t *testing.T, cl *client.Client, keys []string, value func(string) []byte) {
	t.Helper()
	for i := 0; i < len(keys); i += 500 {
		req := &metapb.MultiPutRequest{}
		for _, k := range keys[i:min(i+500, len(keys))] {
			req.Puts = append(req.Puts, &metapb.PutRequest{Key: []byte(k), Value: value(k)})
		}
		if _, err := cl.MultiPut(ctxT(t, 30*time.Second), req); err != nil {
			t.Fatalf("load: %v", err)
		}
	}
}

// The child copies the range before the parent's fence, while the parent
// still serves it: when the directory records the copy (the step before
// the fence), every replica of the child holds a complete bulk copy and
// the parent has released nothing (it tracks the range). A put of a new
// key, an overwrite and a delete made in the range then, between the copy
// and the fence, are in the child after the split (the replay of the
// tail); every other key reads back as written.
func TestSplitCopiesBeforeFenceAndReplaysTail(t *testing.T) {
	copied, resume := make(chan struct{}), make(chan struct{})
	var once sync.Once
	metanode.SetSplitHook(func(ctx context.Context, _ string, at logpb.SplitPhase) {
		if at != logpb.SplitPhase_SPLIT_PHASE_COPIED {
			return
		}
		first := false
		once.Do(func() { first = true; close(copied) })
		if first {
			select {
			case <-resume:
			case <-ctx.Done():
			}
		}
	})
	t.Cleanup(func() { metanode.SetSplitHook(nil) })
	c := metanodetest.Start(t, fastPlacement(metanodetest.Options{}))
	cl := c.Client("")
	_, high := hotKeys(1100) // more than one copy chunk
	putAll(t, cl, high[:1050], func(k string) []byte { return []byte(k) })
	if _, err := cl.SplitGroup(ctxT(t, 20*time.Second), "data-0", 0); err != nil {
		t.Fatalf("split: %v", err)
	}
	select {
	case <-copied:
	case <-time.After(60 * time.Second):
		t.Fatal("the split never recorded its copy")
	}
	// (Followers apply the last chunk a moment later: poll.)
	poll.For(t, "data-1's bulk copy done on every replica, data-0 still serving", 30*time.Second, func() error {
		for _, id := range c.IDs() {
			n := c.Running(id)
			if m := n.FSM("data-1"); m != nil {
				st, err := m.CopyState()
				if err != nil || st == nil || !st.Done || st.Acquired {
					return fmt.Errorf("%s: data-1's copy before the fence: %v (%v), want the bulk copy done", id, st, err)
				}
			}
			if own := n.FSM("data-0").Ownership(); len(own.Tracking) != 1 || len(own.Moving) != 0 {
				return fmt.Errorf("%s: data-0 before the fence: %v, want the range tracked, none released", id, own)
			}
		}
		return nil
	})
	// The tail: written after the copy, before the fence.
	if _, err := cl.Put(ctxT(t, 20*time.Second), &metapb.PutRequest{Key: []byte(high[0]), Value: []byte("overwritten")}); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Delete(ctxT(t, 20*time.Second), &metapb.DeleteRequest{Key: []byte(high[1])}); err != nil {
		t.Fatal(err)
	}
	putAll(t, cl, high[1050:], func(string) []byte { return []byte("new") })
	close(resume)
	awaitSplit(t, c, cl, "data-0", "data-1", 60*time.Second)
	for i, k := range high {
		if i > 1 && i < 1050 && i%20 != 0 {
			continue // a sample of the keys left alone (each read is a round of heartbeats)
		}
		got, ok := get(t, cl, k, lin)
		want, present := k, true
		switch {
		case i == 0:
			want = "overwritten"
		case i == 1:
			present = false
		case i >= 1050:
			want = "new"
		}
		if ok != present || present && got != want {
			t.Fatalf("%s after the split: %q (present %v), want %q (present %v)", k, got, ok, want, present)
		}
	}
}

// writeBetweenBaseAndFence splits data-0 at its middle with one put to
// key, of the moving upper side, made after the split read the range's
// base digest and before it proposed the fence (the write the fence
// digest takes from the sum of tracked changes, not from a scan). It
// returns the cluster and a client once the put was made.
func writeBetweenBaseAndFence(t *testing.T, key string) (*metanodetest.Cluster, *client.Client) {
	if metapb.RouteHash([]byte(key)) < 1<<31 {
		t.Fatalf("%s is not on the moving side", key)
	}
	c := metanodetest.Start(t, fastPlacement(metanodetest.Options{}))
	cl := c.Client("")
	_, high := hotKeys(50)
	putAll(t, cl, append(high, key), func(k string) []byte { return []byte("old") })
	wrote := make(chan error, 1)
	var once sync.Once
	metanode.SetSplitFenceHook(func(ctx context.Context, group string) {
		once.Do(func() {
			_, err := cl.Put(ctx, &metapb.PutRequest{Key: []byte(key), Value: []byte("new")})
			wrote <- err
		})
	})
	t.Cleanup(func() { metanode.SetSplitFenceHook(nil) })
	if _, err := cl.SplitGroup(ctxT(t, 20*time.Second), "data-0", 0); err != nil {
		t.Fatalf("split: %v", err)
	}
	select {
	case err := <-wrote:
		if err != nil {
			t.Fatalf("the put between the base and the fence: %v", err)
		}
	case <-ctxT(t, 60*time.Second).Done():
		t.Fatal("the split never reached its fence")
	}
	return c, cl
}

// A put made after the split read its base digest and before the fence
// is in the child afterwards (the tail's replay, and the fence digest's
// sum of changes, both have it); the scan that verifies the fence digest
// before the drop agrees, and the split completes.
func TestSplitWriteBetweenBaseAndFence(t *testing.T) {
	const key = "between/1"
	c, cl := writeBetweenBaseAndFence(t, key)
	awaitSplit(t, c, cl, "data-0", "data-1", 90*time.Second)
	if got, ok := get(t, cl, key, lin); !ok || got != "new" {
		t.Fatalf("%s after the split: %q (found %v), want new", key, got, ok)
	}
}
