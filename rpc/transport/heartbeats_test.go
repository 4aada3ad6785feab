package transport

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/metamq/meta/rpc/transport/raftpb"
)

// Heartbeats of many groups to one peer travel together: with a linger
// longer than it takes to start them all, 20 groups' heartbeats reach the
// peer in fewer calls than there are groups, none as a lone AppendEntries,
// and each group gets its own follower's answer.
func TestHeartbeatsOfManyGroupsTravelTogether(t *testing.T) {
	const groups = 20
	linger := func(c *Config) { c.HeartbeatLinger = 2 * time.Second }
	a := startNode(t, "c", linger)
	b := startNode(t, "c", linger)
	var done []<-chan error
	resps := make([]raft.AppendEntriesResponse, groups)
	for i := range groups {
		name := fmt.Sprintf("g%d", i)
		ta, tb := a.group(t, name), b.group(t, name)
		last := uint64(100 + i)
		tb.SetHeartbeatHandler(func(rpc raft.RPC) {
			req := rpc.Command.(*raft.AppendEntriesRequest)
			rpc.Respond(&raft.AppendEntriesResponse{Term: req.Term, LastLog: last, Success: true}, nil)
		})
		done = append(done, call(func() error {
			return ta.AppendEntries("b", raft.ServerAddress(b.addr), heartbeat(a), &resps[i])
		}))
	}
	for i, ch := range done {
		if err := recvErr(t, ch); err != nil {
			t.Fatalf("g%d heartbeat: %v", i, err)
		}
	}
	for i, r := range resps {
		if !r.Success || r.LastLog != uint64(100+i) {
			t.Fatalf("g%d got %+v, want its own follower's answer (last log %d)", i, r, 100+i)
		}
	}
	batches, single := b.batches(), b.called(raftpb.RaftService_AppendEntries_FullMethodName)
	if single != 0 || batches == 0 || batches >= groups {
		t.Fatalf("%d heartbeats travelled in %d batch calls and %d lone calls, want fewer batch calls than heartbeats and no lone call", groups, batches, single)
	}
	t.Logf("%d heartbeats in %d calls", groups, batches)
}

// A heartbeat someone waits for (a leadership confirmation) does not
// linger: with a linger of an hour, an urgent group's heartbeat is
// answered at once.
func TestUrgentHeartbeatDoesNotLinger(t *testing.T) {
	hour := func(c *Config) { c.HeartbeatLinger = time.Hour }
	a := startNode(t, "c", hour)
	b := startNode(t, "c", hour)
	ta, tb := a.group(t, "g"), b.group(t, "g")
	tb.SetHeartbeatHandler(func(rpc raft.RPC) {
		rpc.Respond(&raft.AppendEntriesResponse{Term: 5, Success: true}, nil)
	})
	ta.SetUrgent(func() bool { return true })
	var resp raft.AppendEntriesResponse
	if err := recvErr(t, call(func() error {
		return ta.AppendEntries("b", raft.ServerAddress(b.addr), heartbeat(a), &resp)
	})); err != nil || !resp.Success {
		t.Fatalf("urgent heartbeat: %v %+v", err, resp)
	}
}

// idleAppend is raft's CommitTimeout append: no entries, a checked
// previous entry and the commit index.
func idleAppend(from *testNode) *raft.AppendEntriesRequest {
	req := heartbeat(from)
	req.PrevLogEntry, req.PrevLogTerm, req.LeaderCommitIndex = 10, 5, 10
	return req
}

// nextFuture waits for the pipeline's next answered append.
func nextFuture(t *testing.T, p raft.AppendPipeline) raft.AppendFuture {
	t.Helper()
	select {
	case f := <-p.Consumer():
		return f
	case <-time.After(30 * time.Second):
		t.Fatal("no answered append within 30s")
		return nil
	}
}

