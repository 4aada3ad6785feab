package mqtt

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/metamq/meta/rpc/metapb"
)

// errWriterClosed is returned for writes submitted after Close.
var errWriterClosed = errors.New("mqtt: session writer closed")

// putSessions is the one meta call the writer makes.
type putSessions func(ctx context.Context, req *metapb.PutSessionsRequest) (*metapb.PutSessionsResponse, error)

// sessionWrite is one session put waiting for its batch.
type sessionWrite struct {
	s        *metapb.Session
	previous bool
	done     chan writeResult
}

type writeResult struct {
	applied  bool
	previous *metapb.Session // nil when there was none (or not asked)
	err      error
}

// writer coalesces the session writes of many clients into PutSessions
// batch calls: a batch leaves when it holds maxBatch writes or maxDelay
// after its first write arrived, with at most maxInflight calls under way.
// A client id appears at most once per call (meta refuses repeats); a
// second write for the same client waits for the next batch, so writes of
// one client apply in the order they were submitted.
type writer struct {
	put         putSessions
	maxBatch    int
	maxDelay    time.Duration
	maxInflight int

	in   chan *sessionWrite
	stop chan struct{}
	// closed is closed once every batch taken has been answered.
	closed chan struct{}
	once   sync.Once
	wg     sync.WaitGroup

	calls    atomic.Uint64
	sessions atomic.Uint64
}

func newWriter(put putSessions, maxBatch int, maxDelay time.Duration, maxInflight int) *writer {
	w := &writer{put: put, maxBatch: maxBatch, maxDelay: maxDelay, maxInflight: maxInflight,
		in: make(chan *sessionWrite, maxBatch), stop: make(chan struct{}), closed: make(chan struct{})}
	w.wg.Add(1)
	go w.run()
	return w
}

// write submits one session put and waits for its outcome.
func (w *writer) write(ctx context.Context, s *metapb.Session, previous bool) writeResult {
	sw := &sessionWrite{s: s, previous: previous, done: make(chan writeResult, 1)}
	select {
	case w.in <- sw:
	case <-w.stop:
		return writeResult{err: errWriterClosed}
	case <-ctx.Done():
		return writeResult{err: ctx.Err()}
	}
	select {
	case r := <-sw.done:
		return r
	case <-w.closed:
		select {
		case r := <-sw.done:
			return r
		default:
			return writeResult{err: errWriterClosed}
		}
	case <-ctx.Done():
		return writeResult{err: ctx.Err()}
	}
}

func (w *writer) run() {
	defer w.wg.Done()
	sem := make(chan struct{}, w.maxInflight)
	var calls sync.WaitGroup
	defer calls.Wait()
	var carry []*sessionWrite // repeats of a client id, for the next batch
	for {
		var batch []*sessionWrite
		seen := map[string]bool{}
		add := func(sw *sessionWrite) {
			if seen[sw.s.ClientId] {
				carry = append(carry, sw)
				return
			}
			seen[sw.s.ClientId] = true
			batch = append(batch, sw)
		}
		pending := carry
		carry = nil
		for _, sw := range pending {
			add(sw)
		}
		if len(batch) == 0 {
			select {
			case sw := <-w.in:
				add(sw)
			case <-w.stop:
				return
			}
		}
		timer := time.NewTimer(w.maxDelay)
	fill:
		for len(batch) < w.maxBatch {
			select {
			case sw := <-w.in:
				add(sw)
			case <-timer.C:
				break fill
			case <-w.stop:
				break fill
			}
		}
		timer.Stop()
		sem <- struct{}{}
		calls.Add(1)
		go func() {
			defer func() { <-sem; calls.Done() }()
			w.send(batch)
		}()
	}
}

// send makes one batch call and answers every write in it.
func (w *writer) send(batch []*sessionWrite) {
	req := &metapb.PutSessionsRequest{Sessions: make([]*metapb.Session, len(batch))}
	for i, sw := range batch {
		req.Sessions[i] = sw.s
		req.ReturnPrevious = req.ReturnPrevious || sw.previous
	}
	w.calls.Add(1)
	w.sessions.Add(uint64(len(batch)))
	// The call is not tied to any one client's context: it serves them all.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := w.put(ctx, req)
	for i, sw := range batch {
		r := writeResult{err: err}
		if err == nil {
			r.applied = i >= len(resp.Applied) || resp.Applied[i]
			if sw.previous && i < len(resp.Previous) && resp.Previous[i].GetClientId() != "" {
				r.previous = resp.Previous[i]
			}
		}
		sw.done <- r
	}
}

// close stops taking writes and waits for the calls under way; writes not
// taken into a batch get errWriterClosed.
func (w *writer) close() {
	w.once.Do(func() {
		close(w.stop)
		w.wg.Wait()
		close(w.closed)
	})
}
