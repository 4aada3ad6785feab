package verify

import (
	"context"
	"errors"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/metamq/meta/rpc/client"
	"github.com/metamq/meta/rpc/metapb"
)

// SessionsAPI is the part of the public client the sessions workload
// drives.
type SessionsAPI interface {
	PutSessions(ctx context.Context, req *metapb.PutSessionsRequest) (*metapb.PutSessionsResponse, error)
	DeleteSessions(ctx context.Context, req *metapb.DeleteSessionsRequest) (*metapb.DeleteSessionsResponse, error)
	GetSession(ctx context.Context, req *metapb.GetSessionRequest) (*metapb.GetSessionResponse, error)
	ListSessions(ctx context.Context, req *metapb.ListSessionsRequest) (*metapb.ListSessionsResponse, error)
}

// ResourcesAPI is the part of the public client the controller workload
// uses to manage connector resources (and the watch fence).
type ResourcesAPI interface {
	CreateResource(ctx context.Context, req *metapb.CreateResourceRequest) (*metapb.CreateResourceResponse, error)
	UpdateResource(ctx context.Context, req *metapb.UpdateResourceRequest) (*metapb.UpdateResourceResponse, error)
	DeleteResource(ctx context.Context, req *metapb.DeleteResourceRequest) (*metapb.DeleteResourceResponse, error)
	GetResource(ctx context.Context, req *metapb.GetResourceRequest) (*metapb.GetResourceResponse, error)
}

// ControllerAPI is the part of the public client simulated brokers use.
type ControllerAPI interface {
	RegisterBroker(ctx context.Context, req *metapb.RegisterBrokerRequest) (*metapb.RegisterBrokerResponse, error)
	Heartbeat(ctx context.Context, req *metapb.HeartbeatRequest) (*metapb.HeartbeatResponse, error)
	ReportConnector(ctx context.Context, req *metapb.ReportConnectorRequest) (*metapb.ReportConnectorResponse, error)
	ListBrokers(ctx context.Context, req *metapb.ListBrokersRequest) (*metapb.ListBrokersResponse, error)
	ListAssignments(ctx context.Context, req *metapb.ListAssignmentsRequest) (*metapb.ListAssignmentsResponse, error)
}

// WatchAPI is the client's resuming watch (client.Client.Watch).
type WatchAPI interface {
	Watch(ctx context.Context, req *metapb.WatchRequest, fn func(*metapb.WatchResponse) error) error
}

// BrokerAPI is everything the broker workloads need. Run finds it on the
// connections its Dialer returns by type assertion; *client.Client has it.
type BrokerAPI interface {
	SessionsAPI
	ResourcesAPI
	ControllerAPI
	WatchAPI
}

var _ BrokerAPI = (*client.Client)(nil)

// ErrNoBrokerAPI: the broker workloads were asked for, but the Dialer's
// connections do not implement BrokerAPI.
var ErrNoBrokerAPI = errors.New("verify: connection does not implement the broker API")

// BrokerSession is one logical client of the broker-facing API: one call
// at a time, every call recorded in a BrokerHistory on the recorder's
// clock, with the recorder's client and process numbering (so process
// ids are unique across history.jsonl and broker.jsonl). Not safe for
// concurrent use.
type BrokerSession struct {
	sessionBase
	h *BrokerHistory
	t BrokerAPI
}

// BrokerSession starts a logical client of the broker-facing API that
// sends everything to t and records into h. endpoint is only recorded.
func (r *Recorder) BrokerSession(h *BrokerHistory, t BrokerAPI, endpoint string) *BrokerSession {
	return &BrokerSession{sessionBase: r.sessionBase(endpoint), h: h, t: t}
}

// SetFinal marks the following calls as final (after the workload).
func (s *BrokerSession) SetFinal(final bool) { s.final = final }

// ClassifyBroker maps a broker-facing call's error to an outcome, by the
// rules of Classify.
func ClassifyBroker(kind BrokerOpKind, err error) Outcome { return classify(kind.IsWrite(), err) }

// errorReason returns the gRPC code name and the meta ErrorInfo reason of
// err ("" when absent).
func errorReason(err error) (code, reason string) {
	st, ok := status.FromError(err)
	if !ok {
		return "", ""
	}
	if st.Code() != codes.OK {
		code = st.Code().String()
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.Domain == metapb.ErrorDomain {
			reason = info.Reason
		}
	}
	return code, reason
}

