package client

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/metamq/meta/rpc/metapb"
	"github.com/metamq/meta/verify/poll"
)

// gateKV is a KV server that holds every call until the test opens its
// gate, counts the calls by method (and the puts or keys each carried),
// and answers MultiPut as scripted (nil: applied; it echoes each put's
// key as its prev_kv so a caller can tell its own answer).
type gateKV struct {
	metapb.UnimplementedKVServer
	gate chan struct{} // closed: calls proceed

	mu       sync.Mutex
	calls    map[string]int
	entries  map[string][]int
	keys     map[string]bool // every key a call carried
	multiErr error
	parts    func(n int) []*metapb.BatchPart // nil: one applied part
	// noMultiGet: MultiGet is Unimplemented, as on a node of a release
	// before it (during a rolling upgrade).
	noMultiGet bool
}

func newGateKV() *gateKV {
	return &gateKV{gate: make(chan struct{}), calls: map[string]int{}, entries: map[string][]int{}, keys: map[string]bool{}}
}

func (s *gateKV) record(ctx context.Context, method string, keys ...[]byte) error {
	s.mu.Lock()
	s.calls[method]++
	s.entries[method] = append(s.entries[method], len(keys))
	for _, k := range keys {
		s.keys[string(k)] = true
	}
	gate := s.gate
	s.mu.Unlock()
	select {
	case <-gate:
		return nil
	case <-ctx.Done():
		return status.FromContextError(ctx.Err()).Err()
	}
}

// open lets the calls held so far proceed; with again, later calls are
// held at a new gate.
func (s *gateKV) open(again bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	close(s.gate)
	if again {
		s.gate = make(chan struct{})
	}
}

// hold makes later calls wait for the next open.
func (s *gateKV) hold() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gate = make(chan struct{})
}

func (s *gateKV) count(method string) (int, []int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[method], append([]int(nil), s.entries[method]...)
}

func (s *gateKV) sawKey(k string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.keys[k]
}

func header() *metapb.ResponseHeader { return &metapb.ResponseHeader{Group: "data-0", Revision: 7} }

func (s *gateKV) Put(ctx context.Context, req *metapb.PutRequest) (*metapb.PutResponse, error) {
	if err := s.record(ctx, "Put", req.Key); err != nil {
		return nil, err
	}
	return &metapb.PutResponse{Header: header(), PrevKv: &metapb.KeyValue{Key: req.Key}}, nil
}

func (s *gateKV) MultiPut(ctx context.Context, req *metapb.MultiPutRequest) (*metapb.MultiPutResponse, error) {
	keys := make([][]byte, len(req.Puts))
	for i, p := range req.Puts {
		keys[i] = p.Key
	}
	if err := s.record(ctx, "MultiPut", keys...); err != nil {
		return nil, err
	}
	s.mu.Lock()
	err, parts := s.multiErr, s.parts
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	out := &metapb.MultiPutResponse{}
	for _, p := range req.Puts {
		out.Results = append(out.Results, &metapb.PutResponse{Header: header(), PrevKv: &metapb.KeyValue{Key: p.Key}})
	}
	if parts != nil {
		out.Parts = parts(len(req.Puts))
		return out, nil
	}
	part := &metapb.BatchPart{Header: header()}
	for i := range req.Puts {
		part.Indexes = append(part.Indexes, uint32(i))
	}
	out.Parts = []*metapb.BatchPart{part}
	return out, nil
}

func (s *gateKV) Get(ctx context.Context, req *metapb.GetRequest) (*metapb.GetResponse, error) {
	if err := s.record(ctx, "Get", req.Key); err != nil {
		return nil, err
	}
	if string(req.Key) == "absent" {
		return &metapb.GetResponse{Header: header()}, nil
	}
	return &metapb.GetResponse{Header: header(), Kv: &metapb.KeyValue{Key: req.Key, Value: req.Key, Version: 1}}, nil
}

func (s *gateKV) MultiGet(ctx context.Context, req *metapb.MultiGetRequest) (*metapb.MultiGetResponse, error) {
	if err := s.record(ctx, "MultiGet", req.Keys...); err != nil {
		return nil, err
	}
	s.mu.Lock()
	old := s.noMultiGet
	s.mu.Unlock()
	if old {
		return nil, status.Error(codes.Unimplemented, "unknown method MultiGet for service meta.v1.KV")
	}
	out := &metapb.MultiGetResponse{Headers: []*metapb.ResponseHeader{header()}}
	for _, k := range req.Keys {
		kv := &metapb.KeyValue{Key: k, Value: k, Version: 1}
		if string(k) == "absent" {
			kv = &metapb.KeyValue{Key: k}
		}
		out.Kvs = append(out.Kvs, kv)
	}
	return out, nil
}

