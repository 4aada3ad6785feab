package server

import (
	"context"
	"fmt"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/metamq/meta/rpc/metapb"
	"github.com/metamq/meta/sm/logpb"
	"github.com/metamq/meta/sm/state"
)

// The KV batch calls. MultiPut and MultiGet split their keys by data group
// (one op, so one raft entry's part, per group; one read per group); Txn
// is one op in the one group all of its keys route to, its compares
// evaluated by the state machine when the entry applies. Limits: the
// entries (puts, keys, or compares and ops together) 1..MaxBatchEntries,
// their keys and values together at most MaxBatchBytes; the error names
// the list whose entry crossed the limit.

// batchLimits counts a batch call's entries and bytes in request order
// and names the list whose entry first crosses a limit (checkBatchLen
// checks one list's count; a Txn has three lists that share the limits).
type batchLimits struct {
	entries, bytes int
}

func (l *batchLimits) add(field string, bytes int) error {
	l.entries++
	l.bytes += bytes
	if l.entries > metapb.MaxBatchEntries {
		return invalid(field, "more than %d entries in the call", metapb.MaxBatchEntries)
	}
	if l.bytes > metapb.MaxBatchBytes {
		return invalid(field, "more than %d bytes of keys and values in the call", metapb.MaxBatchBytes)
	}
	return nil
}

// checkPut checks one put of a batch call (field names it, "puts[3]").
func checkPut(field string, p *metapb.PutRequest) error {
	if p == nil {
		return invalid(field, "must be set")
	}
	return firstErr(checkKey(field+".key", p.Key), checkValue(field+".value", p.Value), checkLeaseField(field+".lease", p.Lease))
}

// uniqueKeys refuses a key that repeats within one list of a call (its
// two writes would race inside one op).
type uniqueKeys map[string]string

func (u uniqueKeys) check(field string, key []byte) error {
	if prev, dup := u[string(key)]; dup {
		return invalid(field, "%q repeats %s", key, prev)
	}
	u[string(key)] = field
	return nil
}

// prevKV decodes a stored KV a batch op's result returned (empty: the key
// did not exist, nil).
func prevKV(key, raw []byte) (*metapb.KeyValue, error) {
	return decodeStored(raw, "kv", func(kv *logpb.KV) (*metapb.KeyValue, error) { return toKV(key, kv), nil })
}

// MultiPut puts keys, one atomic part per data group.
func (s *Server) MultiPut(ctx context.Context, req *metapb.MultiPutRequest) (*metapb.MultiPutResponse, error) {
	n := len(req.Puts)
	if err := checkBatchLen("puts", n, metapb.MaxBatchEntries); err != nil {
		return nil, err
	}
	var lim batchLimits
	seen := uniqueKeys{}
	prev := false
	for i, p := range req.Puts {
		f := fmt.Sprintf("puts[%d]", i)
		if err := firstErr(checkPut(f, p), lim.add("puts", len(p.GetKey())+len(p.GetValue()))); err != nil {
			return nil, err
		}
		if err := seen.check(f+".key", p.Key); err != nil {
			return nil, err
		}
		prev = prev || p.PrevKv
	}
	parts, err := s.proposeParts(ctx, n, func(r *metapb.Router, i int) string { return r.DataGroup(req.Puts[i].Key) },
		func(_ string, idx []int) *logpb.Op {
			puts := make([]*logpb.KVPut, len(idx))
			for j, i := range idx {
				p := req.Puts[i]
				puts[j] = &logpb.KVPut{Key: p.Key, Value: p.Value, Lease: p.Lease}
			}
			return &logpb.Op{Op: &logpb.Op_KvPuts{KvPuts: &logpb.KVPuts{Puts: puts, ReturnPrevious: prev}}}
		})
	if err != nil {
		return nil, err
	}
	applied := 0
	for _, p := range parts {
		if p.err == nil {
			p.err = partRefused(p.res, "puts", "", p.idx)
		}
		if p.err == nil {
			applied++
		}
	}
	if applied == 0 {
		return nil, s.batchError(partErrs(parts))
	}
	out := &metapb.MultiPutResponse{Results: make([]*metapb.PutResponse, n), Parts: make([]*metapb.BatchPart, len(parts))}
	for pi, p := range parts {
		bp := s.batchPart(p.group, p.idx, p.err, p.res)
		out.Parts[pi] = bp
		for j, i := range p.idx {
			r := &metapb.PutResponse{}
			out.Results[i] = r
			if bp.Outcome != metapb.PartOutcome_PART_OUTCOME_APPLIED {
				continue
			}
			r.Header = bp.Header
			if req.Puts[i].PrevKv && j < len(p.res.PrevValues) {
				if r.PrevKv, err = prevKV(req.Puts[i].Key, p.res.PrevValues[j]); err != nil {
					return nil, s.statusOf(err, true)
				}
			}
		}
	}
	return out, nil
}