func (s *BrokerSession) record(ctx context.Context, kind BrokerOpKind, in BrokerInput, call func(ctx context.Context) (*BrokerOutput, error)) BrokerOp {
	op := BrokerOp{Client: s.client, Process: s.process, Kind: kind, Input: in, Endpoint: s.endpoint, Final: s.final}
	var out *BrokerOutput
	var err error
	op.Call, op.Return, out, err = timedCall(ctx, s.r, call)
	op.Outcome = ClassifyBroker(kind, err)
	if err != nil {
		op.Abandoned = ctx.Err() != nil
		op.Err = err.Error()
		op.Code, op.Reason = errorReason(err)
	} else {
		op.Output = out
	}
	op = s.h.Append(op)
	s.recorded(op.Outcome)
	return op
}

// Silence records that a simulated broker sent nothing in [call, ret]
// (run-clock times).
func (s *BrokerSession) Silence(broker string, epoch uint64, call, ret int64) BrokerOp {
	return s.h.Append(BrokerOp{Client: s.client, Process: s.process, Kind: OpSilence, Call: call, Return: ret,
		Input: BrokerInput{BrokerID: broker, Epoch: epoch}, Output: &BrokerOutput{}, Outcome: OutcomeOK,
		Endpoint: s.endpoint, Final: s.final})
}

func fromSession(se *metapb.Session) *SessionValue {
	if se == nil {
		return nil
	}
	return &SessionValue{ClientID: se.ClientId, BrokerID: se.BrokerId, Connected: se.Connected,
		Expiry: se.ExpiryIntervalSeconds, State: string(se.State), CreateRevision: se.CreateRevision,
		ModRevision: se.ModRevision, Version: se.Version}
}

// PutSessions creates or replaces sessions in one batch.
func (s *BrokerSession) PutSessions(ctx context.Context, sessions []SessionValue) BrokerOp {
	in := BrokerInput{Sessions: sessions}
	return s.record(ctx, OpSessionPut, in, func(ctx context.Context) (*BrokerOutput, error) {
		req := &metapb.PutSessionsRequest{}
		for _, se := range sessions {
			req.Sessions = append(req.Sessions, &metapb.Session{ClientId: se.ClientID, BrokerId: se.BrokerID,
				Connected: se.Connected, ExpiryIntervalSeconds: se.Expiry, State: []byte(se.State)})
		}
		resp, err := s.t.PutSessions(ctx, req)
		if err != nil {
			return nil, err
		}
		return &BrokerOutput{Revisions: resp.Revisions, Groups: resp.Groups}, nil
	})
}

// DeleteSessions deletes sessions in one batch.
func (s *BrokerSession) DeleteSessions(ctx context.Context, ids []string) BrokerOp {
	in := BrokerInput{ClientIDs: ids}
	return s.record(ctx, OpSessionDelete, in, func(ctx context.Context) (*BrokerOutput, error) {
		resp, err := s.t.DeleteSessions(ctx, &metapb.DeleteSessionsRequest{ClientIds: ids})
		if err != nil {
			return nil, err
		}
		return &BrokerOutput{Deleted: resp.Deleted}, nil
	})
}

// GetSession reads a session linearizably.
func (s *BrokerSession) GetSession(ctx context.Context, id string) BrokerOp {
	in := BrokerInput{ClientID: id}
	return s.record(ctx, OpSessionGet, in, func(ctx context.Context) (*BrokerOutput, error) {
		resp, err := s.t.GetSession(ctx, &metapb.GetSessionRequest{ClientId: id})
		if err != nil {
			return nil, err
		}
		return &BrokerOutput{Session: fromSession(resp.Session)}, nil
	})
}

// ListSessions reads one page of sessions linearizably.
func (s *BrokerSession) ListSessions(ctx context.Context, startAfter string, limit uint32) BrokerOp {
	in := BrokerInput{StartAfter: startAfter, Limit: limit}
	return s.record(ctx, OpSessionList, in, func(ctx context.Context) (*BrokerOutput, error) {
		resp, err := s.t.ListSessions(ctx, &metapb.ListSessionsRequest{StartAfter: startAfter, Limit: limit})
		if err != nil {
			return nil, err
		}
		out := &BrokerOutput{More: resp.More, NextStartAfter: resp.NextStartAfter}
		for _, se := range resp.Sessions {
			out.Sessions = append(out.Sessions, *fromSession(se))
		}
		return out, nil
	})
}

// Resource kinds by their short names in records.
var resourceKinds = map[string]metapb.ResourceKind{
	"broker": metapb.ResourceKind_RESOURCE_KIND_BROKER, "topic": metapb.ResourceKind_RESOURCE_KIND_TOPIC,
	"connector": metapb.ResourceKind_RESOURCE_KIND_CONNECTOR, "user": metapb.ResourceKind_RESOURCE_KIND_USER,
	"acl": metapb.ResourceKind_RESOURCE_KIND_ACL, "schema": metapb.ResourceKind_RESOURCE_KIND_SCHEMA,
}

