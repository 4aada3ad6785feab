package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/metamq/meta/rpc/metapb"
)

// Forwarding. Any node serves any request: when this node hosts no
// replica of a group a call needs, the node says where one is
// (ForwardTo), and the call is sent there whole (a forwarded call carries
// mdForwarded and is never forwarded again by the node it reached: that
// node answers with a redirect instead, which the forwarding node follows
// up to maxRedirects times, so a pinned client is served while a replica
// moves). A call that spans groups asks each group not hosted here
// separately, restricted to that group (mdGroup); a restricted call is
// never forwarded further by the node it reached.

const (
	// mdForwarded marks a call forwarded by another node.
	mdForwarded = "meta-forwarded"
	// mdGroup restricts a call that spans groups to one group.
	mdGroup = "meta-group"
	// mdListRanges carries, on a listing forwarded for one data group,
	// the ranges the caller's map gives that group (listCover).
	mdListRanges = "meta-list-ranges"
)

// redirect is implemented by errors that name a node hosting what this one
// does not (metanode.RedirectError).
type redirect interface {
	error
	ForwardTo() string
}

// forwarder keeps one connection per node it forwards to.
type forwarder struct {
	dial func(ctx context.Context, addr string) (net.Conn, error)
	// creds secure forwarded calls (nil: plaintext).
	creds credentials.TransportCredentials

	mu     sync.Mutex // guards conns and closed
	conns  map[string]*grpc.ClientConn
	closed bool
}

func newForwarder(dial func(ctx context.Context, addr string) (net.Conn, error)) *forwarder {
	return &forwarder{dial: dial, conns: map[string]*grpc.ClientConn{}}
}

func (f *forwarder) conn(addr string) (*grpc.ClientConn, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil, errors.New("server: closed")
	}
	if cc := f.conns[addr]; cc != nil {
		return cc, nil
	}
	creds := f.creds
	if creds == nil {
		creds = insecure.NewCredentials()
	}
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.Config{BaseDelay: 100 * time.Millisecond,
			Multiplier: 1.6, Jitter: 0.2, MaxDelay: 2 * time.Second}, MinConnectTimeout: time.Second}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20), grpc.MaxCallSendMsgSize(64<<20)),
	}
	if f.dial != nil {
		opts = append(opts, grpc.WithContextDialer(f.dial))
	}
	cc, err := grpc.NewClient("passthrough:///"+addr, opts...)
	if err != nil {
		return nil, err
	}
	f.conns[addr] = cc
	return cc, nil
}

func (f *forwarder) close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	var errs []error
	for _, cc := range f.conns {
		errs = append(errs, cc.Close())
	}
	f.conns = nil
	return errors.Join(errs...)
}

// maxRedirects bounds how many redirects a forwarding node follows for one
// call: the node it forwarded to may itself know better (a replica that
// just moved away names where the group is now).
const maxRedirects = 2

// invoke runs the unary call method with req on the node at addr,
// restricted to group when it is not empty, and returns its response. A
// node that answers with a redirect (it does not host the group, or does
// not lead it: nothing was done) is followed, up to maxRedirects times.
func (f *forwarder) invoke(ctx context.Context, addr, method string, req any, group string) (resp proto.Message, err error) {
	err = follow(ctx, addr, func(addr string) (err error) {
		resp, err = f.invokeOnce(ctx, addr, method, req, group)
		return err
	})
	return resp, err
}

// watch opens the watch req, restricted to group, on the node at addr and
// returns the stream with its first answer (where the watch starts). A
// redirect is followed as invoke follows one: a stale hint may name a
// node whose replica just moved away.
func (f *forwarder) watch(ctx context.Context, addr, group string, req *metapb.WatchRequest) (stream grpc.ServerStreamingClient[metapb.WatchResponse], first *metapb.WatchResponse, err error) {
	err = follow(ctx, addr, func(addr string) error {
		cc, err := f.conn(addr)
		if err != nil {
			return err
		}
		rctx := metadata.NewOutgoingContext(ctx, metadata.Pairs(mdForwarded, "1", mdGroup, group))
		if stream, err = metapb.NewWatchClient(cc).Watch(rctx, req); err != nil {
			return err
		}
		first, err = stream.Recv()
		return err
	})
	return stream, first, err
}

