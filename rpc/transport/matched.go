package transport

import (
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Replication progress as the leader observed it. A follower's answer to
// an append that carried entries (or checked the previous one) and
// succeeded proves its log matches this leader's up to the request's last
// entry; the highest such index per follower, with the term it was seen
// in, is what a leader may promote a non-voter on, rather than on what the
// follower reports of itself (which anyone reaching the port could claim).
// Heartbeats prove nothing of the log and are not counted there; every
// answer (heartbeats included) is counted as contact: the target answers
// this node's raft calls (LastContact).

type matchRecord struct {
	term, index uint64
}

type matchTable struct {
	mu   sync.Mutex
	by   map[raft.ServerAddress]matchRecord
	seen map[raft.ServerAddress]time.Time // last answer from each target
}

// observe records a successful append to target.
func (m *matchTable) observe(target raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.seen == nil {
		m.seen = map[raft.ServerAddress]time.Time{}
	}
	m.seen[target] = time.Now()
	if !resp.Success || isHeartbeat(args) {
		return
	}
	last := args.PrevLogEntry
	if n := len(args.Entries); n > 0 {
		last = args.Entries[n-1].Index
	}
	if m.by == nil {
		m.by = map[raft.ServerAddress]matchRecord{}
	}
	if r := m.by[target]; args.Term > r.term || (args.Term == r.term && last > r.index) {
		m.by[target] = matchRecord{term: args.Term, index: last}
	}
}

// Matched returns the highest log index target was seen to hold in
// agreement with this node as leader in term, and whether any was seen in
// that term.
func (t *Transport) Matched(target raft.ServerAddress, term uint64) (uint64, bool) {
	t.matched.mu.Lock()
	defer t.matched.mu.Unlock()
	r, ok := t.matched.by[target]
	if !ok || r.term != term {
		return 0, false
	}
	return r.index, true
}

// LastContact returns when target last answered an append of this node's
// raft (zero: never).
func (t *Transport) LastContact(target raft.ServerAddress) time.Time {
	t.matched.mu.Lock()
	defer t.matched.mu.Unlock()
	return t.matched.seen[target]
}
