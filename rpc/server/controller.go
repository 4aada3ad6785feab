package server

import (
	"context"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/metamq/meta/rpc/metapb"
	"github.com/metamq/meta/sm/logpb"
	"github.com/metamq/meta/sm/state"
)

// ControllerNode is what the Controller service needs from the node
// besides Node.
type ControllerNode interface {
	Node
	// LeadsMetadata reports whether this node runs the controller.
	LeadsMetadata() bool
	// MetadataLeader returns metadata-0's leader as this node knows it.
	MetadataLeader() (id, addr string)
	// Leaders returns each group's leader and metadata-0's voters.
	Leaders() (map[string]string, []string)
	// HandleCall and CallLeader forward a named request to a group's
	// leader (the controller runs on metadata-0's).
	HandleCall(method string, fn func(ctx context.Context, payload []byte) ([]byte, error))
	CallLeader(ctx context.Context, group, method string, payload []byte) ([]byte, error)
	// StartSplit records a split of a group on metadata-0 (which this
	// node leads) and returns the new group and the range it takes.
	StartSplit(ctx context.Context, group string, at uint64) (string, *logpb.HashRange, error)
	// AbortSplit aborts the split of a group before its fence (on
	// metadata-0, which this node leads) and returns the new group it
	// had made; SPLIT_FENCED once the parent's log fenced the range.
	AbortSplit(ctx context.Context, group string) (string, error)
}

// Controller is what the Controller service needs of the controller
// (controller.Controller implements it). Its errors are of meta's
// vocabulary; not running here is NOT_LEADER.
type Controller interface {
	Register(ctx context.Context, req *logpb.BrokerRegister) (*logpb.Broker, error)
	Heartbeat(ctx context.Context, brokerID string, epoch uint64) (status int32, err error)
	// Active reports whether the controller runs on this node.
	Active() bool
	// HeartbeatTiming is what brokers are told: how often to heartbeat,
	// and after how long a silent broker is declared down.
	HeartbeatTiming() (interval, timeout time.Duration)
	// Describe fills what the controller knows of itself (active since,
	// heartbeat timeout, counters).
	Describe(out *metapb.ControllerStatusResponse)
	// Report takes a node's report (liveness, its replicas).
	Report(ctx context.Context, r *logpb.NodeReport) error
	// RemoveMember removes a member if it may go (drained, dead, or
	// forced) and returns the members left.
	RemoveMember(ctx context.Context, id string, force bool) ([]*logpb.MemberPut, error)
	// MoveReplica moves a group's replica from one node to another and
	// returns the group's new record.
	MoveReplica(ctx context.Context, group, from, to string) (*logpb.GroupRecord, error)
	// Groups and Nodes are the placement views.
	Groups() (*metapb.ListGroupsResponse, error)
	Nodes() (*metapb.ListNodesResponse, error)
}

// ControllerService implements metapb.ControllerServer.
type ControllerService struct {
	metapb.UnimplementedControllerServer
	*Server
	node ControllerNode
	ctl  Controller
}

// The controller's named calls, forwarded from any node to metadata-0's
// leader (see metanode/doc.go).
const (
	callRegister     = "controller.register"
	callHeartbeat    = "controller.heartbeat"
	callStatus       = "controller.status"
	callRemoveMember = "controller.remove-member"
	callListGroups   = "controller.list-groups"
	callMoveReplica  = "controller.move-replica"
	callListNodes    = "controller.list-nodes"
	callSplitGroup   = "controller.split-group"
	callAbortSplit   = "controller.abort-split"
	// CallNodeReport: a node's report to the controller (metanode sends
	// it; see metanode/doc.go).
	CallNodeReport = "controller.node-report"
)

// RegisterController registers the Controller service. Calls only the
// controller can serve (register, heartbeat, status) are forwarded from
// any node to metadata-0's leader.
func RegisterController(s *grpc.Server, srv *Server, node ControllerNode, ctl Controller) {
	c := &ControllerService{Server: srv, node: node, ctl: ctl}
	srv.ctl = c
	metapb.RegisterControllerServer(s, c)
	forwardable(node, callRegister, c.registerLocal)
	forwardable(node, callHeartbeat, c.heartbeatLocal)
	forwardable(node, callStatus, c.statusLocal)
	forwardable(node, callRemoveMember, c.removeMemberLocal)
	forwardable(node, callListGroups, c.listGroupsLocal)
	forwardable(node, callMoveReplica, c.moveReplicaLocal)
	forwardable(node, callListNodes, c.listNodesLocal)
	forwardable(node, callSplitGroup, c.splitGroupLocal)
	forwardable(node, callAbortSplit, c.abortSplitLocal)
	node.HandleCall(CallNodeReport, func(ctx context.Context, payload []byte) ([]byte, error) {
		r := &logpb.NodeReport{}
		if err := proto.Unmarshal(payload, r); err != nil {
			return nil, invalidArgument("", "undecodable node report: "+err.Error())
		}
		if !ctl.Active() {
			return nil, c.notController()
		}
		return nil, ctl.Report(ctx, r)
	})
}

