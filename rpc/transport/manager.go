package transport

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/keepalive"

	"github.com/metamq/meta/rpc/transport/raftpb"
)

// Manager routes incoming raft and peer traffic to the groups open on this
// node and owns the outgoing connections: one *grpc.ClientConn per peer
// address, shared by all groups and peer calls.
type Manager struct {
	cfg Config // defaults applied; never changed after NewManager
	log *slog.Logger

	clusterID atomic.Pointer[string]
	handler   atomic.Pointer[handlerBox]
	rejects   logLimiter

	mu     sync.RWMutex // guards groups, conns and closed
	groups map[string]*Transport
	conns  map[string]*peerConn
	closed bool

	hbMu sync.Mutex // guards hb
	hb   map[hbKey]*hbBatcher

	// lifetime ends at Close; spawned goroutines (heartbeat flushes) are
	// counted in loops and awaited by Close.
	lifetime context.Context
	cancel   context.CancelFunc
	loopsMu  sync.Mutex // guards loops.Add against Close's Wait
	loops    sync.WaitGroup
}

// peerConn is the one connection to a peer address and its service stubs.
type peerConn struct {
	cc   *grpc.ClientConn
	raft raftpb.RaftServiceClient
	peer raftpb.PeerServiceClient
}

type handlerBox struct{ h PeerHandler }

// NewManager returns a Manager for cfg. It opens no connection and starts
// no goroutine: connections are created on first use.
func NewManager(cfg Config) (*Manager, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	m := &Manager{
		cfg:    cfg,
		log:    cfg.Logger.With("component", "transport"),
		groups: make(map[string]*Transport),
		conns:  make(map[string]*peerConn),
		hb:     make(map[hbKey]*hbBatcher),
	}
	m.lifetime, m.cancel = context.WithCancel(context.Background())
	m.SetClusterID(cfg.ClusterID)
	return m, nil
}

// ServerOptions returns the options the node's grpc.Server must be created
// with for raft traffic: the message size limit (incoming limits are server
// options, so Register cannot raise them), a keepalive policy that
// accepts this package's client pings, an idle timeout for connections
// and a bound on the streams open on one connection.
func (m *Manager) ServerOptions() []grpc.ServerOption {
	opts := m.tlsServerOptions()
	return append(opts,
		grpc.MaxRecvMsgSize(m.cfg.MaxMsgBytes),
		grpc.MaxSendMsgSize(m.cfg.MaxMsgBytes),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime:             keepaliveMinTime,
			PermitWithoutStream: true,
		}),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			Time:              keepaliveTime,
			Timeout:           keepaliveTimeout,
			MaxConnectionIdle: maxConnectionIdle,
		}),
		grpc.MaxConcurrentStreams(maxConcurrentStreams),
	)
}

// Register registers the raft service and the peer service on s. Call it
// once per server.
func (m *Manager) Register(s grpc.ServiceRegistrar) {
	raftpb.RegisterRaftServiceServer(s, raftServer{m: m})
	raftpb.RegisterPeerServiceServer(s, peerServer{m: m})
}

// SetClusterID sets the cluster id carried by outgoing messages and
// required of incoming ones. A joining node learns it after start.
func (m *Manager) SetClusterID(id string) {
	m.clusterID.Store(&id)
}

// ClusterID returns the current cluster id ("" if not known yet).
func (m *Manager) ClusterID() string {
	return *m.clusterID.Load()
}

// LocalAddr returns this node's advertised address.
func (m *Manager) LocalAddr() string { return m.cfg.LocalAddr }

// SetPeerHandler sets the handler of incoming peer calls. Until it is set,
// peer calls are answered with KindUnavailable.
func (m *Manager) SetPeerHandler(h PeerHandler) {
	m.handler.Store(&handlerBox{h: h})
}

func (m *Manager) peerHandler() PeerHandler {
	if b := m.handler.Load(); b != nil {
		return b.h
	}
	return nil
}

// Group opens the transport of a raft group. The group stays open until
// its Transport is closed (raft.Shutdown does that) or the Manager is; it
// may then be opened again.
func (m *Manager) Group(name string) (*Transport, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	if _, ok := m.groups[name]; ok {
		return nil, fmt.Errorf("%w: %q", ErrGroupExists, name)
	}
	t := newTransport(m, name)
	m.groups[name] = t
	return t, nil
}

func (m *Manager) removeGroup(name string, t *Transport) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.groups[name] == t {
		delete(m.groups, name)
	}
}

// Close closes every group transport (cancelling their outgoing calls and
// unblocking incoming requests that wait on them) and every connection. It
// is safe to call more than once.
func (m *Manager) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	groups := make([]*Transport, 0, len(m.groups))
	for _, t := range m.groups {
		groups = append(groups, t)
	}
	conns := m.conns
	m.groups, m.conns = map[string]*Transport{}, map[string]*peerConn{}
	m.mu.Unlock()

	m.cancel()
	m.loopsMu.Lock()
	m.loops.Wait()
	m.loopsMu.Unlock()
	var errs []error
	for _, t := range groups {
		errs = append(errs, t.Close())
	}
	for addr, pc := range conns {
		if err := pc.cc.Close(); err != nil {
			errs = append(errs, fmt.Errorf("transport: close connection to %s: %w", addr, err))
		}
	}
	return errors.Join(errs...)
}

