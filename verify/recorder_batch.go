package verify

import (
	"context"
	"errors"

	"github.com/metamq/meta/rpc/client"
	"github.com/metamq/meta/rpc/metapb"
)

// BatchAPI is the part of the public client with the KV batch calls; a
// session's target must implement it for MultiPut, MultiGet and Txn.
type BatchAPI interface {
	MultiPut(ctx context.Context, req *metapb.MultiPutRequest) (*metapb.MultiPutResponse, error)
	MultiGet(ctx context.Context, req *metapb.MultiGetRequest) (*metapb.MultiGetResponse, error)
	Txn(ctx context.Context, req *metapb.TxnRequest) (*metapb.TxnResponse, error)
}

var _ BatchAPI = (*client.Client)(nil)

// errNoBatchAPI is the error of a batch call on a target without them.
var errNoBatchAPI = errors.New("verify: the session's target has no KV batch calls")

// recordBatch records a KV batch call: call gets the session's target as
// a BatchAPI (on a target without the batch calls, the call fails with
// errNoBatchAPI).
func (s *Session) recordBatch(ctx context.Context, kind OpKind, in Input, call func(ctx context.Context, b BatchAPI) (*Output, error)) Op {
	return s.record(ctx, kind, in, func(ctx context.Context) (*Output, error) {
		b, ok := s.t.(BatchAPI)
		if !ok {
			return nil, errNoBatchAPI
		}
		return call(ctx, b)
	})
}

// partOutcome is a recorded part's outcome.
func partOutcome(o metapb.PartOutcome) Outcome {
	switch o {
	case metapb.PartOutcome_PART_OUTCOME_APPLIED:
		return OutcomeOK
	case metapb.PartOutcome_PART_OUTCOME_NOT_APPLIED:
		return OutcomeFail
	}
	return OutcomeUnknown
}

// MultiPut writes every pair of puts in one call. A response that came
// with a PartialError is recorded as ok with each part's outcome (the
// checker takes each part as applied, not applied or unknown).
func (s *Session) MultiPut(ctx context.Context, puts []KV) Op {
	in := Input{Puts: puts}
	return s.recordBatch(ctx, OpMultiPut, in, func(ctx context.Context, b BatchAPI) (*Output, error) {
		req := &metapb.MultiPutRequest{Puts: make([]*metapb.PutRequest, len(puts))}
		for i, p := range puts {
			req.Puts[i] = &metapb.PutRequest{Key: []byte(p.Key), Value: []byte(p.Value)}
		}
		resp, err := b.MultiPut(ctx, req)
		var partial *client.PartialError
		if err != nil && (resp == nil || !errors.As(err, &partial)) {
			return nil, err
		}
		out := &Output{}
		for _, p := range resp.Parts {
			part := PutPart{Group: p.GetHeader().GetGroup(), Revision: p.GetHeader().GetRevision(), Outcome: partOutcome(p.Outcome)}
			for _, i := range p.Indexes {
				part.Indexes = append(part.Indexes, int(i))
			}
			out.Parts = append(out.Parts, part)
		}
		return out, nil
	})
}

// MultiGet reads keys in one call, linearizably. When one group answered
// (one header), its header is recorded: the checker then takes the read
// as one snapshot of its keys.
func (s *Session) MultiGet(ctx context.Context, keys []string) Op {
	in := Input{Keys: keys}
	return s.recordBatch(ctx, OpMultiGet, in, func(ctx context.Context, b BatchAPI) (*Output, error) {
		req := &metapb.MultiGetRequest{Keys: make([][]byte, len(keys))}
		for i, k := range keys {
			req.Keys[i] = []byte(k)
		}
		resp, err := b.MultiGet(ctx, req)
		if err != nil {
			return nil, err
		}
		out := &Output{KVs: make([]KV, len(resp.Kvs))}
		for i, kv := range resp.Kvs {
			out.KVs[i] = *fromKV(kv)
		}
		if len(resp.Headers) == 1 {
			header(out, resp.Headers[0])
		}
		return out, nil
	})
}

// Txn runs a transaction of value and absence compares.
func (s *Session) Txn(ctx context.Context, t TxnInput) Op {
	in := Input{Txn: &t}
	return s.recordBatch(ctx, OpTxn, in, func(ctx context.Context, b BatchAPI) (*Output, error) {
		req := &metapb.TxnRequest{}
		for _, c := range t.Compares {
			cm := &metapb.Compare{Key: []byte(c.Key)}
			if c.Absent {
				cm.Target = &metapb.Compare_Absent{Absent: true}
			} else {
				cm.Target = &metapb.Compare_Value{Value: []byte(c.Value)}
			}
			req.Compare = append(req.Compare, cm)
		}
		req.Success, req.Failure = txnOps(t.Success), txnOps(t.Failure)
		resp, err := b.Txn(ctx, req)
		if err != nil {
			return nil, err
		}
		return header(&Output{Succeeded: resp.Succeeded}, resp.Header), nil
	})
}

func txnOps(ws []TxnWrite) []*metapb.TxnOp {
	ops := make([]*metapb.TxnOp, len(ws))
	for i, w := range ws {
		if w.Delete {
			ops[i] = &metapb.TxnOp{Op: &metapb.TxnOp_Delete{Delete: &metapb.DeleteRequest{Key: []byte(w.Key)}}}
		} else {
			ops[i] = &metapb.TxnOp{Op: &metapb.TxnOp_Put{Put: &metapb.PutRequest{Key: []byte(w.Key), Value: []byte(w.Value)}}}
		}
	}
	return ops
}