func (c *ControllerService) removeMemberLocal(ctx context.Context, req *metapb.RemoveMemberRequest) (*metapb.RemoveMemberResponse, error) {
	left, err := c.ctl.RemoveMember(ctx, req.Id, req.Force)
	if err != nil {
		return nil, c.ctlError(err)
	}
	out := &metapb.RemoveMemberResponse{}
	for _, m := range left {
		out.Members = append(out.Members, &metapb.Member{Id: m.Id, Addr: m.Addr, Zone: m.Zone,
			Draining: m.State == logpb.MemberState_MEMBER_STATE_DRAINING})
	}
	return out, nil
}

func (c *ControllerService) moveReplicaLocal(ctx context.Context, req *metapb.MoveReplicaRequest) (*metapb.MoveReplicaResponse, error) {
	rec, err := c.ctl.MoveReplica(ctx, req.Group, req.From, req.To)
	if err != nil {
		return nil, c.ctlError(err)
	}
	out := &metapb.MoveReplicaResponse{ConfVer: rec.ConfVer}
	for _, r := range rec.Replicas {
		out.Replicas = append(out.Replicas, r.Node)
	}
	return out, nil
}

func (c *ControllerService) splitGroupLocal(ctx context.Context, req *metapb.SplitGroupRequest) (*metapb.SplitGroupResponse, error) {
	if !c.ctl.Active() {
		return nil, c.notController()
	}
	child, r, err := c.node.StartSplit(ctx, req.Group, req.At)
	if err != nil {
		return nil, c.ctlError(err)
	}
	return &metapb.SplitGroupResponse{Child: child, Range: &metapb.KeyRange{Lo: r.Lo, Hi: r.Hi, Version: r.Version}}, nil
}

func (c *ControllerService) abortSplitLocal(ctx context.Context, req *metapb.AbortSplitRequest) (*metapb.AbortSplitResponse, error) {
	if !c.ctl.Active() {
		return nil, c.notController()
	}
	child, err := c.node.AbortSplit(ctx, req.Group)
	if err != nil {
		return nil, c.ctlError(err)
	}
	return &metapb.AbortSplitResponse{Child: child}, nil
}

func (c *ControllerService) listGroupsLocal(_ context.Context, _ *metapb.ListGroupsRequest) (*metapb.ListGroupsResponse, error) {
	return activeRead(c, c.ctl.Groups)
}

func (c *ControllerService) listNodesLocal(_ context.Context, _ *metapb.ListNodesRequest) (*metapb.ListNodesResponse, error) {
	return activeRead(c, c.ctl.Nodes)
}

// activeRead answers a read of the controller's state on the active
// controller only.
func activeRead[Resp any](c *ControllerService, read func() (Resp, error)) (Resp, error) {
	var zero Resp
	if !c.ctl.Active() {
		return zero, c.notController()
	}
	out, err := read()
	if err != nil {
		return zero, c.ctlError(err)
	}
	return out, nil
}

// forwardable registers a local handler as a named call, so that other
// nodes can forward the request to this one when it leads. Its errors
// cross back with their reasons.
func forwardable[Req, Resp proto.Message](node ControllerNode, method string, local func(context.Context, Req) (Resp, error)) {
	node.HandleCall(method, func(ctx context.Context, payload []byte) ([]byte, error) {
		var req Req
		req = req.ProtoReflect().New().Interface().(Req)
		if err := proto.Unmarshal(payload, req); err != nil {
			return nil, invalidArgument("", "undecodable forwarded request: "+err.Error())
		}
		resp, err := local(ctx, req)
		if err != nil {
			return nil, err
		}
		return proto.Marshal(resp)
	})
}

// forward runs method on metadata-0's leader: locally when this node is
// it, else through CallLeader.
func forward[Req, Resp proto.Message](ctx context.Context, c *ControllerService, method string, req Req, local func(context.Context, Req) (Resp, error), resp Resp) (Resp, error) {
	if c.node.LeadsMetadata() {
		return local(ctx, req)
	}
	payload, err := proto.Marshal(req)
	if err != nil {
		return resp, invalidArgument("", err.Error())
	}
	out, err := c.node.CallLeader(ctx, metapb.MetadataGroup, method, payload)
	if err != nil {
		return resp, c.statusOf(err, true)
	}
	if err := proto.Unmarshal(out, resp); err != nil {
		return resp, c.statusOf(err, true)
	}
	return resp, nil
}

