package transport

import (
	"context"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	spb "google.golang.org/genproto/googleapis/rpc/status"

	"github.com/metamq/meta/rpc/transport/raftpb"
)

// Heartbeat coalescing. hashicorp/raft heartbeats every follower of every
// group separately, every HeartbeatTimeout/10..HeartbeatTimeout/5: a node
// leading 33 of 100 groups sends 2 peers some 450 one-message RPCs a
// second, and an idle node spends a fifth of a core on them. Here a
// group's heartbeat to a peer waits up to Config.HeartbeatLinger for the
// other groups' heartbeats to the same peer, and they travel as one call
// (Heartbeats), answered item by item. A heartbeat someone is waiting for
// (a linearizable read confirming leadership: Transport.SetUrgent) goes
// at once, with whatever else is waiting.
//
// Idle appends travel the same way, in batches of their own. A group's
// leader sends each follower an AppendEntries without entries every
// CommitTimeout (250-500 ms) when nothing else is sent, to carry the
// commit index; on a pipelined stream each is a message and an answer,
// and on an idle node these were half the CPU (100 groups, 3 nodes). A
// pipeline with nothing in flight sends such an append through the peer's
// idle batcher (pipeline.sendIdle); the receiver answers each item within
// batchedAppendWait, so that one busy group does not hold the others'
// answers, and an item not answered in time is dropped like a lost
// message: it carried nothing raft needs again.
//
// The batches to a peer travel on a stream (HeartbeatStream), one per
// batcher, kept open: a batch is a message and its answer another, with
// no call to set up (headers, trailers, a handler goroutine and a timer
// on each side), which was most of what the batches cost an idle node.
// The batcher sends one batch at a time and waits for its answer (as it
// waited for a call), so answers match batches by order; an answer late by
// more than the call timeout ends the stream, and any failure fails the
// batch as a failed call would and drops the stream (the next batch opens
// another). A peer without the stream (an older release) gets Heartbeats
// calls, and one without those gets one AppendEntries per item.

// hbBatcher coalesces the heartbeats (or the idle appends) to one peer.
type hbBatcher struct {
	m      *Manager
	addr   string
	linger time.Duration // how long the first request waits for others

	mu       sync.Mutex // guards the fields below
	pending  []*hbCall
	timer    *time.Timer
	flushing bool
	// legacy: the peer does not know Heartbeats; send one by one.
	legacy atomic.Bool
	// noStream: the peer does not know HeartbeatStream; send Heartbeats
	// calls.
	noStream atomic.Bool

	// The batches' stream to the peer (HeartbeatStream), opened on first
	// use and dropped on any failure. Only the flushing goroutine (one at
	// a time: see flushing) touches these.
	stream     raftpb.RaftService_HeartbeatStreamClient
	streamConn *peerConn          // the connection stream runs on
	streamStop context.CancelFunc // ends stream
	// watchdog ends the stream when a batch's answer takes longer than
	// the call timeout (stalled then says so).
	watchdog *time.Timer
	stalled  *atomic.Bool
}

type hbCall struct {
	req  *raftpb.AppendEntriesRequest
	done chan hbResult
}

type hbResult struct {
	resp *raftpb.AppendEntriesResponse
	err  error
}

// hbKey names a batcher: the peer, and whether it carries idle appends
// rather than heartbeats.
type hbKey struct {
	addr string
	idle bool
}

// idleLingerFactor: idle appends wait for each other this many times
// longer than heartbeats. Nothing waits on them (raft sends one every
// CommitTimeout only to carry the commit index, which a busy group's
// appends carry anyway), so fewer, fuller calls cost less; a follower of
// an idle group learns the commit index up to that much later, and a
// linearizable read it serves meanwhile goes to the leader (metanode's
// Read).
const idleLingerFactor = 4

// batcher returns the batcher of heartbeats (idle: of idle appends) to addr.
func (m *Manager) batcher(addr string, idle bool) *hbBatcher {
	m.hbMu.Lock()
	defer m.hbMu.Unlock()
	k := hbKey{addr, idle}
	b := m.hb[k]
	if b == nil {
		b = &hbBatcher{m: m, addr: addr, linger: m.cfg.HeartbeatLinger}
		if idle {
			b.linger *= idleLingerFactor
		}
		m.hb[k] = b
	}
	return b
}

// send queues one heartbeat and waits for its answer.
func (b *hbBatcher) send(ctx context.Context, req *raftpb.AppendEntriesRequest, urgent bool) (*raftpb.AppendEntriesResponse, error) {
	done := b.queue(req, urgent)
	select {
	case r := <-done:
		return r.resp, r.err
	case <-ctx.Done():
		return nil, status.FromContextError(ctx.Err()).Err()
	}
}

