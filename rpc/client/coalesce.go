package client

import (
	"context"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Coalescing. Concurrent calls of one kind (Put, Get, CommitOffsets,
// FetchOffsets, PutSessions) to one group share batch RPCs without adding
// delay when the client is idle:
//
//   - A call that finds no call of its kind in flight to its group (its
//     lane) is sent at once, alone, exactly as without coalescing, on the
//     caller's goroutine and context.
//   - Calls that arrive while one is in flight queue; when it returns,
//     the queue is sent as one batch RPC (MultiPut, MultiGet, a Commit or
//     Fetch or sessions Put of the concatenated entries), within the
//     server's batch limits (MaxBatchEntries, MaxBatchBytes), by a
//     goroutine the client owns; the next batch forms while it is in
//     flight. So a lane has one RPC in flight at a time, and batches grow
//     with the load, not with a timer.
//
// A lane is a (kind, group[, consistency]) pair. The leader is not part
// of it: each send goes to the group's leader as the client knows it at
// that moment (write follows leader hints, and retries what is definitely
// not applied, for the batch as a whole).
//
// Outcomes stay exact. Each caller gets its own outcome: a batch whose
// outcome is unknown is unknown for every member (never a failure); an
// entry the server reports as definitely not applied (the batch refused
// as a whole, or its group's part of a MultiPut) is sent again alone, on
// the caller's context, so the caller gets the answer its own call gets
// (a bad entry cannot make the others fail). A caller whose context ends
// while queued is removed before the send and gets a definite error
// (codes.Canceled or DeadlineExceeded: not sent); once its batch was
// sent, a writer gets an unknown outcome.
//
// Only calls whose meaning survives coalescing are coalesced: puts
// without a lease (a MultiPut's part is atomic, and a lease that does not
// exist would refuse the whole part: a put with a lease is always sent
// alone), linearizable or stale gets (one read per batch, each key's
// answer a linearizable read of its own), offset commits and fetches
// whose consumer groups all live in one offset group, and session puts
// whose client ids all live in one data group (their conditions,
// if_broker_id and the epoch bound, are evaluated per session by the
// server, which answers applied per session). A key (client id) repeats
// in no batch: the server refuses repeats, so a call naming a key
// already in the forming batch waits for the next one. Calls whose group
// the client does not know (pinned, topology not learned) are sent
// alone.

// laneKey names a lane: the group, and what else must be equal for calls
// to share an RPC (a read's consistency).
type laneKey struct {
	group   string
	variant int32
}

// lane is one lane's state, guarded by its coalescer's mu.
type lane[I, O any] struct {
	// busy: a call or batch of the lane is in flight; arrivals queue.
	busy  bool
	queue []*waiter[I, O]
}

// waiter is one queued call.
type waiter[I, O any] struct {
	req            I
	entries, bytes int
	keys           []string
	deadline       time.Time
	// sent is set (under the coalescer's mu) when the waiter is taken
	// into a batch: from then on it cannot be withdrawn.
	sent bool
	// done receives the waiter's outcome, once (buffered).
	done chan outcome[O]
}

// outcome is one batch member's outcome.
type outcome[O any] struct {
	resp O
	err  error
	// alone: definitely not applied as part of the batch; the member
	// sends its call alone.
	alone bool
}

// coalescer coalesces one kind of call: I is a caller's request, O its
// response.
type coalescer[I, O any] struct {
	c *Client
	// write: the call changes state, so a member that leaves after its
	// batch was sent has an unknown outcome.
	write bool
	// one sends one request alone, as the call does without coalescing.
	one func(ctx context.Context, lk laneKey, req I) (O, error)
	// many sends reqs (two or more) as one batch RPC and returns each
	// one's outcome, in order.
	many func(ctx context.Context, lk laneKey, reqs []I) []outcome[O]

	mu    sync.Mutex // guards lanes and every lane and waiter field noted
	lanes map[laneKey]*lane[I, O]
}

func newCoalescer[I, O any](c *Client, write bool, one func(context.Context, laneKey, I) (O, error),
	many func(context.Context, laneKey, []I) []outcome[O]) *coalescer[I, O] {
	return &coalescer[I, O]{c: c, write: write, one: one, many: many, lanes: map[laneKey]*lane[I, O]{}}
}

// call runs req in lane lk, alone when the lane is idle, else in the next
// batch. entries and bytes count it against the batch limits; keys are
// what may not repeat within a batch.
func (k *coalescer[I, O]) call(ctx context.Context, lk laneKey, req I, entries, bytes int, keys []string) (O, error) {
	var zero O
	k.mu.Lock()
	l := k.lanes[lk]
	if l == nil {
		l = &lane[I, O]{}
		k.lanes[lk] = l
	}
	if !l.busy {
		l.busy = true
		k.mu.Unlock()
		resp, err := k.one(ctx, lk, req)
		k.next(lk, l)
		return resp, err
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(k.c.cfg.RequestTimeout)
	}
	w := &waiter[I, O]{req: req, entries: entries, bytes: bytes, keys: keys, deadline: deadline, done: make(chan outcome[O], 1)}
	l.queue = append(l.queue, w)
	k.mu.Unlock()
	select {
	case o := <-w.done:
		return k.finish(ctx, lk, req, o)
	case <-ctx.Done():
	}
	k.mu.Lock()
	sent := w.sent
	if !sent {
		l.queue = slices.DeleteFunc(l.queue, func(x *waiter[I, O]) bool { return x == w })
	}
	k.mu.Unlock()
	if !sent {
		return zero, status.Errorf(status.FromContextError(ctx.Err()).Code(),
			"client: not sent: the call's context ended while it waited for a batch: %v", ctx.Err())
	}
	select {
	case o := <-w.done:
		return k.finish(ctx, lk, req, o)
	default:
	}
	if k.write {
		return zero, &unknownError{err: status.FromContextError(ctx.Err()).Err()}
	}
	return zero, status.FromContextError(ctx.Err()).Err()
}

// finish is a member's result from its batch outcome.
func (k *coalescer[I, O]) finish(ctx context.Context, lk laneKey, req I, o outcome[O]) (O, error) {
	if o.alone {
		return k.one(ctx, lk, req)
	}
	return o.resp, o.err
}

// next runs after a lane's send returned: the queue becomes the next
// batch, sent by a goroutine of the client's, or the lane goes idle.
func (k *coalescer[I, O]) next(lk laneKey, l *lane[I, O]) {
	k.mu.Lock()
	batch := k.take(l)
	if len(batch) == 0 {
		l.busy = false
	}
	k.mu.Unlock()
	if len(batch) == 0 {
		return
	}
	if k.c.batches.start(func(ctx context.Context) { k.run(ctx, lk, l, batch) }) {
		return
	}
	// The client is closing: nothing more is sent in batches; each
	// member sends alone (and meets the closed client).
	for {
		for _, w := range batch {
			w.done <- outcome[O]{alone: true}
		}
		k.mu.Lock()
		if batch = k.take(l); len(batch) == 0 {
			l.busy = false
		}
		k.mu.Unlock()
		if len(batch) == 0 {
			return
		}
	}
}

// run sends batches of lane l until its queue is empty.
func (k *coalescer[I, O]) run(ctx context.Context, lk laneKey, l *lane[I, O], batch []*waiter[I, O]) {
	for len(batch) > 0 {
		k.send(ctx, lk, batch)
		k.mu.Lock()
		if batch = k.take(l); len(batch) == 0 {
			l.busy = false
		}
		k.mu.Unlock()
	}
}

// send sends batch as one RPC (alone when it has one member) under the
// latest of its members' deadlines, and hands each member its outcome.
func (k *coalescer[I, O]) send(ctx context.Context, lk laneKey, batch []*waiter[I, O]) {
	deadline := batch[0].deadline
	for _, w := range batch[1:] {
		if w.deadline.After(deadline) {
			deadline = w.deadline
		}
	}
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	if len(batch) == 1 {
		resp, err := k.one(ctx, lk, batch[0].req)
		batch[0].done <- outcome[O]{resp: resp, err: err}
		return
	}
	reqs := make([]I, len(batch))
	for i, w := range batch {
		reqs[i] = w.req
	}
	outs := k.many(ctx, lk, reqs)
	for i, w := range batch {
		w.done <- outs[i]
	}
}

// take removes the next batch from l's queue (mu held): the waiters in
// arrival order within the batch limits, skipping any that names a key
// already in the batch (it waits for the next one). The first waiter is
// always taken, however large.
func (k *coalescer[I, O]) take(l *lane[I, O]) []*waiter[I, O] {
	if len(l.queue) == 0 {
		return nil
	}
	var batch []*waiter[I, O]
	var entries, bytes int
	seen := map[string]bool{}
	rest := l.queue[:0]
	for _, w := range l.queue {
		if len(batch) > 0 && (entries+w.entries > maxCoalescedEntries || bytes+w.bytes > maxCoalescedBytes ||
			slices.ContainsFunc(w.keys, func(key string) bool { return seen[key] })) {
			rest = append(rest, w)
			continue
		}
		for _, key := range w.keys {
			seen[key] = true
		}
		entries += w.entries
		bytes += w.bytes
		w.sent = true
		batch = append(batch, w)
	}
	clear(l.queue[len(rest):])
	l.queue = rest
	return batch
}

// failAll gives every member of a batch that failed as a whole its
// outcome: an unknown outcome for a write is every member's; a definite
// failure of a write, and a read refused for what it asked (bad input,
// an answer too large, a batch call the node does not have: a node of an
// older release during a rolling upgrade), sends each member alone; any
// other read error is every member's (read retried it until the deadline).
func failAll[O any](n int, write bool, err error) []outcome[O] {
	alone := !IsUnknown(err)
	if !write {
		switch status.Code(err) {
		case codes.InvalidArgument, codes.NotFound, codes.FailedPrecondition, codes.OutOfRange, codes.ResourceExhausted, codes.Unimplemented:
		default:
			alone = false
		}
	}
	outs := make([]outcome[O], n)
	for i := range outs {
		outs[i] = outcome[O]{err: err, alone: alone}
	}
	return outs
}

// allOutcome gives every member of a batch the same outcome.
func allOutcome[O any](n int, o outcome[O]) []outcome[O] {
	outs := make([]outcome[O], n)
	for i := range outs {
		outs[i] = o
	}
	return outs
}

// The batch limits a coalesced batch keeps within (the server's).
var (
	maxCoalescedEntries = maxBatchEntries
	maxCoalescedBytes   = maxBatchBytes
)

// batchRunner owns the goroutines that send coalesced batches: Close
// stops new ones, cancels those in flight (their members get unknown
// outcomes) and waits for them.
type batchRunner struct {
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex // guards closed
	closed bool
}

func newBatchRunner() *batchRunner {
	ctx, cancel := context.WithCancel(context.Background())
	return &batchRunner{ctx: ctx, cancel: cancel}
}

// start runs f on a goroutine of the runner's, unless the runner stopped.
func (r *batchRunner) start(f func(ctx context.Context)) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		f(r.ctx)
	}()
	return true
}

// stop ends the runner and waits for its goroutines. Safe to call twice.
func (r *batchRunner) stop() {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	r.cancel()
	r.wg.Wait()
}
