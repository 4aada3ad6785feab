package metanode

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/metamq/meta/sm"
	"github.com/metamq/meta/sm/logpb"
)

// Leadership. Each group has one notification of leadership changes
// (changes): it fires when this node gains or loses the leadership (raft's
// reliable NotifyCh), when any leader change is observed (raft's leader
// observations: a follower learning who leads), and when a term of this
// node's becomes ready. Everything that waits for a leader, for a term to
// be ready or for a transfer to land waits on it and re-checks raft's
// state, instead of polling.
//
// Leader work runs one term at a time: runTerms starts a term's work (the
// marker entry, then the leader tasks and timers) only after the previous
// term's work has returned, as Consul's monitorLeadership does; losing the
// leadership cancels the term's work at once and makes it unready at once,
// and the next term waits for that work to return.

// changes is a close-and-replace notification: wait returns a channel
// closed at the next notify.
type changes struct {
	mu sync.Mutex // guards ch
	ch chan struct{}
}

func (c *changes) wait() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ch == nil {
		c.ch = make(chan struct{})
	}
	return c.ch
}

func (c *changes) notify() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ch != nil {
		close(c.ch)
		c.ch = nil
	}
}

// watchLeadership turns raft's notifications into changes until raft is
// down (raft blocks on its NotifyCh, so this drains it to the end).
func (g *group) watchLeadership() {
	for {
		select {
		case <-g.notifyCh:
			// A term that is lost is unready at once: readiness is
			// always checked against raft's current state and term.
			g.changes.notify()
		case o := <-g.observations:
			if lo, ok := o.Data.(raft.LeaderObservation); ok && lo.LeaderID != "" {
				g.env.m.leaderChanges.WithLabelValues(g.name).Inc()
			}
			g.changes.notify()
		case <-g.raftDone:
			return
		}
	}
}

// runTerms runs this node's leader work, one term at a time.
func (g *group) runTerms(ctx context.Context) {
	var cur *lifetime // the running term's work
	var curTerm uint64
	hbLeader := false // raft runs with the leader's heartbeat timeout
	for {
		next := g.changes.wait()
		leader, term := g.isLeader(), g.raft.CurrentTerm()
		if leader != hbLeader {
			g.setHeartbeatTimeout(leader)
			hbLeader = leader
		}
		if cur != nil && (!leader || term != curTerm) {
			g.readyTerm.Store(0)
			cur.End() // cancel, and wait for the term's work to return
			cur = nil
		}
		if leader && cur == nil {
			life := newLifetime(ctx)
			cur, curTerm = life, term
			life.Go(func(ctx context.Context) { g.runTerm(ctx, life, term) })
		}
		select {
		case <-next:
		case <-ctx.Done():
			if cur != nil {
				cur.End()
			}
			return
		}
	}
}

// setHeartbeatTimeout gives raft the leader's heartbeat timeout
// (Config.LeaderHeartbeatTimeout: fewer heartbeats) while this node leads
// the group, and the follower's (HeartbeatTimeout: how soon a silent
// leader is noticed) otherwise. Raft takes it at its next timer. A leader
// that steps down may run its first follower timer with the leader's
// timeout (it starts before this runs), and so stand for election up to
// LeaderHeartbeatTimeout late once; the other followers are not affected.
// A raised election timeout goes with it (raft wants it no lower); a
// leader uses it only to bound a leadership transfer.
func (g *group) setHeartbeatTimeout(leader bool) {
	hb, election := g.env.cfg.HeartbeatTimeout, g.env.cfg.ElectionTimeout
	if leader {
		hb = g.env.cfg.leaderHeartbeatTimeout()
		election = max(election, hb)
	}
	rc := g.raft.ReloadableConfig()
	if rc.HeartbeatTimeout == hb && rc.ElectionTimeout == election {
		return
	}
	rc.HeartbeatTimeout, rc.ElectionTimeout = hb, election
	if err := g.raft.ReloadConfig(rc); err != nil {
		g.log.Warn("set raft heartbeat timeout", "leader", leader, "err", err)
	}
}

// runTerm is one term's leader work. The term starts with an empty command
// batch rather than a bare Barrier: like a barrier, it completes once
// everything before it is applied, so the commit index is current; unlike
// one, the state machine sees it (raft never hands no-op and barrier
// entries to the FSM), so every replica's applied index moves past the new
// leader's no-op and a read index never points at an entry no FSM applies.
func (g *group) runTerm(ctx context.Context, life *lifetime, term uint64) {
	marker, err := sm.EncodeBatch(&logpb.Batch{})
	if err != nil {
		g.log.Error("encode term marker", "err", err)
		return
	}
	for {
		_, err := g.await(ctx, "term marker", func() raft.Future { return g.raft.Apply(marker, g.env.t.applyEnqueue) })
		if err == nil {
			break
		}
		if ctx.Err() != nil || !g.isLeader() {
			return
		}
		g.log.Warn("term marker after election failed; retrying", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(g.env.t.markerRetry):
		}
	}
	if ctx.Err() != nil || g.raft.CurrentTerm() != term {
		return
	}
	g.readyTerm.Store(term)
	g.changes.notify()
	g.log.Info("leading group", "term", term)
	for _, task := range g.env.onLead(ctx, g) {
		life.Go(task)
	}
	life.Go(g.reconcileLoop)
	if g.env.cfg.HashCheckInterval > 0 {
		life.Go(g.hashCheckLoop)
	}
	if g.kind == sm.KindData || g.kind == sm.KindOffset {
		life.Go(g.initOwnership)
	}
	g.runTimers(ctx)
}

// waitReady waits until this node's leadership of term is ready, failing
// with not-leader when the term is lost first.
func (g *group) waitReady(ctx context.Context, term uint64) error {
	for g.readyTerm.Load() != term {
		next := g.changes.wait()
		if g.readyTerm.Load() == term {
			return nil
		}
		if !g.isLeader() || g.raft.CurrentTerm() != term {
			return g.notLeader()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-next:
		}
	}
	return nil
}

// waitFor waits on the group's changes until cond holds, ctx ends (its
// error), the group stops (ErrShuttingDown) or bound passes (timeout).
func (g *group) waitFor(ctx context.Context, bound time.Duration, cond func() bool, timeout error) error {
	t := time.NewTimer(bound)
	defer t.Stop()
	for {
		next := g.changes.wait()
		if cond() {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-g.life.Done():
			return ErrShuttingDown
		case <-t.C:
			return fmt.Errorf("%s: %w", g.name, timeout)
		case <-next:
		}
	}
}

// TransferLeader moves a group's leadership to target (a node id), or to
// the most up-to-date follower when target is empty. It runs on the
// group's leader; other nodes answer NOT_LEADER. It returns the new leader
// once this node knows it.
func (n *Node) TransferLeader(ctx context.Context, groupName, target string) (string, error) {
	g, err := n.group(groupName)
	if err != nil {
		return "", err
	}
	if !g.isLeader() {
		return "", g.notLeader()
	}
	if target != "" {
		voter := false
		for _, s := range g.voters() {
			voter = voter || string(s.ID) == target
		}
		if !voter {
			return "", invalidf("target_id", "%s is not a voter of %s", target, groupName)
		}
		if target == n.id {
			return n.id, nil
		}
	}
	if err := g.transferLeadership(ctx, "leadership transfer", raft.ServerID(target), nil); err != nil {
		return "", err
	}
	var leader string
	err = g.waitFor(ctx, g.env.t.leaderWait, func() bool {
		id, _ := g.leader()
		leader = id
		return id != "" && id != n.id
	}, ErrNoLeader)
	return leader, err
}
