package server

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	_ "google.golang.org/grpc/encoding/proto" // registers the "proto" codec wrapped below
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	"github.com/metamq/meta/rpc/metapb"
)

// Malformed requests. gRPC answers a request it cannot decode with
// Internal, which tells a client nothing useful and looks like a server
// fault. For the public API (messages of package meta.v1) the server codec
// below instead lets the call through with an empty request and remembers
// the decoding error; the interceptors then answer InvalidArgument naming
// the request. Every other message (raft, peer calls, health) is decoded
// strictly, as before.

type lenientCodec struct {
	base encoding.CodecV2
	// maxRequest bounds a public request's encoded size: a larger one is
	// refused (InvalidArgument) without being decoded. Raft's messages,
	// on the same port, are bounded by the server's receive limit only.
	maxRequest int
}

// malformed maps a request message (by pointer) to why it was not
// decoded, from the codec to the interceptor of the same call.
var malformed sync.Map

func (c lenientCodec) Marshal(v any) (mem.BufferSlice, error) { return c.base.Marshal(v) }
func (c lenientCodec) Name() string                           { return c.base.Name() }

func (c lenientCodec) Unmarshal(data mem.BufferSlice, v any) error {
	m, public := v.(proto.Message)
	public = public && strings.HasPrefix(string(m.ProtoReflect().Descriptor().FullName()), "meta.v1.")
	if public && c.maxRequest > 0 && data.Len() > c.maxRequest {
		malformed.Store(m, fmt.Sprintf("%d bytes, over the limit of %d (--max-request-bytes)", data.Len(), c.maxRequest))
		return nil
	}
	err := c.base.Unmarshal(data, v)
	if err == nil || !public {
		return err
	}
	proto.Reset(m)
	malformed.Store(m, "malformed protobuf: "+err.Error())
	return nil
}

func checkMalformed(req any) error {
	if msg, ok := malformed.LoadAndDelete(req); ok {
		return invalidArgument("request", "request: "+msg.(string))
	}
	return nil
}

// DefaultMaxRequestBytes bounds a public request unless a node is told
// otherwise: room for the largest batch (metapb.MaxBatchBytes of
// payload) and its framing, far below the 64 MiB raft's messages may take.
const DefaultMaxRequestBytes = 2 * metapb.MaxBatchBytes

// ServerOptions are the gRPC server options the public API needs: the
// codec and interceptors that turn malformed or oversized requests into
// InvalidArgument, and that give every error of the public services its
// status (publicStatus). Pass them to the node
// (metanode.Config.ServerOptions); the node's other services (raft, peer
// calls, health) are left alone. maxRequestBytes bounds a public request
// (0: DefaultMaxRequestBytes).
func ServerOptions(maxRequestBytes ...int) []grpc.ServerOption {
	limit := DefaultMaxRequestBytes
	if len(maxRequestBytes) > 0 && maxRequestBytes[0] > 0 {
		limit = maxRequestBytes[0]
	}
	return []grpc.ServerOption{
		grpc.ForceServerCodecV2(lenientCodec{base: encoding.GetCodecV2("proto"), maxRequest: limit}),
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			if !public(info.FullMethod) {
				return h(ctx, req)
			}
			if err := checkMalformed(req); err != nil {
				return nil, publicStatus(err)
			}
			resp, err := h(ctx, req)
			if err != nil {
				resp, err = forwardUnary(ctx, info.Server, info.FullMethod, req, err)
			}
			return resp, publicStatus(err)
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			if !public(info.FullMethod) {
				return h(srv, ss)
			}
			return publicStatus(h(srv, checkedStream{ss}))
		}),
	}
}

// public reports whether a method belongs to the public API (package
// meta.v1).
func public(fullMethod string) bool { return strings.HasPrefix(fullMethod, "/meta.v1.") }

type checkedStream struct{ grpc.ServerStream }

func (s checkedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	return publicStatus(checkMalformed(m))
}