// follow calls try with addr, then with the node each redirect it answers
// names, up to maxRedirects times and never in a circle; it returns the
// last call's error.
func follow(ctx context.Context, addr string, try func(addr string) error) error {
	seen := map[string]bool{}
	for i := 0; ; i++ {
		seen[addr] = true
		err := try(addr)
		next := redirectAddr(err)
		if err == nil || i == maxRedirects || next == "" || seen[next] || ctx.Err() != nil {
			return err
		}
		addr = next
	}
}

// redirectAddr returns the node a NOT_LEADER answer names, or "".
func redirectAddr(err error) string {
	st, ok := status.FromError(err)
	if !ok || err == nil {
		return ""
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.Domain == metapb.ErrorDomain && info.Reason == metapb.ReasonNotLeader {
			return info.Metadata[metapb.MetaLeaderAddr]
		}
	}
	return ""
}

// invokeOnce is one call of invoke.
func (f *forwarder) invokeOnce(ctx context.Context, addr, method string, req any, group string) (proto.Message, error) {
	cc, err := f.conn(addr)
	if err != nil {
		return nil, err
	}
	resp, err := newResponse(method)
	if err != nil {
		return nil, err
	}
	md := metadata.Pairs(mdForwarded, "1")
	if group != "" {
		md.Set(mdGroup, group)
	}
	if r := listRangesOf(ctx); r != "" {
		md.Set(mdListRanges, r)
	}
	ctx = metadata.NewOutgoingContext(ctx, md)
	if err := cc.Invoke(ctx, method, req, resp); err != nil {
		return nil, err
	}
	return resp, nil
}

// newResponse makes an empty response of a public method
// ("/meta.v1.KV/Get").
func newResponse(method string) (proto.Message, error) {
	svc, name, ok := strings.Cut(strings.TrimPrefix(method, "/"), "/")
	if !ok {
		return nil, fmt.Errorf("server: method %q", method)
	}
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(svc))
	if err != nil {
		return nil, err
	}
	sd, ok := d.(protoreflect.ServiceDescriptor)
	if !ok {
		return nil, fmt.Errorf("server: %s is not a service", svc)
	}
	md := sd.Methods().ByName(protoreflect.Name(name))
	if md == nil {
		return nil, fmt.Errorf("server: no method %s", method)
	}
	mt, err := protoregistry.GlobalTypes.FindMessageByName(md.Output().FullName())
	if err != nil {
		return nil, err
	}
	return mt.New().Interface(), nil
}

// forwarded reports whether the incoming call was forwarded by a node.
func forwarded(ctx context.Context) bool {
	md, _ := metadata.FromIncomingContext(ctx)
	return len(md.Get(mdForwarded)) > 0
}

// restrictedTo returns the group an incoming call is restricted to, or "".
func restrictedTo(ctx context.Context) string {
	md, _ := metadata.FromIncomingContext(ctx)
	if g := md.Get(mdGroup); len(g) > 0 {
		return g[0]
	}
	return ""
}

// hasForwarder is implemented by every public service.
type hasForwarder interface{ forwarding() *forwarder }

func (s *Server) forwarding() *forwarder            { return s.fwd }
func (s *leasesService) forwarding() *forwarder     { return s.s.fwd }
func (s *metadataService) forwarding() *forwarder   { return s.s.fwd }
func (s *retainedService) forwarding() *forwarder   { return s.s.fwd }
func (s *sessionsService) forwarding() *forwarder   { return s.s.fwd }
func (s *watchService) forwarding() *forwarder      { return s.s.fwd }
func (s *willsService) forwarding() *forwarder      { return s.s.fwd }
func (c *ControllerService) forwarding() *forwarder { return c.fwd }

// forwardUnary sends a unary call that failed here with a redirect to the
// node it names, unless it was forwarded already.
func forwardUnary(ctx context.Context, srv any, method string, req any, err error) (any, error) {
	var r redirect
	if !errors.As(err, &r) || r.ForwardTo() == "" || forwarded(ctx) {
		return nil, err
	}
	hf, ok := srv.(hasForwarder)
	if !ok || hf.forwarding() == nil {
		return nil, err
	}
	return hf.forwarding().invoke(ctx, r.ForwardTo(), method, req, restrictedTo(ctx))
}
