package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/metamq/meta/rpc/metapb"
)

// ErrUnknownOutcome marks a write that may or may not have been applied.
// errors.Is(err, ErrUnknownOutcome) is true for it; the gRPC status, when
// there is one, is still reachable with status.FromError.
var ErrUnknownOutcome = errors.New("client: outcome unknown")

// ErrClosed is returned by calls on a closed client.
var ErrClosed = errors.New("client: closed")

// IsUnknown reports whether err is an unknown outcome.
func IsUnknown(err error) bool { return errors.Is(err, ErrUnknownOutcome) }

type unknownError struct{ err error }

func (e *unknownError) Error() string { return "outcome unknown: " + e.err.Error() }
func (e *unknownError) Unwrap() error { return e.err }
func (e *unknownError) Is(target error) bool {
	return target == ErrUnknownOutcome
}

// Config configures a Client.
type Config struct {
	// Endpoints are host:port addresses of cluster nodes' gRPC listeners.
	Endpoints []string
	// Pinned sends every request to Endpoints[0]; the node forwards what
	// it cannot serve. Without it, writes go to the owning group's leader
	// and reads are spread over the endpoints.
	Pinned bool
	// DialTimeout bounds waiting for a connection to become ready before a
	// request is sent on it. Default 2s.
	DialTimeout time.Duration
	// RequestTimeout bounds a call, retries included, when the caller's
	// context has no deadline. Default 10s.
	RequestTimeout time.Duration
	// Logger, default slog.Default().
	Logger *slog.Logger
	// Dialer, when set, makes the connections (e.g. unix sockets, or a
	// test harness that injects faults).
	Dialer func(ctx context.Context, addr string) (net.Conn, error)
	// TLS, when set, secures every connection (nil: plaintext).
	TLS *tls.Config
	// Token, when set, is sent with every call as a bearer token
	// (a cluster started with --auth and --auth-tokens); it needs TLS.
	Token string
	// NoCoalesce turns coalescing off: every Put, Get, CommitOffsets,
	// FetchOffsets and PutSessions is its own RPC. By default concurrent
	// calls of one kind to one group share batch RPCs (coalesce.go says
	// how, and why outcomes stay exact); an idle client sends each call
	// at once either way.
	NoCoalesce bool
}

// Validate reports every problem of the configuration at once.
func (c Config) Validate() error {
	var errs []error
	if len(c.Endpoints) == 0 {
		errs = append(errs, errors.New("client: Endpoints: at least one endpoint is required"))
	}
	for i, e := range c.Endpoints {
		if e == "" {
			errs = append(errs, fmt.Errorf("client: Endpoints[%d]: empty", i))
		}
	}
	if c.DialTimeout < 0 {
		errs = append(errs, errors.New("client: DialTimeout: negative"))
	}
	if c.RequestTimeout < 0 {
		errs = append(errs, errors.New("client: RequestTimeout: negative"))
	}
	if c.Token != "" && c.TLS == nil {
		errs = append(errs, errors.New("client: Token: needs TLS (a bearer token must not cross the network in the clear)"))
	}
	return errors.Join(errs...)
}

type endpoint struct {
	addr string
	// downUntil (unix nanos) marks an endpoint that just failed to
	// connect; it is skipped until then unless every endpoint is down.
	downUntil atomic.Int64
	conn      *grpc.ClientConn
	kv        metapb.KVClient
	off       metapb.OffsetsClient
	cl        metapb.ClusterClient
	// nodeID is learned from the node's Status or the directory; guarded
	// by Client.mu.
	nodeID string
	// gone marks a node the directory no longer lists: skipped unless
	// nothing else answers.
	gone atomic.Bool
	// configured: one of Config.Endpoints. It may reach its node by an
	// address of its own (a port mapping, a proxy, a load balancer) that
	// the directory does not list: it is kept, and preferred to the
	// member address, until the directory drops its node.
	configured bool
	// lacking holds, per batch call, until when (monoNow) this node is
	// taken to lack it: it answered Unimplemented (a node of an older
	// release, mid rolling upgrade), and the coalescer sends calls meant
	// for it alone without trying the batch first (tryBatch).
	lacking [numBatchCalls]atomic.Int64
}

