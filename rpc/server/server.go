package server

import (
	"context"
	"fmt"
	"io"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/proto"

	"github.com/metamq/meta/rpc/metapb"
	"github.com/metamq/meta/sm/logpb"
	"github.com/metamq/meta/sm/state"
)

// Node is what the public services need from a Meta Node. Its errors are
// of meta's vocabulary (rpc/metapb/errors.go).
type Node interface {
	ID() string
	Addr() string
	ClusterID() string
	GroupCounts() (k, m int)
	// Propose replicates one operation through the group's leader.
	Propose(ctx context.Context, group string, op *logpb.Op) (*logpb.Result, error)
	// Read returns the group's state once it may serve a read:
	// linearizable unless stale.
	Read(ctx context.Context, group string, stale bool) (state.Reader, error)
	Status() []*metapb.GroupStatus
	// HaltedGroups lists this node's halted replicas (empty: none).
	HaltedGroups() []*metapb.HaltedGroup
	Members(ctx context.Context) ([]*metapb.Member, error)
	AddMember(ctx context.Context, id, addr, zone string) ([]*metapb.Member, error)
	RemoveMember(ctx context.Context, id string) ([]*metapb.Member, error)
	SetMemberState(ctx context.Context, id string, state logpb.MemberState) error
	// Directory is the newest directory the node has seen, and
	// DirectoryChanged is closed at the next change.
	Directory() *state.Directory
	DirectoryChanged() <-chan struct{}
	TransferLeader(ctx context.Context, group, target string) (string, error)
	StateHash(group string) (state.Hash, error)
	// Alarms lists the raised alarms; DisarmAlarm clears alarm for
	// member (every member when empty) through metadata-0's log.
	Alarms() []*logpb.AlarmSet
	DisarmAlarm(ctx context.Context, alarm, member string) (uint64, error)
	// Backup exports a group's state once every write acknowledged before
	// the call is applied here (see metapb.BackupRequest); closing the
	// reader releases the export.
	Backup(ctx context.Context, group string) (*metapb.BackupHeader, io.ReadCloser, error)
	// Now is the node's clock, the one the leaders stamp entries with
	// (remaining lease TTLs and due wills are judged by it).
	Now() time.Time
	// Stopping is closed when the node begins to shut down (watches end
	// then, so an orderly stop need not wait for them).
	Stopping() <-chan struct{}
	// Router routes routing keys to groups by the directory the node
	// holds.
	Router() *metapb.Router
	// LeaderOf is the group's leader as this node knows it ("" when
	// unknown).
	LeaderOf(group string) string
	// FeatureLevel is the level this node runs at; ClusterVersion the
	// cluster version it sees (sm/version.go).
	FeatureLevel() uint32
	ClusterVersion() uint32
}

// Server implements the public services.
type Server struct {
	metapb.UnimplementedKVServer
	metapb.UnimplementedOffsetsServer
	metapb.UnimplementedClusterServer
	node    Node
	version string
	fwd     *forwarder
	// ctl is the Controller service once registered (the Cluster calls
	// that only the controller can answer go through it).
	ctl *ControllerService
	// watches counts the open watches per client connection (see
	// WithMaxWatchesPerConn).
	watches *connWatches
}

// Option configures Register.
type Option func(*Server)

// WithDialer makes the connections on which calls are forwarded to other
// nodes (tests inject faults through it; the node's transport uses the
// same).
func WithDialer(dial func(ctx context.Context, addr string) (net.Conn, error)) Option {
	return func(s *Server) { s.fwd.dial = dial }
}

// WithTransportCredentials secures the connections on which calls are
// forwarded to other nodes (the node's mTLS credentials when TLS is on).
func WithTransportCredentials(c credentials.TransportCredentials) Option {
	return func(s *Server) { s.fwd.creds = c }
}

// WithMaxWatchesPerConn bounds the watches (Watch and WatchDirectory) one
// client connection holds open at once (default DefaultMaxWatchesPerConn;
// below 1: the default). One more is refused at once with OVERLOADED
// (ResourceExhausted, retryable: on another connection, or after one
// ends). Watches another node forwards are not counted: they carry many
// clients' watches on one connection, each counted where it arrived.
func WithMaxWatchesPerConn(n int) Option {
	return func(s *Server) {
		if n > 0 {
			s.watches.max = n
		}
	}
}

