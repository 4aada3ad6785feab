package transport

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"go.uber.org/goleak"
	"google.golang.org/grpc"

	"github.com/metamq/meta/rpc/transport/raftpb"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// dialCounter is a Config.Dialer that counts connections per address.
type dialCounter struct {
	mu    sync.Mutex
	dials map[string]int
}

func newDialCounter() *dialCounter { return &dialCounter{dials: map[string]int{}} }

func (d *dialCounter) dial(ctx context.Context, addr string) (net.Conn, error) {
	d.mu.Lock()
	d.dials[addr]++
	d.mu.Unlock()
	var nd net.Dialer
	return nd.DialContext(ctx, "tcp", addr)
}

func (d *dialCounter) count(addr string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.dials[addr]
}

// testNode is a Manager served by its own gRPC server on 127.0.0.1:0.
type testNode struct {
	addr   string
	mgr    *Manager
	srv    *grpc.Server
	dialer *dialCounter

	mu    sync.Mutex
	calls map[string]int // incoming calls by full method name
}

func (n *testNode) countCall(method string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.calls[method]++
}

// called returns how many calls of method the node's server received.
func (n *testNode) called(method string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.calls[method]
}

// msgSuffix: calls[method+msgSuffix] counts the messages received on
// method's streams.
const msgSuffix = " messages"

// countingStream counts the messages a server stream receives.
type countingStream struct {
	grpc.ServerStream
	n   *testNode
	key string
}

func (s countingStream) RecvMsg(m any) error {
	err := s.ServerStream.RecvMsg(m)
	if err == nil {
		s.n.countCall(s.key)
	}
	return err
}

// batches returns how many heartbeat batches the node's server received,
// in Heartbeats calls and on HeartbeatStream streams.
func (n *testNode) batches() int {
	return n.called(raftpb.RaftService_Heartbeats_FullMethodName) + n.called(raftpb.RaftService_HeartbeatStream_FullMethodName+msgSuffix)
}

// startNode starts a node; edit adjusts its Config. The node is stopped in
// t.Cleanup: the Manager first (it unblocks handlers waiting on groups),
// then the server, which waits for its handlers.
func startNode(t testing.TB, cluster string, edit func(*Config)) *testNode {
	t.Helper()
	return startNodeServing(t, cluster, edit, (*Manager).Register)
}

// startNodeServing starts a node whose server gets its services from
// register (startNode: Manager.Register).
func startNodeServing(t testing.TB, cluster string, edit func(*Config), register func(*Manager, grpc.ServiceRegistrar)) *testNode {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n := &testNode{addr: lis.Addr().String(), dialer: newDialCounter(), calls: map[string]int{}}
	cfg := Config{ClusterID: cluster, LocalAddr: n.addr, Dialer: n.dialer.dial}
	if edit != nil {
		edit(&cfg)
	}
	n.mgr, err = NewManager(cfg)
	if err != nil {
		t.Fatal(err)
	}
	n.srv = grpc.NewServer(append(n.mgr.ServerOptions(),
		grpc.WaitForHandlers(true),
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			n.countCall(info.FullMethod)
			return h(ctx, req)
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			n.countCall(info.FullMethod)
			return h(srv, countingStream{ss, n, info.FullMethod + msgSuffix})
		}),
	)...)
	register(n.mgr, n.srv)
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = n.srv.Serve(lis)
	}()
	t.Cleanup(func() {
		if err := n.mgr.Close(); err != nil {
			t.Errorf("Manager.Close: %v", err)
		}
		n.srv.Stop()
		<-served
	})
	return n
}

// group opens a group transport and closes it in t.Cleanup.
func (n *testNode) group(t testing.TB, name string) *Transport {
	t.Helper()
	tr, err := n.mgr.Group(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Close() })
	return tr
}

// openPipeline opens tr's pipeline to the node to and closes it in
// t.Cleanup.
func openPipeline(t testing.TB, tr *Transport, to *testNode) raft.AppendPipeline {
	t.Helper()
	p, err := tr.AppendEntriesPipeline("b", raft.ServerAddress(to.addr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// serveConsumer answers every RPC on tr's consumer with respond until the
// test ends (t.Cleanup stops it and waits).
func serveConsumer(t testing.TB, tr *Transport, respond func(rpc raft.RPC) (any, error)) {
	t.Helper()
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case rpc := <-tr.Consumer():
				resp, err := respond(rpc)
				rpc.Respond(resp, err)
			case <-stop:
				return
			}
		}
	}()
	t.Cleanup(func() {
		close(stop)
		<-done
	})
}

// stopsGracefully stops n's server gracefully and reports whether it
// stopped within d (else it stops it at once): a graceful stop waits for
// every handler.
func (n *testNode) stopsGracefully(d time.Duration) bool {
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		n.srv.GracefulStop()
	}()
	select {
	case <-stopped:
		return true
	case <-time.After(d):
		n.srv.Stop()
		return false
	}
}