// Client is safe for concurrent use. It follows the cluster's directory
// (Cluster.WatchDirectory): every member becomes an endpoint as it joins,
// writes go to the group's leader (or one of its replicas), and a node
// drained and removed is left behind, so the client keeps working when
// every node it was configured with is gone.
type Client struct {
	cfg Config
	log *slog.Logger
	// eps is the endpoint list, replaced whole (copy on write) under mu.
	eps atomic.Pointer[[]*endpoint]
	rr  atomic.Uint64
	// follow ends the directory follower; followed is closed once it did.
	follow   context.CancelFunc
	followed chan struct{}

	mu sync.Mutex // guards the fields below
	// leaders maps a group to the node id believed to lead it.
	leaders map[string]string
	// replicas maps a group to the nodes the directory places it on.
	replicas map[string][]string
	// byID maps node ids to endpoints.
	byID map[string]*endpoint
	k, m int // group counts, 0 until learned
	// dataRanges and offsetRanges are the range maps from the directory
	// (nil: route by Shard over k and m).
	dataRanges, offsetRanges metapb.RangeMap
	// dataVersion and offsetVersion are the directory versions the range
	// maps come from (a WRONG_GROUP answer may carry one kind's newer map
	// before the directory stream does).
	dataVersion, offsetVersion uint64
	learned                    time.Time
	closed                     bool
	learning                   chan struct{} // non-nil while a refresh runs

	// co coalesces concurrent calls (nil: Config.NoCoalesce); batches
	// owns the goroutines that send their batches.
	co      *coalescers
	batches *batchRunner
}

// New creates a client. It does not block: connections are made on first
// use.
func New(cfg Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = 2 * time.Second
	}
	if cfg.RequestTimeout == 0 {
		cfg.RequestTimeout = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	c := &Client{cfg: cfg, log: cfg.Logger, leaders: map[string]string{}, replicas: map[string][]string{},
		byID: map[string]*endpoint{}, followed: make(chan struct{}), batches: newBatchRunner()}
	if !cfg.NoCoalesce {
		c.co = c.newCoalescers()
	}
	c.eps.Store(&[]*endpoint{})
	for _, addr := range cfg.Endpoints {
		ep, err := c.addEndpoint(addr)
		if err != nil {
			_ = c.Close()
			return nil, err
		}
		ep.configured = true
	}
	c.rr.Store(rand.Uint64())
	ctx, cancel := context.WithCancel(context.Background())
	c.follow = cancel
	if cfg.Pinned {
		close(c.followed)
	} else {
		go func() {
			defer close(c.followed)
			c.followDirectory(ctx)
		}()
	}
	return c, nil
}

// endpoints returns the current endpoint list.
func (c *Client) endpoints() []*endpoint { return *c.eps.Load() }

