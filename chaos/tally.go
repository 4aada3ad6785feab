package chaos

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/metamq/meta/verify"
)

// Tally sums up a suite of runs: verdicts overall and per fault kind. A
// run counts under a kind when it injected at least one fault of that
// kind; "requested" kinds that no run injected show up with zero faults,
// which is itself worth seeing.
type Tally struct {
	Runs, Passed, Failed, Unknown int
	Ops, Faults                   int
	Elapsed                       time.Duration
	Kinds                         []KindTally
	// Failing lists the run folders of runs that did not pass.
	Failing []string
	// Checkers sums each checker's judged/total over the runs.
	Checkers []CheckerTally
	// Gaps lists each run's coverage gaps ("dir: gap"): checkers that
	// judged nothing they were meant to judge in that run.
	Gaps []string
	// Recovery is the recovery time per fault kind over every run.
	Recovery map[verify.FaultKind]verify.RecoveryStats
	// OpsObserved sums the runs' RunReport.OpsObserved.
	OpsObserved map[string]int
}

// CheckerTally is one checker's coverage over a suite.
type CheckerTally struct {
	Checker       string
	Runs          int // runs that had the checker
	Judged, Total int
	// Blind counts the runs in which it judged nothing it was meant to.
	Blind int
}

// KindTally is one row of the per-kind table.
type KindTally struct {
	Kind                          verify.FaultKind
	Faults                        int // injected and healed without error
	Errors                        int // faults of the kind whose resolve, inject or heal failed
	Runs, Passed, Failed, Unknown int
}

// NewTally sums up reports; requested kinds get a row even if never
// injected.
func NewTally(reports []*RunReport, requested []verify.FaultKind) Tally {
	var t Tally
	rows := map[verify.FaultKind]*KindTally{}
	row := func(k verify.FaultKind) *KindTally {
		if rows[k] == nil {
			rows[k] = &KindTally{Kind: k}
		}
		return rows[k]
	}
	for _, k := range requested {
		row(k)
	}
	checkers := map[string]*CheckerTally{}
	var order []string
	times := map[verify.FaultKind][]time.Duration{}
	unrecovered := map[verify.FaultKind]int{}
	for _, r := range reports {
		for _, c := range r.Checks {
			ct := checkers[c.Checker]
			if ct == nil {
				ct = &CheckerTally{Checker: c.Checker}
				checkers[c.Checker] = ct
				order = append(order, c.Checker)
			}
			ct.Runs++
			ct.Judged += c.Judged
			ct.Total += c.Total
		}
		for _, g := range r.CoverageGaps {
			t.Gaps = append(t.Gaps, r.Dir+": "+g)
			if name, _, ok := strings.Cut(g, ":"); ok && checkers[name] != nil {
				checkers[name].Blind++
			}
		}
		for _, f := range r.Faults {
			if f.Recovery.Recovered() {
				times[f.Kind] = append(times[f.Kind], f.Recovery.Took)
			} else if f.Recovery != nil {
				unrecovered[f.Kind]++
			}
		}
		for k, v := range r.OpsObserved {
			if t.OpsObserved == nil {
				t.OpsObserved = map[string]int{}
			}
			t.OpsObserved[k] += v
		}
		t.Runs++
		t.Ops += r.Ops.Total
		t.Elapsed += r.Elapsed
		count := func(kt *KindTally) {
			switch r.Verdict {
			case verify.Valid:
				kt.Passed++
			case verify.Invalid:
				kt.Failed++
			default:
				kt.Unknown++
			}
		}
		switch r.Verdict {
		case verify.Valid:
			t.Passed++
		case verify.Invalid:
			t.Failed++
		default:
			t.Unknown++
		}
		if r.Verdict != verify.Valid {
			t.Failing = append(t.Failing, r.Dir)
		}
		seen := map[verify.FaultKind]bool{}
		for _, f := range r.Faults {
			kt := row(f.Kind)
			if f.Err != "" {
				kt.Errors++
			} else if f.Ended > f.Began {
				kt.Faults++
				t.Faults++
			}
			if !seen[f.Kind] {
				seen[f.Kind] = true
				kt.Runs++
				count(kt)
			}
		}
	}
	for _, k := range verify.AllFaultKinds {
		if kt := rows[k]; kt != nil {
			t.Kinds = append(t.Kinds, *kt)
		}
	}
	for _, name := range order {
		t.Checkers = append(t.Checkers, *checkers[name])
	}
	for k, ts := range times {
		slices.Sort(ts)
		if t.Recovery == nil {
			t.Recovery = map[verify.FaultKind]verify.RecoveryStats{}
		}
		t.Recovery[k] = verify.RecoveryStats{Heals: len(ts) + unrecovered[k], Unrecovered: unrecovered[k],
			P50: verify.Percentile(ts, 50), P99: verify.Percentile(ts, 99), Max: ts[len(ts)-1]}
	}
	return t
}

// Blind lists the checkers that judged nothing over the whole suite
// although they ran: a coverage failure of the suite, not of the cluster.
func (t Tally) Blind() []string {
	var out []string
	for _, c := range t.Checkers {
		if c.Runs > 0 && c.Blind == c.Runs {
			out = append(out, fmt.Sprintf("%s (judged %d of %d)", c.Checker, c.Judged, c.Total))
		}
	}
	return out
}

// AllPassed reports whether there was at least one run and every run
// passed.
func (t Tally) AllPassed() bool { return t.Runs > 0 && t.Passed == t.Runs }

// Write prints the summary table.
func (t Tally) Write(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "\truns\tpassed\tfailed\tunknown\tfaults\tfault errors\t\n")
	fmt.Fprintf(tw, "all\t%d\t%d\t%d\t%d\t%d\t\t\n", t.Runs, t.Passed, t.Failed, t.Unknown, t.Faults)
	for _, k := range t.Kinds {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t\n", k.Kind, k.Runs, k.Passed, k.Failed, k.Unknown, k.Faults, k.Errors)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "checker\truns\tjudged\ttotal\truns judging nothing\t\n")
	for _, c := range t.Checkers {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t\n", c.Checker, c.Runs, c.Judged, c.Total, c.Blind)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, k := range slices.Sorted(maps.Keys(t.Recovery)) {
		fmt.Fprintf(w, "recovery after %s: %s\n", k, t.Recovery[k])
	}
	if len(t.Gaps) > 0 {
		fmt.Fprintf(w, "coverage gaps (the suite's, not the cluster's):\n  %s\n", strings.Join(t.Gaps, "\n  "))
	}
	if len(t.OpsObserved) > 0 {
		var parts []string
		for _, k := range slices.Sorted(maps.Keys(t.OpsObserved)) {
			parts = append(parts, fmt.Sprintf("%s %d", k, t.OpsObserved[k]))
		}
		fmt.Fprintf(w, "operations faults observed: %s\n", strings.Join(parts, "; "))
	}
	_, err := fmt.Fprintf(w, "%d ops in %s of runs\n", t.Ops, t.Elapsed.Round(time.Second))
	if err == nil && len(t.Failing) > 0 {
		_, err = fmt.Fprintf(w, "runs that did not pass:\n  %s\n", strings.Join(t.Failing, "\n  "))
	}
	return err
}