// partRefused is the error of a batch op's part the state machine refused
// (nil when it applied): NOT_FOUND for a lease, naming the entry's lease
// field (list[i]<entry>.lease, i its index in the request found through
// idx, the part's request indexes); INVALID as InvalidArgument (the
// server validated it: a bug).
func partRefused(res *logpb.Result, list, entry string, idx []int) error {
	switch res.Code {
	case logpb.Code_CODE_OK:
		return nil
	case logpb.Code_CODE_NOT_FOUND:
		subject, field := "a lease of "+list, list
		if j := int(res.Count) - 1; j >= 0 && j < len(idx) {
			subject = fmt.Sprintf("the lease of %s[%d]", list, idx[j])
			field = fmt.Sprintf("%s[%d]%s.lease", list, idx[j], entry)
		}
		return resultError(res, subject, field, 0)
	}
	return invalidArgument(list, list+": "+res.Message)
}

// batchPart is one group's part of a batch write as the response reports
// it: applied (err nil, with res) or, by err's class, definitely not
// applied or unknown.
func (s *Server) batchPart(group string, idx []int, err error, res *logpb.Result) *metapb.BatchPart {
	p := &metapb.BatchPart{Header: &metapb.ResponseHeader{Group: group}, Indexes: make([]uint32, len(idx))}
	for j, i := range idx {
		p.Indexes[j] = uint32(i)
	}
	if err == nil {
		p.Header = s.header(group, nil, res.Revision)
		p.Header.RangeVersion = res.RangeVersion
		return p
	}
	err = s.statusOf(err, true)
	p.Reason, p.Message = metapb.ReasonOf(err), err.Error()
	p.Outcome = metapb.PartOutcome_PART_OUTCOME_NOT_APPLIED
	if metapb.ClassOf(p.Reason) == metapb.ClassUnknown {
		p.Outcome = metapb.PartOutcome_PART_OUTCOME_UNKNOWN
	}
	return p
}

