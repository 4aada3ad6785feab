package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/metamq/meta/rpc/transport/raftpb"
)

// Transport is the raft.Transport of one group. Outgoing RPCs use the
// Manager's shared connections; incoming RPCs for the group are delivered
// on Consumer (heartbeats to the heartbeat handler, when one is set).
type Transport struct {
	m     *Manager
	group string

	consumeCh chan raft.RPC
	heartbeat atomic.Pointer[func(raft.RPC)]
	// inHeartbeat is held for reading while raft's heartbeat handler runs
	// on an incoming call's goroutine, which raft.Shutdown does not wait
	// for; Close takes it for writing, so that once raft is shut down no
	// heartbeat is still writing to the group's storage (a caller may
	// drop it next: a term saved to a dropped store makes raft panic).
	inHeartbeat sync.RWMutex
	hbClosed    bool         // set by Close under inHeartbeat
	pending     atomic.Int64 // incoming requests waiting for raft
	// urgent says this group's heartbeats must not linger (SetUrgent).
	urgent atomic.Pointer[func() bool]

	// lifetime is not a request context: raft.Transport's methods take no
	// ctx, so every outgoing call derives its context from lifetime, and
	// Close cancels it to abort them all. Incoming requests watch
	// lifetime.Done() so they never wait on a closed group.
	lifetime context.Context
	cancel   context.CancelFunc

	mu        sync.Mutex // guards pipelines and closed
	pipelines map[*pipeline]struct{}
	closed    bool

	// matched is the replication progress this node saw as leader.
	matched matchTable
}

var (
	_ raft.Transport   = (*Transport)(nil)
	_ raft.WithClose   = (*Transport)(nil)
	_ raft.WithPreVote = (*Transport)(nil)
)

func newTransport(m *Manager, group string) *Transport {
	ctx, cancel := context.WithCancel(context.Background())
	return &Transport{
		m:         m,
		group:     group,
		consumeCh: make(chan raft.RPC),
		lifetime:  ctx,
		cancel:    cancel,
		pipelines: make(map[*pipeline]struct{}),
	}
}

// Group returns the group's name.
func (t *Transport) Group() string { return t.group }

// Consumer implements raft.Transport.
func (t *Transport) Consumer() <-chan raft.RPC { return t.consumeCh }

// LocalAddr implements raft.Transport.
func (t *Transport) LocalAddr() raft.ServerAddress { return raft.ServerAddress(t.m.cfg.LocalAddr) }

// SetHeartbeatHandler implements raft.Transport. Heartbeats (see
// isHeartbeat) go to cb instead of the consumer channel while it is set.
func (t *Transport) SetHeartbeatHandler(cb func(rpc raft.RPC)) {
	if cb == nil {
		t.heartbeat.Store(nil)
		return
	}
	t.heartbeat.Store(&cb)
}

// EncodePeer implements raft.Transport: a peer is its address.
func (t *Transport) EncodePeer(_ raft.ServerID, addr raft.ServerAddress) []byte {
	return []byte(addr)
}

// DecodePeer implements raft.Transport.
func (t *Transport) DecodePeer(b []byte) raft.ServerAddress { return raft.ServerAddress(b) }

// Pending returns the number of incoming requests of the group that are
// waiting for raft: queued on the consumer channel or awaiting its answer.
// A gauge for status pages; a growing value means raft is not keeping up.
func (t *Transport) Pending() int { return int(t.pending.Load()) }

// Close implements raft.WithClose (raft.Shutdown calls it). It cancels the
// group's outgoing calls, closes its pipelines and waits for their
// goroutines, waits for incoming heartbeats in raft's handler to return,
// unblocks incoming requests waiting on the group and removes
// the group from the Manager so that it can be opened again. Safe to call
// more than once.
func (t *Transport) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	ps := make([]*pipeline, 0, len(t.pipelines))
	for p := range t.pipelines {
		ps = append(ps, p)
	}
	t.mu.Unlock()

	t.cancel()
	for _, p := range ps {
		_ = p.Close()
	}
	t.inHeartbeat.Lock() // the heartbeats in raft's handler have returned
	t.hbClosed = true
	t.inHeartbeat.Unlock()
	t.m.removeGroup(t.group, t)
	return nil
}

