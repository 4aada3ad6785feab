package verify

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/status"

	"github.com/metamq/meta/rpc/client"
	"github.com/metamq/meta/rpc/metapb"
)

// API is the part of the public client that sessions drive: the KV and
// offsets calls. *client.Client implements it; tests use in-memory fakes.
type API interface {
	Put(ctx context.Context, req *metapb.PutRequest) (*metapb.PutResponse, error)
	Get(ctx context.Context, req *metapb.GetRequest) (*metapb.GetResponse, error)
	Delete(ctx context.Context, req *metapb.DeleteRequest) (*metapb.DeleteResponse, error)
	CompareAndSwap(ctx context.Context, req *metapb.CompareAndSwapRequest) (*metapb.CompareAndSwapResponse, error)
	List(ctx context.Context, req *metapb.ListRequest) (*metapb.ListResponse, error)
	CommitOffsets(ctx context.Context, req *metapb.CommitOffsetsRequest) (*metapb.CommitOffsetsResponse, error)
	FetchOffsets(ctx context.Context, req *metapb.FetchOffsetsRequest) (*metapb.FetchOffsetsResponse, error)
	DeleteGroup(ctx context.Context, req *metapb.DeleteGroupRequest) (*metapb.DeleteGroupResponse, error)
}

var _ API = (*client.Client)(nil)

// Recorder hands out sessions that record into one history on one clock.
// It is safe for concurrent use; each Session is not.
type Recorder struct {
	clock      *Clock
	hist       *History
	opTimeout  time.Duration
	nextClient atomic.Int64
	nextProc   atomic.Int64
}

// NewRecorder records into hist, timing ops with clock. opTimeout bounds
// each call whose context has no earlier deadline (0: no bound of its own;
// the client's RequestTimeout still applies).
func NewRecorder(clock *Clock, hist *History, opTimeout time.Duration) *Recorder {
	return &Recorder{clock: clock, hist: hist, opTimeout: opTimeout}
}

// Clock returns the recorder's clock.
func (r *Recorder) Clock() *Clock { return r.clock }

// History returns the recorder's history.
func (r *Recorder) History() *History { return r.hist }

// Session starts a logical client that sends everything to t. endpoint is
// only recorded (it names the node t is pinned to, or "any").
func (r *Recorder) Session(t API, endpoint string) *Session {
	return &Session{sessionBase: r.sessionBase(endpoint), t: t}
}

// sessionBase is what Session and BrokerSession share: the recorder they
// record on, the endpoint they record, their process and porcupine client
// ids (one numbering for both, so process ids are unique across
// history.jsonl and broker.jsonl), the sequence of their unique values
// and whether their calls are final.
type sessionBase struct {
	r        *Recorder
	endpoint string
	process  int
	client   int
	seq      int
	final    bool
}

// sessionBase numbers a new session: a new process and client id.
func (r *Recorder) sessionBase(endpoint string) sessionBase {
	return sessionBase{r: r, endpoint: endpoint,
		process: int(r.nextProc.Add(1) - 1), client: int(r.nextClient.Add(1) - 1)}
}

// Session is one logical client: one op at a time, every op recorded. Not
// safe for concurrent use.
type Session struct {
	sessionBase
	t API
}

// Process returns the session's process id (stable for its life).
func (s *sessionBase) Process() int { return s.process }

// ClientID returns the current porcupine client id.
func (s *Session) ClientID() int { return s.client }

// NextValue returns a value never returned before in this run:
// "p<process>-<n>". Unique values let the checkers tell which write a read
// observed.
func (s *sessionBase) NextValue() string {
	s.seq++
	return fmt.Sprintf("p%d-%d", s.process, s.seq)
}

// timedCall runs call for a session's op, bounded by the recorder's op
// timeout (when it has one), and returns when it was called and when it
// returned on the recorder's clock.
func timedCall[O any](ctx context.Context, r *Recorder, call func(ctx context.Context) (O, error)) (at, ret int64, out O, err error) {
	if r.opTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, r.opTimeout)
		defer cancel()
	}
	at = r.clock.Now()
	out, err = call(ctx)
	return at, r.clock.Now(), out, err
}

// recorded ends an op the session recorded with outcome: a session that
// sees an unknown outcome moves to a new client id, because its unknown
// op stays open forever and porcupine allows one open op per client.
func (s *sessionBase) recorded(outcome Outcome) {
	if outcome == OutcomeUnknown {
		s.client = int(s.r.nextClient.Add(1) - 1)
	}
}

