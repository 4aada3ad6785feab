package server_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/metamq/meta/metanode/metanodetest"
	"github.com/metamq/meta/rpc/client"
	"github.com/metamq/meta/rpc/metapb"
)

func topic(name string, partitions int32) *metapb.Resource {
	return &metapb.Resource{Kind: metapb.ResourceKind_RESOURCE_KIND_TOPIC, Name: name,
		Spec: &metapb.Resource_Topic{Topic: &metapb.TopicSpec{Partitions: partitions, Config: map[string]string{"retention.ms": "1000"}}}}
}

func user(name string) *metapb.Resource {
	return &metapb.Resource{Kind: metapb.ResourceKind_RESOURCE_KIND_USER, Name: name,
		Spec: &metapb.Resource_User{User: &metapb.UserSpec{Mechanism: "SCRAM-SHA-256", Credential: []byte("c")}}}
}

// withKind sets r's kind (to one that may not match its spec) and returns
// r.
func withKind(r *metapb.Resource, k metapb.ResourceKind) *metapb.Resource {
	r.Kind = k
	return r
}

// Every call of the broker API against one 3-node cluster with two data
// groups (so batches and listings span groups).
func TestBrokerAPI(t *testing.T) {
	c := metanodetest.Start(t, metanodetest.Options{DataGroups: 2})
	cl := c.Client("")
	// Bad input first, while the cluster is empty: it must write nothing.
	t.Run("bad input", func(t *testing.T) { testBadInput(t, cl) })
	t.Run("resources", func(t *testing.T) { testResources(t, cl) })
	t.Run("sessions", func(t *testing.T) { testSessions(t, cl) })
	t.Run("wills", func(t *testing.T) { testWills(t, cl) })
	t.Run("retained", func(t *testing.T) { testRetained(t, cl) })
	t.Run("leases", func(t *testing.T) { testLeases(t, cl) })
}