func (t *Transport) closing() bool { return t.lifetime.Err() != nil }

func (t *Transport) client(target raft.ServerAddress) (raftpb.RaftServiceClient, error) {
	if t.closing() {
		return nil, ErrClosed
	}
	pc, err := t.m.conn(string(target))
	if err != nil {
		return nil, err
	}
	return pc.raft, nil
}

// callErr describes a failed outgoing raft RPC, keeping the gRPC status
// (status.FromError still works) and our sentinels for errors.Is.
func (t *Transport) callErr(method string, target raft.ServerAddress, err error) error {
	if t.closing() {
		return fmt.Errorf("transport: %s %s to %s: %w: %w", t.group, method, target, ErrClosed, err)
	}
	if st, ok := status.FromError(err); ok {
		for _, d := range st.Details() {
			if pe, ok := d.(*raftpb.PeerError); ok {
				if c := reasonCause(pe.GetReason()); c != nil {
					return fmt.Errorf("transport: %s %s to %s: %w: %w", t.group, method, target, c, err)
				}
			}
		}
	}
	return fmt.Errorf("transport: %s %s to %s: %w", t.group, method, target, err)
}

// AppendEntries implements raft.Transport.
func (t *Transport) AppendEntries(_ raft.ServerID, target raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	if t.m.cfg.HeartbeatLinger > 0 && isHeartbeat(args) {
		if err := t.sendHeartbeat(target, args, resp); err != nil {
			return err
		}
		t.matched.observe(target, args, resp)
		return nil
	}
	if err := callRaft(t, "AppendEntries", target, args, resp, encodeAppendEntriesRequest,
		raftpb.RaftServiceClient.AppendEntries, decodeAppendEntriesResponse); err != nil {
		return err
	}
	t.matched.observe(target, args, resp)
	return nil
}

// RequestVote implements raft.Transport.
func (t *Transport) RequestVote(_ raft.ServerID, target raft.ServerAddress, args *raft.RequestVoteRequest, resp *raft.RequestVoteResponse) error {
	return callRaft(t, "RequestVote", target, args, resp, encodeRequestVoteRequest,
		raftpb.RaftServiceClient.RequestVote, decodeRequestVoteResponse)
}

// RequestPreVote implements raft.WithPreVote.
func (t *Transport) RequestPreVote(_ raft.ServerID, target raft.ServerAddress, args *raft.RequestPreVoteRequest, resp *raft.RequestPreVoteResponse) error {
	return callRaft(t, "RequestPreVote", target, args, resp, encodeRequestPreVoteRequest,
		raftpb.RaftServiceClient.RequestPreVote, decodeRequestPreVoteResponse)
}

// TimeoutNow implements raft.Transport.
func (t *Transport) TimeoutNow(_ raft.ServerID, target raft.ServerAddress, args *raft.TimeoutNowRequest, resp *raft.TimeoutNowResponse) error {
	return callRaft(t, "TimeoutNow", target, args, resp, encodeTimeoutNowRequest,
		raftpb.RaftServiceClient.TimeoutNow, decodeTimeoutNowResponse)
}

// callRaft makes one unary raft call (method) to target: args encoded with
// the group's route, the call bounded by the configured timeout and the
// transport's lifetime, the answer decoded into resp.
func callRaft[A, Req, Out, R any](t *Transport, method string, target raft.ServerAddress, args A, resp R,
	encode func(cluster, group string, args A) Req,
	call func(raftpb.RaftServiceClient, context.Context, Req, ...grpc.CallOption) (Out, error),
	decode func(Out, R)) error {
	c, err := t.client(target)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(t.lifetime, t.m.cfg.Timeout)
	defer cancel()
	out, err := call(c, ctx, encode(t.m.ClusterID(), t.group, args))
	if err != nil {
		return t.callErr(method, target, err)
	}
	decode(out, resp)
	return nil
}

// deliver hands an incoming command to raft and waits for its answer:
// heartbeats go straight to the heartbeat handler when one is set, all
// else through the consumer channel. It returns as soon as the group closes
// or ctx ends, even if raft never answers.
func (t *Transport) deliver(ctx context.Context, cmd any, heartbeat bool) (any, error) {
	t.pending.Add(1)
	defer t.pending.Add(-1)
	respCh := make(chan raft.RPCResponse, 1)
	rpc := raft.RPC{Command: cmd, RespChan: respCh}
	if err := t.enqueue(ctx, rpc, heartbeat); err != nil {
		return nil, err
	}
	return t.await(ctx, respCh)
}