// MultiGet reads keys, one read per data group.
func (s *Server) MultiGet(ctx context.Context, req *metapb.MultiGetRequest) (*metapb.MultiGetResponse, error) {
	n := len(req.Keys)
	if err := checkBatchLen("keys", n, metapb.MaxBatchEntries); err != nil {
		return nil, err
	}
	if err := checkConsistency(req.Consistency); err != nil {
		return nil, err
	}
	var lim batchLimits
	for i, k := range req.Keys {
		if err := firstErr(checkKey(fmt.Sprintf("keys[%d]", i), k), lim.add("keys", len(k))); err != nil {
			return nil, err
		}
	}
	groups, parts, err := s.split(n, func(i int) []byte { return req.Keys[i] })
	if err != nil {
		return nil, err
	}
	if g := restrictedTo(ctx); g != "" && (len(groups) != 1 || groups[0] != g) {
		return nil, invalidArgument("keys", fmt.Sprintf("keys: the call is restricted to %q, but its keys route to %v", g, groups))
	}
	out := &metapb.MultiGetResponse{Kvs: make([]*metapb.KeyValue, n), Headers: make([]*metapb.ResponseHeader, len(groups))}
	eg, ectx := errgroup.WithContext(ctx)
	for gi, g := range groups {
		idx := parts[g]
		keys := make([][]byte, len(idx))
		for j, i := range idx {
			keys[j] = req.Keys[i]
		}
		eg.Go(func() error {
			return s.inGroup(ectx, g, req.Consistency, &metapb.MultiGetRequest{Keys: keys, Consistency: req.Consistency},
				func(m state.Reader) error {
					stored, err := m.GetMany(keys)
					if err != nil {
						return s.statusOf(err, false)
					}
					kvs := make([]*metapb.KeyValue, len(keys))
					for j, kv := range stored {
						if kvs[j] = toKV(keys[j], kv); kv == nil {
							kvs[j] = &metapb.KeyValue{Key: keys[j]}
						}
					}
					if err := checkReadBytes(kvs); err != nil {
						return err
					}
					for j, i := range idx {
						out.Kvs[i] = kvs[j]
					}
					out.Headers[gi] = s.header(g, m, 0)
					return nil
				},
				func(resp proto.Message) error {
					r := resp.(*metapb.MultiGetResponse)
					if len(r.Kvs) != len(idx) || len(r.Headers) != 1 {
						return status.Errorf(codes.Unavailable, "%s answered %d keys (%d headers) for %d", g, len(r.Kvs), len(r.Headers), len(idx))
					}
					for j, i := range idx {
						out.Kvs[i] = r.Kvs[j]
					}
					out.Headers[gi] = r.Headers[0]
					return nil
				})
		})
	}
	if err := eg.Wait(); err != nil {
		return nil, err
	}
	if err := checkReadBytes(out.Kvs); err != nil {
		return nil, err
	}
	return out, nil
}

// checkReadBytes refuses a MultiGet answer of more than MaxReadBytes.
func checkReadBytes(kvs []*metapb.KeyValue) error {
	n := 0
	for _, kv := range kvs {
		n += len(kv.GetKey()) + len(kv.GetValue())
	}
	if n > metapb.MaxReadBytes {
		return invalid("keys", "their values total %d bytes, more than the %d one call may answer; ask for fewer keys at a time", n, metapb.MaxReadBytes)
	}
	return nil
}

// txnBranches names a Txn's branches as the request does.
var txnBranches = [2]string{"success", "failure"}

// checkTxn validates a Txn and returns its one data group: every key must
// route there (else InvalidArgument naming the first key that does not).
func (s *Server) checkTxn(req *metapb.TxnRequest) (string, error) {
	if len(req.Compare)+len(req.Success)+len(req.Failure) == 0 {
		return "", invalid("compare", "a transaction needs at least one compare or op")
	}
	r, err := s.router()
	if err != nil {
		return "", err
	}
	var lim batchLimits
	var group, first string
	route := func(field string, key []byte) error {
		g := r.DataGroup(key)
		if group == "" {
			group, first = g, field
			return nil
		}
		if g != group {
			return invalid(field, "%q routes to %s, but %s routes to %s: a transaction's keys must all be in one data group", key, g, first, group)
		}
		return nil
	}
	for i, c := range req.Compare {
		f := fmt.Sprintf("compare[%d]", i)
		if c == nil {
			return "", invalid(f, "must be set")
		}
		errs := []error{checkKey(f+".key", c.Key), lim.add("compare", len(c.Key)+len(c.GetValue()))}
		if c.Target == nil {
			errs = append(errs, invalid(f+".target", "one of value, version, mod_revision, absent must be set"))
		}
		if err := firstErr(append(errs, checkValue(f+".value", c.GetValue()), route(f+".key", c.Key))...); err != nil {
			return "", err
		}
	}
	for b, ops := range [][]*metapb.TxnOp{req.Success, req.Failure} {
		seen := uniqueKeys{}
		for i, op := range ops {
			f := fmt.Sprintf("%s[%d]", txnBranches[b], i)
			var key []byte
			var err error
			switch o := op.GetOp().(type) {
			case *metapb.TxnOp_Put:
				f += ".put"
				key, err = o.Put.GetKey(), checkPut(f, o.Put)
			case *metapb.TxnOp_Delete:
				f += ".delete"
				key = o.Delete.GetKey()
				err = checkKey(f+".key", key)
			default:
				err = invalid(f, "one of put, delete must be set")
			}
			if err := firstErr(err, lim.add(txnBranches[b], len(key)+len(op.GetPut().GetValue()))); err != nil {
				return "", err
			}
			if err := firstErr(seen.check(f+".key", key), route(f+".key", key)); err != nil {
				return "", err
			}
		}
	}
	return group, nil
}

