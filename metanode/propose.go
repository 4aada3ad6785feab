package metanode

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/metamq/meta/rpc/metapb"
	"github.com/metamq/meta/rpc/transport"
	"github.com/metamq/meta/sm"
	"github.com/metamq/meta/sm/logpb"
)

// onLeader is the one way the node runs something on a group's leader:
// local when this node leads the group, else remote at the leader's
// address (a peer call). The leader's address is raft's view when this
// node hosts the group and knows it; else the leader hint and the
// directory's replicas of the group are tried in turn (a node that does
// not host the group, or whose replica was removed and no longer hears
// from the leader). Answers that say "definitely not applied, try again"
// (no leader, not the leader, a transfer under way, the peer stopping) are
// retried, following leader hints, for up to leaderRetry; anything else —
// success, an unknown outcome, a final refusal — is returned as it is. g
// is nil when this node does not host the group.
func onLeader[T any](ctx context.Context, e *env, name string, g *group, local func(context.Context) (T, error),
	remote func(ctx context.Context, addr string) (T, error)) (T, error) {
	var zero T
	deadline := time.Now().Add(e.t.leaderRetry)
	var err error
	for attempt := 0; ; attempt++ {
		var res T
		if g != nil && g.isLeader() {
			res, err = local(ctx)
		} else {
			err = ErrNoLeader
			for _, c := range e.leaderCandidates(name, g) {
				res, err = remote(ctx, c.addr)
				if err == nil {
					e.noteLeader(name, c)
					break
				}
				if !retryable(err) {
					break
				}
				var coded metapb.Coded
				if errors.As(err, &coded) {
					md := coded.Metadata()
					if hint := (candidate{md[metapb.MetaLeaderID], md[metapb.MetaLeaderAddr]}); hint.addr != "" && hint.addr != c.addr {
						e.noteLeader(name, hint)
						break // the hinted leader goes first next time
					}
				}
			}
		}
		if err == nil || !retryable(err) || errors.Is(err, ErrShuttingDown) || metapb.ReasonOf(err) == metapb.ReasonOverloaded {
			// An overloaded leader is answered at once: retrying here
			// would only add to its queue.
			return res, err
		}
		if time.Now().After(deadline) {
			return zero, err
		}
		// Wait for a leadership change, or a moment: a peer's hint may be
		// ahead of this node's view.
		pause := min(e.cfg.ElectionTimeout/50<<min(attempt, 4), e.cfg.ElectionTimeout/2)
		var changed <-chan struct{}
		if g != nil {
			changed = g.changes.wait()
		}
		select {
		case <-ctx.Done():
			return zero, err
		case <-e.stopping:
			return zero, ErrShuttingDown
		case <-changed:
		case <-time.After(pause):
		}
	}
}

// A proposal is one client operation waiting to be packed into a raft
// entry. done receives exactly one outcome.
type proposal struct {
	op   *logpb.Op
	size int
	done chan outcome
}

type outcome struct {
	res *logpb.Result
	err error
}

// Propose replicates one operation through the group's leader and returns
// its result once applied there. On a follower it forwards to the leader.
//
// Errors are in meta's vocabulary: ErrNotLeader, ErrNoLeader and
// ErrShuttingDown mean the operation was definitely not applied;
// ErrUnknownOutcome (and a peer's OUTCOME_UNKNOWN) that it may have been.
// Domain outcomes (compare failed, not found, invalid) are in the result.
func (n *Node) Propose(ctx context.Context, groupName string, op *logpb.Op) (*logpb.Result, error) {
	if !n.serving.Load() {
		return nil, ErrShuttingDown
	}
	if err := n.env.admit(op); err != nil {
		return nil, err
	}
	g, err := n.group(groupName)
	var nh *RedirectError
	if errors.As(err, &nh) {
		return onLeader(ctx, n.env, groupName, nil, nil, func(ctx context.Context, addr string) (*logpb.Result, error) {
			return forward(ctx, n.trans, addr, groupName, op)
		})
	}
	if err != nil {
		return nil, err
	}
	if !g.kind.Allows(op) {
		return nil, fmt.Errorf("%w: operation %T not allowed in group %s", ErrInvalid, op.Op, groupName)
	}
	return g.propose(ctx, op)
}

