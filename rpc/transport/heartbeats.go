package transport

import (
	"context"
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
	ctx, cancel := context.WithTimeout(b.m.lifetime, b.m.cfg.Timeout)
	defer cancel()
	if b.legacy.Load() {
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
	out, err := pc.raft.Heartbeats(ctx, req)
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
	for i, hb := range req.GetHeartbeats() {
		if isHeartbeat(decodeAppendEntriesRequest(hb)) {
			answer(ctx, i, hb)
			continue
		}
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(ctx, batchedAppendWait)
			defer cancel()
			answer(ctx, i, hb)
		})
	}
	wg.Wait()
	return out, nil
}

func (s raftServer) heartbeat(ctx context.Context, cluster string, hb *raftpb.AppendEntriesRequest) (*raftpb.AppendEntriesResponse, error) {
	return serveRaft(ctx, s.m, "Heartbeats", cluster, hb.GetGroup(), hb, decodeAppendEntriesRequest, isHeartbeat, encodeAppendEntriesResponse)
}
