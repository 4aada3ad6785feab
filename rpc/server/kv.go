package server

import (
	"cmp"
	"context"
	"sync"

	"github.com/metamq/meta/rpc/metapb"
	"github.com/metamq/meta/sm/logpb"
	"github.com/metamq/meta/sm/state"
)

// router is the node's router; a node that holds no directory yet would
// route every key by counts it does not know (all of them to data-0, say,
// whose log would accept keys it will never be asked for again), so it
// refuses the call: ROUTE_AHEAD, definitely not applied, retried.
func (s *Server) router() (*metapb.Router, error) {
	if r := s.node.Router(); r.Version > 0 {
		return r, nil
	}
	return nil, errNoRoutes
}

// errNoRoutes refuses a call this node cannot route yet.
var errNoRoutes = coded(metapb.ReasonRouteAhead, nil, "this node has not loaded the cluster's directory yet, so it cannot route keys; retry, on another node or shortly")

// dataGroup is the data group of a routing key.
func (s *Server) dataGroup(key []byte) (string, error) {
	r, err := s.router()
	if err != nil {
		return "", err
	}
	return r.DataGroup(key), nil
}

// proposeData proposes op to the data group of routingKey.
func (s *Server) proposeData(ctx context.Context, routingKey []byte, op *logpb.Op) (*logpb.Result, error) {
	_, res, err := s.proposeKey(ctx, routingKey, op)
	return res, err
}

// proposeKey proposes op to the data group of routingKey and returns that
// group (for the response header) with the result.
func (s *Server) proposeKey(ctx context.Context, routingKey []byte, op *logpb.Op) (string, *logpb.Result, error) {
	g, err := s.dataGroup(routingKey)
	if err != nil {
		return "", nil, err
	}
	res, err := s.propose(ctx, g, op)
	return g, res, err
}

// readFrom reads group g with consistency c and gets a value from its
// state (get's error is the node's, as any read's); the state read is
// returned too, for the response header.
func readFrom[V any](ctx context.Context, s *Server, g string, c metapb.ReadConsistency, get func(state.Reader) (V, error)) (V, state.Reader, error) {
	var zero V
	m, err := s.read(ctx, g, c)
	if err != nil {
		return zero, nil, err
	}
	v, err := get(m)
	if err != nil {
		return zero, nil, s.statusOf(err, false)
	}
	return v, m, nil
}

// getByKey serves a read of one entry of a data group by its key, which is
// also its routing key: it checks the key (check, naming field) and the
// consistency c, reads the entry with get from the group that owns it and
// answers with what answer makes of it.
func getByKey[V, R any](ctx context.Context, s *Server, field, key string, check func(field, key string) error,
	c metapb.ReadConsistency, get func(m state.Reader, key string) (V, error), answer func(V) R) (R, error) {
	var zero R
	if err := firstErr(check(field, key), checkConsistency(c)); err != nil {
		return zero, err
	}
	g, err := s.dataGroup([]byte(key))
	if err != nil {
		return zero, err
	}
	v, _, err := readFrom(ctx, s, g, c, func(m state.Reader) (V, error) { return get(m, key) })
	if err != nil {
		return zero, err
	}
	return answer(v), nil
}

func checkKey(field string, key []byte) error {
	return checkRequired(field, key, metapb.MaxKeyBytes)
}

func checkValue(field string, v []byte) error {
	return checkMaxBytes(field, v, metapb.MaxValueBytes)
}

func checkLease(lease int64) error { return checkLeaseField("lease", lease) }

func checkLeaseField(field string, lease int64) error {
	if lease < 0 {
		return invalid(field, "%d, lease ids are positive (0 for none)", lease)
	}
	return nil
}

// leaseMissing maps the state machine's NOT_FOUND for a put with an
// unknown lease to NotFound naming the lease field.
func leaseMissing(res *logpb.Result, lease int64) error {
	if res.Code != logpb.Code_CODE_NOT_FOUND {
		return nil
	}
	return resultError(res, leaseSubject(lease), "lease", 0)
}

func checkConsistency(c metapb.ReadConsistency) error {
	if _, ok := metapb.ReadConsistency_name[int32(c)]; !ok {
		return invalid("consistency", "unknown value %d", c)
	}
	return nil
}

// Put stores a value.
func (s *Server) Put(ctx context.Context, req *metapb.PutRequest) (*metapb.PutResponse, error) {
	if err := firstErr(checkKey("key", req.Key), checkValue("value", req.Value), checkLease(req.Lease)); err != nil {
		return nil, err
	}
	g, res, err := s.proposeKey(ctx, req.Key, &logpb.Op{Op: &logpb.Op_Put{Put: &logpb.KVPut{Key: req.Key, Value: req.Value, Lease: req.Lease}}})
	if err != nil {
		return nil, err
	}
	if err := leaseMissing(res, req.Lease); err != nil {
		return nil, err
	}
	out := &metapb.PutResponse{Header: s.header(g, nil, res.Revision)}
	out.Header.RangeVersion = res.RangeVersion
	if req.PrevKv {
		out.PrevKv = toKV(req.Key, res.Prev)
	}
	return out, nil
}

