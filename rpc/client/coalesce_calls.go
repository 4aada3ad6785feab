package client

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/metamq/meta/rpc/metapb"
)

// The coalesced calls: for each kind, how one call is sent alone (what
// the call did before coalescing existed) and how a batch of them is sent
// as one RPC and its answer split among the members (coalesce.go).

const (
	maxBatchEntries = metapb.MaxBatchEntries
	maxBatchBytes   = metapb.MaxBatchBytes
)

// The batch calls a node of an older release may lack.
type batchCall int

const (
	callMultiPut batchCall = iota
	callMultiGet
	numBatchCalls
)

// lackingFor is how long a node that answered Unimplemented to a batch
// call is taken to lack it; then a batch is tried again, so a node that
// was upgraded meanwhile gets batches.
var lackingFor = time.Minute

// monoBase anchors monoNow on the monotonic clock.
var monoBase = time.Now()

// monoNow is the time since monoBase, from the monotonic clock (the wall
// clock may be stepped).
func monoNow() int64 { return int64(time.Since(monoBase)) }

// errLacking answers a batch call not sent to a node known to lack it:
// like the node's own Unimplemented, it sends every member alone.
var errLacking = status.Error(codes.Unimplemented, "client: the node lacks this batch call (an older release); sent alone")

// tryBatch runs call, a batch call bc on ep, unless ep's node answered
// Unimplemented to bc within lackingFor (then errLacking, nothing sent);
// an Unimplemented answer is remembered.
func tryBatch[R any](ep *endpoint, bc batchCall, call func() (R, error)) (R, error) {
	if monoNow() < ep.lacking[bc].Load() {
		var zero R
		return zero, errLacking
	}
	r, err := call()
	if status.Code(err) == codes.Unimplemented {
		ep.lacking[bc].Store(monoNow() + int64(lackingFor))
	}
	return r, err
}

// coalescers holds one coalescer per kind; nil when Config.NoCoalesce.
type coalescers struct {
	puts     *coalescer[*metapb.PutRequest, *metapb.PutResponse]
	gets     *coalescer[*metapb.GetRequest, *metapb.GetResponse]
	commits  *coalescer[*metapb.CommitOffsetsRequest, *metapb.CommitOffsetsResponse]
	fetches  *coalescer[*metapb.FetchOffsetsRequest, *metapb.FetchOffsetsResponse]
	sessions *coalescer[*metapb.PutSessionsRequest, *metapb.PutSessionsResponse]
}

func (c *Client) newCoalescers() *coalescers {
	return &coalescers{
		puts:     newCoalescer(c, true, c.putOne, c.putMany),
		gets:     newCoalescer(c, false, c.getOne, c.getMany),
		commits:  newCoalescer(c, true, c.commitOne, c.commitMany),
		fetches:  newCoalescer(c, false, c.fetchOne, c.fetchMany),
		sessions: newCoalescer(c, true, c.putSessionsOne, c.putSessionsMany),
	}
}

// ---- puts ----

// coalescablePut: a put that cannot make a batch fail for the others (no
// lease, which might not exist; key and value within the limits).
func coalescablePut(req *metapb.PutRequest) bool {
	return req.GetLease() == 0 && len(req.GetKey()) > 0 && len(req.GetKey()) <= metapb.MaxKeyBytes &&
		len(req.GetValue()) <= metapb.MaxValueBytes
}

func (c *Client) putOne(ctx context.Context, lk laneKey, req *metapb.PutRequest) (*metapb.PutResponse, error) {
	return routed(ctx, c, dataKeys(req.Key), func(ctx context.Context, ep *endpoint) (*metapb.PutResponse, error) {
		return ep.kv.Put(ctx, req)
	})
}

func (c *Client) putMany(ctx context.Context, lk laneKey, reqs []*metapb.PutRequest) []outcome[*metapb.PutResponse] {
	resp, err := routed(ctx, c, dataKeys(putKeys(reqs)...), func(ctx context.Context, ep *endpoint) (*metapb.MultiPutResponse, error) {
		return tryBatch(ep, callMultiPut, func() (*metapb.MultiPutResponse, error) {
			return ep.kv.MultiPut(ctx, &metapb.MultiPutRequest{Puts: reqs})
		})
	})
	if err != nil {
		return failAll[*metapb.PutResponse](len(reqs), true, err)
	}
	for _, p := range resp.Parts {
		c.learnLeader(p)
	}
	// Every entry's outcome is its part's; an entry no part names (an
	// answer that breaks the contract) may have been applied.
	outs := allOutcome(len(reqs), outcome[*metapb.PutResponse]{err: &unknownError{
		err: fmt.Errorf("client: MultiPut answered %d results, %d parts for %d puts", len(resp.Results), len(resp.Parts), len(reqs))}})
	if len(resp.Results) != len(reqs) {
		return outs
	}
	for _, p := range resp.Parts {
		for _, i := range p.Indexes {
			if int(i) >= len(reqs) {
				continue
			}
			switch p.Outcome {
			case metapb.PartOutcome_PART_OUTCOME_APPLIED:
				outs[i] = outcome[*metapb.PutResponse]{resp: resp.Results[i]}
			case metapb.PartOutcome_PART_OUTCOME_NOT_APPLIED:
				outs[i] = outcome[*metapb.PutResponse]{alone: true}
			default:
				outs[i] = outcome[*metapb.PutResponse]{err: &unknownError{err: partStatus(p)}}
			}
		}
	}
	return outs
}

