package verify

import (
	"context"
	"maps"
	"slices"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/metamq/meta/rpc/metapb"
)

// brokerFake adds the broker-facing API (sessions, resources, a toy
// controller, watch) to a memCluster, under the memCluster's lock and
// with its faults, so that Run's broker workloads can be tested without a
// real cluster. Every change bumps the memCluster's one revision counter
// and is logged for watches. Planted bugs, each enabled by a test, must
// be caught by the checkers.
type brokerFake struct {
	c *memCluster
	// Everything below is guarded by c.mu.
	sessions    map[string]SessionValue
	resources   map[string]ResourceValue // by name
	brokers     map[string]*BrokerValue
	seen        map[string]time.Time // last heartbeat
	assignments map[string]*AssignmentValue
	events      []fakeEvent
	changed     chan struct{} // closed and replaced on every event
	delivered   int           // events handed to watches (for planted bugs)

	bugWatchDrop     bool // a KV watch skips one event
	bugWatchDup      bool // a KV watch delivers one event twice
	bugWatchInvent   bool // a KV watch delivers a value nobody wrote
	bugSessionDrop   bool // a put batch of several sessions loses its last one
	bugOwnerDown     bool // a broker declared down keeps its connectors
	bugTwoOwners     bool // a reassignment keeps the connector's epoch
	bugNoReassign    bool // connectors unassigned by a broker's failure stay so
	bugEagerDown     bool // brokers are declared down after an eighth of the timeout
	bugAcceptStale   bool // reports under any epoch are accepted
	bugWatchDropDone bool
	bugWatchDupDone  bool
	// bugFired counts the times a planted controller bug changed what the
	// fake did (a broker declared down while owning connectors kept them;
	// a connector got a new owner under its old epoch; a connector that
	// could have had a live owner stayed unassigned): a run where it
	// stayed zero never exercised the bug.
	bugFired int
}

type fakeEvent struct {
	space string
	ev    WatchEvent
	kv    *metapb.KeyValue
	res   ResourceValue
	brk   BrokerValue
	asg   AssignmentValue
}

const (
	fakeHeartbeat = 100 * time.Millisecond
	fakeTimeout   = 400 * time.Millisecond
)

func newBrokerFake(c *memCluster) *brokerFake {
	return &brokerFake{c: c, sessions: map[string]SessionValue{}, resources: map[string]ResourceValue{},
		brokers: map[string]*BrokerValue{}, seen: map[string]time.Time{}, assignments: map[string]*AssignmentValue{},
		changed: make(chan struct{})}
}

// dial returns connections that implement BrokerAPI.
func (f *brokerFake) dial(endpoints []string, pinned bool) (Conn, error) {
	conn, err := f.c.dial(endpoints, pinned)
	if err != nil {
		return nil, err
	}
	return &brokerConn{memConn: conn.(*memConn), f: f}, nil
}

type brokerConn struct {
	*memConn
	f *brokerFake
}

var _ BrokerAPI = (*brokerConn)(nil)

// emit logs a change (under c.mu).
func (f *brokerFake) emit(e fakeEvent) {
	f.events = append(f.events, e)
	close(f.changed)
	f.changed = make(chan struct{})
}

func (f *brokerFake) rev() uint64 { f.c.st.rev++; return f.c.st.rev }

func dataGroupOf(key string) string { return metapb.DataGroupFor([]byte(key), 2) }

// ---- KV writes, with events ----

func (b *brokerConn) Put(ctx context.Context, req *metapb.PutRequest) (*metapb.PutResponse, error) {
	resp := &metapb.PutResponse{}
	return respond(resp, b.write(func(s *memState) {
		k := string(req.Key)
		old, ok := s.kv[k]
		rev := b.f.rev()
		nv := memKV{value: string(req.Value), create: rev, mod: rev, version: 1}
		if ok {
			if req.PrevKv {
				resp.PrevKv = pb(k, old)
			}
			nv.create, nv.version = old.create, old.version+1
		}
		s.kv[k] = nv
		resp.Header = &metapb.ResponseHeader{NodeId: b.node, Revision: rev}
		b.f.emit(fakeEvent{space: "kv", ev: WatchEvent{Group: dataGroupOf(k), Revision: rev, Type: "put"}, kv: pb(k, nv)})
	}))
}

