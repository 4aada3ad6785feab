package server

import (
	"context"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/metamq/meta/rpc/metapb"
)

// redirectingKV answers Get with a redirect to next, or, without one,
// with the value "here".
type redirectingKV struct {
	metapb.UnimplementedKVServer
	next string
}

// redirectingWatch serves redirectingKV's Watch.
type redirectingWatch struct {
	metapb.UnimplementedWatchServer
	kv *redirectingKV
}

func (k *redirectingKV) Get(context.Context, *metapb.GetRequest) (*metapb.GetResponse, error) {
	if k.next != "" {
		return nil, publicStatus(coded(metapb.ReasonNotLeader, map[string]string{metapb.MetaLeaderAddr: k.next}, "not here"))
	}
	return &metapb.GetResponse{Kv: &metapb.KeyValue{Value: []byte("here")}}, nil
}

// Watch answers like Get: a redirect to next, or, without one, a first
// answer starting the restricted group at revision 7.
func (w redirectingWatch) Watch(_ *metapb.WatchRequest, stream grpc.ServerStreamingServer[metapb.WatchResponse]) error {
	if w.kv.next != "" {
		return publicStatus(coded(metapb.ReasonNotLeader, map[string]string{metapb.MetaLeaderAddr: w.kv.next}, "not here"))
	}
	g := restrictedTo(stream.Context())
	if err := stream.Send(&metapb.WatchResponse{Revisions: map[string]uint64{g: 7}, Progress: true}); err != nil {
		return err
	}
	<-stream.Context().Done()
	return nil
}

func serveKV(t *testing.T, kv *redirectingKV) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	metapb.RegisterKVServer(srv, kv)
	metapb.RegisterWatchServer(srv, redirectingWatch{kv: kv})
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

// A forwarding node follows the redirects of the node it forwarded to (a
// replica that moved away names where the group is now), a bounded number
// of times and never in a circle.
func TestForwarderFollowsRedirects(t *testing.T) {
	f := newForwarder(nil)
	t.Cleanup(func() { _ = f.close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := serveKV(t, &redirectingKV{})
	b := serveKV(t, &redirectingKV{next: c})
	a := serveKV(t, &redirectingKV{next: b})
	resp, err := f.invoke(ctx, a, metapb.KV_Get_FullMethodName, &metapb.GetRequest{Key: []byte("k")}, "")
	if err != nil {
		t.Fatalf("a -> b -> c: %v", err)
	}
	if v := string(resp.(*metapb.GetResponse).GetKv().GetValue()); v != "here" {
		t.Fatalf("got %q, want the answer of the last node", v)
	}
	// A circle ends with the redirect, not a loop.
	x := &redirectingKV{}
	xa := serveKV(t, x)
	y := serveKV(t, &redirectingKV{next: xa})
	x.next = y
	if _, err := f.invoke(ctx, xa, metapb.KV_Get_FullMethodName, &metapb.GetRequest{Key: []byte("k")}, ""); redirectAddr(err) == "" {
		t.Fatalf("circle: got %v, want the redirect", err)
	}
	// A chain longer than maxRedirects ends with the redirect.
	last := serveKV(t, &redirectingKV{})
	chain := last
	for range maxRedirects + 1 {
		chain = serveKV(t, &redirectingKV{next: chain})
	}
	if _, err := f.invoke(ctx, chain, metapb.KV_Get_FullMethodName, &metapb.GetRequest{Key: []byte("k")}, ""); redirectAddr(err) == "" {
		t.Fatalf("long chain: got %v, want the redirect", err)
	}
}

// A forwarded watch follows redirects as a forwarded call does: a node
// forwarding a watch on a stale hint reaches the group where it is now
// (it ended with the redirect, and a pinned client's watch failed on every
// attempt while the hint stayed stale).
func TestForwardedWatchFollowsRedirects(t *testing.T) {
	f := newForwarder(nil)
	t.Cleanup(func() { _ = f.close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := serveKV(t, &redirectingKV{})
	b := serveKV(t, &redirectingKV{next: c})
	a := serveKV(t, &redirectingKV{next: b})
	_, first, err := f.watch(ctx, a, "data-1", &metapb.WatchRequest{Space: metapb.WatchSpace_WATCH_SPACE_KV})
	if err != nil {
		t.Fatalf("a -> b -> c: %v", err)
	}
	if got := first.Revisions["data-1"]; got != 7 {
		t.Fatalf("first answer %v, want the last node's start for data-1", first)
	}
	x := &redirectingKV{}
	xa := serveKV(t, x)
	x.next = serveKV(t, &redirectingKV{next: xa})
	if _, _, err := f.watch(ctx, xa, "data-1", &metapb.WatchRequest{}); redirectAddr(err) == "" {
		t.Fatalf("circle: got %v, want the redirect", err)
	}
}
