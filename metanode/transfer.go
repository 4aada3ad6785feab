package metanode

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/metamq/meta/rpc/metapb"
)

// Leadership transfers. transferLeadership is the one way this node starts
// one (TestLeadershipTransfersGoThroughTheGuard): it picks the target when
// none is named, and it never asks raft for a transfer that could wedge the
// group.
//
// hashicorp/raft v1.8.0 (issue #696): a transfer hands the target's
// replication goroutine a request on a channel of capacity one and, if the
// transfer times out first (a target that does not catch up within an
// election timeout: slow, paused, cut off), leaves it there. A second
// transfer to the same target in the same term then blocks sending on that
// channel until the replication goroutine takes the first request; all the
// while raft refuses every apply, configuration change and read of the
// group ("leadership transfer in progress"). If the leader steps down
// meanwhile, that goroutine is gone: the send blocks for ever, raft never
// clears its transfer flag, and the node refuses every apply of the group
// whenever it leads it again (and the blocked goroutines leak).
//
// So a target whose transfer did not end cleanly is unsettled for the rest
// of the term: no transfer goes to it again until it has taken entries
// appended after that transfer (its replication loop ran since) and a
// settle time has passed (the loop took its pending request: it picks among
// ready cases at random, at least every commit timeout). A transfer that
// ended cleanly (the leadership moved, or raft refused it before it began)
// leaves nothing behind.
//
// Nor does a transfer go to a target that has not answered this node's
// raft for transferContact: raft holds its transfer flag (refusing the
// group's writes) until the TimeoutNow call to the target returns, which
// for a target cut off is the transport's call timeout.

// transferGuard is a group's record of unsettled transfer targets in the
// current term of this node's leadership.
type transferGuard struct {
	mu        sync.Mutex // guards the fields below
	term      uint64
	unsettled map[raft.ServerID]unsettledTransfer
}

// unsettledTransfer is a transfer to a target that is under way, or that
// did not end cleanly: at is when it ended (zero while under way), last
// the leader's last log index then.
type unsettledTransfer struct {
	at   time.Time
	last uint64
}

// in moves the guard to term: every target of an earlier term is settled
// (its replication goroutine and channel were that term's).
func (tg *transferGuard) in(term uint64) {
	if tg.term != term || tg.unsettled == nil {
		tg.term, tg.unsettled = term, map[raft.ServerID]unsettledTransfer{}
	}
}

// blocked says why no transfer may go to id in term now, or "" when one
// may; matched is what id holds of the log, as this leader knows it.
func (tg *transferGuard) blocked(term uint64, id raft.ServerID, matched uint64, settle time.Duration, now time.Time) string {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	tg.in(term)
	u, ok := tg.unsettled[id]
	switch {
	case !ok:
		return ""
	case u.at.IsZero():
		return "a transfer to it is under way"
	case now.Sub(u.at) < settle || matched <= u.last:
		return fmt.Sprintf("a transfer to it in term %d did not end cleanly %s ago, and it holds the log up to %d, not past %d, the leader's last index then (hashicorp/raft#696: another could wedge the group)",
			term, now.Sub(u.at).Round(time.Millisecond), matched, u.last)
	}
	delete(tg.unsettled, id)
	return ""
}

// begin records a transfer to id under way in term.
func (tg *transferGuard) begin(term uint64, id raft.ServerID) {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	tg.in(term)
	tg.unsettled[id] = unsettledTransfer{}
}

// end records how a transfer begun in term ended: clean, or not (then the
// target is unsettled from now on, at the leader's last index last).
func (tg *transferGuard) end(term uint64, id raft.ServerID, clean bool, last uint64, now time.Time) {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	if tg.term != term {
		return
	}
	if clean {
		delete(tg.unsettled, id)
		return
	}
	tg.unsettled[id] = unsettledTransfer{at: now, last: last}
}

// cleanTransferEnd reports whether a transfer's answer leaves nothing in
// the target's replication channel: the leadership moved (raft answers nil
// only once the leader left its leader loop), or raft refused the transfer
// before it began (another one is under way; not the leader).
func cleanTransferEnd(err error) bool {
	return err == nil || errors.Is(err, raft.ErrLeadershipTransferInProgress) || errors.Is(err, raft.ErrNotLeader)
}

// transferRefused is the error of a transfer the guard refuses: definitely
// not started.
func transferRefused(group, format string, args ...any) error {
	return metapb.NewError(metapb.ReasonTransferRefused, map[string]string{metapb.MetaGroup: group},
		"metanode: %s: leadership transfer refused: %s", group, fmt.Sprintf(format, args...))
}

// transferLeadership asks raft to hand the group's leadership to target,
// or, when target is empty, to the voter that holds the most of the log
// among those eligible accepts (nil: every other voter). It returns once
// raft answered (the transfer landed or failed), or ctx ended.
func (g *group) transferLeadership(ctx context.Context, what string, target raft.ServerID, eligible func(raft.ServerID) bool) error {
	if !g.isLeader() {
		return g.notLeader()
	}
	term, now := g.raft.CurrentTerm(), time.Now()
	var (
		to      raft.Server
		found   bool
		best    uint64
		refused []string
	)
	for _, s := range g.voters() {
		if string(s.ID) == g.env.id || (target != "" && s.ID != target) || (eligible != nil && !eligible(s.ID)) {
			continue
		}
		matched, _ := g.trans.Matched(s.Address, term)
		why := g.transfers.blocked(term, s.ID, matched, g.env.t.transferSettle, now)
		if seen := g.trans.LastContact(s.Address); why == "" && !seen.IsZero() && now.Sub(seen) > g.env.t.transferContact {
			why = fmt.Sprintf("it has not answered for %s (a transfer would hold the group's writes until its call times out)", now.Sub(seen).Round(time.Millisecond))
		}
		if why != "" {
			refused = append(refused, fmt.Sprintf("%s: %s", s.ID, why))
			continue
		}
		if !found || matched > best {
			to, found, best = s, true, matched
		}
	}
	if !found {
		if len(refused) > 0 {
			return transferRefused(g.name, "%v", refused)
		}
		return transferRefused(g.name, "no other voter to take it")
	}
	g.transfers.begin(term, to.ID)
	_, err := g.await(ctx, what, func() raft.Future { return g.raft.LeadershipTransferToServer(to.ID, to.Address) })
	g.transfers.end(term, to.ID, cleanTransferEnd(err), g.raft.LastIndex(), time.Now())
	if err != nil {
		return fmt.Errorf("%s: %s to %s: %w", g.name, what, to.ID, err)
	}
	return nil
}
