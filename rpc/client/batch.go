package client

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/metamq/meta/rpc/metapb"
)

// The KV batch calls (rpc/metapb/kv.proto states their limits and
// atomicity): MultiPut is split by data group here, each group's part sent
// to the group's leader as a write of its own; MultiGet is a read sent to
// any node, which reads each group; Txn is a write to the leader of its
// one group.

// PartialError is the error of a batch write some of whose parts applied
// while others did not, or may not have; the response is returned with
// it. Parts is every part's outcome (the response's Parts). errors.Is(err,
// ErrUnknownOutcome) is true when any part's outcome is unknown: such a
// part must not be taken as failed, nor sent again blindly.
type PartialError struct {
	Parts []*metapb.BatchPart
}

func (e *PartialError) Error() string {
	var b strings.Builder
	b.WriteString("client: batch partly applied:")
	for _, p := range e.Parts {
		if p.Outcome != metapb.PartOutcome_PART_OUTCOME_APPLIED {
			fmt.Fprintf(&b, " %s %s (%d entries): %s;", p.GetHeader().GetGroup(), p.Outcome, len(p.Indexes), p.Message)
		}
	}
	return strings.TrimSuffix(b.String(), ";")
}

// Is makes errors.Is(err, ErrUnknownOutcome) true when a part's outcome is
// unknown.
func (e *PartialError) Is(target error) bool {
	if target != ErrUnknownOutcome {
		return false
	}
	for _, p := range e.Parts {
		if p.Outcome == metapb.PartOutcome_PART_OUTCOME_UNKNOWN {
			return true
		}
	}
	return false
}

// partialErr is nil when every part of resp applied, else a PartialError.
func partialErr(parts []*metapb.BatchPart) error {
	for _, p := range parts {
		if p.Outcome != metapb.PartOutcome_PART_OUTCOME_APPLIED {
			return &PartialError{Parts: parts}
		}
	}
	return nil
}

// splitKeys groups n keys by the data group the client routes them to;
// one group "" (send the call whole, any node splits it) when the client
// is pinned, does not know the topology or has no keys.
func (c *Client) splitKeys(ctx context.Context, n int, key func(i int) []byte) (groups []string, parts map[string][]int) {
	all := make([]int, n)
	for i := range all {
		all[i] = i
	}
	if c.cfg.Pinned || n == 0 {
		return []string{""}, map[string][]int{"": all}
	}
	r, err := c.topology(ctx)
	if err != nil {
		return []string{""}, map[string][]int{"": all}
	}
	parts = map[string][]int{}
	for i := range n {
		g := r.DataGroup(key(i))
		if _, ok := parts[g]; !ok {
			groups = append(groups, g)
		}
		parts[g] = append(parts[g], i)
	}
	return groups, parts
}

// MultiPut puts many keys. Each data group's part is atomic (all of its
// puts or none); the call is not atomic across groups. The error is nil
// when every part applied. When no part applied it is the error a Put
// would get (IsUnknown when any part's outcome is unknown). Otherwise the
// response comes with a *PartialError, and its Parts say which puts
// applied, which did not and which may have.
func (c *Client) MultiPut(ctx context.Context, req *metapb.MultiPutRequest) (*metapb.MultiPutResponse, error) {
	groups, parts := c.splitKeys(ctx, len(req.Puts), func(i int) []byte { return req.Puts[i].GetKey() })
	call := func(ctx context.Context, g string, sub *metapb.MultiPutRequest) (*metapb.MultiPutResponse, error) {
		resp, err := routed(ctx, c, dataKeys(putKeys(sub.Puts)...), func(ctx context.Context, ep *endpoint) (*metapb.MultiPutResponse, error) {
			return ep.kv.MultiPut(ctx, sub)
		})
		for _, p := range resp.GetParts() {
			c.learnLeader(p)
		}
		return resp, err
	}
	if len(groups) <= 1 {
		resp, err := call(ctx, groups[0], req)
		if err != nil {
			return nil, err
		}
		return resp, partialErr(resp.Parts)
	}
	resps := make([]*metapb.MultiPutResponse, len(groups))
	errs := make([]error, len(groups))
	var wg sync.WaitGroup
	for gi, g := range groups {
		sub := &metapb.MultiPutRequest{Puts: make([]*metapb.PutRequest, len(parts[g]))}
		for j, i := range parts[g] {
			sub.Puts[j] = req.Puts[i]
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			resps[gi], errs[gi] = call(ctx, g, sub)
		}()
	}
	wg.Wait()
	if err := allFailed(errs); err != nil {
		return nil, err
	}
	out := &metapb.MultiPutResponse{Results: make([]*metapb.PutResponse, len(req.Puts))}
	for gi, g := range groups {
		idx := parts[g]
		if errs[gi] != nil {
			out.Parts = append(out.Parts, failedPart(g, idx, errs[gi]))
			for _, i := range idx {
				out.Results[i] = &metapb.PutResponse{}
			}
			continue
		}
		if len(resps[gi].Results) != len(idx) {
			// Some part applied, and this answer cannot say which.
			return nil, &unknownError{err: fmt.Errorf("client: %s answered %d results for %d puts", g, len(resps[gi].Results), len(idx))}
		}
		for j, i := range idx {
			out.Results[i] = resps[gi].Results[j]
		}
		for _, p := range resps[gi].Parts {
			for k, j := range p.Indexes {
				p.Indexes[k] = uint32(idx[j])
			}
			out.Parts = append(out.Parts, p)
		}
	}
	return out, partialErr(out.Parts)
}

