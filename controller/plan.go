package controller

import (
	"sort"

	"github.com/metamq/meta/sm"
	"github.com/metamq/meta/sm/logpb"
)

// Connector is a connector resource as the controller needs it.
type Connector struct {
	Name string
	// Run is false when the connector's desired state is STOPPED: it
	// should have no owner.
	Run bool
}

// State is what a plan is made from.
type State struct {
	Brokers     []*logpb.Broker
	Assignments []*logpb.ConnectorAssignment
	Connectors  []Connector
}

// Plan returns the assignment ops that bring the state toward: every
// connector that should run owned by one live broker, loads differing by
// at most one, with at most maxMoves connectors moved off live brokers to
// rebalance (moves that only fix an unowned connector are not limited).
// It is deterministic: the same state gives the same plan.
func Plan(st State, maxMoves int) []*logpb.Assign {
	alive := map[string]*logpb.Broker{}
	var ids []string
	for _, b := range st.Brokers {
		if b.Status == sm.BrokerAlive {
			alive[b.BrokerId] = b
			ids = append(ids, b.BrokerId)
		}
	}
	sort.Strings(ids)
	owned := func(as *logpb.ConnectorAssignment) bool {
		b := alive[as.BrokerId]
		return as.BrokerId != "" && b != nil && b.Epoch == as.BrokerEpoch
	}
	byName := map[string]*logpb.ConnectorAssignment{}
	load := map[string][]string{} // broker -> connectors it owns
	for _, as := range st.Assignments {
		byName[as.Connector] = as
		if owned(as) {
			load[as.BrokerId] = append(load[as.BrokerId], as.Connector)
		}
	}
	want := map[string]bool{}
	var ops []*logpb.Assign
	conns := append([]Connector(nil), st.Connectors...)
	sort.Slice(conns, func(i, j int) bool { return conns[i].Name < conns[j].Name })
	least := func() string {
		best := ""
		for _, id := range ids {
			if best == "" || len(load[id]) < len(load[best]) {
				best = id
			}
		}
		return best
	}
	for _, c := range conns {
		want[c.Name] = c.Run
		as := byName[c.Name]
		var epoch uint64
		if as != nil {
			epoch = as.Epoch
		}
		if !c.Run {
			if as != nil {
				ops = append(ops, &logpb.Assign{Connector: c.Name, ExpectedEpoch: epoch, Delete: true})
			}
			continue
		}
		if as != nil && owned(as) {
			continue
		}
		target := least()
		if target == "" {
			if as != nil && as.BrokerId != "" {
				ops = append(ops, &logpb.Assign{Connector: c.Name, ExpectedEpoch: epoch})
			}
			continue
		}
		ops = append(ops, &logpb.Assign{Connector: c.Name, BrokerId: target, BrokerEpoch: alive[target].Epoch, ExpectedEpoch: epoch})
		load[target] = append(load[target], c.Name)
		byName[c.Name] = &logpb.ConnectorAssignment{Connector: c.Name, BrokerId: target, BrokerEpoch: alive[target].Epoch, Epoch: epoch}
	}
	// Assignments of connectors that no longer exist.
	var gone []string
	for name := range byName {
		if _, ok := want[name]; !ok {
			gone = append(gone, name)
		}
	}
	sort.Strings(gone)
	for _, name := range gone {
		if as := byName[name]; as.Epoch != 0 {
			ops = append(ops, &logpb.Assign{Connector: name, ExpectedEpoch: as.Epoch, Delete: true})
		}
	}
	// Rebalance: move from the most to the least loaded broker while they
	// differ by more than one.
	for moves := 0; moves < maxMoves && len(ids) > 1; moves++ {
		most, few := "", ""
		for _, id := range ids {
			if most == "" || len(load[id]) > len(load[most]) {
				most = id
			}
			if few == "" || len(load[id]) < len(load[few]) {
				few = id
			}
		}
		if len(load[most])-len(load[few]) <= 1 {
			break
		}
		held := load[most]
		sort.Strings(held)
		c := held[len(held)-1]
		as := byName[c]
		if as.Epoch == 0 {
			break // assigned in this very plan; wait for it to apply
		}
		ops = append(ops, &logpb.Assign{Connector: c, BrokerId: few, BrokerEpoch: alive[few].Epoch, ExpectedEpoch: as.Epoch})
		load[most] = held[:len(held)-1]
		load[few] = append(load[few], c)
	}
	return ops
}
