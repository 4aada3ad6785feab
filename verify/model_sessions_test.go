package verify

import (
	"bytes"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

func TestSessionsOnKnownHistories(t *testing.T) {
	tests := []struct {
		file    string
		want    Verdict
		failing []string // nil: not compared
		details string   // a part of the details, when set
	}{
		{"sessions-good.jsonl", Valid, nil, ""},
		// Gets are left to the per-client model.
		{"sessions-lost.jsonl", Invalid, []string{"client s1"}, ""},
		// Per client the torn list is linearizable; only the data-group
		// model, which keeps the batch whole, sees half of it.
		{"sessions-torn.jsonl", Invalid, []string{"group data-1"}, ""},
		{"sessions-delete-flag.jsonl", Invalid, []string{"client s2", "group data-0"}, ""},
		{"sessions-failed-visible.jsonl", Invalid, []string{"client s2"}, ""},
		{"sessions-bad-revision.jsonl", Invalid, nil, "mod_revision 9, its put reported 4"},
		{"sessions-no-final.jsonl", Invalid, []string{"final reads"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			ops, err := LoadBrokerOps(filepath.Join("testdata", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			c := CheckSessions(ops, DataRoute{Count: 2}, 10*time.Second)
			r := c.Result
			if r.Verdict != tt.want {
				t.Fatalf("got %s, want %s (failing %v: %s)", r.Verdict, tt.want, r.Failing, r.Details)
			}
			if tt.failing != nil && !slices.Equal(r.Failing, tt.failing) {
				t.Errorf("failing: got %v, want %v (%s)", r.Failing, tt.failing, r.Details)
			}
			if !strings.Contains(r.Details, tt.details) {
				t.Errorf("details: got %q, want it to mention %q", r.Details, tt.details)
			}
			var html bytes.Buffer
			if err := c.Visualize(&html); err != nil || html.Len() == 0 {
				t.Errorf("visualize: got %d bytes, %v; want a page", html.Len(), err)
			}
		})
	}
}

// A checker that runs out of time must say unknown, never valid.
func TestSessionsTimeoutIsUnknown(t *testing.T) {
	// Many concurrent unknown puts, each observed, on one client id: a
	// search space porcupine cannot finish in a nanosecond.
	var ops []BrokerOp
	for i := range 40 {
		v := SessionValue{ClientID: "s1", State: string(rune('a'+i%26)) + strings.Repeat("x", i/26), Expiry: 3600}
		ops = append(ops, BrokerOp{Index: len(ops), Client: i, Process: i, Kind: OpSessionPut, Input: BrokerInput{Sessions: []SessionValue{v}},
			Call: int64(i), Return: int64(i) + 1, Outcome: OutcomeUnknown})
	}
	for i := range 40 {
		v := SessionValue{ClientID: "s1", State: string(rune('a'+(39-i)%26)) + strings.Repeat("x", (39-i)/26), Expiry: 3600}
		ops = append(ops, BrokerOp{Index: len(ops), Client: 100 + i, Process: 100 + i, Kind: OpSessionGet, Input: BrokerInput{ClientID: "s1"},
			Output: &BrokerOutput{Session: &v}, Call: 100, Return: 200, Outcome: OutcomeOK})
	}
	r := CheckSessions(ops, DataRoute{Count: 2}, time.Nanosecond).Result
	if r.Verdict == Valid {
		t.Fatalf("got valid within a nanosecond, want unknown or invalid (%s)", r.Details)
	}
}

func TestBrokerOpsRoundTrip(t *testing.T) {
	ops, again := roundTrip(t, "sessions-good.jsonl", LoadBrokerOps, WriteBrokerOps, ReadBrokerOps)
	if len(again) != len(ops) || again[3].Output.Deleted[0] != ops[3].Output.Deleted[0] || again[5].Outcome != OutcomeUnknown {
		t.Fatalf("got %d ops back (%+v), want %d equal ones", len(again), again, len(ops))
	}
	if _, err := ReadBrokerOps(strings.NewReader(`{"kind":"session-teleport","outcome":"ok","output":{}}`)); err == nil {
		t.Fatal("got no error for an unknown kind, want one")
	}
}

// A partition that porcupine cannot decide within the check timeout while
// the machine is loaded gets one more check, alone, and that check's
// verdict (valid or invalid) is the one used; only a partition undecided
// by it too is unknown. Stand-ins for porcupine's clock say unknown to
// the first passes and to any budget below the last pass's.
func TestUndecidedPartitionsGetALastPassAlone(t *testing.T) {
	const timeout = time.Second
	real, all := checkOne, checkAll
	t.Cleanup(func() { checkOne, checkAll = real, all })
	checkAll = func(porcupine.Model, []porcupine.Operation, time.Duration) (porcupine.CheckResult, porcupine.LinearizationInfo) {
		return porcupine.Unknown, porcupine.LinearizationInfo{}
	}
	slow := func(m porcupine.Model, ops []porcupine.Operation, budget time.Duration) Verdict {
		if budget <= timeout {
			return Unknown
		}
		return real(m, ops, 0)
	}
	never := func(porcupine.Model, []porcupine.Operation, time.Duration) Verdict { return Unknown }
	tests := []struct {
		file  string
		check func(porcupine.Model, []porcupine.Operation, time.Duration) Verdict
		want  Verdict
	}{
		{"sessions-good.jsonl", slow, Valid},
		{"sessions-lost.jsonl", slow, Invalid},
		{"sessions-good.jsonl", never, Unknown},
		{"kv-good.jsonl", slow, Valid},
		{"kv-lost-write.jsonl", slow, Invalid},
		{"kv-good.jsonl", never, Unknown},
	}
	for _, tt := range tests {
		checkOne = tt.check
		var r CheckResult
		if strings.HasPrefix(tt.file, "sessions-") {
			ops, err := LoadBrokerOps(filepath.Join("testdata", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			r = CheckSessions(ops, DataRoute{Count: 2}, timeout).Result
		} else {
			r = CheckLinearizability(loadKV(t, tt.file), timeout).Results[0]
		}
		if r.Verdict != tt.want {
			t.Errorf("%s: got %s, want %s (%s)", tt.file, r.Verdict, tt.want, r.Details)
		}
		if tt.want == Unknown && !strings.Contains(r.Details, "a last check alone within 4s for all of them") {
			t.Errorf("%s: details %q do not say the last budget", tt.file, r.Details)
		}
	}
}

// The last pass has one budget for all the partitions it checks, not one
// each: a stand-in that spends every budget it is given is called once.
// It checks the smallest partition first, and skips the partitions of a
// checker that another partition already proved invalid: that checker's
// verdict cannot change.
func TestLastPassIsBoundedAndSkipsWhatIsSettled(t *testing.T) {
	real := checkOne
	t.Cleanup(func() { checkOne = real })
	var checked []int
	checkOne = func(_ porcupine.Model, ops []porcupine.Operation, budget time.Duration) Verdict {
		checked = append(checked, len(ops))
		time.Sleep(budget)
		return Unknown
	}
	part := func(checker string, n int) partition {
		return partition{Checker: checker, Ops: make([]porcupine.Operation, n)}
	}
	parts := []partition{part(CheckerKV, 3), part(CheckerKV, 2), part(CheckerKV, 4)}
	verdicts := []Verdict{Unknown, Unknown, Unknown}
	lastPass(model(), parts, verdicts, []int{0, 1, 2}, 10*time.Millisecond, guardHeap(0))
	if !slices.Equal(checked, []int{2}) {
		t.Fatalf("checked partitions of sizes %v, want only the smallest, [2], within one budget", checked)
	}

	checked = nil
	parts = append(parts, part(CheckerOffsets, 5), part(CheckerKV, 1))
	verdicts = []Verdict{Unknown, Unknown, Unknown, Unknown, Invalid}
	lastPass(model(), parts, verdicts, []int{0, 1, 2, 3}, 10*time.Millisecond, guardHeap(0))
	if !slices.Equal(checked, []int{5}) {
		t.Fatalf("checked partitions of sizes %v, want only the offsets one, [5] (kv is already invalid)", checked)
	}
}

func loadKV(t *testing.T, file string) []Op {
	t.Helper()
	ops, err := LoadHistory(filepath.Join("testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	return ops
}