// propose runs op through the group's leader, wherever it is.
func (g *group) propose(ctx context.Context, op *logpb.Op) (*logpb.Result, error) {
	return onLeader(ctx, g.env, g.name, g,
		func(ctx context.Context) (*logpb.Result, error) { return g.proposeLocal(ctx, op) },
		func(ctx context.Context, addr string) (*logpb.Result, error) {
			return forward(ctx, g.env.peers, addr, g.name, op)
		})
}

// proposeLocal queues op for the batcher and waits for its outcome. Once
// queued, a cancelled ctx yields an unknown outcome: the op may still be
// proposed. A client's operation finding the queue full is refused at
// once (ErrOverloaded) rather than waiting out its deadline; the node's
// and the controller's own operations (sheddable says which) wait, so
// broker heartbeats, liveness decisions, expiries and membership changes
// are never shed behind bulk writes.
func (g *group) proposeLocal(ctx context.Context, op *logpb.Op) (*logpb.Result, error) {
	if err := g.env.admit(op); err != nil {
		return nil, err
	}
	if h := g.fsm.Halted(); h != nil {
		// This replica cannot apply (a full disk, a fence): an entry
		// proposed here would have an unknown outcome. Refused before
		// it is proposed, the caller retries at the next leader (a
		// halted leader hands off, membership.go).
		return nil, fmt.Errorf("%s: %w: the leader's replica halted: %v", g.name, ErrNoLeader, h)
	}
	p := &proposal{op: op, size: proto.Size(op), done: make(chan outcome, 1)}
	if sheddable(op) {
		select {
		case g.proposals <- p:
			res, err := g.awaitProposal(ctx, p)
			if err == nil && plantedNoSpaceLate() {
				if serr := g.env.checkSpace(op); serr != nil {
					return nil, serr
				}
			}
			return res, err
		default:
			return nil, fmt.Errorf("%s: %w", g.name, ErrOverloaded)
		}
	}
	select {
	case g.proposals <- p:
	case <-ctx.Done():
		return nil, ctx.Err() // never queued
	case <-g.life.Done():
		return nil, ErrShuttingDown
	}
	return g.awaitProposal(ctx, p)
}

// awaitProposal waits for a queued proposal's outcome.
func (g *group) awaitProposal(ctx context.Context, p *proposal) (*logpb.Result, error) {
	select {
	case o := <-p.done:
		return o.res, o.err
	case <-ctx.Done():
		return nil, unknown(ctx.Err())
	}
}

// sheddable reports whether an operation is a client's, which a full
// queue refuses at once; the rest are the node's and the controller's own
// work (liveness, assignments, membership, directory, expiries,
// compaction, ownership), which waits for room.
func sheddable(op *logpb.Op) bool {
	switch op.Op.(type) {
	case *logpb.Op_Put, *logpb.Op_Delete, *logpb.Op_Cas, *logpb.Op_KvPuts, *logpb.Op_KvTxn,
		*logpb.Op_OffsetCommit, *logpb.Op_OffsetDeleteGroup,
		*logpb.Op_ResourceCreate, *logpb.Op_ResourceUpdate, *logpb.Op_ResourceDelete,
		*logpb.Op_SessionsPut, *logpb.Op_SessionsDelete,
		*logpb.Op_WillPut, *logpb.Op_WillDelete, *logpb.Op_WillClaim, *logpb.Op_WillComplete,
		*logpb.Op_RetainedSet, *logpb.Op_LeaseGrant, *logpb.Op_LeaseRevoke:
		return true
	}
	return false
}

// runProposals is the group's batcher: it takes the first waiting
// proposal, waits for an in-flight slot, then packs every proposal that
// arrived meanwhile (up to the limits) into one raft entry. Under load,
// entries grow while earlier ones are being replicated and synced, so one
// fsync carries many client writes.
func (g *group) runProposals(ctx context.Context) {
	cfg := g.env.cfg
	for {
		var first *proposal
		select {
		case first = <-g.proposals:
		case <-ctx.Done():
			g.failQueued()
			return
		}
		select {
		case g.inflight <- struct{}{}:
		case <-ctx.Done():
			first.done <- outcome{err: ErrShuttingDown}
			g.failQueued()
			return
		}
		g.submit(fill(first, g.proposals, cfg.MaxBatchOps, cfg.MaxBatchBytes))
	}
}

