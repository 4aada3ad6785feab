package transport

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/metamq/meta/rpc/transport/raftpb"
)

// AppendEntriesPipeline implements raft.Transport. It opens one
// bidirectional stream to target for the group; at most
// Config.PipelineDepth requests are in flight on it, and responses are
// matched to requests in order. With a negative PipelineDepth it returns
// raft.ErrPipelineReplicationNotSupported and raft sends one request at a
// time.
func (t *Transport) AppendEntriesPipeline(_ raft.ServerID, target raft.ServerAddress) (raft.AppendPipeline, error) {
	depth := t.m.cfg.PipelineDepth
	if depth < 0 {
		return nil, raft.ErrPipelineReplicationNotSupported
	}
	c, err := t.client(target)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(t.lifetime)
	stream, err := c.AppendEntriesPipeline(ctx)
	if err != nil {
		cancel()
		return nil, t.callErr("AppendEntriesPipeline", target, err)
	}
	p := &pipeline{
		t:       t,
		target:  target,
		stream:  stream,
		cancel:  cancel,
		timeout: t.m.cfg.Timeout,
		slots:   make(chan struct{}, depth),
		queue:   make(chan *appendFuture, depth),
		done:    make(chan raft.AppendFuture, depth),
		closeCh: make(chan struct{}),
		failCh:  make(chan struct{}),
	}
	p.watchdog = time.AfterFunc(time.Hour, func() {
		p.stalled.Store(true)
		cancel()
	})
	p.watchdog.Stop()

	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		cancel()
		return nil, ErrClosed
	}
	t.pipelines[p] = struct{}{}
	t.mu.Unlock()

	p.wg.Add(1)
	go p.receive()
	return p, nil
}

func (t *Transport) removePipeline(p *pipeline) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.pipelines, p)
}

// pipeline is one pipelined AppendEntries stream of a group to a peer. The
// sending side is raft's replication goroutine (AppendEntries); the
// receiving side is the goroutine receive, owned by the pipeline: Close
// stops it and waits for it.
type pipeline struct {
	t       *Transport
	target  raft.ServerAddress
	stream  raftpb.RaftService_AppendEntriesPipelineClient
	cancel  context.CancelFunc // ends the stream
	timeout time.Duration
	// watchdog cancels the stream when the oldest request in flight has
	// had no response for timeout: a peer that accepts requests but never
	// answers must not hold replication forever.
	watchdog *time.Timer
	stalled  atomic.Bool // set when the watchdog fired

	slots chan struct{}          // one token per request sent and not yet answered
	queue chan *appendFuture     // requests sent, in send order; never longer than slots
	done  chan raft.AppendFuture // answered requests, for raft

	sendMu sync.Mutex // makes queue order equal send order

	errMu  sync.Mutex // guards err
	err    error      // first failure; set once, then failCh is closed
	failCh chan struct{}

	closeCh   chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup

	idleMu   sync.Mutex // guards lastIdle
	lastIdle idleRecord
}

// idleRecord is the last idle append the follower accepted: what it
// carried and when it was sent.
type idleRecord struct {
	term, prevIndex, prevTerm, commit uint64
	sent                              time.Time
}

var _ raft.AppendPipeline = (*pipeline)(nil)

// AppendEntries sends a request on the pipeline. It blocks while
// PipelineDepth requests are in flight (back-pressure), but for no longer
// than the timeout.
func (p *pipeline) AppendEntries(args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) (raft.AppendFuture, error) {
	f := &appendFuture{start: time.Now(), args: args, resp: resp, done: make(chan struct{})}
	p.sendMu.Lock()
	defer p.sendMu.Unlock()
	if err := p.failure(); err != nil {
		return nil, err
	}
	select {
	case <-p.closeCh:
		return nil, ErrClosed
	default:
	}
	if len(args.Entries) == 0 && len(p.slots) == 0 && p.t.m.cfg.HeartbeatLinger > 0 && !isHeartbeat(args) {
		if p.repeatsIdle(args, f.start) {
			f.respond(nil) // held back: raft is not handed it (sendIdle)
			return f, nil
		}
		p.sendIdle(f)
		return f, nil
	}
	select {
	case p.slots <- struct{}{}:
	default:
		timer := time.NewTimer(p.timeout)
		defer timer.Stop()
		select {
		case p.slots <- struct{}{}:
		case <-p.closeCh:
			return nil, ErrClosed
		case <-p.failCh:
			return nil, p.failure()
		case <-timer.C:
			return nil, fmt.Errorf("transport: %s pipeline to %s full: %w", p.t.group, p.target, ErrStalled)
		}
	}
	p.queue <- f // cannot block: len(queue) <= len(slots)
	if err := p.stream.Send(encodeAppendEntriesRequest(p.t.m.ClusterID(), p.t.group, args)); err != nil {
		err = p.t.callErr("AppendEntriesPipeline", p.target, err)
		p.fail(err)
		return nil, err
	}
	return f, nil
}