// record runs call, times it, classifies the result and appends the op
// (see recorded for the client id after an unknown outcome).
func (s *Session) record(ctx context.Context, kind OpKind, in Input, call func(ctx context.Context) (*Output, error)) Op {
	op := Op{Client: s.client, Process: s.process, Kind: kind, Input: in, Endpoint: s.endpoint, Final: s.final}
	var out *Output
	var err error
	op.Call, op.Return, out, err = timedCall(ctx, s.r, call)
	op.Outcome = Classify(kind, err)
	if err != nil {
		op.Err = err.Error()
	} else {
		op.Output = out
	}
	op = s.r.hist.Append(op)
	s.recorded(op.Outcome)
	return op
}

// Classify maps a call's error to an outcome.
//
//   - nil: ok.
//   - a read that failed: fail. Reads change nothing, whatever happened.
//   - a write wrapped in client.ErrUnknownOutcome: unknown.
//   - a write that failed with a gRPC status the client did not mark
//     unknown: fail. The client marks every outcome it cannot prove
//     definite as unknown (NOT_LEADER, NO_LEADER, InvalidArgument, a
//     connection that never became ready... are definite). The checker
//     trusts that classification on purpose: a client or server that calls
//     an applied write "failed" is exactly the bug a checker must catch.
//   - any other error on a write (no gRPC status at all): unknown, because
//     nothing proves the request was not sent.
func Classify(kind OpKind, err error) Outcome { return classify(kind.IsWrite(), err) }

// classify is Classify of a write or a read, whatever its API.
func classify(write bool, err error) Outcome {
	if err == nil {
		return OutcomeOK
	}
	if !write {
		return OutcomeFail
	}
	if client.IsUnknown(err) {
		return OutcomeUnknown
	}
	if _, ok := status.FromError(err); ok {
		return OutcomeFail
	}
	return OutcomeUnknown
}

func readConsistency(stale bool) metapb.ReadConsistency {
	if stale {
		return metapb.ReadConsistency_READ_CONSISTENCY_STALE
	}
	return metapb.ReadConsistency_READ_CONSISTENCY_LINEARIZABLE
}

func fromKV(kv *metapb.KeyValue) *KV {
	if kv == nil {
		return nil
	}
	return &KV{Key: string(kv.Key), Value: string(kv.Value), CreateRevision: kv.CreateRevision,
		ModRevision: kv.ModRevision, Version: kv.Version}
}

func header(out *Output, h *metapb.ResponseHeader) *Output {
	if h != nil {
		out.Node = h.NodeId
		out.Revision = h.Revision
		out.Group = h.Group
		out.RangeVersion = h.RangeVersion
	}
	return out
}

// Put writes key=value, asking for the previous pair so the checker sees
// what the put overwrote.
func (s *Session) Put(ctx context.Context, key, value string) Op {
	in := Input{Key: key, Value: value, PrevKV: true}
	return s.record(ctx, OpPut, in, func(ctx context.Context) (*Output, error) {
		resp, err := s.t.Put(ctx, &metapb.PutRequest{Key: []byte(key), Value: []byte(value), PrevKv: true})
		if err != nil {
			return nil, err
		}
		return header(&Output{KV: fromKV(resp.PrevKv)}, resp.Header), nil
	})
}

// Get reads key, linearizably unless stale.
func (s *Session) Get(ctx context.Context, key string, stale bool) Op {
	in := Input{Key: key, Stale: stale}
	return s.record(ctx, OpGet, in, func(ctx context.Context) (*Output, error) {
		resp, err := s.t.Get(ctx, &metapb.GetRequest{Key: []byte(key), Consistency: readConsistency(stale)})
		if err != nil {
			return nil, err
		}
		return header(&Output{KV: fromKV(resp.Kv)}, resp.Header), nil
	})
}

// Delete removes key, asking for the previous pair.
func (s *Session) Delete(ctx context.Context, key string) Op {
	in := Input{Key: key, PrevKV: true}
	return s.record(ctx, OpDelete, in, func(ctx context.Context) (*Output, error) {
		resp, err := s.t.Delete(ctx, &metapb.DeleteRequest{Key: []byte(key), PrevKv: true})
		if err != nil {
			return nil, err
		}
		return header(&Output{Deleted: resp.Deleted, KV: fromKV(resp.PrevKv)}, resp.Header), nil
	})
}