func (b *brokerConn) Delete(ctx context.Context, req *metapb.DeleteRequest) (*metapb.DeleteResponse, error) {
	resp := &metapb.DeleteResponse{}
	return respond(resp, b.write(func(s *memState) {
		k := string(req.Key)
		resp.Header = &metapb.ResponseHeader{NodeId: b.node, Revision: s.rev}
		if old, ok := s.kv[k]; ok {
			rev := b.f.rev()
			resp.Deleted = true
			if req.PrevKv {
				resp.PrevKv = pb(k, old)
			}
			delete(s.kv, k)
			resp.Header.Revision = rev
			b.f.emit(fakeEvent{space: "kv", ev: WatchEvent{Group: dataGroupOf(k), Revision: rev, Type: "delete"}, kv: &metapb.KeyValue{Key: req.Key}})
		}
	}))
}

func (b *brokerConn) CompareAndSwap(ctx context.Context, req *metapb.CompareAndSwapRequest) (*metapb.CompareAndSwapResponse, error) {
	resp := &metapb.CompareAndSwapResponse{}
	return respond(resp, b.write(func(s *memState) {
		resp.Header = &metapb.ResponseHeader{NodeId: b.node, Revision: s.rev}
		if nv, ok := s.cas(req, resp, b.f.rev); ok {
			k := string(req.Key)
			resp.Header.Revision = nv.mod
			b.f.emit(fakeEvent{space: "kv", ev: WatchEvent{Group: dataGroupOf(k), Revision: nv.mod, Type: "put"}, kv: pb(k, nv)})
		}
	}))
}

func (b *brokerConn) Get(ctx context.Context, req *metapb.GetRequest) (*metapb.GetResponse, error) {
	resp := &metapb.GetResponse{}
	return respond(resp, b.read(func(s *memState) {
		if kv, ok := s.kv[string(req.Key)]; ok {
			resp.Kv = pb(string(req.Key), kv)
		}
		resp.Header = &metapb.ResponseHeader{NodeId: b.node, Revision: b.f.c.st.rev}
	}))
}

// ---- sessions ----

func (b *brokerConn) PutSessions(ctx context.Context, req *metapb.PutSessionsRequest) (*metapb.PutSessionsResponse, error) {
	resp := &metapb.PutSessionsResponse{}
	return respond(resp, b.write(func(s *memState) {
		rev := b.f.rev()
		groups := map[string]bool{}
		for i, se := range req.Sessions {
			resp.Revisions = append(resp.Revisions, rev)
			groups[dataGroupOf(se.ClientId)] = true
			if b.f.bugSessionDrop && len(req.Sessions) > 1 && i == len(req.Sessions)-1 {
				continue
			}
			v := SessionValue{ClientID: se.ClientId, BrokerID: se.BrokerId, Connected: se.Connected, Expiry: se.ExpiryIntervalSeconds,
				State: string(se.State), CreateRevision: rev, ModRevision: rev, Version: 1}
			if old, ok := b.f.sessions[se.ClientId]; ok {
				v.CreateRevision, v.Version = old.CreateRevision, old.Version+1
			}
			b.f.sessions[se.ClientId] = v
		}
		resp.Groups = uint32(len(groups))
	}))
}

func (b *brokerConn) DeleteSessions(ctx context.Context, req *metapb.DeleteSessionsRequest) (*metapb.DeleteSessionsResponse, error) {
	resp := &metapb.DeleteSessionsResponse{}
	return respond(resp, b.write(func(s *memState) {
		for _, id := range req.ClientIds {
			_, ok := b.f.sessions[id]
			resp.Deleted = append(resp.Deleted, ok)
			if ok {
				b.f.rev()
				delete(b.f.sessions, id)
			}
		}
	}))
}

func toPBSession(v SessionValue) *metapb.Session {
	return &metapb.Session{ClientId: v.ClientID, BrokerId: v.BrokerID, Connected: v.Connected, ExpiryIntervalSeconds: v.Expiry,
		State: []byte(v.State), CreateRevision: v.CreateRevision, ModRevision: v.ModRevision, Version: v.Version}
}

func (b *brokerConn) GetSession(ctx context.Context, req *metapb.GetSessionRequest) (*metapb.GetSessionResponse, error) {
	resp := &metapb.GetSessionResponse{}
	return respond(resp, b.read(func(s *memState) {
		if v, ok := b.f.sessions[req.ClientId]; ok {
			resp.Session = toPBSession(v)
		}
	}))
}