// addEndpoint returns the endpoint of addr, creating it (lazily
// connected) if it is new. Call with mu held or before the client is
// shared.
func (c *Client) addEndpoint(addr string) (*endpoint, error) {
	for _, ep := range c.endpoints() {
		if ep.addr == addr {
			return ep, nil
		}
	}
	creds := insecure.NewCredentials()
	if c.cfg.TLS != nil {
		creds = credentials.NewTLS(c.cfg.TLS)
	}
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		// Reconnect soon after a node comes back (gRPC's default
		// backoff grows to two minutes).
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.Config{
			BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 2 * time.Second},
			MinConnectTimeout: time.Second}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20), grpc.MaxCallSendMsgSize(64<<20)),
		// A node that goes silent (blackholed: no answer, no reset) is
		// noticed within keepaliveTime + keepaliveTimeout and its calls
		// fail, instead of waiting for their deadlines; the nodes accept
		// pings this often (rpc/transport's enforcement policy).
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: keepaliveTime, Timeout: keepaliveTimeout, PermitWithoutStream: true}),
	}
	if c.cfg.Token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(bearer(c.cfg.Token)))
	}
	if c.cfg.Dialer != nil {
		opts = append(opts, grpc.WithContextDialer(c.cfg.Dialer))
	}
	conn, err := grpc.NewClient("passthrough:///"+addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("client: endpoint %s: %w", addr, err)
	}
	ep := &endpoint{addr: addr, conn: conn,
		kv: metapb.NewKVClient(conn), off: metapb.NewOffsetsClient(conn), cl: metapb.NewClusterClient(conn)}
	eps := append(slices.Clone(c.endpoints()), ep)
	c.eps.Store(&eps)
	return ep, nil
}

// Close closes every connection. Safe to call twice.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	if c.follow != nil {
		c.follow()
		<-c.followed
	}
	c.batches.stop()
	c.mu.Lock()
	defer c.mu.Unlock()
	var errs []error
	for _, ep := range c.endpoints() {
		if err := ep.conn.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Endpoints returns the endpoints: the configured ones, then every member
// learned from the directory.
func (c *Client) Endpoints() []string {
	var out []string
	for _, ep := range c.endpoints() {
		out = append(out, ep.addr)
	}
	return out
}

func (c *Client) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, c.cfg.RequestTimeout)
}

// ready waits (bounded by DialTimeout) for ep's connection to be READY. A
// request sent on a connection that is not ready fails before anything
// reaches the server, so such a failure is definite. A connection that
// fails to connect marks its endpoint down for a moment.
func (c *Client) ready(ctx context.Context, ep *endpoint) bool {
	st := ep.conn.GetState()
	if st == connectivity.Ready {
		return true
	}
	ok := c.connect(ctx, ep, st)
	if !ok {
		ep.downUntil.Store(time.Now().Add(downFor).UnixNano())
	}
	return ok
}

// Client keepalive: ping an idle connection every keepaliveTime, drop it
// if a ping is not answered within keepaliveTimeout.
const (
	keepaliveTime    = 10 * time.Second
	keepaliveTimeout = 5 * time.Second
)

// downFor is how long an endpoint that failed to connect is skipped.
const downFor = 500 * time.Millisecond

func (c *Client) connect(ctx context.Context, ep *endpoint, st connectivity.State) bool {
	if st == connectivity.TransientFailure {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.DialTimeout)
	defer cancel()
	ep.conn.Connect()
	for {
		st = ep.conn.GetState()
		switch st {
		case connectivity.Ready:
			return true
		case connectivity.TransientFailure, connectivity.Shutdown:
			return false
		}
		if !ep.conn.WaitForStateChange(ctx, st) {
			return false
		}
	}
}

// next picks the next endpoint round-robin, skipping endpoints marked
// down or gone unless all are.
func (c *Client) next() *endpoint {
	eps := c.endpoints()
	if c.cfg.Pinned {
		return eps[0]
	}
	now := time.Now().UnixNano()
	for range eps {
		ep := eps[c.rr.Add(1)%uint64(len(eps))]
		if ep.downUntil.Load() <= now && !ep.gone.Load() {
			return ep
		}
	}
	return eps[c.rr.Add(1)%uint64(len(eps))]
}

// writeEndpoint picks where to send a write for group.
func (c *Client) writeEndpoint(group string) *endpoint {
	if c.cfg.Pinned || group == "" {
		return c.next()
	}
	c.mu.Lock()
	ep := c.byID[c.leaders[group]]
	stale := time.Since(c.learned) > 500*time.Millisecond && c.learning == nil
	var replicas []*endpoint
	for _, id := range c.replicas[group] {
		if r := c.byID[id]; r != nil && r.downUntil.Load() <= time.Now().UnixNano() {
			replicas = append(replicas, r)
		}
	}
	c.mu.Unlock()
	if ep != nil && ep.downUntil.Load() <= time.Now().UnixNano() {
		return ep
	}
	if len(replicas) > 0 {
		// No leader known: a replica of the group, which knows it.
		return replicas[c.rr.Add(1)%uint64(len(replicas))]
	}
	if stale {
		// Learn who leads now, without holding up this request.
		go c.refresh(context.Background())
	}
	return c.next()
}

