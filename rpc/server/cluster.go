package server

import (
	"context"

	"github.com/metamq/meta/rpc/metapb"
	"github.com/metamq/meta/sm/logpb"
	"github.com/metamq/meta/sm/state"
	"google.golang.org/protobuf/proto"
)

// Status returns this node's view of every group, and its halted
// replicas.
func (s *Server) Status(context.Context, *metapb.StatusRequest) (*metapb.StatusResponse, error) {
	k, m := s.node.GroupCounts()
	resp := &metapb.StatusResponse{NodeId: s.node.ID(), Addr: s.node.Addr(), ClusterId: s.node.ClusterID(),
		OffsetGroups: uint32(k), DataGroups: uint32(m), Groups: s.node.Status(), Version: s.version,
		FeatureLevel: s.node.FeatureLevel(), ClusterVersion: s.node.ClusterVersion()}
	resp.Halted = s.node.HaltedGroups()
	return resp, nil
}

// Members lists the members.
func (s *Server) Members(ctx context.Context, _ *metapb.MembersRequest) (*metapb.MembersResponse, error) {
	ms, err := s.node.Members(ctx)
	if err != nil {
		return nil, s.statusOf(err, false)
	}
	k, m := s.node.GroupCounts()
	return &metapb.MembersResponse{ClusterId: s.node.ClusterID(), Members: ms, OffsetGroups: uint32(k), DataGroups: uint32(m)}, nil
}

func checkMemberID(id string) error { return checkNodeField("id", id) }

// checkNodeField checks a member id in the request field named field.
func checkNodeField(field, id string) error {
	return checkRequired(field, id, metapb.MaxMemberIDBytes)
}

// AddMember adds a member.
func (s *Server) AddMember(ctx context.Context, req *metapb.AddMemberRequest) (*metapb.AddMemberResponse, error) {
	if err := checkMemberID(req.Id); err != nil {
		return nil, err
	}
	if req.Addr == "" || len(req.Addr) > metapb.MaxMemberAddrBytes {
		return nil, invalid("addr", "1..%d bytes required", metapb.MaxMemberAddrBytes)
	}
	if err := checkMaxBytes("zone", req.Zone, metapb.MaxNameBytes); err != nil {
		return nil, err
	}
	ms, err := s.node.AddMember(ctx, req.Id, req.Addr, req.Zone)
	if err != nil {
		return nil, s.statusOf(err, true)
	}
	return &metapb.AddMemberResponse{Members: ms}, nil
}

// RemoveMember removes a member; the controller decides whether it may
// (drained, dead, or forced).
func (s *Server) RemoveMember(ctx context.Context, req *metapb.RemoveMemberRequest) (*metapb.RemoveMemberResponse, error) {
	if err := checkMemberID(req.Id); err != nil {
		return nil, err
	}
	return viaController(ctx, s, callRemoveMember, req, (*ControllerService).removeMemberLocal, &metapb.RemoveMemberResponse{})
}

// DrainMember starts (or undoes) the drain of a member.
func (s *Server) DrainMember(ctx context.Context, req *metapb.DrainMemberRequest) (*metapb.DrainMemberResponse, error) {
	if err := checkMemberID(req.Id); err != nil {
		return nil, err
	}
	st := logpb.MemberState_MEMBER_STATE_DRAINING
	if req.Undo {
		st = logpb.MemberState_MEMBER_STATE_ACTIVE
	}
	if err := s.node.SetMemberState(ctx, req.Id, st); err != nil {
		return nil, s.statusOf(err, true)
	}
	ms, err := s.node.Members(ctx)
	if err != nil {
		// Applied: the answer is only missing the list.
		return &metapb.DrainMemberResponse{}, nil
	}
	return &metapb.DrainMemberResponse{Members: ms}, nil
}

// MoveReplica moves a group's replica from one node to another, through
// the controller.
func (s *Server) MoveReplica(ctx context.Context, req *metapb.MoveReplicaRequest) (*metapb.MoveReplicaResponse, error) {
	if err := firstErr(checkName("group", req.Group), checkNodeField("from", req.From), checkNodeField("to", req.To)); err != nil {
		return nil, err
	}
	return viaController(ctx, s, callMoveReplica, req, (*ControllerService).moveReplicaLocal, &metapb.MoveReplicaResponse{})
}

// SplitGroup starts an online split of a data or offset group, through
// the controller's node (metadata-0's leader).
func (s *Server) SplitGroup(ctx context.Context, req *metapb.SplitGroupRequest) (*metapb.SplitGroupResponse, error) {
	if err := checkName("group", req.Group); err != nil {
		return nil, err
	}
	return viaController(ctx, s, callSplitGroup, req, (*ControllerService).splitGroupLocal, &metapb.SplitGroupResponse{})
}

// AbortSplit aborts a split before its fence, through the controller's
// node (metadata-0's leader).
func (s *Server) AbortSplit(ctx context.Context, req *metapb.AbortSplitRequest) (*metapb.AbortSplitResponse, error) {
	if err := checkName("group", req.Group); err != nil {
		return nil, err
	}
	return viaController(ctx, s, callAbortSplit, req, (*ControllerService).abortSplitLocal, &metapb.AbortSplitResponse{})
}

// ListGroups lists every group with its replicas, from the controller.
func (s *Server) ListGroups(ctx context.Context, req *metapb.ListGroupsRequest) (*metapb.ListGroupsResponse, error) {
	return viaController(ctx, s, callListGroups, req, (*ControllerService).listGroupsLocal, &metapb.ListGroupsResponse{})
}

