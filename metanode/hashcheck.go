package metanode

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/metamq/meta/rpc/transport"
	"github.com/metamq/meta/rpc/transport/raftpb"
	"github.com/metamq/meta/sm"
	"github.com/metamq/meta/sm/logpb"
)

// Hash checks (issue 14's corruption check). While this node leads a
// group, every HashCheckInterval (jittered) it proposes a HashCheck entry;
// every replica digests its state as of that entry (sm/hashcheck.go), and
// the leader asks each voter for its digest (metanode.hash-at/v1). A
// digest that a majority of the voters share is the group's; a replica
// with another one has a state that differs although it applied the same
// log: the leader raises the CORRUPT alarm (an error log naming the
// replica, meta_hash_checks_total{result="mismatch"}) and fences that
// replica (metanode.fence/v1, or sm's Fence here when it is this node's):
// it stops applying and reports itself halted (meta_group_halted,
// /readyz), a restart keeps it fenced, and a snapshot of a good replica
// (moving the replica away and back) clears it. A fenced leader hands its
// leadership off (reconcileLoop).
//
// Rolling upgrades: a replica of an older release would halt on a
// HashCheck entry it does not know, so checks wait for a cluster version
// that has them (version.go: every member runs a release that knows
// them), and a leader proposes one only after every voter answered a
// probe (hash-at for index 0) in this round.

const (
	callHashAt = "metanode.hash-at/v1"
	callFence  = "metanode.fence/v1"
)

// hashWait bounds how long a check waits for the voters' digests.
const hashWait = time.Minute

// Results of one hash check, the values of meta_hash_checks_total's result
// label.
const (
	hashOK         = "ok"         // every voter that answered agrees
	hashMismatch   = "mismatch"   // some disagree with the majority: fenced
	hashUndecided  = "undecided"  // digests differ and none has a majority
	hashIncomplete = "incomplete" // fewer than a majority of voters answered
	hashSkipped    = "skipped"    // a voter, or the cluster version, does not know hash checks
)

// hashCheckLoop runs the group's hash checks while this node leads it.
func (g *group) hashCheckLoop(ctx context.Context) {
	d := g.env.cfg.HashCheckInterval
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(d/2 + rand.N(d)):
		}
		if g.fsm.Halted() != nil {
			continue
		}
		result, err := g.hashCheck(ctx)
		if ctx.Err() != nil {
			return
		}
		g.env.m.hashChecks.WithLabelValues(g.name, result).Inc()
		if err != nil {
			g.log.Warn("hash check", "result", result, "err", err)
		}
	}
}

// replicaHash is one voter's answer.
type replicaHash struct {
	id, addr string
	done     bool
	hash     uint64
}

// hashCheck runs one check: probe, propose, gather, compare, fence.
func (g *group) hashCheck(ctx context.Context) (string, error) {
	op := &logpb.Op{Op: &logpb.Op_HashCheck{HashCheck: &logpb.HashCheck{}}}
	if g.env.allowed(op) != nil {
		return hashSkipped, nil // until every member runs a release with hash checks
	}
	cf := g.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return hashIncomplete, err
	}
	var voters []replicaHash
	for _, s := range cf.Configuration().Servers {
		if s.Suffrage == raft.Voter {
			voters = append(voters, replicaHash{id: string(s.ID), addr: string(s.Address)})
		}
	}
	for _, v := range voters {
		if v.id == g.env.id {
			continue
		}
		if _, err := g.askHash(ctx, v.addr, 0); err != nil {
			if errors.Is(err, transport.ErrUnknownCall) {
				return hashSkipped, fmt.Errorf("%s does not know hash checks yet (an older release)", v.id)
			}
			return hashIncomplete, fmt.Errorf("probe %s: %w", v.id, err)
		}
	}
	res, err := g.proposeLocal(ctx, op)
	if err != nil {
		return hashIncomplete, fmt.Errorf("propose: %w", err)
	}
	index := res.Index
	// Followers apply the entry up to a CommitTimeout later; digesting a
	// large state takes a while more.
	wctx, cancel := context.WithTimeout(ctx, hashWait)
	defer cancel()
	answered := 0
	for i := range voters {
		v := &voters[i]
		ans, err := g.waitHash(wctx, v, index)
		if err != nil {
			g.log.Info("hash check: no digest from a voter", "index", index, "replica", v.id, "err", err)
			continue
		}
		if ans.GetDone() {
			v.done, v.hash = true, ans.GetHash()
			answered++
		}
	}
	count := map[uint64]int{}
	for _, v := range voters {
		if v.done {
			count[v.hash]++
		}
	}
	majority, ok := uint64(0), false
	for h, c := range count {
		if c > len(voters)/2 {
			majority, ok = h, true
		}
	}
	switch {
	case !ok && len(count) > 1:
		g.log.Error("CORRUPT: replicas' digests differ and none has a majority", "index", index, "digests", fmt.Sprint(voters))
		return hashUndecided, nil
	case !ok:
		return hashIncomplete, fmt.Errorf("%d of %d voters gave a digest at %d", answered, len(voters), index)
	case len(count) == 1:
		return hashOK, nil
	}
	var errs []error
	for _, v := range voters {
		if !v.done || v.hash == majority {
			continue
		}
		reason := fmt.Sprintf("hash check at index %d: digest %016x, %d of %d voters have %016x", index, v.hash, count[majority], len(voters), majority)
		g.log.Error("CORRUPT: a replica's state differs from the majority's; fencing it", "replica", v.id, "index", index, "reason", reason)
		errs = append(errs, g.fence(ctx, v, index, reason))
	}
	return hashMismatch, errors.Join(errs...)
}