// topology returns the group counts, learning them (and the leaders) from
// the nodes when they are not known yet.
func (c *Client) topology(ctx context.Context) (*metapb.Router, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	if c.m > 0 {
		defer c.mu.Unlock()
		return c.routerLocked(), nil
	}
	c.mu.Unlock()
	c.refresh(ctx)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == 0 {
		return nil, status.Error(codes.Unavailable, "client: no endpoint answered Status")
	}
	return c.routerLocked(), nil
}

// routerLocked is the routing the client knows: by the directory's range
// maps when it has them, else by Shard over the group counts. c.mu held.
func (c *Client) routerLocked() *metapb.Router {
	return &metapb.Router{K: c.k, M: c.m, Data: c.dataRanges, Offset: c.offsetRanges}
}

// refresh asks every endpoint for its status, concurrently, and records
// node ids, leaders and group counts. Concurrent callers share one refresh.
func (c *Client) refresh(ctx context.Context) {
	c.mu.Lock()
	if ch := c.learning; ch != nil {
		c.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
		}
		return
	}
	ch := make(chan struct{})
	c.learning = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.learning = nil
		c.learned = time.Now()
		c.mu.Unlock()
		close(ch)
	}()
	ctx, cancel := context.WithTimeout(ctx, c.cfg.DialTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for _, ep := range c.endpoints() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, err := ep.cl.Status(ctx, &metapb.StatusRequest{})
			if err != nil {
				return
			}
			c.mu.Lock()
			defer c.mu.Unlock()
			ep.nodeID = st.NodeId
			c.byID[st.NodeId] = ep
			if st.DataGroups > 0 {
				c.k, c.m = int(st.OffsetGroups), int(st.DataGroups)
			}
			for _, g := range st.Groups {
				if g.LeaderId != "" && g.State == "Leader" {
					c.leaders[g.Group] = g.LeaderId
				} else if g.LeaderId != "" {
					if _, ok := c.leaders[g.Group]; !ok {
						c.leaders[g.Group] = g.LeaderId
					}
				}
			}
		}()
	}
	wg.Wait()
}

// learnLeader takes the leader a response names for its group: the next
// writes of the group go there, so the client follows a leadership move
// at once instead of having every write forwarded.
func (c *Client) learnLeader(r any) {
	h, ok := r.(interface{ GetHeader() *metapb.ResponseHeader })
	if !ok {
		return
	}
	hd := h.GetHeader()
	if hd.GetGroup() == "" || hd.GetLeaderId() == "" {
		return
	}
	c.mu.Lock()
	same := c.leaders[hd.Group] == hd.LeaderId
	c.mu.Unlock()
	if !same {
		c.noteLeader(hd.Group, hd.LeaderId)
	}
}

func (c *Client) noteLeader(group, id string) {
	if group == "" || id == "" {
		return
	}
	c.mu.Lock()
	c.leaders[group] = id
	_, known := c.byID[id]
	c.mu.Unlock()
	if !known {
		// A leader we cannot map to an endpoint: learn node ids again, at
		// most once a second.
		c.mu.Lock()
		stale := time.Since(c.learned) > time.Second
		c.mu.Unlock()
		if stale {
			go c.refresh(context.Background())
		}
	}
}

func (c *Client) forgetLeader(group string) {
	c.mu.Lock()
	delete(c.leaders, group)
	c.mu.Unlock()
}