// spawn runs f in a goroutine Close waits for; false once closed.
func (m *Manager) spawn(f func()) bool {
	m.loopsMu.Lock()
	defer m.loopsMu.Unlock()
	if m.lifetime.Err() != nil {
		return false
	}
	m.loops.Add(1)
	go func() {
		defer m.loops.Done()
		f()
	}()
	return true
}

// Disconnect closes the connection to addr, if any, and forgets it: calls
// in flight on it fail, and the next call to addr dials again. Use it when
// a member leaves the cluster.
func (m *Manager) Disconnect(addr string) error {
	m.mu.Lock()
	pc := m.conns[addr]
	delete(m.conns, addr)
	m.mu.Unlock()
	if pc == nil {
		return nil
	}
	if err := pc.cc.Close(); err != nil {
		return fmt.Errorf("transport: close connection to %s: %w", addr, err)
	}
	return nil
}

// conn returns the connection to addr, creating it on first use.
// grpc.NewClient does no I/O, so holding the lock is cheap.
func (m *Manager) conn(addr string) (*peerConn, error) {
	m.mu.RLock()
	pc, closed := m.conns[addr], m.closed
	m.mu.RUnlock()
	if closed {
		return nil, ErrClosed
	}
	if pc != nil {
		return pc, nil
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	if pc := m.conns[addr]; pc != nil {
		return pc, nil
	}
	// passthrough: the Dialer (or net.Dialer) receives the address as
	// advertised, and a hostname is resolved again on every reconnect.
	cc, err := grpc.NewClient("passthrough:///"+addr, m.dialOptions()...)
	if err != nil {
		return nil, fmt.Errorf("transport: client for %s: %w", addr, err)
	}
	pc = &peerConn{cc: cc, raft: raftpb.NewRaftServiceClient(cc), peer: raftpb.NewPeerServiceClient(cc)}
	m.conns[addr] = pc
	return pc, nil
}

func (m *Manager) dialOptions() []grpc.DialOption {
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(m.clientCredentials()),
		grpc.WithDefaultCallOptions(
			grpc.MaxCallRecvMsgSize(m.cfg.MaxMsgBytes),
			grpc.MaxCallSendMsgSize(m.cfg.MaxMsgBytes),
		),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{
			Time:                keepaliveTime,
			Timeout:             keepaliveTimeout,
			PermitWithoutStream: true,
		}),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: backoff.Config{
				BaseDelay:  backoffBase,
				Multiplier: 1.6,
				Jitter:     0.2,
				MaxDelay:   backoffMax,
			},
			MinConnectTimeout: m.cfg.Timeout,
		}),
		// An idle channel would drop its connection and redial later;
		// raft connections are long-lived, so idleness is off.
		grpc.WithIdleTimeout(0),
	}
	if m.cfg.Dialer != nil {
		opts = append(opts, grpc.WithContextDialer(m.cfg.Dialer))
	}
	return opts
}

// route finds the open group an incoming raft message is for.
func (m *Manager) route(method, cluster, group string) (*Transport, error) {
	if err := m.checkCluster(method, cluster, false); err != nil {
		return nil, err
	}
	m.mu.RLock()
	t := m.groups[group]
	m.mu.RUnlock()
	if t == nil {
		return nil, rejection(codes.Unavailable, raftpb.Reason_REASON_UNKNOWN_GROUP,
			fmt.Sprintf("transport: group %q is not open on %s", group, m.cfg.LocalAddr))
	}
	if t.closing() {
		return nil, errGroupClosing(group)
	}
	return t, nil
}

// checkCluster rejects a message whose cluster id is not ours. An empty
// remote id is accepted only where allowEmpty (ClusterInfo discovery).
func (m *Manager) checkCluster(method, remote string, allowEmpty bool) error {
	local := m.ClusterID()
	if local != "" && (remote == local || (remote == "" && allowEmpty)) {
		return nil
	}
	msg := fmt.Sprintf("transport: cluster id %q does not match %q of %s", remote, local, m.cfg.LocalAddr)
	if local == "" {
		msg = fmt.Sprintf("transport: %s does not know its cluster id yet", m.cfg.LocalAddr)
	}
	if ok, suppressed := m.rejects.allow(time.Now()); ok {
		m.log.Warn("rejected message from another cluster",
			"method", method, "remote_cluster", remote, "local_cluster", local, "suppressed", suppressed)
	}
	return rejection(codes.FailedPrecondition, raftpb.Reason_REASON_CLUSTER_MISMATCH, msg)
}

// logLimiter lets one log line through per interval and counts the rest,
// so a misconfigured peer sending heartbeats for several groups does not
// flood the log.
type logLimiter struct {
	last       atomic.Int64 // unix nanos of the last line let through
	suppressed atomic.Int64
}

const logInterval = 5 * time.Second

func (l *logLimiter) allow(now time.Time) (bool, int64) {
	last := l.last.Load()
	if now.UnixNano()-last < int64(logInterval) || !l.last.CompareAndSwap(last, now.UnixNano()) {
		l.suppressed.Add(1)
		return false, 0
	}
	return true, l.suppressed.Swap(0)
}
