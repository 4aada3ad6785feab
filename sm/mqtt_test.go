package sm

import (
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/metamq/meta/sm/logpb"
)

func entryAt(t testing.TB, index uint64, now time.Duration, ops ...*logpb.Op) *raft.Log {
	t.Helper()
	data, err := EncodeBatch(&logpb.Batch{NowUnixNano: int64(now), Ops: ops})
	if err != nil {
		t.Fatal(err)
	}
	return &raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: data}
}

func op(o any) *logpb.Op {
	switch v := o.(type) {
	case *logpb.SessionsPut:
		return &logpb.Op{Op: &logpb.Op_SessionsPut{SessionsPut: v}}
	case *logpb.SessionsExpire:
		return &logpb.Op{Op: &logpb.Op_SessionsExpire{SessionsExpire: v}}
	case *logpb.WillPut:
		return &logpb.Op{Op: &logpb.Op_WillPut{WillPut: v}}
	case *logpb.WillsMarkDue:
		return &logpb.Op{Op: &logpb.Op_WillsMarkDue{WillsMarkDue: v}}
	case *logpb.WillClaim:
		return &logpb.Op{Op: &logpb.Op_WillClaim{WillClaim: v}}
	case *logpb.WillComplete:
		return &logpb.Op{Op: &logpb.Op_WillComplete{WillComplete: v}}
	case *logpb.LeaseGrant:
		return &logpb.Op{Op: &logpb.Op_LeaseGrant{LeaseGrant: v}}
	case *logpb.LeaseKeepAlive:
		return &logpb.Op{Op: &logpb.Op_LeaseKeepAlive{LeaseKeepAlive: v}}
	case *logpb.LeasesExpire:
		return &logpb.Op{Op: &logpb.Op_LeasesExpire{LeasesExpire: v}}
	case *logpb.ResourceCreate:
		return &logpb.Op{Op: &logpb.Op_ResourceCreate{ResourceCreate: v}}
	case *logpb.ResourceUpdate:
		return &logpb.Op{Op: &logpb.Op_ResourceUpdate{ResourceUpdate: v}}
	case *logpb.ResourceDelete:
		return &logpb.Op{Op: &logpb.Op_ResourceDelete{ResourceDelete: v}}
	case *logpb.RetainedSet:
		return &logpb.Op{Op: &logpb.Op_RetainedSet{RetainedSet: v}}
	case *logpb.EventsCompact:
		return &logpb.Op{Op: &logpb.Op_EventsCompact{EventsCompact: v}}
	case *logpb.KVPut:
		return &logpb.Op{Op: &logpb.Op_Put{Put: v}}
	case *logpb.BrokerRegister:
		return &logpb.Op{Op: &logpb.Op_BrokerRegister{BrokerRegister: v}}
	case *logpb.BrokerSetStatus:
		return &logpb.Op{Op: &logpb.Op_BrokerSetStatus{BrokerSetStatus: v}}
	case *logpb.Assign:
		return &logpb.Op{Op: &logpb.Op_Assign{Assign: v}}
	case *logpb.ConnectorReport:
		return &logpb.Op{Op: &logpb.Op_ConnectorReport{ConnectorReport: v}}
	}
	panic("unknown op")
}

func TestResourceRevisions(t *testing.T) {
	e := newEnv(t, KindMetadata)
	rs := results(t, e.m.Apply(entry(t, 1,
		op(&logpb.ResourceCreate{Kind: 2, Name: "orders", Spec: []byte("v1")}),
		op(&logpb.ResourceCreate{Kind: 2, Name: "orders", Spec: []byte("dup")}),
		op(&logpb.ResourceUpdate{Kind: 2, Name: "orders", Spec: []byte("v2"), ExpectedRevision: 1}),
		op(&logpb.ResourceUpdate{Kind: 2, Name: "orders", Spec: []byte("lost"), ExpectedRevision: 1}),
		op(&logpb.ResourceDelete{Kind: 2, Name: "orders", ExpectedRevision: 1}),
		op(&logpb.ResourceDelete{Kind: 2, Name: "orders", ExpectedRevision: 2}),
	)))
	want := []logpb.Code{logpb.Code_CODE_OK, logpb.Code_CODE_CONFLICT, logpb.Code_CODE_OK,
		logpb.Code_CODE_COMPARE_FAILED, logpb.Code_CODE_COMPARE_FAILED, logpb.Code_CODE_OK}
	for i, w := range want {
		if rs[i].Code != w {
			t.Errorf("op %d: got %v, want %v", i, rs[i].Code, w)
		}
	}
	var r logpb.Resource
	if err := proto.Unmarshal(rs[2].Value, &r); err != nil || string(r.Spec) != "v2" || r.Version != 2 || r.ModRevision != 2 || r.CreateRevision != 1 {
		t.Fatalf("updated resource: got %v (err %v)", &r, err)
	}
	if got, _ := e.m.Resource(2, "orders"); got != nil {
		t.Fatalf("deleted resource still there: %v", got)
	}
	evs, _, err := e.m.Events(Cursor{}, 100)
	if err != nil || len(evs) != 3 || evs[0].Revision != 1 || evs[1].Revision != 2 || !evs[2].Event.Deleted {
		t.Fatalf("events: got %v (err %v), want create@1, update@2, delete@3", evs, err)
	}
}

