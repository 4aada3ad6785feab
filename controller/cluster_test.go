package controller_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/metamq/meta/controller"
	"github.com/metamq/meta/metanode"
	"github.com/metamq/meta/metanode/metanodetest"
	"github.com/metamq/meta/rpc/client"
	"github.com/metamq/meta/rpc/metapb"
	"github.com/metamq/meta/verify/testkit"
)

// env is a 3-node cluster whose clock the test moves, with a fast-checking
// controller: heartbeat timeout 6s of fake time.
type env struct {
	t     *testing.T
	c     *metanodetest.Cluster
	clock *testkit.FakeClock
	cl    *client.Client
}

func newEnv(t *testing.T, moves int) *env {
	clock := testkit.NewFakeClock(time.Now())
	c := metanodetest.Start(t, metanodetest.Options{
		Configure: func(cfg *metanode.Config) { cfg.Clock = clock },
		Controller: func(cfg *controller.Config) {
			cfg.CheckInterval = 50 * time.Millisecond
			cfg.RebalanceInterval = 200 * time.Millisecond
			cfg.MaxMoves = moves
			cfg.SpreadInterval = 0
		},
	})
	return &env{t: t, c: c, clock: clock, cl: c.Client("")}
}

func (e *env) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	e.t.Cleanup(cancel)
	return ctx
}

func (e *env) register(id string) uint64 {
	e.t.Helper()
	r, err := e.cl.RegisterBroker(e.ctx(), &metapb.RegisterBrokerRequest{BrokerId: id, Endpoints: []string{id + ":9092"}})
	if err != nil {
		e.t.Fatalf("register %s: %v", id, err)
	}
	return r.BrokerEpoch
}

func (e *env) heartbeat(id string, epoch uint64) metapb.BrokerStatus {
	e.t.Helper()
	r, err := e.cl.Heartbeat(e.ctx(), &metapb.HeartbeatRequest{BrokerId: id, BrokerEpoch: epoch})
	if err != nil {
		e.t.Fatalf("heartbeat %s: %v", id, err)
	}
	return r.Status
}

func (e *env) connectors(n int) {
	e.t.Helper()
	for i := 0; i < n; i++ {
		_, err := e.cl.CreateResource(e.ctx(), &metapb.CreateResourceRequest{Resource: &metapb.Resource{
			Kind: metapb.ResourceKind_RESOURCE_KIND_CONNECTOR, Name: fmt.Sprintf("c%d", i),
			Spec: &metapb.Resource_Connector{Connector: &metapb.ConnectorSpec{Type: "sink", DesiredState: metapb.ConnectorState_CONNECTOR_STATE_RUNNING}}}})
		if err != nil {
			e.t.Fatalf("create connector: %v", err)
		}
	}
}

// observer records every assignment it sees (linearizable reads) and
// checks that epochs only rise per connector and an owner change always
// comes with a new epoch.
type observer struct {
	seen  map[string]*metapb.Assignment
	moves int // owner changes between two brokers
}

func (o *observer) look(e *env) (owners map[string]string, loads map[string]int) {
	e.t.Helper()
	r, err := e.cl.ListAssignments(e.ctx(), &metapb.ListAssignmentsRequest{})
	if err != nil {
		e.t.Fatalf("list assignments: %v", err)
	}
	owners, loads = map[string]string{}, map[string]int{}
	for _, as := range r.Assignments {
		if prev := o.seen[as.Connector]; prev != nil {
			if as.Epoch < prev.Epoch || (as.Epoch == prev.Epoch && as.BrokerId != prev.BrokerId) {
				e.t.Fatalf("connector %s: epoch %d owner %q after epoch %d owner %q", as.Connector, as.Epoch, as.BrokerId, prev.Epoch, prev.BrokerId)
			}
			if prev.BrokerId != "" && as.BrokerId != "" && prev.BrokerId != as.BrokerId {
				o.moves++
			}
		}
		o.seen[as.Connector] = as
		owners[as.Connector] = as.BrokerId
		if as.BrokerId != "" {
			loads[as.BrokerId]++
		}
	}
	return owners, loads
}

func (e *env) until(what string, timeout time.Duration, cond func() bool) time.Duration {
	e.t.Helper()
	start := time.Now()
	for time.Since(start) < timeout {
		if cond() {
			return time.Since(start)
		}
		time.Sleep(20 * time.Millisecond)
	}
	e.t.Fatalf("timed out after %s waiting for %s", timeout, what)
	return 0
}

func brokerStatus(e *env, id string) metapb.BrokerStatus {
	r, err := e.cl.ListBrokers(e.ctx(), &metapb.ListBrokersRequest{})
	if err != nil {
		e.t.Fatalf("list brokers: %v", err)
	}
	for _, b := range r.Brokers {
		if b.BrokerId == id {
			return b.Status
		}
	}
	return metapb.BrokerStatus_BROKER_STATUS_UNSPECIFIED
}