// Idle appends (no entries, nothing in flight) of many groups' pipelines
// to one peer travel in batch calls, reach each group's raft (not the
// heartbeat handler), and each pipeline hands raft its own follower's
// answer.
func TestIdleAppendsOfManyGroupsTravelTogether(t *testing.T) {
	const groups = 20
	linger := func(c *Config) { c.HeartbeatLinger = 500 * time.Millisecond } // idle appends: 4x that
	a := startNode(t, "c", linger)
	b := startNode(t, "c", linger)
	var pipes []raft.AppendPipeline
	for i := range groups {
		name := fmt.Sprintf("g%d", i)
		ta, tb := a.group(t, name), b.group(t, name)
		tb.SetHeartbeatHandler(func(raft.RPC) { t.Errorf("%s: an idle append reached the heartbeat handler", name) })
		serveConsumer(t, tb, func(rpc raft.RPC) (any, error) {
			req := rpc.Command.(*raft.AppendEntriesRequest)
			return &raft.AppendEntriesResponse{Term: req.Term, LastLog: uint64(100 + i), Success: true}, nil
		})
		p := openPipeline(t, ta, b)
		if _, err := p.AppendEntries(idleAppend(a), new(raft.AppendEntriesResponse)); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		pipes = append(pipes, p)
	}
	for i, p := range pipes {
		f := nextFuture(t, p)
		if err := f.Error(); err != nil || !f.Response().Success || f.Response().LastLog != uint64(100+i) {
			t.Fatalf("g%d: got %+v (%v), want its own follower's answer (last log %d)", i, f.Response(), err, 100+i)
		}
	}
	if batches := b.batches(); batches == 0 || batches >= groups {
		t.Fatalf("%d idle appends travelled in %d batch calls, want fewer than one per group and at least one", groups, batches)
	}
}

// An idle append to a group whose raft is busy does not hold the other
// groups' answers in its batch: it is dropped (its future fails, raft is
// not handed it) and its pipeline goes on working. (The calls' timeout is
// longer than the test waits: only the receiver's bound per item can
// answer the other group in time.)
func TestIdleAppendToBusyGroupIsDropped(t *testing.T) {
	linger := func(c *Config) { c.HeartbeatLinger, c.Timeout = 500*time.Millisecond, time.Minute }
	a := startNode(t, "c", linger)
	b := startNode(t, "c", linger)
	busy := make(chan struct{})
	release := sync.OnceFunc(func() { close(busy) })
	var pipes []raft.AppendPipeline
	for i := range 2 {
		name := fmt.Sprintf("g%d", i)
		ta, tb := a.group(t, name), b.group(t, name)
		serveConsumer(t, tb, func(rpc raft.RPC) (any, error) {
			if i == 0 {
				<-busy
			}
			return &raft.AppendEntriesResponse{Term: 5, Success: true}, nil
		})
		p := openPipeline(t, ta, b)
		t.Cleanup(release) // before the consumer stops, should the test fail
		pipes = append(pipes, p)
	}
	f0, err := pipes[0].AppendEntries(idleAppend(a), new(raft.AppendEntriesResponse))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pipes[1].AppendEntries(idleAppend(a), new(raft.AppendEntriesResponse)); err != nil {
		t.Fatal(err)
	}
	if f := nextFuture(t, pipes[1]); f.Error() != nil || !f.Response().Success {
		t.Fatalf("g1: got %+v (%v), want its answer", f.Response(), f.Error())
	}
	if err := f0.Error(); err == nil {
		t.Fatal("g0: the busy group's idle append succeeded, want it dropped")
	}
	select {
	case f := <-pipes[0].Consumer():
		t.Fatalf("g0: raft was handed the dropped append (%v)", f.Error())
	default:
	}
	release()
	if _, err := pipes[0].AppendEntries(dataAppend(10), new(raft.AppendEntriesResponse)); err != nil {
		t.Fatalf("g0 after the drop: %v", err)
	}
	if f := nextFuture(t, pipes[0]); f.Error() != nil || len(f.Request().Entries) != 1 {
		t.Fatalf("g0 after the drop: got %+v (%v), want the data append's answer", f.Request(), f.Error())
	}
}

