package server_test

import (
	"context"
	"errors"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/metamq/meta/rocks"
	"github.com/metamq/meta/rpc/client"
	"github.com/metamq/meta/rpc/metapb"
	"github.com/metamq/meta/rpc/server"
	"github.com/metamq/meta/sm"
	"github.com/metamq/meta/sm/logpb"
	"github.com/metamq/meta/sm/state"
	"github.com/metamq/meta/verify/testkit"
)

// fakeNode is a node without raft: real state machines over one RocksDB,
// each proposal applied at once as the next entry. The servers run on it
// exactly as on a node (same gRPC options, same handlers), so their
// validation and error mapping are tested in milliseconds.
type fakeNode struct {
	mu       sync.Mutex // guards index, proposed, fail
	machines map[string]*sm.Machine
	index    uint64
	proposed int
	// fail, when set, is what Propose and Read return; failGroup is that
	// for one group's proposals.
	fail      error
	failGroup map[string]error
	// noDirectory makes Router answer as a node that has not loaded the
	// directory yet (version 0).
	noDirectory bool
	// data, when set, is the data groups' range map Router answers with.
	data     metapb.RangeMap
	stopping chan struct{}
}

func newFakeNode(t testing.TB, dataGroups int) *fakeNode {
	t.Helper()
	return newFakeNodeOwning(t, dataGroups, nil)
}

// newFakeNodeOwning is newFakeNode whose data group i owns ranges[i] (by
// its own record; nil: every group by count, as an earlier release left
// it).
func newFakeNodeOwning(t testing.TB, dataGroups int, ranges [][]*logpb.HashRange) *fakeNode {
	t.Helper()
	groups := metapb.Groups(1, dataGroups)
	opts := rocks.DefaultOptions(filepath.Join(t.TempDir(), "db"))
	opts.BlockCacheBytes, opts.WriteBufferBytes = 4<<20, 8<<20
	db, err := rocks.Open(opts, groups)
	if err != nil {
		t.Fatal(err)
	}
	n := &fakeNode{machines: map[string]*sm.Machine{}, stopping: make(chan struct{})}
	for _, g := range groups {
		kind, _ := metapb.GroupKind(g)
		k, _ := sm.ParseKind(kind)
		m, err := sm.New(sm.Config{Kind: k, Group: g, DB: db})
		if err != nil {
			t.Fatal(err)
		}
		n.machines[g] = m
		if k == sm.KindData || k == sm.KindOffset {
			oi := &logpb.OwnershipInit{Legacy: true}
			if i := slices.Index(groups[2:], g); k == sm.KindData && ranges != nil {
				oi = &logpb.OwnershipInit{Ranges: ranges[i]}
			}
			init, _ := sm.EncodeBatch(&logpb.Batch{Ops: []*logpb.Op{{Op: &logpb.Op_OwnershipInit{OwnershipInit: oi}}}})
			n.index++
			m.Apply(&raft.Log{Index: n.index, Term: 1, Type: raft.LogCommand, Data: init})
		}
	}
	t.Cleanup(func() {
		close(n.stopping)
		for _, m := range n.machines {
			m.Close()
		}
		_ = db.Close()
	})
	return n
}

func (n *fakeNode) failWith(err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.fail = err
}

// failProposalsOf makes group's proposals fail with err (nil: succeed).
func (n *fakeNode) failProposalsOf(group string, err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.failGroup == nil {
		n.failGroup = map[string]error{}
	}
	n.failGroup[group] = err
}

func (n *fakeNode) proposals() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.proposed
}

func (n *fakeNode) ID() string                          { return "fake" }
func (n *fakeNode) LeaderOf(string) string              { return "fake" }
func (n *fakeNode) Addr() string                        { return "fake:0" }
func (n *fakeNode) ClusterID() string                   { return "fake-cluster" }
func (n *fakeNode) GroupCounts() (int, int)             { return 1, len(n.machines) - 2 }
func (n *fakeNode) FeatureLevel() uint32                { return sm.FeatureLevel }
func (n *fakeNode) ClusterVersion() uint32              { return sm.FeatureLevel }
func (n *fakeNode) Now() time.Time                      { return time.Now() }
func (n *fakeNode) Stopping() <-chan struct{}           { return n.stopping }
func (n *fakeNode) Status() []*metapb.GroupStatus       { return nil }
func (n *fakeNode) HaltedGroups() []*metapb.HaltedGroup { return nil }
func (n *fakeNode) Members(context.Context) ([]*metapb.Member, error) {
	return []*metapb.Member{{Id: "fake", Addr: "fake:0", Voter: true}}, nil
}
func (n *fakeNode) AddMember(context.Context, string, string, string) ([]*metapb.Member, error) {
	return nil, errNoMembership
}
func (n *fakeNode) SetMemberState(context.Context, string, logpb.MemberState) error {
	return errNoMembership
}
func (n *fakeNode) Directory() *state.Directory       { return &state.Directory{} }
func (n *fakeNode) DirectoryChanged() <-chan struct{} { return nil }
func (n *fakeNode) Router() *metapb.Router {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.noDirectory {
		return &metapb.Router{}
	}
	return &metapb.Router{K: 1, M: len(n.machines) - 2, Version: 1, Data: n.data}
}
func (n *fakeNode) RemoveMember(context.Context, string) ([]*metapb.Member, error) {
	return nil, errNoMembership
}
func (n *fakeNode) TransferLeader(context.Context, string, string) (string, error) {
	return "", errNoMembership
}
func (n *fakeNode) StateHash(group string) (state.Hash, error) { return n.machines[group].Hash() }

