package client

import (
	"context"
	"errors"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/metamq/meta/rpc/metapb"
	"github.com/metamq/meta/verify/testkit"
)

// withReason is a status error of meta's vocabulary, as the server sends.
func withReason(code codes.Code, reason string, md map[string]string) error {
	st, err := status.New(code, reason).WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: metapb.ErrorDomain, Metadata: md})
	if err != nil {
		panic(err)
	}
	return st.Err()
}

// What a failure means decides whether a write is retried: the reason's
// class when the server gave one (an unknown reason is an unknown
// outcome), else the gRPC code (refusals before any handler ran are final;
// everything else may have been applied).
func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want metapb.Class
	}{
		{"not leader", withReason(codes.Unavailable, metapb.ReasonNotLeader, nil), metapb.ClassRetry},
		{"no leader", withReason(codes.Unavailable, metapb.ReasonNoLeader, nil), metapb.ClassRetry},
		{"shutting down", withReason(codes.Unavailable, metapb.ReasonShuttingDown, nil), metapb.ClassRetry},
		{"outcome unknown", withReason(codes.Unknown, metapb.ReasonOutcomeUnknown, nil), metapb.ClassUnknown},
		{"invalid argument", withReason(codes.InvalidArgument, metapb.ReasonInvalidArgument, nil), metapb.ClassFinal},
		{"revision conflict", withReason(codes.FailedPrecondition, metapb.ReasonRevisionConflict, nil), metapb.ClassFinal},
		{"stale epoch", withReason(codes.FailedPrecondition, metapb.ReasonStaleEpoch, nil), metapb.ClassFinal},
		{"a reason from a newer server", withReason(codes.Unavailable, "SOMETHING_NEW", nil), metapb.ClassUnknown},
		{"bare Unavailable (after sending)", status.Error(codes.Unavailable, "connection reset"), metapb.ClassUnknown},
		{"bare DeadlineExceeded", status.Error(codes.DeadlineExceeded, "deadline"), metapb.ClassUnknown},
		{"bare Internal", status.Error(codes.Internal, "oops"), metapb.ClassUnknown},
		{"bare Unimplemented", status.Error(codes.Unimplemented, "no such method"), metapb.ClassFinal},
		{"bare ResourceExhausted", status.Error(codes.ResourceExhausted, "too large"), metapb.ClassFinal},
		{"not a status", errors.New("plain"), metapb.ClassUnknown},
	} {
		if got, _ := classify(tc.err); got != tc.want {
			t.Errorf("%s: got %s, want %s", tc.name, got, tc.want)
		}
	}
}

// testClient is a client of one endpoint that answers (a gRPC server with
// no services: write's calls are scripted, but the connection is real, so
// that the client's readiness checks run as they do in production).
func testClient(t *testing.T, cfg Config) *Client {
	t.Helper()
	cfg.Endpoints = []string{testkit.Serve(t, grpc.NewServer())}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// write retries exactly the failures that say nothing was applied and a
// retry may succeed; it returns a final refusal as it is, and an unknown
// outcome at once, marked unknown, never retried.
func TestWriteRetriesOnlyDefiniteFailures(t *testing.T) {
	notLeader := withReason(codes.Unavailable, metapb.ReasonNotLeader, map[string]string{metapb.MetaLeaderID: "n9"})
	noLeader := withReason(codes.Unavailable, metapb.ReasonNoLeader, nil)
	shutting := withReason(codes.Unavailable, metapb.ReasonShuttingDown, nil)
	unknownErr := withReason(codes.Unknown, metapb.ReasonOutcomeUnknown, nil)
	invalidErr := withReason(codes.InvalidArgument, metapb.ReasonInvalidArgument, nil)
	for _, tc := range []struct {
		name        string
		script      []error // one answer per attempt; nil is success
		wantCalls   int
		wantErr     error // nil: success
		wantUnknown bool
	}{
		{"success", []error{nil}, 1, nil, false},
		{"not leader, no leader, then success", []error{notLeader, noLeader, nil}, 3, nil, false},
		{"shutting down, then unknown", []error{shutting, unknownErr}, 2, unknownErr, true},
		{"unknown at once", []error{unknownErr, nil}, 1, unknownErr, true},
		{"bare Unavailable after sending", []error{status.Error(codes.Unavailable, "reset")}, 1, nil, true},
		{"invalid argument", []error{invalidErr, nil}, 1, invalidErr, false},
		{"retried until the deadline", nil, -1, noLeader, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := testClient(t, Config{RequestTimeout: 500 * time.Millisecond})
			calls := 0
			_, err := write(context.Background(), c, "data-0", func(context.Context, *endpoint) (struct{}, error) {
				calls++
				if tc.script == nil {
					return struct{}{}, noLeader
				}
				return struct{}{}, tc.script[calls-1]
			})
			if tc.wantCalls >= 0 && calls != tc.wantCalls {
				t.Errorf("calls: got %d, want %d", calls, tc.wantCalls)
			}
			if tc.wantCalls < 0 && calls < 2 {
				t.Errorf("calls: got %d, want several retries", calls)
			}
			if IsUnknown(err) != tc.wantUnknown {
				t.Errorf("unknown: got %v (err %v), want %v", IsUnknown(err), err, tc.wantUnknown)
			}
			switch {
			case tc.wantErr == nil && !tc.wantUnknown && err != nil:
				t.Errorf("got %v, want success", err)
			case tc.wantErr != nil && status.Code(err) != status.Code(tc.wantErr):
				t.Errorf("got %v, want %v", err, tc.wantErr)
			}
		})
	}
}