// CAS sets key to newValue if the key is absent (expectAbsent) or holds
// expected.
func (s *Session) CAS(ctx context.Context, key string, expectAbsent bool, expected, newValue string) Op {
	in := Input{Key: key, Value: newValue, Expected: expected, ExpectAbsent: expectAbsent}
	if expectAbsent {
		in.Expected = ""
	}
	return s.record(ctx, OpCAS, in, func(ctx context.Context) (*Output, error) {
		req := &metapb.CompareAndSwapRequest{Key: []byte(key), ExpectAbsent: expectAbsent, NewValue: []byte(newValue)}
		if !expectAbsent {
			req.ExpectedValue = []byte(expected)
		}
		resp, err := s.t.CompareAndSwap(ctx, req)
		if err != nil {
			return nil, err
		}
		return header(&Output{Succeeded: resp.Succeeded, KV: fromKV(resp.Current)}, resp.Header), nil
	})
}

// List reads one page of keys with prefix after startAfter.
func (s *Session) List(ctx context.Context, prefix, startAfter string, limit uint32, stale bool) Op {
	in := Input{Prefix: prefix, StartAfter: startAfter, Limit: limit, Stale: stale}
	return s.record(ctx, OpList, in, func(ctx context.Context) (*Output, error) {
		resp, err := s.t.List(ctx, &metapb.ListRequest{Prefix: []byte(prefix), StartAfter: []byte(startAfter),
			Limit: limit, Consistency: readConsistency(stale)})
		if err != nil {
			return nil, err
		}
		out := &Output{More: resp.More, NextStartAfter: string(resp.NextStartAfter)}
		for _, kv := range resp.Kvs {
			out.KVs = append(out.KVs, *fromKV(kv))
		}
		return header(out, resp.Header), nil
	})
}

// Commit commits a batch of offsets.
func (s *Session) Commit(ctx context.Context, offsets []OffsetCommit) Op {
	in := Input{Offsets: offsets}
	return s.record(ctx, OpCommit, in, func(ctx context.Context) (*Output, error) {
		req := &metapb.CommitOffsetsRequest{}
		for _, o := range offsets {
			req.Offsets = append(req.Offsets, &metapb.OffsetCommit{Group: o.Group, Topic: o.Topic,
				Partition: o.Partition, Offset: o.Offset, Metadata: o.Metadata})
		}
		resp, err := s.t.CommitOffsets(ctx, req)
		if err != nil {
			return nil, err
		}
		return &Output{Revisions: resp.Revisions}, nil
	})
}

// Fetch reads committed offsets, linearizably unless stale.
func (s *Session) Fetch(ctx context.Context, partitions []TopicPartition, stale bool) Op {
	in := Input{Partitions: partitions, Stale: stale}
	return s.record(ctx, OpFetch, in, func(ctx context.Context) (*Output, error) {
		req := &metapb.FetchOffsetsRequest{Consistency: readConsistency(stale)}
		for _, p := range partitions {
			req.Partitions = append(req.Partitions, &metapb.TopicPartition{Group: p.Group, Topic: p.Topic, Partition: p.Partition})
		}
		resp, err := s.t.FetchOffsets(ctx, req)
		if err != nil {
			return nil, err
		}
		out := &Output{}
		for _, v := range resp.Offsets {
			ov := OffsetValue{Found: v.Found, Offset: v.Offset, Metadata: v.Metadata, ModRevision: v.ModRevision}
			if v.Partition != nil {
				ov.TopicPartition = TopicPartition{Group: v.Partition.Group, Topic: v.Partition.Topic, Partition: v.Partition.Partition}
			}
			out.Offsets = append(out.Offsets, ov)
		}
		return out, nil
	})
}

// DeleteGroup removes every offset of a consumer group.
func (s *Session) DeleteGroup(ctx context.Context, group string) Op {
	in := Input{Group: group}
	return s.record(ctx, OpDeleteGroup, in, func(ctx context.Context) (*Output, error) {
		resp, err := s.t.DeleteGroup(ctx, &metapb.DeleteGroupRequest{Group: group})
		if err != nil {
			return nil, err
		}
		return header(&Output{Count: resp.Deleted}, resp.Header), nil
	})
}
