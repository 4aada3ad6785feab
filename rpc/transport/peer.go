package transport

import (
	"context"
	"errors"
	"fmt"
	"maps"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	spb "google.golang.org/genproto/googleapis/rpc/status"

	"github.com/metamq/meta/rpc/metapb"
	"github.com/metamq/meta/rpc/transport/raftpb"
)

// PeerHandler serves the peer calls other nodes make to this one. Its
// errors cross the wire by these rules: an error of meta's vocabulary
// (metapb.Coded, *PeerError included) keeps its reason and metadata; any
// other error becomes KindUnknownOutcome for Propose and Call (the
// command may have been proposed) and KindUnavailable for the read-only
// calls. Every method must return when
// ctx is done: ctx carries the caller's deadline.
type PeerHandler interface {
	// Propose asks this node (the group's leader) to replicate an opaque
	// command and returns its opaque result.
	Propose(ctx context.Context, group string, payload []byte) ([]byte, error)
	// ReadIndex returns a commit index that is safe for a linearizable read
	// (the leader has confirmed its leadership after the call arrived).
	ReadIndex(ctx context.Context, group string) (uint64, error)
	// Applied returns the group's applied index on this node.
	Applied(ctx context.Context, group string) (uint64, error)
	// ClusterInfo returns the cluster identity and members (for joining
	// nodes).
	// ClusterInfo answers a joining node, whose feature level (0 from a
	// release before levels) it may refuse.
	ClusterInfo(ctx context.Context, featureLevel uint32) (*raftpb.ClusterInfo, error)
	// Call serves a named request. Its error crosses to the caller by the
	// rules above (an error without a reason: KindUnknownOutcome).
	Call(ctx context.Context, method string, payload []byte) ([]byte, error)
}

// ErrorKind says what a failed peer call means for the caller. The zero
// value is KindUnknownOutcome, so an error whose kind was never set never
// claims that a write failed.
type ErrorKind int

const (
	// KindUnknownOutcome: the request may or may not have been applied.
	KindUnknownOutcome ErrorKind = iota
	// KindNotLeader: the node is not the group's leader; nothing was
	// applied. LeaderID/LeaderAddr hint at the leader when known.
	KindNotLeader
	// KindUnavailable: nothing was applied; the request may be retried.
	KindUnavailable
	// KindRejected: the request is invalid; retrying will not help.
	KindRejected
)

func (k ErrorKind) String() string {
	switch k {
	case KindUnknownOutcome:
		return "unknown outcome"
	case KindNotLeader:
		return "not leader"
	case KindUnavailable:
		return "unavailable"
	case KindRejected:
		return "rejected"
	default:
		return fmt.Sprintf("ErrorKind(%d)", int(k))
	}
}

// PeerError is the error of a peer call, on both sides of the wire. It
// is an error of meta's vocabulary (metapb.Coded): its reason says whether
// the call was applied, and a node returns it up its stack unchanged.
type PeerError struct {
	Kind ErrorKind
	Msg  string
	// Outcome is the reason (metapb.Reason*) and Meta its metadata, as the
	// handler's error said them; empty for failures of the call itself
	// and from peers of the previous release, and then derived from Kind.
	Outcome    string
	Meta       map[string]string
	LeaderID   string
	LeaderAddr string
	// Err is the cause on the calling side, when there is one worth
	// matching with errors.Is: ErrClusterMismatch, ErrUnknownGroup,
	// ErrNoHandler, ErrClosed, context.DeadlineExceeded,
	// context.Canceled, or the gRPC error of a failed call. It does not
	// cross the wire.
	Err error
}

var _ metapb.Coded = (*PeerError)(nil)

func (e *PeerError) Error() string {
	s := "transport: peer call: " + e.Kind.String()
	if e.Msg != "" {
		s += ": " + e.Msg
	}
	if e.LeaderID != "" || e.LeaderAddr != "" {
		s += fmt.Sprintf(" (leader %s at %s)", e.LeaderID, e.LeaderAddr)
	}
	return s
}

func (e *PeerError) Unwrap() error { return e.Err }

// Message is the peer's own answer when the error is one (it says its
// reason: the handler refused the call), "" otherwise (metapb.Relayed).
func (e *PeerError) Message() string {
	if e.Outcome == "" {
		return ""
	}
	return e.Msg
}

var _ metapb.Relayed = (*PeerError)(nil)