// An append without entries sent while another is in flight stays on the
// stream, behind it: the batch would let it overtake an append whose
// entries it checks.
func TestAppendBehindOneInFlightStaysOnStream(t *testing.T) {
	a := startNode(t, "c", nil)
	b := startNode(t, "c", nil)
	ta, tb := a.group(t, "g"), b.group(t, "g")
	p := openPipeline(t, ta, b)
	if _, err := p.AppendEntries(dataAppend(9), new(raft.AppendEntriesResponse)); err != nil {
		t.Fatal(err)
	}
	var first raft.RPC
	select {
	case first = <-tb.Consumer():
	case <-time.After(30 * time.Second):
		t.Fatal("the data append never reached raft")
	}
	if _, err := p.AppendEntries(idleAppend(a), new(raft.AppendEntriesResponse)); err != nil {
		t.Fatal(err)
	}
	first.Respond(&raft.AppendEntriesResponse{Term: 5, Success: true}, nil)
	select {
	case rpc := <-tb.Consumer():
		rpc.Respond(&raft.AppendEntriesResponse{Term: 5, Success: true}, nil)
	case <-time.After(30 * time.Second):
		t.Fatal("the empty append never reached raft")
	}
	for i, want := range []int{1, 0} {
		if f := nextFuture(t, p); f.Error() != nil || len(f.Request().Entries) != want {
			t.Fatalf("answer %d: got %d entries (%v), want %d", i, len(f.Request().Entries), f.Error(), want)
		}
	}
	if n := b.batches(); n != 0 {
		t.Fatalf("%d batch calls, want none", n)
	}
}

// A pipeline whose appends go idle (through the batch, not the stream)
// sends nothing more on its stream; when the receiving group closes, the
// receiver's stream handler still ends, so that a graceful stop of the
// receiver's server, which waits for its handlers, does not hang for as
// long as the sender keeps the pipeline open. (The receiver serves no
// HeartbeatStream, so that the batch travels in a call: a batch stream
// ends with the receiving Manager, TestHeartbeatStreamEndsWhenManagerCloses,
// which stays open here.)
func TestIdlePipelineEndsWhenGroupCloses(t *testing.T) {
	linger := func(c *Config) { c.HeartbeatLinger = 50 * time.Millisecond }
	a := startNode(t, "c", linger)
	b := startNodeServing(t, "c", linger, registerWithoutStream)
	ta := a.group(t, "g")
	tb, err := b.mgr.Group("g")
	if err != nil {
		t.Fatal(err)
	}
	serveConsumer(t, tb, func(rpc raft.RPC) (any, error) {
		return &raft.AppendEntriesResponse{Term: 1, Success: true}, nil
	})
	p := openPipeline(t, ta, b)
	for _, req := range []*raft.AppendEntriesRequest{dataAppend(9), idleAppend(a)} {
		if _, err := p.AppendEntries(req, new(raft.AppendEntriesResponse)); err != nil {
			t.Fatal(err)
		}
		if f := nextFuture(t, p); f.Error() != nil {
			t.Fatal(f.Error())
		}
	}
	if n := b.batches(); n != 1 {
		t.Fatalf("%d batch calls, want the idle append's one", n)
	}
	if err := tb.Close(); err != nil {
		t.Fatal(err)
	}
	if !b.stopsGracefully(20 * time.Second) {
		t.Fatal("graceful stop still waiting after 20s for the closed group's pipeline handler")
	}
}

// sendHeartbeat sends a heartbeat of a's group ta to b and returns the
// answer.
func sendHeartbeat(t *testing.T, ta *Transport, a, b *testNode) (raft.AppendEntriesResponse, error) {
	t.Helper()
	var resp raft.AppendEntriesResponse
	err := recvErr(t, call(func() error {
		return ta.AppendEntries("b", raft.ServerAddress(b.addr), heartbeat(a), &resp)
	}))
	return resp, err
}

// answerHeartbeats makes tb's raft answer every heartbeat with success.
func answerHeartbeats(tb *Transport) {
	tb.SetHeartbeatHandler(func(rpc raft.RPC) {
		rpc.Respond(&raft.AppendEntriesResponse{Term: 5, Success: true}, nil)
	})
}

