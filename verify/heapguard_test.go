package verify

import (
	"fmt"
	"runtime"
	"runtime/metrics"
	"strings"
	"testing"
	"time"
)

// A history porcupine cannot decide without remembering exponentially many
// states (n puts of unknown outcome, each observed by a read, then a read
// of a value nobody wrote) is stopped at the heap budget and reported
// Unknown, naming the budget, long before its time budget. Without the
// guard the search would grow the heap until the timeout (minutes, many
// GiB); with it, the test ends once the heap is 128 MiB above where it
// started.
func TestCheckStopsAtTheHeapBudget(t *testing.T) {
	const writes = 30
	var ops []Op
	add := func(op Op) { op.Index = len(ops); ops = append(ops, op) }
	for i := range writes {
		add(Op{Client: i, Process: i, Kind: OpPut, Input: Input{Key: "k", Value: fmt.Sprintf("v%d", i)},
			Call: int64(i), Return: int64(1 << 40), Outcome: OutcomeUnknown})
	}
	read := func(v string, at int64) {
		add(Op{Client: writes, Process: writes, Kind: OpGet, Input: Input{Key: "k"},
			Output: &Output{KV: &KV{Key: "k", Value: v}}, Call: at, Return: at + 1, Outcome: OutcomeOK})
	}
	for i := range writes {
		read(fmt.Sprintf("v%d", i), int64(100+10*i))
	}
	read("never-written", 10_000)

	runtime.GC()
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(sample)
	saved := heapBudget
	t.Cleanup(func() { heapBudget = saved })
	heapBudget = sample[0].Value.Uint64() + 128<<20

	start := time.Now()
	r := CheckLinearizability(ops, 2*time.Minute).Results[0]
	t.Logf("verdict %s after %s: %s", r.Verdict, time.Since(start).Round(time.Millisecond), r.Details)
	if r.Verdict != Unknown {
		t.Fatalf("got verdict %s, want %s (%s)", r.Verdict, Unknown, r.Details)
	}
	if !strings.Contains(r.Details, "stopped when the process's heap passed") {
		t.Fatalf("details %q do not say the search was stopped at the heap budget", r.Details)
	}
}

// The guard never makes a decidable history's verdict change: a small
// valid history and a small invalid one keep theirs under a budget the
// heap is far below.
func TestHeapGuardKeepsDecidedVerdicts(t *testing.T) {
	for file, want := range map[string]Verdict{"kv-good.jsonl": Valid, "kv-lost-write.jsonl": Invalid} {
		if r := CheckLinearizability(loadKV(t, file), time.Minute).Results[0]; r.Verdict != want {
			t.Errorf("%s: got %s, want %s (%s)", file, r.Verdict, want, r.Details)
		}
	}
}