func (n *fakeNode) Alarms() []*logpb.AlarmSet {
	d, _ := n.machines[metapb.MetadataGroup].Directory()
	return d.Alarms
}

func (n *fakeNode) DisarmAlarm(ctx context.Context, alarm, member string) (uint64, error) {
	res, err := n.Propose(ctx, metapb.MetadataGroup, &logpb.Op{Op: &logpb.Op_AlarmSet{AlarmSet: &logpb.AlarmSet{Alarm: alarm, Member: member}}})
	if err != nil {
		return 0, err
	}
	return res.Count, nil
}
func (n *fakeNode) Backup(context.Context, string) (*metapb.BackupHeader, io.ReadCloser, error) {
	return nil, nil, errNoMembership
}

func (n *fakeNode) Propose(_ context.Context, group string, op *logpb.Op) (*logpb.Result, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.fail != nil {
		return nil, n.fail
	}
	if err := n.failGroup[group]; err != nil {
		return nil, err
	}
	m := n.machines[group]
	if m == nil {
		return nil, metapb.Invalid("group", "no group %q", group)
	}
	data, err := sm.EncodeBatch(&logpb.Batch{NowUnixNano: time.Now().UnixNano(), Ops: []*logpb.Op{op}})
	if err != nil {
		return nil, err
	}
	n.index++
	n.proposed++
	res := m.Apply(&raft.Log{Index: n.index, Term: 1, Type: raft.LogCommand, Data: data}).(*sm.BatchResult)
	return res.Results[0], nil
}

func (n *fakeNode) Read(_ context.Context, group string, _ bool) (state.Reader, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.fail != nil {
		return nil, n.fail
	}
	return n.machines[group], nil
}

var _ server.Node = (*fakeNode)(nil)

// errNoMembership answers the membership and leadership calls a fake node
// cannot make: definitely not done (an uncoded error would be an unknown
// outcome).
var errNoMembership = metapb.NewError(metapb.ReasonNoLeader, nil, "fake: no membership")

// serveFake serves the public API on a fake node and returns a client
// connection to it and a meta client.
func serveFake(t testing.TB, n *fakeNode, opts ...server.Option) (*grpc.ClientConn, *client.Client) {
	t.Helper()
	_, conn, cl := serveFakeServer(t, n, opts...)
	return conn, cl
}

// serveFakeServer is serveFake that also returns the gRPC server (whose
// service list the fuzz target walks).
func serveFakeServer(t testing.TB, n *fakeNode, opts ...server.Option) (*grpc.Server, *grpc.ClientConn, *client.Client) {
	t.Helper()
	// The node's server takes messages of up to 64 MiB (raft's need).
	srv := grpc.NewServer(append(server.ServerOptions(), grpc.MaxRecvMsgSize(64<<20))...)
	s := server.Register(srv, n, "test", opts...)
	t.Cleanup(func() { _ = s.Close() })
	addr := testkit.Serve(t, srv)
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	cl, err := client.New(client.Config{Endpoints: []string{addr}, Pinned: true, RequestTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cl.Close() })
	return srv, conn, cl
}

// The handlers against a node without raft: bad input is refused naming
// the field with nothing proposed, and the resource calls behave as on a
// cluster.
func TestHandlersOnAFakeNode(t *testing.T) {
	n := newFakeNode(t, 2)
	_, cl := serveFake(t, n)
	t.Run("bad input", func(t *testing.T) {
		testBadInput(t, cl)
		if p := n.proposals(); p != 0 {
			t.Fatalf("bad input proposed %d operations, want none", p)
		}
	})
	t.Run("resources", func(t *testing.T) { testResources(t, cl) })
	t.Run("responses name the leader", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		resp, err := cl.Put(ctx, &metapb.PutRequest{Key: []byte("leader"), Value: []byte("1")})
		if err != nil {
			t.Fatal(err)
		}
		if h := resp.GetHeader(); h.GetGroup() == "" || h.GetLeaderId() != "fake" {
			t.Fatalf("header %v: want the group and its leader", h)
		}
	})
}

