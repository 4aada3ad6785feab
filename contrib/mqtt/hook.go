package mqtt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/metamq/meta/rpc/client"
	"github.com/metamq/meta/rpc/metapb"
)

// Config configures a Hook.
type Config struct {
	// BrokerID names this broker in meta (sessions, wills, registration).
	BrokerID string
	// Endpoints are the MQTT addresses this broker advertises when it
	// registers.
	Endpoints []string
	// Meta is the client of the meta cluster; the hook does not close it.
	Meta *client.Client
	// Logger, default slog.Default().
	Logger *slog.Logger
	// BatchSize and BatchDelay bound a batch of session writes: it leaves
	// when it holds BatchSize writes or BatchDelay after its first write.
	// BatchCalls bounds the batch calls under way. Defaults 1000, 2ms, 8.
	BatchSize  int
	BatchDelay time.Duration
	BatchCalls int
	// ClaimTTL is how long a will claim lasts (another broker may claim
	// it after that). Default 30s.
	ClaimTTL time.Duration
	// WillSweep is how often the due wills are listed, in case a watch
	// missed one. Default 5s.
	WillSweep time.Duration
	// OnFenced is called once when another registration of BrokerID
	// fenced this one (heartbeats refused with STALE_EPOCH): the broker
	// must stop serving. Default: log it.
	OnFenced func(error)
}

// Validate reports every problem of the configuration at once.
func (c Config) Validate() error {
	var errs []error
	if c.BrokerID == "" {
		errs = append(errs, errors.New("mqtt: BrokerID: must not be empty"))
	} else if len(c.BrokerID) > metapb.MaxBrokerIDBytes {
		errs = append(errs, fmt.Errorf("mqtt: BrokerID: %d bytes, at most %d", len(c.BrokerID), metapb.MaxBrokerIDBytes))
	}
	if c.Meta == nil {
		errs = append(errs, errors.New("mqtt: Meta: a meta client is required"))
	}
	if c.BatchSize < 0 || c.BatchSize > metapb.MaxBatchEntries {
		errs = append(errs, fmt.Errorf("mqtt: BatchSize: %d, want 0 (default) to %d", c.BatchSize, metapb.MaxBatchEntries))
	}
	if c.BatchDelay < 0 || c.BatchCalls < 0 || c.ClaimTTL < 0 || c.WillSweep < 0 {
		errs = append(errs, errors.New("mqtt: BatchDelay, BatchCalls, ClaimTTL, WillSweep: must not be negative"))
	}
	if c.ClaimTTL != 0 && c.ClaimTTL < time.Second {
		errs = append(errs, fmt.Errorf("mqtt: ClaimTTL: %v, at least 1s", c.ClaimTTL))
	}
	return errors.Join(errs...)
}

// Stats counts the hook's work since it started.
type Stats struct {
	// SessionCalls and SessionWrites: batch calls made and the session
	// writes they carried.
	SessionCalls, SessionWrites uint64
	// Resumed: connects that found their session in meta.
	Resumed uint64
	// WillsPublished: wills this broker claimed and published.
	WillsPublished uint64
}

// conn is what the hook remembers of a client's current connection.
type conn struct {
	cl      *mqtt.Client
	expiry  uint32
	hasWill bool
}