func (b *brokerConn) ListSessions(ctx context.Context, req *metapb.ListSessionsRequest) (*metapb.ListSessionsResponse, error) {
	resp := &metapb.ListSessionsResponse{}
	return respond(resp, b.read(func(s *memState) {
		ids, more := page(b.f.sessions, req.StartAfter, req.Limit, func(string) bool { return true })
		if more {
			resp.More = true
			resp.NextStartAfter = ids[len(ids)-1]
		}
		for _, id := range ids {
			resp.Sessions = append(resp.Sessions, toPBSession(b.f.sessions[id]))
		}
	}))
}

// ---- resources ----

func withReason(code codes.Code, reason string) error {
	st, _ := status.New(code, strings.ToLower(reason)).WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: metapb.ErrorDomain})
	return st.Err()
}

// writeRefusable applies fn like write; fn returns the error that refuses
// the call, if it does. It returns write's error, or else fn's.
func (b *brokerConn) writeRefusable(fn func(s *memState) error) error {
	var refused error
	if err := b.write(func(s *memState) { refused = fn(s) }); err != nil {
		return err
	}
	return refused
}

func (b *brokerConn) CreateResource(ctx context.Context, req *metapb.CreateResourceRequest) (*metapb.CreateResourceResponse, error) {
	resp := &metapb.CreateResourceResponse{}
	return respond(resp, b.writeRefusable(func(s *memState) error {
		if _, ok := b.f.resources[req.Resource.Name]; ok {
			return withReason(codes.AlreadyExists, metapb.ReasonAlreadyExists)
		}
		rev := b.f.rev()
		resp.Resource = b.f.putResource(req.Resource, rev, rev, 1)
		return nil
	}))
}

func (f *brokerFake) emitResource(rev uint64, typ string, v ResourceValue) {
	f.emit(fakeEvent{space: "resources", ev: WatchEvent{Group: metapb.MetadataGroup, Revision: rev, Type: typ}, res: v})
}

// putResource stores r as created at revision create, modified at rev,
// at version version, and announces it; it returns r as stored.
func (f *brokerFake) putResource(r *metapb.Resource, create, rev, version uint64) *metapb.Resource {
	v := *fromResource(r)
	v.CreateRevision, v.ModRevision, v.Version = create, rev, version
	f.resources[v.Name] = v
	f.emitResource(rev, "put", v)
	f.tick()
	return storedResource(v)
}

// storedResource is v as the API returns it, with its revisions and
// version.
func storedResource(v ResourceValue) *metapb.Resource {
	r := toPBResource(v)
	r.CreateRevision, r.ModRevision, r.Version = v.CreateRevision, v.ModRevision, v.Version
	return r
}

func (b *brokerConn) UpdateResource(ctx context.Context, req *metapb.UpdateResourceRequest) (*metapb.UpdateResourceResponse, error) {
	resp := &metapb.UpdateResourceResponse{}
	return respond(resp, b.writeRefusable(func(s *memState) error {
		old, ok := b.f.resources[req.Resource.Name]
		if !ok {
			return withReason(codes.NotFound, metapb.ReasonNotFound)
		}
		if old.ModRevision != req.ExpectedRevision {
			return withReason(codes.FailedPrecondition, metapb.ReasonRevisionConflict)
		}
		rev := b.f.rev()
		resp.Resource = b.f.putResource(req.Resource, old.CreateRevision, rev, old.Version+1)
		return nil
	}))
}

func (b *brokerConn) DeleteResource(ctx context.Context, req *metapb.DeleteResourceRequest) (*metapb.DeleteResourceResponse, error) {
	resp := &metapb.DeleteResourceResponse{}
	return respond(resp, b.writeRefusable(func(s *memState) error {
		old, ok := b.f.resources[req.Name]
		if !ok {
			return withReason(codes.NotFound, metapb.ReasonNotFound)
		}
		rev := b.f.rev()
		delete(b.f.resources, req.Name)
		b.f.emitResource(rev, "delete", old)
		b.f.tick()
		resp.Prev = toPBResource(old)
		resp.Prev.ModRevision = old.ModRevision
		resp.Revision = rev
		return nil
	}))
}