// sendIdle sends an append without entries, on a pipeline with nothing in
// flight (raft's CommitTimeout append: it carries the commit index),
// through the peer's idle batcher with other groups' (heartbeats.go), and
// hands it to raft once answered. p.sendMu is held.
//
// It may overtake or be overtaken by appends sent on the stream after it,
// unlike those: raft's follower takes an append that checks an entry it
// holds in any order (an older commit index does not lower its own), and
// raft's leader does nothing with the answer to an append without entries
// but note the contact (and step down on a newer term), so the answer may
// reach raft out of send order. An append that fails is dropped like a
// lost message (not handed to raft, the stream untouched): the next
// append carries the commit index again.
//
// An idle append that repeats the last one the follower accepted (same
// term, previous entry and commit index) and follows it by less than
// Config.IdleRepeat is not sent at all: it is held back like a lost
// message. It would tell the follower nothing it has not accepted, and
// raft takes nothing from its answer that the group's heartbeats (every
// tenth to fifth of the heartbeat timeout) do not give it: the contact
// for the leader's lease and leadership confirmations. A new commit
// index, entry or term goes at once as before. What the repeats are good
// for waits at most IdleRepeat: a follower that restarted (and lost the
// commit index it held in memory) learns it, and a follower on a newer
// term (which the heartbeats' answers do not report to raft) is found
// out.
func (p *pipeline) sendIdle(f *appendFuture) {
	done := p.t.m.batcher(string(p.target), true).queue(encodeAppendEntriesRequest(p.t.m.ClusterID(), p.t.group, f.args), false)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		var r hbResult
		select {
		case r = <-done:
		case <-p.closeCh:
			f.respond(ErrClosed)
			return
		}
		if r.err != nil {
			f.respond(p.t.callErr("AppendEntries", p.target, r.err))
			return
		}
		decodeAppendEntriesResponse(r.resp, f.resp)
		p.t.matched.observe(p.target, f.args, f.resp)
		if f.resp.Success && f.resp.Term == f.args.Term {
			p.noteIdle(f.args, f.start)
		}
		f.respond(nil)
		select {
		case p.done <- f:
		case <-p.closeCh:
		}
	}()
}

// repeatsIdle says whether args, an idle append sent at now, repeats the
// last one the follower accepted within Config.IdleRepeat.
func (p *pipeline) repeatsIdle(args *raft.AppendEntriesRequest, now time.Time) bool {
	p.idleMu.Lock()
	defer p.idleMu.Unlock()
	l := p.lastIdle
	return !l.sent.IsZero() && now.Sub(l.sent) < p.t.m.cfg.IdleRepeat &&
		l.term == args.Term && l.prevIndex == args.PrevLogEntry && l.prevTerm == args.PrevLogTerm && l.commit == args.LeaderCommitIndex
}

// noteIdle records an idle append, sent at sent, that the follower
// accepted.
func (p *pipeline) noteIdle(args *raft.AppendEntriesRequest, sent time.Time) {
	p.idleMu.Lock()
	defer p.idleMu.Unlock()
	if sent.After(p.lastIdle.sent) {
		p.lastIdle = idleRecord{term: args.Term, prevIndex: args.PrevLogEntry, prevTerm: args.PrevLogTerm, commit: args.LeaderCommitIndex, sent: sent}
	}
}

// Consumer implements raft.AppendPipeline.
func (p *pipeline) Consumer() <-chan raft.AppendFuture { return p.done }

// Close implements raft.AppendPipeline: it ends the stream, fails what is
// in flight and waits for the receiving goroutine. Safe to call twice.
func (p *pipeline) Close() error {
	p.closeOnce.Do(func() {
		close(p.closeCh)
		p.cancel()
		// An AppendEntries under way (it sees closeCh) has counted its
		// idle send in wg before Wait below.
		p.sendMu.Lock()
		//lint:ignore SA2001 a barrier: see above
		p.sendMu.Unlock()
		p.watchdog.Stop()
		p.wg.Wait()
		p.t.removePipeline(p)
	})
	return nil
}

func (p *pipeline) failure() error {
	p.errMu.Lock()
	defer p.errMu.Unlock()
	return p.err
}

// fail records the pipeline's first failure and ends the stream; every
// request in flight and every later one fails with it.
func (p *pipeline) fail(err error) {
	p.errMu.Lock()
	if p.err == nil {
		p.err = err
		close(p.failCh)
	}
	p.errMu.Unlock()
	p.cancel()
}

// receive matches responses to requests in send order and hands the
// answered futures to raft. After a failure it fails whatever is still
// queued, until Close.
func (p *pipeline) receive() {
	defer p.wg.Done()
	for {
		var f *appendFuture
		select {
		case f = <-p.queue:
		case <-p.closeCh:
			return
		}
		err := p.failure()
		if err == nil {
			p.watchdog.Reset(p.timeout)
			out, rerr := p.stream.Recv()
			p.watchdog.Stop()
			switch {
			case rerr == nil:
				decodeAppendEntriesResponse(out, f.resp)
				p.t.matched.observe(p.target, f.args, f.resp)
			case p.stalled.Load():
				err = fmt.Errorf("transport: %s pipeline to %s: no response within %v: %w", p.t.group, p.target, p.timeout, ErrStalled)
			default:
				err = p.t.callErr("AppendEntriesPipeline", p.target, rerr)
			}
			if err != nil {
				p.fail(err)
			}
		}
		<-p.slots
		f.respond(err)
		if err != nil {
			// A failed request is not handed to raft: raft reads only
			// Request and Response of what it consumes and would count
			// the zero response as contact with the follower. It learns
			// of the failure from its next send instead.
			continue
		}
		select {
		case p.done <- f:
		case <-p.closeCh:
			return
		}
	}
}

// appendFuture implements raft.AppendFuture.
type appendFuture struct {
	start time.Time
	args  *raft.AppendEntriesRequest
	resp  *raft.AppendEntriesResponse
	err   error         // written once before done is closed
	done  chan struct{} // closed by respond
}

func (f *appendFuture) respond(err error) {
	f.err = err
	close(f.done)
}

func (f *appendFuture) Error() error {
	<-f.done
	return f.err
}

func (f *appendFuture) Start() time.Time                      { return f.start }
func (f *appendFuture) Request() *raft.AppendEntriesRequest   { return f.args }
func (f *appendFuture) Response() *raft.AppendEntriesResponse { return f.resp }
