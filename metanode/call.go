package metanode

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/metamq/meta/rpc/metapb"
	"github.com/metamq/meta/rpc/transport"
)

// CallHandler serves a named request on a group's leader. An error with a
// gRPC status crosses back to the forwarding node as that status.
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
// node leads it, else on the leader through the transport. Not-leader
// answers (leadership moved meanwhile) are retried a few times, waiting
// for a leader; they are definite, nothing ran.
func (n *Node) CallLeader(ctx context.Context, groupName, method string, payload []byte) ([]byte, error) {
	g, err := n.group(groupName)
	if err != nil {
		return nil, err
	}
	var last error
	for attempt := 0; attempt < 5; attempt++ {
		if g.isLeader() {
			fn := n.callHandler(method)
			if fn == nil {
				return nil, fmt.Errorf("%w: no handler for %q", ErrInvalid, method)
			}
			return fn(ctx, payload)
		}
		id, addr := g.leader()
		if id == "" {
			last = fmt.Errorf("%s: %w", g.name, ErrNoLeader)
		} else {
			out, err := n.trans.Call(ctx, addr, method, payload)
			var pe *transport.PeerError
			if err == nil || !errors.As(err, &pe) {
				return out, err // success, or the handler's own status
			}
			if pe.Kind != transport.KindNotLeader && pe.Kind != transport.KindUnavailable {
				return nil, fromPeerError(g.name, err)
			}
			last = fromPeerError(g.name, err)
		}
		if err := g.waitLeader(ctx); err != nil {
			return nil, last
		}
	}
	return nil, last
}

const callTransfer = "metanode.transfer-leader"

// moveLeaderRemote asks the leader of a group to transfer it.
func (n *Node) moveLeaderRemote(ctx context.Context, group, target string) error {
	payload, err := proto.Marshal(&metapb.TransferLeaderRequest{Group: group, TargetId: target})
	if err != nil {
		return err
	}
	_, err = n.CallLeader(ctx, group, callTransfer, payload)
	return err
}

// serveTransfer is the leader's side of moveLeaderRemote.
func (n *Node) serveTransfer(ctx context.Context, payload []byte) ([]byte, error) {
	req := &metapb.TransferLeaderRequest{}
	if err := proto.Unmarshal(payload, req); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	_, err := n.TransferLeader(ctx, req.Group, req.TargetId)
	if err != nil {
		return nil, toPeerError(err)
	}
	return nil, nil
}