func (b *brokerConn) GetResource(ctx context.Context, req *metapb.GetResourceRequest) (*metapb.GetResourceResponse, error) {
	resp := &metapb.GetResourceResponse{}
	found := false
	err := b.read(func(s *memState) {
		b.f.tick()
		if v, ok := b.f.resources[req.Name]; ok {
			found = true
			resp.Resource = storedResource(v)
		}
		resp.Revision = b.f.c.st.rev
	})
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, withReason(codes.NotFound, metapb.ReasonNotFound)
	}
	return resp, nil
}

// ---- the toy controller ----

func (f *brokerFake) emitBroker(rev uint64, bv BrokerValue) {
	bv.ModRevision = rev
	f.emit(fakeEvent{space: "brokers", ev: WatchEvent{Group: metapb.MetadataGroup, Revision: rev, Type: "put"}, brk: bv})
}

func (f *brokerFake) setAssignment(a AssignmentValue) {
	rev := f.rev()
	a.ModRevision = rev
	if a.Epoch == 0 || !f.bugTwoOwners {
		a.Epoch = rev
	} else if a.Broker != "" {
		f.bugFired++
	}
	f.assignments[a.Connector] = &a
	f.emit(fakeEvent{space: "assignments", ev: WatchEvent{Group: metapb.MetadataGroup, Revision: rev, Type: "put"}, asg: a})
}

func (f *brokerFake) unassign(broker string) {
	for _, name := range slices.Sorted(mapKeys(f.assignments)) {
		if a := f.assignments[name]; a.Broker == broker {
			f.setAssignment(AssignmentValue{Connector: name, Epoch: a.Epoch})
		}
	}
}

// tick is the controller's round (under c.mu): brokers silent too long
// go down, connectors that should run get a live owner, others lose
// theirs.
func (f *brokerFake) tick() {
	now := time.Now()
	timeout := fakeTimeout
	if f.bugEagerDown {
		timeout /= 8
	}
	for _, id := range slices.Sorted(mapKeys(f.brokers)) {
		bv := f.brokers[id]
		if bv.Status == "ALIVE" && now.Sub(f.seen[id]) > timeout {
			if !f.bugOwnerDown {
				f.unassign(id)
			} else if slices.ContainsFunc(slices.Collect(maps.Values(f.assignments)), func(a *AssignmentValue) bool { return a.Broker == id }) {
				f.bugFired++
			}
			bv.Status = "DOWN"
			f.emitBroker(f.rev(), *bv)
		}
	}
	load := map[string]int{}
	var alive []string
	for _, id := range slices.Sorted(mapKeys(f.brokers)) {
		if f.brokers[id].Status == "ALIVE" {
			alive = append(alive, id)
			load[id] = 0
		}
	}
	for _, a := range f.assignments {
		if _, ok := load[a.Broker]; ok {
			load[a.Broker]++
		}
	}
	for _, name := range slices.Sorted(mapKeys(f.resources)) {
		r := f.resources[name]
		if r.Kind != "connector" {
			continue
		}
		a := f.assignments[name]
		if r.Desired != "RUNNING" {
			if a != nil {
				rev := f.rev()
				delete(f.assignments, name)
				f.emit(fakeEvent{space: "assignments", ev: WatchEvent{Group: metapb.MetadataGroup, Revision: rev, Type: "delete"}, asg: *a})
			}
			continue
		}
		if a != nil && a.Broker != "" {
			continue
		}
		if len(alive) == 0 {
			continue
		}
		if a != nil && f.bugNoReassign {
			f.bugFired++
			continue
		}
		best := alive[0]
		for _, id := range alive {
			if load[id] < load[best] {
				best = id
			}
		}
		load[best]++
		na := AssignmentValue{Connector: name, Broker: best, BrokerEpoch: f.brokers[best].Epoch, State: "ASSIGNED"}
		if a != nil {
			na.Epoch = a.Epoch
		}
		f.setAssignment(na)
	}
	for name, a := range f.assignments {
		if _, ok := f.resources[name]; !ok {
			rev := f.rev()
			delete(f.assignments, name)
			f.emit(fakeEvent{space: "assignments", ev: WatchEvent{Group: metapb.MetadataGroup, Revision: rev, Type: "delete"}, asg: *a})
		}
	}
}