func kindName(k metapb.ResourceKind) string {
	for name, v := range resourceKinds {
		if v == k {
			return name
		}
	}
	return k.String()
}

// markerKey is the config entry that carries a resource write's unique
// marker.
const markerKey = "v"

// toPBResource builds a resource for a create or update: connectors get a
// ConnectorSpec with the desired state, topics a TopicSpec; both carry
// the marker in their config.
func toPBResource(r ResourceValue) *metapb.Resource {
	out := &metapb.Resource{Kind: resourceKinds[r.Kind], Name: r.Name}
	cfg := map[string]string{markerKey: r.Marker}
	switch out.Kind {
	case metapb.ResourceKind_RESOURCE_KIND_CONNECTOR:
		desired := metapb.ConnectorState(metapb.ConnectorState_value["CONNECTOR_STATE_"+r.Desired])
		out.Spec = &metapb.Resource_Connector{Connector: &metapb.ConnectorSpec{Type: "verify", Config: cfg, DesiredState: desired}}
	default:
		out.Spec = &metapb.Resource_Topic{Topic: &metapb.TopicSpec{Partitions: 1, ReplicationFactor: 1, Config: cfg}}
	}
	return out
}

func fromResource(r *metapb.Resource) *ResourceValue {
	if r == nil {
		return nil
	}
	out := &ResourceValue{Kind: kindName(r.Kind), Name: r.Name, CreateRevision: r.CreateRevision,
		ModRevision: r.ModRevision, Version: r.Version}
	switch sp := r.Spec.(type) {
	case *metapb.Resource_Connector:
		out.Marker = sp.Connector.GetConfig()[markerKey]
		out.Desired = trimEnum(sp.Connector.GetDesiredState().String(), "CONNECTOR_STATE_")
	case *metapb.Resource_Topic:
		out.Marker = sp.Topic.GetConfig()[markerKey]
	}
	return out
}

func trimEnum(s, prefix string) string {
	if len(s) > len(prefix) && s[:len(prefix)] == prefix {
		return s[len(prefix):]
	}
	return s
}

// CreateResource creates a resource.
func (s *BrokerSession) CreateResource(ctx context.Context, r ResourceValue) BrokerOp {
	in := BrokerInput{Resource: &r}
	return s.record(ctx, OpResourceCreate, in, func(ctx context.Context) (*BrokerOutput, error) {
		resp, err := s.t.CreateResource(ctx, &metapb.CreateResourceRequest{Resource: toPBResource(r)})
		if err != nil {
			return nil, err
		}
		return &BrokerOutput{Resource: fromResource(resp.Resource)}, nil
	})
}

// UpdateResource replaces a resource if its mod_revision is expected.
func (s *BrokerSession) UpdateResource(ctx context.Context, r ResourceValue, expected uint64) BrokerOp {
	in := BrokerInput{Resource: &r, ExpectedRevision: expected}
	return s.record(ctx, OpResourceUpdate, in, func(ctx context.Context) (*BrokerOutput, error) {
		resp, err := s.t.UpdateResource(ctx, &metapb.UpdateResourceRequest{Resource: toPBResource(r), ExpectedRevision: expected})
		if err != nil {
			return nil, err
		}
		return &BrokerOutput{Resource: fromResource(resp.Resource)}, nil
	})
}

// DeleteResource deletes a resource.
func (s *BrokerSession) DeleteResource(ctx context.Context, kind, name string) BrokerOp {
	in := BrokerInput{Resource: &ResourceValue{Kind: kind, Name: name}}
	return s.record(ctx, OpResourceDelete, in, func(ctx context.Context) (*BrokerOutput, error) {
		resp, err := s.t.DeleteResource(ctx, &metapb.DeleteResourceRequest{Kind: resourceKinds[kind], Name: name})
		if err != nil {
			return nil, err
		}
		return &BrokerOutput{Resource: fromResource(resp.Prev), Revision: resp.Revision}, nil
	})
}

// GetResource reads a resource linearizably; not found is an answer (ok,
// Resource nil), not a failure.
func (s *BrokerSession) GetResource(ctx context.Context, kind, name string) BrokerOp {
	in := BrokerInput{Resource: &ResourceValue{Kind: kind, Name: name}}
	return s.record(ctx, OpResourceGet, in, func(ctx context.Context) (*BrokerOutput, error) {
		resp, err := s.t.GetResource(ctx, &metapb.GetResourceRequest{Kind: resourceKinds[kind], Name: name})
		if client.IsNotFound(err) {
			return &BrokerOutput{}, nil
		}
		if err != nil {
			return nil, err
		}
		return &BrokerOutput{Resource: fromResource(resp.Resource), Revision: resp.Revision}, nil
	})
}