// partStatus is the error a batch part reports.
func partStatus(p *metapb.BatchPart) error {
	st := status.New(codes.Unknown, p.Message)
	if p.Reason != "" {
		if d, err := st.WithDetails(&errdetails.ErrorInfo{Reason: p.Reason, Domain: metapb.ErrorDomain}); err == nil {
			st = d
		}
	}
	return st.Err()
}

// ---- gets ----

func (c *Client) getOne(ctx context.Context, _ laneKey, req *metapb.GetRequest) (*metapb.GetResponse, error) {
	return read(ctx, c, func(ctx context.Context, ep *endpoint) (*metapb.GetResponse, error) {
		return ep.kv.Get(ctx, req)
	})
}

func (c *Client) getMany(ctx context.Context, lk laneKey, reqs []*metapb.GetRequest) []outcome[*metapb.GetResponse] {
	keys := make([][]byte, len(reqs))
	for i, r := range reqs {
		keys[i] = r.Key
	}
	resp, err := read(ctx, c, func(ctx context.Context, ep *endpoint) (*metapb.MultiGetResponse, error) {
		return tryBatch(ep, callMultiGet, func() (*metapb.MultiGetResponse, error) {
			return ep.kv.MultiGet(ctx, &metapb.MultiGetRequest{Keys: keys, Consistency: metapb.ReadConsistency(lk.variant)})
		})
	})
	if err != nil {
		return failAll[*metapb.GetResponse](len(reqs), false, err)
	}
	if len(resp.Kvs) != len(reqs) || len(resp.Headers) != 1 {
		// Not one group's answer (the keys' routing moved): reads are
		// safe to send again, each alone.
		return allOutcome(len(reqs), outcome[*metapb.GetResponse]{alone: true})
	}
	h := resp.Headers[0]
	outs := make([]outcome[*metapb.GetResponse], len(reqs))
	for i, kv := range resp.Kvs {
		if kv.GetVersion() == 0 {
			kv = nil // the key does not exist: Get answers no kv
		}
		outs[i].resp = &metapb.GetResponse{Kv: kv, Header: &metapb.ResponseHeader{NodeId: h.NodeId, Group: h.Group,
			Revision: h.Revision, AppliedIndex: h.AppliedIndex, LeaderId: h.LeaderId}}
	}
	return outs
}

// ---- offsets ----

// offsetsBytes counts a commit's entries as the server does against
// MaxBatchBytes.
func offsetsBytes(req *metapb.CommitOffsetsRequest) int {
	n := 0
	for _, o := range req.Offsets {
		n += len(o.GetGroup()) + len(o.GetTopic()) + len(o.GetMetadata()) + 16
	}
	return n
}

func (c *Client) commitOne(ctx context.Context, lk laneKey, req *metapb.CommitOffsetsRequest) (*metapb.CommitOffsetsResponse, error) {
	names := make([]string, len(req.Offsets))
	for i, o := range req.Offsets {
		names[i] = o.GetGroup()
	}
	return routed(ctx, c, offsetKeys(names...), func(ctx context.Context, ep *endpoint) (*metapb.CommitOffsetsResponse, error) {
		return ep.off.Commit(ctx, req)
	})
}

func (c *Client) commitMany(ctx context.Context, lk laneKey, reqs []*metapb.CommitOffsetsRequest) []outcome[*metapb.CommitOffsetsResponse] {
	all := &metapb.CommitOffsetsRequest{}
	for _, r := range reqs {
		all.Offsets = append(all.Offsets, r.Offsets...)
	}
	resp, err := c.commitOne(ctx, lk, all)
	if err != nil {
		return failAll[*metapb.CommitOffsetsResponse](len(reqs), true, err)
	}
	if len(resp.Revisions) != len(all.Offsets) {
		return allOutcome(len(reqs), outcome[*metapb.CommitOffsetsResponse]{err: &unknownError{
			err: fmt.Errorf("client: Commit answered %d revisions for %d offsets", len(resp.Revisions), len(all.Offsets))}})
	}
	outs := make([]outcome[*metapb.CommitOffsetsResponse], len(reqs))
	spans(reqs, func(r *metapb.CommitOffsetsRequest) int { return len(r.Offsets) }, func(i, at, end int) {
		outs[i].resp = &metapb.CommitOffsetsResponse{Revisions: resp.Revisions[at:end], Groups: resp.Groups}
	})
	return outs
}