func TestSessionAndWillLifecycle(t *testing.T) {
	e := newEnv(t, KindData)
	sec := time.Second
	idx := uint64(0)
	apply := func(now time.Duration, ops ...*logpb.Op) []*logpb.Result {
		idx++
		return results(t, e.m.Apply(entryAt(t, idx, now, ops...)))
	}
	will := func() *logpb.Will {
		w, err := e.m.Will("c1")
		if err != nil {
			t.Fatal(err)
		}
		return w
	}
	apply(1*sec, op(&logpb.SessionsPut{Sessions: []*logpb.SessionPut{{ClientId: "c1", BrokerId: "b1", Connected: true, ExpiryIntervalSeconds: 60}}}),
		op(&logpb.WillPut{ClientId: "c1", Topic: "t/will", Payload: []byte("bye"), DelaySeconds: 10}))
	if w := will(); w.State != logpb.WillState_WILL_STATE_PENDING {
		t.Fatalf("will of a connected client: got %v, want PENDING", w.State)
	}
	// Disconnect at 100s: will armed for 110s, session expires at 160s.
	apply(100*sec, op(&logpb.SessionsPut{Sessions: []*logpb.SessionPut{{ClientId: "c1", BrokerId: "b1", Connected: false, ExpiryIntervalSeconds: 60}}}))
	if w := will(); w.State != logpb.WillState_WILL_STATE_ARMED || w.DueAtUnixNano != int64(110*sec) {
		t.Fatalf("after disconnect: got %v due %d, want ARMED due 110s", w.State, w.DueAtUnixNano)
	}
	// Reconnect at 105s disarms it.
	apply(105*sec, op(&logpb.SessionsPut{Sessions: []*logpb.SessionPut{{ClientId: "c1", BrokerId: "b2", Connected: true, ExpiryIntervalSeconds: 60}}}))
	if w := will(); w.State != logpb.WillState_WILL_STATE_PENDING {
		t.Fatalf("after reconnect: got %v, want PENDING", w.State)
	}
	// Disconnect again at 200s; timers say nothing is due at 205s.
	apply(200*sec, op(&logpb.SessionsPut{Sessions: []*logpb.SessionPut{{ClientId: "c1", BrokerId: "b2", Connected: false, ExpiryIntervalSeconds: 60}}}))
	tm, err := e.m.DueTimers(int64(205*sec), 10)
	if err != nil || len(tm.Wills)+len(tm.Sessions) != 0 || tm.Next != int64(210*sec) {
		t.Fatalf("timers at 205s: got %+v (err %v), want none due, next at 210s", tm, err)
	}
	// A premature MarkDue (stale leader view) changes nothing.
	if rs := apply(205*sec, op(&logpb.WillsMarkDue{ClientIds: []string{"c1"}})); rs[0].Count != 0 {
		t.Fatalf("mark due before due time marked %d wills", rs[0].Count)
	}
	tm, _ = e.m.DueTimers(int64(211*sec), 10)
	if len(tm.Wills) != 1 {
		t.Fatalf("timers at 211s: got %+v, want the will", tm)
	}
	apply(211*sec, op(&logpb.WillsMarkDue{ClientIds: tm.Wills}))
	if w := will(); w.State != logpb.WillState_WILL_STATE_DUE {
		t.Fatalf("got %v, want DUE", w.State)
	}
	// Two brokers claim in the same entry: exactly one wins.
	rs := apply(212*sec, op(&logpb.WillClaim{ClientId: "c1", BrokerId: "b1"}), op(&logpb.WillClaim{ClientId: "c1", BrokerId: "b2"}))
	if rs[0].Code != logpb.Code_CODE_OK || rs[1].Code != logpb.Code_CODE_COMPARE_FAILED {
		t.Fatalf("claims: got %v, %v; want OK then COMPARE_FAILED", rs[0].Code, rs[1].Code)
	}
	// The loser cannot complete it; the winner can.
	rs = apply(213*sec, op(&logpb.WillComplete{ClientId: "c1", BrokerId: "b2"}), op(&logpb.WillComplete{ClientId: "c1", BrokerId: "b1"}))
	if rs[0].Code != logpb.Code_CODE_COMPARE_FAILED || rs[1].Code != logpb.Code_CODE_OK || will() != nil {
		t.Fatalf("complete: got %v, %v, will %v", rs[0].Code, rs[1].Code, will())
	}
	// The session expires at 260s, through raft.
	tm, _ = e.m.DueTimers(int64(261*sec), 10)
	if len(tm.Sessions) != 1 {
		t.Fatalf("timers at 261s: got %+v, want the session", tm)
	}
	apply(261*sec, op(&logpb.SessionsExpire{ClientIds: tm.Sessions}))
	if s, _ := e.m.Session("c1"); s != nil {
		t.Fatalf("expired session still there: %v", s)
	}
}

