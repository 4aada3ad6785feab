package server_test

import (
	"context"
	"sort"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/metamq/meta/rpc/metapb"
)

// rawCodec sends a fuzz input as a request's bytes as they are, and takes
// the response's bytes without decoding them. It is named "proto" so the
// server decodes the request as it decodes any client's.
type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(*(v.(*[]byte)))}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*(v.(*[]byte)) = data.Materialize()
	return nil
}

func (rawCodec) Name() string { return "proto" }

// publicMethod is one method of the public API as the server registered it.
type publicMethod struct {
	name   string // full method name, /meta.v1.Service/Method
	stream *grpc.StreamDesc
}

func publicMethods(srv *grpc.Server) []publicMethod {
	var out []publicMethod
	for svc, info := range srv.GetServiceInfo() {
		for _, m := range info.Methods {
			pm := publicMethod{name: "/" + svc + "/" + m.Name}
			if m.IsClientStream || m.IsServerStream {
				pm.stream = &grpc.StreamDesc{StreamName: m.Name, ClientStreams: m.IsClientStream, ServerStreams: m.IsServerStream}
			}
			out = append(out, pm)
		}
	}
	// Fixed order, so that a corpus entry names the same method every run.
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// answered says whether a status is an answer the public API may give to
// a request it decoded or could not decode: a result, or a definite
// refusal (Unavailable only with a reason that says "not applied, retry",
// such as a node that runs no controller). A panic kills the process (the
// fuzzer reports it); Internal, Unknown or Unimplemented mean the request
// reached a path that did not decide about it.
func answered(err error) bool {
	st := status.Convert(err)
	if st.Code() == codes.Unavailable {
		for _, d := range st.Details() {
			if info, ok := d.(*errdetails.ErrorInfo); ok && info.Domain == metapb.ErrorDomain {
				return metapb.ClassOf(info.Reason) == metapb.ClassRetry
			}
		}
		return false
	}
	switch st.Code() {
	case codes.OK, codes.InvalidArgument, codes.NotFound, codes.AlreadyExists,
		codes.FailedPrecondition, codes.OutOfRange, codes.ResourceExhausted,
		// A stream that was still open when the fuzz target stopped it.
		codes.DeadlineExceeded, codes.Canceled:
		return true
	}
	return false
}

// FuzzPublicRequests sends arbitrary bytes as the request of every public
// method (the first input picks the method) to the real handlers over a
// fake node: whatever the bytes, the server answers with a result or a
// definite refusal, never a crash or an undecided error.
func FuzzPublicRequests(f *testing.F) {
	n := newFakeNode(f, 2)
	srv, conn, _ := serveFakeServer(f, n)
	methods := publicMethods(srv)
	if len(methods) == 0 {
		f.Fatal("the server registered no public methods")
	}
	seeds := []proto.Message{
		&metapb.PutRequest{Key: []byte("k"), Value: []byte("v")},
		&metapb.GetRequest{Key: []byte("k")},
		&metapb.ListRequest{Prefix: []byte("k"), Limit: 10},
		&metapb.WatchRequest{},
	}
	for i := range methods {
		f.Add(uint16(i), []byte{})
		f.Add(uint16(i), []byte{0xff, 0xff, 0xff})
		for _, s := range seeds {
			b, err := proto.Marshal(s)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(uint16(i), b)
		}
	}
	f.Fuzz(func(t *testing.T, pick uint16, req []byte) {
		m := methods[int(pick)%len(methods)]
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		var err error
		if m.stream == nil {
			var resp []byte
			err = conn.Invoke(ctx, m.name, &req, &resp, grpc.ForceCodecV2(rawCodec{}))
		} else {
			err = callStream(ctx, conn, m, req)
		}
		if !answered(err) {
			t.Fatalf("%s with request %x: %v (%s), want a result or a definite refusal", m.name, req, err, status.Code(err))
		}
	})
}

// callStream opens the stream, sends the request and reads one answer
// (a stream that keeps running is stopped after a short while).
func callStream(ctx context.Context, conn *grpc.ClientConn, m publicMethod, req []byte) error {
	ctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	s, err := conn.NewStream(ctx, m.stream, m.name, grpc.ForceCodecV2(rawCodec{}))
	if err != nil {
		return err
	}
	if err := s.SendMsg(&req); err != nil {
		// The server ended the stream already: its status is in RecvMsg.
		var resp []byte
		return s.RecvMsg(&resp)
	}
	if err := s.CloseSend(); err != nil {
		return err
	}
	var resp []byte
	return s.RecvMsg(&resp)
}
