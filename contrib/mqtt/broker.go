package mqtt

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/metamq/meta/rpc/client"
	"github.com/metamq/meta/rpc/metapb"
)

// Start registers the broker with meta's controller, marks disconnected
// the sessions a previous run of this broker left connected (their wills
// arm), and starts heartbeats, the failover of brokers declared down and
// the publishing of due wills. Call it before the server serves.
func (h *Hook) Start(ctx context.Context) error {
	if h.srv == nil {
		return errors.New("mqtt: Start before Attach")
	}
	// Both steps may be repeated (a registration again only raises the
	// epoch; the session writes are conditional), so a meta that is
	// electing a leader is waited for until ctx ends.
	var hb time.Duration
	if err := retry(ctx, h, "register", func() (err error) {
		hb, err = h.register(ctx)
		return err
	}); err != nil {
		return err
	}
	// Sessions a previous run left connected carry an older epoch.
	if err := retry(ctx, h, "sessions of a previous run", func() error {
		return h.disconnectHeldBy(ctx, h.cfg.BrokerID, h.epoch.Load()-1)
	}); err != nil {
		return fmt.Errorf("mqtt: sessions of a previous run: %w", err)
	}
	h.goLoop(func(ctx context.Context) { h.heartbeat(ctx, hb) })
	h.goLoop(h.watchBrokers)
	h.goLoop(h.watchWills)
	h.goLoop(h.sweepWills)
	return nil
}

func (h *Hook) goLoop(fn func(context.Context)) {
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		fn(h.ctx)
	}()
}

// Close stops the hook's loops and its session writer. Call it after the
// server closed (its clients' disconnects are written through the hook).
func (h *Hook) Close() error {
	h.once.Do(func() {
		h.cancel()
		h.wg.Wait()
		h.w.close()
	})
	return nil
}

// Stop is mochi's hook shutdown; Close does the work.
func (h *Hook) Stop() error { return nil }

func (h *Hook) register(ctx context.Context) (time.Duration, error) {
	resp, err := h.cfg.Meta.RegisterBroker(ctx, &metapb.RegisterBrokerRequest{BrokerId: h.cfg.BrokerID, Endpoints: h.cfg.Endpoints})
	if err != nil {
		return 0, fmt.Errorf("mqtt: register broker %q: %w", h.cfg.BrokerID, err)
	}
	h.epoch.Store(resp.BrokerEpoch)
	h.log.Info("registered", "epoch", resp.BrokerEpoch, "heartbeat_ms", resp.HeartbeatIntervalMs)
	hb := time.Duration(resp.HeartbeatIntervalMs) * time.Millisecond
	if hb <= 0 {
		hb = time.Second
	}
	return hb, nil
}

// heartbeat keeps the registration alive. Declared down meanwhile (a pause
// longer than the timeout), the broker registers again and writes its
// connected clients' sessions back as connected: the survivors may have
// marked them disconnected. Fenced by a newer registration of its id, it
// stops and tells OnFenced.
func (h *Hook) heartbeat(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		epoch := h.epoch.Load()
		resp, err := h.cfg.Meta.Heartbeat(ctx, &metapb.HeartbeatRequest{BrokerId: h.cfg.BrokerID, BrokerEpoch: epoch})
		switch {
		case client.IsStaleEpoch(err) && epoch != h.epoch.Load():
			// This broker registered again meanwhile (see rejoin).
		case client.IsStaleEpoch(err):
			h.fenced.Store(true)
			h.log.Error("fenced: another broker registered with this id; stopping", "err", err)
			if h.cfg.OnFenced != nil {
				h.cfg.OnFenced(err)
			}
			return
		case err != nil:
			if ctx.Err() == nil {
				h.log.Warn("heartbeat failed", "err", err)
			}
		case resp.Status == metapb.BrokerStatus_BROKER_STATUS_DOWN:
			h.rejoin(ctx)
		}
	}
}