func (t *Transport) enqueue(ctx context.Context, rpc raft.RPC, heartbeat bool) error {
	if t.closing() {
		return errGroupClosing(t.group)
	}
	if heartbeat {
		if fn := t.heartbeat.Load(); fn != nil {
			t.inHeartbeat.RLock()
			defer t.inHeartbeat.RUnlock()
			if t.hbClosed {
				return errGroupClosing(t.group)
			}
			// raft's handler answers synchronously, or not at all when
			// raft is shutting down: await covers both. It runs on a
			// goroutine of its own, waited for here: a node whose raft
			// stores fail ends the goroutine that met the failure where
			// raft would panic (metanode/storage.go, runtime.Goexit), and
			// the gRPC handler's goroutine must not end that way.
			handled := make(chan struct{})
			go func() {
				defer close(handled)
				(*fn)(rpc)
			}()
			<-handled
			return nil
		}
	}
	select {
	case t.consumeCh <- rpc:
		return nil
	case <-t.lifetime.Done():
		return errGroupClosing(t.group)
	case <-ctx.Done():
		return status.FromContextError(ctx.Err()).Err()
	}
}

func (t *Transport) await(ctx context.Context, respCh <-chan raft.RPCResponse) (any, error) {
	select {
	case r := <-respCh:
		if r.Error != nil {
			return nil, status.Error(codes.Unknown, r.Error.Error())
		}
		return r.Response, nil
	case <-t.lifetime.Done():
		return nil, errGroupClosing(t.group)
	case <-ctx.Done():
		return nil, status.FromContextError(ctx.Err()).Err()
	}
}

// errUnexpectedResponse means raft answered a command with a response of
// another type; it would be a bug in raft or in this package.
var errUnexpectedResponse = errors.New("transport: unexpected response type from raft")

func unexpected(resp any) error {
	return status.Error(codes.Internal, fmt.Sprintf("%v: %T", errUnexpectedResponse, resp))
}

// raftServer serves RaftService for all groups of a Manager.
type raftServer struct {
	raftpb.UnimplementedRaftServiceServer
	m *Manager
}

// serveRaft serves one unary raft call: it routes the request to its
// group's transport (the cluster and group it names), decodes it, hands it
// to raft (as a heartbeat when heartbeat, if given, says it is one) and
// encodes raft's response, of type *R.
func serveRaft[Req, Cmd, R, Out any](ctx context.Context, m *Manager, method, cluster, group string, req Req,
	decode func(Req) Cmd, heartbeat func(Cmd) bool, encode func(*R) Out) (Out, error) {
	var zero Out
	t, err := m.route(method, cluster, group)
	if err != nil {
		return zero, err
	}
	cmd := decode(req)
	r, err := deliverAs[R](ctx, t, cmd, heartbeat != nil && heartbeat(cmd))
	if err != nil {
		return zero, err
	}
	return encode(r), nil
}

// deliverAs hands cmd to raft (see deliver) and returns its response,
// which must be of type *R.
func deliverAs[R any](ctx context.Context, t *Transport, cmd any, heartbeat bool) (*R, error) {
	resp, err := t.deliver(ctx, cmd, heartbeat)
	if err != nil {
		return nil, err
	}
	r, ok := resp.(*R)
	if !ok {
		return nil, unexpected(resp)
	}
	return r, nil
}

func (s raftServer) AppendEntries(ctx context.Context, req *raftpb.AppendEntriesRequest) (*raftpb.AppendEntriesResponse, error) {
	return serveRaft(ctx, s.m, "AppendEntries", req.GetClusterId(), req.GetGroup(), req,
		decodeAppendEntriesRequest, isHeartbeat, encodeAppendEntriesResponse)
}

func (s raftServer) RequestVote(ctx context.Context, req *raftpb.RequestVoteRequest) (*raftpb.RequestVoteResponse, error) {
	return serveRaft(ctx, s.m, "RequestVote", req.GetClusterId(), req.GetGroup(), req,
		decodeRequestVoteRequest, nil, encodeRequestVoteResponse)
}

