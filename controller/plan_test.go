package controller

import (
	"fmt"
	"testing"

	"pgregory.net/rapid"

	"github.com/metamq/meta/sm"
	"github.com/metamq/meta/sm/logpb"
)

// sim applies plans the way the state machine does (same fencing), so a
// plan's effect can be checked without raft.
type sim struct {
	rev     uint64
	brokers map[string]*logpb.Broker
	assigns map[string]*logpb.ConnectorAssignment
	conns   []Connector
}

func newSim() *sim {
	return &sim{brokers: map[string]*logpb.Broker{}, assigns: map[string]*logpb.ConnectorAssignment{}}
}

func (s *sim) state() State {
	st := State{Connectors: s.conns}
	for _, b := range s.brokers {
		st.Brokers = append(st.Brokers, b)
	}
	for _, a := range s.assigns {
		st.Assignments = append(st.Assignments, a)
	}
	return st
}

func (s *sim) register(id string) {
	s.rev++
	s.brokers[id] = &logpb.Broker{BrokerId: id, Epoch: s.rev, Status: sm.BrokerAlive}
	s.unassign(id)
}

func (s *sim) down(id string) {
	s.rev++
	s.brokers[id].Status = sm.BrokerDown
	s.unassign(id)
}

func (s *sim) unassign(id string) {
	for name, a := range s.assigns {
		if a.BrokerId == id {
			s.assigns[name] = &logpb.ConnectorAssignment{Connector: name, Epoch: s.rev}
		}
	}
}

// apply applies ops with the state machine's checks; it returns how many
// owned connectors moved between brokers.
func (s *sim) apply(ops []*logpb.Assign) (moved int) {
	for _, op := range ops {
		cur := s.assigns[op.Connector]
		var epoch uint64
		if cur != nil {
			epoch = cur.Epoch
		}
		if epoch != op.ExpectedEpoch {
			continue
		}
		if op.Delete {
			delete(s.assigns, op.Connector)
			continue
		}
		if op.BrokerId != "" {
			b := s.brokers[op.BrokerId]
			if b == nil || b.Status != sm.BrokerAlive || b.Epoch != op.BrokerEpoch {
				continue
			}
		}
		if cur != nil && cur.BrokerId != "" && op.BrokerId != "" && cur.BrokerId != op.BrokerId {
			if b := s.brokers[cur.BrokerId]; b != nil && b.Status == sm.BrokerAlive && b.Epoch == cur.BrokerEpoch {
				moved++
			}
		}
		s.rev++
		s.assigns[op.Connector] = &logpb.ConnectorAssignment{Connector: op.Connector, BrokerId: op.BrokerId, BrokerEpoch: op.BrokerEpoch, Epoch: s.rev}
	}
	return moved
}

func (s *sim) loads() map[string]int {
	l := map[string]int{}
	for id, b := range s.brokers {
		if b.Status == sm.BrokerAlive {
			l[id] = 0
		}
	}
	for _, a := range s.assigns {
		if b := s.brokers[a.BrokerId]; b != nil && b.Status == sm.BrokerAlive && b.Epoch == a.BrokerEpoch {
			l[a.BrokerId]++
		}
	}
	return l
}

func spread(l map[string]int) int {
	lo, hi := -1, -1
	for _, n := range l {
		if lo < 0 || n < lo {
			lo = n
		}
		if n > hi {
			hi = n
		}
	}
	return hi - lo
}

func TestPlanAssignsBalanced(t *testing.T) {
	s := newSim()
	for i := 1; i <= 3; i++ {
		s.register(fmt.Sprintf("b%d", i))
	}
	for i := 0; i < 10; i++ {
		s.conns = append(s.conns, Connector{Name: fmt.Sprintf("c%02d", i), Run: true})
	}
	s.apply(Plan(s.state(), 2))
	if l := s.loads(); spread(l) > 1 || l["b1"]+l["b2"]+l["b3"] != 10 {
		t.Fatalf("got loads %v, want 10 connectors spread within 1", l)
	}
	// Same state, same plan: nothing more to do.
	if ops := Plan(s.state(), 2); len(ops) != 0 {
		t.Fatalf("plan of a settled state: got %d ops, want 0", len(ops))
	}
}

