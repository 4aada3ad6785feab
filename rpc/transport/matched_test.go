package transport

import (
	"testing"

	"github.com/hashicorp/raft"
)

// Only successful appends that checked the log count as progress, per
// term: heartbeats and refusals do not, and a new term starts afresh.
func TestMatchedCountsOnlyAcceptedAppendsOfTheTerm(t *testing.T) {
	tr := &Transport{}
	const f = raft.ServerAddress("f:1")
	ok := &raft.AppendEntriesResponse{Success: true}
	refused := &raft.AppendEntriesResponse{Success: false}
	entries := func(term, prev uint64, idx ...uint64) *raft.AppendEntriesRequest {
		r := &raft.AppendEntriesRequest{RPCHeader: raft.RPCHeader{Addr: []byte("l:1")}, Term: term, PrevLogEntry: prev, PrevLogTerm: term, LeaderCommitIndex: prev}
		for _, i := range idx {
			r.Entries = append(r.Entries, &raft.Log{Index: i, Term: term})
		}
		return r
	}
	heartbeat := &raft.AppendEntriesRequest{RPCHeader: raft.RPCHeader{Addr: []byte("l:1")}, Term: 3}
	if _, seen := tr.Matched(f, 3); seen {
		t.Fatal("progress seen before any append")
	}
	tr.matched.observe(f, heartbeat, ok)
	if _, seen := tr.Matched(f, 3); seen {
		t.Fatal("a heartbeat counted as progress")
	}
	tr.matched.observe(f, entries(3, 10, 11, 12), refused)
	if _, seen := tr.Matched(f, 3); seen {
		t.Fatal("a refused append counted as progress")
	}
	tr.matched.observe(f, entries(3, 10, 11, 12), ok)
	tr.matched.observe(f, entries(3, 9), ok) // an older answer arriving late
	if got, seen := tr.Matched(f, 3); !seen || got != 12 {
		t.Fatalf("matched %d (%v), want 12", got, seen)
	}
	tr.matched.observe(f, entries(3, 12), ok) // a probe without entries
	if got, _ := tr.Matched(f, 3); got != 12 {
		t.Fatalf("matched %d after a probe at 12, want 12", got)
	}
	if _, seen := tr.Matched(f, 4); seen {
		t.Fatal("progress of term 3 counted in term 4")
	}
	tr.matched.observe(f, entries(4, 5, 6), ok)
	if got, seen := tr.Matched(f, 4); !seen || got != 6 {
		t.Fatalf("matched %d (%v) in term 4, want 6", got, seen)
	}
}