// notController answers a call that only the controller can serve, on a
// node that does not run it: NOT_LEADER with metadata-0's leader, which is
// definite, so the client retries there.
func (c *ControllerService) notController() error {
	id, addr := c.node.MetadataLeader()
	return coded(metapb.ReasonNotLeader, map[string]string{metapb.MetaGroup: metapb.MetadataGroup, metapb.MetaLeaderID: id, metapb.MetaLeaderAddr: addr},
		"this node does not run the controller")
}

// ctlError gives the controller's "not running here" metadata-0's leader
// as its hint; every other error keeps its reason.
func (c *ControllerService) ctlError(err error) error {
	if metapb.ReasonOf(err) == metapb.ReasonNotLeader {
		return c.notController()
	}
	return c.statusOf(err, true)
}

// RegisterBroker registers a broker and returns its new epoch.
func (c *ControllerService) RegisterBroker(ctx context.Context, req *metapb.RegisterBrokerRequest) (*metapb.RegisterBrokerResponse, error) {
	if err := checkName("broker_id", req.BrokerId); err != nil {
		return nil, err
	}
	for i, e := range req.Endpoints {
		if e == "" || len(e) > metapb.MaxMemberAddrBytes {
			return nil, invalid("endpoints", "entry %d: 1..%d bytes", i, metapb.MaxMemberAddrBytes)
		}
	}
	return forward(ctx, c, "controller.register", req, c.registerLocal, &metapb.RegisterBrokerResponse{})
}

func (c *ControllerService) registerLocal(ctx context.Context, req *metapb.RegisterBrokerRequest) (*metapb.RegisterBrokerResponse, error) {
	b, err := c.ctl.Register(ctx, &logpb.BrokerRegister{BrokerId: req.BrokerId, Endpoints: req.Endpoints, Rack: req.Rack})
	if err != nil {
		return nil, c.ctlError(err)
	}
	interval, timeout := c.ctl.HeartbeatTiming()
	return &metapb.RegisterBrokerResponse{BrokerEpoch: b.Epoch,
		HeartbeatIntervalMs: uint32(interval / time.Millisecond),
		SessionTimeoutMs:    uint32(timeout / time.Millisecond)}, nil
}

// Heartbeat records a broker's liveness on the controller.
func (c *ControllerService) Heartbeat(ctx context.Context, req *metapb.HeartbeatRequest) (*metapb.HeartbeatResponse, error) {
	if err := checkName("broker_id", req.BrokerId); err != nil {
		return nil, err
	}
	if req.BrokerEpoch == 0 {
		return nil, invalid("broker_epoch", "must be set (from RegisterBroker)")
	}
	return forward(ctx, c, "controller.heartbeat", req, c.heartbeatLocal, &metapb.HeartbeatResponse{})
}

func (c *ControllerService) heartbeatLocal(ctx context.Context, req *metapb.HeartbeatRequest) (*metapb.HeartbeatResponse, error) {
	st, err := c.ctl.Heartbeat(ctx, req.BrokerId, req.BrokerEpoch)
	if err != nil {
		return nil, c.ctlError(err)
	}
	return &metapb.HeartbeatResponse{Status: metapb.BrokerStatus(st)}, nil
}

// ReportConnector records a broker's report about a connector it owns.
func (c *ControllerService) ReportConnector(ctx context.Context, req *metapb.ReportConnectorRequest) (*metapb.ReportConnectorResponse, error) {
	if err := firstErr(checkName("connector", req.Connector), checkName("broker_id", req.BrokerId)); err != nil {
		return nil, err
	}
	if req.Epoch == 0 {
		return nil, invalid("epoch", "must be set (from the assignment)")
	}
	if _, ok := metapb.ConnectorRunState_name[int32(req.State)]; !ok || req.State == 0 {
		return nil, invalid("state", "unknown value %d", req.State)
	}
	res, err := c.node.Propose(ctx, metapb.MetadataGroup, &logpb.Op{Op: &logpb.Op_ConnectorReport{ConnectorReport: &logpb.ConnectorReport{
		Connector: req.Connector, BrokerId: req.BrokerId, Epoch: req.Epoch, State: int32(req.State), Error: req.Error}}})
	if err != nil {
		return nil, c.statusOf(err, true)
	}
	switch res.Code {
	case logpb.Code_CODE_OK:
	case logpb.Code_CODE_NOT_FOUND:
		return nil, coded(metapb.ReasonNotFound, map[string]string{metapb.MetaField: "connector"}, res.Message)
	default:
		return nil, coded(metapb.ReasonStaleEpoch, nil, "stale assignment epoch: "+res.Message)
	}
	as := &logpb.ConnectorAssignment{}
	if err := proto.Unmarshal(res.Value, as); err != nil {
		return nil, c.statusOf(err, false)
	}
	return &metapb.ReportConnectorResponse{Assignment: toAssignment(as)}, nil
}