func (s raftServer) RequestPreVote(ctx context.Context, req *raftpb.RequestPreVoteRequest) (*raftpb.RequestPreVoteResponse, error) {
	return serveRaft(ctx, s.m, "RequestPreVote", req.GetClusterId(), req.GetGroup(), req,
		decodeRequestPreVoteRequest, nil, encodeRequestPreVoteResponse)
}

func (s raftServer) TimeoutNow(ctx context.Context, req *raftpb.TimeoutNowRequest) (*raftpb.TimeoutNowResponse, error) {
	return serveRaft(ctx, s.m, "TimeoutNow", req.GetClusterId(), req.GetGroup(), req,
		decodeTimeoutNowRequest, nil, encodeTimeoutNowResponse)
}

// AppendEntriesPipeline serves one pipelined stream: requests are handed to
// raft one at a time, in order, and each response is sent before the next
// request is delivered, so responses match requests by position. The next
// requests meanwhile wait, already received, in the stream's buffers: that
// overlap of transfer with processing is what the pipeline buys.
func (s raftServer) AppendEntriesPipeline(stream raftpb.RaftService_AppendEntriesPipelineServer) error {
	ctx := stream.Context()
	// Messages are read in a goroutine of their own so that the handler
	// ends when the group or the Manager closes even if none comes: raft
	// opens a pipeline when it starts replicating, and one with nothing in
	// flight sends its idle appends beside the stream (pipeline.sendIdle),
	// so a stream may stay silent from its start; a graceful stop waits for
	// every handler. The reader ends when the stream does, at the latest
	// when this handler returns.
	next, stop := receiveAll(stream.Recv)
	defer stop()
	var req *raftpb.AppendEntriesRequest
	select {
	case n := <-next:
		if n.err != nil {
			return recvEnd(n.err)
		}
		req = n.msg
	case <-s.m.lifetime.Done():
		return s.m.closingErr()
	case <-ctx.Done():
		return status.FromContextError(ctx.Err()).Err()
	}
	cluster, group := req.GetClusterId(), req.GetGroup()
	t, err := s.m.route("AppendEntriesPipeline", cluster, group)
	if err != nil {
		return err
	}
	for {
		if req.GetGroup() != group || req.GetClusterId() != cluster {
			return status.Errorf(codes.InvalidArgument, "transport: pipeline of group %q got a message for %q", group, req.GetGroup())
		}
		r, err := deliverAs[raft.AppendEntriesResponse](ctx, t, decodeAppendEntriesRequest(req), false)
		if err != nil {
			return err
		}
		if err := stream.Send(encodeAppendEntriesResponse(r)); err != nil {
			return err
		}
		select {
		case n := <-next:
			if n.err != nil {
				return recvEnd(n.err)
			}
			req = n.msg
		case <-t.lifetime.Done():
			return errGroupClosing(group)
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		}
	}
}

// received is one message a stream's reader got, or the error that ended
// its reading.
type received[M any] struct {
	msg M
	err error
}

// receiveAll reads a stream's messages in a goroutine of its own and hands
// them over on next, so that a handler can wait for one or for its group
// or Manager to close. The reader ends after the first error, or once stop
// is called and the stream's next Recv returns (at the latest when the
// handler has returned and the stream ended): call stop when the handler
// returns.
func receiveAll[M any](recv func() (M, error)) (next <-chan received[M], stop func()) {
	ch := make(chan received[M])
	done := make(chan struct{})
	go func() {
		for {
			m, err := recv()
			select {
			case ch <- received[M]{m, err}:
			case <-done:
				return
			}
			if err != nil {
				return
			}
		}
	}()
	return ch, func() { close(done) }
}

// closingErr is the refusal of a stream whose Manager is closing.
func (m *Manager) closingErr() error {
	return rejection(codes.Unavailable, raftpb.Reason_REASON_CLOSED, fmt.Sprintf("transport: %s is closing", m.cfg.LocalAddr))
}

// recvEnd maps the end of a client stream: io.EOF is a clean half-close.
func recvEnd(err error) error {
	if errors.Is(err, io.EOF) {
		return nil
	}
	return err
}