// Get reads a key.
func (s *Server) Get(ctx context.Context, req *metapb.GetRequest) (*metapb.GetResponse, error) {
	if err := firstErr(checkKey("key", req.Key), checkConsistency(req.Consistency)); err != nil {
		return nil, err
	}
	g, err := s.dataGroup(req.Key)
	if err != nil {
		return nil, err
	}
	var ver uint64
	kv, m, err := readFrom(ctx, s, g, req.Consistency, func(m state.Reader) (*logpb.KV, error) {
		kv, v, err := m.GetVersioned(req.Key)
		ver = v
		return kv, err
	})
	if err != nil {
		return nil, err
	}
	out := &metapb.GetResponse{Header: s.header(g, m, 0), Kv: toKV(req.Key, kv)}
	out.Header.RangeVersion = ver
	return out, nil
}

// Delete removes a key.
func (s *Server) Delete(ctx context.Context, req *metapb.DeleteRequest) (*metapb.DeleteResponse, error) {
	if err := checkKey("key", req.Key); err != nil {
		return nil, err
	}
	g, res, err := s.proposeKey(ctx, req.Key, &logpb.Op{Op: &logpb.Op_Delete{Delete: &logpb.KVDelete{Key: req.Key}}})
	if err != nil {
		return nil, err
	}
	out := &metapb.DeleteResponse{Header: s.header(g, nil, res.Revision), Deleted: res.Code == logpb.Code_CODE_OK}
	out.Header.RangeVersion = res.RangeVersion
	if req.PrevKv {
		out.PrevKv = toKV(req.Key, res.Prev)
	}
	return out, nil
}

// CompareAndSwap sets a key if its state matches.
func (s *Server) CompareAndSwap(ctx context.Context, req *metapb.CompareAndSwapRequest) (*metapb.CompareAndSwapResponse, error) {
	errs := []error{checkKey("key", req.Key), checkValue("new_value", req.NewValue),
		checkValue("expected_value", req.ExpectedValue), checkLease(req.Lease)}
	if req.ExpectAbsent && (len(req.ExpectedValue) > 0 || req.ExpectedModRevision != 0) {
		errs = append(errs, invalid("expect_absent", "cannot be combined with expected_value or expected_mod_revision"))
	}
	if err := firstErr(errs...); err != nil {
		return nil, err
	}
	g, res, err := s.proposeKey(ctx, req.Key, &logpb.Op{Op: &logpb.Op_Cas{Cas: &logpb.KVCompareAndSwap{
		Key: req.Key, ExpectedValue: req.ExpectedValue, ExpectAbsent: req.ExpectAbsent,
		ExpectedModRevision: req.ExpectedModRevision, NewValue: req.NewValue, Lease: req.Lease}}})
	if err != nil {
		return nil, err
	}
	if err := leaseMissing(res, req.Lease); err != nil {
		return nil, err
	}
	out := &metapb.CompareAndSwapResponse{Header: s.header(g, nil, res.Revision),
		Succeeded: res.Code == logpb.Code_CODE_OK, Current: toKV(req.Key, res.Prev)}
	out.Header.RangeVersion = res.RangeVersion
	return out, nil
}

// List returns one page of keys with a prefix, merged over the data groups.
func (s *Server) List(ctx context.Context, req *metapb.ListRequest) (*metapb.ListResponse, error) {
	if err := firstErr(checkConsistency(req.Consistency), checkMaxBytes("prefix", req.Prefix, metapb.MaxKeyBytes),
		checkMaxBytes("start_after", req.StartAfter, metapb.MaxKeyBytes), checkLimit(req.Limit)); err != nil {
		return nil, err
	}
	limit := listLimit(req.Limit)
	var hdr *metapb.ResponseHeader
	var hdrMu sync.Mutex
	setHeader := func(h *metapb.ResponseHeader) {
		hdrMu.Lock()
		defer hdrMu.Unlock()
		if hdr == nil || h.Group < hdr.Group {
			hdr = h
		}
	}
	merged, more, _, err := listPage(ctx, s, req.Consistency, req, limit, func(g string, mc state.Reader) ([]state.Entry, bool, error) {
		es, more, err := mc.List(req.Prefix, req.StartAfter, limit, req.KeysOnly)
		setHeader(s.header(g, mc, 0))
		return es, more, err
	}, func(e state.Entry) *metapb.KeyValue { return toKV(e.Key, e.KV) }, func(r *metapb.ListResponse) []*metapb.KeyValue {
		if r.Header != nil {
			setHeader(r.Header)
		}
		return r.Kvs
	}, func(kv *metapb.KeyValue) string { return string(kv.Key) })
	if err != nil {
		return nil, err
	}
	out := &metapb.ListResponse{Header: hdr, More: more, Kvs: merged}
	if more && len(merged) > 0 {
		out.NextStartAfter = merged[len(merged)-1].Key
	}
	return out, nil
}

// firstErr is the first of errs that is not nil; nil if none.
func firstErr(errs ...error) error { return cmp.Or(errs...) }