func (b *brokerConn) RegisterBroker(ctx context.Context, req *metapb.RegisterBrokerRequest) (*metapb.RegisterBrokerResponse, error) {
	resp := &metapb.RegisterBrokerResponse{HeartbeatIntervalMs: uint32(fakeHeartbeat / time.Millisecond), SessionTimeoutMs: uint32(fakeTimeout / time.Millisecond)}
	return respond(resp, b.write(func(s *memState) {
		epoch := b.f.rev()
		b.f.unassign(req.BrokerId)
		bv := &BrokerValue{ID: req.BrokerId, Epoch: epoch, Status: "ALIVE"}
		b.f.brokers[req.BrokerId] = bv
		b.f.seen[req.BrokerId] = time.Now()
		b.f.emitBroker(b.f.rev(), *bv)
		b.f.tick()
		resp.BrokerEpoch = epoch
	}))
}

func (b *brokerConn) Heartbeat(ctx context.Context, req *metapb.HeartbeatRequest) (*metapb.HeartbeatResponse, error) {
	resp := &metapb.HeartbeatResponse{}
	return respond(resp, b.writeRefusable(func(s *memState) error {
		bv := b.f.brokers[req.BrokerId]
		if bv == nil {
			return withReason(codes.NotFound, metapb.ReasonInvalidArgument)
		}
		if bv.Epoch != req.BrokerEpoch {
			return withReason(codes.FailedPrecondition, metapb.ReasonStaleEpoch)
		}
		b.f.seen[req.BrokerId] = time.Now()
		if bv.Status == "DOWN" {
			bv.Status = "ALIVE"
			b.f.emitBroker(b.f.rev(), *bv)
		}
		b.f.tick()
		resp.Status = metapb.BrokerStatus_BROKER_STATUS_ALIVE
		return nil
	}))
}

func (b *brokerConn) ReportConnector(ctx context.Context, req *metapb.ReportConnectorRequest) (*metapb.ReportConnectorResponse, error) {
	resp := &metapb.ReportConnectorResponse{}
	return respond(resp, b.writeRefusable(func(s *memState) error {
		a := b.f.assignments[req.Connector]
		if a == nil {
			return withReason(codes.NotFound, metapb.ReasonInvalidArgument)
		}
		if !b.f.bugAcceptStale && (a.Epoch != req.Epoch || a.Broker != req.BrokerId) {
			return withReason(codes.FailedPrecondition, metapb.ReasonStaleEpoch)
		}
		na := *a
		na.State = trimEnum(req.State.String(), "CONNECTOR_RUN_STATE_")
		rev := b.f.rev()
		na.ModRevision = rev
		b.f.assignments[req.Connector] = &na
		b.f.emit(fakeEvent{space: "assignments", ev: WatchEvent{Group: metapb.MetadataGroup, Revision: rev, Type: "put"}, asg: na})
		resp.Assignment = toPBAssignment(na)
		if b.f.bugAcceptStale {
			resp.Assignment.Epoch, resp.Assignment.BrokerId = req.Epoch, req.BrokerId
		}
		return nil
	}))
}

func toPBAssignment(a AssignmentValue) *metapb.Assignment {
	st := metapb.ConnectorRunState(metapb.ConnectorRunState_value["CONNECTOR_RUN_STATE_"+a.State])
	return &metapb.Assignment{Connector: a.Connector, BrokerId: a.Broker, BrokerEpoch: a.BrokerEpoch, Epoch: a.Epoch, State: st, ModRevision: a.ModRevision}
}

func (b *brokerConn) ListBrokers(ctx context.Context, req *metapb.ListBrokersRequest) (*metapb.ListBrokersResponse, error) {
	resp := &metapb.ListBrokersResponse{}
	return respond(resp, b.read(func(s *memState) {
		b.f.tick()
		load := map[string]uint32{}
		for _, a := range b.f.assignments {
			load[a.Broker]++
		}
		for _, id := range slices.Sorted(mapKeys(b.f.brokers)) {
			bv := b.f.brokers[id]
			st := metapb.BrokerStatus(metapb.BrokerStatus_value["BROKER_STATUS_"+bv.Status])
			resp.Brokers = append(resp.Brokers, &metapb.BrokerState{BrokerId: id, Epoch: bv.Epoch, Status: st, Connectors: load[id], ModRevision: bv.ModRevision})
		}
		resp.Revision = b.f.c.st.rev
	}))
}