func testResources(t *testing.T, cl *client.Client) {
	topicKind := metapb.ResourceKind_RESOURCE_KIND_TOPIC
	created := must(cl.CreateResource(ctx10(t), &metapb.CreateResourceRequest{Resource: topic("orders", 3)}))(t).Resource
	if created.Version != 1 || created.CreateRevision == 0 || created.ModRevision != created.CreateRevision {
		t.Fatalf("created: got version %d, revisions %d/%d; want version 1 and equal non-zero revisions",
			created.Version, created.CreateRevision, created.ModRevision)
	}
	got := must(cl.GetResource(ctx10(t), &metapb.GetResourceRequest{Kind: topicKind, Name: "orders"}))(t)
	if !proto.Equal(got.Resource, created) || got.Revision < created.ModRevision {
		t.Fatalf("get: got %v at revision %d, want %v", got.Resource, got.Revision, created)
	}

	_, err := cl.CreateResource(ctx10(t), &metapb.CreateResourceRequest{Resource: topic("orders", 5)})
	wantStatus(t, err, codes.AlreadyExists, metapb.ReasonAlreadyExists, "resource.name")

	// A user may share a topic's name: kinds are separate name spaces.
	must(cl.CreateResource(ctx10(t), &metapb.CreateResourceRequest{Resource: user("orders")}))(t)

	updated := must(cl.UpdateResource(ctx10(t), &metapb.UpdateResourceRequest{Resource: topic("orders", 4),
		ExpectedRevision: created.ModRevision}))(t).Resource
	if updated.Version != 2 || updated.ModRevision <= created.ModRevision || updated.CreateRevision != created.CreateRevision ||
		updated.GetTopic().Partitions != 4 {
		t.Fatalf("update: got %v, want version 2, partitions 4, a later mod revision", updated)
	}
	// A second admin with the old revision loses and writes nothing.
	_, err = cl.UpdateResource(ctx10(t), &metapb.UpdateResourceRequest{Resource: topic("orders", 9), ExpectedRevision: created.ModRevision})
	wantStatus(t, err, codes.FailedPrecondition, metapb.ReasonRevisionConflict, "")
	if cur, ok := client.RevisionConflict(err); !ok || cur != updated.ModRevision {
		t.Fatalf("conflict: got current revision %d (%v), want %d", cur, ok, updated.ModRevision)
	}
	got = must(cl.GetResource(ctx10(t), &metapb.GetResourceRequest{Kind: topicKind, Name: "orders"}))(t)
	if got.Resource.GetTopic().Partitions != 4 {
		t.Fatalf("after a conflicting update: got %v, want partitions 4", got.Resource)
	}
	_, err = cl.UpdateResource(ctx10(t), &metapb.UpdateResourceRequest{Resource: topic("missing", 1), ExpectedRevision: 1})
	wantStatus(t, err, codes.NotFound, metapb.ReasonNotFound, "resource.name")

	_, err = cl.DeleteResource(ctx10(t), &metapb.DeleteResourceRequest{Kind: topicKind, Name: "orders", ExpectedRevision: created.ModRevision})
	wantStatus(t, err, codes.FailedPrecondition, metapb.ReasonRevisionConflict, "")
	del := must(cl.DeleteResource(ctx10(t), &metapb.DeleteResourceRequest{Kind: topicKind, Name: "orders", ExpectedRevision: updated.ModRevision}))(t)
	if !proto.Equal(del.Prev, updated) || del.Revision <= updated.ModRevision {
		t.Fatalf("delete: got prev %v at %d, want %v", del.Prev, del.Revision, updated)
	}
	_, err = cl.GetResource(ctx10(t), &metapb.GetResourceRequest{Kind: topicKind, Name: "orders"})
	wantStatus(t, err, codes.NotFound, metapb.ReasonNotFound, "name")
	if !client.IsNotFound(err) {
		t.Fatalf("IsNotFound(%v) = false", err)
	}
	_, err = cl.DeleteResource(ctx10(t), &metapb.DeleteResourceRequest{Kind: topicKind, Name: "orders"})
	wantStatus(t, err, codes.NotFound, metapb.ReasonNotFound, "name")
	if u := must(cl.GetResource(ctx10(t), &metapb.GetResourceRequest{Kind: metapb.ResourceKind_RESOURCE_KIND_USER, Name: "orders"}))(t); u.Resource.GetUser() == nil {
		t.Fatalf("user orders: got %v, want a user spec", u.Resource)
	}

	// Every other kind round-trips its spec.
	others := []*metapb.Resource{
		{Kind: metapb.ResourceKind_RESOURCE_KIND_BROKER, Name: "b-1", Spec: &metapb.Resource_Broker{Broker: &metapb.BrokerSpec{Endpoints: []string{"h:1"}, Rack: "r1", Tags: map[string]string{"a": "b", "c": "d"}}}},
		{Kind: metapb.ResourceKind_RESOURCE_KIND_CONNECTOR, Name: "sink.s3", Spec: &metapb.Resource_Connector{Connector: &metapb.ConnectorSpec{Type: "s3", DesiredState: metapb.ConnectorState_CONNECTOR_STATE_RUNNING}}},
		{Kind: metapb.ResourceKind_RESOURCE_KIND_ACL, Name: "acl_1", Spec: &metapb.Resource_Acl{Acl: &metapb.AclSpec{Principal: "User:a", Operation: "READ", Permission: "ALLOW"}}},
		{Kind: metapb.ResourceKind_RESOURCE_KIND_SCHEMA, Name: "orders-value", Spec: &metapb.Resource_Schema{Schema: &metapb.SchemaSpec{Format: "AVRO", Definition: "{}"}}},
	}
	for _, r := range others {
		must(cl.CreateResource(ctx10(t), &metapb.CreateResourceRequest{Resource: r}))(t)
		g := must(cl.GetResource(ctx10(t), &metapb.GetResourceRequest{Kind: r.Kind, Name: r.Name}))(t)
		r.CreateRevision, r.ModRevision, r.Version = g.Resource.CreateRevision, g.Resource.ModRevision, 1
		if !proto.Equal(g.Resource, r) {
			t.Fatalf("%s: got %v, want %v", r.Kind, g.Resource, r)
		}
	}

	// Pagination over more than one page, one kind only, in name order.
	want := []string{"orders"}
	for i := 0; i < 25; i++ {
		name := fmt.Sprintf("u%02d", i)
		want = append(want, name)
		must(cl.CreateResource(ctx10(t), &metapb.CreateResourceRequest{Resource: user(name)}))(t)
	}
	names, pages := allPages(t, func(start string) (*metapb.ListResourcesResponse, error) {
		return cl.ListResources(ctx10(t), &metapb.ListResourcesRequest{Kind: metapb.ResourceKind_RESOURCE_KIND_USER, Limit: 10, StartAfter: start})
	}, func(resp *metapb.ListResourcesResponse) []string {
		if resp.Revision == 0 {
			t.Fatalf("list: got revision 0")
		}
		return keysOf(resp.Resources, (*metapb.Resource).GetName)
	})
	if !slices.Equal(names, want) || pages != 3 {
		t.Fatalf("list users: got %v in %d pages, want %v in 3", names, pages, want)
	}
	pre := must(cl.ListResources(ctx10(t), &metapb.ListResourcesRequest{Kind: metapb.ResourceKind_RESOURCE_KIND_USER, NamePrefix: "u1"}))(t)
	if len(pre.Resources) != 10 || pre.More {
		t.Fatalf("list prefix u1: got %d (more %v), want 10", len(pre.Resources), pre.More)
	}
}