func TestSessionExpiryFiresWillFirst(t *testing.T) {
	e := newEnv(t, KindData)
	sec := time.Second
	e.m.Apply(entryAt(t, 1, 0, op(&logpb.WillPut{ClientId: "c", Topic: "t", Payload: []byte("x"), DelaySeconds: 100}),
		op(&logpb.SessionsPut{Sessions: []*logpb.SessionPut{{ClientId: "c", ExpiryIntervalSeconds: 5}}})))
	w, _ := e.m.Will("c")
	if w.State != logpb.WillState_WILL_STATE_ARMED || w.DueAtUnixNano != int64(5*sec) {
		t.Fatalf("got %v due %d, want ARMED due at the session expiry (5s)", w.State, w.DueAtUnixNano)
	}
	e.m.Apply(entryAt(t, 2, 6*sec, op(&logpb.SessionsExpire{ClientIds: []string{"c"}})))
	if w, _ := e.m.Will("c"); w.State != logpb.WillState_WILL_STATE_DUE {
		t.Fatalf("after session expiry: got %v, want DUE", w.State)
	}
	// Expiry interval 0: the session ends at disconnect, a zero-delay will
	// is due at once.
	e.m.Apply(entryAt(t, 3, 7*sec, op(&logpb.WillPut{ClientId: "d", Topic: "t", Payload: []byte("x")}),
		op(&logpb.SessionsPut{Sessions: []*logpb.SessionPut{{ClientId: "d"}}})))
	if w, _ := e.m.Will("d"); w.State != logpb.WillState_WILL_STATE_DUE {
		t.Fatalf("zero delay: got %v, want DUE", w.State)
	}
}

func TestLeaseExpiryDeletesKeys(t *testing.T) {
	e := newEnv(t, KindData)
	sec := time.Second
	rs := results(t, e.m.Apply(entryAt(t, 1, 0,
		op(&logpb.KVPut{Key: []byte("orphan"), Value: []byte("x"), Lease: 7}),
		op(&logpb.LeaseGrant{Id: 7, TtlSeconds: 10}),
		op(&logpb.KVPut{Key: []byte("a"), Value: []byte("1"), Lease: 7}),
		op(&logpb.KVPut{Key: []byte("b"), Value: []byte("2"), Lease: 7}),
		op(&logpb.KVPut{Key: []byte("b"), Value: []byte("3")}), // detached
		op(&logpb.KVPut{Key: []byte("keep"), Value: []byte("k")}))))
	if rs[0].Code != logpb.Code_CODE_NOT_FOUND {
		t.Fatalf("put with unknown lease: got %v, want NOT_FOUND", rs[0].Code)
	}
	e.m.Apply(entryAt(t, 2, 8*sec, op(&logpb.LeaseKeepAlive{Id: 7})))
	// At 12s the lease would have expired without the keep-alive.
	e.m.Apply(entryAt(t, 3, 12*sec, op(&logpb.LeasesExpire{Ids: []int64{7}})))
	if kv, _ := e.m.Get([]byte("a")); kv == nil {
		t.Fatal("key of a kept-alive lease was deleted")
	}
	tm, _ := e.m.DueTimers(int64(19*sec), 10)
	if len(tm.Leases) != 1 || tm.Leases[0] != 7 {
		t.Fatalf("timers at 19s: got %+v, want lease 7", tm)
	}
	e.m.Apply(entryAt(t, 4, 19*sec, op(&logpb.LeasesExpire{Ids: tm.Leases})))
	for k, want := range map[string]bool{"a": false, "b": true, "keep": true} {
		kv, _ := e.m.Get([]byte(k))
		if (kv != nil) != want {
			t.Errorf("key %s after lease expiry: present=%v, want %v", k, kv != nil, want)
		}
	}
	if l, _ := e.m.Lease(7); l != nil {
		t.Fatalf("expired lease still there: %v", l)
	}
}