// rejoin follows this broker being declared down (a pause or partition
// longer than the heartbeat timeout) while it kept its clients: the
// survivors are marking its sessions disconnected, for the epoch it was
// declared down at. It registers again, for a higher epoch, and writes
// its connected clients' sessions as connected at that epoch; the
// survivors' failover writes are conditional on the old epoch, so they
// cannot undo these, whichever lands last.
func (h *Hook) rejoin(ctx context.Context) {
	h.rejoinMu.Lock()
	defer h.rejoinMu.Unlock()
	h.log.Warn("declared down by the controller; registering again")
	if _, err := h.register(ctx); err != nil {
		h.log.Warn("registering again failed", "err", err)
		return
	}
	h.reassert(ctx)
}

// reassert writes every client connected here as connected again.
func (h *Hook) reassert(ctx context.Context) {
	h.mu.Lock()
	conns := make([]*conn, 0, len(h.conns))
	for _, c := range h.conns {
		conns = append(conns, c)
	}
	h.mu.Unlock()
	for _, c := range conns {
		if r := h.w.write(ctx, &metapb.Session{ClientId: c.cl.ID, BrokerId: h.cfg.BrokerID, BrokerEpoch: h.epoch.Load(), Connected: true,
			ExpiryIntervalSeconds: c.expiry, KeepState: true}, false); r.err != nil {
			h.log.Warn("session not re-asserted", "client", c.cl.ID, "err", r.err)
		}
	}
}

// watchBrokers fails over brokers the controller declares down: their
// connected sessions are marked disconnected, which arms their wills.
// Every survivor does it; the writes are conditional on the dead broker
// still holding each session, so doing it twice changes nothing and a
// client that already moved is never touched.
func (h *Hook) watchBrokers(ctx context.Context) {
	for ctx.Err() == nil {
		list, err := h.cfg.Meta.ListBrokers(ctx, &metapb.ListBrokersRequest{})
		if err == nil {
			for _, b := range list.Brokers {
				h.brokerChanged(ctx, b)
			}
			err = h.cfg.Meta.Watch(ctx, &metapb.WatchRequest{Space: metapb.WatchSpace_WATCH_SPACE_BROKERS,
				StartRevisions: map[string]uint64{"metadata-0": list.Revision + 1}}, func(resp *metapb.WatchResponse) error {
				for _, ev := range resp.Events {
					if ev.Broker != nil {
						h.brokerChanged(ctx, ev.Broker)
					}
				}
				return nil
			})
		}
		if ctx.Err() == nil {
			h.log.Warn("broker watch ended; listing again", "err", err)
			sleep(ctx, time.Second)
		}
	}
}

// brokerChanged reacts to a broker declared down: another one is failed
// over, this one (still running, so it was paused or cut off) rejoins.
func (h *Hook) brokerChanged(ctx context.Context, b *metapb.BrokerState) {
	switch {
	case b.Status != metapb.BrokerStatus_BROKER_STATUS_DOWN:
	case b.BrokerId != h.cfg.BrokerID:
		h.failover(ctx, b.BrokerId, b.Epoch)
	case b.Epoch == h.epoch.Load():
		h.rejoin(ctx)
	}
}

func (h *Hook) failover(ctx context.Context, broker string, epoch uint64) {
	if err := h.disconnectHeldBy(ctx, broker, epoch); err != nil && ctx.Err() == nil {
		h.log.Warn("failover of a down broker incomplete", "down", broker, "err", err)
		return
	}
	h.log.Info("failed over a down broker's sessions", "down", broker)
}

// disconnectHeldBy marks disconnected every connected session held by
// broker, only while it still holds it at an epoch no higher than epoch.
func (h *Hook) disconnectHeldBy(ctx context.Context, broker string, epoch uint64) error {
	req := &metapb.ListSessionsRequest{BrokerId: broker, Limit: 1000}
	for {
		resp, err := h.cfg.Meta.ListSessions(ctx, req)
		if err != nil {
			return err
		}
		errs := make(chan error, len(resp.Sessions))
		n := 0
		for _, s := range resp.Sessions {
			if !s.Connected || s.BrokerId != broker || s.BrokerEpoch > epoch {
				continue
			}
			n++
			go func() {
				errs <- h.w.write(ctx, &metapb.Session{ClientId: s.ClientId, BrokerId: broker, BrokerEpoch: s.BrokerEpoch,
					IfBrokerId: broker, IfBrokerEpochAtMost: max(epoch, 1), ExpiryIntervalSeconds: s.ExpiryIntervalSeconds, KeepState: true}, false).err
			}()
		}
		var first error
		for range n {
			if err := <-errs; err != nil && first == nil {
				first = err
			}
		}
		if first != nil {
			return first
		}
		if !resp.More {
			return nil
		}
		req.StartAfter = resp.NextStartAfter
	}
}