func testSessions(t *testing.T, cl *client.Client) {
	var req metapb.PutSessionsRequest
	var ids []string
	for i := 0; i < 25; i++ {
		id := fmt.Sprintf("sess-%02d", i)
		ids = append(ids, id)
		req.Sessions = append(req.Sessions, &metapb.Session{ClientId: id, BrokerId: fmt.Sprintf("b%d", i%2),
			Connected: i%3 != 0, ExpiryIntervalSeconds: 60, State: []byte("subs:" + id)})
	}
	put := must(cl.PutSessions(ctx10(t), &req))(t)
	if put.Groups != 2 || len(put.Revisions) != 25 {
		t.Fatalf("put: got %d groups, %d revisions; want 2 and 25", put.Groups, len(put.Revisions))
	}
	byGroup := map[string]uint64{}
	for i, id := range ids {
		g := metapb.DataGroupFor([]byte(id), 2)
		if put.Revisions[i] == 0 || (byGroup[g] != 0 && byGroup[g] != put.Revisions[i]) {
			t.Fatalf("put: revisions %v: a group's part is one op, so one revision per group", put.Revisions)
		}
		byGroup[g] = put.Revisions[i]
	}
	for i, id := range []string{"sess-00", "sess-01"} {
		s := must(cl.GetSession(ctx10(t), &metapb.GetSessionRequest{ClientId: id}))(t).Session
		if s == nil || s.ClientId != id || string(s.State) != "subs:"+id || s.Version != 1 || s.ModRevision != put.Revisions[i] {
			t.Fatalf("get %s: got %v", id, s)
		}
		switch {
		case !s.Connected && (s.DisconnectedAtUnixNano == 0 || s.ExpiresAtUnixNano != s.DisconnectedAtUnixNano+60e9):
			t.Fatalf("disconnected %s: got disconnected at %d, expires at %d; want expiry 60s later", id, s.DisconnectedAtUnixNano, s.ExpiresAtUnixNano)
		case s.Connected && s.ExpiresAtUnixNano != 0:
			t.Fatalf("connected %s: got expires at %d, want 0", id, s.ExpiresAtUnixNano)
		}
	}
	// Replacing bumps the version.
	must(cl.PutSessions(ctx10(t), &metapb.PutSessionsRequest{Sessions: []*metapb.Session{{ClientId: "sess-00", Connected: true}}}))(t)
	if s := must(cl.GetSession(ctx10(t), &metapb.GetSessionRequest{ClientId: "sess-00"}))(t).Session; s.Version != 2 || !s.Connected {
		t.Fatalf("replaced sess-00: got %v, want version 2, connected", s)
	}
	if s := must(cl.GetSession(ctx10(t), &metapb.GetSessionRequest{ClientId: "nobody"}))(t).Session; s != nil {
		t.Fatalf("get nobody: got %v, want none", s)
	}
	// A reconnect that resumes: return_previous reports the session before
	// the put, keep_state keeps its state; a stale broker's if_broker_id
	// put is skipped.
	must(cl.PutSessions(ctx10(t), &metapb.PutSessionsRequest{Sessions: []*metapb.Session{{ClientId: "mv", BrokerId: "a", Connected: true, State: []byte("subs")}}}))(t)
	mv := must(cl.PutSessions(ctx10(t), &metapb.PutSessionsRequest{ReturnPrevious: true, Sessions: []*metapb.Session{
		{ClientId: "mv", BrokerId: "b", Connected: true, KeepState: true}, {ClientId: "mv-new", BrokerId: "b", Connected: true}}}))(t)
	if len(mv.Previous) != 2 || mv.Previous[0].BrokerId != "a" || string(mv.Previous[0].State) != "subs" || mv.Previous[1].ClientId != "" {
		t.Fatalf("previous: got %v, want mv held by a with its state, then none", mv.Previous)
	}
	stale := must(cl.PutSessions(ctx10(t), &metapb.PutSessionsRequest{Sessions: []*metapb.Session{
		{ClientId: "mv", BrokerId: "a", IfBrokerId: "a"}, {ClientId: "mv-new", BrokerId: "b", IfBrokerId: "b"}}}))(t)
	if len(stale.Applied) != 2 || stale.Applied[0] || !stale.Applied[1] {
		t.Fatalf("conditional puts: got applied %v, want [false true]", stale.Applied)
	}
	if s := must(cl.GetSession(ctx10(t), &metapb.GetSessionRequest{ClientId: "mv"}))(t).Session; !s.Connected || s.BrokerId != "b" || string(s.State) != "subs" {
		t.Fatalf("mv: got %v, want connected to b with state subs", s)
	}
	// Epochs: stored with the session; a put for an older epoch is skipped.
	must(cl.PutSessions(ctx10(t), &metapb.PutSessionsRequest{Sessions: []*metapb.Session{{ClientId: "mv", BrokerId: "b", BrokerEpoch: 5, Connected: true, KeepState: true}}}))(t)
	old := must(cl.PutSessions(ctx10(t), &metapb.PutSessionsRequest{Sessions: []*metapb.Session{{ClientId: "mv", BrokerId: "b", IfBrokerId: "b", IfBrokerEpochAtMost: 4}}}))(t)
	if s := must(cl.GetSession(ctx10(t), &metapb.GetSessionRequest{ClientId: "mv"}))(t).Session; old.Applied[0] || s.BrokerEpoch != 5 || !s.Connected {
		t.Fatalf("put for epoch 4 over epoch 5: applied %v, session %v; want skipped, connected at epoch 5", old.Applied[0], s)
	}
	// delete_will removes the client's will in the same write.
	must(cl.PutWill(ctx10(t), &metapb.PutWillRequest{Will: &metapb.Will{ClientId: "mv", Topic: "w/mv"}}))(t)
	must(cl.PutSessions(ctx10(t), &metapb.PutSessionsRequest{Sessions: []*metapb.Session{{ClientId: "mv", BrokerId: "b", Connected: true, KeepState: true, DeleteWill: true}}}))(t)
	if w := must(cl.GetWill(ctx10(t), &metapb.GetWillRequest{ClientId: "mv"}))(t).Will; w != nil {
		t.Fatalf("will after a session put with delete_will: got %v, want none", w)
	}
	must(cl.DeleteSessions(ctx10(t), &metapb.DeleteSessionsRequest{ClientIds: []string{"mv", "mv-new"}}))(t)

	listed, pages := allPages(t, func(start string) (*metapb.ListSessionsResponse, error) {
		return cl.ListSessions(ctx10(t), &metapb.ListSessionsRequest{Limit: 10, StartAfter: start})
	}, func(resp *metapb.ListSessionsResponse) []string {
		return keysOf(resp.Sessions, (*metapb.Session).GetClientId)
	})
	if !slices.Equal(listed, ids) || pages != 3 {
		t.Fatalf("list: got %v in %d pages, want %v in 3", listed, pages, ids)
	}
	b1 := must(cl.ListSessions(ctx10(t), &metapb.ListSessionsRequest{BrokerId: "b1"}))(t)
	if len(b1.Sessions) != 12 {
		t.Fatalf("list broker b1: got %d sessions, want 12", len(b1.Sessions))
	}

	del := must(cl.DeleteSessions(ctx10(t), &metapb.DeleteSessionsRequest{ClientIds: []string{"sess-00", "nobody", "sess-01"}}))(t)
	if !slices.Equal(del.Deleted, []bool{true, false, true}) {
		t.Fatalf("delete: got %v, want [true false true]", del.Deleted)
	}
	if s := must(cl.GetSession(ctx10(t), &metapb.GetSessionRequest{ClientId: "sess-00"}))(t).Session; s != nil {
		t.Fatalf("deleted sess-00: got %v", s)
	}
}