// fill packs first and every proposal waiting in queue into one batch, up
// to maxOps operations or maxBytes bytes; it never waits.
func fill(first *proposal, queue <-chan *proposal, maxOps, maxBytes int) []*proposal {
	batch := []*proposal{first}
	size := first.size
	for len(batch) < maxOps && size < maxBytes {
		select {
		case p := <-queue:
			batch = append(batch, p)
			size += p.size
		default:
			return batch
		}
	}
	return batch
}

func (g *group) failQueued() {
	for {
		select {
		case p := <-g.proposals:
			p.done <- outcome{err: ErrShuttingDown}
		default:
			return
		}
	}
}

// submit hands one entry to raft and delivers the results when it is
// applied; it releases the in-flight slot then.
func (g *group) submit(batch []*proposal) {
	b := &logpb.Batch{NowUnixNano: g.env.cfg.Clock.Now().UnixNano(), Ops: make([]*logpb.Op, len(batch))}
	for i, p := range batch {
		b.Ops[i] = p.op
	}
	deliver := func(res []*logpb.Result, err error) {
		<-g.inflight
		for i, p := range batch {
			if err != nil {
				p.done <- outcome{err: err}
			} else {
				p.done <- outcome{res: res[i]}
			}
		}
	}
	data, err := sm.EncodeBatch(b)
	if err != nil {
		deliver(nil, fmt.Errorf("%w: encode: %v", ErrInvalid, err))
		return
	}
	m := g.env.m
	m.batchOps.WithLabelValues(g.name).Observe(float64(len(batch)))
	start := time.Now()
	f, done, err := g.calls.start("apply", func() raft.Future { return g.raft.Apply(data, g.env.t.applyEnqueue) })
	if err != nil {
		deliver(nil, err) // never handed to raft
		return
	}
	// Raft answers every entry it accepted (raftCalls keeps it running
	// until it has), so this goroutine always ends.
	go func() {
		defer done()
		if err := f.Error(); err != nil {
			m.proposeFailed.WithLabelValues(g.name).Inc()
			deliver(nil, g.applyError(err))
			return
		}
		m.raftApply.WithLabelValues(g.name).Observe(time.Since(start).Seconds())
		res, ok := f.(raft.ApplyFuture).Response().(*sm.BatchResult)
		if ok && len(res.Results) == 0 && len(batch) > 0 {
			// The replica here halted (sm/halt.go): other replicas may
			// apply the entry.
			deliver(nil, unknown(fmt.Errorf("not applied on this node: %v", g.fsm.Halted())))
			return
		}
		if !ok || len(res.Results) != len(batch) {
			deliver(nil, unknown(fmt.Errorf("unexpected apply response %T", f.(raft.ApplyFuture).Response())))
			return
		}
		deliver(res.Results, nil)
	}()
}

// applyError classifies raft's Apply errors: ErrNotLeader,
// ErrLeadershipTransferInProgress and ErrEnqueueTimeout mean the entry
// never entered the log (definite; raft refuses new entries while it hands
// leadership over); anything else (leadership lost, shutdown) may have
// committed.
func (g *group) applyError(err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader):
		return g.notLeader()
	case errors.Is(err, raft.ErrLeadershipTransferInProgress), errors.Is(err, raft.ErrEnqueueTimeout):
		return fmt.Errorf("%s: %w: %v", g.name, ErrNoLeader, err)
	}
	return unknown(fmt.Errorf("%s: %w", g.name, err))
}

// forward sends op to the group's leader at addr. A failure is the peer's
// error as it came (meta's vocabulary: definite or unknown).
func forward(ctx context.Context, peers *transport.Manager, addr, group string, op *logpb.Op) (*logpb.Result, error) {
	payload, err := sm.EncodeOp(op)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	out, err := peers.Propose(ctx, addr, group, payload)
	if err != nil {
		return nil, err
	}
	res, err := sm.DecodeResult(out)
	if err != nil {
		return nil, unknown(err)
	}
	return res, nil
}
