package metanode

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/metamq/meta/rpc/metapb"
	"github.com/metamq/meta/verify/poll"
)

// Callers waiting together share one round; a caller that arrives while a
// round runs waits for the next one (the running round may have sampled
// its state before the caller's read began), and every round is one call.
func TestRoundsShareAndStayFresh(t *testing.T) {
	started := make(chan uint64, 10)
	release := make(chan struct{})
	var mu sync.Mutex
	n := uint64(0)
	r := &rounds{timeout: 10 * time.Second, run: func(ctx context.Context) (uint64, error) {
		mu.Lock()
		n++
		i := n
		mu.Unlock()
		started <- i
		<-release
		return i, nil
	}}
	ctx := context.Background()
	first := make(chan uint64, 1)
	go func() { i, _ := r.do(ctx); first <- i }()
	if got := <-started; got != 1 {
		t.Fatalf("first round: got %d", got)
	}
	// Three callers arrive while round 1 runs: they share round 2.
	later := make(chan uint64, 3)
	for range 3 {
		go func() { i, _ := r.do(ctx); later <- i }()
	}
	poll.ForTrue(t, "three callers queued", 10*time.Second, func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return len(r.waiting) == 3
	})
	close(release)
	if got := <-first; got != 1 {
		t.Fatalf("first caller: got round %d, want 1", got)
	}
	for range 3 {
		if got := <-later; got != 2 {
			t.Fatalf("a caller that arrived during round 1 got round %d, want 2", got)
		}
	}
	if got := <-started; got != 2 {
		t.Fatalf("second round: got %d", got)
	}
	select {
	case i := <-started:
		t.Fatalf("an extra round %d ran", i)
	default:
	}
}

// A caller's ctx ends its wait; the round's error reaches every caller.
func TestRoundsErrorsAndCancel(t *testing.T) {
	boom := errors.New("boom")
	r := &rounds{timeout: time.Second, run: func(ctx context.Context) (uint64, error) { return 0, boom }}
	if _, err := r.do(context.Background()); !errors.Is(err, boom) {
		t.Fatalf("got %v, want boom", err)
	}
	ended := make(chan struct{})
	block := &rounds{timeout: 200 * time.Millisecond, run: func(ctx context.Context) (uint64, error) {
		<-ctx.Done() // bounded by the round's timeout
		close(ended)
		return 0, ctx.Err()
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := block.do(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want the caller's deadline", err)
	}
	<-ended // the round itself ends by its own timeout
	poll.ForTrue(t, "the round loop to exit", 10*time.Second, func() bool {
		block.mu.Lock()
		defer block.mu.Unlock()
		return !block.running
	})
}

// The batcher packs what is waiting, never more than its limits, and never
// waits for more.
func TestFillPacksWhatWaitsWithinLimits(t *testing.T) {
	p := func(size int) *proposal { return &proposal{size: size} }
	for _, tc := range []struct {
		name     string
		waiting  []int
		maxOps   int
		maxBytes int
		want     int // proposals in the batch, the first included
	}{
		{"nothing waiting", nil, 10, 100, 1},
		{"all waiting fit", []int{1, 1, 1}, 10, 100, 4},
		{"op limit", []int{1, 1, 1, 1, 1}, 3, 100, 3},
		{"byte limit: the proposal that crosses it closes the batch", []int{40, 40, 40}, 10, 100, 3},
	} {
		q := make(chan *proposal, 10)
		for _, s := range tc.waiting {
			q <- p(s)
		}
		got := fill(p(30), q, tc.maxOps, tc.maxBytes)
		if len(got) != tc.want {
			t.Errorf("%s: got %d proposals, want %d", tc.name, len(got), tc.want)
		}
		if left := len(tc.waiting) - (len(got) - 1); len(q) != left {
			t.Errorf("%s: %d left queued, want %d", tc.name, len(q), left)
		}
	}
}

// Every node error says its reason, and the reason its class: the one
// vocabulary the servers, the peer wire and the client share.
func TestNodeErrorsSayTheirReason(t *testing.T) {
	for _, tc := range []struct {
		err    error
		reason string
		class  metapb.Class
	}{
		{&NotLeaderError{Group: "data-0", LeaderID: "n2", LeaderAddr: "a2"}, metapb.ReasonNotLeader, metapb.ClassRetry},
		{&NotLeaderError{Group: "data-0"}, metapb.ReasonNoLeader, metapb.ClassRetry},
		{wrap(ErrNoLeader), metapb.ReasonNoLeader, metapb.ClassRetry},
		{wrap(ErrShuttingDown), metapb.ReasonShuttingDown, metapb.ClassRetry},
		{invalidf("key", "too long"), metapb.ReasonInvalidArgument, metapb.ClassFinal},
		{wrap(ErrClusterMismatch), metapb.ReasonClusterMismatch, metapb.ClassFinal},
		// An unknown outcome stays unknown whatever its cause says.
		{unknown(wrap(ErrNoLeader)), metapb.ReasonOutcomeUnknown, metapb.ClassUnknown},
		{errors.New("not ours"), "", metapb.ClassUnknown},
	} {
		if got := metapb.ReasonOf(tc.err); got != tc.reason {
			t.Errorf("%v: reason %q, want %q", tc.err, got, tc.reason)
		}
		if got := metapb.ClassOf(metapb.ReasonOf(tc.err)); got != tc.class {
			t.Errorf("%v: class %s, want %s", tc.err, got, tc.class)
		}
	}
	if md := invalidf("key", "x").(*invalidField).Metadata(); md[metapb.MetaField] != "key" {
		t.Errorf("invalid field metadata: %v", md)
	}
}

func wrap(err error) error { return errors.Join(errors.New("context"), err) }