// RegisterBroker registers a simulated broker.
func (s *BrokerSession) RegisterBroker(ctx context.Context, broker string) BrokerOp {
	in := BrokerInput{BrokerID: broker}
	return s.record(ctx, OpRegister, in, func(ctx context.Context) (*BrokerOutput, error) {
		resp, err := s.t.RegisterBroker(ctx, &metapb.RegisterBrokerRequest{BrokerId: broker, Endpoints: []string{broker + ":1883"}})
		if err != nil {
			return nil, err
		}
		return &BrokerOutput{Epoch: resp.BrokerEpoch, HeartbeatMs: resp.HeartbeatIntervalMs, TimeoutMs: resp.SessionTimeoutMs}, nil
	})
}

// Heartbeat sends one heartbeat.
func (s *BrokerSession) Heartbeat(ctx context.Context, broker string, epoch uint64) BrokerOp {
	in := BrokerInput{BrokerID: broker, Epoch: epoch}
	return s.record(ctx, OpHeartbeat, in, func(ctx context.Context) (*BrokerOutput, error) {
		resp, err := s.t.Heartbeat(ctx, &metapb.HeartbeatRequest{BrokerId: broker, BrokerEpoch: epoch})
		if err != nil {
			return nil, err
		}
		return &BrokerOutput{Status: trimEnum(resp.Status.String(), "BROKER_STATUS_")}, nil
	})
}

// Report reports a connector's run state under an assignment epoch.
// stale marks a report the broker knows names an old epoch.
func (s *BrokerSession) Report(ctx context.Context, broker, connector string, epoch uint64, state string, stale bool) BrokerOp {
	in := BrokerInput{BrokerID: broker, Connector: connector, Epoch: epoch, State: state, Stale: stale}
	return s.record(ctx, OpReport, in, func(ctx context.Context) (*BrokerOutput, error) {
		st := metapb.ConnectorRunState(metapb.ConnectorRunState_value["CONNECTOR_RUN_STATE_"+state])
		resp, err := s.t.ReportConnector(ctx, &metapb.ReportConnectorRequest{Connector: connector, BrokerId: broker, Epoch: epoch, State: st})
		if err != nil {
			return nil, err
		}
		return &BrokerOutput{Assignment: fromAssignment(resp.Assignment)}, nil
	})
}

func fromAssignment(a *metapb.Assignment) *AssignmentValue {
	if a == nil {
		return nil
	}
	return &AssignmentValue{Connector: a.Connector, Broker: a.BrokerId, BrokerEpoch: a.BrokerEpoch, Epoch: a.Epoch,
		State: trimEnum(a.State.String(), "CONNECTOR_RUN_STATE_"), ModRevision: a.ModRevision}
}

func fromBroker(b *metapb.BrokerState) BrokerValue {
	return BrokerValue{ID: b.BrokerId, Epoch: b.Epoch, Status: trimEnum(b.Status.String(), "BROKER_STATUS_"),
		Connectors: b.Connectors, ModRevision: b.ModRevision}
}

// ListBrokers reads every broker linearizably.
func (s *BrokerSession) ListBrokers(ctx context.Context) BrokerOp {
	return s.record(ctx, OpListBrokers, BrokerInput{}, func(ctx context.Context) (*BrokerOutput, error) {
		resp, err := s.t.ListBrokers(ctx, &metapb.ListBrokersRequest{})
		if err != nil {
			return nil, err
		}
		out := &BrokerOutput{Revision: resp.Revision}
		for _, b := range resp.Brokers {
			out.Brokers = append(out.Brokers, fromBroker(b))
		}
		return out, nil
	})
}

// ListAssignments reads the assignments (of one broker, or all)
// linearizably.
func (s *BrokerSession) ListAssignments(ctx context.Context, broker string) BrokerOp {
	in := BrokerInput{BrokerID: broker}
	return s.record(ctx, OpListAssignments, in, func(ctx context.Context) (*BrokerOutput, error) {
		resp, err := s.t.ListAssignments(ctx, &metapb.ListAssignmentsRequest{BrokerId: broker})
		if err != nil {
			return nil, err
		}
		out := &BrokerOutput{Revision: resp.Revision}
		for _, a := range resp.Assignments {
			out.Assignments = append(out.Assignments, *fromAssignment(a))
		}
		return out, nil
	})
}