// Hook is a mochi-mqtt hook that keeps the broker's state in meta. Create
// it with New, Attach it to a server, Start it before the server serves,
// Close it after the server closed.
type Hook struct {
	mqtt.HookBase
	cfg Config
	log *slog.Logger
	srv *mqtt.Server
	w   *writer

	mu    sync.Mutex       // guards conns
	conns map[string]*conn // client id -> its current connection here

	epoch atomic.Uint64
	// rejoinMu makes registrations after being declared down one at a time.
	rejoinMu sync.Mutex
	fenced   atomic.Bool
	resumed  atomic.Uint64
	wills    atomic.Uint64

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

var _ mqtt.Hook = (*Hook)(nil)

// New creates a hook.
func New(cfg Config) (*Hook, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.BatchSize == 0 {
		cfg.BatchSize = 1000
	}
	if cfg.BatchDelay == 0 {
		cfg.BatchDelay = 2 * time.Millisecond
	}
	if cfg.BatchCalls == 0 {
		cfg.BatchCalls = 8
	}
	if cfg.ClaimTTL == 0 {
		cfg.ClaimTTL = 30 * time.Second
	}
	if cfg.WillSweep == 0 {
		cfg.WillSweep = 5 * time.Second
	}
	h := &Hook{cfg: cfg, log: cfg.Logger.With("broker", cfg.BrokerID), conns: map[string]*conn{}}
	h.ctx, h.cancel = context.WithCancel(context.Background())
	h.w = newWriter(cfg.Meta.PutSessions, cfg.BatchSize, cfg.BatchDelay, cfg.BatchCalls)
	return h, nil
}

// Attach adds the hook to a server, which must have its inline client
// enabled (wills are published through it).
func (h *Hook) Attach(s *mqtt.Server) error {
	if !s.Options.InlineClient {
		return errors.New("mqtt: the server's Options.InlineClient must be true (wills are published through it)")
	}
	h.srv = s
	return s.AddHook(h, nil)
}

// ID names the hook.
func (h *Hook) ID() string { return "meta" }

// Provides lists the hook methods the hook implements.
func (h *Hook) Provides(b byte) bool {
	return bytes.Contains([]byte{
		mqtt.OnConnect, mqtt.OnDisconnect, mqtt.OnSubscribe, mqtt.OnSubscribed, mqtt.OnUnsubscribed,
		mqtt.OnRetainMessage,
	}, []byte{b})
}

// Stats returns the hook's counters.
func (h *Hook) Stats() Stats {
	return Stats{SessionCalls: h.w.calls.Load(), SessionWrites: h.w.sessions.Load(),
		Resumed: h.resumed.Load(), WillsPublished: h.wills.Load()}
}

// sessionExpiry is the client's session expiry interval in seconds, as
// the broker applies it: MQTT 5's property (capped by the server), or for
// MQTT 3 the server's maximum unless the session is clean.
func (h *Hook) sessionExpiry(cl *mqtt.Client) uint32 {
	limit := h.srv.Options.Capabilities.MaximumSessionExpiryInterval
	var v uint32
	switch {
	case cl.Properties.ProtocolVersion == 5:
		v = cl.Properties.Props.SessionExpiryInterval
	case cl.Properties.Clean:
		v = 0
	default:
		v = limit
	}
	// MaxUint32 is "never" for both mochi and meta.
	return min(v, limit)
}

// OnConnect records the connection in meta, in the same call learning the
// session it resumes, and restores that session in the broker when the
// broker does not hold it already; then it stores the client's will. An
// error refuses the connection.
func (h *Hook) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	ctx, cancel := context.WithTimeout(h.ctx, 30*time.Second)
	defer cancel()
	c := &conn{cl: cl, expiry: h.sessionExpiry(cl)}
	h.mu.Lock()
	h.conns[cl.ID] = c
	h.mu.Unlock()

	clean := pk.Connect.Clean
	hasWill := atomic.LoadUint32(&cl.Properties.Will.Flag) == 1
	// A will of a previous connection must not outlive it: without a will
	// of its own, the connection's session write deletes it (no call of
	// its own); with one, PutWill below replaces it.
	r := h.w.write(ctx, &metapb.Session{ClientId: cl.ID, BrokerId: h.cfg.BrokerID, BrokerEpoch: h.epoch.Load(), Connected: true,
		ExpiryIntervalSeconds: c.expiry, KeepState: !clean, DeleteWill: !hasWill}, true)
	if r.err != nil {
		h.log.Warn("connect: session write failed", "client", cl.ID, "err", r.err)
		return fmt.Errorf("mqtt: meta: %w", r.err)
	}
	if prev := r.previous; prev != nil && !clean {
		h.restore(cl, prev)
	}
	if hasWill {
		wl := cl.Properties.Will
		req := &metapb.PutWillRequest{Will: &metapb.Will{ClientId: cl.ID, Topic: wl.TopicName,
			Payload: wl.Payload, Qos: uint32(wl.Qos), Retain: wl.Retain, DelaySeconds: wl.WillDelayInterval}}
		// Setting the same will again is harmless, so an unknown outcome
		// is retried (a few times) rather than refusing the client.
		_, err := h.cfg.Meta.PutWill(ctx, req)
		for i := 0; i < 3 && client.IsUnknown(err); i++ {
			_, err = h.cfg.Meta.PutWill(ctx, req)
		}
		if err != nil {
			h.log.Warn("connect: will write failed", "client", cl.ID, "err", err)
			h.undoConnect(cl, c)
			return fmt.Errorf("mqtt: meta: %w", err)
		}
		c.hasWill = true
		// meta publishes it (through whichever broker claims it), never
		// this broker on its own: so it is published exactly once.
		atomic.StoreUint32(&cl.Properties.Will.Flag, 0)
	}
	return nil
}

