package sm

import (
	"google.golang.org/protobuf/proto"

	"github.com/metamq/meta/sm/logpb"
)

// Broker statuses and connector run states, with the values of the public
// enums (metapb.BrokerStatus, metapb.ConnectorRunState).
const (
	BrokerAlive int32 = 1
	BrokerDown  int32 = 2

	ConnectorAssigned int32 = 1
)

// The controller's decisions are ops like any other, and every one is
// fenced here, in apply, against the state it was decided on: a status
// change names the broker epoch it is about, an assignment the epoch it
// replaces and the live broker epoch it gives the connector to, a report
// the assignment epoch it is about. A decision made on stale state (by a
// deposed controller, or before a re-registration) fails as a compare
// failure and changes nothing. In particular nothing is ever assigned to a
// broker that is not alive in the same state.

func (a *applier) getBroker(id string) (*logpb.Broker, []byte, error) {
	return getStored(a, prefixed(prefixBroker, []byte(id)), &logpb.Broker{})
}

func (a *applier) getAssignment(connector string) (*logpb.ConnectorAssignment, []byte, error) {
	return getStored(a, prefixed(prefixAssignment, []byte(connector)), &logpb.ConnectorAssignment{})
}

func (a *applier) storeBroker(b *logpb.Broker, prevRaw []byte) (*logpb.Result, error) {
	b.ModRevision = a.bump()
	return a.storeResult(logpb.Space_SPACE_BROKER, prefixed(prefixBroker, []byte(b.BrokerId)), []byte(b.BrokerId), b, prevRaw)
}

// storeAssignment stores connector's assignment and logs the change.
func (a *applier) storeAssignment(connector string, as *logpb.ConnectorAssignment, prevRaw []byte) (*logpb.Result, error) {
	return a.storeResult(logpb.Space_SPACE_ASSIGNMENT, prefixed(prefixAssignment, []byte(connector)), []byte(connector), as, prevRaw)
}

func (a *applier) brokerRegister(r *logpb.BrokerRegister) (*logpb.Result, error) {
	if r.BrokerId == "" {
		return invalid("empty broker id"), nil
	}
	_, prevRaw, err := a.getBroker(r.BrokerId)
	if err != nil {
		return nil, err
	}
	rev := a.bump()
	b := &logpb.Broker{BrokerId: r.BrokerId, Epoch: rev, Status: BrokerAlive, Endpoints: r.Endpoints, Rack: r.Rack,
		RegisteredAtUnixNano: a.now, StatusChangedAtUnixNano: a.now}
	// The previous incarnation's connectors are its stale twin's: take
	// them away in the same op.
	if err := a.unassignBroker(r.BrokerId); err != nil {
		return nil, err
	}
	return a.storeBroker(b, prevRaw)
}

// unassignBroker unassigns every connector a broker holds, each under the
// current op's revision as its new epoch.
func (a *applier) unassignBroker(brokerID string) error {
	var held []*logpb.ConnectorAssignment
	var raws [][]byte
	var derr error
	err := a.b.Scan(a.m.space, []byte{prefixAssignment}, []byte{prefixAssignment + 1}, func(_, v []byte) bool {
		as := &logpb.ConnectorAssignment{}
		if derr = proto.Unmarshal(v, as); derr != nil {
			return false
		}
		if as.BrokerId == brokerID {
			held = append(held, as)
			raws = append(raws, append([]byte(nil), v...))
		}
		return true
	})
	if err != nil {
		return err
	}
	if derr != nil {
		return derr
	}
	rev := a.bump()
	for i, as := range held {
		un := &logpb.ConnectorAssignment{Connector: as.Connector, Epoch: rev, AssignedAtUnixNano: a.now, ModRevision: rev}
		if _, err := a.storeAssignment(as.Connector, un, raws[i]); err != nil {
			return err
		}
	}
	return nil
}

func (a *applier) brokerSetStatus(s *logpb.BrokerSetStatus) (*logpb.Result, error) {
	if s.Status != BrokerAlive && s.Status != BrokerDown {
		return invalid("unknown broker status %d", s.Status), nil
	}
	b, raw, err := a.getBroker(s.BrokerId)
	if err != nil {
		return nil, err
	}
	if b == nil {
		return notFound("broker %q not registered", s.BrokerId), nil
	}
	if b.Epoch != s.Epoch {
		return &logpb.Result{Code: logpb.Code_CODE_COMPARE_FAILED, Message: "stale broker epoch", PrevValue: raw}, nil
	}
	if b.Status == s.Status {
		return &logpb.Result{Value: raw, PrevValue: raw}, nil
	}
	b.Status, b.StatusChangedAtUnixNano = s.Status, a.now
	if s.Status == BrokerDown {
		// Nothing stays assigned to a broker declared down, not even
		// until the controller's next round.
		if err := a.unassignBroker(b.BrokerId); err != nil {
			return nil, err
		}
	}
	return a.storeBroker(b, raw)
}

func (a *applier) assign(s *logpb.Assign) (*logpb.Result, error) {
	if s.Connector == "" {
		return invalid("empty connector"), nil
	}
	cur, curRaw, err := a.getAssignment(s.Connector)
	if err != nil {
		return nil, err
	}
	var curEpoch uint64
	if cur != nil {
		curEpoch = cur.Epoch
	}
	if curEpoch != s.ExpectedEpoch {
		return &logpb.Result{Code: logpb.Code_CODE_COMPARE_FAILED, Message: "assignment changed", PrevValue: curRaw}, nil
	}
	key := prefixed(prefixAssignment, []byte(s.Connector))
	if s.Delete {
		if cur == nil {
			return &logpb.Result{}, nil
		}
		a.bump()
		a.b.Delete(a.m.space, key)
		if err := a.emit(logpb.Space_SPACE_ASSIGNMENT, []byte(s.Connector), nil, curRaw, true); err != nil {
			return nil, err
		}
		return &logpb.Result{PrevValue: curRaw, Count: 1}, nil
	}
	if s.BrokerId != "" {
		b, _, err := a.getBroker(s.BrokerId)
		if err != nil {
			return nil, err
		}
		if b == nil || b.Status != BrokerAlive || b.Epoch != s.BrokerEpoch {
			return &logpb.Result{Code: logpb.Code_CODE_COMPARE_FAILED, Message: "broker not alive at that epoch", PrevValue: curRaw}, nil
		}
	}
	rev := a.bump()
	as := &logpb.ConnectorAssignment{Connector: s.Connector, BrokerId: s.BrokerId, BrokerEpoch: s.BrokerEpoch,
		Epoch: rev, AssignedAtUnixNano: a.now, ModRevision: rev}
	if s.BrokerId != "" {
		as.State = ConnectorAssigned
	} else {
		as.BrokerEpoch = 0
	}
	return a.storeAssignment(s.Connector, as, curRaw)
}

func (a *applier) connectorReport(r *logpb.ConnectorReport) (*logpb.Result, error) {
	cur, curRaw, err := a.getAssignment(r.Connector)
	if err != nil {
		return nil, err
	}
	if cur == nil {
		return notFound("connector %q has no assignment", r.Connector), nil
	}
	if cur.Epoch != r.Epoch || cur.BrokerId != r.BrokerId || r.BrokerId == "" {
		return &logpb.Result{Code: logpb.Code_CODE_COMPARE_FAILED, Message: "stale assignment epoch", PrevValue: curRaw}, nil
	}
	cur.State, cur.Error = r.State, r.Error
	cur.ModRevision = a.bump()
	return a.storeAssignment(r.Connector, cur, curRaw)
}
