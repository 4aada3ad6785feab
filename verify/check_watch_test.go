package verify

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// watchCase is a small KV history (one data group) and one watcher's
// records that fit it: puts and a delete acknowledged at revisions 5-7,
// an unknown put seen by a read at revision 8, final reads, a fence at
// revision 10.
func watchCase() ([]Op, []WatchRecord) {
	ops := []Op{
		{Index: 0, Client: 0, Kind: OpPut, Input: Input{Key: "k/a", Value: "v1"}, Output: &Output{Revision: 5}, Call: 10, Return: 20, Outcome: OutcomeOK},
		{Index: 1, Client: 1, Kind: OpPut, Input: Input{Key: "k/b", Value: "v2"}, Output: &Output{Revision: 6}, Call: 21, Return: 30, Outcome: OutcomeOK},
		{Index: 2, Client: 0, Kind: OpDelete, Input: Input{Key: "k/a"}, Output: &Output{Revision: 7, Deleted: true}, Call: 31, Return: 40, Outcome: OutcomeOK},
		{Index: 3, Client: 1, Kind: OpPut, Input: Input{Key: "k/b", Value: "v3"}, Call: 50, Return: 55, Outcome: OutcomeUnknown},
		{Index: 4, Client: 2, Kind: OpGet, Input: Input{Key: "k/b"}, Output: &Output{Revision: 8, KV: &KV{Key: "k/b", Value: "v3", ModRevision: 8}}, Call: 70, Return: 75, Outcome: OutcomeOK},
		{Index: 5, Client: 3, Kind: OpGet, Input: Input{Key: "k/a"}, Output: &Output{Revision: 9}, Call: 200, Return: 210, Outcome: OutcomeOK, Final: true},
		{Index: 6, Client: 3, Kind: OpGet, Input: Input{Key: "k/b"}, Output: &Output{Revision: 9, KV: &KV{Key: "k/b", Value: "v3", ModRevision: 8}}, Call: 211, Return: 220, Outcome: OutcomeOK, Final: true},
		{Index: 7, Client: 3, Kind: OpPut, Input: Input{Key: "k/fence-data-0-0", Value: "f1"}, Output: &Output{Revision: 10}, Call: 230, Return: 240, Outcome: OutcomeOK, Final: true},
	}
	put := func(rev uint64, key, value string) WatchEvent {
		return WatchEvent{Group: "data-0", Revision: rev, Type: "put", Key: key, Value: value, ModRevision: rev}
	}
	resp := func(at int64, rev uint64, evs ...WatchEvent) WatchRecord {
		return WatchRecord{Watcher: 0, Type: WatchResponse, Time: at, Revisions: map[string]uint64{"data-0": rev}, Events: evs}
	}
	recs := []WatchRecord{
		{Watcher: 0, Type: WatchStart, Time: 0, Name: "kv-0", Space: "kv", Prefix: "k/", KeyPrefix: "k/"},
		{Watcher: 0, Type: WatchResponse, Time: 1, Revisions: map[string]uint64{"data-0": 4}, Progress: true},
		resp(25, 5, put(5, "k/a", "v1")),
		resp(35, 6, put(6, "k/b", "v2")),
		resp(45, 7, WatchEvent{Group: "data-0", Revision: 7, Type: "delete", Key: "k/a", ModRevision: 7}),
		resp(65, 8, put(8, "k/b", "v3")),
		{Watcher: 0, Type: WatchResponse, Time: 80, Revisions: map[string]uint64{"data-0": 8}, Progress: true}, // a resume
		resp(245, 10, put(10, "k/fence-data-0-0", "f1")),
		{Watcher: 0, Type: WatchEnd, Time: 300, Err: "context canceled", Stopped: true},
	}
	return ops, recs
}

