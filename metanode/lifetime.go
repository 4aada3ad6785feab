package metanode

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// A lifetime owns goroutines: Go starts one unless the lifetime has ended,
// and End cancels the lifetime's context and waits for every goroutine it
// started. The node has one; each group has one inside it, and each of a
// group's leadership terms one inside the group's (etcd's GoAttach, with
// the waiting made part of ending).
type lifetime struct {
	ctx    context.Context
	cancel context.CancelFunc

	mu    sync.Mutex // guards ended, and orders wg.Add before wg.Wait
	ended bool
	wg    sync.WaitGroup
}

func newLifetime(parent context.Context) *lifetime {
	ctx, cancel := context.WithCancel(parent)
	return &lifetime{ctx: ctx, cancel: cancel}
}

// Go runs f in a goroutine the lifetime owns; f's ctx ends with the
// lifetime. It reports false, and runs nothing, once the lifetime ended.
func (l *lifetime) Go(f func(ctx context.Context)) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ended {
		return false
	}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		f(l.ctx)
	}()
	return true
}

// End cancels the lifetime and waits for its goroutines. Safe to call twice.
func (l *lifetime) End() {
	l.mu.Lock()
	l.ended = true
	l.mu.Unlock()
	l.cancel()
	l.wg.Wait()
}

// Done is closed when the lifetime begins to end.
func (l *lifetime) Done() <-chan struct{} { return l.ctx.Done() }

// raftCalls counts the calls a group handed to raft whose answers it still
// waits for. hashicorp/raft answers every call it accepted as long as it
// runs (on commit, on losing leadership, on a timeout), but one left in
// its queues when it shuts down is never answered. So a group shuts raft
// down only once every call it made was answered (close), and makes no new
// call after that: nothing ever waits on raft for ever.
type raftCalls struct {
	mu      sync.Mutex // guards closed and pending, and orders wg.Add before wg.Wait
	closed  bool
	pending map[*pendingCall]struct{}
	wg      sync.WaitGroup
}

// pendingCall is one call awaiting raft's answer.
type pendingCall struct {
	what  string
	since time.Time
}

// start hands raft a call (what names it in logs) and returns its future,
// or ErrShuttingDown once closing began. done must be called once the
// answer is in.
func (c *raftCalls) start(what string, call func() raft.Future) (f raft.Future, done func(), err error) {
	p := &pendingCall{what: what, since: time.Now()}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, nil, ErrShuttingDown
	}
	c.wg.Add(1)
	if c.pending == nil {
		c.pending = map[*pendingCall]struct{}{}
	}
	c.pending[p] = struct{}{}
	c.mu.Unlock()
	done = func() {
		c.mu.Lock()
		delete(c.pending, p)
		c.mu.Unlock()
		c.wg.Done()
	}
	// The call itself may wait (raft's enqueue timeout): never under mu.
	return call(), done, nil
}

// close refuses new calls and waits until every call made was answered, or
// ctx ends; it then returns the calls still unanswered (raft is shut down
// regardless: a call it never answers is abandoned, which only a raft
// blocked for the whole shutdown timeout can cause).
func (c *raftCalls) close(ctx context.Context) []string {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	idle := make(chan struct{})
	go func() { c.wg.Wait(); close(idle) }()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for p := range c.pending {
		out = append(out, fmt.Sprintf("%s (%s)", p.what, time.Since(p.since).Round(time.Millisecond)))
	}
	return out
}
