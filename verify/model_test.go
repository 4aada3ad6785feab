package verify

import (
	"bytes"
	"io"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"
)

// verdicts maps checker names to the verdict a history must get.
type verdicts map[string]Verdict

func TestModelsOnKnownHistories(t *testing.T) {
	tests := []struct {
		file    string
		want    verdicts
		failing map[string][]string // checker → failing partitions
	}{
		{"kv-good.jsonl", verdicts{CheckerKV: Valid}, nil},
		{"kv-stale-read.jsonl", verdicts{CheckerKV: Invalid}, map[string][]string{CheckerKV: {"k/a"}}},
		{"kv-lost-write.jsonl", verdicts{CheckerKV: Invalid}, map[string][]string{CheckerKV: {"k/a"}}},
		{"kv-cas-anomaly.jsonl", verdicts{CheckerKV: Invalid}, nil},
		{"kv-cas-wrong-current.jsonl", verdicts{CheckerKV: Invalid}, nil},
		{"kv-unknown-visible.jsonl", verdicts{CheckerKV: Valid}, nil},
		{"kv-unknown-never.jsonl", verdicts{CheckerKV: Valid}, nil},
		{"kv-unknown-chain.jsonl", verdicts{CheckerKV: Valid}, nil},
		{"kv-unknown-chain-bad.jsonl", verdicts{CheckerKV: Invalid}, nil},
		{"kv-failed-visible.jsonl", verdicts{CheckerKV: Invalid}, nil},
		{"kv-list-missing.jsonl", verdicts{CheckerKV: Invalid}, map[string][]string{CheckerKV: {"k/a"}}},
		{"kv-list-paging.jsonl", verdicts{CheckerKV: Valid}, nil},
		{"kv-list-page-skips.jsonl", verdicts{CheckerKV: Invalid}, map[string][]string{CheckerKV: {"k/a"}}},
		{"kv-list-malformed.jsonl", verdicts{CheckerKV: Invalid}, nil},
		{"kv-delete-phantom.jsonl", verdicts{CheckerKV: Invalid}, nil},
		{"kv-multi-good.jsonl", verdicts{CheckerKV: Valid}, nil},
		{"kv-multi-stale-get.jsonl", verdicts{CheckerKV: Invalid}, map[string][]string{CheckerKV: {"k/a,k/b"}}},
		{"kv-multi-get-stale.jsonl", verdicts{CheckerKV: Invalid}, map[string][]string{CheckerKV: {"k/x"}}},
		{"kv-multi-torn.jsonl", verdicts{CheckerKV: Invalid}, map[string][]string{CheckerKV: {"k/a,k/b"}}},
		{"kv-multi-txn-wrong.jsonl", verdicts{CheckerKV: Invalid}, map[string][]string{CheckerKV: {"k/a,k/b"}}},
		{"kv-multi-parts.jsonl", verdicts{CheckerKV: Valid}, nil},
		{"kv-multi-failed-part-visible.jsonl", verdicts{CheckerKV: Invalid}, map[string][]string{CheckerKV: {"k/d,k/e"}}},
		{"kv-multi-get-torn.jsonl", verdicts{CheckerKV: Invalid}, map[string][]string{CheckerKV: {"k/a,k/b"}}},
		{"kv-multi-get-snapshot.jsonl", verdicts{CheckerKV: Valid}, nil},
		{"kv-multi-txn-weak.jsonl", verdicts{CheckerKV: Valid}, nil},
		{"kv-multi-unknown-unseen.jsonl", verdicts{CheckerKV: Valid}, nil},
		{"kv-multi-unknown-seen.jsonl", verdicts{CheckerKV: Valid}, nil},
		{"kv-multi-txn-failure-branch.jsonl", verdicts{CheckerKV: Valid}, nil},
		{"kv-multi-weak-before.jsonl", verdicts{CheckerKV: Valid}, nil},
		{"kv-unknown-weak.jsonl", verdicts{CheckerKV: Valid}, nil},
		{"off-good.jsonl", verdicts{CheckerOffsets: Valid, CheckerOffsetsGroup: Valid}, nil},
		{"off-backwards.jsonl", verdicts{CheckerOffsets: Invalid, CheckerOffsetsGroup: Invalid},
			map[string][]string{CheckerOffsets: {"g/t/0"}, CheckerOffsetsGroup: {"g"}}},
		{"off-delete-partial.jsonl", verdicts{CheckerOffsets: Invalid, CheckerOffsetsGroup: Invalid},
			map[string][]string{CheckerOffsets: {"g/t/1"}}},
		{"off-delete-torn.jsonl", verdicts{CheckerOffsets: Valid, CheckerOffsetsGroup: Invalid},
			map[string][]string{CheckerOffsetsGroup: {"g"}}},
		{"off-commit-torn.jsonl", verdicts{CheckerOffsets: Valid, CheckerOffsetsGroup: Invalid}, nil},
		{"off-unknown-visible.jsonl", verdicts{CheckerOffsets: Valid, CheckerOffsetsGroup: Valid}, nil},
		{"off-failed-visible.jsonl", verdicts{CheckerOffsets: Invalid, CheckerOffsetsGroup: Invalid}, nil},
		{"off-delete-count.jsonl", verdicts{CheckerOffsets: Valid, CheckerOffsetsGroup: Invalid}, nil},
		{"off-fetch-malformed.jsonl", verdicts{CheckerOffsets: Invalid}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			ops, err := LoadHistory(filepath.Join("testdata", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			lin := CheckLinearizability(ops, 10*time.Second)
			for _, r := range lin.Results {
				want, ok := tt.want[r.Checker]
				if !ok {
					want = Valid // a checker with nothing to check passes
				}
				if r.Verdict != want {
					t.Errorf("%s: got %s, want %s (failing %v, details %q)", r.Checker, r.Verdict, want, r.Failing, r.Details)
				}
				if f, ok := tt.failing[r.Checker]; ok && !slices.Equal(r.Failing, f) {
					t.Errorf("%s failing: got %v, want %v", r.Checker, r.Failing, f)
				}
			}
		})
	}
}

// A saved history loads back equal and re-checks to the same verdicts.
func TestHistoryRoundTripRechecksIdentically(t *testing.T) {
	for _, file := range []string{"kv-good.jsonl", "kv-stale-read.jsonl", "off-delete-torn.jsonl", "kv-unknown-visible.jsonl"} {
		t.Run(file, func(t *testing.T) {
			ops, back := roundTrip(t, file, LoadHistory, WriteHistory, ReadHistory)
			if !reflect.DeepEqual(back, ops) {
				t.Fatalf("round trip changed the history:\ngot  %+v\nwant %+v", back, ops)
			}
			a := CheckLinearizability(ops, 10*time.Second).Results
			b := CheckLinearizability(back, 10*time.Second).Results
			for i := range a {
				a[i].Elapsed, b[i].Elapsed = 0, 0
			}
			if !reflect.DeepEqual(a, b) {
				t.Fatalf("re-check differs: got %+v, want %+v", b, a)
			}
		})
	}
}

// roundTrip loads testdata/file with load, writes it with write and reads
// it back with read: the ops loaded and those read back.
func roundTrip[T any](t *testing.T, file string, load func(string) ([]T, error), write func(io.Writer, []T) error,
	read func(io.Reader) ([]T, error)) (ops, back []T) {
	t.Helper()
	ops, err := load(filepath.Join("testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := write(&buf, ops); err != nil {
		t.Fatal(err)
	}
	back, err = read(&buf)
	if err != nil {
		t.Fatal(err)
	}
	return ops, back
}

func TestReadHistoryRejectsBadLines(t *testing.T) {
	tests := []struct{ name, text string }{
		{"not json", "{nope\n"},
		{"unknown kind", `{"kind":"frobnicate","outcome":"ok","output":{}}` + "\n"},
		{"ok without output", `{"kind":"get","outcome":"ok"}` + "\n"},
		{"bad outcome", `{"kind":"get","outcome":"maybe"}` + "\n"},
		{"return before call", `{"kind":"get","outcome":"fail","call":10,"return":5}` + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ReadHistory(bytes.NewBufferString(tt.text))
			if err == nil {
				t.Fatal("got no error, want ErrHistory")
			}
		})
	}
}

// pathological builds a history porcupine cannot decide quickly: many
// concurrent puts of distinct values and reads that force an exhaustive
// search over their orders before failing.
func pathological(n int) []Op {
	var ops []Op
	for i := range n {
		ops = append(ops, Op{Index: len(ops), Client: i, Process: i, Kind: OpPut,
			Input: Input{Key: "k", Value: string(rune('A' + i))}, Output: &Output{},
			Call: 0, Return: 1000, Outcome: OutcomeOK})
	}
	// Each read sees a value, the last one sees a value nobody wrote; every
	// order of the puts has to be tried before porcupine can say no.
	for i := range n {
		ops = append(ops, Op{Index: len(ops), Client: n + i, Process: n + i, Kind: OpGet,
			Input: Input{Key: "k"}, Output: &Output{KV: &KV{Key: "k", Value: string(rune('A' + i))}},
			Call: 0, Return: 1000, Outcome: OutcomeOK})
	}
	ops = append(ops, Op{Index: len(ops), Client: 2 * n, Process: 2 * n, Kind: OpGet,
		Input: Input{Key: "k"}, Output: &Output{KV: &KV{Key: "k", Value: "nobody"}},
		Call: 0, Return: 1000, Outcome: OutcomeOK})
	return ops
}

func TestCheckerTimeoutIsNotAPass(t *testing.T) {
	lin := CheckLinearizability(pathological(24), 50*time.Millisecond)
	r := lin.Results[0]
	if r.Checker != CheckerKV {
		t.Fatalf("got checker %s first, want %s", r.Checker, CheckerKV)
	}
	if r.Verdict != Unknown {
		t.Fatalf("got %s on a history the checker cannot finish in time, want unknown", r.Verdict)
	}
	if !slices.Equal(r.Undecided, []string{"k"}) {
		t.Fatalf("undecided: got %v, want [k]", r.Undecided)
	}
	// The same shape, small enough to finish, is illegal: unknown above
	// was the timeout, not a mistake in the history.
	if got := CheckLinearizability(pathological(3), time.Minute).Results[0].Verdict; got != Invalid {
		t.Fatalf("small pathological history: got %s, want invalid", got)
	}
}

func TestVerdictJSON(t *testing.T) {
	for _, v := range []Verdict{Valid, Invalid, Unknown} {
		b, err := v.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		var back Verdict
		if err := back.UnmarshalJSON(b); err != nil {
			t.Fatal(err)
		}
		if back != v {
			t.Errorf("got %s back from %s, want %s", back, b, v)
		}
	}
	if got := worst(Valid, Unknown, Valid); got != Unknown {
		t.Errorf("worst(valid, unknown): got %s, want unknown", got)
	}
	if got := worst(Unknown, Invalid); got != Invalid {
		t.Errorf("worst(unknown, invalid): got %s, want invalid", got)
	}
}

// Unknown writes that nobody saw are pruned (an unknown multi-put's
// puts, a txn without failure branch that only puts, a single put),
// unless a delete could be their effect, or an op that sees a key only in
// part (a failed txn, an unknown txn with a failure branch, a keys-only
// list page, a delete without prev_kv) returned after they were called.
func TestPrune(t *testing.T) {
	for _, tt := range []struct {
		file      string
		partition string
		pruned    int
	}{
		{"kv-multi-unknown-unseen.jsonl", "k/a,k/b", 3},
		{"kv-multi-txn-weak.jsonl", "k/a,k/b", 0},
		{"kv-multi-txn-failure-branch.jsonl", "k/a,k/b,k/c", 0},
		{"kv-multi-weak-before.jsonl", "k/a,k/b", 1},
		{"kv-unknown-weak.jsonl", "k/x", 1},
		{"kv-unknown-weak.jsonl", "k/y", 0},
	} {
		t.Run(tt.file+"/"+tt.partition, func(t *testing.T) {
			ops, err := LoadHistory(filepath.Join("testdata", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			parts, problems := kvPartitions(ops)
			i := slices.IndexFunc(parts, func(p partition) bool { return p.Name == tt.partition })
			if len(problems) > 0 || i < 0 {
				t.Fatalf("got partitions %+v, problems %v; want %s among them", parts, problems, tt.partition)
			}
			if parts[i].Pruned != tt.pruned {
				t.Fatalf("pruned %d, want %d", parts[i].Pruned, tt.pruned)
			}
		})
	}
}
