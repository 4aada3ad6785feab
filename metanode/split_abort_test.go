package metanode_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/metamq/meta/metanode"
	"github.com/metamq/meta/metanode/metanodetest"
	"github.com/metamq/meta/rpc/client"
	"github.com/metamq/meta/rpc/metapb"
	"github.com/metamq/meta/sm/logpb"
	"github.com/metamq/meta/verify/poll"
)

// groupsOf returns the named groups of a listing (nil where absent).
func groupsOf(t *testing.T, cl *client.Client, names ...string) ([]*metapb.GroupInfo, error) {
	t.Helper()
	gs, err := cl.ListGroups(ctxT(t, 5*time.Second))
	if err != nil {
		return nil, err
	}
	out := make([]*metapb.GroupInfo, len(names))
	for _, g := range gs.Groups {
		for i, n := range names {
			if g.Group == n {
				out[i] = g
			}
		}
	}
	return out, nil
}

// awaitAborted waits until the split of parent into child is aborted: the
// parent's record holds no split and the ranges it had before (same
// versions); the child's is deleting with no replicas, and no node runs a
// replica of it; the parent's own log tracks and releases nothing and
// records the abort, on every replica.
func awaitAborted(t *testing.T, c *metanodetest.Cluster, cl *client.Client, parent, child string, before []*metapb.KeyRange, timeout time.Duration) {
	t.Helper()
	poll.For(t, "split of "+parent+" aborted", timeout, func() error {
		gs, err := groupsOf(t, cl, parent, child)
		if err != nil {
			return err
		}
		p, ch := gs[0], gs[1]
		if p == nil || p.SplitChild != "" || ch == nil || ch.State != "deleting" || len(ch.Replicas) != 0 || len(ch.Ranges) != 0 {
			return fmt.Errorf("parent %v, child %v", p, ch)
		}
		if len(p.Ranges) != len(before) {
			return fmt.Errorf("%s's ranges after the abort: %v, want %v", parent, p.Ranges, before)
		}
		for i, r := range before {
			if p.Ranges[i].Lo != r.Lo || p.Ranges[i].Hi != r.Hi || p.Ranges[i].Version != r.Version {
				return fmt.Errorf("%s's ranges after the abort: %v, want %v", parent, p.Ranges, before)
			}
		}
		return nil
	})
	poll.For(t, child+" deleted on every node, "+parent+" owning its range by its own log", timeout, func() error {
		for _, id := range c.IDs() {
			n := c.Running(id)
			if n == nil {
				continue
			}
			if m := n.FSM(child); m != nil {
				return fmt.Errorf("%s still runs a replica of %s", id, child)
			}
			if pm := n.FSM(parent); pm != nil {
				if own := pm.Ownership(); own == nil || len(own.Tracking) != 0 || len(own.Moving) != 0 || len(own.Aborted) != 1 || own.Aborted[0].To != child {
					return fmt.Errorf("%s: %s owns %v, want its ranges, nothing tracked or released, the split to %s aborted", id, parent, own, child)
				}
			}
		}
		return nil
	})
}

// holdAt returns a split hook that blocks the first step at phase until
// the returned release is called (or the step's context ends), and a
// channel closed when it is reached.
func holdAt(phase logpb.SplitPhase) (reached <-chan struct{}, release func()) {
	r, rel := make(chan struct{}), make(chan struct{})
	var once, relOnce sync.Once
	metanode.SetSplitHook(func(ctx context.Context, _ string, at logpb.SplitPhase) {
		if at != phase {
			return
		}
		first := false
		once.Do(func() { first = true; close(r) })
		if first {
			select {
			case <-rel:
			case <-ctx.Done():
			}
		}
	})
	return r, func() { relOnce.Do(func() { close(rel) }) }
}

// splitToCopied starts a cluster, writes n hot keys (those the split moves)
// and splits data-0, returning once the split reached copied: the
// cluster, a client, the keys, data-0's ranges before and the split's
// answer.
func splitToCopied(t *testing.T, n int, copied <-chan struct{}) (*metanodetest.Cluster, *client.Client, []string, []*metapb.KeyRange, *metapb.SplitGroupResponse) {
	t.Helper()
	c := metanodetest.Start(t, fastPlacement(metanodetest.Options{}))
	cl := c.Client("")
	_, high := hotKeys(n)
	putAll(t, cl, high, func(k string) []byte { return []byte(k) })
	gs, err := groupsOf(t, cl, "data-0")
	if err != nil || gs[0] == nil {
		t.Fatalf("groups: %v %v", gs, err)
	}
	resp, err := cl.SplitGroup(ctxT(t, 20*time.Second), "data-0", 0)
	if err != nil {
		t.Fatalf("split: %v", err)
	}
	waitReached(t, copied, "copied")
	return c, cl, high, gs[0].Ranges, resp
}

