package transport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"google.golang.org/protobuf/proto"

	"github.com/metamq/meta/rpc/metapb"
	"github.com/metamq/meta/rpc/transport/raftpb"
	"github.com/metamq/meta/verify/poll"
)

// fakeHandler behaves according to the group named in the call.
type fakeHandler struct {
	entered chan struct{} // receives once per call to a "block" group, if set

	mu      sync.Mutex
	ctxErrs []error // ctx errors seen by blocking calls
}

var testInfo = &raftpb.ClusterInfo{
	ClusterId:    "c",
	OffsetGroups: 4,
	DataGroups:   8,
	Members:      []*raftpb.Peer{{Id: "n1", Addr: "10.0.0.1:7000"}, {Id: "n2", Addr: "10.0.0.2:7000"}},
}

func (h *fakeHandler) outcome(ctx context.Context, group string) error {
	switch group {
	case "notleader":
		return fmt.Errorf("wrapped: %w", &PeerError{Kind: KindNotLeader, Msg: "not me", LeaderID: "n2", LeaderAddr: "10.0.0.2:7000"})
	case "rejected":
		return &PeerError{Kind: KindRejected, Msg: "bad payload"}
	case "unavailable":
		return &PeerError{Kind: KindUnavailable, Msg: "shutting down"}
	case "plain":
		return errors.New("disk on fire")
	case "block":
		if h.entered != nil {
			h.entered <- struct{}{}
		}
		<-ctx.Done()
		h.mu.Lock()
		h.ctxErrs = append(h.ctxErrs, ctx.Err())
		h.mu.Unlock()
		return ctx.Err()
	}
	return nil
}

func (h *fakeHandler) blockedCalls() []error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]error(nil), h.ctxErrs...)
}

func (h *fakeHandler) Propose(ctx context.Context, group string, payload []byte) ([]byte, error) {
	if err := h.outcome(ctx, group); err != nil {
		return nil, err
	}
	return append([]byte(group+":"), payload...), nil
}

func (h *fakeHandler) ReadIndex(ctx context.Context, group string) (uint64, error) {
	if err := h.outcome(ctx, group); err != nil {
		return 0, err
	}
	return 42, nil
}

func (h *fakeHandler) Applied(ctx context.Context, group string) (uint64, error) {
	if err := h.outcome(ctx, group); err != nil {
		return 0, err
	}
	return 41, nil
}

func (h *fakeHandler) ClusterInfo(ctx context.Context, _ uint32) (*raftpb.ClusterInfo, error) {
	return testInfo, nil
}

// Call echoes the method and payload; method "coded" returns an error of
// meta's vocabulary, other outcomes follow the method like a group name.
func (h *fakeHandler) Call(ctx context.Context, method string, payload []byte) ([]byte, error) {
	switch method {
	case "coded":
		return nil, metapb.NewError(metapb.ReasonStaleEpoch, map[string]string{"epoch": "7"}, "stale epoch")
	case "unknown-call":
		return nil, fmt.Errorf("%w: %w: %q", metapb.Invalid("method", "no handler"), ErrUnknownCall, method)
	}
	if err := h.outcome(ctx, method); err != nil {
		return nil, err
	}
	return append([]byte(method+":"), payload...), nil
}

var peerGroups = []string{"ok", "notleader", "rejected", "unavailable", "plain", "block"}

// checkPeerErr checks that err is a *PeerError of kind want, and that it
// matches cause with errors.Is when cause is set.
func checkPeerErr(t *testing.T, what string, err error, want ErrorKind, cause error) *PeerError {
	t.Helper()
	var pe *PeerError
	if !errors.As(err, &pe) {
		t.Fatalf("%s: got %v (%T), want a *PeerError", what, err, err)
	}
	if pe.Kind != want {
		t.Fatalf("%s: got kind %v (%v), want %v", what, pe.Kind, err, want)
	}
	if cause != nil && !errors.Is(err, cause) {
		t.Fatalf("%s: got %v, want it to match %v", what, err, cause)
	}
	return pe
}