// gateClient is a client of one endpoint serving kv that knows the
// topology (one data group), checked for leaked goroutines at the end.
func gateClient(t *testing.T, kv metapb.KVServer, cfg Config) (*Client, func()) {
	t.Helper()
	t.Cleanup(func() { goleak.VerifyNone(t) }) // after every other cleanup
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	metapb.RegisterKVServer(srv, kv)
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(lis)
	}()
	stop := sync.OnceFunc(func() {
		srv.Stop()
		<-served
	})
	t.Cleanup(stop)
	cfg.Endpoints = []string{lis.Addr().String()}
	cfg.Pinned = false
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	c.mu.Lock()
	c.k, c.m = 1, 1
	c.mu.Unlock()
	return c, stop
}

// queued is how many calls wait in the put lane of data-0.
func queued[I, O any](k *coalescer[I, O], lk laneKey) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	if l := k.lanes[lk]; l != nil {
		return len(l.queue)
	}
	return 0
}

var lane0 = laneKey{group: "data-0"}

// putResult is one caller's outcome.
type putResult struct {
	key  string
	resp *metapb.PutResponse
	err  error
}

// startPut starts a Put of key (on ctx, nil: background) whose outcome
// goes to out.
func startPut(c *Client, ctx context.Context, key string, out chan<- putResult) {
	if ctx == nil {
		ctx = context.Background()
	}
	go func() {
		resp, err := c.Put(ctx, &metapb.PutRequest{Key: []byte(key), Value: []byte("v")})
		out <- putResult{key, resp, err}
	}()
}

// holdLane sends one Put that the server holds, so that the lane is busy
// and later calls queue; it returns that put's outcome channel.
func holdLane(t *testing.T, c *Client, kv *gateKV) <-chan putResult {
	t.Helper()
	first := make(chan putResult, 1)
	go func() {
		resp, err := c.Put(context.Background(), &metapb.PutRequest{Key: []byte("first"), Value: []byte("v")})
		first <- putResult{"first", resp, err}
	}()
	poll.ForTrue(t, "the first put reaches the server", 10*time.Second, func() bool { n, _ := kv.count("Put"); return n == 1 })
	return first
}

// An idle client sends a call at once, alone; calls that arrive while it
// is in flight form one batch, sent when it returns, and each caller gets
// its own answer.
func TestCoalesceFormsBatchWhileOneIsInFlight(t *testing.T) {
	kv := newGateKV()
	c, _ := gateClient(t, kv, Config{})
	first := holdLane(t, c, kv)
	if n, _ := kv.count("MultiPut"); n != 0 {
		t.Fatalf("MultiPut calls: got %d before any queued, want 0", n)
	}
	const n = 20
	results := queuePuts(t, c, n, nil)
	kv.open(false)
	if r := <-first; r.err != nil || string(r.resp.PrevKv.Key) != "first" {
		t.Fatalf("first put: got %v, %v", r.resp, r.err)
	}
	for range n {
		r := <-results
		if r.err != nil || string(r.resp.GetPrevKv().GetKey()) != r.key || r.resp.Header.Revision != 7 {
			t.Fatalf("put %s: got %v, %v; want its own answer", r.key, r.resp, r.err)
		}
	}
	puts, _ := kv.count("Put")
	multi, sizes := kv.count("MultiPut")
	if puts != 1 || multi != 1 || sizes[0] != n {
		t.Fatalf("got %d Put and %d MultiPut calls (sizes %v), want 1 Put and 1 MultiPut of %d", puts, multi, sizes, n)
	}
	// Idle again: the next call goes alone.
	if _, err := c.Put(context.Background(), &metapb.PutRequest{Key: []byte("later"), Value: []byte("v")}); err != nil {
		t.Fatal(err)
	}
	if puts, _ := kv.count("Put"); puts != 2 {
		t.Fatalf("Put calls after an idle put: got %d, want 2", puts)
	}
}

// Gets coalesce into one MultiGet; a key that does not exist is a nil Kv,
// as Get answers. A node of an older release, without MultiGet (a rolling
// upgrade), answers each get when it is sent alone.
func TestCoalesceGets(t *testing.T) {
	for _, old := range []bool{false, true} {
		t.Run(fmt.Sprintf("node without MultiGet %v", old), func(t *testing.T) { testCoalesceGets(t, old) })
	}
}