// ListNodes lists every node with its replicas, from the controller.
func (s *Server) ListNodes(ctx context.Context, req *metapb.ListNodesRequest) (*metapb.ListNodesResponse, error) {
	return viaController(ctx, s, callListNodes, req, (*ControllerService).listNodesLocal, &metapb.ListNodesResponse{})
}

// viaController runs one of the controller's named calls from the
// Cluster service: through this node's controller service, which runs it
// on metadata-0's leader (see forward). NO_LEADER when this node runs no
// controller service.
func viaController[Req, Resp proto.Message](ctx context.Context, s *Server, method string, req Req,
	local func(*ControllerService, context.Context, Req) (Resp, error), resp Resp) (Resp, error) {
	c := s.ctl
	if c == nil {
		var zero Resp
		return zero, coded(metapb.ReasonNoLeader, nil, "this node runs no controller service")
	}
	return forward(ctx, c, method, req, func(ctx context.Context, r Req) (Resp, error) { return local(c, ctx, r) }, resp)
}

// WatchDirectory streams the directory as this node follows it: whole, at
// once and after every change.
func (s *Server) WatchDirectory(_ *metapb.WatchDirectoryRequest, stream metapb.Cluster_WatchDirectoryServer) error {
	ctx := stream.Context()
	release, err := s.watches.acquire(ctx)
	if err != nil {
		return err
	}
	defer release()
	var sent uint64
	for {
		changed := s.node.DirectoryChanged()
		if d := s.node.Directory(); d.Version > sent || sent == 0 {
			if err := stream.Send(s.directoryUpdate(d)); err != nil {
				return err
			}
			sent = max(d.Version, 1)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.node.Stopping():
			return errShuttingDown
		case <-changed:
		}
	}
}

func (s *Server) directoryUpdate(d *state.Directory) *metapb.DirectoryUpdate {
	u := &metapb.DirectoryUpdate{Version: d.Version}
	if d.Cluster != nil {
		u.ClusterId, u.OffsetGroups, u.DataGroups = d.Cluster.ClusterId, d.Cluster.OffsetGroups, d.Cluster.DataGroups
	}
	for _, m := range d.Members {
		u.Members = append(u.Members, &metapb.Member{Id: m.Id, Addr: m.Addr, Zone: m.Zone,
			Draining: m.State == logpb.MemberState_MEMBER_STATE_DRAINING})
	}
	leaders := map[string]string{}
	for _, st := range s.node.Status() {
		leaders[st.Group] = st.LeaderId
	}
	for _, g := range d.Groups {
		dg := &metapb.DirectoryGroup{Group: g.Name, Kind: g.Kind, Leader: leaders[g.Name]}
		for _, voters := range []bool{true, false} {
			for _, r := range g.Replicas {
				if r.Voter == voters {
					dg.Replicas = append(dg.Replicas, r.Node)
				}
			}
		}
		for _, r := range g.Ranges {
			dg.Ranges = append(dg.Ranges, &metapb.KeyRange{Lo: r.Lo, Hi: r.Hi, Version: r.Version})
		}
		u.Groups = append(u.Groups, dg)
	}
	return u
}

// checkGroup refuses a request naming no group of this cluster, in the
// request field "group": a group the directory records (a split's new
// group included), or, before the directory records any, one of the
// groups the cluster was created with.
func (s *Server) checkGroup(name string) error {
	if d := s.node.Directory(); d != nil && len(d.Groups) > 0 {
		if d.Group(name) == nil {
			return invalid("group", "%q is not a group of this cluster", name)
		}
		return nil
	}
	if k, m := s.node.GroupCounts(); !metapb.ValidGroup(name, k, m) {
		return invalid("group", "%q is not a group of this cluster", name)
	}
	return nil
}

// TransferLeader moves a group's leadership.
func (s *Server) TransferLeader(ctx context.Context, req *metapb.TransferLeaderRequest) (*metapb.TransferLeaderResponse, error) {
	if err := s.checkGroup(req.Group); err != nil {
		return nil, err
	}
	id, err := s.node.TransferLeader(ctx, req.Group, req.TargetId)
	if err != nil {
		return nil, s.statusOf(err, true)
	}
	return &metapb.TransferLeaderResponse{LeaderId: id}, nil
}

// StateHash digests one group's state on this node.
func (s *Server) StateHash(_ context.Context, req *metapb.StateHashRequest) (*metapb.StateHashResponse, error) {
	if err := s.checkGroup(req.Group); err != nil {
		return nil, err
	}
	h, err := s.node.StateHash(req.Group)
	if err != nil {
		return nil, s.statusOf(err, false)
	}
	return &metapb.StateHashResponse{Group: req.Group, AppliedIndex: h.Index, Revision: h.Revision, Hash: h.Hash, Keys: h.Keys}, nil
}

// Alarms lists the cluster's alarms (this node's replica of metadata-0)
// and, with disarm, first clears them through the log.
func (s *Server) Alarms(ctx context.Context, req *metapb.AlarmsRequest) (*metapb.AlarmsResponse, error) {
	out := &metapb.AlarmsResponse{}
	if req.Disarm {
		n, err := s.node.DisarmAlarm(ctx, req.Alarm, req.Member)
		if err != nil {
			return nil, s.statusOf(err, true)
		}
		out.Cleared = n
	}
	for _, a := range s.node.Alarms() {
		out.Alarms = append(out.Alarms, &metapb.Alarm{Alarm: a.Alarm, Member: a.Member, Message: a.Message})
	}
	return out, nil
}