func TestPeerCalls(t *testing.T) {
	a := startNode(t, "c", nil)
	b := startNode(t, "c", nil)
	b.mgr.SetPeerHandler(&fakeHandler{})
	for _, g := range peerGroups {
		b.group(t, g)
	}
	ctx := context.Background()

	t.Run("success", func(t *testing.T) {
		res, err := a.mgr.Propose(ctx, b.addr, "ok", []byte("cmd"))
		if err != nil || string(res) != "ok:cmd" {
			t.Fatalf("Propose: got (%q, %v), want (%q, nil)", res, err, "ok:cmd")
		}
		if idx, err := a.mgr.ReadIndex(ctx, b.addr, "ok"); err != nil || idx != 42 {
			t.Fatalf("ReadIndex: got (%d, %v), want (42, nil)", idx, err)
		}
		if idx, err := a.mgr.Applied(ctx, b.addr, "ok"); err != nil || idx != 41 {
			t.Fatalf("Applied: got (%d, %v), want (41, nil)", idx, err)
		}
		info, err := a.mgr.ClusterInfo(ctx, b.addr, 0)
		if err != nil || !proto.Equal(info, testInfo) {
			t.Fatalf("ClusterInfo: got (%v, %v), want (%v, nil)", info, err, testInfo)
		}
	})

	type call struct {
		name string
		do   func(group string) error
	}
	calls := map[string]call{
		"Propose":   {"Propose", func(g string) error { _, err := a.mgr.Propose(ctx, b.addr, g, []byte("x")); return err }},
		"ReadIndex": {"ReadIndex", func(g string) error { _, err := a.mgr.ReadIndex(ctx, b.addr, g); return err }},
		"Applied":   {"Applied", func(g string) error { _, err := a.mgr.Applied(ctx, b.addr, g); return err }},
	}
	tests := []struct {
		call  string
		group string
		want  ErrorKind
		cause error
	}{
		{"Propose", "notleader", KindNotLeader, nil},
		{"Propose", "rejected", KindRejected, nil},
		{"Propose", "unavailable", KindUnavailable, nil},
		{"Propose", "plain", KindUnknownOutcome, nil},
		{"Propose", "missing", KindUnavailable, ErrUnknownGroup},
		{"ReadIndex", "notleader", KindNotLeader, nil},
		{"ReadIndex", "plain", KindUnavailable, nil},
		{"ReadIndex", "rejected", KindRejected, nil},
		{"ReadIndex", "missing", KindUnavailable, ErrUnknownGroup},
		{"Applied", "plain", KindUnavailable, nil},
		{"Applied", "unavailable", KindUnavailable, nil},
		{"Applied", "missing", KindUnavailable, ErrUnknownGroup},
	}
	for _, tt := range tests {
		t.Run(tt.call+"/"+tt.group, func(t *testing.T) {
			pe := checkPeerErr(t, tt.call, calls[tt.call].do(tt.group), tt.want, tt.cause)
			if tt.group == "notleader" && (pe.LeaderID != "n2" || pe.LeaderAddr != "10.0.0.2:7000" || pe.Msg != "not me") {
				t.Fatalf("hints: got %+v, want leader n2 at 10.0.0.2:7000, msg %q", pe, "not me")
			}
			if tt.group == "plain" && pe.Msg != "disk on fire" {
				t.Fatalf("msg: got %q, want %q", pe.Msg, "disk on fire")
			}
		})
	}
}

