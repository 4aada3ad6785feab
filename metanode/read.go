package metanode

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/metamq/meta/sm/state"
)

// Read returns the group's state machine once a read may be served from
// it. By default reads are linearizable: they reflect every write
// acknowledged before they started. The leader confirms its leadership
// after the read arrived (one heartbeat round shared by every read waiting
// at that moment) and the local replica waits until it has applied the
// commit index the leader had. A stale read reads this node's replica as it
// is.
func (n *Node) Read(ctx context.Context, groupName string, stale bool) (state.Reader, error) {
	g, err := n.group(groupName)
	if err != nil {
		return nil, err
	}
	if !n.serving.Load() {
		return nil, ErrShuttingDown
	}
	if rec := n.Directory().Group(groupName); rec != nil && !hosts(rec, n.id) {
		// A replica on its way out (no longer placed here) may no longer
		// hear from its group: another node serves the read.
		return nil, n.notHosted(groupName)
	}
	if h := g.fsm.Halted(); h != nil {
		// This replica stopped applying (sm/halt.go): its state is behind
		// the group's and, after a storage failure or a fence, may not be
		// trusted at all. Another node serves the read.
		return nil, fmt.Errorf("%s: %w: %v", g.name, ErrReplicaHalted, h)
	}
	if stale || plantedLocalReads() {
		return g.fsm, nil
	}
	idx, err := g.readIndex(ctx)
	if err != nil {
		return nil, err
	}
	if g.raft.CommitIndex() < idx {
		// A follower that has not heard the read's index is committed
		// learns it with the leader's next AppendEntries, up to
		// CommitTimeout away in an idle group: the leader answers sooner.
		if id, addr := g.leader(); addr != "" && id != n.id {
			return nil, &RedirectError{Group: g.name, LeaderID: id, LeaderAddr: addr, Why: "has not learned the read's index is committed"}
		}
	}
	if err := g.fsm.WaitApplied(ctx, idx); err != nil {
		return nil, fmt.Errorf("%s: wait for index %d: %w", g.name, idx, err)
	}
	return g.fsm, nil
}

// readIndex returns an index that, once applied locally, makes a read
// linearizable: on the leader from a confirmation round, on a follower by
// asking the leader.
func (g *group) readIndex(ctx context.Context) (uint64, error) {
	if g.isLeader() {
		return g.leaderReads.do(ctx)
	}
	return g.remoteReads.do(ctx)
}

// confirmLeadership samples the commit index, then confirms with a
// heartbeat round that this node still leads in the same term. It runs only
// in a term whose marker was applied, so the commit index is current.
func (g *group) confirmLeadership(ctx context.Context) (uint64, error) {
	term := g.raft.CurrentTerm()
	if !g.isLeader() {
		return 0, g.notLeader()
	}
	if g.readyTerm.Load() != term {
		// Elected, but the marker of this term has not applied yet.
		if err := g.waitReady(ctx, term); err != nil {
			return 0, err
		}
	}
	idx := g.raft.CommitIndex()
	if _, err := g.await(ctx, "verify leader", g.raft.VerifyLeader); err != nil {
		if ctx.Err() != nil || errors.Is(err, ErrShuttingDown) {
			return 0, err
		}
		return 0, g.notLeader()
	}
	if g.raft.CurrentTerm() != term {
		return 0, g.notLeader()
	}
	return idx, nil
}

// askLeaderReadIndex asks the leader for a read index.
func (g *group) askLeaderReadIndex(ctx context.Context) (uint64, error) {
	id, addr := g.leader()
	if id == "" {
		return 0, fmt.Errorf("%s: %w", g.name, ErrNoLeader)
	}
	return g.env.peers.ReadIndex(ctx, addr, g.name)
}

// rounds shares one in-flight call among concurrent callers. A caller
// always waits for a call that STARTS after it arrived (a round already
// under way may have sampled its state before the caller's read began), so
// every caller gets a result that is fresh for it.
type rounds struct {
	run func(ctx context.Context) (uint64, error)
	// timeout bounds one round; callers still honour their own ctx.
	timeout time.Duration

	mu      sync.Mutex // guards waiting and running
	waiting []chan roundResult
	running bool
}

type roundResult struct {
	idx uint64
	err error
}

func (r *rounds) do(ctx context.Context) (uint64, error) {
	ch := make(chan roundResult, 1)
	r.mu.Lock()
	r.waiting = append(r.waiting, ch)
	if !r.running {
		r.running = true
		go r.loop()
	}
	r.mu.Unlock()
	select {
	case res := <-ch:
		return res.idx, res.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// busy reports whether a round runs or callers wait for one.
func (r *rounds) busy() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.running
}

// loop runs rounds while callers wait; it exits when none do. Each round
// is bounded by timeout, so the goroutine always ends.
func (r *rounds) loop() {
	for {
		r.mu.Lock()
		batch := r.waiting
		r.waiting = nil
		if len(batch) == 0 {
			r.running = false
			r.mu.Unlock()
			return
		}
		r.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
		idx, err := r.run(ctx)
		cancel()
		for _, ch := range batch {
			ch <- roundResult{idx: idx, err: err}
		}
	}
}
