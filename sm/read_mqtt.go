package sm

import (
	"encoding/binary"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/metamq/meta/rocks"
	"github.com/metamq/meta/sm/logpb"
	"github.com/metamq/meta/sm/state"
)

// getMsg reads one stored message; nil when absent.
func getMsg[T proto.Message](m *Machine, key []byte, fresh func() T) (T, error) {
	var out T
	err := m.read(func() error {
		if rk, ok := rawRoute(key); ok {
			if err := m.checkRead(rk); err != nil {
				return err
			}
		}
		v, ok, err := m.space.Get(key)
		if err != nil || !ok {
			return err
		}
		msg := fresh()
		if err := proto.Unmarshal(v, msg); err != nil {
			return err
		}
		out = msg
		return nil
	})
	return out, err
}

// scanMsgs pages through stored messages under prefix p, strictly after
// startAfter (a suffix of the key after p), keeping those keep accepts, up
// to limit; more reports whether more follow.
func scanMsgs[T proto.Message](m *Machine, p []byte, startAfter string, limit int, fresh func() T, keep func(suffix []byte, msg T) bool) (out []T, more bool, err error) {
	start := p
	if startAfter != "" {
		start = append(prefixed(p[0], p[1:], []byte(startAfter)), 0)
	}
	err = m.read(func() error {
		if err := m.checkList(); err != nil {
			return err
		}
		var derr error
		serr := m.space.Scan(start, prefixEnd(p), func(k, v []byte) bool {
			if rk, ok := rawRoute(k); ok && !m.owns(rk) {
				return true // listed by the group that owns it
			}
			msg := fresh()
			if derr = proto.Unmarshal(v, msg); derr != nil {
				return false
			}
			if keep != nil && !keep(k[len(p):], msg) {
				return true
			}
			if len(out) == limit {
				more = true
				return false
			}
			out = append(out, msg)
			return true
		})
		if serr != nil {
			return serr
		}
		return derr
	})
	return out, more, err
}

// Resource returns a metadata resource, or nil.
func (m *Machine) Resource(kind int32, name string) (*logpb.Resource, error) {
	return getMsg(m, resourceKey(kind, name), func() *logpb.Resource { return &logpb.Resource{} })
}

// Resources pages through one kind in name order.
func (m *Machine) Resources(kind int32, namePrefix, startAfter string, limit int) ([]*logpb.Resource, bool, error) {
	p := prefixed(prefixResource, []byte{byte(kind)})
	return scanMsgs(m, p, startAfter, limit, func() *logpb.Resource { return &logpb.Resource{} },
		func(suffix []byte, _ *logpb.Resource) bool { return strings.HasPrefix(string(suffix), namePrefix) })
}

// Session returns an MQTT session, or nil.
func (m *Machine) Session(clientID string) (*logpb.Session, error) {
	return getMsg(m, prefixed(prefixSession, []byte(clientID)), func() *logpb.Session { return &logpb.Session{} })
}

// Sessions pages through sessions in client id order, optionally only
// those held by one broker.
func (m *Machine) Sessions(startAfter string, limit int, brokerID string) ([]*logpb.Session, bool, error) {
	return scanMsgs(m, []byte{prefixSession}, startAfter, limit, func() *logpb.Session { return &logpb.Session{} },
		func(_ []byte, s *logpb.Session) bool { return brokerID == "" || s.BrokerId == brokerID })
}

// Will returns a will, or nil.
func (m *Machine) Will(clientID string) (*logpb.Will, error) {
	return getMsg(m, prefixed(prefixWill, []byte(clientID)), func() *logpb.Will { return &logpb.Will{} })
}

// DueWills returns wills that are due, or whose due time or claim expiry
// is at or before now (the leader will mark them due; a claim decides in
// raft anyway), in client id order.
func (m *Machine) DueWills(now int64, startAfter string, limit int) ([]*logpb.Will, bool, error) {
	ids := map[string]bool{}
	err := m.read(func() error {
		if err := m.space.Scan([]byte{prefixWillDue}, []byte{prefixWillDue + 1}, func(k, _ []byte) bool {
			ids[string(k[1:])] = true
			return true
		}); err != nil {
			return err
		}
		return m.space.Scan([]byte{prefixWillTimer}, timerKey(prefixWillTimer, now+1, nil), func(k, _ []byte) bool {
			if _, id, err := parseTimerKey(k); err == nil {
				ids[string(id)] = true
			}
			return true
		})
	})
	if err != nil {
		return nil, false, err
	}
	sorted := make([]string, 0, len(ids))
	for id := range ids {
		if id > startAfter && m.owns([]byte(id)) {
			sorted = append(sorted, id)
		}
	}
	sortStrings(sorted)
	var out []*logpb.Will
	for _, id := range sorted {
		if len(out) == limit {
			return out, true, nil
		}
		w, err := m.Will(id)
		if err != nil {
			return nil, false, err
		}
		if w != nil {
			out = append(out, w)
		}
	}
	return out, false, nil
}

// Retained returns a topic's retained message, or nil.
func (m *Machine) Retained(topic string) (*logpb.Retained, error) {
	return getMsg(m, prefixed(prefixRetained, []byte(topic)), func() *logpb.Retained { return &logpb.Retained{} })
}

// RetainedEntry is a retained message with its topic.
type RetainedEntry = state.RetainedEntry

