package transport

import (
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/raft"

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
	batches, single := b.called(raftpb.RaftService_Heartbeats_FullMethodName), b.called(raftpb.RaftService_AppendEntries_FullMethodName)
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
