package verify

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"
)

func op(kind OpKind, outcome Outcome, ret int64, in Input) Op {
	o := Op{Kind: kind, Outcome: outcome, Call: ret - 1, Return: ret, Input: in}
	if outcome == OutcomeOK {
		o.Output = &Output{}
	}
	return o
}

func TestWindowsAndActivity(t *testing.T) {
	var ops []Op
	// 3 ok ops in each of [0,100), [100,200), [200,300), [300,400), and
	// one failure in the second fault.
	for _, t0 := range []int64{10, 110, 210, 310} {
		for i := range int64(3) {
			ops = append(ops, op(OpGet, OutcomeOK, t0+i, Input{Key: "k"}))
		}
	}
	ops = append(ops, op(OpPut, OutcomeFail, 250, Input{Key: "k"}))
	final := op(OpGet, OutcomeOK, 500, Input{Key: "k"})
	final.Final = true
	ops = append(ops, final)
	faults := []Fault{
		{ID: 1, Kind: FaultKill, Began: 100, Ended: 200},
		{ID: 2, Kind: FaultKillAll, Target: TargetAll, Began: 220, Ended: 300},
		{ID: 3, Kind: FaultPause}, // never began
	}
	ws := Windows(ops, faults)
	if len(ws) != 2 {
		t.Fatalf("windows: got %d, want 2 (faults that began)", len(ws))
	}
	// Fault 1's after and fault 2's before are both [200, 220).
	want := []Window{
		{Fault: 1, Before: Counts{OK: 3}, During: Counts{OK: 3}, After: Counts{OK: 3}},
		{Fault: 2, Before: Counts{OK: 3}, During: Counts{Fail: 1}, After: Counts{OK: 3}},
	}
	for i, w := range ws {
		if w.Fault != want[i].Fault || w.Before != want[i].Before || w.During != want[i].During || w.After != want[i].After {
			t.Errorf("window %d: got %+v, want %+v", i, w, want[i])
		}
	}
	if r := CheckActivity(ops, faults, 3); r.Verdict != Valid {
		t.Errorf("activity with 3: got %s (%s), want valid (kill-all needs nothing during)", r.Verdict, r.Details)
	}
	r := CheckActivity(ops, faults, 4)
	if r.Verdict != Invalid || !slices.Contains(r.Failing, "fault 1 (kill) during") {
		t.Errorf("activity with 4: got %s %v, want invalid naming fault 1 during", r.Verdict, r.Failing)
	}
	if r := CheckActivity(ops, nil, 13); r.Verdict != Invalid {
		t.Errorf("activity without faults: got %s, want invalid (12 ok ops < 13)", r.Verdict)
	}
	if r := CheckNemesis(faults); r.Verdict != Invalid || !slices.Equal(r.Failing, []string{"fault 3 (pause)"}) {
		t.Errorf("nemesis: got %s %v, want invalid naming fault 3", r.Verdict, r.Failing)
	}
	st := Stats(ops)
	if st.Total != 14 || st.OK != 13 || st.Fail != 1 || st.Final != 1 || st.EndTime != 312 {
		t.Errorf("stats: got %+v", st)
	}
}

func TestCheckFinalReads(t *testing.T) {
	tp := TopicPartition{Group: "g", Topic: "t", Partition: 0}
	ops := []Op{
		op(OpPut, OutcomeOK, 10, Input{Key: "a"}),
		op(OpPut, OutcomeFail, 11, Input{Key: "b"}),
		op(OpCommit, OutcomeOK, 12, Input{Offsets: []OffsetCommit{{Group: "g", Topic: "t", Offset: 1}}}),
	}
	if r := CheckFinalReads(ops); r.Verdict != Invalid || len(r.Failing) != 3 {
		t.Fatalf("without final reads: got %s %v, want invalid for a, b and g/t/0", r.Verdict, r.Failing)
	}
	for _, f := range []Op{
		op(OpGet, OutcomeOK, 20, Input{Key: "a"}),
		op(OpGet, OutcomeFail, 21, Input{Key: "b"}),
		op(OpFetch, OutcomeOK, 22, Input{Partitions: []TopicPartition{tp}}),
	} {
		f.Final = true
		ops = append(ops, f)
	}
	r := CheckFinalReads(ops)
	if r.Verdict != Invalid || !slices.Equal(r.Failing, []string{"key b"}) {
		t.Fatalf("got %s %v, want invalid for key b only", r.Verdict, r.Failing)
	}
}