// A NOT_LEADER answer's hint becomes the group's leader; a NO_LEADER
// answer forgets the one known.
func TestWriteFollowsLeaderHints(t *testing.T) {
	c := testClient(t, Config{})
	notLeader := withReason(codes.Unavailable, metapb.ReasonNotLeader, map[string]string{metapb.MetaGroup: "data-0", metapb.MetaLeaderID: "n9"})
	calls := 0
	if _, err := write(context.Background(), c, "data-0", func(context.Context, *endpoint) (int, error) {
		if calls++; calls == 1 {
			return 0, notLeader
		}
		return 1, nil
	}); err != nil {
		t.Fatal(err)
	}
	wantLeader(t, c, "data-0", "n9", "the hint")
	c.noteHints("data-0", &errdetails.ErrorInfo{Reason: metapb.ReasonNoLeader})
	if _, known := leaderOf(c, "data-0"); known {
		t.Fatal("NO_LEADER did not forget data-0's leader")
	}
}

// read retries any failure (a read changes nothing) until the deadline,
// except an answer: bad input, or that what was asked for does not exist.
func TestReadRetriesAllButAnswers(t *testing.T) {
	for _, tc := range []struct {
		name      string
		err       error
		wantCalls int
	}{
		{"invalid argument", status.Error(codes.InvalidArgument, "bad"), 1},
		{"not found", status.Error(codes.NotFound, "none"), 1},
		{"unavailable, then success", status.Error(codes.Unavailable, "down"), 2},
		{"unknown, then success", status.Error(codes.Unknown, "?"), 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := testClient(t, Config{})
			calls := 0
			_, err := read(context.Background(), c, func(context.Context, *endpoint) (int, error) {
				if calls++; calls == 1 {
					return 0, tc.err
				}
				return 1, nil
			})
			if calls != tc.wantCalls {
				t.Fatalf("calls: got %d (err %v), want %d", calls, err, tc.wantCalls)
			}
		})
	}
}

