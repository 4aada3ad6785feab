package transport

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/metamq/meta/rpc/transport/raftpb"
)

type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "test-ca"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return &testCA{cert: c, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue writes a member certificate for id (URI SAN) into dir and
// returns its TLSFiles.
func (ca *testCA) issue(t *testing.T, dir, id string, serial int64) TLSFiles {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(MemberURIPrefix + id)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: "cn-" + id},
		URIs:         []*url.URL{u},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	f := TLSDirFiles(dir)
	write := func(p string, b []byte) {
		// Write then rename so a reader never sees half a file.
		tmp := p + ".tmp"
		if err := os.WriteFile(tmp, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, p); err != nil {
			t.Fatal(err)
		}
	}
	write(f.Cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	write(f.Key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}))
	write(f.CA, ca.pem)
	return f
}

type votingServer struct {
	raftpb.UnimplementedRaftServiceServer
	votes int
}

func (v *votingServer) RequestVote(context.Context, *raftpb.RequestVoteRequest) (*raftpb.RequestVoteResponse, error) {
	v.votes++
	return &raftpb.RequestVoteResponse{}, nil
}

// startPeerServer serves RaftService over TLS with PeerAuth admitting
// only members.
func startPeerServer(t *testing.T, r *CertReloader, members map[string]bool) (string, *votingServer) {
	t.Helper()
	auth := PeerAuth{Allowed: func(id string) bool { return members[id] }}
	s := grpc.NewServer(grpc.Creds(r.ServerCredentials()),
		grpc.UnaryInterceptor(auth.Unary), grpc.StreamInterceptor(auth.Stream))
	vs := &votingServer{}
	raftpb.RegisterRaftServiceServer(s, vs)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Serve(lis) }()
	t.Cleanup(s.Stop)
	return lis.Addr().String(), vs
}

func callVote(t *testing.T, addr string, creds credentials.TransportCredentials) error {
	t.Helper()
	cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err = raftpb.NewRaftServiceClient(cc).RequestVote(ctx, &raftpb.RequestVoteRequest{Term: 99})
	return err
}

func TestPeerAuthRefusesNonMembers(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t)
	n1, err := NewCertReloader(ca.issue(t, filepath.Join(dir, "n1"), "n1", 10))
	if err != nil {
		t.Fatal(err)
	}
	if n1.ID() != "n1" {
		t.Fatalf("own id = %q, want n1 (from the certificate)", n1.ID())
	}
	addr, vs := startPeerServer(t, n1, map[string]bool{"n1": true, "n2": true})

	n2, err := NewCertReloader(ca.issue(t, filepath.Join(dir, "n2"), "n2", 11))
	if err != nil {
		t.Fatal(err)
	}
	if err := callVote(t, addr, n2.ClientCredentials()); err != nil {
		t.Fatalf("member n2 refused: %v", err)
	}

	// A valid certificate from the same CA naming a non-member.
	x, err := NewCertReloader(ca.issue(t, filepath.Join(dir, "x"), "intruder", 12))
	if err != nil {
		t.Fatal(err)
	}
	if err := callVote(t, addr, x.ClientCredentials()); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("non-member vote: err = %v, want PermissionDenied", err)
	}

	// TLS without a client certificate.
	noCert := &tls.Config{InsecureSkipVerify: true} //nolint:gosec // test: server identity not under test
	if err := callVote(t, addr, credentials.NewTLS(noCert)); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("certificate-less vote: err = %v, want Unauthenticated", err)
	}

	// A certificate from another CA fails the handshake.
	other := newTestCA(t)
	y, err := NewCertReloader(other.issue(t, filepath.Join(dir, "y"), "n2", 13))
	if err != nil {
		t.Fatal(err)
	}
	if err := callVote(t, addr, y.ClientCredentials()); err == nil {
		t.Fatal("vote with a certificate from a foreign CA was accepted")
	}

	// Plaintext cannot reach a TLS server at all.
	if err := callVote(t, addr, insecure.NewCredentials()); err == nil {
		t.Fatal("plaintext vote was accepted")
	}
	if vs.votes != 1 {
		t.Fatalf("handler ran %d times, want 1 (only the member's call)", vs.votes)
	}
}