// RetainedList pages through retained messages whose topic starts with
// prefix and satisfies match, in topic order.
func (m *Machine) RetainedList(prefix, startAfter string, limit int, match func(topic string) bool) ([]RetainedEntry, bool, error) {
	p := prefixed(prefixRetained, []byte(prefix))
	start := p
	if startAfter != "" && startAfter >= prefix {
		start = append(prefixed(prefixRetained, []byte(startAfter)), 0)
	}
	var skip func(topic []byte) bool
	if match != nil {
		skip = func(topic []byte) bool { return !match(string(topic)) }
	}
	return scanPage(m, start, prefixEnd(p), limit, skip, func() *logpb.Retained { return &logpb.Retained{} },
		func(topic []byte, r *logpb.Retained) RetainedEntry {
			return RetainedEntry{Topic: string(topic), Msg: r}
		})
}

// Lease returns a lease, or nil.
func (m *Machine) Lease(id int64) (*logpb.Lease, error) {
	return getMsg(m, leaseKey(id), func() *logpb.Lease { return &logpb.Lease{} })
}

// LeaseKeys returns up to limit keys attached to a lease.
func (m *Machine) LeaseKeys(id int64, limit int) ([][]byte, error) {
	p := prefixed(prefixLeaseKeys, be64(uint64(id)))
	var out [][]byte
	err := m.read(func() error {
		if err := m.checkList(); err != nil {
			return err
		}
		return m.space.Scan(p, prefixEnd(p), func(k, _ []byte) bool {
			if m.owns(k[len(p):]) {
				out = append(out, append([]byte(nil), k[len(p):]...))
			}
			return len(out) < limit
		})
	})
	return out, err
}

// Timers lists what the leader must act on at time now, up to limit of
// each: disconnected sessions past their expiry, wills whose due time or
// claim expiry has passed, leases past their expiry.
type Timers struct {
	Sessions []string
	Wills    []string
	Leases   []int64
	// Next is the earliest future timer (0 when none), so the leader can
	// sleep until then.
	Next int64
}

// DueTimers scans the time indexes.
func (m *Machine) DueTimers(now int64, limit int) (Timers, error) {
	var t Timers
	err := m.read(func() error {
		scan := func(p byte, add func(id []byte)) error {
			n := 0
			return m.space.Scan([]byte{p}, []byte{p + 1}, func(k, _ []byte) bool {
				at, id, err := parseTimerKey(k)
				if err != nil {
					return true
				}
				if at > now || n == limit {
					if at > now && (t.Next == 0 || at < t.Next) {
						t.Next = at
					}
					return false
				}
				add(id)
				n++
				return true
			})
		}
		if err := scan(prefixSessionExp, func(id []byte) { t.Sessions = append(t.Sessions, string(id)) }); err != nil {
			return err
		}
		if err := scan(prefixWillTimer, func(id []byte) { t.Wills = append(t.Wills, string(id)) }); err != nil {
			return err
		}
		return scan(prefixLeaseExp, func(id []byte) {
			if len(id) == 8 {
				t.Leases = append(t.Leases, int64(binary.BigEndian.Uint64(id)))
			}
		})
	})
	return t, err
}

func sortStrings(s []string) { slices.Sort(s) }

// Broker returns a registered broker, or nil.
func (m *Machine) Broker(id string) (*logpb.Broker, error) {
	return getMsg(m, prefixed(prefixBroker, []byte(id)), func() *logpb.Broker { return &logpb.Broker{} })
}

// Brokers returns every registered broker in id order.
func (m *Machine) Brokers() ([]*logpb.Broker, error) {
	out, _, err := scanMsgs(m, []byte{prefixBroker}, "", -1, func() *logpb.Broker { return &logpb.Broker{} }, nil)
	return out, err
}

// Fleet reads the brokers, every assignment and the revision they are at
// from one view.
func (m *Machine) Fleet() (*state.Fleet, error) {
	f := &state.Fleet{}
	err := m.view(func(sn *rocks.Snapshot, st *logpb.AppliedState) error {
		f.Revision = st.Revision
		p := []byte{prefixBroker}
		var err error
		if f.Brokers, err = decodeAll(func(fn func(k, v []byte) bool) error {
			return sn.Scan(m.space, p, prefixEnd(p), fn)
		}, func() *logpb.Broker { return &logpb.Broker{} }); err != nil {
			return err
		}
		p = []byte{prefixAssignment}
		f.Assignments, err = decodeAll(func(fn func(k, v []byte) bool) error {
			return sn.Scan(m.space, p, prefixEnd(p), fn)
		}, func() *logpb.ConnectorAssignment { return &logpb.ConnectorAssignment{} })
		return err
	})
	return f, err
}

// Assignment returns a connector's assignment, or nil.
func (m *Machine) Assignment(connector string) (*logpb.ConnectorAssignment, error) {
	return getMsg(m, prefixed(prefixAssignment, []byte(connector)), func() *logpb.ConnectorAssignment { return &logpb.ConnectorAssignment{} })
}

// Assignments returns every assignment in connector order, optionally only
// one broker's.
func (m *Machine) Assignments(brokerID string) ([]*logpb.ConnectorAssignment, error) {
	out, _, err := scanMsgs(m, []byte{prefixAssignment}, "", -1, func() *logpb.ConnectorAssignment { return &logpb.ConnectorAssignment{} },
		func(_ []byte, as *logpb.ConnectorAssignment) bool { return brokerID == "" || as.BrokerId == brokerID })
	return out, err
}
