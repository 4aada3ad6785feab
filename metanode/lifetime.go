package metanode

import (
	"context"
	"sync"

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
	mu     sync.Mutex // guards closed, and orders wg.Add before wg.Wait
	closed bool
	wg     sync.WaitGroup
}

// start hands raft a call and returns its future, or ErrShuttingDown once
// closing began. done must be called once the answer is in.
func (c *raftCalls) start(call func() raft.Future) (f raft.Future, done func(), err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, nil, ErrShuttingDown
	}
	c.wg.Add(1)
	return call(), c.wg.Done, nil
}

// close refuses new calls and waits until every call made was answered, or
// ctx ends (then raft is shut down regardless: a call it never answers is
// abandoned, which only a raft stuck for ShutdownTimeout can cause).
func (c *raftCalls) close(ctx context.Context) bool {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	idle := make(chan struct{})
	go func() { c.wg.Wait(); close(idle) }()
	select {
	case <-idle:
		return true
	case <-ctx.Done():
		return false
	}
}
