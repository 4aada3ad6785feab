package metanode_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/metamq/meta/metanode/metanodetest"
	"github.com/metamq/meta/rpc/metapb"
	"github.com/metamq/meta/verify"
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

// The batch calls recorded and checked: concurrent sessions on one
// coalescing client run multi-puts, multi-gets, transactions, puts and
// gets over a few keys of a real cluster, and the KV checker finds the
// history linearizable; the same history with one multi-get made stale
// (planted: it returns a value its key had before an acknowledged
// multi-put replaced it) is found invalid, naming that key.
func TestBatchCallsRecordedAndChecked(t *testing.T) {
	c := metanodetest.Start(t, metanodetest.Options{DataGroups: 2})
	cl := c.Client("")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	// Keys of data-0 (a txn's keys must share a group) and one of data-1.
	var keys []string
	for i := 0; len(keys) < 4; i++ {
		if k := fmt.Sprintf("b/%d", i); metapb.DataGroupFor([]byte(k), 2) == "data-0" {
			keys = append(keys, k)
		}
	}
	other := ""
	for i := 0; other == ""; i++ {
		if k := fmt.Sprintf("o/%d", i); metapb.DataGroupFor([]byte(k), 2) == "data-1" {
			other = k
		}
	}
	rec := verify.NewRecorder(verify.NewClock(), &verify.History{}, 10*time.Second)
	var wg sync.WaitGroup
	for p := range 6 {
		s := rec.Session(cl, "any")
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(p), 1))
			key := func() string { return keys[rng.IntN(len(keys))] }
			for range 30 {
				switch rng.IntN(5) {
				case 0:
					a, b := key(), key()
					puts := []verify.KV{{Key: a, Value: s.NextValue()}, {Key: other, Value: s.NextValue()}}
					if b != a {
						puts = append(puts, verify.KV{Key: b, Value: s.NextValue()})
					}
					s.MultiPut(ctx, puts)
				case 1:
					s.MultiGet(ctx, []string{key(), key(), other})
				case 2:
					// Compare a key with what a read just saw (often
					// still true, sometimes not), then write another.
					a, b := key(), key()
					seen := s.Get(ctx, a, false)
					cmp := verify.TxnCompare{Key: a, Absent: true}
					if seen.Output != nil && seen.Output.KV != nil {
						cmp = verify.TxnCompare{Key: a, Value: seen.Output.KV.Value}
					}
					s.Txn(ctx, verify.TxnInput{Compares: []verify.TxnCompare{cmp},
						Success: []verify.TxnWrite{{Key: b, Value: s.NextValue()}},
						Failure: []verify.TxnWrite{{Key: a, Value: s.NextValue()}}})
				case 3:
					s.Put(ctx, key(), s.NextValue())
				default:
					s.Get(ctx, key(), false)
				}
			}
		}()
	}
	wg.Wait()
	// The planted bug's material: two acknowledged multi-puts, then a
	// multi-get that sees the second.
	s := rec.Session(cl, "any")
	for _, v := range []string{"old", "new"} {
		if op := s.MultiPut(ctx, []verify.KV{{Key: keys[0], Value: v}, {Key: keys[1], Value: v}}); op.Outcome != verify.OutcomeOK {
			t.Fatalf("multi-put: %s %s", op.Outcome, op.Err)
		}
	}
	last := s.MultiGet(ctx, []string{keys[1], keys[0]})
	if last.Outcome != verify.OutcomeOK || last.Output.KVs[1].Value != "new" {
		t.Fatalf("multi-get: got %+v, want %s=new", last, keys[0])
	}
	ops := rec.History().Ops()
	kinds := map[verify.OpKind]int{}
	for _, op := range ops {
		if op.Outcome == verify.OutcomeOK {
			kinds[op.Kind]++
		}
	}
	if kinds[verify.OpMultiPut] == 0 || kinds[verify.OpMultiGet] == 0 || kinds[verify.OpTxn] == 0 {
		t.Fatalf("ok ops by kind: %v, want multi-puts, multi-gets and txns", kinds)
	}
	kvResult := func(ops []verify.Op) verify.CheckResult {
		t.Helper()
		for _, r := range verify.CheckLinearizability(ops, 30*time.Second).Results {
			if r.Checker == verify.CheckerKV {
				return r
			}
		}
		t.Fatal("no kv result")
		return verify.CheckResult{}
	}
	if r := kvResult(ops); r.Verdict != verify.Valid {
		t.Fatalf("kv: got %s (%v: %s), want valid; ops by kind %v", r.Verdict, r.Failing, r.Details, kinds)
	}
	planted := slices.Clone(ops)
	bad := planted[len(planted)-1]
	out := *bad.Output
	out.KVs = slices.Clone(out.KVs)
	out.KVs[1].Value = "old"
	bad.Output = &out
	planted[len(planted)-1] = bad
	if r := kvResult(planted); r.Verdict != verify.Invalid || !slices.ContainsFunc(r.Failing, func(f string) bool {
		return strings.Contains(f, keys[0])
	}) {
		t.Fatalf("kv with a stale multi-get: got %s failing %v, want invalid naming %s", r.Verdict, r.Failing, keys[0])
	}
}
