package server

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/metamq/meta/rpc/metapb"
	"github.com/metamq/meta/verify/testkit"
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
	srv := grpc.NewServer()
	metapb.RegisterKVServer(srv, kv)
	metapb.RegisterWatchServer(srv, redirectingWatch{kv: kv})
	return testkit.Serve(t, srv)
}

// serveCircle serves two nodes that redirect to each other and returns
// the address of one.
func serveCircle(t *testing.T) string {
	x := &redirectingKV{}
	xa := serveKV(t, x)
	x.next = serveKV(t, &redirectingKV{next: xa})
	return xa
}

// A forwarding node follows the redirects of the node it forwarded to (a
// replica that moved away names where the group is now), a bounded number
// of times and never in a circle: for a call, and for a watch (which
// ended with the redirect, so that a pinned client's watch failed on
// every attempt while its node's hint stayed stale).
func TestForwardingFollowsRedirects(t *testing.T) {
	f := newForwarder(nil)
	t.Cleanup(func() { _ = f.close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, tc := range []struct {
		name string
		// do forwards to addr and returns what the last node answered.
		do   func(addr string) (string, error)
		want string
	}{
		{"call", func(addr string) (string, error) {
			resp, err := f.invoke(ctx, addr, metapb.KV_Get_FullMethodName, &metapb.GetRequest{Key: []byte("k")}, "")
			if err != nil {
				return "", err
			}
			return string(resp.(*metapb.GetResponse).GetKv().GetValue()), nil
		}, "here"},
		{"watch", func(addr string) (string, error) {
			_, first, err := f.watch(ctx, addr, "data-1", &metapb.WatchRequest{Space: metapb.WatchSpace_WATCH_SPACE_KV})
			if err != nil {
				return "", err
			}
			return fmt.Sprint(first.Revisions["data-1"]), nil
		}, "7"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := serveKV(t, &redirectingKV{})
			b := serveKV(t, &redirectingKV{next: c})
			a := serveKV(t, &redirectingKV{next: b})
			if got, err := tc.do(a); err != nil || got != tc.want {
				t.Fatalf("a -> b -> c: got %q, %v; want the answer of the last node, %q", got, err, tc.want)
			}
			// A circle ends with the redirect, not a loop.
			if _, err := tc.do(serveCircle(t)); redirectAddr(err) == "" {
				t.Fatalf("circle: got %v, want the redirect", err)
			}
			// A chain longer than maxRedirects ends with the redirect.
			chain := serveKV(t, &redirectingKV{})
			for range maxRedirects + 1 {
				chain = serveKV(t, &redirectingKV{next: chain})
			}
			if _, err := tc.do(chain); redirectAddr(err) == "" {
				t.Fatalf("long chain: got %v, want the redirect", err)
			}
		})
	}
}
