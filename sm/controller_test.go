package sm

import (
	"fmt"
	"sync/atomic"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/metamq/meta/sm/logpb"
)

// Every controller decision is fenced in apply against the state it was
// made on.
func TestControllerFencing(t *testing.T) {
	e := newEnv(t, KindMetadata)
	apply := e.applyNext()
	rs := apply(op(&logpb.BrokerRegister{BrokerId: "b1"}), op(&logpb.BrokerRegister{BrokerId: "b2"}))
	var b1 logpb.Broker
	_ = proto.Unmarshal(rs[0].Value, &b1)
	if b1.Epoch != 1 || b1.Status != BrokerAlive {
		t.Fatalf("b1: got epoch %d status %d, want 1 alive", b1.Epoch, b1.Status)
	}
	// Assign c1 to b1; a second assignment expecting "none" loses.
	rs = apply(op(&logpb.Assign{Connector: "c1", BrokerId: "b1", BrokerEpoch: 1}),
		op(&logpb.Assign{Connector: "c1", BrokerId: "b2", BrokerEpoch: 2}))
	if rs[0].Code != logpb.Code_CODE_OK || rs[1].Code != logpb.Code_CODE_COMPARE_FAILED {
		t.Fatalf("assign: got %v, %v; want OK then COMPARE_FAILED", rs[0].Code, rs[1].Code)
	}
	as, _ := e.m.Assignment("c1")
	ep1 := as.Epoch
	// b1 restarts: re-registration raises its epoch; the old twin's
	// report and a decision about the old epoch are rejected.
	apply(op(&logpb.BrokerRegister{BrokerId: "b1"}))
	rs = apply(op(&logpb.ConnectorReport{Connector: "c1", BrokerId: "b1", Epoch: ep1 - 1, State: 2}),
		op(&logpb.BrokerSetStatus{BrokerId: "b1", Epoch: 1, Status: BrokerDown}),
		op(&logpb.ConnectorReport{Connector: "c1", BrokerId: "b2", Epoch: ep1, State: 2}),
		op(&logpb.ConnectorReport{Connector: "c1", BrokerId: "b1", Epoch: ep1, State: 2}))
	for i, want := range []logpb.Code{logpb.Code_CODE_COMPARE_FAILED, logpb.Code_CODE_COMPARE_FAILED, logpb.Code_CODE_COMPARE_FAILED, logpb.Code_CODE_COMPARE_FAILED} {
		if rs[i].Code != want {
			t.Errorf("op %d: got %v, want %v", i, rs[i].Code, want)
		}
	}
	// The re-registration took c1 away from b1's stale twin.
	if as, _ := e.m.Assignment("c1"); as.BrokerId != "" || as.Epoch <= ep1 {
		t.Fatalf("after b1 re-registered: assignment %v, want unassigned with a new epoch", as)
	}
	as, _ = e.m.Assignment("c1")
	ep1 = as.Epoch
	// b2 goes down: nothing can be assigned to it.
	rs = apply(op(&logpb.BrokerSetStatus{BrokerId: "b2", Epoch: 2, Status: BrokerDown}),
		op(&logpb.Assign{Connector: "c1", BrokerId: "b2", BrokerEpoch: 2, ExpectedEpoch: ep1}))
	if rs[0].Code != logpb.Code_CODE_OK || rs[1].Code != logpb.Code_CODE_COMPARE_FAILED {
		t.Fatalf("assign to a down broker: got %v, %v", rs[0].Code, rs[1].Code)
	}
	// Epochs strictly increase per connector.
	b, _ := e.m.Broker("b1")
	rs = apply(op(&logpb.Assign{Connector: "c1", BrokerId: "b1", BrokerEpoch: b.Epoch, ExpectedEpoch: ep1}))
	as, _ = e.m.Assignment("c1")
	if rs[0].Code != logpb.Code_CODE_OK || as.Epoch <= ep1 {
		t.Fatalf("reassign: got %v epoch %d, want OK and epoch > %d", rs[0].Code, as.Epoch, ep1)
	}
}

// Declaring a broker down unassigns its connectors in the same op.
func TestBrokerDownUnassignsAtOnce(t *testing.T) {
	e := newEnv(t, KindMetadata)
	e.m.Apply(entry(t, 1, op(&logpb.BrokerRegister{BrokerId: "b1"})))
	e.m.Apply(entry(t, 2, op(&logpb.Assign{Connector: "c1", BrokerId: "b1", BrokerEpoch: 1})))
	e.m.Apply(entry(t, 3, op(&logpb.BrokerSetStatus{BrokerId: "b1", Epoch: 1, Status: BrokerDown})))
	as, _ := e.m.Assignment("c1")
	b, _ := e.m.Broker("b1")
	if as.BrokerId != "" || b.Status != BrokerDown || as.Epoch != b.ModRevision {
		t.Fatalf("after down: assignment %v broker %v, want unassigned in the same revision", as, b)
	}
}

// Fleet reads brokers and assignments in one view: while a broker is
// declared down and back again and again (its connectors unassigned in the
// same apply), no read shows it down while it still holds connectors, and
// the revision read never goes back. (Reading the two apart, as ListBrokers
// once did, showed exactly that.)
func TestFleetIsOneView(t *testing.T) {
	e := newEnv(t, KindMetadata)
	idx := uint64(0)
	apply := func(o ...*logpb.Op) {
		idx++
		e.m.Apply(entry(t, idx, o...))
	}
	// Many connectors, assigned in one apply, make a read of the
	// assignments long enough for the next apply, the down declaration,
	// to land between it and a read of the brokers.
	const rounds, connectors = 300, 200
	done := make(chan struct{})
	var stop atomic.Bool
	defer func() { stop.Store(true); <-done }() // before a failure ends the test
	go func() {
		defer close(done)
		for range rounds {
			if stop.Load() {
				return
			}
			apply(op(&logpb.BrokerRegister{BrokerId: "b1"}))
			b, err := e.m.Broker("b1")
			if err != nil || b == nil {
				t.Errorf("registered broker: %v %v", b, err)
				return
			}
			epoch := b.Epoch
			var assign []*logpb.Op
			for c := range connectors {
				assign = append(assign, op(&logpb.Assign{Connector: fmt.Sprintf("c%03d", c), BrokerId: "b1", BrokerEpoch: epoch}))
			}
			apply(assign...)
			apply(op(&logpb.BrokerSetStatus{BrokerId: "b1", Epoch: epoch, Status: BrokerDown}))
		}
	}()
	var last uint64
	reads, downs := 0, 0
	for running := true; running; reads++ {
		select {
		case <-done:
			running = false
		default:
		}
		f, err := e.m.Fleet()
		if err != nil {
			t.Fatal(err)
		}
		if f.Revision < last {
			t.Fatalf("read %d: revision %d after %d", reads, f.Revision, last)
		}
		last = f.Revision
		for _, b := range f.Brokers {
			if b.Status != BrokerDown {
				continue
			}
			downs++
			for _, as := range f.Assignments {
				if as.BrokerId == b.BrokerId {
					t.Fatalf("read %d at revision %d: %s is down and holds %s", reads, f.Revision, b.BrokerId, as.Connector)
				}
			}
		}
	}
	if downs == 0 {
		t.Fatalf("%d reads never saw the broker down: nothing checked", reads)
	}
	if as, _ := e.m.Assignments(""); len(as) != connectors || as[0].BrokerId != "" {
		t.Fatalf("after %d rounds: %d assignments, want %d, unassigned", rounds, len(as), connectors)
	}
}
