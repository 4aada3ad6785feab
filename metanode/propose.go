package metanode

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/metamq/meta/rpc/transport"
	"github.com/metamq/meta/sm"
	"github.com/metamq/meta/sm/logpb"
)

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
// Errors: ErrNotLeader / ErrNoLeader / ErrShuttingDown mean the operation
// was definitely not applied; ErrUnknownOutcome means it may have been.
// Domain outcomes (compare failed, not found, invalid) are in the result.
func (n *Node) Propose(ctx context.Context, groupName string, op *logpb.Op) (*logpb.Result, error) {
	g, err := n.group(groupName)
	if err != nil {
		return nil, err
	}
	if !n.serving.Load() {
		return nil, ErrShuttingDown
	}
	if !g.kind.Allows(op) {
		return nil, fmt.Errorf("%w: operation %T not allowed in group %s", ErrInvalid, op.Op, groupName)
	}
	// Retry what definitely did not apply (no leader, not the leader, a
	// transfer under way) for up to a few election timeouts.
	var last error
	deadline := time.Now().Add(4 * g.n.cfg.ElectionTimeout)
	for time.Now().Before(deadline) {
		if g.isLeader() {
			res, err := g.proposeLocal(ctx, op)
			if err == nil || !errors.Is(err, ErrNotLeader) {
				return res, err
			}
			last = err
		} else {
			res, err := g.forward(ctx, op)
			if err == nil || !(errors.Is(err, ErrNotLeader) || errors.Is(err, ErrNoLeader)) {
				return res, err
			}
			last = err
		}
		// Definitely not applied: wait for a leader and try again.
		if err := g.waitLeader(ctx); err != nil {
			return nil, last
		}
	}
	return nil, last
}

// waitLeader waits briefly for the group to have a leader.
func (g *group) waitLeader(ctx context.Context) error {
	deadline := time.Now().Add(2 * g.n.cfg.ElectionTimeout)
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-g.n.stopping:
			return ErrShuttingDown
		case <-time.After(20 * time.Millisecond):
		}
		if id, _ := g.leader(); id != "" {
			return nil
		}
		if time.Now().After(deadline) {
			return ErrNoLeader
		}
	}
}

func (g *group) notLeader() error {
	id, addr := g.leader()
	if id == "" {
		return fmt.Errorf("%s: %w", g.name, ErrNoLeader)
	}
	return &NotLeaderError{Group: g.name, LeaderID: id, LeaderAddr: addr}
}

// proposeLocal queues op for the batcher and waits for its outcome. Once
// queued, a cancelled ctx yields an unknown outcome: the op may still be
// proposed.
func (g *group) proposeLocal(ctx context.Context, op *logpb.Op) (*logpb.Result, error) {
	p := &proposal{op: op, size: proto.Size(op), done: make(chan outcome, 1)}
	select {
	case g.proposals <- p:
	case <-ctx.Done():
		return nil, ctx.Err() // never queued
	case <-g.n.stopping:
		return nil, ErrShuttingDown
	}
	select {
	case o := <-p.done:
		return o.res, o.err
	case <-ctx.Done():
		return nil, unknown(ctx.Err())
	}
}