func testWills(t *testing.T, cl *client.Client) {
	// No session: the will waits (PENDING).
	w := must(cl.PutWill(ctx10(t), &metapb.PutWillRequest{Will: &metapb.Will{ClientId: "w-1", Topic: "status/w-1",
		Payload: []byte("gone"), Qos: 1, DelaySeconds: 3600}}))(t).Will
	if w.State != metapb.WillState_WILL_STATE_PENDING || w.ModRevision == 0 || string(w.Payload) != "gone" {
		t.Fatalf("put: got %v, want a PENDING will", w)
	}
	// The client disconnects: ARMED, due after the delay.
	must(cl.PutSessions(ctx10(t), &metapb.PutSessionsRequest{Sessions: []*metapb.Session{{ClientId: "w-1", ExpiryIntervalSeconds: 7200}}}))(t)
	got := must(cl.GetWill(ctx10(t), &metapb.GetWillRequest{ClientId: "w-1"}))(t).Will
	s := must(cl.GetSession(ctx10(t), &metapb.GetSessionRequest{ClientId: "w-1"}))(t).Session
	if got.State != metapb.WillState_WILL_STATE_ARMED || got.DueAtUnixNano != s.DisconnectedAtUnixNano+3600e9 {
		t.Fatalf("after disconnect: got %v, want ARMED, due an hour after %d", got, s.DisconnectedAtUnixNano)
	}
	// Not due: a claim is a compare failure, not an error.
	claim := must(cl.ClaimWill(ctx10(t), &metapb.ClaimWillRequest{ClientId: "w-1", BrokerId: "b1"}))(t)
	if claim.Claimed || claim.Will.GetState() != metapb.WillState_WILL_STATE_ARMED {
		t.Fatalf("claim of an armed will: got %v, want not claimed and the will as it is", claim)
	}
	if c := must(cl.CompleteWill(ctx10(t), &metapb.CompleteWillRequest{ClientId: "w-1", BrokerId: "b1"}))(t); c.Completed {
		t.Fatalf("complete of an unclaimed will: got completed")
	}
	due := must(cl.ListDueWills(ctx10(t), &metapb.ListDueWillsRequest{}))(t)
	if len(due.Wills) != 0 {
		t.Fatalf("due wills: got %v, want none", due.Wills)
	}
	_, err := cl.ClaimWill(ctx10(t), &metapb.ClaimWillRequest{ClientId: "nobody", BrokerId: "b1"})
	wantStatus(t, err, codes.NotFound, metapb.ReasonNotFound, "client_id")
	_, err = cl.CompleteWill(ctx10(t), &metapb.CompleteWillRequest{ClientId: "nobody", BrokerId: "b1"})
	wantStatus(t, err, codes.NotFound, metapb.ReasonNotFound, "client_id")

	if d := must(cl.DeleteWill(ctx10(t), &metapb.DeleteWillRequest{ClientId: "w-1"}))(t); !d.Deleted {
		t.Fatalf("delete: got not deleted")
	}
	if d := must(cl.DeleteWill(ctx10(t), &metapb.DeleteWillRequest{ClientId: "w-1"}))(t); d.Deleted {
		t.Fatalf("second delete: got deleted")
	}
	if g := must(cl.GetWill(ctx10(t), &metapb.GetWillRequest{ClientId: "w-1"}))(t); g.Will != nil {
		t.Fatalf("get after delete: got %v", g.Will)
	}
}

