package transport

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/metamq/meta/rpc/transport/raftpb"
)

// MemberURIPrefix is how a certificate names a member: a URI SAN
// "meta://member/<id>". Without such a SAN the subject CN is the id.
const MemberURIPrefix = "meta://member/"

// TLSFiles is where a node's certificate, key and CA bundle live. The
// files are re-read when their modification time or size changes, so a
// renewed certificate is used by the next handshake without a restart.
type TLSFiles struct {
	Cert, Key, CA string
}

// TLSDirFiles returns the conventional names inside dir: node.crt,
// node.key and ca.crt.
func TLSDirFiles(dir string) TLSFiles {
	return TLSFiles{Cert: dir + "/node.crt", Key: dir + "/node.key", CA: dir + "/ca.crt"}
}

// CertReloader holds the current certificate and CA pool of TLSFiles and
// reloads them when a file changes (checked at most once per
// reloadCheckEvery, on handshakes).
type CertReloader struct {
	files TLSFiles

	mu      sync.Mutex
	stamp   string
	checked time.Time
	cert    *tls.Certificate
	pool    *x509.CertPool
	id      string
}

const reloadCheckEvery = time.Second

// NewCertReloader loads files once; an error names the file at fault.
func NewCertReloader(files TLSFiles) (*CertReloader, error) {
	if files.Cert == "" || files.Key == "" || files.CA == "" {
		return nil, errors.New("tls: cert, key and ca are all required")
	}
	r := &CertReloader{files: files}
	if err := r.reload(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *CertReloader) fileStamp() (string, error) {
	var b strings.Builder
	for _, p := range []string{r.files.Cert, r.files.Key, r.files.CA} {
		fi, err := os.Stat(p)
		if err != nil {
			return "", fmt.Errorf("tls: %w", err)
		}
		fmt.Fprintf(&b, "%s:%d:%d;", p, fi.ModTime().UnixNano(), fi.Size())
	}
	return b.String(), nil
}

// reload re-reads the files when their stamp changed. Called with r.mu
// not held.
func (r *CertReloader) reload() error {
	stamp, err := r.fileStamp()
	if err != nil {
		return err
	}
	r.mu.Lock()
	same := stamp == r.stamp
	r.mu.Unlock()
	if same {
		return nil
	}
	cert, err := tls.LoadX509KeyPair(r.files.Cert, r.files.Key)
	if err != nil {
		return fmt.Errorf("tls: cert %s / key %s: %w", r.files.Cert, r.files.Key, err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return fmt.Errorf("tls: cert %s: %w", r.files.Cert, err)
	}
	cert.Leaf = leaf
	caPEM, err := os.ReadFile(r.files.CA)
	if err != nil {
		return fmt.Errorf("tls: ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return fmt.Errorf("tls: ca %s: no PEM certificate", r.files.CA)
	}
	id := CertIdentity(leaf)
	if id == "" {
		return fmt.Errorf("tls: cert %s: names no member (no %s URI SAN, empty CN)", r.files.Cert, MemberURIPrefix)
	}
	r.mu.Lock()
	r.stamp, r.cert, r.pool, r.id, r.checked = stamp, &cert, pool, id, time.Now()
	r.mu.Unlock()
	return nil
}

// current returns the certificate and pool, reloading first when the
// last check is older than reloadCheckEvery. A failed reload keeps the
// previous (valid) material: a half-written file must not take the node
// off the network.
func (r *CertReloader) current() (*tls.Certificate, *x509.CertPool) {
	r.mu.Lock()
	due := time.Since(r.checked) >= reloadCheckEvery
	if due {
		r.checked = time.Now()
	}
	r.mu.Unlock()
	if due {
		_ = r.reload()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cert, r.pool
}

// ID is the member id the current certificate names: a node's own id
// comes from its certificate.
func (r *CertReloader) ID() string {
	r.current()
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.id
}

// CertIdentity returns the member id a certificate names: its first
// meta://member/<id> URI SAN, else its subject CN.
func CertIdentity(c *x509.Certificate) string {
	for _, u := range c.URIs {
		if s := u.String(); strings.HasPrefix(s, MemberURIPrefix) {
			return strings.TrimPrefix(s, MemberURIPrefix)
		}
	}
	return c.Subject.CommonName
}

// ServerTLSConfig asks every client for a certificate and verifies any
// it is given against the current CA (clients without one may still
// reach the public API; peer methods require one: PeerAuth).
func (r *CertReloader) ServerTLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			cert, pool := r.current()
			return &tls.Config{
				MinVersion:   tls.VersionTLS12,
				Certificates: []tls.Certificate{*cert},
				ClientCAs:    pool,
				ClientAuth:   tls.VerifyClientCertIfGiven,
				NextProtos:   []string{"h2"},
			}, nil
		},
	}
}

// ClientTLSConfig presents the current certificate and verifies the
// server's chain against the current CA (read per handshake, so a
// rotated CA is honoured without a restart). The server must be a member
// certificate; host names are not checked because members are named by
// id, not by address.
func (r *CertReloader) ClientTLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		// Verification is done in VerifyConnection against the
		// reloaded pool; the static check cannot see a new CA.
		InsecureSkipVerify: true, //nolint:gosec // verified below
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			cert, _ := r.current()
			return cert, nil
		},
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("tls: server sent no certificate")
			}
			_, pool := r.current()
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{
				Roots:         pool,
				Intermediates: inter,
				KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			})
			if err != nil {
				return fmt.Errorf("tls: server certificate: %w", err)
			}
			if CertIdentity(cs.PeerCertificates[0]) == "" {
				return errors.New("tls: server certificate names no member")
			}
			return nil
		},
	}
}