// Batches to a peer share one stream: heartbeats sent one after the
// other, each its own batch, travel as messages of one HeartbeatStream,
// not as calls or streams of their own.
func TestHeartbeatBatchesShareOneStream(t *testing.T) {
	a := startNode(t, "c", nil)
	b := startNode(t, "c", nil)
	ta, tb := a.group(t, "g"), b.group(t, "g")
	answerHeartbeats(tb)
	const sends = 5
	for i := range sends {
		if resp, err := sendHeartbeat(t, ta, a, b); err != nil || !resp.Success {
			t.Fatalf("heartbeat %d: %v %+v", i, err, resp)
		}
	}
	streams, msgs := b.called(raftpb.RaftService_HeartbeatStream_FullMethodName), b.called(raftpb.RaftService_HeartbeatStream_FullMethodName+msgSuffix)
	if calls := b.called(raftpb.RaftService_Heartbeats_FullMethodName); streams != 1 || msgs != sends || calls != 0 {
		t.Fatalf("%d heartbeats in turn: got %d streams carrying %d batches and %d batch calls, want 1 stream carrying %d batches and no call",
			sends, streams, msgs, calls, sends)
	}
}

// noStreamServer is the raft service of a release without
// HeartbeatStream.
type noStreamServer struct{ raftServer }

func (noStreamServer) HeartbeatStream(raftpb.RaftService_HeartbeatStreamServer) error {
	return status.Error(codes.Unimplemented, "unknown method HeartbeatStream")
}

// registerWithoutStream serves m as a release without HeartbeatStream.
func registerWithoutStream(m *Manager, s grpc.ServiceRegistrar) {
	raftpb.RegisterRaftServiceServer(s, noStreamServer{raftServer{m: m}})
	raftpb.RegisterPeerServiceServer(s, peerServer{m: m})
}

// A peer of an older release, without HeartbeatStream, gets heartbeat
// batches in Heartbeats calls, and is not asked for a stream again.
func TestHeartbeatsToPeerWithoutStreamGoInCalls(t *testing.T) {
	a := startNode(t, "c", nil)
	b := startNodeServing(t, "c", nil, registerWithoutStream)
	ta, tb := a.group(t, "g"), b.group(t, "g")
	answerHeartbeats(tb)
	for i := range 2 {
		if resp, err := sendHeartbeat(t, ta, a, b); err != nil || !resp.Success {
			t.Fatalf("heartbeat %d: %v %+v", i, err, resp)
		}
	}
	if streams, calls := b.called(raftpb.RaftService_HeartbeatStream_FullMethodName), b.called(raftpb.RaftService_Heartbeats_FullMethodName); streams != 1 || calls != 2 {
		t.Fatalf("got %d stream attempts and %d batch calls, want 1 and 2", streams, calls)
	}
}

// stallingServer's first HeartbeatStream reads batches and never answers
// them; later streams are served.
type stallingServer struct {
	raftServer
	stalled *atomic.Bool
}

func (s stallingServer) HeartbeatStream(stream raftpb.RaftService_HeartbeatStreamServer) error {
	if s.stalled.CompareAndSwap(false, true) {
		for {
			if _, err := stream.Recv(); err != nil {
				return err
			}
		}
	}
	return s.raftServer.HeartbeatStream(stream)
}

// A batch whose answer does not come within the call timeout fails, and
// the next batch goes on a new stream.
func TestStalledHeartbeatStreamFailsBatchAndReopens(t *testing.T) {
	a := startNode(t, "c", func(c *Config) { c.Timeout = 300 * time.Millisecond })
	b := startNodeServing(t, "c", nil, func(m *Manager, s grpc.ServiceRegistrar) {
		raftpb.RegisterRaftServiceServer(s, stallingServer{raftServer{m: m}, new(atomic.Bool)})
		raftpb.RegisterPeerServiceServer(s, peerServer{m: m})
	})
	ta, tb := a.group(t, "g"), b.group(t, "g")
	answerHeartbeats(tb)
	if resp, err := sendHeartbeat(t, ta, a, b); err == nil {
		t.Fatalf("heartbeat on the stalled stream: got %+v, want an error", resp)
	} else if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("heartbeat on the stalled stream: got %v, want DeadlineExceeded", err)
	}
	if resp, err := sendHeartbeat(t, ta, a, b); err != nil || !resp.Success {
		t.Fatalf("heartbeat after the stall: %v %+v", err, resp)
	}
	if n := b.called(raftpb.RaftService_HeartbeatStream_FullMethodName); n != 2 {
		t.Fatalf("got %d streams, want 2 (the stalled one, then a new one)", n)
	}
}