func TestPlanReassignsFromDownBrokerAndRebalancesBoundedOnJoin(t *testing.T) {
	s := newSim()
	s.register("b1")
	s.register("b2")
	for i := 0; i < 12; i++ {
		s.conns = append(s.conns, Connector{Name: fmt.Sprintf("c%02d", i), Run: true})
	}
	s.apply(Plan(s.state(), 2))
	s.down("b2")
	s.apply(Plan(s.state(), 2))
	if l := s.loads(); l["b1"] != 12 {
		t.Fatalf("after b2 down: got %v, want all 12 on b1", l)
	}
	// Two brokers join: each round moves at most 2; in the end loads are
	// within 1 and exactly the necessary 8 moves were made.
	s.register("b3")
	s.register("b4")
	total := 0
	for round := 0; round < 10; round++ {
		moved := s.apply(Plan(s.state(), 2))
		if moved > 2 {
			t.Fatalf("round %d moved %d connectors, want at most 2", round, moved)
		}
		total += moved
	}
	if l := s.loads(); spread(l) > 1 || total != 8 {
		t.Fatalf("after join: loads %v, %d moves; want spread <= 1 with 8 moves", l, total)
	}
}

func TestPlanStoppedAndDeletedConnectorsLoseOwners(t *testing.T) {
	s := newSim()
	s.register("b1")
	s.conns = []Connector{{Name: "a", Run: true}, {Name: "b", Run: true}}
	s.apply(Plan(s.state(), 1))
	s.conns = []Connector{{Name: "a", Run: false}}
	s.apply(Plan(s.state(), 1))
	if len(s.assigns) != 0 {
		t.Fatalf("got assignments %v, want none (a stopped, b deleted)", s.assigns)
	}
}

// Over random histories of registrations, failures and connector changes:
// no connector ever has an owner that is not alive in its epoch, every
// connector that should run gets one live owner once brokers exist, loads
// settle within 1, and epochs only rise.
func TestPlanProperties(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		s := newSim()
		epochs := map[string]uint64{}
		nb := rapid.IntRange(1, 4).Draw(rt, "brokers")
		for i := 1; i <= nb; i++ {
			s.register(fmt.Sprintf("b%d", i))
		}
		steps := rapid.IntRange(1, 30).Draw(rt, "steps")
		for step := 0; step < steps; step++ {
			switch rapid.IntRange(0, 5).Draw(rt, "event") {
			case 0:
				s.register(fmt.Sprintf("b%d", rapid.IntRange(1, 5).Draw(rt, "b")))
			case 1:
				id := fmt.Sprintf("b%d", rapid.IntRange(1, 5).Draw(rt, "b"))
				if s.brokers[id] != nil && s.brokers[id].Status == sm.BrokerAlive {
					s.down(id)
				}
			case 2:
				s.conns = append(s.conns, Connector{Name: fmt.Sprintf("c%d", step), Run: rapid.Bool().Draw(rt, "run")})
			default:
			}
			maxMoves := rapid.IntRange(1, 3).Draw(rt, "moves")
			if moved := s.apply(Plan(s.state(), maxMoves)); moved > maxMoves {
				rt.Fatalf("moved %d > %d", moved, maxMoves)
			}
			for name, a := range s.assigns {
				if a.BrokerId != "" {
					b := s.brokers[a.BrokerId]
					if b == nil || b.Status != sm.BrokerAlive || b.Epoch != a.BrokerEpoch {
						rt.Fatalf("connector %s owned by %s which is not alive in epoch %d", name, a.BrokerId, a.BrokerEpoch)
					}
				}
				if a.Epoch < epochs[name] {
					rt.Fatalf("connector %s epoch went back from %d to %d", name, epochs[name], a.Epoch)
				}
				epochs[name] = a.Epoch
			}
		}
		for i := 0; i < 20; i++ {
			s.apply(Plan(s.state(), 3))
		}
		alive := len(s.loads())
		for _, c := range s.conns {
			a := s.assigns[c.Name]
			owned := a != nil && a.BrokerId != ""
			if c.Run && alive > 0 && !owned {
				rt.Fatalf("running connector %s has no owner after settling", c.Name)
			}
			if !c.Run && a != nil {
				rt.Fatalf("stopped connector %s still has an assignment", c.Name)
			}
		}
		if alive > 0 && spread(s.loads()) > 1 {
			rt.Fatalf("loads did not settle: %v", s.loads())
		}
	})
}