// Every node error reaches the public API as its reason's status, with
// its metadata; an error without a reason is an unknown outcome for a
// write and a plain Unavailable for a read.
func TestErrorsBecomeStatusesOnce(t *testing.T) {
	n := newFakeNode(t, 1)
	conn, _ := serveFake(t, n)
	kv := metapb.NewKVClient(conn)
	ctx := func() context.Context {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		t.Cleanup(cancel)
		return ctx
	}
	hint := map[string]string{metapb.MetaGroup: "data-0", metapb.MetaLeaderID: "n2", metapb.MetaLeaderAddr: "a2"}
	for _, tc := range []struct {
		name       string
		fail       error
		write      bool
		code       codes.Code
		reason     string
		wantLeader string
	}{
		{"not leader, write", metapb.NewError(metapb.ReasonNotLeader, hint, "not the leader"), true, codes.Unavailable, metapb.ReasonNotLeader, "n2"},
		{"not leader, read", metapb.NewError(metapb.ReasonNotLeader, hint, "not the leader"), false, codes.Unavailable, metapb.ReasonNotLeader, "n2"},
		{"shutting down", metapb.NewError(metapb.ReasonShuttingDown, nil, "stopping"), true, codes.Unavailable, metapb.ReasonShuttingDown, ""},
		{"unknown outcome", metapb.NewError(metapb.ReasonOutcomeUnknown, nil, "lost"), true, codes.Unknown, metapb.ReasonOutcomeUnknown, ""},
		{"wrapped reason", errors.Join(errors.New("context"), metapb.NewError(metapb.ReasonNoLeader, nil, "none")), true, codes.Unavailable, metapb.ReasonNoLeader, ""},
		{"no reason, write", errors.New("disk on fire"), true, codes.Unknown, metapb.ReasonOutcomeUnknown, ""},
		{"no reason, read", errors.New("disk on fire"), false, codes.Unavailable, "", ""},
		{"deadline, read", context.DeadlineExceeded, false, codes.DeadlineExceeded, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n.failWith(tc.fail)
			defer n.failWith(nil)
			var err error
			if tc.write {
				_, err = kv.Put(ctx(), &metapb.PutRequest{Key: []byte("k"), Value: []byte("v")})
			} else {
				_, err = kv.Get(ctx(), &metapb.GetRequest{Key: []byte("k")})
			}
			info := wantStatus(t, err, tc.code, tc.reason, "")
			if tc.reason == "" && info != nil {
				t.Fatalf("got error info %v, want none", info)
			}
			if tc.wantLeader != "" && info.Metadata[metapb.MetaLeaderID] != tc.wantLeader {
				t.Fatalf("leader hint: got %v, want %s", info.Metadata, tc.wantLeader)
			}
			if st, _ := status.FromError(err); st.Message() == "" {
				t.Fatal("empty message")
			}
		})
	}
}

// A node that has not loaded the directory yet cannot route a key: it
// would send every key to data-0 (no counts, no ranges), whose log,
// without an ownership record yet, would take keys that are later read
// from their own groups: acknowledged and never seen again (a fresh
// cluster's first batch of sessions lost that way). It refuses every
// routed call, ROUTE_AHEAD (definitely not applied, retried), and
// proposes nothing; once it has a directory the same calls succeed.
func TestNoRoutingBeforeTheDirectory(t *testing.T) {
	n := newFakeNode(t, 3)
	conn, _ := serveFake(t, n)
	kv, sessions, offsets := metapb.NewKVClient(conn), metapb.NewSessionsClient(conn), metapb.NewOffsetsClient(conn)
	wills, retained := metapb.NewWillsClient(conn), metapb.NewRetainedClient(conn)
	calls := map[string]func() error{
		"put": func() error {
			_, err := kv.Put(ctx10(t), &metapb.PutRequest{Key: []byte("k"), Value: []byte("v")})
			return err
		},
		"get": func() error { _, err := kv.Get(ctx10(t), &metapb.GetRequest{Key: []byte("k")}); return err },
		"put sessions": func() error {
			_, err := sessions.Put(ctx10(t), &metapb.PutSessionsRequest{Sessions: []*metapb.Session{
				{ClientId: "c1", BrokerId: "b1"}, {ClientId: "c2", BrokerId: "b1"}}})
			return err
		},
		"get session": func() error {
			_, err := sessions.Get(ctx10(t), &metapb.GetSessionRequest{ClientId: "c1"})
			return err
		},
		"commit offsets": func() error {
			_, err := offsets.Commit(ctx10(t), &metapb.CommitOffsetsRequest{Offsets: []*metapb.OffsetCommit{{Group: "g", Topic: "t", Offset: 1}}})
			return err
		},
		"put will": func() error {
			_, err := wills.Put(ctx10(t), &metapb.PutWillRequest{Will: &metapb.Will{ClientId: "c1", Topic: "t"}})
			return err
		},
		"set retained": func() error {
			_, err := retained.Set(ctx10(t), &metapb.SetRetainedRequest{Message: &metapb.RetainedMessage{Topic: "t", Payload: []byte("p")}})
			return err
		},
	}
	n.mu.Lock()
	n.noDirectory = true
	n.mu.Unlock()
	for name, call := range calls {
		wantStatus(t, call(), codes.Unavailable, metapb.ReasonRouteAhead, "")
		if p := n.proposals(); p != 0 {
			t.Fatalf("%s: %d operations proposed without a directory", name, p)
		}
	}
	n.mu.Lock()
	n.noDirectory = false
	n.mu.Unlock()
	for name, call := range calls {
		if err := call(); err != nil {
			t.Fatalf("%s with a directory: %v", name, err)
		}
	}
}

