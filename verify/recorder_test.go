package verify

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/metamq/meta/rpc/client"
	"github.com/metamq/meta/rpc/metapb"
)

func TestClassify(t *testing.T) {
	unknown := fmt.Errorf("leadership lost: %w", client.ErrUnknownOutcome)
	tests := []struct {
		name string
		kind OpKind
		err  error
		want Outcome
	}{
		{"ok write", OpPut, nil, OutcomeOK},
		{"ok read", OpGet, nil, OutcomeOK},
		{"unknown write", OpCAS, unknown, OutcomeUnknown},
		{"definite write", OpPut, status.Error(codes.InvalidArgument, "key too long"), OutcomeFail},
		{"not leader write", OpCommit, status.Error(codes.Unavailable, "not leader"), OutcomeFail},
		{"aborted write trusted as definite", OpDeleteGroup, status.Error(codes.Aborted, "x"), OutcomeFail},
		{"non-status write error", OpDelete, errors.New("connection reset"), OutcomeUnknown},
		{"failed read", OpFetch, unknown, OutcomeFail},
		{"failed list", OpList, errors.New("boom"), OutcomeFail},
	}
	for _, tt := range tests {
		if got := Classify(tt.kind, tt.err); got != tt.want {
			t.Errorf("%s: got %s, want %s", tt.name, got, tt.want)
		}
	}
}

// scripted answers each call with the next error of its script (nil: a
// success from the embedded memConn).
type scripted struct {
	*memConn
	errs []error
}

func (s *scripted) next() error {
	if len(s.errs) == 0 {
		return nil
	}
	err := s.errs[0]
	s.errs = s.errs[1:]
	return err
}

func (s *scripted) Put(ctx context.Context, req *metapb.PutRequest) (*metapb.PutResponse, error) {
	if err := s.next(); err != nil {
		return nil, err
	}
	return s.memConn.Put(ctx, req)
}

func (s *scripted) Get(ctx context.Context, req *metapb.GetRequest) (*metapb.GetResponse, error) {
	if err := s.next(); err != nil {
		return nil, err
	}
	return s.memConn.Get(ctx, req)
}

func TestSessionRecords(t *testing.T) {
	c := newMemCluster(1, "n1")
	target := &scripted{memConn: &memConn{c: c, node: "n1"}, errs: []error{
		nil,
		fmt.Errorf("deadline: %w", client.ErrUnknownOutcome),
		status.Error(codes.Unavailable, "no leader"),
		nil,
		status.Error(codes.Unavailable, "no leader"),
	}}
	h := &History{}
	rec := NewRecorder(NewClock(), h, 0)
	other := rec.Session(target, "n1") // takes process 0 and client 0
	s := rec.Session(target, "n1")
	v1, v2, v3 := s.NextValue(), s.NextValue(), s.NextValue()
	if v1 == v2 || v2 == v3 || other.NextValue() == v1 {
		t.Fatalf("values: got %q %q %q and %q, want all different", v1, v2, v3, other.NextValue())
	}
	ctx := context.Background()
	ops := []Op{s.Put(ctx, "k", v1), s.Put(ctx, "k", v2), s.Put(ctx, "k", v3), s.Get(ctx, "k", false), s.Get(ctx, "k", false)}
	want := []struct {
		outcome Outcome
		client  int
	}{{OutcomeOK, 1}, {OutcomeUnknown, 1}, {OutcomeFail, 2}, {OutcomeOK, 2}, {OutcomeFail, 2}}
	for i, op := range ops {
		if op.Outcome != want[i].outcome || op.Client != want[i].client || op.Process != 1 {
			t.Errorf("op %d: got %s client %d process %d, want %s client %d process 1", i, op.Outcome, op.Client, op.Process, want[i].outcome, want[i].client)
		}
		if op.Index != i || op.Return < op.Call || op.Endpoint != "n1" {
			t.Errorf("op %d: got index %d call %d return %d endpoint %q", i, op.Index, op.Call, op.Return, op.Endpoint)
		}
		if (op.Outcome == OutcomeOK) != (op.Output != nil) || (op.Outcome != OutcomeOK) != (op.Err != "") {
			t.Errorf("op %d: got output %v error %q with outcome %s", i, op.Output, op.Err, op.Outcome)
		}
		if i > 0 && op.Call < ops[i-1].Return {
			t.Errorf("op %d: called at %d before the previous op returned at %d", i, op.Call, ops[i-1].Return)
		}
	}
	if got := ops[3].Output.KV; got == nil || got.Value != v1 {
		t.Errorf("get: got %+v, want %q", got, v1)
	}
	if h.Len() != 5 {
		t.Errorf("history: got %d ops, want 5", h.Len())
	}
}

// unansweredBroker answers no heartbeat: each waits for its context.
type unansweredBroker struct{ BrokerAPI }

func (unansweredBroker) Heartbeat(ctx context.Context, _ *metapb.HeartbeatRequest) (*metapb.HeartbeatResponse, error) {
	<-ctx.Done()
	return nil, fmt.Errorf("heartbeat: %w: %w", client.ErrUnknownOutcome, ctx.Err())
}

// A call whose own deadline passes is unanswered by the cluster; one the
// harness cancels (the run stopped) is abandoned: the controller checker
// counts only the first as an outage.
func TestBrokerCallsAbandonedByTheHarness(t *testing.T) {
	rec := NewRecorder(NewClock(), &History{}, 20*time.Millisecond)
	s := rec.BrokerSession(&BrokerHistory{}, unansweredBroker{}, "n1")
	timedOut := s.Heartbeat(context.Background(), "b1", 1)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(5*time.Millisecond, cancel)
	cancelled := s.Heartbeat(ctx, "b1", 1)
	for _, c := range []struct {
		name      string
		op        BrokerOp
		abandoned bool
	}{{"past its deadline", timedOut, false}, {"cancelled", cancelled, true}} {
		if c.op.Outcome != OutcomeUnknown || c.op.Abandoned != c.abandoned {
			t.Errorf("%s: got %s abandoned %v, want unknown abandoned %v", c.name, c.op.Outcome, c.op.Abandoned, c.abandoned)
		}
	}
}
