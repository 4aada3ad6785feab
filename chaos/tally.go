package chaos

import (
	"fmt"
	"io"
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
	for _, r := range reports {
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
	return t
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
	_, err := fmt.Fprintf(w, "%d ops in %s of runs\n", t.Ops, t.Elapsed.Round(time.Second))
	if err == nil && len(t.Failing) > 0 {
		_, err = fmt.Fprintf(w, "runs that did not pass:\n  %s\n", strings.Join(t.Failing, "\n  "))
	}
	return err
}