func testRetained(t *testing.T, cl *client.Client) {
	topics := []string{"a", "a/b", "a/b/c", "a/c", "a/b/d", "ab", "x/b", "$SYS/a", "$SYS/b/c", "sport/tennis/p1", "sport/tennis/p2", "sport/", "sport"}
	for _, tp := range topics {
		r := must(cl.SetRetained(ctx10(t), &metapb.SetRetainedRequest{Message: &metapb.RetainedMessage{Topic: tp, Payload: []byte("v:" + tp), Qos: 1}}))(t)
		if r.Deleted || r.Revision == 0 {
			t.Fatalf("set %s: got %v", tp, r)
		}
	}
	g := must(cl.GetRetained(ctx10(t), &metapb.GetRetainedRequest{Topic: "a/b"}))(t).Message
	if g == nil || string(g.Payload) != "v:a/b" || g.Qos != 1 || g.ModRevision == 0 || g.Topic != "a/b" {
		t.Fatalf("get a/b: got %v", g)
	}
	list := func(filter string, limit uint32) []string {
		t.Helper()
		out, _ := allPages(t, func(start string) (*metapb.ListRetainedResponse, error) {
			return cl.ListRetained(ctx10(t), &metapb.ListRetainedRequest{TopicFilter: filter, Limit: limit, StartAfter: start})
		}, func(resp *metapb.ListRetainedResponse) []string {
			for _, m := range resp.Messages {
				if string(m.Payload) != "v:"+m.Topic {
					t.Fatalf("list %s: %s has payload %q", filter, m.Topic, m.Payload)
				}
			}
			return keysOf(resp.Messages, (*metapb.RetainedMessage).GetTopic)
		})
		return out
	}
	cases := []struct {
		filter string
		want   []string
	}{
		{"a/b", []string{"a/b"}},
		{"a/+", []string{"a/b", "a/c"}},
		{"a/#", []string{"a", "a/b", "a/b/c", "a/b/d", "a/c"}},
		{"a/+/c", []string{"a/b/c"}},
		{"+/b", []string{"a/b", "x/b"}},
		{"#", []string{"a", "a/b", "a/b/c", "a/b/d", "a/c", "ab", "sport", "sport/", "sport/tennis/p1", "sport/tennis/p2", "x/b"}},
		{"$SYS/#", []string{"$SYS/a", "$SYS/b/c"}},
		{"+/+", []string{"a/b", "a/c", "sport/", "x/b"}},
		{"sport/+", []string{"sport/"}},
		{"sport/#", []string{"sport", "sport/", "sport/tennis/p1", "sport/tennis/p2"}},
		{"nothing/#", nil},
	}
	for _, tc := range cases {
		for _, limit := range []uint32{0, 2} {
			if got := list(tc.filter, limit); !slices.Equal(got, tc.want) {
				t.Errorf("list %q (limit %d): got %v, want %v", tc.filter, limit, got, tc.want)
			}
		}
	}
	r := must(cl.SetRetained(ctx10(t), &metapb.SetRetainedRequest{Message: &metapb.RetainedMessage{Topic: "a/b"}}))(t)
	if !r.Deleted {
		t.Fatalf("empty payload: got not deleted")
	}
	if g := must(cl.GetRetained(ctx10(t), &metapb.GetRetainedRequest{Topic: "a/b"}))(t).Message; g != nil {
		t.Fatalf("get after delete: got %v", g)
	}
	if r := must(cl.SetRetained(ctx10(t), &metapb.SetRetainedRequest{Message: &metapb.RetainedMessage{Topic: "a/b"}}))(t); r.Deleted {
		t.Fatalf("deleting an absent retained message: got deleted")
	}
}