// queue queues one request; its answer (or error) arrives on the channel
// returned, always, within the configured call timeout.
func (b *hbBatcher) queue(req *raftpb.AppendEntriesRequest, urgent bool) <-chan hbResult {
	call := &hbCall{req: req, done: make(chan hbResult, 1)}
	b.mu.Lock()
	b.pending = append(b.pending, call)
	switch {
	case b.flushing:
		// The flush under way takes it next.
	case urgent:
		b.startFlush()
	case b.timer == nil:
		b.timer = time.AfterFunc(b.linger, func() {
			b.mu.Lock()
			defer b.mu.Unlock()
			b.timer = nil
			if !b.flushing && len(b.pending) > 0 {
				b.startFlush()
			}
		})
	}
	b.mu.Unlock()
	return call.done
}

// startFlush starts sending what is pending; b.mu is held.
func (b *hbBatcher) startFlush() {
	if b.timer != nil {
		b.timer.Stop()
		b.timer = nil
	}
	b.flushing = true
	if !b.m.spawn(b.flush) {
		b.flushing = false
		for _, c := range b.pending {
			c.done <- hbResult{err: ErrClosed}
		}
		b.pending = nil
	}
}

// flush sends the pending heartbeats until none is left.
func (b *hbBatcher) flush() {
	for {
		b.mu.Lock()
		batch := b.pending
		b.pending = nil
		if len(batch) == 0 {
			b.flushing = false
			b.mu.Unlock()
			return
		}
		b.mu.Unlock()
		b.deliver(batch)
	}
}

func (b *hbBatcher) deliver(batch []*hbCall) {
	fail := func(calls []*hbCall, err error) {
		for _, c := range calls {
			c.done <- hbResult{err: err}
		}
	}
	pc, err := b.m.conn(b.addr)
	if err != nil {
		fail(batch, err)
		return
	}
	if b.legacy.Load() {
		ctx, cancel := context.WithTimeout(b.m.lifetime, b.m.cfg.Timeout)
		defer cancel()
		for _, c := range batch {
			resp, err := pc.raft.AppendEntries(ctx, c.req)
			c.done <- hbResult{resp, err}
		}
		return
	}
	req := &raftpb.HeartbeatBatch{ClusterId: b.m.ClusterID(), Heartbeats: make([]*raftpb.AppendEntriesRequest, len(batch))}
	for i, c := range batch {
		req.Heartbeats[i] = c.req
	}
	var out *raftpb.HeartbeatBatchResponse
	if !b.noStream.Load() {
		out, err = b.viaStream(pc, req)
		if status.Code(err) == codes.Unimplemented {
			b.noStream.Store(true)
			b.m.log.Info("peer has no heartbeat stream (an older release): heartbeat batches go in calls", "peer", b.addr)
		}
	}
	if b.noStream.Load() {
		ctx, cancel := context.WithTimeout(b.m.lifetime, b.m.cfg.Timeout)
		defer cancel()
		out, err = pc.raft.Heartbeats(ctx, req)
	}
	if status.Code(err) == codes.Unimplemented {
		b.legacy.Store(true)
		b.m.log.Info("peer sends no heartbeat batches (an older release): heartbeats go one by one", "peer", b.addr)
		b.deliver(batch)
		return
	}
	if err != nil {
		fail(batch, err)
		return
	}
	for i, c := range batch {
		if i >= len(out.GetResults()) {
			c.done <- hbResult{err: status.Error(codes.Internal, "transport: heartbeat batch answered short")}
			continue
		}
		r := out.Results[i]
		if len(r.GetStatus()) > 0 {
			sp := &spb.Status{}
			if err := proto.Unmarshal(r.GetStatus(), sp); err != nil {
				c.done <- hbResult{err: err}
				continue
			}
			c.done <- hbResult{err: status.ErrorProto(sp)}
			continue
		}
		c.done <- hbResult{resp: r.GetResponse()}
	}
}

// viaStream sends a batch on the batcher's stream to the peer (opening
// one on pc if there is none, or if the connection changed) and returns
// the peer's answer. Any failure drops the stream; the next batch opens
// another. An answer that takes longer than the call timeout ends the
// stream and fails the batch with DeadlineExceeded, as a call would.
func (b *hbBatcher) viaStream(pc *peerConn, req *raftpb.HeartbeatBatch) (*raftpb.HeartbeatBatchResponse, error) {
	if b.stream == nil || b.streamConn != pc {
		b.dropStream()
		// The watchdog bounds the opening too (a connection still being
		// made): the batcher answers every heartbeat within the timeout.
		ctx, cancel := context.WithCancel(b.m.lifetime)
		stalled := new(atomic.Bool)
		watchdog := time.AfterFunc(b.m.cfg.Timeout, func() {
			stalled.Store(true)
			cancel()
		})
		s, err := pc.raft.HeartbeatStream(ctx)
		if err != nil {
			watchdog.Stop()
			cancel()
			return nil, err
		}
		b.stream, b.streamConn, b.streamStop, b.watchdog, b.stalled = s, pc, cancel, watchdog, stalled
	}
	b.watchdog.Reset(b.m.cfg.Timeout)
	err := b.stream.Send(req)
	if errors.Is(err, io.EOF) {
		// The stream has ended; Recv says why.
		err = nil
	}
	var out *raftpb.HeartbeatBatchResponse
	if err == nil {
		out, err = b.stream.Recv()
	}
	b.watchdog.Stop()
	if err != nil {
		if b.stalled.Load() {
			err = status.Errorf(codes.DeadlineExceeded, "transport: heartbeat batch to %s: no answer within %v", b.addr, b.m.cfg.Timeout)
		} else if errors.Is(err, io.EOF) {
			err = status.Errorf(codes.Unavailable, "transport: heartbeat stream to %s ended", b.addr)
		}
		b.dropStream()
		return nil, err
	}
	return out, nil
}