func TestCertReloadWithoutRestart(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t)
	files := ca.issue(t, filepath.Join(dir, "n"), "old-id", 20)
	r, err := NewCertReloader(files)
	if err != nil {
		t.Fatal(err)
	}
	if r.ID() != "old-id" {
		t.Fatalf("id = %q", r.ID())
	}
	ca.issue(t, filepath.Join(dir, "n"), "new-id", 21)
	deadline := time.Now().Add(30 * time.Second)
	for r.ID() != "new-id" {
		if time.Now().After(deadline) {
			t.Fatalf("certificate not reloaded: id still %q", r.ID())
		}
		time.Sleep(100 * time.Millisecond)
	}
	// A broken file keeps the last good certificate.
	if err := os.WriteFile(files.Cert, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * reloadCheckEvery)
	if r.ID() != "new-id" {
		t.Fatalf("bad file replaced the certificate: id %q", r.ID())
	}
}

func TestPeerMethodTableCoversPeerServices(t *testing.T) {
	for _, sd := range []grpc.ServiceDesc{raftpb.RaftService_ServiceDesc, raftpb.PeerService_ServiceDesc} {
		for _, m := range sd.Methods {
			if !IsPeerMethod("/" + sd.ServiceName + "/" + m.MethodName) {
				t.Errorf("%s/%s not guarded", sd.ServiceName, m.MethodName)
			}
		}
		for _, m := range sd.Streams {
			if !IsPeerMethod("/" + sd.ServiceName + "/" + m.StreamName) {
				t.Errorf("%s/%s not guarded", sd.ServiceName, m.StreamName)
			}
		}
	}
	if IsPeerMethod("/meta.v1.KV/Put") {
		t.Error("public method treated as a peer method")
	}
}

// TestTransportMTLS runs raft RequestVote between real Managers with TLS
// on: a member's vote request is delivered; a non-member's (a valid
// certificate from the same CA) is refused before raft sees it.
func TestTransportMTLS(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t)
	members := map[string]bool{"a": true, "b": true}
	withTLS := func(id string, serial int64) func(*Config) {
		r, err := NewCertReloader(ca.issue(t, filepath.Join(dir, id), id, serial))
		if err != nil {
			t.Fatal(err)
		}
		return func(c *Config) {
			c.TLS = r
			c.PeerAllowed = func(id string) bool { return members[id] }
		}
	}
	a := startNode(t, "c", withTLS("a", 30))
	b := startNode(t, "c", withTLS("b", 31))
	x := startNode(t, "c", withTLS("intruder", 32))
	ta, tb, tx := a.group(t, "g"), b.group(t, "g"), x.group(t, "g")
	var delivered atomic.Int32
	serveConsumer(t, tb, func(raft.RPC) (any, error) {
		delivered.Add(1)
		return &raft.RequestVoteResponse{Term: 3, Granted: true}, nil
	})
	var resp raft.RequestVoteResponse
	if err := ta.RequestVote("a", raft.ServerAddress(b.addr), &raft.RequestVoteRequest{Term: 3}, &resp); err != nil {
		t.Fatalf("member vote over mTLS: %v", err)
	}
	if !resp.Granted || delivered.Load() != 1 {
		t.Fatalf("member vote: granted=%v delivered=%d", resp.Granted, delivered.Load())
	}
	var resp2 raft.RequestVoteResponse
	err := tx.RequestVote("intruder", raft.ServerAddress(b.addr), &raft.RequestVoteRequest{Term: 99}, &resp2)
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("non-member vote: err = %v, want PermissionDenied", err)
	}
	var ae raft.AppendEntriesResponse
	err = tx.AppendEntries("intruder", raft.ServerAddress(b.addr), &raft.AppendEntriesRequest{Term: 99}, &ae)
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("non-member append: err = %v, want PermissionDenied", err)
	}
	var tn raft.TimeoutNowResponse
	err = tx.TimeoutNow("intruder", raft.ServerAddress(b.addr), &raft.TimeoutNowRequest{}, &tn)
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("non-member TimeoutNow: err = %v, want PermissionDenied", err)
	}
	if delivered.Load() != 1 {
		t.Fatalf("non-member requests reached raft: delivered=%d, want 1", delivered.Load())
	}
}

func TestTLSConfigNeedsPeerAllowed(t *testing.T) {
	ca := newTestCA(t)
	r, err := NewCertReloader(ca.issue(t, t.TempDir(), "a", 40))
	if err != nil {
		t.Fatal(err)
	}
	if err := (Config{LocalAddr: "x:1", TLS: r}).Validate(); err == nil {
		t.Fatal("TLS without PeerAllowed accepted")
	}
}
