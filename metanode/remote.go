package metanode

import (
	"fmt"
	"slices"
)

// Groups this node does not host. Any node serves any request: a write or
// a named call for such a group is forwarded to its leader (found from
// leader hints and the directory's replica set), and a read answers
// RedirectError, which names a node that hosts the group (the public
// servers forward the request there).

// RedirectError says a request is better served by another node, and
// which: this node hosts no replica of the group, or its replica has not
// even heard that the read's index is committed (an idle group's followers
// learn the commit index only every CommitTimeout). Its reason is
// NOT_LEADER with that node as the hint (NO_LEADER when none is known):
// definitely not applied, to be sent there.
type RedirectError struct {
	Group      string
	LeaderID   string
	LeaderAddr string
	// Why says why, for the message.
	Why string
}

func (e *RedirectError) Error() string {
	if e.LeaderAddr == "" {
		return fmt.Sprintf("metanode: %s %s, and no other replica is known", e.Group, e.Why)
	}
	return fmt.Sprintf("metanode: %s %s; %s at %s serves it", e.Group, e.Why, e.LeaderID, e.LeaderAddr)
}

// Reason is NOT_LEADER (a redirect), or NO_LEADER when no host is known.
func (e *RedirectError) Reason() string { return leaderReason(e.LeaderAddr != "") }

// Metadata carries the host as the leader hint.
func (e *RedirectError) Metadata() map[string]string {
	return leaderHint(e.Group, e.LeaderID, e.LeaderAddr)
}

// Is makes errors.Is(err, ErrNotLeader) true.
func (e *RedirectError) Is(target error) bool { return target == ErrNotLeader }

// ForwardTo names the node to send the request to ("" when none is known).
func (e *RedirectError) ForwardTo() string { return e.LeaderAddr }

// notHosted is the error for a group this node does not host, naming the
// best host it knows: the leader hint, else the first replica.
func (n *Node) notHosted(group string) error {
	cands := n.candidates(group)
	const why = "is not hosted here"
	if len(cands) == 0 {
		return &RedirectError{Group: group, Why: why}
	}
	return &RedirectError{Group: group, LeaderID: cands[0].id, LeaderAddr: cands[0].addr, Why: why}
}

type candidate struct{ id, addr string }

// candidates lists the nodes to try for a group: the leader hint first,
// then the directory's replicas (or, before the directory knows the
// group, every address this node knows).
func (n *Node) candidates(group string) []candidate {
	d := n.Directory()
	var out []candidate
	add := func(c candidate) {
		if c.addr == "" || c.id == n.id || c.addr == n.addr ||
			slices.ContainsFunc(out, func(o candidate) bool { return o.addr == c.addr }) {
			return
		}
		out = append(out, c)
	}
	if h, ok := n.hints.Load(group); ok {
		add(h.(candidate))
	}
	if rec := d.Group(group); rec != nil {
		for _, r := range rec.Replicas {
			add(candidate{r.Node, memberAddr(d, r.Node)})
		}
		return out
	}
	for _, addr := range n.knownAddrs() {
		add(candidate{addr: addr})
	}
	return out
}

// LeaderOf returns the group's leader as this node knows it: raft's when
// it hosts the group, else who last said it leads it ("" when unknown).
func (n *Node) LeaderOf(group string) string {
	if g := n.hosted(group); g != nil {
		id, _ := g.leader()
		return id
	}
	if v, ok := n.hints.Load(group); ok {
		return v.(candidate).id
	}
	return ""
}

// noteLeader records who leads a group, as a node said.
func (n *Node) noteLeader(group string, c candidate) {
	if c.addr != "" {
		n.hints.Store(group, c)
	}
}

// leaderCandidates lists where a group's leader may be, best first: raft's
// view when this node hosts the group and knows the leader, else the
// hint and the directory's replicas.
func (e *env) leaderCandidates(name string, g *group) []candidate {
	if g != nil {
		if id, addr := g.leader(); id != "" && id != e.id {
			return []candidate{{id, addr}}
		}
	}
	return e.candidates(name)
}