func TestEventsOrderedAndCompacted(t *testing.T) {
	e := newEnv(t, KindData)
	for i := 1; i <= 10; i++ {
		e.m.Apply(entry(t, uint64(i), putOp("k", string(rune('a'+i)))))
	}
	evs, next, err := e.m.Events(Cursor{Revision: 4}, 3)
	if err != nil || len(evs) != 3 || evs[0].Revision != 4 || evs[2].Revision != 6 || next != (Cursor{Revision: 6, N: 1}) {
		t.Fatalf("got %v next %v (err %v), want revisions 4..6", evs, next, err)
	}
	e.m.Apply(entry(t, 11, op(&logpb.EventsCompact{BelowRevision: 8})))
	if _, _, err := e.m.Events(Cursor{Revision: 7}, 10); err == nil {
		t.Fatal("reading below the compacted revision did not fail")
	}
	evs, _, err = e.m.Events(Cursor{Revision: 8}, 10)
	if err != nil || len(evs) != 3 {
		t.Fatalf("after compaction: got %d events (err %v), want 3 (8..10)", len(evs), err)
	}
}

func TestRetainedEmptyPayloadDeletes(t *testing.T) {
	e := newEnv(t, KindData)
	e.m.Apply(entry(t, 1, op(&logpb.RetainedSet{Topic: "a/b", Payload: []byte("x")}), op(&logpb.RetainedSet{Topic: "a/c", Payload: []byte("y")})))
	e.m.Apply(entry(t, 2, op(&logpb.RetainedSet{Topic: "a/b"})))
	got, more, err := e.m.RetainedList("a/", "", 10, nil)
	if err != nil || more || len(got) != 1 || got[0].Topic != "a/c" {
		t.Fatalf("got %v more %v (err %v), want only a/c", got, more, err)
	}
}

