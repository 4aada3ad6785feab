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

func (k *redirectingKV) Get(context.Context, *metapb.GetRequest) (*metapb.GetResponse, error) {
	if k.next != "" {
		return nil, publicStatus(coded(metapb.ReasonNotLeader, map[string]string{metapb.MetaLeaderAddr: k.next}, "not here"))
	}
	return &metapb.GetResponse{Kv: &metapb.KeyValue{Value: []byte("here")}}, nil
}

func serveKV(t *testing.T, kv *redirectingKV) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	metapb.RegisterKVServer(srv, kv)
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