// Reason is the error's reason in meta's vocabulary.
func (e *PeerError) Reason() string {
	if e.Outcome != "" {
		return e.Outcome
	}
	switch e.Kind {
	case KindNotLeader:
		if e.LeaderID == "" {
			return metapb.ReasonNoLeader
		}
		return metapb.ReasonNotLeader
	case KindUnavailable:
		return metapb.ReasonNoLeader
	case KindRejected:
		return metapb.ReasonInvalidArgument
	}
	return metapb.ReasonOutcomeUnknown
}

// Metadata is the reason's metadata, leader hints included.
func (e *PeerError) Metadata() map[string]string {
	md := maps.Clone(e.Meta)
	if e.LeaderID != "" || e.LeaderAddr != "" {
		if md == nil {
			md = map[string]string{}
		}
		md[metapb.MetaLeaderID] = e.LeaderID
		md[metapb.MetaLeaderAddr] = e.LeaderAddr
	}
	return md
}

// kindOf is the wire kind of a reason, for peers of the previous release.
func kindOf(reason string) ErrorKind {
	switch metapb.ClassOf(reason) {
	case metapb.ClassRetry:
		if reason == metapb.ReasonNotLeader {
			return KindNotLeader
		}
		return KindUnavailable
	case metapb.ClassFinal:
		return KindRejected
	}
	return KindUnknownOutcome
}

// toPeerError is the one conversion of a handler's error to what crosses
// the wire: a Coded error keeps its reason and metadata; any other error
// gets the reason of other.
func toPeerError(err error, other ErrorKind) *PeerError {
	var c metapb.Coded
	if !errors.As(err, &c) {
		pe := &PeerError{Kind: other, Msg: err.Error()}
		pe.Outcome = pe.Reason()
		return pe
	}
	reason, md := c.Reason(), c.Metadata()
	msg := err.Error()
	if pe, ok := c.(*PeerError); ok {
		msg = pe.Msg // forwarded as it came
	}
	return &PeerError{Kind: kindOf(reason), Msg: msg, Outcome: reason, Meta: md,
		LeaderID: md[metapb.MetaLeaderID], LeaderAddr: md[metapb.MetaLeaderAddr]}
}

var kindToProto = map[ErrorKind]raftpb.ErrorKind{
	KindUnknownOutcome: raftpb.ErrorKind_ERROR_KIND_UNKNOWN_OUTCOME,
	KindNotLeader:      raftpb.ErrorKind_ERROR_KIND_NOT_LEADER,
	KindUnavailable:    raftpb.ErrorKind_ERROR_KIND_UNAVAILABLE,
	KindRejected:       raftpb.ErrorKind_ERROR_KIND_REJECTED,
}

// kindFromProto inverts kindToProto.
func kindFromProto(k raftpb.ErrorKind) ErrorKind {
	for kind, pk := range kindToProto {
		if pk == k {
			return kind
		}
	}
	// Unspecified or from a newer peer: assume the worst.
	return KindUnknownOutcome
}

// kindCode is the gRPC code a handler error travels with. Callers decide by
// the PeerError detail, not the code; the code is for logs and tools.
func kindCode(k ErrorKind) codes.Code {
	switch k {
	case KindNotLeader:
		return codes.FailedPrecondition
	case KindUnavailable:
		return codes.Unavailable
	case KindRejected:
		return codes.InvalidArgument
	default:
		return codes.Unknown
	}
}

func reasonCause(r raftpb.Reason) error {
	switch r {
	case raftpb.Reason_REASON_CLUSTER_MISMATCH:
		return ErrClusterMismatch
	case raftpb.Reason_REASON_UNKNOWN_GROUP:
		return ErrUnknownGroup
	case raftpb.Reason_REASON_NO_HANDLER:
		return ErrNoHandler
	case raftpb.Reason_REASON_CLOSED:
		return ErrClosed
	case raftpb.Reason_REASON_UNKNOWN_CALL:
		return ErrUnknownCall
	default:
		return nil
	}
}

// statusWithDetail returns a status error carrying pe as its one detail.
func statusWithDetail(code codes.Code, pe *raftpb.PeerError) error {
	st := status.New(code, pe.GetMsg())
	if d, err := st.WithDetails(pe); err == nil {
		st = d
	}
	return st.Err()
}