// ServerCredentials and ClientCredentials wrap the configs for gRPC.
func (r *CertReloader) ServerCredentials() credentials.TransportCredentials {
	return credentials.NewTLS(r.ServerTLSConfig())
}

// ClientCredentials: see ServerCredentials.
func (r *CertReloader) ClientCredentials() credentials.TransportCredentials {
	return credentials.NewTLS(r.ClientTLSConfig())
}

// peerServicePrefixes are the services only members may call: raft
// traffic and the peer calls.
var peerServicePrefixes = []string{
	"/" + raftpb.RaftService_ServiceDesc.ServiceName + "/",
	"/" + raftpb.PeerService_ServiceDesc.ServiceName + "/",
}

// IsPeerMethod reports whether fullMethod belongs to a member-only
// service.
func IsPeerMethod(fullMethod string) bool {
	for _, p := range peerServicePrefixes {
		if strings.HasPrefix(fullMethod, p) {
			return true
		}
	}
	return false
}

// PeerIdentity returns the member id named by the verified client
// certificate of ctx's connection, or an Unauthenticated error.
func PeerIdentity(ctx context.Context) (string, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return "", status.Error(codes.Unauthenticated, "peer call: no peer information")
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return "", status.Error(codes.Unauthenticated, "peer call: connection is not TLS")
	}
	if len(ti.State.VerifiedChains) == 0 || len(ti.State.VerifiedChains[0]) == 0 {
		return "", status.Error(codes.Unauthenticated, "peer call: no verified client certificate")
	}
	id := CertIdentity(ti.State.VerifiedChains[0][0])
	if id == "" {
		return "", status.Error(codes.Unauthenticated, "peer call: client certificate names no member")
	}
	return id, nil
}

// PeerAuth is a unary and stream interceptor pair admitting calls to
// member-only services only from a verified certificate naming an id
// for which allowed returns true (a current member or one being added).
// Other methods pass through untouched.
type PeerAuth struct {
	Allowed func(id string) bool
}

func (a PeerAuth) check(ctx context.Context, method string) error {
	if !IsPeerMethod(method) {
		return nil
	}
	id, err := PeerIdentity(ctx)
	if err != nil {
		return err
	}
	if a.Allowed == nil || !a.Allowed(id) {
		return status.Errorf(codes.PermissionDenied, "peer call %s: certificate names %q, not a member", method, id)
	}
	return nil
}

// Unary is the unary half of PeerAuth.
func (a PeerAuth) Unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if err := a.check(ctx, info.FullMethod); err != nil {
		return nil, err
	}
	return h(ctx, req)
}

// Stream is the stream half of PeerAuth.
func (a PeerAuth) Stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	if err := a.check(ss.Context(), info.FullMethod); err != nil {
		return err
	}
	return h(srv, ss)
}

// tlsServerOptions are the server credentials and the PeerAuth
// interceptors when m's Config has TLS; none otherwise. The interceptors
// are chained, so the caller's own interceptors still run.
func (m *Manager) tlsServerOptions() []grpc.ServerOption {
	if m.cfg.TLS == nil {
		return nil
	}
	auth := PeerAuth{Allowed: m.cfg.PeerAllowed}
	return []grpc.ServerOption{
		grpc.Creds(m.cfg.TLS.ServerCredentials()),
		grpc.ChainUnaryInterceptor(auth.Unary),
		grpc.ChainStreamInterceptor(auth.Stream),
	}
}

// clientCredentials are mTLS credentials when m's Config has TLS,
// plaintext otherwise.
func (m *Manager) clientCredentials() credentials.TransportCredentials {
	if m.cfg.TLS == nil {
		return insecure.NewCredentials()
	}
	return m.cfg.TLS.ClientCredentials()
}
