package transport

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"
)

// Defaults applied by NewManager to zero fields of Config.
const (
	DefaultTimeout     = 10 * time.Second
	DefaultMaxMsgBytes = 64 << 20
	// DefaultPipelineDepth comes from BenchmarkAppendEntries (256-byte
	// entries, 64 per batch, 2 cores). With a follower that fsyncs each
	// batch and 500 µs added to each request, entries/s rise with depth up
	// to 8 (about 4x unpipelined) and stay flat beyond, while the median
	// batch latency keeps growing (requests only queue at the follower);
	// on loopback the gain stops at 4 to 8. Deeper pipelines also waste
	// more work when the follower rejects a request.
	DefaultPipelineDepth = 8
	// DefaultHeartbeatLinger: raft heartbeats each follower every 100-200
	// ms with a 1 s heartbeat timeout (200-400 ms with metanode's
	// --leader-heartbeat-timeout 2s); waiting up to 50 ms gathers the heartbeats of a third
	// of the groups into each call and keeps every follower heard from
	// well within its election timeout. Waiting longer (150 or 250 ms)
	// saved no CPU on an idle node when it was measured (before the
	// batches travelled on a stream): most of the cost is in raft's
	// per-group heartbeat goroutines.
	DefaultHeartbeatLinger = 50 * time.Millisecond
	// DefaultIdleRepeat: raft sends an idle group's followers an append
	// every CommitTimeout to 2 CommitTimeouts (metanode: 250-500 ms) even
	// when it carries nothing new; one a second keeps what those repeats
	// are good for (a follower that restarted learns the commit index, a
	// follower on a newer term is found out) while the heartbeats keep
	// the contact (see pipeline.sendIdle).
	DefaultIdleRepeat = time.Second
)

const (
	// snapshotChunkBytes is the size of each data chunk of InstallSnapshot.
	snapshotChunkBytes = 1 << 20
	// minMsgBytes leaves room for a snapshot chunk and its framing.
	minMsgBytes = 2 * snapshotChunkBytes
	// snapshotTimeoutScale: after the last chunk, the wait for the
	// follower's answer (it restores the state machine before answering) is
	// Timeout per this many bytes of snapshot, and at least Timeout.
	snapshotTimeoutScale = 256 << 10
	// Keepalive: the client pings a connection that has been silent this
	// long and drops it if the ping is not answered in keepaliveTimeout, so
	// a blackholed peer is noticed even while no RPC is outstanding. gRPC
	// clients cannot ping more often than every 10 s.
	keepaliveTime    = 10 * time.Second
	keepaliveTimeout = 5 * time.Second
	// keepaliveMinTime is what the server tolerates; it must be below
	// keepaliveTime or the server answers pings with GOAWAY.
	keepaliveMinTime = 5 * time.Second
	// maxConnectionIdle closes a connection with no call for this long (a
	// peer's never is idle: heartbeats; a client reconnects on its next
	// call), so abandoned connections do not pile up.
	maxConnectionIdle = 15 * time.Minute
	// maxConcurrentStreams bounds the calls and streams open at once on
	// one connection (raft's pipelines and snapshots, a client's watches
	// and calls); a client over it waits for one to end.
	maxConcurrentStreams = 4096
	// Reconnect backoff: gRPC's default grows to 120 s, far longer than a
	// raft election; a restarted peer must be reachable again within a
	// second or so.
	backoffBase = 100 * time.Millisecond
	backoffMax  = time.Second
)

// Config configures a Manager. Zero fields take the defaults above;
// Validate reports fields that cannot be defaulted.
type Config struct {
	// ClusterID is carried by every message; a peer whose id differs
	// rejects the message (FailedPrecondition) and logs it. It may be empty
	// at start and set later with SetClusterID (a joining node); until then
	// the manager rejects every incoming message but ClusterInfo discovery.
	ClusterID string
	// LocalAddr is this node's advertised address (raft.ServerAddress).
	LocalAddr string
	// Logger receives the transport's logs; nil discards them.
	Logger *slog.Logger
	// Dialer, when set, opens every outgoing connection (tests wrap it to
	// inject faults). It receives the peer address exactly as given.
	Dialer func(ctx context.Context, addr string) (net.Conn, error)
	// Timeout bounds each raft RPC (votes, AppendEntries, TimeoutNow), the
	// wait for each pipelined response and each snapshot chunk's progress.
	// Snapshots have no overall timeout. Default 10 s.
	Timeout time.Duration
	// MaxMsgBytes limits messages in both directions. Default 64 MiB; at
	// least 2 MiB. The grpc.Server must be built with ServerOptions for the
	// limit to apply to incoming messages.
	MaxMsgBytes int
	// PipelineDepth is the maximum number of pipelined AppendEntries in
	// flight per group per peer. Zero means DefaultPipelineDepth; a negative
	// value disables pipelining (raft then sends one request at a time).
	PipelineDepth int
	// HeartbeatLinger is how long a group's heartbeat to a peer waits for
	// other groups' heartbeats to the same peer, to travel in one call
	// (heartbeats.go). Zero means DefaultHeartbeatLinger; a negative value
	// sends every heartbeat alone.
	HeartbeatLinger time.Duration
	// IdleRepeat is how long a pipeline holds back an idle append that
	// repeats the last one its follower accepted (pipeline.sendIdle):
	// one such append goes at most this often. Zero means
	// DefaultIdleRepeat; a negative value sends every one.
	IdleRepeat time.Duration
	// TLS, when set, turns on mutual TLS: the server and every dial use
	// its (reloaded) certificate, and raft and peer calls are admitted
	// only from a certificate naming an id PeerAllowed accepts. Nil (the
	// default) keeps plaintext.
	TLS *CertReloader
	// PeerAllowed says whether a certificate's member id may make raft
	// and peer calls (a current member or one being added). Required
	// with TLS.
	PeerAllowed func(id string) bool
}

// Validate reports every problem of c at once. It does not change c.
func (c Config) Validate() error {
	var errs []error
	if c.LocalAddr == "" {
		errs = append(errs, fmt.Errorf("%w: LocalAddr is empty", ErrInvalidConfig))
	}
	if c.Timeout < 0 {
		errs = append(errs, fmt.Errorf("%w: Timeout %v is negative", ErrInvalidConfig, c.Timeout))
	}
	if c.MaxMsgBytes < 0 || (c.MaxMsgBytes > 0 && c.MaxMsgBytes < minMsgBytes) {
		errs = append(errs, fmt.Errorf("%w: MaxMsgBytes %d is below %d", ErrInvalidConfig, c.MaxMsgBytes, minMsgBytes))
	}
	if c.TLS != nil && c.PeerAllowed == nil {
		errs = append(errs, fmt.Errorf("%w: PeerAllowed is required with TLS", ErrInvalidConfig))
	}
	return errors.Join(errs...)
}

// withDefaults returns a copy of c with zero fields defaulted.
func (c Config) withDefaults() Config {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.MaxMsgBytes == 0 {
		c.MaxMsgBytes = DefaultMaxMsgBytes
	}
	if c.PipelineDepth == 0 {
		c.PipelineDepth = DefaultPipelineDepth
	}
	if c.HeartbeatLinger == 0 {
		c.HeartbeatLinger = DefaultHeartbeatLinger
	}
	if c.IdleRepeat == 0 {
		c.IdleRepeat = DefaultIdleRepeat
	}
	return c
}