// undoConnect writes a refused connection's session back as disconnected
// (while this broker holds it), so that meta does not show the client
// connected here with no connection (and its will arms as for any lost
// connection).
func (h *Hook) undoConnect(cl *mqtt.Client, c *conn) {
	if _, ok := h.release(cl); !ok {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if r := h.w.write(ctx, &metapb.Session{ClientId: cl.ID, BrokerId: h.cfg.BrokerID, BrokerEpoch: h.epoch.Load(), IfBrokerId: h.cfg.BrokerID,
		ExpiryIntervalSeconds: c.expiry, KeepState: true}, false); r.err != nil {
		h.log.Warn("refused connection: session not written back as disconnected", "client", cl.ID, "err", r.err)
	}
}

// restore makes the session stored in meta the one the broker resumes: a
// session this broker holds in memory and last wrote itself is resumed by
// mochi as it is; otherwise (the client comes from another broker, or
// this broker restarted) the stored subscriptions and in-flight messages
// are loaded into an offline client that mochi's takeover then inherits.
func (h *Hook) restore(cl *mqtt.Client, prev *metapb.Session) {
	existing, ok := h.srv.Clients.Get(cl.ID)
	if ok && prev.BrokerId == h.cfg.BrokerID {
		h.resumed.Add(1)
		return
	}
	st, err := decodeState(prev.State)
	if err != nil {
		h.log.Warn("connect: stored session not resumed", "client", cl.ID, "err", err)
		return
	}
	if ok {
		if !existing.Closed() {
			return // connected here right now: mochi's takeover handles it
		}
		// A stale copy from before the client went elsewhere.
		h.srv.UnsubscribeClient(existing)
		existing.ClearInflights()
		h.srv.Clients.Delete(cl.ID)
	}
	off := h.srv.NewClient(nil, "meta", cl.ID, false)
	off.Properties.ProtocolVersion = st.ProtocolVersion
	off.Properties.Username = st.Username
	for _, sub := range st.Subscriptions {
		if h.srv.Topics.Subscribe(cl.ID, sub) {
			atomic.AddInt64(&h.srv.Info.Subscriptions, 1)
		}
		off.State.Subscriptions.Add(sub.Filter, sub)
	}
	for i := range st.Inflight {
		off.State.Inflight.Set(st.Inflight[i].ToPacket())
	}
	off.Stop(packets.ErrSessionTakenOver)
	h.srv.Clients.Add(off)
	h.resumed.Add(1)
}

// current reports whether cl is the client's current connection here.
func (h *Hook) current(cl *mqtt.Client) (*conn, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	c, ok := h.conns[cl.ID]
	return c, ok && c.cl == cl
}

// release forgets cl as the client's current connection here, if it is.
func (h *Hook) release(cl *mqtt.Client) (*conn, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	c, ok := h.conns[cl.ID]
	if !ok || c.cl != cl {
		return nil, false
	}
	delete(h.conns, cl.ID)
	return c, true
}

// OnDisconnect records the disconnection: a clean DISCONNECT deletes the
// will first; the session is then written disconnected (with its state)
// only while this broker still holds it, which arms a remaining will. A
// connection that another connection to this broker took over writes
// nothing.
func (h *Hook) OnDisconnect(cl *mqtt.Client, err error, expire bool) {
	c, ok := h.release(cl)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err == nil && c.hasWill {
		if _, err := h.cfg.Meta.DeleteWill(ctx, &metapb.DeleteWillRequest{ClientId: cl.ID}); err != nil && !client.IsNotFound(err) {
			h.log.Warn("disconnect: will delete failed", "client", cl.ID, "err", err)
		}
	}
	var state []byte
	if !expire {
		var serr error
		if state, serr = encodeState(cl, true); serr != nil {
			h.log.Warn("disconnect: session state not stored", "client", cl.ID, "err", serr)
		}
	}
	r := h.w.write(ctx, &metapb.Session{ClientId: cl.ID, BrokerId: h.cfg.BrokerID, BrokerEpoch: h.epoch.Load(), IfBrokerId: h.cfg.BrokerID,
		ExpiryIntervalSeconds: c.expiry, State: state, KeepState: state == nil && !expire}, false)
	if r.err != nil {
		h.log.Warn("disconnect: session write failed", "client", cl.ID, "err", r.err)
	}
}

// OnSubscribe brings the retained messages of the filters from meta into
// the broker before mochi delivers them to the subscriber: those set
// through other brokers are added, those cleared elsewhere removed.
func (h *Hook) OnSubscribe(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	ctx, cancel := context.WithTimeout(h.ctx, 30*time.Second)
	defer cancel()
	for _, sub := range pk.Filters {
		if strings.HasPrefix(sub.Filter, "$") || sub.RetainHandling == 2 {
			continue // $share and $SYS get no retained messages from meta
		}
		if err := h.syncRetained(ctx, sub.Filter); err != nil {
			h.log.Warn("subscribe: retained messages not read from meta", "client", cl.ID, "filter", sub.Filter, "err", err)
		}
	}
	return pk
}

func (h *Hook) syncRetained(ctx context.Context, filter string) error {
	inMeta := map[string]bool{}
	req := &metapb.ListRetainedRequest{TopicFilter: filter, Limit: 1000}
	for {
		resp, err := h.cfg.Meta.ListRetained(ctx, req)
		if err != nil {
			return err
		}
		for _, m := range resp.Messages {
			inMeta[m.Topic] = true
			h.srv.Topics.RetainMessage(packets.Packet{
				FixedHeader: packets.FixedHeader{Type: packets.Publish, Retain: true, Qos: byte(m.Qos)},
				TopicName:   m.Topic, Payload: m.Payload, Origin: "meta", Created: time.Now().Unix(),
			})
		}
		if !resp.More {
			break
		}
		req.StartAfter = resp.NextStartAfter
	}
	for _, pk := range h.srv.Topics.Messages(filter) {
		if !inMeta[pk.TopicName] {
			h.srv.Topics.RetainMessage(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Retain: true}, TopicName: pk.TopicName})
		}
	}
	atomic.StoreInt64(&h.srv.Info.Retained, int64(h.srv.Topics.Retained.Len()))
	return nil
}