func testLeases(t *testing.T, cl *client.Client) {
	g := must(cl.LeaseGrant(ctx10(t), &metapb.LeaseGrantRequest{TtlSeconds: 60}))(t)
	if g.Id <= 0 || g.TtlSeconds != 60 {
		t.Fatalf("grant: got %v, want a positive id", g)
	}
	// Granting the same id and ttl again is safe; another ttl is refused.
	must(cl.LeaseGrant(ctx10(t), &metapb.LeaseGrantRequest{TtlSeconds: 60, Id: g.Id}))(t)
	_, err := cl.LeaseGrant(ctx10(t), &metapb.LeaseGrantRequest{TtlSeconds: 61, Id: g.Id})
	wantStatus(t, err, codes.AlreadyExists, metapb.ReasonAlreadyExists, "id")

	// Keys in both data groups.
	keys := append(idsIn("lk-", "data-0", 2, 2), idsIn("lk-", "data-1", 2, 2)...)
	for _, k := range keys {
		must(cl.Put(ctx10(t), &metapb.PutRequest{Key: []byte(k), Value: []byte("v"), Lease: g.Id}))(t)
	}
	must(cl.CompareAndSwap(ctx10(t), &metapb.CompareAndSwapRequest{Key: []byte("lk-cas"), ExpectAbsent: true, NewValue: []byte("v"), Lease: g.Id}))(t)
	keys = append(keys, "lk-cas")
	if kv := must(cl.Get(ctx10(t), &metapb.GetRequest{Key: []byte(keys[0])}))(t).Kv; kv.Lease != g.Id {
		t.Fatalf("key's lease: got %d, want %d", kv.Lease, g.Id)
	}
	_, err = cl.Put(ctx10(t), &metapb.PutRequest{Key: []byte("lk-x"), Value: []byte("v"), Lease: g.Id + 1})
	wantStatus(t, err, codes.NotFound, metapb.ReasonNotFound, "lease")
	_, err = cl.CompareAndSwap(ctx10(t), &metapb.CompareAndSwapRequest{Key: []byte("lk-x"), ExpectAbsent: true, NewValue: []byte("v"), Lease: g.Id + 1})
	wantStatus(t, err, codes.NotFound, metapb.ReasonNotFound, "lease")
	if kv := must(cl.Get(ctx10(t), &metapb.GetRequest{Key: []byte("lk-x")}))(t).Kv; kv != nil {
		t.Fatalf("put with an unknown lease wrote %v", kv)
	}

	ttl := must(cl.LeaseTimeToLive(ctx10(t), &metapb.LeaseTimeToLiveRequest{Id: g.Id, Keys: true}))(t)
	var gotKeys []string
	for _, k := range ttl.Keys {
		gotKeys = append(gotKeys, string(k))
	}
	slices.Sort(gotKeys)
	slices.Sort(keys)
	if ttl.TtlSeconds <= 0 || ttl.TtlSeconds > 60 || ttl.GrantedTtlSeconds != 60 || !slices.Equal(gotKeys, keys) {
		t.Fatalf("ttl: got ttl %d of %d, keys %v; want 1..60 of 60, keys %v", ttl.TtlSeconds, ttl.GrantedTtlSeconds, gotKeys, keys)
	}
	if ka := must(cl.LeaseKeepAlive(ctx10(t), &metapb.LeaseKeepAliveRequest{Id: g.Id}))(t); ka.TtlSeconds != 60 || ka.Id != g.Id {
		t.Fatalf("keepalive: got %v", ka)
	}
	rv := must(cl.LeaseRevoke(ctx10(t), &metapb.LeaseRevokeRequest{Id: g.Id}))(t)
	if rv.Deleted != uint64(len(keys)) {
		t.Fatalf("revoke: got %d keys deleted, want %d", rv.Deleted, len(keys))
	}
	for _, k := range keys {
		if kv := must(cl.Get(ctx10(t), &metapb.GetRequest{Key: []byte(k)}))(t).Kv; kv != nil {
			t.Fatalf("%s survived its lease's revocation", k)
		}
	}
	if ttl := must(cl.LeaseTimeToLive(ctx10(t), &metapb.LeaseTimeToLiveRequest{Id: g.Id}))(t); ttl.TtlSeconds != -1 {
		t.Fatalf("ttl after revoke: got %d, want -1", ttl.TtlSeconds)
	}
	_, err = cl.LeaseKeepAlive(ctx10(t), &metapb.LeaseKeepAliveRequest{Id: g.Id})
	wantStatus(t, err, codes.NotFound, metapb.ReasonNotFound, "id")
	_, err = cl.LeaseRevoke(ctx10(t), &metapb.LeaseRevokeRequest{Id: g.Id})
	wantStatus(t, err, codes.NotFound, metapb.ReasonNotFound, "id")
	// An explicit id.
	if g2 := must(cl.LeaseGrant(ctx10(t), &metapb.LeaseGrantRequest{TtlSeconds: 5, Id: 42}))(t); g2.Id != 42 {
		t.Fatalf("grant id 42: got %d", g2.Id)
	}
}

