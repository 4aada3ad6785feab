package client_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/metamq/meta/controller"
	"github.com/metamq/meta/metanode"
	"github.com/metamq/meta/metanode/metanodetest"
	"github.com/metamq/meta/rpc/client"
	"github.com/metamq/meta/rpc/metapb"
	"github.com/metamq/meta/verify/poll"
	"github.com/metamq/meta/verify/testkit"
)

// A client pinned to the map from before a split (it stopped following
// the directory) writes a key the split moved: the node refuses the call
// routed to the parent with WRONG_GROUP carrying its ranges (the child
// owns the key there), the client takes them from the error (no
// directory read) and its next try succeeds in the child. A batch built
// on the old map, whose keys the split spread over both groups, is sent
// again by the new map and applies in both.
func TestStaleMapTakesRangesFromWrongGroup(t *testing.T) {
	c := metanodetest.Start(t, metanodetest.Options{
		Configure: func(cfg *metanode.Config) {
			cfg.ReconcileInterval = 200 * time.Millisecond
			cfg.ReportInterval = 200 * time.Millisecond
		},
		Controller: func(cfg *controller.Config) { cfg.PlacementInterval = 200 * time.Millisecond },
	})
	admin, stale, staleBatch := c.Client(""), c.Client(""), c.Client("")
	low, high := keyOnEachSide()
	for _, cl := range []*client.Client{stale, staleBatch} {
		poll.For(t, "the client's map", 30*time.Second, func() error {
			g, v := client.DataRoute(cl, high)
			return poll.Check(client.HasRanges(cl) && g == "data-0" && v > 0, fmt.Sprintf("%s at %d", g, v))
		})
		client.StopFollowing(cl)
	}
	_, oldVersion := client.DataRoute(stale, high)

	split, err := admin.SplitGroup(ctxT(t), "data-0", 0)
	if err != nil {
		t.Fatalf("split: %v", err)
	}
	child := split.Child
	poll.For(t, "the split done on every node", 60*time.Second, func() error {
		for _, id := range c.IDs() {
			if g := c.Running(id).Router().DataGroup(high); g != child {
				return fmt.Errorf("%s routes the key to %s", id, g)
			}
		}
		return nil
	})

	// The node's answer to a call routed by the old map.
	conn, err := grpc.NewClient("passthrough:///"+c.Endpoints()[0], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rctx := metadata.AppendToOutgoingContext(ctxT(t), metapb.MDRouteGroup, "data-0", metapb.MDRouteVersion, strconv.FormatUint(oldVersion, 10))
	_, err = metapb.NewKVClient(conn).Put(rctx, &metapb.PutRequest{Key: high, Value: []byte("x")})
	info := errorInfo(err)
	if info == nil || info.Reason != metapb.ReasonWrongGroup {
		t.Fatalf("a put routed to data-0 by the map of version %d: got %v, want WRONG_GROUP", oldVersion, err)
	}
	ranges, perr := metapb.ParseRanges(info.Metadata[metapb.MetaRanges])
	v, _ := strconv.ParseUint(info.Metadata[metapb.MetaRangeVersion], 10, 64)
	r := &metapb.Router{Data: ranges, Version: v}
	if perr != nil || r.DataGroup(high) != child || r.DataGroup(low) != "data-0" || v <= oldVersion {
		t.Fatalf("WRONG_GROUP's ranges %q at %d (%v): want %s owning the key, data-0 the other half, above version %d",
			info.Metadata[metapb.MetaRanges], v, perr, child, oldVersion)
	}

	// The Go client: its map still says data-0; the put lands in the
	// child, and the client now routes by the error's ranges.
	if g, _ := client.DataRoute(stale, high); g != "data-0" {
		t.Fatalf("the pinned client routes the key to %s, want data-0 (its old map)", g)
	}
	resp, err := stale.Put(ctxT(t), &metapb.PutRequest{Key: high, Value: []byte("v1")})
	if err != nil || resp.Header.GetGroup() != child {
		t.Fatalf("put by the old map: got %v (header %v), want applied in %s", err, resp.GetHeader(), child)
	}
	// It learned the ranges from the error its put got (it follows no
	// watch): the map of that error, at least v; later when the
	// directory moved on meanwhile (the split's last step, the parent's
	// drop, records after every node routes the key to the child).
	if g, gv := client.DataRoute(stale, high); g != child || gv < v {
		t.Fatalf("after the put the client routes the key to %s at %d, want %s at %d or later (from the error)", g, gv, child, v)
	}

	// A batch built on the old map (a second client stopped likewise
	// before the split: one part, for data-0): both halves apply, each in
	// the group that owns it now.
	if g, _ := client.DataRoute(staleBatch, high); g != "data-0" {
		t.Fatalf("the second pinned client routes the key to %s, want data-0 (its old map)", g)
	}
	mp, err := staleBatch.MultiPut(ctxT(t), &metapb.MultiPutRequest{Puts: []*metapb.PutRequest{
		{Key: low, Value: []byte("b0")}, {Key: high, Value: []byte("b1")}}})
	if err != nil || len(mp.Parts) != 2 || mp.Results[0].Header.GetGroup() != "data-0" || mp.Results[1].Header.GetGroup() != child {
		t.Fatalf("multi-put across the split: got %v, %v; want two parts applied, in data-0 and %s", mp, err, child)
	}
	for _, k := range [][]byte{low, high} {
		g, err := admin.Get(ctxT(t), &metapb.GetRequest{Key: k})
		if err != nil || g.Kv == nil || string(g.Kv.Value[:1]) != "b" {
			t.Fatalf("get %s: %v, %v", k, g, err)
		}
	}
}

// keyOnEachSide returns a key in the lower and one in the upper half of
// the route hash space (a midpoint split of data-0 moves the upper).
func keyOnEachSide() (low, high []byte) {
	for i := 0; low == nil || high == nil; i++ {
		k := []byte(fmt.Sprintf("route/%d", i))
		if metapb.RouteHash(k) < 1<<31 {
			low = k
		} else {
			high = k
		}
	}
	return low, high
}

func errorInfo(err error) *errdetails.ErrorInfo {
	st, ok := status.FromError(err)
	if !ok || err == nil {
		return nil
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.Domain == metapb.ErrorDomain {
			return info
		}
	}
	return nil
}

func ctxT(t *testing.T) context.Context { t.Helper(); return testkit.Context(t, 30*time.Second) }