func testCoalesceGets(t *testing.T, old bool) {
	kv := newGateKV()
	kv.noMultiGet = old
	c, _ := gateClient(t, kv, Config{})
	keys := []string{"a", "b", "absent", "c"}
	// Two rounds: the client remembers that a node lacks MultiGet, so in
	// the second it sends each get alone without trying the batch again.
	for round := 1; round <= 2; round++ {
		if round > 1 {
			kv.hold()
		}
		gets, _ := kv.count("Get")
		firstDone := make(chan error, 1)
		go func() {
			_, err := c.Get(context.Background(), &metapb.GetRequest{Key: []byte("first")})
			firstDone <- err
		}()
		poll.ForTrue(t, "the first get reaches the server", 10*time.Second, func() bool { n, _ := kv.count("Get"); return n == gets+1 })
		type res struct {
			key string
			r   *metapb.GetResponse
			err error
		}
		out := make(chan res, len(keys))
		for _, k := range keys {
			go func() {
				r, err := c.Get(context.Background(), &metapb.GetRequest{Key: []byte(k)})
				out <- res{k, r, err}
			}()
		}
		poll.ForTrue(t, "every get queues", 10*time.Second, func() bool { return queued(c.co.gets, lane0) == len(keys) })
		kv.open(false)
		if err := <-firstDone; err != nil {
			t.Fatal(err)
		}
		for range keys {
			r := <-out
			switch {
			case r.err != nil:
				t.Fatalf("round %d: get %s: %v", round, r.key, r.err)
			case r.key == "absent" && r.r.Kv != nil:
				t.Fatalf("round %d: get absent: got %v, want no kv", round, r.r.Kv)
			case r.key != "absent" && string(r.r.GetKv().GetValue()) != r.key:
				t.Fatalf("round %d: get %s: got %v, want its own value", round, r.key, r.r.Kv)
			}
		}
		wantMulti := round
		if old {
			wantMulti = 1 // tried once, then remembered
		}
		if n, sizes := kv.count("MultiGet"); n != wantMulti || sizes[0] != len(keys) {
			t.Fatalf("round %d: MultiGet calls: got %d (sizes %v), want %d of %d", round, n, sizes, wantMulti, len(keys))
		}
		if n, _ := kv.count("Get"); old && n != round*(1+len(keys)) {
			t.Fatalf("round %d: Get calls with MultiGet unimplemented: got %d, want %d (the first, then each alone)", round, n, round*(1+len(keys)))
		}
	}
}

// A batch's outcome is every member's: unknown for all when the batch's
// is unknown (never a failure); a definite refusal of the batch, or of a
// member's part, sends each such member alone; an unknown part is unknown
// for its members only.
func TestCoalesceOutcomes(t *testing.T) {
	const n = 4
	unknownPart := func(n int) []*metapb.BatchPart {
		a := &metapb.BatchPart{Header: header(), Indexes: []uint32{0, 1}}
		u := &metapb.BatchPart{Header: &metapb.ResponseHeader{Group: "data-0"}, Indexes: []uint32{2, 3},
			Outcome: metapb.PartOutcome_PART_OUTCOME_UNKNOWN, Reason: metapb.ReasonOutcomeUnknown}
		return []*metapb.BatchPart{a, u}
	}
	refusedPart := func(n int) []*metapb.BatchPart {
		a := &metapb.BatchPart{Header: header(), Indexes: []uint32{0, 1}}
		r := &metapb.BatchPart{Header: &metapb.ResponseHeader{Group: "data-0"}, Indexes: []uint32{2, 3},
			Outcome: metapb.PartOutcome_PART_OUTCOME_NOT_APPLIED, Reason: metapb.ReasonNotLeader}
		return []*metapb.BatchPart{a, r}
	}
	for _, tc := range []struct {
		name        string
		err         error
		parts       func(int) []*metapb.BatchPart
		wantUnknown map[string]bool // by key; others succeed
		wantAlone   int             // Put calls after the first
	}{
		{"unknown", withReason(codes.Unknown, metapb.ReasonOutcomeUnknown, nil), nil,
			map[string]bool{"k0": true, "k1": true, "k2": true, "k3": true}, 0},
		{"refused", withReason(codes.InvalidArgument, metapb.ReasonInvalidArgument, nil), nil, nil, n},
		{"one part unknown", nil, unknownPart, map[string]bool{"k2": true, "k3": true}, 0},
		{"one part refused", nil, refusedPart, nil, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kv := newGateKV()
			kv.multiErr, kv.parts = tc.err, tc.parts
			c, _ := gateClient(t, kv, Config{})
			first := holdLane(t, c, kv)
			results := queuePuts(t, c, n, nil)
			kv.open(false)
			if r := <-first; r.err != nil {
				t.Fatal(r.err)
			}
			for range n {
				r := <-results
				switch {
				case tc.wantUnknown[r.key] && !IsUnknown(r.err):
					t.Fatalf("put %s: got %v, want an unknown outcome", r.key, r.err)
				case !tc.wantUnknown[r.key] && r.err != nil:
					t.Fatalf("put %s: got %v, want its own answer", r.key, r.err)
				case r.err == nil && string(r.resp.GetPrevKv().GetKey()) != r.key:
					t.Fatalf("put %s: got the answer of %v", r.key, r.resp)
				}
			}
			if puts, _ := kv.count("Put"); puts-1 != tc.wantAlone {
				t.Fatalf("puts sent alone after the batch: got %d, want %d", puts-1, tc.wantAlone)
			}
		})
	}
}