// The client routes by the directory's range maps when it has them (a
// split moves keys between groups without changing the group count), and
// by Shard over the counts otherwise or when the ranges do not tile the
// hash space.
func TestClientRoutesByTheDirectorysRanges(t *testing.T) {
	c := testClient(t, Config{})
	half := metapb.HashSpace / 2
	c.learnDirectory(&metapb.DirectoryUpdate{Version: 7, OffsetGroups: 1, DataGroups: 1, Groups: []*metapb.DirectoryGroup{
		{Group: "offset-0", Kind: "offset", Ranges: []*metapb.KeyRange{{Lo: 0, Hi: metapb.HashSpace, Version: 1}}},
		{Group: "data-0", Kind: "data", Ranges: []*metapb.KeyRange{{Lo: 0, Hi: half, Version: 2}}},
		{Group: "data-1", Kind: "data", Ranges: []*metapb.KeyRange{{Lo: half, Hi: metapb.HashSpace, Version: 2}}},
	}})
	ctx := context.Background()
	seen := map[string]int{}
	for i := range 200 {
		key := []byte{byte(i), 'k'}
		want := "data-0"
		if uint64(metapb.RouteHash(key)) >= half {
			want = "data-1"
		}
		if got := c.dataGroup(ctx, key); got != want {
			t.Fatalf("key %q: routed to %q, want %q", key, got, want)
		}
		seen[want]++
	}
	if seen["data-0"] == 0 || seen["data-1"] == 0 {
		t.Fatalf("keys all on one side: %v", seen)
	}
	if got := c.offsetGroup(ctx, "cg"); got != "offset-0" {
		t.Fatalf("offset group: %q", got)
	}
	// A map with a hole is not used: Shard over the counts (one group).
	c.learnDirectory(&metapb.DirectoryUpdate{Version: 8, OffsetGroups: 1, DataGroups: 1, Groups: []*metapb.DirectoryGroup{
		{Group: "data-0", Kind: "data", Ranges: []*metapb.KeyRange{{Lo: 0, Hi: half, Version: 2}}},
	}})
	for i := range 50 {
		if got := c.dataGroup(ctx, []byte{byte(i)}); got != "data-0" {
			t.Fatalf("with a broken map: routed to %q, want data-0 by Shard", got)
		}
	}
}

// A successful write's response names its group's leader: the client
// sends the group's next writes there (it follows a leadership move
// without a failed call).
func TestWriteLearnsTheLeaderFromTheResponse(t *testing.T) {
	c := testClient(t, Config{})
	if _, err := write(context.Background(), c, "data-0", func(context.Context, *endpoint) (*metapb.PutResponse, error) {
		return &metapb.PutResponse{Header: &metapb.ResponseHeader{NodeId: "n1", Group: "data-0", LeaderId: "n7"}}, nil
	}); err != nil {
		t.Fatal(err)
	}
	wantLeader(t, c, "data-0", "n7", "the response")
}

// leaderOf is the leader c knows for group, if it knows one.
func leaderOf(c *Client, group string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	id, ok := c.leaders[group]
	return id, ok
}

// wantLeader fails t unless c takes want for group's leader (learnt from
// from).
func wantLeader(t *testing.T, c *Client, group, want, from string) {
	t.Helper()
	if got, _ := leaderOf(c, group); got != want {
		t.Fatalf("leader of %s: got %q, want %s (from %s)", group, got, want, from)
	}
}

// A configured endpoint that reaches its node by an address the directory
// does not list (a port mapping, a proxy) stays in use and is preferred to
// the member address, until the directory drops its node; member
// addresses of other nodes are added.
func TestConfiguredEndpointBehindAnotherAddressIsKept(t *testing.T) {
	c := testClient(t, Config{})
	configured := c.endpoints()[0]
	c.mu.Lock()
	configured.nodeID = "n1" // as Status told it
	c.byID["n1"] = configured
	c.mu.Unlock()
	c.learnDirectory(&metapb.DirectoryUpdate{Version: 2, Members: []*metapb.Member{
		{Id: "n1", Addr: "n1.internal:7001"}, {Id: "n2", Addr: "n2.internal:7001"}}})
	c.mu.Lock()
	n1, n2 := c.byID["n1"], c.byID["n2"]
	c.mu.Unlock()
	if n1 != configured || configured.gone.Load() {
		t.Fatalf("n1 is reached by %v (gone %v), want the configured endpoint, in use", n1.addr, configured.gone.Load())
	}
	if n2 == nil || n2.addr != "n2.internal:7001" || n2.gone.Load() {
		t.Fatalf("n2: %+v, want its member address, in use", n2)
	}
	for _, ep := range c.endpoints() {
		if ep.addr == "n1.internal:7001" {
			t.Fatal("n1's member address was added although a configured endpoint reaches n1")
		}
	}
	// n1 leaves the cluster: its configured endpoint is left behind.
	c.learnDirectory(&metapb.DirectoryUpdate{Version: 3, Members: []*metapb.Member{{Id: "n2", Addr: "n2.internal:7001"}}})
	if !configured.gone.Load() {
		t.Fatal("the configured endpoint of a removed node is still in use")
	}
}