func TestPeerHandlerRespectsDeadline(t *testing.T) {
	a := startNode(t, "c", nil)
	b := startNode(t, "c", nil)
	h := &fakeHandler{}
	b.mgr.SetPeerHandler(h)
	b.group(t, "block")

	tests := []struct {
		name string
		do   func(ctx context.Context) error
		want ErrorKind
	}{
		{"Propose", func(ctx context.Context) error {
			_, err := a.mgr.Propose(ctx, b.addr, "block", nil)
			return err
		}, KindUnknownOutcome},
		{"ReadIndex", func(ctx context.Context) error {
			_, err := a.mgr.ReadIndex(ctx, b.addr, "block")
			return err
		}, KindUnavailable},
	}
	for i, tt := range tests {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		err := tt.do(ctx)
		cancel()
		checkPeerErr(t, tt.name, err, tt.want, context.DeadlineExceeded)
		poll.ForTrue(t, "the handler to see its ctx end", 10*time.Second, func() bool { return len(h.blockedCalls()) == i+1 })
		if got := h.blockedCalls()[i]; got == nil {
			t.Fatalf("%s: handler's ctx error: got nil, want an error", tt.name)
		}
	}
}

func TestPeerCallRejectedBeforeHandling(t *testing.T) {
	a := startNode(t, "c", nil)
	other := startNode(t, "other", nil)
	joining := startNode(t, "", nil)
	noHandler := startNode(t, "c", nil)
	a.mgr.SetPeerHandler(&fakeHandler{})
	a.group(t, "ok")
	noHandler.group(t, "ok")
	ctx := context.Background()

	_, err := other.mgr.Propose(ctx, a.addr, "ok", nil)
	checkPeerErr(t, "Propose from another cluster", err, KindUnavailable, ErrClusterMismatch)
	_, err = other.mgr.ClusterInfo(ctx, a.addr, 0)
	checkPeerErr(t, "ClusterInfo from another cluster", err, KindUnavailable, ErrClusterMismatch)
	_, err = a.mgr.Propose(ctx, noHandler.addr, "ok", nil)
	checkPeerErr(t, "Propose without handler", err, KindUnavailable, ErrNoHandler)

	// A joining node learns the cluster from any member.
	info, err := joining.mgr.ClusterInfo(ctx, a.addr, 0)
	if err != nil || !proto.Equal(info, testInfo) {
		t.Fatalf("ClusterInfo from a joining node: got (%v, %v), want (%v, nil)", info, err, testInfo)
	}
	_, err = joining.mgr.Propose(ctx, a.addr, "ok", nil)
	checkPeerErr(t, "Propose before learning the id", err, KindUnavailable, ErrClusterMismatch)
	joining.mgr.SetClusterID(info.GetClusterId())
	if _, err := joining.mgr.Propose(ctx, a.addr, "ok", nil); err != nil {
		t.Fatalf("Propose after SetClusterID: %v", err)
	}
}

func TestProposeToDownPeerIsUnavailable(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	_ = lis.Close() // nothing listens there now

	a := startNode(t, "c", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err = a.mgr.Propose(ctx, addr, "g", []byte("x"))
	pe := checkPeerErr(t, "Propose to a down peer", err, KindUnavailable, nil)
	if errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v: want a failed connection attempt, not the deadline", pe)
	}
}

// TestProposeLostAfterSendIsUnknown: when the connection breaks while the
// peer handles the request, Propose reports an unknown outcome and the
// read-only calls report unavailable.
func TestProposeLostAfterSendIsUnknown(t *testing.T) {
	tests := []struct {
		name string
		do   func(m *Manager, addr string) error
		want ErrorKind
	}{
		{"Propose", func(m *Manager, addr string) error {
			_, err := m.Propose(context.Background(), addr, "block", nil)
			return err
		}, KindUnknownOutcome},
		{"ReadIndex", func(m *Manager, addr string) error {
			_, err := m.ReadIndex(context.Background(), addr, "block")
			return err
		}, KindUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := startNode(t, "c", nil)
			b := startNode(t, "c", nil)
			h := &fakeHandler{entered: make(chan struct{}, 1)}
			b.mgr.SetPeerHandler(h)
			b.group(t, "block")
			done := call(func() error { return tt.do(a.mgr, b.addr) })
			select {
			case <-h.entered:
			case <-time.After(30 * time.Second):
				t.Fatal("the call never reached the handler")
			}
			b.srv.Stop() // connections close under the call
			checkPeerErr(t, tt.name, recvErr(t, done), tt.want, nil)
		})
	}
}