// rejection is the transport's own refusal of a request before any raft
// group or handler saw it: definitely not applied.
func rejection(code codes.Code, reason raftpb.Reason, msg string) error {
	return statusWithDetail(code, &raftpb.PeerError{
		Kind:   raftpb.ErrorKind_ERROR_KIND_UNAVAILABLE,
		Msg:    msg,
		Reason: reason,
	})
}

func errGroupClosing(group string) error {
	return rejection(codes.Unavailable, raftpb.Reason_REASON_CLOSED,
		fmt.Sprintf("transport: group %q is closing", group))
}

// handlerStatus turns a PeerHandler error into the status that crosses the
// wire; other is the kind of an error that carries no reason.
func handlerStatus(err error, other ErrorKind) error {
	perr := toPeerError(err, other)
	pe := &raftpb.PeerError{
		Kind:       kindToProto[perr.Kind],
		Msg:        perr.Msg,
		LeaderId:   perr.LeaderID,
		LeaderAddr: perr.LeaderAddr,
		Outcome:    perr.Outcome,
		Metadata:   perr.Meta,
	}
	if errors.Is(err, ErrUnknownCall) {
		pe.Reason = raftpb.Reason_REASON_UNKNOWN_CALL
	}
	code := kindCode(perr.Kind)
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	}
	return statusWithDetail(code, pe)
}

// callError turns the error of an outgoing peer call into a *PeerError. A
// status carrying a PeerError detail was produced by the peer and keeps its
// kind; anything else is a failure of the call itself, reported as
// transportKind.
func callError(addr string, err error, transportKind ErrorKind) *PeerError {
	st, _ := status.FromError(err)
	cause := err
	switch st.Code() {
	case codes.DeadlineExceeded:
		cause = fmt.Errorf("%w: %w", context.DeadlineExceeded, err)
	case codes.Canceled:
		cause = fmt.Errorf("%w: %w", context.Canceled, err)
	}
	for _, d := range st.Details() {
		if pe, ok := d.(*raftpb.PeerError); ok {
			if c := reasonCause(pe.GetReason()); c != nil {
				cause = fmt.Errorf("%w: %w", c, err)
			}
			return &PeerError{
				Kind:       kindFromProto(pe.GetKind()),
				Msg:        pe.GetMsg(),
				Outcome:    pe.GetOutcome(),
				Meta:       pe.GetMetadata(),
				LeaderID:   pe.GetLeaderId(),
				LeaderAddr: pe.GetLeaderAddr(),
				Err:        cause,
			}
		}
	}
	return &PeerError{
		Kind: transportKind,
		Msg:  fmt.Sprintf("call to %s failed: %s", addr, st.Message()),
		Err:  cause,
	}
}

// errUnreachable: the connection is in TRANSIENT_FAILURE, i.e. its latest
// attempt to connect failed.
var errUnreachable = errors.New("transport: peer unreachable")

// waitReady waits until cc is READY, so that a caller knows nothing was
// sent when it gives up. It gives up when ctx is done or when the
// connection is in TRANSIENT_FAILURE: gRPC keeps that state while it
// retries in the background (at most backoffMax apart), so this is the
// same fail-fast a plain call would see, without the doubt about whether
// the request went out.
func waitReady(ctx context.Context, cc *grpc.ClientConn) error {
	for {
		s := cc.GetState()
		switch s {
		case connectivity.Ready:
			return nil
		case connectivity.Shutdown:
			return ErrClosed
		case connectivity.TransientFailure:
			return errUnreachable
		case connectivity.Idle:
			cc.Connect()
		}
		if !cc.WaitForStateChange(ctx, s) {
			return ctx.Err()
		}
	}
}

// Propose asks the node at addr, the group's leader, to replicate payload.
// A failure is a *PeerError. Its kind is KindUnknownOutcome whenever the
// request may have reached the peer; KindUnavailable only when it certainly
// did not (the connection was not READY and its connection attempt failed
// or ctx ended first, or the peer rejected the request before handling
// it), or when the handler said so.
func (m *Manager) Propose(ctx context.Context, addr, group string, payload []byte) ([]byte, error) {
	out, err := callPeer(ctx, m, addr, true, KindUnknownOutcome, func(p raftpb.PeerServiceClient) (*raftpb.ProposeResponse, error) {
		return p.Propose(ctx, &raftpb.ProposeRequest{ClusterId: m.ClusterID(), Group: group, Payload: payload})
	})
	if err != nil {
		return nil, err
	}
	return out.GetResult(), nil
}