// A public request over the size limit is refused, naming the request,
// without being decoded or proposed; raft's own messages on the same port
// are not bound by it (the transport's tests send larger ones).
func TestOversizedRequestRefusedBeforeDecoding(t *testing.T) {
	n := newFakeNode(t, 1)
	conn, _ := serveFake(t, n)
	kv := metapb.NewKVClient(conn)
	_, err := kv.Put(ctx10(t), &metapb.PutRequest{Key: []byte("k"), Value: make([]byte, server.DefaultMaxRequestBytes+1)})
	wantStatus(t, err, codes.InvalidArgument, metapb.ReasonInvalidArgument, "request")
	if !strings.Contains(status.Convert(err).Message(), "over the limit") {
		t.Fatalf("message %q does not say the request is too large", status.Convert(err).Message())
	}
	if p := n.proposals(); p != 0 {
		t.Fatalf("an oversized request proposed %d operations", p)
	}
	// Just under the limit it is decoded (and refused for its value's size).
	_, err = kv.Put(ctx10(t), &metapb.PutRequest{Key: []byte("k"), Value: make([]byte, metapb.MaxValueBytes+1)})
	wantStatus(t, err, codes.InvalidArgument, metapb.ReasonInvalidArgument, "value")
}

// A stored credential is never returned: not by the write's answer, a
// read, a listing or a watch (credential_set says one is stored).
func TestStoredCredentialNeverReturned(t *testing.T) {
	n := newFakeNode(t, 1)
	_, cl := serveFake(t, n)
	w := startWatch(t, cl, &metapb.WatchRequest{Space: metapb.WatchSpace_WATCH_SPACE_RESOURCES})
	w.started(t)
	secret := func(where string, r *metapb.Resource) {
		t.Helper()
		u := r.GetUser()
		if u == nil {
			t.Fatalf("%s: no user spec in %v", where, r)
		}
		if len(u.Credential) != 0 || !u.CredentialSet {
			t.Fatalf("%s returned credential %q (set %v): want none, and credential_set", where, u.Credential, u.CredentialSet)
		}
	}
	created := must(cl.CreateResource(ctx10(t), &metapb.CreateResourceRequest{Resource: user("alice")}))(t)
	secret("create", created.Resource)
	got := must(cl.GetResource(ctx10(t), &metapb.GetResourceRequest{Kind: metapb.ResourceKind_RESOURCE_KIND_USER, Name: "alice"}))(t)
	secret("get", got.Resource)
	list := must(cl.ListResources(ctx10(t), &metapb.ListResourcesRequest{Kind: metapb.ResourceKind_RESOURCE_KIND_USER}))(t)
	if len(list.Resources) != 1 {
		t.Fatalf("listed %v", list.Resources)
	}
	secret("list", list.Resources[0])
	secret("watch", w.waitEvents(t, 1)[0].Resource)
	upd := user("alice")
	upd.GetUser().Credential = []byte("new")
	updated := must(cl.UpdateResource(ctx10(t), &metapb.UpdateResourceRequest{Resource: upd, ExpectedRevision: got.Resource.ModRevision}))(t)
	secret("update", updated.Resource)
	secret("watch of the update", w.waitEvents(t, 2)[1].Resource)
	deleted := must(cl.DeleteResource(ctx10(t), &metapb.DeleteResourceRequest{Kind: metapb.ResourceKind_RESOURCE_KIND_USER, Name: "alice"}))(t)
	secret("delete", deleted.GetPrev())
}