// Register creates the public services for node and registers them on s.
// Close the returned Server after the node.
func Register(s *grpc.Server, node Node, version string, opts ...Option) *Server {
	srv := &Server{node: node, version: version, fwd: newForwarder(nil),
		watches: &connWatches{max: DefaultMaxWatchesPerConn, open: map[string]int{}}}
	for _, o := range opts {
		o(srv)
	}
	metapb.RegisterKVServer(s, srv)
	metapb.RegisterOffsetsServer(s, srv)
	metapb.RegisterClusterServer(s, srv)
	metapb.RegisterMetadataServer(s, &metadataService{s: srv})
	metapb.RegisterSessionsServer(s, &sessionsService{s: srv})
	metapb.RegisterWillsServer(s, &willsService{s: srv})
	metapb.RegisterRetainedServer(s, &retainedService{s: srv})
	metapb.RegisterLeasesServer(s, &leasesService{s: srv})
	metapb.RegisterWatchServer(s, &watchService{s: srv})
	return srv
}

// Close closes the connections calls were forwarded on.
func (s *Server) Close() error { return s.fwd.close() }

func (s *Server) header(group string, m state.Reader, rev uint64) *metapb.ResponseHeader {
	h := &metapb.ResponseHeader{NodeId: s.node.ID(), Group: group, Revision: rev}
	if group != "" {
		h.LeaderId = s.node.LeaderOf(group)
	}
	if m != nil {
		h.AppliedIndex = m.AppliedIndex()
		if rev == 0 {
			h.Revision = m.Revision()
		}
	}
	return h
}

// propose runs one op and maps errors; the result's INVALID code becomes
// InvalidArgument (the servers validate first, so it signals a bug).
func (s *Server) propose(ctx context.Context, group string, op *logpb.Op) (*logpb.Result, error) {
	if err := s.checkRoute(ctx, group); err != nil {
		return nil, err
	}
	res, err := s.node.Propose(ctx, group, op)
	if err != nil {
		return nil, s.statusOf(err, true)
	}
	if err := s.routingResult(group, res); err != nil {
		return nil, err
	}
	if res.Code == logpb.Code_CODE_INVALID {
		return nil, invalidArgument("", res.Message)
	}
	return res, nil
}

func (s *Server) read(ctx context.Context, group string, c metapb.ReadConsistency) (state.Reader, error) {
	m, err := s.node.Read(ctx, group, c == metapb.ReadConsistency_READ_CONSISTENCY_STALE)
	if err != nil {
		return nil, s.statusOf(err, false)
	}
	return m, nil
}

// unmarshalStored decodes a stored encoding (of a will, a resource, ...:
// what names it in the error). An empty encoding decodes to the empty
// message.
func unmarshalStored[M any, PM interface {
	*M
	proto.Message
}](raw []byte, what string) (*M, error) {
	m := new(M)
	if err := proto.Unmarshal(raw, PM(m)); err != nil {
		return nil, fmt.Errorf("server: decode stored %s: %w", what, err)
	}
	return m, nil
}

// decodeStored decodes a stored encoding as unmarshalStored does and
// converts it with conv; an empty encoding (nothing stored) is the zero R
// (nil).
func decodeStored[M any, PM interface {
	*M
	proto.Message
}, R any](raw []byte, what string, conv func(*M) (R, error)) (R, error) {
	var zero R
	if len(raw) == 0 {
		return zero, nil
	}
	m, err := unmarshalStored[M, PM](raw, what)
	if err != nil {
		return zero, err
	}
	return conv(m)
}

func toKV(key []byte, kv *logpb.KV) *metapb.KeyValue {
	if kv == nil {
		return nil
	}
	return &metapb.KeyValue{Key: key, Value: kv.Value, CreateRevision: kv.CreateRevision,
		ModRevision: kv.ModRevision, Version: kv.Version, Lease: kv.Lease}
}