// errorInfo extracts the meta ErrorInfo detail of a status error.
func errorInfo(err error) (*status.Status, *errdetails.ErrorInfo) {
	st, ok := status.FromError(err)
	if !ok {
		return nil, nil
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.Domain == metapb.ErrorDomain {
			return st, info
		}
	}
	return st, nil
}

// classify says what a failed call means, in meta's error vocabulary
// (rpc/metapb/errors.go): the class of its reason. A status without meta's
// ErrorInfo was made by gRPC itself (or a proxy): codes that refuse a
// request before any handler ran are final; anything else (Unavailable or
// DeadlineExceeded once the request may have been sent, Internal,
// Unknown) is an unknown outcome.
func classify(err error) (metapb.Class, *errdetails.ErrorInfo) {
	st, info := errorInfo(err)
	if st == nil {
		return metapb.ClassUnknown, nil
	}
	if info != nil {
		return metapb.ClassOf(info.Reason), info
	}
	switch st.Code() {
	case codes.InvalidArgument, codes.FailedPrecondition, codes.NotFound, codes.AlreadyExists,
		codes.PermissionDenied, codes.Unauthenticated, codes.Unimplemented, codes.OutOfRange,
		codes.ResourceExhausted:
		return metapb.ClassFinal, nil
	}
	return metapb.ClassUnknown, nil
}

// noteHints records what a retryable answer says of the group's leader
// and, for WRONG_GROUP, of the ranges; it reports whether the client took
// a newer map from it.
func (c *Client) noteHints(group string, info *errdetails.ErrorInfo) (rerouted bool) {
	if info == nil {
		return false
	}
	g := info.Metadata[metapb.MetaGroup]
	if g == "" {
		g = group
	}
	if id := info.Metadata[metapb.MetaLeaderID]; info.Reason == metapb.ReasonNotLeader && id != "" {
		c.noteLeader(g, id)
		return false
	}
	c.forgetLeader(g)
	return info.Reason == metapb.ReasonWrongGroup && c.learnRanges(info)
}

// learnRanges takes the map a WRONG_GROUP answer carries (rpc/metapb/
// ranges.go) when it is newer than the client's map of that kind, and
// reports whether it did.
func (c *Client) learnRanges(info *errdetails.ErrorInfo) bool {
	raw := info.Metadata[metapb.MetaRanges]
	v, err := strconv.ParseUint(info.Metadata[metapb.MetaRangeVersion], 10, 64)
	if raw == "" || err != nil {
		return false
	}
	m, err := metapb.ParseRanges(raw)
	if err != nil {
		c.log.Debug("client: ranges of a WRONG_GROUP answer", "err", err)
		return false
	}
	kind, _ := metapb.GroupKind(info.Metadata[metapb.MetaGroup])
	c.mu.Lock()
	defer c.mu.Unlock()
	ranges, version := &c.dataRanges, &c.dataVersion
	if kind == "offset" {
		ranges, version = &c.offsetRanges, &c.offsetVersion
	}
	if v <= *version {
		return false
	}
	*ranges, *version = m, v
	return true
}