func TestFinalReadsRetryUntilRead(t *testing.T) {
	c := newMemCluster(2, "n1")
	h := &History{}
	rec := NewRecorder(NewClock(), h, time.Second)
	s := rec.Session(&memConn{c: c, node: "n1"}, "n1")
	ctx := context.Background()
	s.Put(ctx, "a", s.NextValue())
	s.Commit(ctx, []OffsetCommit{{Group: "g", Topic: "t", Partition: 1, Offset: 3, Metadata: "m"}})
	c.down["n1"] = true // reads fail until the node is back
	ctx, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
	defer cancel()
	missed := FinalReads(ctx, s, h.Ops(), 5*time.Millisecond)
	if !slices.Equal(missed, []string{"key a", "consumer group g"}) {
		t.Fatalf("with the node down: got missed %v, want key a and consumer group g", missed)
	}
	c.heal()
	missed = FinalReads(context.Background(), s, h.Ops(), 5*time.Millisecond)
	if len(missed) != 0 {
		t.Fatalf("got missed %v, want none", missed)
	}
	ops := h.Ops()
	if r := CheckFinalReads(ops); r.Verdict != Valid {
		t.Fatalf("final reads: got %s (%v), want valid", r.Verdict, r.Failing)
	}
	if r := CheckLinearizability(ops, time.Minute).Results; r[0].Verdict != Valid || r[1].Verdict != Valid {
		t.Fatalf("models: got %+v, want valid", r)
	}
}

func TestConverge(t *testing.T) {
	c := newMemCluster(3, "n1", "n2", "n3")
	insp := &memConn{c: c}
	r := Converge(context.Background(), insp, c.endpoints(), nil, time.Millisecond)
	if r.Verdict != Valid || r.Partitions != len(memGroups) {
		t.Fatalf("got %s over %d groups (%s), want valid over %d", r.Verdict, r.Partitions, r.Details, len(memGroups))
	}
	// A group placed on some nodes only: only its replicas are asked.
	c.placedOn = map[string][]string{"data-0": {"n1", "n2"}}
	pctx, pcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer pcancel()
	if r := Converge(pctx, insp, c.endpoints(), nil, time.Millisecond); r.Verdict != Valid || r.Partitions != len(memGroups) {
		t.Fatalf("data-0 on n1 and n2 only: got %s over %d groups (%s), want valid over %d", r.Verdict, r.Partitions, r.Details, len(memGroups))
	}
	c.placedOn = nil
	c.bugDiverge = true
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	r = Converge(ctx, insp, c.endpoints(), []string{"data-1"}, time.Millisecond)
	if r.Verdict != Invalid || !slices.Equal(r.Failing, []string{"data-1"}) || !strings.Contains(r.Details, "n3 applied") {
		t.Fatalf("diverged: got %s %v %q, want invalid naming data-1 and n3", r.Verdict, r.Failing, r.Details)
	}
	c.bugDiverge = false
	c.down["n2"] = true
	ctx, cancel = context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	r = Converge(ctx, insp, c.endpoints(), []string{"data-0"}, time.Millisecond)
	if r.Verdict != Invalid || !strings.Contains(r.Details, "n2:") {
		t.Fatalf("node down: got %s %q, want invalid naming n2", r.Verdict, r.Details)
	}
}

func TestStarved(t *testing.T) {
	act := CheckResult{Checker: CheckerActivity, Verdict: Invalid}
	kv := CheckResult{Checker: CheckerKV, Verdict: Valid}
	tests := []struct {
		name   string
		checks []CheckResult
		want   bool
	}{
		{"activity alone failed", []CheckResult{kv, act}, true},
		{"everything valid", []CheckResult{kv, {Checker: CheckerActivity, Verdict: Valid}}, false},
		{"kv failed too", []CheckResult{{Checker: CheckerKV, Verdict: Invalid}, act}, false},
		{"kv unknown too", []CheckResult{{Checker: CheckerKV, Verdict: Unknown}, act}, false},
		{"another checker failed alone", []CheckResult{{Checker: CheckerKV, Verdict: Invalid}}, false},
		{"the controller could not tell", []CheckResult{kv, {Checker: CheckerController, Verdict: Unknown}}, true},
		{"the controller could not tell, activity failed", []CheckResult{{Checker: CheckerController, Verdict: Unknown}, act}, true},
		{"the controller failed", []CheckResult{kv, {Checker: CheckerController, Verdict: Invalid}}, false},
		{"activity unknown", []CheckResult{kv, {Checker: CheckerActivity, Verdict: Unknown}}, false},
		{"no checks", nil, false},
	}
	for _, tt := range tests {
		if got := Starved(tt.checks); got != tt.want {
			t.Errorf("%s: got %v, want %v", tt.name, got, tt.want)
		}
	}
}