func TestPeerErrorText(t *testing.T) {
	tests := []struct {
		err  *PeerError
		want string
	}{
		{&PeerError{Kind: KindNotLeader, Msg: "no", LeaderID: "n2", LeaderAddr: "h:1"}, "transport: peer call: not leader: no (leader n2 at h:1)"},
		{&PeerError{}, "transport: peer call: unknown outcome"},
		{&PeerError{Kind: KindRejected, Msg: "bad"}, "transport: peer call: rejected: bad"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("got %q, want %q", got, tt.want)
		}
	}
}

// Call carries payloads both ways, a handler's error of meta's vocabulary
// with its reason and metadata, and a handler's plain error as an unknown
// outcome.
func TestPeerCall(t *testing.T) {
	a := startNode(t, "c", nil)
	b := startNode(t, "c", nil)
	b.mgr.SetPeerHandler(&fakeHandler{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := a.mgr.Call(ctx, b.addr, "ok", []byte("hi"))
	if err != nil || string(out) != "ok:hi" {
		t.Fatalf("call ok: got %q, %v; want \"ok:hi\"", out, err)
	}
	_, err = a.mgr.Call(ctx, b.addr, "coded", nil)
	pe := checkPeerErr(t, "call coded", err, KindRejected, nil)
	if pe.Reason() != metapb.ReasonStaleEpoch || pe.Metadata()["epoch"] != "7" || pe.Msg != "stale epoch" {
		t.Fatalf("call coded: got reason %q, metadata %v, msg %q; want STALE_EPOCH, epoch 7, \"stale epoch\"", pe.Reason(), pe.Metadata(), pe.Msg)
	}
	_, err = a.mgr.Call(ctx, b.addr, "plain", nil)
	checkPeerErr(t, "call plain", err, KindUnknownOutcome, nil)
	if errors.Is(err, ErrUnknownCall) {
		t.Fatalf("call plain: %v matches ErrUnknownCall", err)
	}
	// A call the peer does not know: definite, and told by its reason on
	// the wire, not by the text.
	_, err = a.mgr.Call(ctx, b.addr, "unknown-call", nil)
	checkPeerErr(t, "call unknown-call", err, KindRejected, ErrUnknownCall)
	_, err = a.mgr.Call(ctx, b.addr, "notleader", nil)
	pe = checkPeerErr(t, "call notleader", err, KindNotLeader, nil)
	if pe.LeaderID != "n2" {
		t.Fatalf("call notleader: got leader %q, want n2", pe.LeaderID)
	}
}

// A peer of the previous release answered a named call's error with a
// status in the response: its ErrorInfo reason and metadata are kept, and
// a status without one is an unknown outcome.
func TestLegacyCallStatus(t *testing.T) {
	st, err := status.New(codes.Unavailable, "not the controller").WithDetails(&errdetails.ErrorInfo{
		Reason: metapb.ReasonNotLeader, Domain: metapb.ErrorDomain,
		Metadata: map[string]string{metapb.MetaLeaderID: "n3", metapb.MetaLeaderAddr: "a3"}})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := proto.Marshal(st.Proto())
	pe := legacyStatus(b)
	if pe.Reason() != metapb.ReasonNotLeader || pe.Kind != KindNotLeader || pe.LeaderID != "n3" || pe.LeaderAddr != "a3" {
		t.Fatalf("got %+v, want NOT_LEADER with leader n3 at a3", pe)
	}
	b, _ = proto.Marshal(status.New(codes.FailedPrecondition, "bare").Proto())
	if pe := legacyStatus(b); pe.Reason() != metapb.ReasonOutcomeUnknown {
		t.Fatalf("bare status: got reason %q, want OUTCOME_UNKNOWN", pe.Reason())
	}
}