// waitHash asks v for its digest at index until it has one (or says it
// never will).
func (g *group) waitHash(ctx context.Context, v *replicaHash, index uint64) (*raftpb.HashAtAnswer, error) {
	for {
		var ans *raftpb.HashAtAnswer
		var err error
		if v.id == g.env.id {
			ans = g.hashAnswer(index)
		} else {
			ans, err = g.askHash(ctx, v.addr, index)
		}
		if err == nil && !ans.GetPending() {
			return ans, nil
		}
		select {
		case <-ctx.Done():
			if err == nil {
				err = ctx.Err()
			}
			return nil, err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// askHash calls hash-at on the node at addr.
func (g *group) askHash(ctx context.Context, addr string, index uint64) (*raftpb.HashAtAnswer, error) {
	payload, err := proto.Marshal(&raftpb.HashAtCall{Group: g.name, Index: index})
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	out, err := g.env.peers.Call(cctx, addr, callHashAt, payload)
	if err != nil {
		return nil, err
	}
	ans := &raftpb.HashAtAnswer{}
	if err := proto.Unmarshal(out, ans); err != nil {
		return nil, err
	}
	return ans, nil
}

// hashAnswer is this replica's answer for index.
func (g *group) hashAnswer(index uint64) *raftpb.HashAtAnswer {
	if index == 0 {
		return &raftpb.HashAtAnswer{}
	}
	h, err := g.fsm.HashAt(index)
	switch {
	case errors.Is(err, sm.ErrHashPending):
		return &raftpb.HashAtAnswer{Pending: true}
	case err != nil:
		return &raftpb.HashAtAnswer{}
	}
	return &raftpb.HashAtAnswer{Done: true, Index: h.Index, Revision: h.Revision, Hash: h.Hash, Keys: h.Keys}
}

// fence fences v's replica: here, or through a call to its node.
func (g *group) fence(ctx context.Context, v replicaHash, index uint64, reason string) error {
	if v.id == g.env.id {
		if err := g.fsm.Fence(errors.New(reason)); err != nil {
			return err
		}
		// A leader that applies nothing answers nothing: hand off now
		// (reconcileLoop would, within a ReconcileInterval).
		if err := g.transferLeadership(ctx, "hand off a fenced replica", "", nil); err != nil {
			g.log.Warn("hand off leadership of a fenced replica", "err", err)
		}
		return nil
	}
	payload, err := proto.Marshal(&raftpb.FenceCall{Group: g.name, Index: index, Reason: reason})
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := g.env.peers.Call(cctx, v.addr, callFence, payload); err != nil {
		return fmt.Errorf("fence %s: %w", v.id, err)
	}
	return nil
}

// serveHashAt answers a leader's hash-at call.
func (n *Node) serveHashAt(_ context.Context, req *raftpb.HashAtCall) ([]byte, error) {
	g, err := n.group(req.Group)
	if err != nil {
		return nil, err
	}
	return proto.Marshal(g.hashAnswer(req.Index))
}

// serveFence fences this node's replica of a group at its leader's word.
func (n *Node) serveFence(_ context.Context, req *raftpb.FenceCall) error {
	g, err := n.group(req.Group)
	if err != nil {
		return err
	}
	if req.Reason == "" {
		return fmt.Errorf("%w: fence: reason: empty", ErrInvalid)
	}
	g.log.Error("CORRUPT: fenced by the group's leader: this replica's state differs from the majority's", "index", req.Index, "reason", req.Reason)
	return g.fsm.Fence(errors.New(req.Reason))
}