// Txn applies a compare-and-swap transaction over keys of one data group.
func (s *Server) Txn(ctx context.Context, req *metapb.TxnRequest) (*metapb.TxnResponse, error) {
	g, err := s.checkTxn(req)
	if err != nil {
		return nil, err
	}
	t := &logpb.KVTxn{Compares: make([]*logpb.KVCompare, len(req.Compare))}
	for i, c := range req.Compare {
		lc := &logpb.KVCompare{Key: c.Key}
		switch tg := c.Target.(type) {
		case *metapb.Compare_Value:
			lc.Target = &logpb.KVCompare_Value{Value: tg.Value}
		case *metapb.Compare_Version:
			lc.Target = &logpb.KVCompare_Version{Version: tg.Version}
		case *metapb.Compare_ModRevision:
			lc.Target = &logpb.KVCompare_ModRevision{ModRevision: tg.ModRevision}
		case *metapb.Compare_Absent:
			lc.Target = &logpb.KVCompare_Absent{Absent: tg.Absent}
		}
		t.Compares[i] = lc
	}
	t.Success, t.Failure = txnOps(req.Success), txnOps(req.Failure)
	res, err := s.propose(ctx, g, &logpb.Op{Op: &logpb.Op_KvTxn{KvTxn: t}})
	if err != nil {
		return nil, err
	}
	branch, ops := 0, req.Success
	if !res.Succeeded {
		branch, ops = 1, req.Failure
	}
	if res.Code != logpb.Code_CODE_OK {
		idx := make([]int, len(ops))
		for i := range idx {
			idx[i] = i
		}
		return nil, partRefused(res, txnBranches[branch], ".put", idx)
	}
	out := &metapb.TxnResponse{Header: s.header(g, nil, res.Revision), Succeeded: res.Succeeded, Results: make([]*metapb.TxnOpResult, len(ops))}
	for i, op := range ops {
		var raw []byte
		if i < len(res.PrevValues) {
			raw = res.PrevValues[i]
		}
		switch o := op.Op.(type) {
		case *metapb.TxnOp_Put:
			r := &metapb.PutResponse{}
			if o.Put.PrevKv {
				if r.PrevKv, err = prevKV(o.Put.Key, raw); err != nil {
					return nil, s.statusOf(err, true)
				}
			}
			out.Results[i] = &metapb.TxnOpResult{Result: &metapb.TxnOpResult_Put{Put: r}}
		case *metapb.TxnOp_Delete:
			r := &metapb.DeleteResponse{Deleted: i < len(res.Flags) && res.Flags[i]}
			if o.Delete.PrevKv {
				if r.PrevKv, err = prevKV(o.Delete.Key, raw); err != nil {
					return nil, s.statusOf(err, true)
				}
			}
			out.Results[i] = &metapb.TxnOpResult{Result: &metapb.TxnOpResult_Delete{Delete: r}}
		}
	}
	return out, nil
}

// txnOps converts a Txn branch (validated) to the log's ops.
func txnOps(ops []*metapb.TxnOp) []*logpb.KVTxnOp {
	out := make([]*logpb.KVTxnOp, len(ops))
	for i, op := range ops {
		switch o := op.Op.(type) {
		case *metapb.TxnOp_Put:
			out[i] = &logpb.KVTxnOp{Op: &logpb.KVTxnOp_Put{Put: &logpb.KVPut{Key: o.Put.Key, Value: o.Put.Value, Lease: o.Put.Lease}}}
		case *metapb.TxnOp_Delete:
			out[i] = &logpb.KVTxnOp{Op: &logpb.KVTxnOp_Delete{Delete: &logpb.KVDelete{Key: o.Delete.Key}}}
		}
	}
	return out
}