func (b *brokerConn) ListAssignments(ctx context.Context, req *metapb.ListAssignmentsRequest) (*metapb.ListAssignmentsResponse, error) {
	resp := &metapb.ListAssignmentsResponse{}
	return respond(resp, b.read(func(s *memState) {
		b.f.tick()
		for _, name := range slices.Sorted(mapKeys(b.f.assignments)) {
			a := b.f.assignments[name]
			if req.BrokerId == "" || a.Broker == req.BrokerId {
				resp.Assignments = append(resp.Assignments, toPBAssignment(*a))
			}
		}
		resp.Revision = b.f.c.st.rev
	}))
}

// ---- watch ----

// Watch delivers logged changes matching the request, in order, with
// every group's revision; it never fails (the client's resumes are
// played by an extra progress notification now and then).
func (b *brokerConn) Watch(ctx context.Context, req *metapb.WatchRequest, fn func(*metapb.WatchResponse) error) error {
	f := b.f
	space := ""
	for name, sp := range watchSpaces {
		if sp == req.Space {
			space = name
		}
	}
	groups := []string{metapb.MetadataGroup}
	if space == "kv" {
		groups = metapb.Groups(0, 2)[1:]
	}
	f.c.mu.Lock()
	cursor := len(f.events)
	delivered := f.c.st.rev
	f.c.mu.Unlock()
	revs := func(r uint64) map[string]uint64 {
		out := map[string]uint64{}
		for _, g := range groups {
			out[g] = r
		}
		return out
	}
	if err := fn(&metapb.WatchResponse{Revisions: revs(delivered), Progress: true}); err != nil {
		return err
	}
	for n := 0; ; n++ {
		f.c.mu.Lock()
		evs := f.events[cursor:]
		cursor = len(f.events)
		rev := f.c.st.rev
		changed := f.changed
		resp := &metapb.WatchResponse{}
		for _, e := range evs {
			if e.space != space {
				continue
			}
			ev := &metapb.WatchEvent{Group: e.ev.Group, Revision: e.ev.Revision}
			if e.ev.Type == "delete" {
				ev.Type = metapb.WatchEvent_DELETE
			}
			switch space {
			case "kv":
				if !strings.HasPrefix(string(e.kv.Key), string(req.Prefix)) {
					continue
				}
				ev.Kv = e.kv
			case "resources":
				if !strings.HasPrefix(e.res.Name, string(req.Prefix)) {
					continue
				}
				ev.Resource = toPBResource(e.res)
				ev.Resource.ModRevision = e.res.ModRevision
			case "brokers":
				st := metapb.BrokerStatus(metapb.BrokerStatus_value["BROKER_STATUS_"+e.brk.Status])
				ev.Broker = &metapb.BrokerState{BrokerId: e.brk.ID, Epoch: e.brk.Epoch, Status: st, ModRevision: e.brk.ModRevision}
			case "assignments":
				ev.Assignment = toPBAssignment(e.asg)
			}
			if space == "kv" {
				f.delivered++
				switch {
				case f.bugWatchDrop && !f.bugWatchDropDone && f.delivered > 20:
					f.bugWatchDropDone = true
					continue
				case f.bugWatchDup && !f.bugWatchDupDone && f.delivered > 20:
					f.bugWatchDupDone = true
					resp.Events = append(resp.Events, ev)
				case f.bugWatchInvent && f.delivered%25 == 0 && ev.Type == metapb.WatchEvent_PUT:
					ev.Kv = &metapb.KeyValue{Key: ev.Kv.Key, Value: []byte("invented"), CreateRevision: ev.Kv.CreateRevision,
						ModRevision: ev.Kv.ModRevision, Version: ev.Kv.Version}
				}
			}
			resp.Events = append(resp.Events, ev)
		}
		f.c.mu.Unlock()
		if len(resp.Events) > 0 || rev > delivered {
			resp.Revisions = revs(rev)
			delivered = rev
			if len(resp.Events) > 0 {
				if err := fn(resp); err != nil {
					return err
				}
			}
		}
		if n%50 == 49 {
			// A resume: the next stream starts after what was delivered.
			if err := fn(&metapb.WatchResponse{Revisions: revs(delivered), Progress: true}); err != nil {
				return err
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		}
	}
}