func waitReached(t *testing.T, reached <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-reached:
	case <-time.After(60 * time.Second):
		t.Fatalf("the split never reached %s", what)
	}
}

// A split aborted before its fence (its copy done, the parent tracking
// the range): the abort answers once the parent's log refuses the fence;
// then the new group is deleted on every node, the parent keeps its
// ranges at their versions, every key reads back as written, a second
// abort finds no split, and the next split makes a group of a new name.
func TestSplitAbortBeforeFence(t *testing.T) {
	reached, release := holdAt(logpb.SplitPhase_SPLIT_PHASE_COPIED)
	t.Cleanup(func() { release(); metanode.SetSplitHook(nil) })
	c, cl, high, before, resp := splitToCopied(t, 300, reached)
	ab, err := cl.AbortSplit(ctxT(t, 30*time.Second), "data-0")
	if err != nil {
		t.Fatalf("abort: %v", err)
	}
	if ab.Child != resp.Child {
		t.Fatalf("abort: got child %q, want %q", ab.Child, resp.Child)
	}
	release()
	awaitAborted(t, c, cl, "data-0", resp.Child, before, 60*time.Second)
	if _, err := cl.AbortSplit(ctxT(t, 20*time.Second), "data-0"); reasonOf(err) != metapb.ReasonNotFound {
		t.Fatalf("abort with no split under way: got %v, want NOT_FOUND", err)
	}
	for i, k := range high {
		if i%10 != 0 {
			continue // a sample (each read is a round of heartbeats)
		}
		if got, ok := get(t, cl, k, lin); !ok || got != k {
			t.Fatalf("%s after the abort: %q (present %v), want %q", k, got, ok, k)
		}
	}
	again, err := cl.SplitGroup(ctxT(t, 20*time.Second), "data-0", 0)
	if err != nil {
		t.Fatalf("split after the abort: %v", err)
	}
	if again.Child == resp.Child || again.Range.Version <= before[0].Version {
		t.Fatalf("split after the abort: %v, want a new group name (not %s) and a version above %d", again, resp.Child, before[0].Version)
	}
	awaitSplit(t, c, cl, "data-0", again.Child, 60*time.Second)
}

// An abort once the split's fence is recorded is refused with
// SPLIT_FENCED, and the split completes.
func TestSplitAbortRefusedAfterFence(t *testing.T) {
	reached, release := holdAt(logpb.SplitPhase_SPLIT_PHASE_FENCED)
	t.Cleanup(func() { release(); metanode.SetSplitHook(nil) })
	c := metanodetest.Start(t, fastPlacement(metanodetest.Options{}))
	cl := c.Client("")
	if _, err := cl.SplitGroup(ctxT(t, 20*time.Second), "data-0", 0); err != nil {
		t.Fatalf("split: %v", err)
	}
	waitReached(t, reached, "fenced")
	if _, err := cl.AbortSplit(ctxT(t, 20*time.Second), "data-0"); reasonOf(err) != metapb.ReasonSplitFenced {
		t.Fatalf("abort after the fence: got %v, want SPLIT_FENCED", err)
	}
	release()
	awaitSplit(t, c, cl, "data-0", "data-1", 60*time.Second)
}