// watchWills claims and publishes wills as they become due.
func (h *Hook) watchWills(ctx context.Context) {
	for ctx.Err() == nil {
		err := h.cfg.Meta.Watch(ctx, &metapb.WatchRequest{Space: metapb.WatchSpace_WATCH_SPACE_WILLS}, func(resp *metapb.WatchResponse) error {
			for _, ev := range resp.Events {
				if w := ev.Will; ev.Type == metapb.WatchEvent_PUT && w != nil && w.State == metapb.WillState_WILL_STATE_DUE {
					h.publishWill(ctx, w.ClientId)
				}
			}
			return nil
		})
		if ctx.Err() == nil {
			h.log.Warn("will watch ended; watching again", "err", err)
			h.publishDue(ctx) // what became due meanwhile
			sleep(ctx, time.Second)
		}
	}
}

// sweepWills lists the due wills now and then: a will whose claimer died
// becomes due again without a watch event reaching every broker in time,
// and a watch restarts from now.
func (h *Hook) sweepWills(ctx context.Context) {
	t := time.NewTicker(h.cfg.WillSweep)
	defer t.Stop()
	for {
		h.publishDue(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (h *Hook) publishDue(ctx context.Context) {
	req := &metapb.ListDueWillsRequest{Limit: 1000}
	for ctx.Err() == nil {
		resp, err := h.cfg.Meta.ListDueWills(ctx, req)
		if err != nil {
			if ctx.Err() == nil {
				h.log.Warn("listing due wills failed", "err", err)
			}
			return
		}
		for _, w := range resp.Wills {
			h.publishWill(ctx, w.ClientId)
		}
		if !resp.More {
			return
		}
		req.StartAfter = resp.NextStartAfter
	}
}

// publishWill claims a due will; of the brokers trying, one wins, and it
// publishes the will and completes it. A claimer that dies before it
// completes loses the claim after ClaimTTL and another broker publishes
// the will again (at least once in that case, exactly once otherwise).
func (h *Hook) publishWill(ctx context.Context, clientID string) {
	if h.fenced.Load() {
		return
	}
	resp, err := h.cfg.Meta.ClaimWill(ctx, &metapb.ClaimWillRequest{ClientId: clientID, BrokerId: h.cfg.BrokerID,
		ClaimTtlSeconds: uint32(h.cfg.ClaimTTL / time.Second)})
	if err != nil || !resp.Claimed {
		if err != nil && !client.IsNotFound(err) && ctx.Err() == nil {
			h.log.Warn("will claim failed", "client", clientID, "err", err)
		}
		return
	}
	w := resp.Will
	if err := h.srv.Publish(w.Topic, w.Payload, w.Retain, byte(w.Qos)); err != nil {
		h.log.Warn("will not published", "client", clientID, "err", err)
		return // the claim expires and someone publishes it
	}
	h.wills.Add(1)
	if _, err := h.cfg.Meta.CompleteWill(ctx, &metapb.CompleteWillRequest{ClientId: clientID, BrokerId: h.cfg.BrokerID}); err != nil {
		h.log.Warn("will published but not completed", "client", clientID, "err", err)
	}
}

// retry calls fn until it succeeds or ctx ends (then the last error).
func retry(ctx context.Context, h *Hook, what string, fn func() error) error {
	for {
		err := fn()
		if err == nil || ctx.Err() != nil {
			return err
		}
		h.log.Warn(what+": retrying", "err", err)
		sleep(ctx, 500*time.Millisecond)
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
