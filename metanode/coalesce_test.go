package metanode_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/metamq/meta/metanode/metanodetest"
	"github.com/metamq/meta/rpc/metapb"
)

// The client's coalescing against a real cluster: concurrent puts, gets,
// offset commits and fetches and session puts share batch RPCs (the
// nodes' gRPC counters see MultiPut and MultiGet calls), and every caller
// gets its own answer: each value reads back as written, each commit and
// session put answers for its own entries.
func TestClientCoalescesAgainstCluster(t *testing.T) {
	c := metanodetest.Start(t, metanodetest.Options{Metrics: true, DataGroups: 2})
	cl := c.Client("")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	handled := func(method string) float64 {
		return total(t, c, "meta_grpc_handled_total", map[string]string{"method": "/meta.v1." + method, "code": "OK"})
	}
	// concurrently runs f(i) for i in [0, n) and fails on any error.
	concurrently := func(n int, f func(i int) error) {
		t.Helper()
		var wg sync.WaitGroup
		errs := make([]error, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = f(i)
			}()
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("caller %d: %v", i, err)
			}
		}
	}
	// Rounds of 64 concurrent callers until a batch formed (whether calls
	// overlap is up to the scheduler; a round almost always suffices).
	const n = 64
	for round := 0; handled("KV/MultiPut") == 0 || handled("KV/MultiGet") == 0; round++ {
		if round == 20 || ctx.Err() != nil {
			t.Fatalf("no MultiPut (%v) or MultiGet (%v) after %d rounds of %d concurrent callers",
				handled("KV/MultiPut"), handled("KV/MultiGet"), round, n)
		}
		concurrently(n, func(i int) error {
			key := fmt.Appendf(nil, "co/%d/%d", round, i)
			value := fmt.Appendf(nil, "v%d/%d", round, i)
			if _, err := cl.Put(ctx, &metapb.PutRequest{Key: key, Value: value, PrevKv: true}); err != nil {
				return err
			}
			got, err := cl.Get(ctx, &metapb.GetRequest{Key: key})
			if err != nil {
				return err
			}
			if string(got.GetKv().GetValue()) != string(value) || got.Header.GetGroup() != metapb.DataGroupFor(key, 2) {
				return fmt.Errorf("get %s: got %v (header %v), want %s", key, got.Kv, got.Header, value)
			}
			absent, err := cl.Get(ctx, &metapb.GetRequest{Key: fmt.Appendf(nil, "co/absent/%d/%d", round, i)})
			if err != nil || absent.Kv != nil {
				return fmt.Errorf("get of an absent key: got %v, %v; want no kv", absent.GetKv(), err)
			}
			return nil
		})
	}
	commitsBefore := handled("Offsets/Commit")
	concurrently(n, func(i int) error {
		group := fmt.Sprintf("cg%d", i%4)
		req := &metapb.CommitOffsetsRequest{Offsets: []*metapb.OffsetCommit{
			{Group: group, Topic: "t", Partition: int32(i), Offset: int64(100 + i)},
			{Group: group, Topic: "u", Partition: int32(i), Offset: int64(200 + i)}}}
		resp, err := cl.CommitOffsets(ctx, req)
		if err != nil {
			return err
		}
		if len(resp.Revisions) != 2 || resp.Revisions[0] == 0 {
			return fmt.Errorf("commit: got revisions %v, want 2", resp.Revisions)
		}
		got, err := cl.FetchOffsets(ctx, &metapb.FetchOffsetsRequest{Partitions: []*metapb.TopicPartition{
			{Group: group, Topic: "u", Partition: int32(i)}, {Group: group, Topic: "t", Partition: int32(i)}}})
		if err != nil {
			return err
		}
		if len(got.Offsets) != 2 || got.Offsets[0].Offset != int64(200+i) || got.Offsets[1].Offset != int64(100+i) {
			return fmt.Errorf("fetch: got %v, want its own offsets %d, %d", got.Offsets, 200+i, 100+i)
		}
		id := fmt.Sprintf("client-%d", i)
		s, err := cl.PutSessions(ctx, &metapb.PutSessionsRequest{ReturnPrevious: i%2 == 0, Sessions: []*metapb.Session{
			{ClientId: id, BrokerId: "b1", Connected: true, State: []byte(id)}}})
		if err != nil {
			return err
		}
		if len(s.Applied) != 1 || !s.Applied[0] || (i%2 == 0) != (len(s.Previous) == 1) {
			return fmt.Errorf("session put: got %v, want its own answer", s)
		}
		se, err := cl.GetSession(ctx, &metapb.GetSessionRequest{ClientId: id})
		if err != nil || string(se.GetSession().GetState()) != id {
			return fmt.Errorf("get session %s: got %v, %v", id, se.GetSession(), err)
		}
		return nil
	})
	t.Logf("calls: Put %v MultiPut %v Get %v MultiGet %v Commit %v (64 commits)", handled("KV/Put"), handled("KV/MultiPut"),
		handled("KV/Get"), handled("KV/MultiGet"), handled("Offsets/Commit")-commitsBefore)
}
