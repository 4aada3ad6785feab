package verify

import (
	"fmt"
	"strings"
	"time"
)

// Counts are ops by outcome.
type Counts struct {
	OK      int `json:"ok"`
	Fail    int `json:"fail"`
	Unknown int `json:"unknown"`
}

func (c *Counts) add(o Outcome) {
	switch o {
	case OutcomeOK:
		c.OK++
	case OutcomeFail:
		c.Fail++
	case OutcomeUnknown:
		c.Unknown++
	}
}

// Total is the number of ops counted.
func (c Counts) Total() int { return c.OK + c.Fail + c.Unknown }

// Window counts the workload's ops around one fault, by return time:
// Before is [end of the previous fault (or 0), Began), During is [Began,
// Ended), After is [Ended, start of the next fault (or the end of the
// workload)). Final reads are not counted.
type Window struct {
	Fault  int           `json:"fault"`
	Kind   FaultKind     `json:"kind"`
	Target Target        `json:"target"`
	Nodes  []string      `json:"nodes,omitempty"`
	Began  time.Duration `json:"began_ns"`
	Ended  time.Duration `json:"ended_ns"`
	Before Counts        `json:"before"`
	During Counts        `json:"during"`
	After  Counts        `json:"after"`
}

// OpStats summarises a history.
type OpStats struct {
	Total   int               `json:"total"`
	Counts                    // all ops by outcome
	Final   int               `json:"final"` // final reads among them
	ByKind  map[OpKind]Counts `json:"by_kind"`
	EndTime time.Duration     `json:"end_ns"` // last return of a workload op
}

// Stats counts a history's ops.
func Stats(ops []Op) OpStats {
	s := OpStats{ByKind: map[OpKind]Counts{}}
	for i := range ops {
		op := &ops[i]
		s.Total++
		s.add(op.Outcome)
		c := s.ByKind[op.Kind]
		c.add(op.Outcome)
		s.ByKind[op.Kind] = c
		if op.Final {
			s.Final++
		} else if d := time.Duration(op.Return); d > s.EndTime {
			s.EndTime = d
		}
	}
	return s
}

// Windows counts ops around every fault that began. Faults that never
// began (the run stopped first) get no window.
func Windows(ops []Op, faults []Fault) []Window {
	var began []Fault
	for _, f := range faults {
		if f.Began > 0 || f.Ended > 0 {
			began = append(began, f)
		}
	}
	end := Stats(ops).EndTime
	ws := make([]Window, len(began))
	for i, f := range began {
		ws[i] = Window{Fault: f.ID, Kind: f.Kind, Target: f.Target, Nodes: f.Nodes, Began: f.Began, Ended: f.Ended}
	}
	for i := range ops {
		op := &ops[i]
		if op.Final {
			continue
		}
		t := time.Duration(op.Return)
		for j := range ws {
			w := &ws[j]
			lo := time.Duration(0)
			if j > 0 {
				lo = ws[j-1].Ended
			}
			hi := end + 1
			if j+1 < len(ws) {
				hi = ws[j+1].Began
			}
			switch {
			case t >= lo && t < w.Began:
				w.Before.add(op.Outcome)
			case t >= w.Began && t < w.Ended:
				w.During.add(op.Outcome)
			case t >= w.Ended && t < hi:
				w.After.add(op.Outcome)
			}
		}
	}
	return ws
}

// exemptDuring says whether a fault leaves no majority to serve, so that
// no successful op is expected while it lasts.
func exemptDuring(w Window) bool {
	return w.Kind == FaultKillAll || w.Target == TargetAll && (w.Kind == FaultKill || w.Kind == FaultPause)
}

// CheckActivity fails a run that did too little to mean anything: fewer
// than minOps successful ops before, during or after any fault (during is
// not required of faults that leave no majority: kill-all, and kill or
// pause of all nodes), or, with no faults, fewer than minOps in total.
func CheckActivity(ops []Op, faults []Fault, minOps int) CheckResult {
	r := CheckResult{Checker: CheckerActivity, Verdict: Valid}
	ws := Windows(ops, faults)
	st := Stats(ops)
	r.Ops = st.OK - st.Final
	var details []string
	if len(ws) == 0 && r.Ops < minOps {
		r.Failing = append(r.Failing, "run")
		details = append(details, fmt.Sprintf("%d successful ops, want at least %d", r.Ops, minOps))
	}
	for _, w := range ws {
		check := func(phase string, c Counts) {
			if c.OK < minOps {
				name := fmt.Sprintf("fault %d (%s) %s", w.Fault, w.Kind, phase)
				r.Failing = append(r.Failing, name)
				details = append(details, fmt.Sprintf("%s: %d successful ops, want at least %d", name, c.OK, minOps))
			}
		}
		check("before", w.Before)
		if !exemptDuring(w) {
			check("during", w.During)
		}
		check("after", w.After)
	}
	if len(r.Failing) > 0 {
		r.Verdict = Invalid
	}
	r.Details = strings.Join(details, "; ")
	return r
}

// Starved reports whether the only checks in checks that did not pass are
// activity's failure (too few successful ops in some window) and the
// controller checker's unknown (no assignment read after its bound, which
// brokers' unanswered calls push back): the machine starved the cluster,
// and the run proved nothing either way, so runners play the seed once
// more instead of counting it as failed. Any other failure or unknown,
// alone or beside these, is a failure.
func Starved(checks []CheckResult) bool {
	starved := false
	for _, c := range checks {
		switch {
		case c.Verdict == Valid:
		case c.Checker == CheckerActivity && c.Verdict == Invalid,
			c.Checker == CheckerController && c.Verdict == Unknown:
			starved = true
		default:
			return false
		}
	}
	return starved
}

// CheckNemesis fails a run whose faults were not all injected and healed:
// a fault that did not happen tested nothing, and one that did not heal
// may leave the cluster broken for the final checks.
func CheckNemesis(faults []Fault) CheckResult {
	r := CheckResult{Checker: CheckerNemesis, Verdict: Valid, Ops: len(faults)}
	var details []string
	for _, f := range faults {
		switch {
		case f.Err != "":
			r.Failing = append(r.Failing, fmt.Sprintf("fault %d (%s)", f.ID, f.Kind))
			details = append(details, fmt.Sprintf("fault %d (%s %s): %s", f.ID, f.Kind, f.Target, f.Err))
		case f.Began == 0 && f.Ended == 0:
			r.Failing = append(r.Failing, fmt.Sprintf("fault %d (%s)", f.ID, f.Kind))
			details = append(details, fmt.Sprintf("fault %d (%s): never ran", f.ID, f.Kind))
		}
	}
	if len(r.Failing) > 0 {
		r.Verdict = Invalid
	}
	r.Details = strings.Join(details, "; ")
	return r
}