// testBadInput: every call rejects bad input with InvalidArgument naming
// the field, and nothing is written.
func testBadInput(t *testing.T, cl *client.Client) {
	long := func(n int) string { return strings.Repeat("x", n) }
	huge := make([]byte, metapb.MaxPayloadBytes+1)
	topicKind := metapb.ResourceKind_RESOURCE_KIND_TOPIC
	tooMany := make([]*metapb.Session, metapb.MaxBatchEntries+1)
	for i := range tooMany {
		tooMany[i] = &metapb.Session{ClientId: fmt.Sprint(i)}
	}
	bigBatch := make([]*metapb.Session, 80)
	for i := range bigBatch {
		bigBatch[i] = &metapb.Session{ClientId: fmt.Sprint(i), State: make([]byte, metapb.MaxSessionStateBytes)}
	}
	type call func(context.Context) error
	cases := []struct {
		name  string
		call  call
		field string
	}{
		{"create nil", errOf(cl.CreateResource, &metapb.CreateResourceRequest{}), "resource"},
		{"create no kind", errOf(cl.CreateResource, &metapb.CreateResourceRequest{Resource: withKind(topic("t", 1), 0)}), "resource.kind"},
		{"create unknown kind", errOf(cl.CreateResource, &metapb.CreateResourceRequest{Resource: withKind(topic("t", 1), 99)}), "resource.kind"},
		{"create bad name", errOf(cl.CreateResource, &metapb.CreateResourceRequest{Resource: topic("a/b", 1)}), "resource.name"},
		{"create empty name", errOf(cl.CreateResource, &metapb.CreateResourceRequest{Resource: topic("", 1)}), "resource.name"},
		{"create long name", errOf(cl.CreateResource, &metapb.CreateResourceRequest{Resource: topic(long(256), 1)}), "resource.name"},
		{"create no spec", errOf(cl.CreateResource, &metapb.CreateResourceRequest{Resource: &metapb.Resource{Kind: topicKind, Name: "t"}}), "resource.spec"},
		{"create spec of another kind", errOf(cl.CreateResource, &metapb.CreateResourceRequest{Resource: withKind(user("t"), topicKind)}), "resource.user"},
		{"create zero partitions", errOf(cl.CreateResource, &metapb.CreateResourceRequest{Resource: topic("t", 0)}), "resource.topic.partitions"},
		{"create huge spec", func(ctx context.Context) error {
			_, err := cl.CreateResource(ctx, &metapb.CreateResourceRequest{Resource: &metapb.Resource{Kind: metapb.ResourceKind_RESOURCE_KIND_SCHEMA, Name: "s",
				Spec: &metapb.Resource_Schema{Schema: &metapb.SchemaSpec{Definition: long(metapb.MaxSpecBytes)}}}})
			return err
		}, "resource.schema"},
		{"update no revision", errOf(cl.UpdateResource, &metapb.UpdateResourceRequest{Resource: topic("t", 1)}), "expected_revision"},
		{"delete no kind", errOf(cl.DeleteResource, &metapb.DeleteResourceRequest{Name: "t"}), "kind"},
		{"get bad name", errOf(cl.GetResource, &metapb.GetResourceRequest{Kind: topicKind, Name: "a b"}), "name"},
		{"list no kind", errOf(cl.ListResources, &metapb.ListResourcesRequest{}), "kind"},
		{"list limit", errOf(cl.ListResources, &metapb.ListResourcesRequest{Kind: topicKind, Limit: metapb.MaxListLimit + 1}), "limit"},
		{"sessions empty", errOf(cl.PutSessions, &metapb.PutSessionsRequest{}), "sessions"},
		{"sessions too many", errOf(cl.PutSessions, &metapb.PutSessionsRequest{Sessions: tooMany}), "sessions"},
		{"sessions too big", errOf(cl.PutSessions, &metapb.PutSessionsRequest{Sessions: bigBatch}), "sessions"},
		{"sessions empty id", errOf(cl.PutSessions, &metapb.PutSessionsRequest{Sessions: []*metapb.Session{{ClientId: "a"}, {}, {ClientId: "b"}}}), "sessions[1].client_id"},
		{"sessions long id", errOf(cl.PutSessions, &metapb.PutSessionsRequest{Sessions: []*metapb.Session{{ClientId: long(metapb.MaxClientIDBytes + 1)}}}), "sessions[0].client_id"},
		{"sessions duplicate id", errOf(cl.PutSessions, &metapb.PutSessionsRequest{Sessions: []*metapb.Session{{ClientId: "a"}, {ClientId: "b"}, {ClientId: "a"}}}), "sessions[2].client_id"},
		{"sessions big state", errOf(cl.PutSessions, &metapb.PutSessionsRequest{Sessions: []*metapb.Session{{ClientId: "a", State: make([]byte, metapb.MaxSessionStateBytes+1)}}}), "sessions[0].state"},
		{"sessions long if_broker_id", errOf(cl.PutSessions, &metapb.PutSessionsRequest{Sessions: []*metapb.Session{{ClientId: "a", IfBrokerId: long(metapb.MaxBrokerIDBytes + 1)}}}), "sessions[0].if_broker_id"},
		{"sessions nil entry", func(ctx context.Context) error {
			// A nil entry travels as an empty message.
			_, err := cl.PutSessions(ctx, &metapb.PutSessionsRequest{Sessions: []*metapb.Session{{ClientId: "a"}, nil}})
			return err
		}, "sessions[1].client_id"},
		{"delete sessions empty id", errOf(cl.DeleteSessions, &metapb.DeleteSessionsRequest{ClientIds: []string{"a", ""}}), "client_ids[1]"},
		{"delete sessions none", errOf(cl.DeleteSessions, &metapb.DeleteSessionsRequest{}), "client_ids"},
		{"get session empty id", errOf(cl.GetSession, &metapb.GetSessionRequest{}), "client_id"},
		{"list sessions limit", errOf(cl.ListSessions, &metapb.ListSessionsRequest{Limit: metapb.MaxListLimit + 1}), "limit"},
		{"list sessions consistency", errOf(cl.ListSessions, &metapb.ListSessionsRequest{Consistency: 9}), "consistency"},
		{"will nil", errOf(cl.PutWill, &metapb.PutWillRequest{}), "will"},
		{"will no topic", errOf(cl.PutWill, &metapb.PutWillRequest{Will: &metapb.Will{ClientId: "c"}}), "will.topic"},
		{"will wildcard topic", errOf(cl.PutWill, &metapb.PutWillRequest{Will: &metapb.Will{ClientId: "c", Topic: "a/+"}}), "will.topic"},
		{"will qos", errOf(cl.PutWill, &metapb.PutWillRequest{Will: &metapb.Will{ClientId: "c", Topic: "a", Qos: 3}}), "will.qos"},
		{"will payload", errOf(cl.PutWill, &metapb.PutWillRequest{Will: &metapb.Will{ClientId: "c", Topic: "a", Payload: huge}}), "will.payload"},
		{"will no client", errOf(cl.PutWill, &metapb.PutWillRequest{Will: &metapb.Will{Topic: "a"}}), "will.client_id"},
		{"delete will no client", errOf(cl.DeleteWill, &metapb.DeleteWillRequest{}), "client_id"},
		{"get will no client", errOf(cl.GetWill, &metapb.GetWillRequest{}), "client_id"},
		{"due wills limit", errOf(cl.ListDueWills, &metapb.ListDueWillsRequest{Limit: metapb.MaxListLimit + 1}), "limit"},
		{"claim no broker", errOf(cl.ClaimWill, &metapb.ClaimWillRequest{ClientId: "c"}), "broker_id"},
		{"claim long ttl", errOf(cl.ClaimWill, &metapb.ClaimWillRequest{ClientId: "c", BrokerId: "b", ClaimTtlSeconds: metapb.MaxClaimTTLSeconds + 1}), "claim_ttl_seconds"},
		{"complete no client", errOf(cl.CompleteWill, &metapb.CompleteWillRequest{BrokerId: "b"}), "client_id"},
		{"retained nil", errOf(cl.SetRetained, &metapb.SetRetainedRequest{}), "message"},
		{"retained wildcard", errOf(cl.SetRetained, &metapb.SetRetainedRequest{Message: &metapb.RetainedMessage{Topic: "a/#", Payload: []byte("x")}}), "message.topic"},
		{"retained long topic", errOf(cl.SetRetained, &metapb.SetRetainedRequest{Message: &metapb.RetainedMessage{Topic: long(metapb.MaxTopicBytes + 1), Payload: []byte("x")}}), "message.topic"},
		{"retained properties", errOf(cl.SetRetained, &metapb.SetRetainedRequest{Message: &metapb.RetainedMessage{Topic: "a", Payload: []byte("x"), Properties: huge}}), "message.properties"},
		{"get retained wildcard", errOf(cl.GetRetained, &metapb.GetRetainedRequest{Topic: "+"}), "topic"},
		{"list retained no filter", errOf(cl.ListRetained, &metapb.ListRetainedRequest{}), "topic_filter"},
		{"list retained # not last", errOf(cl.ListRetained, &metapb.ListRetainedRequest{TopicFilter: "a/#/b"}), "topic_filter"},
		{"list retained mixed wildcard", errOf(cl.ListRetained, &metapb.ListRetainedRequest{TopicFilter: "a/b+"}), "topic_filter"},
		{"grant zero ttl", errOf(cl.LeaseGrant, &metapb.LeaseGrantRequest{}), "ttl_seconds"},
		{"grant long ttl", errOf(cl.LeaseGrant, &metapb.LeaseGrantRequest{TtlSeconds: metapb.MaxLeaseTTLSeconds + 1}), "ttl_seconds"},
		{"grant negative id", errOf(cl.LeaseGrant, &metapb.LeaseGrantRequest{TtlSeconds: 5, Id: -1}), "id"},
		{"keepalive zero", errOf(cl.LeaseKeepAlive, &metapb.LeaseKeepAliveRequest{}), "id"},
		{"revoke zero", errOf(cl.LeaseRevoke, &metapb.LeaseRevokeRequest{}), "id"},
		{"ttl zero", errOf(cl.LeaseTimeToLive, &metapb.LeaseTimeToLiveRequest{}), "id"},
		{"put negative lease", errOf(cl.Put, &metapb.PutRequest{Key: []byte("k"), Lease: -3}), "lease"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			wantStatus(t, tc.call(ctx10(t)), codes.InvalidArgument, metapb.ReasonInvalidArgument, tc.field)
		})
	}
	// Nothing was written.
	for k := range metapb.ResourceKind_name {
		if k == 0 {
			continue
		}
		if l := must(cl.ListResources(ctx10(t), &metapb.ListResourcesRequest{Kind: metapb.ResourceKind(k)}))(t); len(l.Resources) != 0 {
			t.Fatalf("after bad input: %d resources of kind %d", len(l.Resources), k)
		}
	}
	if l := must(cl.ListSessions(ctx10(t), &metapb.ListSessionsRequest{}))(t); len(l.Sessions) != 0 {
		t.Fatalf("after bad input: sessions %v", l.Sessions)
	}
	if l := must(cl.ListRetained(ctx10(t), &metapb.ListRetainedRequest{TopicFilter: "#"}))(t); len(l.Messages) != 0 {
		t.Fatalf("after bad input: retained %v", l.Messages)
	}
	for _, id := range []string{"c", "a"} {
		if w := must(cl.GetWill(ctx10(t), &metapb.GetWillRequest{ClientId: id}))(t); w.Will != nil {
			t.Fatalf("after bad input: will %v", w.Will)
		}
	}
	if l := must(cl.List(ctx10(t), &metapb.ListRequest{}))(t); len(l.Kvs) != 0 {
		t.Fatalf("after bad input: keys %v", l.Kvs)
	}
}

// errOf is a case's call that makes one client call with req and keeps
// only its error.
func errOf[Req, Resp any](call func(context.Context, Req) (Resp, error), req Req) func(context.Context) error {
	return func(ctx context.Context) error {
		_, err := call(ctx, req)
		return err
	}
}
