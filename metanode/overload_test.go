package metanode

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/metamq/meta/rocks"
	"github.com/metamq/meta/rpc/metapb"
	"github.com/metamq/meta/sm"
	"github.com/metamq/meta/sm/logpb"
	"github.com/metamq/meta/sm/state"
)

// A client's operation that finds its group's proposal queue full is
// refused at once with a definite, retryable OVERLOADED (never queued),
// instead of waiting out its deadline; the node's and the controller's
// own operations (a broker's liveness, here) wait for room instead of
// being shed behind bulk writes.
func TestFullQueueShedsClientOpsNotControllerOps(t *testing.T) {
	life := newLifetime(context.Background())
	defer life.End()
	db, err := rocks.Open(rocks.DefaultOptions(t.TempDir()), []string{"data-0"})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	fsm, err := sm.New(sm.Config{Kind: sm.KindData, Group: "data-0", DB: db})
	if err != nil {
		t.Fatal(err)
	}
	defer fsm.Close()
	dir := func() *state.Directory { return &state.Directory{} }
	g := &group{name: "data-0", proposals: make(chan *proposal, 1), life: life, fsm: fsm, env: &env{directory: dir}}
	g.proposals <- &proposal{} // the queue is full; no batcher drains it

	put := &logpb.Op{Op: &logpb.Op_Put{Put: &logpb.KVPut{Key: []byte("k"), Value: []byte("v")}}}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := time.Now()
	_, err = g.proposeLocal(ctx, put)
	if !errors.Is(err, ErrOverloaded) {
		t.Fatalf("put into a full queue: %v, want ErrOverloaded", err)
	}
	if waited := time.Since(start); waited > 10*time.Second {
		t.Fatalf("the refusal took %s: it must not wait for the deadline", waited)
	}
	if r := metapb.ReasonOf(err); r != metapb.ReasonOverloaded || metapb.ClassOf(r) != metapb.ClassRetry || metapb.CodeOf(r).String() != "ResourceExhausted" {
		t.Fatalf("reason %q: want OVERLOADED, definitely not applied, ResourceExhausted", r)
	}

	// The controller's operation waits for room: once the batcher takes
	// the queued proposal, it is queued (and answered by the batcher).
	status := &logpb.Op{Op: &logpb.Op_BrokerSetStatus{BrokerSetStatus: &logpb.BrokerSetStatus{BrokerId: "b1"}}}
	queued := make(chan error, 1)
	go func() {
		_, err := g.proposeLocal(ctx, status)
		queued <- err
	}()
	select {
	case err := <-queued:
		t.Fatalf("a controller operation was answered (%v) while the queue was full: it must wait", err)
	case <-time.After(200 * time.Millisecond):
	}
	<-g.proposals // the batcher takes the waiting proposal
	p := <-g.proposals
	if p.op != status {
		t.Fatalf("queued %v, want the controller's operation", p.op)
	}
	p.done <- outcome{res: &logpb.Result{}}
	if err := <-queued; err != nil {
		t.Fatal(err)
	}
	if sheddable(&logpb.Op{Op: &logpb.Op_LeaseKeepAlive{LeaseKeepAlive: &logpb.LeaseKeepAlive{Id: 1}}}) {
		t.Fatal("a lease keep-alive is shed: a shed keep-alive can expire a live client's lease")
	}
}
