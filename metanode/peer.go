package metanode

import (
	"context"
	"fmt"

	"github.com/metamq/meta/rpc/transport"
	"github.com/metamq/meta/rpc/transport/raftpb"
	"github.com/metamq/meta/sm"
	"github.com/metamq/meta/sm/logpb"
)

// peerHandler serves the node-to-node calls of rpc/transport.
type peerHandler struct{ n *Node }

var _ transport.PeerHandler = peerHandler{}

// Propose serves a forwarded write. It proposes only locally: a node that
// is not the leader answers NOT_LEADER (definite) rather than forwarding
// again, so forwarding never loops.
func (h peerHandler) Propose(ctx context.Context, groupName string, payload []byte) ([]byte, error) {
	g, err := h.n.group(groupName)
	if err != nil {
		return nil, err
	}
	if !h.n.serving.Load() {
		return nil, ErrShuttingDown
	}
	op, err := sm.DecodeOp(payload)
	if err != nil {
		return nil, fmt.Errorf("%w: undecodable operation: %v", ErrInvalid, err)
	}
	if !g.kind.Allows(op) {
		return nil, fmt.Errorf("%w: operation %T not allowed in group %s", ErrInvalid, op.Op, groupName)
	}
	if internalOnly(op) {
		return nil, fmt.Errorf("%w: operation %T is the node's own work and cannot be proposed from outside it", ErrInvalid, op.Op)
	}
	if !g.isLeader() {
		return nil, g.notLeader()
	}
	res, err := g.proposeLocal(ctx, op)
	if err != nil {
		return nil, err
	}
	out, err := sm.EncodeResult(res)
	if err != nil {
		return nil, unknown(err)
	}
	return out, nil
}

// internalOnly reports whether an operation is only ever proposed by a
// node for itself (its leader's timers and compaction, formation, the
// directory, the controller's decisions: all through proposeLocal), so a
// forwarded one can only be forged. Membership changes and client
// operations are forwarded and stay allowed.
func internalOnly(op *logpb.Op) bool {
	switch op.Op.(type) {
	case *logpb.Op_ClusterInit, *logpb.Op_DirectoryInit, *logpb.Op_GroupPut, *logpb.Op_OwnershipInit,
		*logpb.Op_SessionsExpire, *logpb.Op_WillsMarkDue, *logpb.Op_LeasesExpire, *logpb.Op_EventsCompact,
		*logpb.Op_BrokerRegister, *logpb.Op_BrokerSetStatus, *logpb.Op_Assign, *logpb.Op_HashCheck,
		*logpb.Op_ClusterVersionSet:
		return true
	}
	return false
}

// ReadIndex confirms leadership for a follower's linearizable read.
func (h peerHandler) ReadIndex(ctx context.Context, groupName string) (uint64, error) {
	g, err := h.n.group(groupName)
	if err != nil {
		return 0, err
	}
	if !g.isLeader() {
		return 0, g.notLeader()
	}
	idx, err := g.leaderReads.do(ctx)
	if err != nil {
		return 0, err
	}
	return idx, nil
}

// Applied reports this replica's applied index (for promotion decisions).
func (h peerHandler) Applied(_ context.Context, groupName string) (uint64, error) {
	g, err := h.n.group(groupName)
	if err != nil {
		return 0, err
	}
	return g.fsm.AppliedIndex(), nil
}

// ClusterInfo tells a joining node what cluster it joins. The member list
// is read linearizably from metadata-0. A node whose feature level (0:
// a release before levels, the base level) is below the cluster version
// is refused: it could not apply what the cluster proposes.
func (h peerHandler) ClusterInfo(ctx context.Context, featureLevel uint32) (*raftpb.ClusterInfo, error) {
	d, err := h.n.readDirectory(ctx)
	if err != nil {
		return nil, err
	}
	ci, members := d.Cluster, d.Members
	if ci == nil {
		return nil, ErrNotStarted
	}
	if lvl := max(featureLevel, sm.BaseLevel); lvl < d.Level() {
		return nil, &ClusterVersionError{Op: "join", Cluster: d.Level(), Required: d.Level(), Joining: lvl}
	}
	out := &raftpb.ClusterInfo{ClusterId: ci.ClusterId, OffsetGroups: ci.OffsetGroups, DataGroups: ci.DataGroups, ClusterVersion: d.ClusterVersion}
	for _, mp := range members {
		out.Members = append(out.Members, &raftpb.Peer{Id: mp.Id, Addr: mp.Addr})
	}
	return out, nil
}

// Call serves a named request forwarded by another node.
func (h peerHandler) Call(ctx context.Context, method string, payload []byte) ([]byte, error) {
	fn := h.n.callHandler(method)
	if fn == nil {
		return nil, unknownCall(method)
	}
	return fn(ctx, payload)
}
