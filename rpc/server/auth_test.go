package server_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/metamq/meta/rpc/client"
	"github.com/metamq/meta/rpc/metapb"
	"github.com/metamq/meta/rpc/server"
	"github.com/metamq/meta/rpc/transport"
	"github.com/metamq/meta/verify"
	"github.com/metamq/meta/verify/poll"
	"github.com/metamq/meta/verify/testkit"
)

// authFake serves the public API of a fake node with mutual TLS and
// authentication (certificates under dir: the node "fake", a member
// "intruder" that is not one of its members, a broker b1, a reader r1, an
// admin; a token for broker b2) and returns its address and as, which
// returns a client presenting files (nil: no certificate) and tok.
func authFake(t *testing.T) (dir, addr string, as func(files *transport.TLSFiles, tok string) *client.Client) {
	t.Helper()
	dir = t.TempDir()
	if err := transport.WriteDevCerts(dir, []string{"fake", "intruder"}); err != nil {
		t.Fatal(err)
	}
	for _, c := range [][2]string{{"broker", "b1"}, {"reader", "r1"}} {
		if err := transport.WriteDevCert(dir, c[0], c[1], transport.ClientFiles(filepath.Join(dir, c[0]))); err != nil {
			t.Fatal(err)
		}
	}
	nodeCert, err := transport.NewCertReloader(transport.TLSDirFiles(filepath.Join(dir, "fake")))
	if err != nil {
		t.Fatal(err)
	}
	auth := &server.Auth{Tokens: map[string]server.Principal{server.HashToken(b2Token): {Role: server.RoleBroker, Name: "b2"}},
		IsMember: func(id string) bool { return id == "fake" }}
	opts := append([]grpc.ServerOption{grpc.Creds(nodeCert.ServerCredentials())}, server.AuthOptions(auth)...)
	srv := grpc.NewServer(append(opts, server.ServerOptions()...)...)
	s := server.Register(srv, newFakeNode(t, 1), "test")
	// The fake has no controller; a stub service lets its calls reach
	// the interceptors (gRPC answers an unknown service before them).
	metapb.RegisterControllerServer(srv, metapb.UnimplementedControllerServer{})
	t.Cleanup(func() { _ = s.Close() })
	addr = testkit.Serve(t, srv)

	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	// as returns a client presenting files (none: no certificate).
	as = func(files *transport.TLSFiles, tok string) *client.Client {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}
		if files != nil {
			cert, err := tls.LoadX509KeyPair(files.Cert, files.Key)
			if err != nil {
				t.Fatal(err)
			}
			cfg.Certificates = []tls.Certificate{cert}
		}
		cl, err := client.New(client.Config{Endpoints: []string{addr}, Pinned: true, RequestTimeout: 5 * time.Second, TLS: cfg, Token: tok})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cl.Close() })
		return cl
	}
	return dir, addr, as
}

// b2Token is the bearer token of broker b2 on authFake's node.
const b2Token = "b2-token"

