package main

import (
	"bytes"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/metamq/meta/chaos"
	"github.com/metamq/meta/verify"
)

func TestParseKinds(t *testing.T) {
	tests := []struct {
		in      string
		want    []verify.FaultKind
		wantErr string
		notice  bool
	}{
		{in: "kill,pause", want: []verify.FaultKind{verify.FaultKill, verify.FaultPause}},
		{in: "partition", want: []verify.FaultKind{verify.FaultIsolate, verify.FaultSplit, verify.FaultBridge, verify.FaultOneWay}},
		{in: "all", want: slices.DeleteFunc(slices.Clone(verify.AllFaultKinds), func(k verify.FaultKind) bool { return k == verify.FaultCrashpoint }), notice: true},
		{in: "reshard", want: []verify.FaultKind{verify.FaultReshard}},
		{in: "crashpoint", wantErr: "not supported"},
		{in: "meteor", wantErr: "meteor"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			var stderr bytes.Buffer
			got, err := parseKinds(tt.in, &stderr)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %v, want an error naming %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
			if gotNotice := strings.Contains(stderr.String(), "crashpoint"); gotNotice != tt.notice {
				t.Errorf("notice about crashpoint: got %t (%q), want %t", gotNotice, stderr.String(), tt.notice)
			}
		})
	}
}

// TestUsageErrors: bad invocations exit 2 before touching Docker.
func TestUsageErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"run", "--runs", "0"}, "--runs"},
		{[]string{"run", "--workload", "nonsense", "--binary", "/nonexistent"}, "--workload"},
		{[]string{"smoke", "--at-controller", "kill-all", "--binary", "/nonexistent"}, "--at-controller"},
		{[]string{"run", "--at-controller", "meteor", "--binary", "/nonexistent"}, "--at-controller"},
		{[]string{"run", "--nemesis", "crashpoint"}, "not supported"},
		{[]string{"run", "--nodes", "12", "--binary", "/nonexistent"}, "--nodes"},
		{[]string{"run", "--replication-factor", "-1", "--binary", "/nonexistent"}, "--replication-factor"},
		{[]string{"run", "--nemesis", "move", "--spare=false", "--nodes", "3", "--replication-factor", "3"}, "--spare"},
		{[]string{"run", "--binary", "/nonexistent/metanode"}, "--binary"},
		{[]string{"run", "--nemesis", "upgrade", "--seed", "2", "--previous", "no-such-release", "--binary", os.Args[0]}, "--previous no-such-release"},
		{[]string{"run", "extra"}, "unknown command"},
		{[]string{"nonsense"}, "unknown command"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code, err := execute(tt.args, &stdout, &stderr)
			if code != exitError || err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got exit %d, err %v; want exit %d and an error naming %q", code, err, exitError, tt.want)
			}
		})
	}
}

func TestProgressLine(t *testing.T) {
	var out bytes.Buffer
	p := newProgress(&out, "run 1/2 seed 7") // a buffer is no terminal: lines
	f := &verify.Fault{ID: 3, Kind: verify.FaultKill, Target: "leader:data-0", Nodes: []string{"n2"}, Start: time.Second, Duration: 2 * time.Second}
	p.update(verify.Progress{Phase: "workload", Elapsed: time.Second, Ops: 100})
	p.update(verify.Progress{Phase: "inject", Elapsed: 2 * time.Second, Ops: 300, Fault: f})
	p.update(verify.Progress{Phase: "workload", Elapsed: 2200 * time.Millisecond, Ops: 310, Fault: f})
	p.update(verify.Progress{Phase: "workload", Elapsed: 2400 * time.Millisecond, Ops: 330, Fault: f}) // no change: no line
	p.done()
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("got %d lines, want 3 (a line per change of phase or fault):\n%s", len(lines), out.String())
	}
	for _, want := range []string{"run 1/2 seed 7", "inject", "200 ops/s", "#3 kill leader:data-0 [n2]"} {
		if !strings.Contains(lines[1], want) {
			t.Errorf("line %q lacks %q", lines[1], want)
		}
	}
}

func TestPlayAgain(t *testing.T) {
	starved := []verify.CheckResult{{Checker: verify.CheckerKV, Verdict: verify.Valid}, {Checker: verify.CheckerActivity, Verdict: verify.Invalid}}
	broken := []verify.CheckResult{{Checker: verify.CheckerKV, Verdict: verify.Invalid}, {Checker: verify.CheckerActivity, Verdict: verify.Invalid}}
	tests := []struct {
		name    string
		rep     chaos.RunReport
		err     error
		attempt int
		want    bool
	}{
		{"starved first attempt", chaos.RunReport{Verdict: verify.Invalid, Checks: starved}, nil, 1, true},
		{"starved second attempt", chaos.RunReport{Verdict: verify.Invalid, Checks: starved}, nil, 2, false},
		{"a correctness checker failed", chaos.RunReport{Verdict: verify.Invalid, Checks: broken}, nil, 1, false},
		{"passed", chaos.RunReport{Verdict: verify.Valid}, nil, 1, false},
		{"run stopped early", chaos.RunReport{Verdict: verify.Unknown, Checks: starved}, errors.New("interrupted"), 1, false},
		{"run not carried out", chaos.RunReport{Verdict: verify.Unknown, Checks: starved, Err: errors.New("no cluster")}, nil, 1, false},
	}
	for _, tt := range tests {
		if got := playAgain(&tt.rep, tt.err, tt.attempt); got != tt.want {
			t.Errorf("%s: got %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestNeedsSpare(t *testing.T) {
	tests := []struct {
		kind      verify.FaultKind
		rf, nodes int
		want      bool
	}{
		{verify.FaultMove, 0, 5, true}, // metanode's default: not assumed
		{verify.FaultMove, 3, 3, true},
		{verify.FaultMove, 5, 3, true},
		{verify.FaultMove, 3, 5, false},
		{verify.FaultMove, 1, 3, false},
		{verify.FaultScale, 3, 5, true},
		{verify.FaultKill, 0, 3, false},
	}
	for _, tt := range tests {
		if got := needsSpare(tt.kind, tt.rf, tt.nodes); got != tt.want {
			t.Errorf("needsSpare(%s, rf %d, %d nodes): got %t, want %t", tt.kind, tt.rf, tt.nodes, got, tt.want)
		}
	}
}