// A heartbeat stream the peer keeps open ends when the receiving Manager
// closes, so that a graceful stop of its server, which waits for its
// handlers, does not hang.
func TestHeartbeatStreamEndsWhenManagerCloses(t *testing.T) {
	a := startNode(t, "c", nil)
	b := startNode(t, "c", nil)
	ta, tb := a.group(t, "g"), b.group(t, "g")
	answerHeartbeats(tb)
	if _, err := sendHeartbeat(t, ta, a, b); err != nil {
		t.Fatal(err)
	}
	if err := b.mgr.Close(); err != nil {
		t.Fatal(err)
	}
	if !b.stopsGracefully(20 * time.Second) {
		t.Fatal("graceful stop still waiting after 20s for the heartbeat stream's handler")
	}
}

// idleRepeats sends on a pipeline of a's group to b the idle appends with
// the commit indexes given, each once the one before is answered (or held
// back), and returns how many reached b's raft and the commit indexes of
// those handed back to a's raft (sorted: the hand-overs may cross).
func idleRepeats(t *testing.T, repeat time.Duration, commits ...uint64) (reached int, answered []uint64) {
	t.Helper()
	a := startNode(t, "c", func(c *Config) { c.IdleRepeat = repeat })
	b := startNode(t, "c", nil)
	ta, tb := a.group(t, "g"), b.group(t, "g")
	var got atomic.Int32
	serveConsumer(t, tb, func(rpc raft.RPC) (any, error) {
		got.Add(1)
		req := rpc.Command.(*raft.AppendEntriesRequest)
		return &raft.AppendEntriesResponse{Term: req.Term, Success: true}, nil
	})
	p := openPipeline(t, ta, b)
	for _, c := range commits {
		req := idleAppend(a)
		req.LeaderCommitIndex = c
		f, err := p.AppendEntries(req, new(raft.AppendEntriesResponse))
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Error(); err != nil {
			t.Fatalf("idle append (commit %d): %v", c, err)
		}
	}
	// Every append that reached b was answered, and every answered one is
	// handed to raft: wait for as many hand-overs.
	reached = int(got.Load())
	for range reached {
		answered = append(answered, nextFuture(t, p).Request().LeaderCommitIndex)
	}
	slices.Sort(answered)
	return reached, answered
}

// An idle append that repeats the last one the follower accepted, within
// IdleRepeat, is held back: it neither reaches the follower nor is handed
// to raft. One that carries a new commit index goes.
func TestRepeatedIdleAppendIsHeldBack(t *testing.T) {
	reached, answered := idleRepeats(t, time.Hour, 10, 10, 10, 11, 11)
	if reached != 2 || !slices.Equal(answered, []uint64{10, 11}) {
		t.Fatalf("idle appends with commit 10, 10, 10, 11, 11: got %d reaching the follower and %v handed to raft, want 2 and [10 11]", reached, answered)
	}
}

// A repeat goes once IdleRepeat has passed since the last one accepted
// (here at once), and every repeat goes when IdleRepeat is negative.
func TestIdleAppendRepeatsAfterIdleRepeat(t *testing.T) {
	for _, repeat := range []time.Duration{time.Nanosecond, -1} {
		reached, answered := idleRepeats(t, repeat, 10, 10, 10)
		if reached != 3 || !slices.Equal(answered, []uint64{10, 10, 10}) {
			t.Fatalf("IdleRepeat %v, idle appends with commit 10 three times: got %d reaching the follower and %v handed to raft, want 3 and [10 10 10]", repeat, reached, answered)
		}
	}
}