// A broker that stops heartbeating is declared down after the timeout
// (fake time) and its connectors go to the live broker within a bounded
// delay; when it heartbeats again it is back up and load is rebalanced.
func TestBrokerDownAndBack(t *testing.T) {
	e := newEnv(t, 2)
	e.connectors(4)
	b1, b2 := e.register("b1"), e.register("b2")
	o := &observer{seen: map[string]*metapb.Assignment{}}
	e.until("4 connectors spread over b1 and b2", 20*time.Second, func() bool {
		_, loads := o.look(e)
		return loads["b1"] == 2 && loads["b2"] == 2
	})
	// 7s of fake time pass; only b1 heartbeats.
	for i := 0; i < 7; i++ {
		e.clock.Advance(time.Second)
		e.heartbeat("b1", b1)
	}
	took := e.until("b2 down and its connectors on b1", 10*time.Second, func() bool {
		_, loads := o.look(e)
		return brokerStatus(e, "b2") == metapb.BrokerStatus_BROKER_STATUS_DOWN && loads["b1"] == 4
	})
	t.Logf("reassigned %s (real time) after the timeout passed", took)
	if brokerStatus(e, "b1") != metapb.BrokerStatus_BROKER_STATUS_ALIVE {
		t.Fatal("b1 declared down although it heartbeats")
	}
	if st := e.heartbeat("b2", b2); st != metapb.BrokerStatus_BROKER_STATUS_ALIVE {
		t.Fatalf("b2 heartbeat after down: got %v, want ALIVE", st)
	}
	e.until("load rebalanced after b2 came back", 20*time.Second, func() bool {
		_, loads := o.look(e)
		return loads["b1"] == 2 && loads["b2"] == 2
	})
}

// Leader changes in a quiet cluster (brokers heartbeating on time) declare
// nobody dead, even though the new controller never saw a heartbeat.
func TestLeaderChangeDeclaresNobodyDead(t *testing.T) {
	e := newEnv(t, 2)
	epochs := map[string]uint64{"b1": e.register("b1"), "b2": e.register("b2")}
	beat := func() {
		for id, ep := range epochs {
			e.heartbeat(id, ep)
		}
	}
	for change := 0; change < 3; change++ {
		// Heartbeats every 2s of fake time for 10s: registration is now
		// older than the timeout.
		for i := 0; i < 5; i++ {
			e.clock.Advance(2 * time.Second)
			beat()
		}
		old := e.c.WaitLeader(metapb.MetadataGroup, 30*time.Second)
		if _, err := e.cl.TransferLeader(e.ctx(), metapb.MetadataGroup, ""); err != nil {
			t.Fatalf("transfer: %v", err)
		}
		e.until("a new metadata leader", 20*time.Second, func() bool {
			l := e.c.Leader(metapb.MetadataGroup)
			return l != "" && l != old
		})
		// 5s pass (under the 6s timeout) before the next heartbeat, and
		// the new controller checks liveness several times meanwhile.
		e.clock.Advance(5 * time.Second)
		var before uint64
		e.until("the new controller to check liveness three times", 20*time.Second, func() bool {
			st, err := e.cl.ControllerStatus(e.ctx())
			if err != nil || st.NodeId == old {
				return false
			}
			if before == 0 {
				before = st.Checks + 1
			}
			return st.Checks >= before+2
		})
		beat()
		for id := range epochs {
			if st := brokerStatus(e, id); st != metapb.BrokerStatus_BROKER_STATUS_ALIVE {
				t.Fatalf("after leader change %d: %s is %v, want ALIVE", change, id, st)
			}
		}
	}
	st, err := e.cl.ControllerStatus(e.ctx())
	if err != nil || st.BrokersDeclaredDown != 0 {
		t.Fatalf("controller status: %v (err %v), want nobody declared down", st, err)
	}
}

// Brokers joining a loaded cluster get connectors moved to them, at most
// MaxMoves per round and no more than needed; a re-registered broker's
// stale twin is fenced off.
func TestRebalanceOnJoinIsBounded(t *testing.T) {
	e := newEnv(t, 1)
	e.connectors(6)
	b1 := e.register("b1")
	o := &observer{seen: map[string]*metapb.Assignment{}}
	e.until("6 connectors on b1", 20*time.Second, func() bool {
		_, loads := o.look(e)
		return loads["b1"] == 6
	})
	e.register("b2")
	e.register("b3")
	e.heartbeat("b1", b1)
	e.until("2/2/2", 30*time.Second, func() bool {
		_, loads := o.look(e)
		return loads["b1"] == 2 && loads["b2"] == 2 && loads["b3"] == 2
	})
	if o.moves != 4 {
		t.Fatalf("rebalance moved %d connectors, want exactly the 4 needed", o.moves)
	}
	// b1 restarts and registers again: its old epoch is fenced.
	nb1 := e.register("b1")
	if nb1 <= b1 {
		t.Fatalf("re-registration epoch %d not above %d", nb1, b1)
	}
	_, err := e.cl.Heartbeat(e.ctx(), &metapb.HeartbeatRequest{BrokerId: "b1", BrokerEpoch: b1})
	if err == nil {
		t.Fatal("heartbeat with the stale epoch accepted")
	}
}