// TestAuthOverTLS serves the public API of a fake node with mutual TLS
// and authentication, and calls it as nobody, a reader, two brokers (a
// certificate and a token), an admin and a member certificate of a node
// that is not a member: each is refused or let through as its role says.
func TestAuthOverTLS(t *testing.T) {
	dir, _, as := authFake(t)
	token := b2Token
	files := func(sub string) *transport.TLSFiles { f := transport.ClientFiles(filepath.Join(dir, sub)); return &f }
	intruder := transport.TLSDirFiles(filepath.Join(dir, "intruder"))
	nobody, reader, broker, tokenBroker, admin, stranger :=
		as(nil, ""), as(files("reader"), ""), as(files("broker"), ""), as(nil, token), as(files(""), ""), as(&intruder, "")

	put := func(cl *client.Client) error {
		_, err := cl.Put(ctx10(t), &metapb.PutRequest{Key: []byte("k"), Value: []byte("v")})
		return err
	}
	get := func(cl *client.Client) error {
		_, err := cl.Get(ctx10(t), &metapb.GetRequest{Key: []byte("k")})
		return err
	}
	heartbeat := func(cl *client.Client, id string) error {
		_, err := cl.Heartbeat(ctx10(t), &metapb.HeartbeatRequest{BrokerId: id, BrokerEpoch: 1})
		return err
	}
	addMember := func(cl *client.Client) error {
		// The fake cannot change membership (no leader, retried until
		// the deadline): a short one.
		_, err := cl.AddMember(ctxT(t, time.Second), "n9", "127.0.0.1:1")
		return err
	}
	createUser := func(cl *client.Client) error {
		_, err := cl.CreateResource(ctx10(t), &metapb.CreateResourceRequest{Resource: &metapb.Resource{
			Kind: metapb.ResourceKind_RESOURCE_KIND_USER, Name: "u1", Spec: &metapb.Resource_User{User: &metapb.UserSpec{}}}})
		return err
	}
	// allowed: past authentication and authorisation (the fake node may
	// still refuse what it cannot do, e.g. membership).
	allowed := func(what string, err error) {
		t.Helper()
		if c := status.Code(err); c == codes.Unauthenticated || c == codes.PermissionDenied {
			t.Errorf("%s: got %v, want it let through", what, err)
		}
	}
	refused := func(what string, err error, want codes.Code) {
		t.Helper()
		if status.Code(err) != want {
			t.Errorf("%s: got %v, want %s", what, err, want)
		}
	}
	refused("no credentials: get", get(nobody), codes.Unauthenticated)
	refused("no credentials: put", put(nobody), codes.Unauthenticated)
	allowed("reader: get", get(reader))
	refused("reader: put", put(reader), codes.PermissionDenied)
	allowed("broker: put", put(broker))
	allowed("broker b1: heartbeat as b1", heartbeat(broker, "b1"))
	refused("broker b1: heartbeat as b2", heartbeat(broker, "b2"), codes.PermissionDenied)
	refused("broker: add member", addMember(broker), codes.PermissionDenied)
	refused("broker: create a user", createUser(broker), codes.PermissionDenied)
	allowed("token broker b2: heartbeat as b2", heartbeat(tokenBroker, "b2"))
	refused("token broker b2: heartbeat as b1", heartbeat(tokenBroker, "b1"), codes.PermissionDenied)
	allowed("token broker: get", get(tokenBroker))
	allowed("admin: add member", addMember(admin))
	allowed("admin: create a user", createUser(admin))
	refused("member certificate of a non-member: get", get(stranger), codes.PermissionDenied)

	// A watch (a stream) is checked when it starts.
	errFirst := errors.New("first response")
	watch := func(cl *client.Client) error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err := cl.Watch(ctx, &metapb.WatchRequest{Prefix: []byte("k")}, func(*metapb.WatchResponse) error { return errFirst })
		if errors.Is(err, errFirst) {
			return nil
		}
		return err
	}
	refused("watch as nobody", watch(nobody), codes.Unauthenticated)
	if err := watch(reader); err != nil {
		t.Errorf("watch as a reader: %v, want its first response", err)
	}
}

// A connection holds at most WithMaxWatchesPerConn watches: one more is
// refused at once with OVERLOADED (retryable), another connection is not
// affected, and a watch that ends makes room.
func TestWatchesPerConnection(t *testing.T) {
	n := newFakeNode(t, 1)
	conn, _ := serveFake(t, n, server.WithMaxWatchesPerConn(2))
	open := func(cc *grpc.ClientConn) (func(), error) {
		ctx, cancel := context.WithCancel(context.Background())
		st, err := metapb.NewWatchClient(cc).Watch(ctx, &metapb.WatchRequest{Prefix: []byte("w")})
		if err == nil {
			_, err = st.Recv() // the first progress notification: the watch is open
		}
		if err != nil {
			cancel()
			return nil, err
		}
		return cancel, nil
	}
	var cancels []func()
	for i := range 2 {
		c, err := open(conn)
		if err != nil {
			t.Fatalf("watch %d: %v", i, err)
		}
		cancels = append(cancels, c)
	}
	_, err := open(conn)
	wantStatus(t, err, codes.ResourceExhausted, metapb.ReasonOverloaded, "")
	other, err := grpc.NewClient(conn.Target(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	c, err := open(other)
	if err != nil {
		t.Fatalf("a watch on another connection: %v", err)
	}
	c()
	cancels[0]()
	var again func()
	poll.ForTrue(t, "a watch to fit after one ended", 10*time.Second, func() bool {
		again, err = open(conn)
		return err == nil
	})
	again()
	cancels[1]()
}

// The chaos suite's auth checker (verify.CheckAuth) judges every probe of
// a server with authentication on, and finds nothing wrong with it.
func TestAuthCheckerJudgesEveryProbe(t *testing.T) {
	dir, addr, as := authFake(t)
	admin := transport.ClientFiles(dir)
	res := verify.CheckAuth(ctx10(t), as(nil, ""), as(&admin, ""), addr, "auth-probe")
	if res.Verdict != verify.Valid || res.Judged != res.Total || res.Total != 4 {
		t.Fatalf("auth check: %+v, want valid with 4 of 4 probes judged", res)
	}
}