// A broker marks its clients disconnected with if_broker_id, so a client
// that meanwhile connected to another broker keeps its connected session
// (and its will stays pending); keep_state resumes the stored state and
// return_previous reports the session before the put.
func TestSessionPutConditions(t *testing.T) {
	e := newEnv(t, KindData)
	sec := time.Second
	put := func(idx uint64, ret bool, ps ...*logpb.SessionPut) *logpb.Result {
		t.Helper()
		return results(t, e.m.Apply(entryAt(t, idx, time.Duration(idx)*sec, op(&logpb.SessionsPut{Sessions: ps, ReturnPrevious: ret}))))[0]
	}
	put(1, false, &logpb.SessionPut{ClientId: "c1", BrokerId: "a", Connected: true, ExpiryIntervalSeconds: 60, State: []byte("subs-a")})
	e.m.Apply(entryAt(t, 2, 2*sec, op(&logpb.WillPut{ClientId: "c1", Topic: "t/will", Payload: []byte("bye")})))
	// The client moves to b, keeping its state; the previous session says a held it.
	r := put(3, true, &logpb.SessionPut{ClientId: "c1", BrokerId: "b", Connected: true, ExpiryIntervalSeconds: 60, KeepState: true},
		&logpb.SessionPut{ClientId: "new", BrokerId: "b", Connected: true, KeepState: true, State: []byte("fresh")})
	if len(r.PrevValues) != 2 || len(r.PrevValues[1]) != 0 {
		t.Fatalf("previous values: got %d entries (second %q), want 2, the second empty", len(r.PrevValues), r.PrevValues)
	}
	var prev logpb.Session
	if err := proto.Unmarshal(r.PrevValues[0], &prev); err != nil || prev.BrokerId != "a" || string(prev.State) != "subs-a" {
		t.Fatalf("previous c1: got %v (err %v), want held by a with state subs-a", &prev, err)
	}
	if s, _ := e.m.Session("c1"); s.BrokerId != "b" || string(s.State) != "subs-a" || s.Version != 2 {
		t.Fatalf("c1 after keep_state: got %v, want held by b, state subs-a, version 2", s)
	}
	if s, _ := e.m.Session("new"); string(s.State) != "fresh" {
		t.Fatalf("new session with keep_state: got state %q, want the put's", s.State)
	}
	// a's late disconnect must not touch the session b holds; b's applies.
	r = put(4, false, &logpb.SessionPut{ClientId: "c1", BrokerId: "a", IfBrokerId: "a", ExpiryIntervalSeconds: 60},
		&logpb.SessionPut{ClientId: "gone", BrokerId: "a", IfBrokerId: "a"})
	if r.Applied[0] || r.Applied[1] || !r.Flags[0] || r.Flags[1] {
		t.Fatalf("a's conditional puts: got applied %v existed %v, want none applied, c1 existed", r.Applied, r.Flags)
	}
	if s, _ := e.m.Session("c1"); !s.Connected || s.BrokerId != "b" {
		t.Fatalf("c1 after a's conditional put: got %v, want connected to b", s)
	}
	if s, _ := e.m.Session("gone"); s != nil {
		t.Fatalf("a conditional put created %v", s)
	}
	if w, _ := e.m.Will("c1"); w.State != logpb.WillState_WILL_STATE_PENDING {
		t.Fatalf("will after a's conditional put: got %v, want PENDING", w.State)
	}
	r = put(5, false, &logpb.SessionPut{ClientId: "c1", BrokerId: "b", IfBrokerId: "b", ExpiryIntervalSeconds: 60, KeepState: true})
	if !r.Applied[0] {
		t.Fatalf("b's conditional put: not applied")
	}
	if s, _ := e.m.Session("c1"); s.Connected || string(s.State) != "subs-a" {
		t.Fatalf("c1 after b's disconnect: got %v, want disconnected with its state", s)
	}
	if w, _ := e.m.Will("c1"); w.State != logpb.WillState_WILL_STATE_DUE {
		t.Fatalf("will after b's disconnect: got %v, want DUE", w.State)
	}
	// Epochs: b, declared down at epoch 3, registered again (epoch 7) and
	// rewrote its session; a survivor's late failover for epoch 3 is
	// skipped, one for epoch 7 applies.
	put(6, false, &logpb.SessionPut{ClientId: "c1", BrokerId: "b", BrokerEpoch: 7, Connected: true, KeepState: true})
	r = put(7, false, &logpb.SessionPut{ClientId: "c1", BrokerId: "b", BrokerEpoch: 3, IfBrokerId: "b", IfBrokerEpochAtMost: 3, KeepState: true})
	if r.Applied[0] {
		t.Fatalf("failover for epoch 3 applied over the session of epoch 7")
	}
	if s, _ := e.m.Session("c1"); !s.Connected || s.BrokerEpoch != 7 {
		t.Fatalf("c1 after a stale failover: got %v, want connected at epoch 7", s)
	}
	r = put(8, false, &logpb.SessionPut{ClientId: "c1", BrokerId: "b", BrokerEpoch: 7, IfBrokerId: "b", IfBrokerEpochAtMost: 7, KeepState: true})
	if s, _ := e.m.Session("c1"); !r.Applied[0] || s.Connected {
		t.Fatalf("failover for epoch 7: applied %v, session %v; want applied, disconnected", r.Applied[0], s)
	}
	// A connection without a will: the session write deletes the old one.
	e.m.Apply(entryAt(t, 9, 9*sec, op(&logpb.WillPut{ClientId: "c1", Topic: "t/will", Payload: []byte("bye")})))
	put(10, false, &logpb.SessionPut{ClientId: "c1", BrokerId: "a", Connected: true, KeepState: true, DeleteWill: true})
	if w, _ := e.m.Will("c1"); w != nil {
		t.Fatalf("will after a put with delete_will: got %v, want none", w)
	}
	if s, _ := e.m.Session("c1"); !s.Connected || s.BrokerId != "a" {
		t.Fatalf("c1 after a put with delete_will: got %v, want connected to a", s)
	}
}