func TestWatchCheckerOnKnownHistories(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(ops []Op, recs []WatchRecord) ([]Op, []WatchRecord)
		want   Verdict
		detail string
	}{
		{"good", nil, Valid, "1 resumes"},
		{"a gap", func(ops []Op, recs []WatchRecord) ([]Op, []WatchRecord) {
			recs[3].Events = nil
			return ops, recs
		}, Invalid, "gap at data-0@6: want put k/b=v2"},
		{"a duplicate event", func(ops []Op, recs []WatchRecord) ([]Op, []WatchRecord) {
			recs[4].Events = append(slices.Clone(recs[3].Events), recs[4].Events...)
			return ops, recs
		}, Invalid, "data-0@6 put k/b=v2 after revisions[data-0]=6 had been announced"},
		{"the same event twice in one response", func(ops []Op, recs []WatchRecord) ([]Op, []WatchRecord) {
			recs[3].Events = append(recs[3].Events, recs[3].Events[0])
			return ops, recs
		}, Invalid, "delivered twice"},
		{"out of order", func(ops []Op, recs []WatchRecord) ([]Op, []WatchRecord) {
			recs[3].Events = []WatchEvent{recs[4].Events[0], recs[3].Events[0]}
			recs[3].Revisions = map[string]uint64{"data-0": 7}
			recs[4].Events = nil
			return ops, recs
		}, Invalid, "out of order"},
		{"an invented value", func(ops []Op, recs []WatchRecord) ([]Op, []WatchRecord) {
			recs[5].Events[0].Value = "zzz"
			return ops, recs
		}, Invalid, "put k/b=zzz: no op of the history wrote it"},
		{"a failed write visible", func(ops []Op, recs []WatchRecord) ([]Op, []WatchRecord) {
			ops[3].Outcome = OutcomeFail
			ops[4].Output.KV = nil
			ops[6].Output.KV = nil
			return ops, recs
		}, Invalid, "op 3 put failed"},
		{"a write delivered before it was sent", func(ops []Op, recs []WatchRecord) ([]Op, []WatchRecord) {
			recs[5].Time = 45
			return ops, recs
		}, Invalid, "was called only after the event arrived"},
		{"an acknowledged write at another revision", func(ops []Op, recs []WatchRecord) ([]Op, []WatchRecord) {
			ops[0].Output.Revision = 4
			return ops, recs
		}, Invalid, "was acknowledged at revision 4"},
		{"a delete nobody asked for", func(ops []Op, recs []WatchRecord) ([]Op, []WatchRecord) {
			ops = slices.Delete(ops, 2, 3)
			return ops, recs
		}, Invalid, "delete k/a: no op of the history wrote it"},
		{"revisions go back", func(ops []Op, recs []WatchRecord) ([]Op, []WatchRecord) {
			recs[6].Revisions = map[string]uint64{"data-0": 3}
			return ops, recs
		}, Invalid, "went back"},
		{"not caught up", func(ops []Op, recs []WatchRecord) ([]Op, []WatchRecord) {
			recs[7].Events = nil
			recs[7].Revisions = map[string]uint64{"data-0": 8}
			return ops, recs
		}, Invalid, "did not catch up"},
		{"a final read contradicts the events", func(ops []Op, recs []WatchRecord) ([]Op, []WatchRecord) {
			// Revision 8 is not proven by anything else, so no gap check
			// fires: only the final state does.
			ops[3].Outcome, ops[4].Output.KV, ops[6].Output.KV = OutcomeUnknown, nil, nil
			return ops, recs
		}, Invalid, "events end in v3, the final read (op 6) saw ∅"},
		{"two responses claim one revision", func(ops []Op, recs []WatchRecord) ([]Op, []WatchRecord) {
			ops[1].Output.Revision = 5
			return ops, recs
		}, Invalid, "claim one revision"},
		{"a watch that gives up", func(ops []Op, recs []WatchRecord) ([]Op, []WatchRecord) {
			out := append([]WatchRecord{}, recs[:4]...)
			out = append(out,
				WatchRecord{Watcher: 0, Type: WatchEnd, Time: 40, Err: `rpc error: code = InvalidArgument desc = start_revisions[data-1]: "data-1" is not a group this watch covers`},
				WatchRecord{Watcher: 0, Type: WatchStart, Time: 60, Name: "kv-0", Space: "kv", Prefix: "k/", KeyPrefix: "k/"},
				WatchRecord{Watcher: 0, Type: WatchResponse, Time: 61, Revisions: map[string]uint64{"data-0": 7}, Progress: true})
			out = append(out, recs[5:]...)
			return ops, out
		}, Invalid, "the client's Watch gave up: rpc error: code = InvalidArgument"},
		{"a restart after COMPACTED checks the rest from there", func(ops []Op, recs []WatchRecord) ([]Op, []WatchRecord) {
			// The first segment ends after revision 6; the second starts
			// at 8: revision 7 is nobody's business.
			out := append([]WatchRecord{}, recs[:4]...)
			out = append(out,
				WatchRecord{Watcher: 0, Type: WatchEnd, Time: 40, Err: "COMPACTED", Compacted: true},
				WatchRecord{Watcher: 0, Type: WatchStart, Time: 60, Name: "kv-0", Space: "kv", Prefix: "k/", KeyPrefix: "k/"},
				WatchRecord{Watcher: 0, Type: WatchResponse, Time: 61, Revisions: map[string]uint64{"data-0": 7}, Progress: true})
			out = append(out, recs[5:]...)
			return ops, out
		}, Valid, "2 segments"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ops, recs := watchCase()
			if tt.mutate != nil {
				ops, recs = tt.mutate(ops, recs)
			}
			r := CheckWatch(recs, ops, nil, DataRoute{Count: 1})
			if r.Verdict != tt.want {
				t.Fatalf("got %s, want %s (failing %v: %s)", r.Verdict, tt.want, r.Failing, r.Details)
			}
			if !strings.Contains(r.Details, tt.detail) {
				t.Fatalf("details: got %q, want it to mention %q", r.Details, tt.detail)
			}
		})
	}
}