// allFailed is the error of a batch whose every part failed (unknown when
// any part's outcome is unknown, else the first part's error), or nil
// when some part applied.
func allFailed(errs []error) error {
	var first error
	for _, err := range errs {
		switch {
		case err == nil:
			return nil
		case IsUnknown(err):
			if !IsUnknown(first) {
				first = err
			}
		case first == nil:
			first = err
		}
	}
	return first
}

// failedPart reports a group's part whose call failed with err.
func failedPart(group string, idx []int, err error) *metapb.BatchPart {
	p := &metapb.BatchPart{Header: &metapb.ResponseHeader{Group: group}, Indexes: make([]uint32, len(idx)),
		Outcome: metapb.PartOutcome_PART_OUTCOME_NOT_APPLIED, Message: err.Error()}
	for j, i := range idx {
		p.Indexes[j] = uint32(i)
	}
	// write returns unknown outcomes as such, and only definite failures
	// otherwise.
	if IsUnknown(err) {
		p.Outcome = metapb.PartOutcome_PART_OUTCOME_UNKNOWN
	}
	if _, info := errorInfo(err); info != nil {
		p.Reason = info.Reason
	}
	return p
}

// MultiGet reads many keys (linearizable unless req.Consistency says
// STALE); Kvs[i] is Keys[i]'s state, with Version 0 when it does not
// exist. Each group's part is a consistent read of its own; the whole is
// not one snapshot across groups.
func (c *Client) MultiGet(ctx context.Context, req *metapb.MultiGetRequest) (*metapb.MultiGetResponse, error) {
	return read(ctx, c, func(ctx context.Context, ep *endpoint) (*metapb.MultiGetResponse, error) {
		return ep.kv.MultiGet(ctx, req)
	})
}

// Txn runs a compare-and-swap transaction over keys of one data group,
// sent to that group's leader. Keys of several groups are refused
// (InvalidArgument naming the first that routes elsewhere).
func (c *Client) Txn(ctx context.Context, req *metapb.TxnRequest) (*metapb.TxnResponse, error) {
	var keys [][]byte
	for _, cm := range req.Compare {
		keys = append(keys, cm.GetKey())
	}
	for _, ops := range [][]*metapb.TxnOp{req.Success, req.Failure} {
		for _, op := range ops {
			keys = append(keys, cmpBytes(op.GetPut().GetKey(), op.GetDelete().GetKey()))
		}
	}
	return routed(ctx, c, dataKeys(keys...), func(ctx context.Context, ep *endpoint) (*metapb.TxnResponse, error) {
		return ep.kv.Txn(ctx, req)
	})
}

// cmpBytes is a unless it is empty, else b.
func cmpBytes(a, b []byte) []byte {
	if len(a) > 0 {
		return a
	}
	return b
}

// putKeys is the key of each put, in order.
func putKeys(puts []*metapb.PutRequest) [][]byte {
	keys := make([][]byte, len(puts))
	for i, p := range puts {
		keys[i] = p.GetKey()
	}
	return keys
}