func (c *Client) fetchOne(ctx context.Context, _ laneKey, req *metapb.FetchOffsetsRequest) (*metapb.FetchOffsetsResponse, error) {
	return read(ctx, c, func(ctx context.Context, ep *endpoint) (*metapb.FetchOffsetsResponse, error) {
		return ep.off.Fetch(ctx, req)
	})
}

func (c *Client) fetchMany(ctx context.Context, lk laneKey, reqs []*metapb.FetchOffsetsRequest) []outcome[*metapb.FetchOffsetsResponse] {
	all := &metapb.FetchOffsetsRequest{Consistency: metapb.ReadConsistency(lk.variant)}
	for _, r := range reqs {
		all.Partitions = append(all.Partitions, r.Partitions...)
	}
	resp, err := c.fetchOne(ctx, lk, all)
	if err != nil {
		return failAll[*metapb.FetchOffsetsResponse](len(reqs), false, err)
	}
	if len(resp.Offsets) != len(all.Partitions) {
		return allOutcome(len(reqs), outcome[*metapb.FetchOffsetsResponse]{alone: true})
	}
	outs := make([]outcome[*metapb.FetchOffsetsResponse], len(reqs))
	spans(reqs, func(r *metapb.FetchOffsetsRequest) int { return len(r.Partitions) }, func(i, at, end int) {
		outs[i].resp = &metapb.FetchOffsetsResponse{Offsets: resp.Offsets[at:end]}
	})
	return outs
}

// ---- sessions ----

// sessionsBytes counts a sessions put as the server does against
// MaxBatchBytes.
func sessionsBytes(req *metapb.PutSessionsRequest) int {
	n := 0
	for _, s := range req.Sessions {
		n += len(s.GetClientId()) + len(s.GetBrokerId()) + len(s.GetState()) + 16
	}
	return n
}

func (c *Client) putSessionsOne(ctx context.Context, lk laneKey, req *metapb.PutSessionsRequest) (*metapb.PutSessionsResponse, error) {
	keys := make([][]byte, len(req.Sessions))
	for i, se := range req.Sessions {
		keys[i] = []byte(se.GetClientId())
	}
	return routed(ctx, c, dataKeys(keys...), func(ctx context.Context, ep *endpoint) (*metapb.PutSessionsResponse, error) {
		return metapb.NewSessionsClient(ep.conn).Put(ctx, req)
	})
}

func (c *Client) putSessionsMany(ctx context.Context, lk laneKey, reqs []*metapb.PutSessionsRequest) []outcome[*metapb.PutSessionsResponse] {
	all := &metapb.PutSessionsRequest{}
	for _, r := range reqs {
		all.Sessions = append(all.Sessions, r.Sessions...)
		all.ReturnPrevious = all.ReturnPrevious || r.ReturnPrevious
	}
	resp, err := c.putSessionsOne(ctx, lk, all)
	if err != nil {
		return failAll[*metapb.PutSessionsResponse](len(reqs), true, err)
	}
	n := len(all.Sessions)
	if len(resp.Revisions) != n || len(resp.Applied) != n || (all.ReturnPrevious && len(resp.Previous) != n) {
		return allOutcome(len(reqs), outcome[*metapb.PutSessionsResponse]{err: &unknownError{
			err: fmt.Errorf("client: sessions Put answered %d revisions, %d applied flags for %d sessions", len(resp.Revisions), len(resp.Applied), n)}})
	}
	outs := make([]outcome[*metapb.PutSessionsResponse], len(reqs))
	spans(reqs, func(r *metapb.PutSessionsRequest) int { return len(r.Sessions) }, func(i, at, end int) {
		o := &metapb.PutSessionsResponse{Revisions: resp.Revisions[at:end], Applied: resp.Applied[at:end], Groups: resp.Groups}
		if reqs[i].ReturnPrevious {
			o.Previous = resp.Previous[at:end]
		}
		outs[i].resp = o
	})
	return outs
}

// uniqueClientIDs returns a sessions put's client ids, or false when one
// repeats (the server refuses the call: it is sent alone, to get that
// answer for itself).
func uniqueClientIDs(req *metapb.PutSessionsRequest) ([]string, bool) {
	ids := make([]string, len(req.Sessions))
	seen := make(map[string]bool, len(req.Sessions))
	for i, s := range req.Sessions {
		id := s.GetClientId()
		if seen[id] {
			return nil, false
		}
		seen[id] = true
		ids[i] = id
	}
	return ids, true
}

// spans calls f with each request's index and the span [at, end) its
// entries (n of them) take in the concatenation of every request's.
func spans[I any](reqs []I, n func(I) int, f func(i, at, end int)) {
	at := 0
	for i, r := range reqs {
		end := at + n(r)
		f(i, at, end)
		at = end
	}
}