// callPeer makes one peer call to the node at addr. Every failure is a
// *PeerError: no connection is KindUnavailable; with ready it first waits
// for the connection to be READY, and a failure to get there is
// KindUnavailable too (nothing was sent); a failed call is what the peer
// said, else of kind callKind (callError).
func callPeer[R any](ctx context.Context, m *Manager, addr string, ready bool, callKind ErrorKind, call func(raftpb.PeerServiceClient) (R, error)) (R, error) {
	var zero R
	pc, err := m.conn(addr)
	if err != nil {
		return zero, &PeerError{Kind: KindUnavailable, Msg: err.Error(), Err: err}
	}
	if ready {
		if err := waitReady(ctx, pc.cc); err != nil {
			return zero, &PeerError{Kind: KindUnavailable, Msg: fmt.Sprintf("no connection to %s: %v", addr, err), Err: err}
		}
	}
	out, err := call(pc.peer)
	if err != nil {
		return zero, callError(addr, err, callKind)
	}
	return out, nil
}

// ReadIndex asks the node at addr, the group's leader, for a read index.
// A failure is a *PeerError; call failures are KindUnavailable.
func (m *Manager) ReadIndex(ctx context.Context, addr, group string) (uint64, error) {
	out, err := callPeer(ctx, m, addr, false, KindUnavailable, func(p raftpb.PeerServiceClient) (*raftpb.IndexResponse, error) {
		return p.ReadIndex(ctx, &raftpb.ReadIndexRequest{ClusterId: m.ClusterID(), Group: group})
	})
	return out.GetIndex(), err
}

// Applied returns the group's applied index on the node at addr.
// A failure is a *PeerError; call failures are KindUnavailable.
func (m *Manager) Applied(ctx context.Context, addr, group string) (uint64, error) {
	out, err := callPeer(ctx, m, addr, false, KindUnavailable, func(p raftpb.PeerServiceClient) (*raftpb.IndexResponse, error) {
		return p.Applied(ctx, &raftpb.AppliedRequest{ClusterId: m.ClusterID(), Group: group})
	})
	return out.GetIndex(), err
}

// ClusterInfo asks the node at addr for the cluster's identity and members.
// It works before this manager knows its cluster id (a joining node sends
// an empty id); once the id is known, a node of another cluster rejects it.
// A failure is a *PeerError; call failures are KindUnavailable.
func (m *Manager) ClusterInfo(ctx context.Context, addr string, featureLevel uint32) (*raftpb.ClusterInfo, error) {
	return callPeer(ctx, m, addr, false, KindUnavailable, func(p raftpb.PeerServiceClient) (*raftpb.ClusterInfo, error) {
		return p.GetClusterInfo(ctx, &raftpb.ClusterInfoRequest{ClusterId: m.ClusterID(), FeatureLevel: featureLevel})
	})
}

// Call sends a named request to the node at addr. Every failure is a
// *PeerError: the handler's own error with its reason, or a failure to
// deliver or answer (KindUnavailable when nothing was sent,
// KindUnknownOutcome otherwise).
func (m *Manager) Call(ctx context.Context, addr, method string, payload []byte) ([]byte, error) {
	out, err := callPeer(ctx, m, addr, true, KindUnknownOutcome, func(p raftpb.PeerServiceClient) (*raftpb.CallResponse, error) {
		return p.Call(ctx, &raftpb.CallRequest{ClusterId: m.ClusterID(), Method: method, Payload: payload})
	})
	if err != nil {
		return nil, err
	}
	if len(out.GetStatus()) > 0 {
		return nil, legacyStatus(out.GetStatus())
	}
	return out.GetPayload(), nil
}

// peerServer serves PeerService by handing calls to the PeerHandler.
type peerServer struct {
	raftpb.UnimplementedPeerServiceServer
	m *Manager
}

// handlerFor checks the cluster id and the group (when one is named) and
// returns the handler, or a rejection made before any handling.
func (s peerServer) handlerFor(method, cluster, group string, needGroup bool) (PeerHandler, error) {
	if needGroup {
		if _, err := s.m.route(method, cluster, group); err != nil {
			return nil, err
		}
	} else if err := s.m.checkCluster(method, cluster, true); err != nil {
		return nil, err
	}
	h := s.m.peerHandler()
	if h == nil {
		return nil, rejection(codes.Unavailable, raftpb.Reason_REASON_NO_HANDLER,
			fmt.Sprintf("transport: %s has no peer handler yet", s.m.cfg.LocalAddr))
	}
	return h, nil
}

