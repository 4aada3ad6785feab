package server

import (
	"context"

	"github.com/metamq/meta/rpc/metapb"
)

// Status returns this node's view of every group.
func (s *Server) Status(context.Context, *metapb.StatusRequest) (*metapb.StatusResponse, error) {
	k, m := s.node.GroupCounts()
	return &metapb.StatusResponse{NodeId: s.node.ID(), Addr: s.node.Addr(), ClusterId: s.node.ClusterID(),
		OffsetGroups: uint32(k), DataGroups: uint32(m), Groups: s.node.Status(), Version: s.version}, nil
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

func checkMemberID(id string) error {
	if id == "" {
		return invalid("id", "must not be empty")
	}
	if len(id) > metapb.MaxMemberIDBytes {
		return invalid("id", "%d bytes, at most %d", len(id), metapb.MaxMemberIDBytes)
	}
	return nil
}

// AddMember adds a member.
func (s *Server) AddMember(ctx context.Context, req *metapb.AddMemberRequest) (*metapb.AddMemberResponse, error) {
	if err := checkMemberID(req.Id); err != nil {
		return nil, err
	}
	if req.Addr == "" || len(req.Addr) > metapb.MaxMemberAddrBytes {
		return nil, invalid("addr", "1..%d bytes required", metapb.MaxMemberAddrBytes)
	}
	ms, err := s.node.AddMember(ctx, req.Id, req.Addr)
	if err != nil {
		return nil, s.statusOf(err, true)
	}
	return &metapb.AddMemberResponse{Members: ms}, nil
}

// RemoveMember removes a member.
func (s *Server) RemoveMember(ctx context.Context, req *metapb.RemoveMemberRequest) (*metapb.RemoveMemberResponse, error) {
	if err := checkMemberID(req.Id); err != nil {
		return nil, err
	}
	ms, err := s.node.RemoveMember(ctx, req.Id)
	if err != nil {
		return nil, s.statusOf(err, true)
	}
	return &metapb.RemoveMemberResponse{Members: ms}, nil
}

// TransferLeader moves a group's leadership.
func (s *Server) TransferLeader(ctx context.Context, req *metapb.TransferLeaderRequest) (*metapb.TransferLeaderResponse, error) {
	k, m := s.node.GroupCounts()
	if !metapb.ValidGroup(req.Group, k, m) {
		return nil, invalid("group", "%q is not a group of this cluster", req.Group)
	}
	id, err := s.node.TransferLeader(ctx, req.Group, req.TargetId)
	if err != nil {
		return nil, s.statusOf(err, true)
	}
	return &metapb.TransferLeaderResponse{LeaderId: id}, nil
}

// StateHash digests one group's state on this node.
func (s *Server) StateHash(_ context.Context, req *metapb.StateHashRequest) (*metapb.StateHashResponse, error) {
	k, m := s.node.GroupCounts()
	if !metapb.ValidGroup(req.Group, k, m) {
		return nil, invalid("group", "%q is not a group of this cluster", req.Group)
	}
	h, err := s.node.StateHash(req.Group)
	if err != nil {
		return nil, s.statusOf(err, false)
	}
	return &metapb.StateHashResponse{Group: req.Group, AppliedIndex: h.Index, Revision: h.Revision, Hash: h.Hash, Keys: h.Keys}, nil
}