// runProposals is the group's batcher: it takes the first waiting
// proposal, waits for an in-flight slot, then packs every proposal that
// arrived meanwhile (up to the limits) into one raft entry. Under load,
// entries grow while earlier ones are being replicated and synced, so one
// fsync carries many client writes.
func (g *group) runProposals(stop <-chan struct{}) {
	cfg := g.n.cfg
	for {
		var first *proposal
		select {
		case first = <-g.proposals:
		case <-stop:
			g.failQueued()
			return
		}
		select {
		case g.inflight <- struct{}{}:
		case <-stop:
			first.done <- outcome{err: ErrShuttingDown}
			g.failQueued()
			return
		}
		batch := []*proposal{first}
		size := first.size
	fill:
		for len(batch) < cfg.MaxBatchOps && size < cfg.MaxBatchBytes {
			select {
			case p := <-g.proposals:
				batch = append(batch, p)
				size += p.size
			default:
				break fill
			}
		}
		g.submit(batch)
	}
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
	b := &logpb.Batch{NowUnixNano: g.n.cfg.Clock.Now().UnixNano(), Ops: make([]*logpb.Op, len(batch))}
	for i, p := range batch {
		b.Ops[i] = p.op
	}
	data, err := sm.EncodeBatch(b)
	if err != nil {
		<-g.inflight
		for _, p := range batch {
			p.done <- outcome{err: fmt.Errorf("%w: encode: %v", ErrInvalid, err)}
		}
		return
	}
	f := g.raft.Apply(data, 5*time.Second)
	g.n.loops.Add(1)
	go func() {
		defer g.n.loops.Done()
		defer func() { <-g.inflight }()
		// Raft may never answer a future once it has shut down (one left
		// in its apply channel, or in a batch its FSM goroutine did not
		// reach), so the wait ends when raft is done as well: the outcome
		// is then unknown. The goroutine blocked on such a future is
		// abandoned; it only exists during shutdown.
		errc := make(chan error, 1)
		go func() { errc <- f.Error() }()
		var err error
		select {
		case err = <-errc:
		case <-g.raftDone:
			select {
			case err = <-errc:
			default:
				err = raft.ErrRaftShutdown
			}
		}
		if err != nil {
			err = g.applyError(err)
			for _, p := range batch {
				p.done <- outcome{err: err}
			}
			return
		}
		res, ok := f.Response().(*sm.BatchResult)
		if !ok || len(res.Results) != len(batch) {
			err := unknown(fmt.Errorf("unexpected apply response %T", f.Response()))
			for _, p := range batch {
				p.done <- outcome{err: err}
			}
			return
		}
		for i, p := range batch {
			p.done <- outcome{res: res.Results[i]}
		}
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

// forward sends op to the group's leader.
func (g *group) forward(ctx context.Context, op *logpb.Op) (*logpb.Result, error) {
	id, addr := g.leader()
	if id == "" {
		return nil, fmt.Errorf("%s: %w", g.name, ErrNoLeader)
	}
	payload, err := sm.EncodeOp(op)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	out, err := g.n.trans.Propose(ctx, addr, g.name, payload)
	if err != nil {
		return nil, fromPeerError(g.name, err)
	}
	res, err := sm.DecodeResult(out)
	if err != nil {
		return nil, unknown(err)
	}
	return res, nil
}

// fromPeerError maps a peer call's error to the node's errors.
func fromPeerError(group string, err error) error {
	var pe *transport.PeerError
	if !errors.As(err, &pe) {
		return unknown(err)
	}
	switch pe.Kind {
	case transport.KindNotLeader:
		if pe.LeaderID == "" {
			return fmt.Errorf("%s: %w: %s", group, ErrNoLeader, pe.Msg)
		}
		return &NotLeaderError{Group: group, LeaderID: pe.LeaderID, LeaderAddr: pe.LeaderAddr}
	case transport.KindUnavailable:
		return fmt.Errorf("%s: %w: %s", group, ErrNoLeader, pe.Msg)
	case transport.KindRejected:
		return fmt.Errorf("%w: %s", ErrInvalid, pe.Msg)
	}
	return unknown(err)
}

// toPeerError maps the node's errors onto peer-call kinds.
func toPeerError(err error) error {
	var nl *NotLeaderError
	switch {
	case errors.As(err, &nl):
		return &transport.PeerError{Kind: transport.KindNotLeader, Msg: err.Error(), LeaderID: nl.LeaderID, LeaderAddr: nl.LeaderAddr}
	case errors.Is(err, ErrNoLeader), errors.Is(err, ErrShuttingDown), errors.Is(err, ErrNotStarted), errors.Is(err, ErrUnknownGroup):
		return &transport.PeerError{Kind: transport.KindUnavailable, Msg: err.Error()}
	case errors.Is(err, ErrInvalid):
		return &transport.PeerError{Kind: transport.KindRejected, Msg: err.Error()}
	}
	return &transport.PeerError{Kind: transport.KindUnknownOutcome, Msg: err.Error()}
}