// dropStream ends the batcher's stream, if any.
func (b *hbBatcher) dropStream() {
	if b.stream == nil {
		return
	}
	b.watchdog.Stop()
	b.streamStop()
	b.stream, b.streamConn, b.streamStop, b.watchdog, b.stalled = nil, nil, nil, nil, nil
}

// SetUrgent makes this group's heartbeats go at once while urgent returns
// true (someone waits for their answers: a leadership confirmation).
func (t *Transport) SetUrgent(urgent func() bool) { t.urgent.Store(&urgent) }

func (t *Transport) isUrgent() bool {
	if f := t.urgent.Load(); f != nil {
		return (*f)()
	}
	return false
}

// sendHeartbeat sends one heartbeat through the peer's batcher. The
// batcher answers within the call timeout; the wait ends sooner only if
// the group closes (no timer of its own: one per heartbeat was a
// noticeable part of an idle node's CPU).
func (t *Transport) sendHeartbeat(target raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	out, err := t.m.batcher(string(target), false).send(t.lifetime, encodeAppendEntriesRequest(t.m.ClusterID(), t.group, args), t.isUrgent())
	if err != nil {
		return t.callErr("AppendEntries", target, err)
	}
	decodeAppendEntriesResponse(out, resp)
	return nil
}

// batchedAppendWait bounds how long the receiver of a batch waits for
// raft to answer one of its appends (not heartbeats, which raft answers
// at once): the batch's answer waits for its slowest item.
const batchedAppendWait = 100 * time.Millisecond

// Heartbeats serves a batch: each heartbeat goes to its group's heartbeat
// handler, each append (an idle append: see pipeline.sendIdle) to its
// group's raft, concurrently and within batchedAppendWait; each gets its
// own answer.
func (s raftServer) Heartbeats(ctx context.Context, req *raftpb.HeartbeatBatch) (*raftpb.HeartbeatBatchResponse, error) {
	if err := s.m.checkCluster("Heartbeats", req.GetClusterId(), false); err != nil {
		return nil, err
	}
	out := &raftpb.HeartbeatBatchResponse{Results: make([]*raftpb.HeartbeatResult, len(req.GetHeartbeats()))}
	answer := func(ctx context.Context, i int, hb *raftpb.AppendEntriesRequest) {
		r := &raftpb.HeartbeatResult{}
		out.Results[i] = r
		ar, err := s.heartbeat(ctx, req.GetClusterId(), hb)
		if err != nil {
			st, _ := status.FromError(err)
			r.Status, _ = proto.Marshal(st.Proto())
			return
		}
		r.Response = ar
	}
	var wg sync.WaitGroup
	// The appends share one bound (one timer for the batch, not one each):
	// they start together.
	var appendCtx context.Context
	for i, hb := range req.GetHeartbeats() {
		if isHeartbeat(decodeAppendEntriesRequest(hb)) {
			answer(ctx, i, hb)
			continue
		}
		if appendCtx == nil {
			var cancel context.CancelFunc
			appendCtx, cancel = context.WithTimeout(ctx, batchedAppendWait)
			defer cancel()
		}
		wg.Go(func() { answer(appendCtx, i, hb) })
	}
	wg.Wait()
	return out, nil
}

// HeartbeatStream serves a stream of batches: each is served as a
// Heartbeats call would be and answered before the next is read. A batch
// refused as a whole (another cluster) ends the stream with the refusal.
// Like a pipeline's stream, it ends when the Manager closes even if the
// peer keeps it open: a graceful stop waits for every handler.
func (s raftServer) HeartbeatStream(stream raftpb.RaftService_HeartbeatStreamServer) error {
	ctx := stream.Context()
	next, stop := receiveAll(stream.Recv)
	defer stop()
	for {
		select {
		case n := <-next:
			if n.err != nil {
				return recvEnd(n.err)
			}
			out, err := s.Heartbeats(ctx, n.msg)
			if err != nil {
				return err
			}
			if err := stream.Send(out); err != nil {
				return err
			}
		case <-s.m.lifetime.Done():
			return s.m.closingErr()
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		}
	}
}

func (s raftServer) heartbeat(ctx context.Context, cluster string, hb *raftpb.AppendEntriesRequest) (*raftpb.AppendEntriesResponse, error) {
	return serveRaft(ctx, s.m, "Heartbeats", cluster, hb.GetGroup(), hb, decodeAppendEntriesRequest, isHeartbeat, encodeAppendEntriesResponse)
}
