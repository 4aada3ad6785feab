package metanode

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/metamq/meta/rpc/metapb"
	"github.com/metamq/meta/rpc/transport"
	"github.com/metamq/meta/rpc/transport/raftpb"
)

// CallHandler serves a named request on a group's leader. Its error should
// be of meta's vocabulary (metapb.Coded): it crosses back to the
// forwarding node with its reason; an error without one is an unknown
// outcome there.
type CallHandler func(ctx context.Context, payload []byte) ([]byte, error)

// HandleCall registers a handler for requests that must run on a group's
// leader (e.g. broker heartbeats on the controller). Register before Start.
func (n *Node) HandleCall(method string, fn func(ctx context.Context, payload []byte) ([]byte, error)) {
	n.tasksMu.Lock()
	defer n.tasksMu.Unlock()
	n.calls[method] = fn
}

func (n *Node) callHandler(method string) CallHandler {
	n.tasksMu.Lock()
	defer n.tasksMu.Unlock()
	return n.calls[method]
}

// CallLeader runs a named request on the leader of group: here if this
// node leads it, else on the leader through a peer call (onLeader's
// retries of definite not-leader answers included).
func (n *Node) CallLeader(ctx context.Context, groupName, method string, payload []byte) ([]byte, error) {
	g, err := n.group(groupName)
	var nh *RedirectError
	if errors.As(err, &nh) {
		return onLeader(ctx, n.env, groupName, nil, nil, func(ctx context.Context, addr string) ([]byte, error) {
			return n.trans.Call(ctx, addr, method, payload)
		})
	}
	if err != nil {
		return nil, err
	}
	return g.callLeader(ctx, method, payload)
}

func (g *group) callLeader(ctx context.Context, method string, payload []byte) ([]byte, error) {
	return onLeader(ctx, g.env, g.name, g,
		func(ctx context.Context) ([]byte, error) {
			fn := g.env.handler(method)
			if fn == nil {
				return nil, unknownCall(method)
			}
			return fn(ctx, payload)
		},
		func(ctx context.Context, addr string) ([]byte, error) {
			return g.env.peers.Call(ctx, addr, method, payload)
		})
}

// The node's own named calls (the table in doc.go lists every call).
// Payloads are raftpb messages. The names of the previous release, with
// their hand-made payloads, are still served for one release so that a
// rolling upgrade keeps working; this release never sends them.
const (
	callTransfer      = "metanode.transfer-leader/v2"
	callRemoveServer  = "metanode.remove-server/v2"
	callFreshSnapshot = "metanode.fresh-snapshot/v2"

	legacyCallTransfer      = "metanode.transfer-leader"
	legacyCallRemoveServer  = "metanode.remove-server"
	legacyCallFreshSnapshot = "metanode.fresh-snapshot"
)

// registerCalls registers the node's own named calls.
func (n *Node) registerCalls() {
	n.calls[callTransfer] = protoCall(n.serveTransfer)
	n.calls[callRemoveServer] = protoCall(n.serveRemoveServer)
	n.calls[callFreshSnapshot] = protoCall(n.serveFreshSnapshot)
	n.calls[callDirectory] = protoAnswer(n.serveDirectory)
	n.calls[callConfiguration] = protoAnswer(n.serveConfiguration)
	n.calls[callHashAt] = protoAnswer(n.serveHashAt)
	n.calls[callFence] = protoCall(n.serveFence)
	n.calls[callFeatureLevel] = protoAnswer(n.serveFeatureLevel)
	n.calls[callSplitRead] = protoAnswer(n.serveSplitRead)
	// Previous release's payloads: TransferLeaderRequest (the public
	// message), "group\x00id", and an 8-byte big-endian index + group.
	n.calls[legacyCallTransfer] = func(ctx context.Context, payload []byte) ([]byte, error) {
		req := &metapb.TransferLeaderRequest{}
		if err := proto.Unmarshal(payload, req); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
		}
		return nil, n.serveTransfer(ctx, &raftpb.TransferLeaderCall{Group: req.Group, TargetId: req.TargetId})
	}
	n.calls[legacyCallRemoveServer] = func(ctx context.Context, payload []byte) ([]byte, error) {
		group, id, ok := strings.Cut(string(payload), "\x00")
		if !ok {
			return nil, fmt.Errorf("%w: remove-server payload", ErrInvalid)
		}
		return nil, n.serveRemoveServer(ctx, &raftpb.RemoveServerCall{Group: group, ServerId: id})
	}
	n.calls[legacyCallFreshSnapshot] = func(ctx context.Context, payload []byte) ([]byte, error) {
		if len(payload) < 9 {
			return nil, fmt.Errorf("%w: fresh-snapshot request of %d bytes", ErrInvalid, len(payload))
		}
		return nil, n.serveFreshSnapshot(ctx, &raftpb.FreshSnapshotCall{Group: string(payload[8:]), Applied: binary.BigEndian.Uint64(payload)})
	}
}

// unknownCall refuses a named call this node has no handler for: a
// definite INVALID_ARGUMENT whose cause, transport.ErrUnknownCall, crosses
// the peer wire as its own reason, so a caller tells a node of an older
// release (which does not know the call) by errors.Is, not by the text.
func unknownCall(method string) error {
	return fmt.Errorf("%w: %w: %q", ErrInvalid, transport.ErrUnknownCall, method)
}

// protoCall adapts a handler of one request message (and no answer) to a
// CallHandler.
func protoCall[Req any, P interface {
	*Req
	proto.Message
}](serve func(context.Context, P) error) CallHandler {
	return func(ctx context.Context, payload []byte) ([]byte, error) {
		req := P(new(Req))
		if err := proto.Unmarshal(payload, req); err != nil {
			return nil, fmt.Errorf("%w: undecodable %T: %v", ErrInvalid, req, err)
		}
		return nil, serve(ctx, req)
	}
}

// protoAnswer adapts a handler of one request message that answers bytes
// to a CallHandler.
func protoAnswer[Req any, P interface {
	*Req
	proto.Message
}](serve func(context.Context, P) ([]byte, error)) CallHandler {
	return func(ctx context.Context, payload []byte) ([]byte, error) {
		req := P(new(Req))
		if err := proto.Unmarshal(payload, req); err != nil {
			return nil, fmt.Errorf("%w: undecodable %T: %v", ErrInvalid, req, err)
		}
		return serve(ctx, req)
	}
}

// callOnLeader marshals req and runs the named call method on group's
// leader.
func (g *group) callOnLeader(ctx context.Context, method string, req proto.Message) error {
	payload, err := proto.Marshal(req)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	_, err = g.callLeader(ctx, method, payload)
	return err
}

// serveTransfer is the leader's side of MoveLeader.
func (n *Node) serveTransfer(ctx context.Context, req *raftpb.TransferLeaderCall) error {
	_, err := n.TransferLeader(ctx, req.Group, req.TargetId)
	return err
}

// MoveLeader moves a group's leadership to target, asking the group's
// leader wherever it is.
func (n *Node) MoveLeader(ctx context.Context, group, target string) error {
	payload, err := proto.Marshal(&raftpb.TransferLeaderCall{Group: group, TargetId: target})
	if err != nil {
		return err
	}
	_, err = n.CallLeader(ctx, group, callTransfer, payload)
	return err
}
