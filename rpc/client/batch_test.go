package client

import (
	"context"
	"errors"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/metamq/meta/rpc/metapb"
	"github.com/metamq/meta/verify/testkit"
)

// batchKV is a KV server that answers MultiPut per data group as scripted
// (nil: applied) and records the group of each call.
type batchKV struct {
	metapb.UnimplementedKVServer
	answer map[string]error

	mu     sync.Mutex
	groups []string
}

func (s *batchKV) MultiPut(_ context.Context, req *metapb.MultiPutRequest) (*metapb.MultiPutResponse, error) {
	g := metapb.DataGroupFor(req.Puts[0].Key, 2)
	s.mu.Lock()
	s.groups = append(s.groups, g)
	s.mu.Unlock()
	for _, p := range req.Puts {
		if metapb.DataGroupFor(p.Key, 2) != g {
			return nil, withReason(codes.InvalidArgument, metapb.ReasonInvalidArgument, nil)
		}
	}
	if err := s.answer[g]; err != nil {
		return nil, err
	}
	out := &metapb.MultiPutResponse{Parts: []*metapb.BatchPart{{Header: &metapb.ResponseHeader{Group: g, Revision: 7, LeaderId: "n-" + g}}}}
	for i := range req.Puts {
		out.Results = append(out.Results, &metapb.PutResponse{Header: out.Parts[0].Header})
		out.Parts[0].Indexes = append(out.Parts[0].Indexes, uint32(i))
	}
	return out, nil
}

// batchClient is a client of one endpoint serving kv, which knows the
// topology (two data groups, routed by Shard).
func batchClient(t *testing.T, kv metapb.KVServer) *Client {
	t.Helper()
	srv := grpc.NewServer()
	metapb.RegisterKVServer(srv, kv)
	c, err := New(Config{Endpoints: []string{testkit.Serve(t, srv)}, Pinned: false})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	c.mu.Lock()
	c.k, c.m = 1, 2
	c.mu.Unlock()
	return c
}

// MultiPut splits by group, one call per group; the parts come back in
// request indexes; a part whose call failed is reported as not applied or
// unknown by the failure's class, never an unknown one as failed; when no
// part applied the call fails as a Put would.
func TestMultiPutSplitsByGroupAndReportsParts(t *testing.T) {
	// Keys of both groups, interleaved.
	var keys [][]byte
	for i := 0; len(keys) < 6; i++ {
		k := []byte{'k', byte('a' + i)}
		if want := []string{"data-0", "data-1"}[len(keys)%2]; metapb.DataGroupFor(k, 2) == want {
			keys = append(keys, k)
		}
	}
	req := &metapb.MultiPutRequest{}
	for _, k := range keys {
		req.Puts = append(req.Puts, &metapb.PutRequest{Key: k, Value: []byte("v")})
	}
	unknownErr := withReason(codes.Unknown, metapb.ReasonOutcomeUnknown, nil)
	notFound := withReason(codes.NotFound, metapb.ReasonNotFound, nil)
	for _, tc := range []struct {
		name         string
		answer       map[string]error
		wantErr      bool
		wantResponse bool
		wantUnknown  bool
		wantOutcome  map[string]metapb.PartOutcome
	}{
		{"all applied", nil, false, true, false, map[string]metapb.PartOutcome{
			"data-0": metapb.PartOutcome_PART_OUTCOME_APPLIED, "data-1": metapb.PartOutcome_PART_OUTCOME_APPLIED}},
		{"one unknown", map[string]error{"data-1": unknownErr}, true, true, true, map[string]metapb.PartOutcome{
			"data-0": metapb.PartOutcome_PART_OUTCOME_APPLIED, "data-1": metapb.PartOutcome_PART_OUTCOME_UNKNOWN}},
		{"one refused", map[string]error{"data-0": notFound}, true, true, false, map[string]metapb.PartOutcome{
			"data-0": metapb.PartOutcome_PART_OUTCOME_NOT_APPLIED, "data-1": metapb.PartOutcome_PART_OUTCOME_APPLIED}},
		{"refused and unknown", map[string]error{"data-0": notFound, "data-1": unknownErr}, true, false, true, nil},
		{"all refused", map[string]error{"data-0": notFound, "data-1": notFound}, true, false, false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kv := &batchKV{answer: tc.answer}
			c := batchClient(t, kv)
			resp, err := c.MultiPut(context.Background(), req)
			if (err != nil) != tc.wantErr || (resp != nil) != tc.wantResponse || IsUnknown(err) != tc.wantUnknown {
				t.Fatalf("got %v, %v (unknown %v); want error %v, response %v, unknown %v", resp, err, IsUnknown(err),
					tc.wantErr, tc.wantResponse, tc.wantUnknown)
			}
			kv.mu.Lock()
			groups := kv.groups
			kv.mu.Unlock()
			if len(groups) != 2 || groups[0] == groups[1] {
				t.Fatalf("calls: got groups %v, want one per group", groups)
			}
			if resp == nil {
				return
			}
			var pe *PartialError
			if tc.wantErr && (!errors.As(err, &pe) || len(pe.Parts) != 2) {
				t.Fatalf("got %v, want a PartialError of 2 parts", err)
			}
			for _, p := range resp.Parts {
				g := p.Header.Group
				if p.Outcome != tc.wantOutcome[g] || len(p.Indexes) != 3 {
					t.Fatalf("%s: got %s with %d entries, want %s with 3", g, p.Outcome, len(p.Indexes), tc.wantOutcome[g])
				}
				for _, i := range p.Indexes {
					if metapb.DataGroupFor(keys[i], 2) != g {
						t.Fatalf("%s: index %d is key %q of another group", g, i, keys[i])
					}
					applied := resp.Results[i].Header != nil
					if applied != (p.Outcome == metapb.PartOutcome_PART_OUTCOME_APPLIED) {
						t.Fatalf("results[%d]: header %v for a part %s", i, resp.Results[i].Header, p.Outcome)
					}
				}
				if p.Outcome == metapb.PartOutcome_PART_OUTCOME_APPLIED {
					wantLeader(t, c, g, "n-"+g, "a part's header")
				} else if p.Reason == "" {
					t.Fatalf("%s: no reason", g)
				}
			}
		})
	}
}