// Two watchers that deliver different changes at one revision disagree.
func TestWatchCheckerWatchersDisagree(t *testing.T) {
	ops, recs := watchCase()
	var second []WatchRecord
	for _, r := range recs {
		r.Watcher = 1
		if r.Type == WatchStart {
			r.Name = "kv-1"
		}
		r.Events = slices.Clone(r.Events)
		second = append(second, r)
	}
	// An unknown write of k/c that nobody read: each event alone is
	// explained, but they cannot both be revision 9.
	ops = append(ops, Op{Index: 8, Client: 5, Kind: OpPut, Input: Input{Key: "k/c", Value: "x"}, Call: 60, Return: 61, Outcome: OutcomeUnknown},
		Op{Index: 9, Client: 6, Kind: OpPut, Input: Input{Key: "k/c", Value: "y"}, Call: 60, Return: 61, Outcome: OutcomeUnknown})
	recs[7].Events = append([]WatchEvent{{Group: "data-0", Revision: 9, Type: "put", Key: "k/c", Value: "x", ModRevision: 9}}, recs[7].Events...)
	second[7].Events = append([]WatchEvent{{Group: "data-0", Revision: 9, Type: "put", Key: "k/c", Value: "y", ModRevision: 9}}, second[7].Events...)
	r := CheckWatch(append(recs, second...), ops, nil, DataRoute{Count: 1})
	if r.Verdict != Invalid || !strings.Contains(r.Details, "disagree at data-0@9") {
		t.Fatalf("got %s (%s), want invalid: watchers disagree", r.Verdict, r.Details)
	}
}