// OnSubscribed stores the client's subscriptions before the SUBACK leaves.
func (h *Hook) OnSubscribed(cl *mqtt.Client, _ packets.Packet, _ []byte) { h.storeSubscriptions(cl) }

// OnUnsubscribed stores the client's remaining subscriptions.
func (h *Hook) OnUnsubscribed(cl *mqtt.Client, _ packets.Packet) { h.storeSubscriptions(cl) }

func (h *Hook) storeSubscriptions(cl *mqtt.Client) {
	c, ok := h.current(cl)
	if !ok {
		return
	}
	state, err := encodeState(cl, false)
	if err != nil {
		h.log.Warn("subscriptions not stored", "client", cl.ID, "err", err)
		return
	}
	ctx, cancel := context.WithTimeout(h.ctx, 30*time.Second)
	defer cancel()
	r := h.w.write(ctx, &metapb.Session{ClientId: cl.ID, BrokerId: h.cfg.BrokerID, BrokerEpoch: h.epoch.Load(), IfBrokerId: h.cfg.BrokerID,
		Connected: true, ExpiryIntervalSeconds: c.expiry, State: state}, false)
	if r.err != nil {
		h.log.Warn("subscriptions not stored", "client", cl.ID, "err", r.err)
	}
}

// OnRetainMessage stores a retained message set (or cleared, by an empty
// payload) through this broker.
func (h *Hook) OnRetainMessage(cl *mqtt.Client, pk packets.Packet, _ int64) {
	ctx, cancel := context.WithTimeout(h.ctx, 30*time.Second)
	defer cancel()
	_, err := h.cfg.Meta.SetRetained(ctx, &metapb.SetRetainedRequest{Message: &metapb.RetainedMessage{
		Topic: pk.TopicName, Payload: pk.Payload, Qos: uint32(pk.FixedHeader.Qos)}})
	if err != nil {
		h.log.Warn("retained message not stored", "client", cl.ID, "topic", pk.TopicName, "err", err)
	}
}