func sleepBackoff(ctx context.Context, attempt int) error {
	d := time.Duration(10<<min(attempt, 6)) * time.Millisecond // 10ms .. 640ms
	d = d/2 + rand.N(d/2+1)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// write runs a mutating call for group with leader routing. It retries only
// definite failures; an unknown outcome returns at once.
func write[R any](ctx context.Context, c *Client, group string, call func(context.Context, *endpoint) (R, error)) (R, error) {
	return writeRouted(ctx, c, func(*metapb.Router) string { return group }, false, call)
}

// routed is write for a call whose group the client computes from its
// routing keys (groupOf, by the client's map: "" when they span groups or
// the map is not known). Each try computes the group again and declares
// it to the node with the map's version (metapb.MDRouteGroup): a node
// whose map routes a key elsewhere answers WRONG_GROUP with its ranges,
// which the client takes (noteHints), so the next try goes where the key
// is now, at once. A call whose keys the new map spreads over several
// groups is sent undeclared: the node splits it.
func routed[R any](ctx context.Context, c *Client, groupOf func(*metapb.Router) string, call func(context.Context, *endpoint) (R, error)) (R, error) {
	return writeRouted(ctx, c, groupOf, true, call)
}

// declareRoute returns the group of a routed call by the client's map
// (groupOf), and ctx carrying it and the map's version for the node; ""
// and ctx as it is when the client is pinned, does not know its map, or
// groupOf names no one group.
func (c *Client) declareRoute(ctx context.Context, groupOf func(*metapb.Router) string) (string, context.Context) {
	if c.cfg.Pinned {
		return "", ctx
	}
	r, err := c.topology(ctx)
	if err != nil {
		return "", ctx
	}
	g := groupOf(r)
	if g == "" {
		return "", ctx
	}
	c.mu.Lock()
	v := c.dataVersion
	if kind, _ := metapb.GroupKind(g); kind == "offset" {
		v = c.offsetVersion
	}
	c.mu.Unlock()
	return g, metadata.AppendToOutgoingContext(ctx, metapb.MDRouteGroup, g, metapb.MDRouteVersion, strconv.FormatUint(v, 10))
}

// writeRouted is write and routed: group gives each try's group, declared
// to the node when declare is set.
func writeRouted[R any](ctx context.Context, c *Client, groupOf func(*metapb.Router) string, declare bool,
	call func(context.Context, *endpoint) (R, error)) (R, error) {
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	var zero R
	var last error
	for attempt := 0; ; attempt++ {
		rerouted := false
		group, cctx := "", ctx
		if declare {
			group, cctx = c.declareRoute(ctx, groupOf)
		} else {
			group = groupOf(nil)
		}
		ep := c.writeEndpoint(group)
		if !c.ready(ctx, ep) {
			// Nothing was sent: definite. Try another endpoint.
			last = status.Errorf(codes.Unavailable, "client: %s: connection not ready", ep.addr)
			c.forgetLeader(group)
		} else {
			r, err := call(cctx, ep)
			if err == nil {
				c.learnLeader(r)
				return r, nil
			}
			class, info := classify(err)
			switch class {
			case metapb.ClassUnknown:
				return plantedRetryUnknown(cctx, c, group, call, &unknownError{err: err})
			case metapb.ClassFinal:
				return zero, err
			}
			// A newer map taken from a WRONG_GROUP: the next try goes
			// where the keys are now, without a pause.
			rerouted = c.noteHints(group, info)
			last = err
		}
		if (attempt > 0 || c.cfg.Pinned) && !rerouted {
			if err := sleepBackoff(ctx, attempt); err != nil {
				return zero, last
			}
		}
		if ctx.Err() != nil {
			return zero, last
		}
	}
}

// read runs an idempotent call, retrying any failure on the next endpoint
// until the deadline, except an answer: bad input, that what was asked
// for does not exist, or that the caller may not ask (authentication).
func read[R any](ctx context.Context, c *Client, call func(context.Context, *endpoint) (R, error)) (R, error) {
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	var zero R
	var last error
	for attempt := 0; ; attempt++ {
		ep := c.next()
		r, err := call(ctx, ep)
		if err == nil {
			return r, nil
		}
		switch status.Code(err) {
		case codes.InvalidArgument, codes.NotFound, codes.Unauthenticated, codes.PermissionDenied,
			codes.Unimplemented: // a call the node's release lacks (a batch call the coalescer falls back from)
			return zero, err
		}
		last = err
		if ctx.Err() != nil {
			return zero, last
		}
		if err := sleepBackoff(ctx, attempt); err != nil {
			return zero, last
		}
	}
}

// bearer sends a token as "authorization: Bearer <token>", over TLS only.
type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

func (bearer) RequireTransportSecurity() bool { return true }