// The node leading metadata-0 crashes mid-abort (recorded, the parent's
// log refusing the fence, the child not yet deleted): the next leader
// finishes the abort, and the restarted node deletes its replica of the
// child too.
func TestSplitAbortResumesAfterControllerCrash(t *testing.T) {
	copied, resume := make(chan struct{}), make(chan struct{})
	aborting := make(chan struct{})
	var copiedOnce, abortingOnce sync.Once
	metanode.SetSplitHook(func(ctx context.Context, _ string, at logpb.SplitPhase) {
		first := false
		switch at {
		case logpb.SplitPhase_SPLIT_PHASE_COPIED:
			copiedOnce.Do(func() { first = true; close(copied) })
			if first {
				select {
				case <-resume:
				case <-ctx.Done():
				}
			}
		case logpb.SplitPhase_SPLIT_PHASE_ABORTING:
			abortingOnce.Do(func() { first = true; close(aborting) })
			if first {
				<-ctx.Done() // this leader never takes the step
			}
		}
	})
	t.Cleanup(func() { metanode.SetSplitHook(nil) })
	c, cl, high, before, resp := splitToCopied(t, 50, copied)
	if _, err := cl.AbortSplit(ctxT(t, 30*time.Second), "data-0"); err != nil {
		t.Fatalf("abort: %v", err)
	}
	close(resume)
	waitReached(t, aborting, "aborting")
	crashed := c.Leader(metapb.MetadataGroup)
	t.Logf("mid-abort: crashing metadata-0's leader %s", crashed)
	c.Crash(crashed)
	c.WaitLeader(metapb.MetadataGroup, 30*time.Second)
	if err := c.Restart(crashed); err != nil {
		t.Fatalf("restart %s: %v", crashed, err)
	}
	awaitAborted(t, c, cl, "data-0", resp.Child, before, 90*time.Second)
	for _, k := range high[:5] {
		if got, ok := get(t, cl, k, lin); !ok || got != k {
			t.Fatalf("%s after the abort: %q (present %v), want %q", k, got, ok, k)
		}
	}
}

// corruptCopies makes the bulk copy into child differ from the parent (one
// value changed) on its first times copies (-1: always).
func corruptCopies(t *testing.T, child string, times int) *atomic.Int32 {
	var n atomic.Int32
	metanode.SetSplitCopyHook(func(to string, pairs []*logpb.RawPair) {
		if to != child || len(pairs) == 0 || times >= 0 && int(n.Load()) >= times {
			return
		}
		n.Add(1)
		pairs[0].Value = append(pairs[0].Value, 'x')
	})
	t.Cleanup(func() { metanode.SetSplitCopyHook(nil) })
	return &n
}

// The child's copy differs from the parent's once (a key changed on the
// way): its acquire is refused, the copy is cleared and made again from
// the fenced parent, and the split completes with every key as written.
func TestSplitRedoesCopyAfterRefusedAcquire(t *testing.T) {
	corrupted := corruptCopies(t, "data-1", 1)
	c := metanodetest.Start(t, fastPlacement(metanodetest.Options{}))
	cl := c.Client("")
	_, high := hotKeys(200)
	putAll(t, cl, high, func(k string) []byte { return []byte(k) })
	if _, err := cl.SplitGroup(ctxT(t, 20*time.Second), "data-0", 0); err != nil {
		t.Fatalf("split: %v", err)
	}
	awaitSplit(t, c, cl, "data-0", "data-1", 90*time.Second)
	if corrupted.Load() != 1 {
		t.Fatalf("copies changed on the way: %d, want 1", corrupted.Load())
	}
	for _, k := range high {
		if got, ok := get(t, cl, k, lin); !ok || got != k {
			t.Fatalf("%s after the split: %q (present %v), want %q", k, got, ok, k)
		}
	}
}

// A copy that always differs: after the bounded number of redos the split
// gives up, fenced, with the reason in the group listing; it is not
// retried, and it cannot abort.
func TestSplitStuckAfterRefusedAcquires(t *testing.T) {
	corrupted := corruptCopies(t, "data-1", -1)
	c := metanodetest.Start(t, fastPlacement(metanodetest.Options{}))
	cl := c.Client("")
	_, high := hotKeys(20)
	putAll(t, cl, high, func(k string) []byte { return []byte(k) })
	if _, err := cl.SplitGroup(ctxT(t, 20*time.Second), "data-0", 0); err != nil {
		t.Fatalf("split: %v", err)
	}
	poll.For(t, "the split stuck", 120*time.Second, func() error {
		gs, err := groupsOf(t, cl, "data-0")
		if err != nil {
			return err
		}
		if p := gs[0]; p == nil || p.SplitPhase != "fenced" || p.SplitError == "" {
			return fmt.Errorf("data-0: %v", p)
		}
		return nil
	})
	copies := corrupted.Load()
	if copies != 4 {
		t.Fatalf("copies made: %d, want 4 (the first and 3 redos)", copies)
	}
	if _, err := cl.AbortSplit(ctxT(t, 20*time.Second), "data-0"); reasonOf(err) != metapb.ReasonSplitFenced {
		t.Fatalf("abort of a stuck split: got %v, want SPLIT_FENCED", err)
	}
	// Not retried: no copy is made any more.
	time.Sleep(3 * time.Second) // nothing to poll for: the absence of copies
	if n := corrupted.Load(); n != copies {
		t.Fatalf("copies after the split stuck: %d, want %d (no more)", n, copies)
	}
}