func toAssignment(as *logpb.ConnectorAssignment) *metapb.Assignment {
	return &metapb.Assignment{Connector: as.Connector, BrokerId: as.BrokerId, BrokerEpoch: as.BrokerEpoch, Epoch: as.Epoch,
		State: metapb.ConnectorRunState(as.State), Error: as.Error, AssignedAtUnixNano: as.AssignedAtUnixNano, ModRevision: as.ModRevision}
}

func toBroker(b *logpb.Broker) *metapb.BrokerState {
	return &metapb.BrokerState{BrokerId: b.BrokerId, Epoch: b.Epoch, Status: metapb.BrokerStatus(b.Status), Endpoints: b.Endpoints,
		Rack: b.Rack, RegisteredAtUnixNano: b.RegisteredAtUnixNano, StatusChangedAtUnixNano: b.StatusChangedAtUnixNano, ModRevision: b.ModRevision}
}

// readFleet reads metadata-0 with consistency cs: its brokers and
// connector assignments at one revision.
func (c *ControllerService) readFleet(ctx context.Context, cs metapb.ReadConsistency) (*state.Fleet, error) {
	if err := checkConsistency(cs); err != nil {
		return nil, err
	}
	m, err := c.read(ctx, metapb.MetadataGroup, cs)
	if err != nil {
		return nil, err
	}
	f, err := m.Fleet()
	if err != nil {
		return nil, c.statusOf(err, false)
	}
	return f, nil
}

// ListBrokers lists registered brokers with their load.
func (c *ControllerService) ListBrokers(ctx context.Context, req *metapb.ListBrokersRequest) (*metapb.ListBrokersResponse, error) {
	f, err := c.readFleet(ctx, req.Consistency)
	if err != nil {
		return nil, err
	}
	load := map[string]uint32{}
	for _, as := range f.Assignments {
		load[as.BrokerId]++
	}
	out := &metapb.ListBrokersResponse{Revision: f.Revision}
	for _, b := range f.Brokers {
		bs := toBroker(b)
		bs.Connectors = load[b.BrokerId]
		out.Brokers = append(out.Brokers, bs)
	}
	return out, nil
}

// ListAssignments lists connector assignments.
func (c *ControllerService) ListAssignments(ctx context.Context, req *metapb.ListAssignmentsRequest) (*metapb.ListAssignmentsResponse, error) {
	f, err := c.readFleet(ctx, req.Consistency)
	if err != nil {
		return nil, err
	}
	out := &metapb.ListAssignmentsResponse{Revision: f.Revision}
	for _, as := range f.Assignments {
		if req.BrokerId == "" || as.BrokerId == req.BrokerId {
			out.Assignments = append(out.Assignments, toAssignment(as))
		}
	}
	return out, nil
}

// Status describes the controller, asking the node that runs it.
func (c *ControllerService) Status(ctx context.Context, req *metapb.ControllerStatusRequest) (*metapb.ControllerStatusResponse, error) {
	return forward(ctx, c, "controller.status", req, c.statusLocal, &metapb.ControllerStatusResponse{})
}

func (c *ControllerService) statusLocal(ctx context.Context, _ *metapb.ControllerStatusRequest) (*metapb.ControllerStatusResponse, error) {
	if !c.ctl.Active() || !c.node.LeadsMetadata() {
		return nil, c.notController()
	}
	m, err := c.read(ctx, metapb.MetadataGroup, metapb.ReadConsistency_READ_CONSISTENCY_STALE)
	if err != nil {
		return nil, err
	}
	out := &metapb.ControllerStatusResponse{NodeId: c.node.ID(), LeadersPerNode: map[string]uint32{}}
	c.ctl.Describe(out)
	for _, g := range c.node.Status() {
		if g.Group == metapb.MetadataGroup {
			out.Term = g.Term
		}
	}
	if f, err := m.Fleet(); err == nil {
		for _, b := range f.Brokers {
			if metapb.BrokerStatus(b.Status) == metapb.BrokerStatus_BROKER_STATUS_ALIVE {
				out.BrokersAlive++
			} else {
				out.BrokersDown++
			}
		}
		for _, as := range f.Assignments {
			out.Connectors++
			if as.BrokerId == "" {
				out.Unassigned++
			}
		}
	}
	leaders, voters := c.node.Leaders()
	for _, v := range voters {
		out.LeadersPerNode[v] = 0
	}
	for _, l := range leaders {
		out.LeadersPerNode[l]++
	}
	return out, nil
}