func TestWatchRecordsRoundTrip(t *testing.T) {
	_, recs := watchCase()
	path := filepath.Join(t.TempDir(), WatchFile)
	if err := SaveWatchRecords(path, recs); err != nil {
		t.Fatal(err)
	}
	again, err := LoadWatchRecords(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(again) != len(recs) || again[2].Events[0] != recs[2].Events[0] || again[1].Revisions["data-0"] != 4 {
		t.Fatalf("got %+v back, want %+v", again, recs)
	}
}

// A multi-put part and a txn change two keys at one revision each: the
// watcher must deliver both events there, and a failed txn's writes are
// no one's.
func TestWatchCheckerBatchWrites(t *testing.T) {
	batch := func() ([]Op, []WatchRecord) {
		ops := []Op{
			{Index: 0, Client: 0, Kind: OpMultiPut, Input: Input{Puts: []KV{{Key: "k/a", Value: "m1"}, {Key: "k/b", Value: "m2"}}},
				Output: &Output{Parts: []PutPart{{Group: "data-0", Revision: 5, Indexes: []int{0, 1}, Outcome: OutcomeOK}}}, Call: 10, Return: 20, Outcome: OutcomeOK},
			{Index: 1, Client: 0, Kind: OpTxn, Input: Input{Txn: &TxnInput{Compares: []TxnCompare{{Key: "k/a", Value: "m1"}},
				Success: []TxnWrite{{Key: "k/a", Value: "t1"}, {Key: "k/b", Delete: true}}}},
				Output: &Output{Revision: 6, Succeeded: true}, Call: 21, Return: 30, Outcome: OutcomeOK},
			{Index: 2, Client: 1, Kind: OpTxn, Input: Input{Txn: &TxnInput{Compares: []TxnCompare{{Key: "k/a", Value: "zz"}},
				Success: []TxnWrite{{Key: "k/b", Value: "t9"}}}},
				Output: &Output{Revision: 6}, Call: 31, Return: 40, Outcome: OutcomeOK},
			{Index: 3, Client: 1, Kind: OpMultiGet, Input: Input{Keys: []string{"k/a", "k/b"}},
				Output: &Output{Group: "data-0", Revision: 6, KVs: []KV{{Key: "k/a", Value: "t1", ModRevision: 6, Version: 2}, {Key: "k/b"}}},
				Call:   41, Return: 50, Outcome: OutcomeOK},
			{Index: 4, Client: 3, Kind: OpPut, Input: Input{Key: "k/fence-data-0-0", Value: "f1"}, Output: &Output{Revision: 8}, Call: 230, Return: 240, Outcome: OutcomeOK, Final: true},
		}
		ev := func(rev uint64, typ, key, value string) WatchEvent {
			return WatchEvent{Group: "data-0", Revision: rev, Type: typ, Key: key, Value: value, ModRevision: rev}
		}
		resp := func(at int64, rev uint64, evs ...WatchEvent) WatchRecord {
			return WatchRecord{Watcher: 0, Type: WatchResponse, Time: at, Revisions: map[string]uint64{"data-0": rev}, Events: evs}
		}
		recs := []WatchRecord{
			{Watcher: 0, Type: WatchStart, Time: 0, Name: "kv-0", Space: "kv", Prefix: "k/", KeyPrefix: "k/"},
			{Watcher: 0, Type: WatchResponse, Time: 1, Revisions: map[string]uint64{"data-0": 4}, Progress: true},
			resp(25, 5, ev(5, "put", "k/a", "m1"), ev(5, "put", "k/b", "m2")),
			resp(35, 6, ev(6, "put", "k/a", "t1"), ev(6, "delete", "k/b", "")),
			resp(45, 7),
			resp(245, 8, ev(8, "put", "k/fence-data-0-0", "f1")),
			{Watcher: 0, Type: WatchEnd, Time: 300, Err: "context canceled", Stopped: true},
		}
		return ops, recs
	}
	tests := []struct {
		name   string
		mutate func(ops []Op, recs []WatchRecord)
		want   Verdict
		detail string
	}{
		{"good", func([]Op, []WatchRecord) {}, Valid, "4 proven changes"},
		{"half a multi-put", func(_ []Op, recs []WatchRecord) { recs[2].Events = recs[2].Events[:1] }, Invalid, "gap at data-0@5: want put k/b=m2"},
		{"a failed txn's write delivered", func(_ []Op, recs []WatchRecord) {
			recs[4].Events = []WatchEvent{{Group: "data-0", Revision: 7, Type: "put", Key: "k/b", Value: "t9", ModRevision: 7}}
		}, Invalid, "put k/b=t9: no op of the history wrote it"},
		{"two batches claim one revision", func(ops []Op, _ []WatchRecord) { ops[1].Output.Revision = 5 }, Invalid, "claim one revision"},
		{"two batches of one component claim one revision", func(ops []Op, _ []WatchRecord) {
			// The txn puts k/c instead, at the multi-put's revision: k/a,
			// k/b and k/c are one component, but two ops.
			ops[1].Input.Txn.Success = []TxnWrite{{Key: "k/c", Value: "t1"}}
			ops[1].Output.Revision = 5
		}, Invalid, "put k/a=m1 (op 0 multi-put) and put k/c=t1 (op 1 txn) claim one revision"},
		{"an unknown multi-put a multi-get saw, half delivered", func(ops []Op, recs []WatchRecord) {
			// The multi-put's outcome is unknown; a multi-get saw both of
			// its puts, which proves them: k/b's is missing.
			ops[0].Outcome, ops[0].Output = OutcomeUnknown, nil
			ops[3].Client, ops[3].Call, ops[3].Return = 2, 12, 18
			ops[3].Output = &Output{Group: "data-0", Revision: 5, KVs: []KV{
				{Key: "k/a", Value: "m1", ModRevision: 5, Version: 1}, {Key: "k/b", Value: "m2", ModRevision: 5, Version: 1}}}
			recs[2].Events = recs[2].Events[:1]
		}, Invalid, "gap at data-0@5: want put k/b=m2 (op 3 multi-get)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ops, recs := batch()
			tt.mutate(ops, recs)
			r := CheckWatch(recs, ops, nil, DataRoute{Count: 1})
			if r.Verdict != tt.want {
				t.Fatalf("got %s, want %s (failing %v: %s)", r.Verdict, tt.want, r.Failing, r.Details)
			}
			if !strings.Contains(r.Details, tt.detail) {
				t.Fatalf("details: got %q, want it to mention %q", r.Details, tt.detail)
			}
		})
	}
}