// handle serves one peer call: the handler (handlerFor), then call on
// it; a failure of call becomes a status (handlerStatus) of kind other
// unless the error names its own.
func handle[R any](s peerServer, method, cluster, group string, needGroup bool, other ErrorKind, call func(PeerHandler) (R, error)) (R, error) {
	var zero R
	h, err := s.handlerFor(method, cluster, group, needGroup)
	if err != nil {
		return zero, err
	}
	out, err := call(h)
	if err != nil {
		return zero, handlerStatus(err, other)
	}
	return out, nil
}

func (s peerServer) Propose(ctx context.Context, req *raftpb.ProposeRequest) (*raftpb.ProposeResponse, error) {
	return handle(s, "Propose", req.GetClusterId(), req.GetGroup(), true, KindUnknownOutcome, func(h PeerHandler) (*raftpb.ProposeResponse, error) {
		res, err := h.Propose(ctx, req.GetGroup(), req.GetPayload())
		return &raftpb.ProposeResponse{Result: res}, err
	})
}

// groupRequest is a peer request about one group.
type groupRequest interface {
	GetClusterId() string
	GetGroup() string
}

// serveIndex serves ReadIndex and Applied: the index get returns for the
// request's group.
func (s peerServer) serveIndex(ctx context.Context, method string, req groupRequest, get func(PeerHandler, context.Context, string) (uint64, error)) (*raftpb.IndexResponse, error) {
	return handle(s, method, req.GetClusterId(), req.GetGroup(), true, KindUnavailable, func(h PeerHandler) (*raftpb.IndexResponse, error) {
		idx, err := get(h, ctx, req.GetGroup())
		return &raftpb.IndexResponse{Index: idx}, err
	})
}

func (s peerServer) ReadIndex(ctx context.Context, req *raftpb.ReadIndexRequest) (*raftpb.IndexResponse, error) {
	return s.serveIndex(ctx, "ReadIndex", req, PeerHandler.ReadIndex)
}

func (s peerServer) Applied(ctx context.Context, req *raftpb.AppliedRequest) (*raftpb.IndexResponse, error) {
	return s.serveIndex(ctx, "Applied", req, PeerHandler.Applied)
}

func (s peerServer) GetClusterInfo(ctx context.Context, req *raftpb.ClusterInfoRequest) (*raftpb.ClusterInfo, error) {
	return handle(s, "ClusterInfo", req.GetClusterId(), "", false, KindUnavailable, func(h PeerHandler) (*raftpb.ClusterInfo, error) {
		info, err := h.ClusterInfo(ctx, req.GetFeatureLevel())
		if err == nil && info == nil {
			err = errors.New("transport: handler returned no cluster info")
		}
		return info, err
	})
}

func (s peerServer) Call(ctx context.Context, req *raftpb.CallRequest) (*raftpb.CallResponse, error) {
	return handle(s, "Call", req.GetClusterId(), "", false, KindUnknownOutcome, func(h PeerHandler) (*raftpb.CallResponse, error) {
		out, err := h.Call(ctx, req.GetMethod(), req.GetPayload())
		return &raftpb.CallResponse{Payload: out}, err
	})
}

// legacyStatus decodes the status a peer of the previous release returned
// for a named call's error: its ErrorInfo reason, if it has one, is kept;
// anything else is an unknown outcome.
func legacyStatus(b []byte) *PeerError {
	sp := &spb.Status{}
	if err := proto.Unmarshal(b, sp); err != nil {
		return &PeerError{Kind: KindUnknownOutcome, Msg: "undecodable status: " + err.Error(), Err: err}
	}
	st := status.FromProto(sp)
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.Domain == metapb.ErrorDomain {
			return &PeerError{Kind: kindOf(info.Reason), Msg: st.Message(), Outcome: info.Reason, Meta: info.Metadata,
				LeaderID: info.Metadata[metapb.MetaLeaderID], LeaderAddr: info.Metadata[metapb.MetaLeaderAddr], Err: st.Err()}
		}
	}
	return &PeerError{Kind: KindUnknownOutcome, Msg: st.Message(), Err: st.Err()}
}