// queuePuts queues puts of keys k0..k<n-1>, in that order (each one is
// queued before the next starts), behind a held lane; ctxs[i] (when set)
// is the i-th caller's context.
func queuePuts(t *testing.T, c *Client, n int, ctxs map[int]context.Context) <-chan putResult {
	t.Helper()
	out := make(chan putResult, n)
	base := queued(c.co.puts, lane0)
	for i := range n {
		key := fmt.Sprintf("k%d", i)
		startPut(c, ctxs[i], key, out)
		poll.ForTrue(t, "put "+key+" queues", 10*time.Second, func() bool { return queued(c.co.puts, lane0) == base+i+1 })
	}
	return out
}

// A caller whose context ends while it is queued is removed before the
// send: a definite error, and the server never sees its put. One whose
// context ends after its batch was sent gets an unknown outcome at once;
// the others get their answers.
func TestCoalesceCancellation(t *testing.T) {
	t.Run("queued", func(t *testing.T) {
		kv := newGateKV()
		c, _ := gateClient(t, kv, Config{})
		first := holdLane(t, c, kv)
		ctx, cancel := context.WithCancel(context.Background())
		results := queuePuts(t, c, 3, map[int]context.Context{1: ctx})
		cancel()
		r := <-results
		if r.key != "k1" || r.err == nil || IsUnknown(r.err) || status.Code(r.err) != codes.Canceled {
			t.Fatalf("got %s: %v; want k1 not sent (Canceled, not unknown)", r.key, r.err)
		}
		if got := queued(c.co.puts, lane0); got != 2 {
			t.Fatalf("queued after the cancel: got %d, want 2", got)
		}
		kv.open(false)
		if r := <-first; r.err != nil {
			t.Fatal(r.err)
		}
		for range 2 {
			if r := <-results; r.err != nil {
				t.Fatalf("put %s: %v", r.key, r.err)
			}
		}
		if kv.sawKey("k1") {
			t.Fatal("the server saw k1, whose caller left before it was sent")
		}
	})
	t.Run("sent", func(t *testing.T) {
		kv := newGateKV()
		c, _ := gateClient(t, kv, Config{})
		first := holdLane(t, c, kv)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		results := queuePuts(t, c, 2, map[int]context.Context{1: ctx})
		kv.open(true) // the held put returns; the batch is sent and held
		if r := <-first; r.err != nil {
			t.Fatal(r.err)
		}
		poll.ForTrue(t, "the batch reaches the server", 10*time.Second, func() bool { n, _ := kv.count("MultiPut"); return n == 1 })
		cancel()
		if r := <-results; r.key != "k1" || !IsUnknown(r.err) {
			t.Fatalf("got %s: %v; want k1 unknown", r.key, r.err)
		}
		kv.open(false)
		if r := <-results; r.key != "k0" || r.err != nil {
			t.Fatalf("got %s: %v; want k0 applied", r.key, r.err)
		}
	})
}

// A batch in flight when its connection is lost has an unknown outcome,
// for every member; none is sent again.
func TestCoalesceConnectionLostMidBatch(t *testing.T) {
	kv := newGateKV()
	c, stop := gateClient(t, kv, Config{})
	first := holdLane(t, c, kv)
	results := queuePuts(t, c, 3, nil)
	kv.open(true)
	if r := <-first; r.err != nil {
		t.Fatal(r.err)
	}
	poll.ForTrue(t, "the batch reaches the server", 10*time.Second, func() bool { n, _ := kv.count("MultiPut"); return n == 1 })
	stop() // the server goes away with the batch in flight
	for range 3 {
		if r := <-results; !IsUnknown(r.err) {
			t.Fatalf("put %s: got %v, want an unknown outcome", r.key, r.err)
		}
	}
	if n, _ := kv.count("Put"); n != 1 {
		t.Fatalf("Put calls: got %d, want 1 (no member sent again)", n)
	}
}

// With NoCoalesce every call is its own RPC.
func TestNoCoalesce(t *testing.T) {
	kv := newGateKV()
	c, _ := gateClient(t, kv, Config{NoCoalesce: true})
	_ = holdLane(t, c, kv)
	out := make(chan putResult, 5)
	for i := range 5 {
		startPut(c, nil, fmt.Sprintf("k%d", i), out)
	}
	poll.ForTrue(t, "every put reaches the server", 10*time.Second, func() bool { n, _ := kv.count("Put"); return n == 6 })
	kv.open(false)
}
