package verify

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
)

// Checker names, as they appear in summary.json and in metaverify's output.
const (
	CheckerKV           = "kv"
	CheckerOffsets      = "offsets"
	CheckerOffsetsGroup = "offsets-group"
	CheckerFinal        = "final-reads"
	CheckerConvergence  = "convergence"
	CheckerActivity     = "activity"
	CheckerNemesis      = "nemesis"
)

// Verdict is a checker's answer. Only Valid passes: Unknown (the checker
// could not decide, e.g. it timed out) is not a pass.
type Verdict string

const (
	Valid   Verdict = "valid"
	Invalid Verdict = "invalid"
	Unknown Verdict = "unknown"
)

// MarshalJSON writes a verdict the way Jepsen does: true, false or
// "unknown".
func (v Verdict) MarshalJSON() ([]byte, error) {
	switch v {
	case Valid:
		return []byte("true"), nil
	case Invalid:
		return []byte("false"), nil
	}
	return []byte(`"unknown"`), nil
}

// UnmarshalJSON reads true, false, "unknown" or a verdict name.
func (v *Verdict) UnmarshalJSON(b []byte) error {
	var x any
	if err := json.Unmarshal(b, &x); err != nil {
		return err
	}
	switch t := x.(type) {
	case bool:
		if t {
			*v = Valid
		} else {
			*v = Invalid
		}
	case string:
		switch Verdict(t) {
		case Valid, Invalid:
			*v = Verdict(t)
		default:
			*v = Unknown
		}
	default:
		return fmt.Errorf("verify: verdict %s", b)
	}
	return nil
}

// worst combines verdicts: any invalid is invalid, else any unknown is
// unknown, else valid.
func worst(vs ...Verdict) Verdict {
	out := Valid
	for _, v := range vs {
		switch {
		case v == Invalid:
			return Invalid
		case v != Valid:
			out = Unknown
		}
	}
	return out
}

// FailingUpTo returns at most the first n names of r.Failing and, when it
// left some out, the " … and N more" that says how many, for a report.
func (r CheckResult) FailingUpTo(n int) (names []string, more string) {
	if len(r.Failing) > n {
		return r.Failing[:n], fmt.Sprintf(" … and %d more", len(r.Failing)-n)
	}
	return r.Failing, ""
}

// detailsWith joins a checker's summary lines and at most 20 of its
// problems into CheckResult.Details.
func detailsWith(details, problems []string) string {
	if len(problems) > 20 {
		details = append(details, problems[:20]...)
		details = append(details, fmt.Sprintf("… and %d more", len(problems)-20))
	} else {
		details = append(details, problems...)
	}
	return strings.Join(details, "; ")
}

// CheckResult is one checker's verdict on a run.
type CheckResult struct {
	Checker string  `json:"checker"`
	Verdict Verdict `json:"valid"`
	// Ops is the number of model operations checked; Partitions the number
	// of keys, partitions or consumer groups they fell into.
	Ops        int `json:"ops,omitempty"`
	Partitions int `json:"partitions,omitempty"`
	// Failing names what broke: keys, partitions, consumer groups, replica
	// groups, fault windows.
	Failing []string `json:"failing,omitempty"`
	// Undecided names partitions the checker could not decide in time.
	Undecided []string `json:"undecided,omitempty"`
	Details   string   `json:"details,omitempty"`
	// Judged of Total: the cases the checker is meant to judge (its keys,
	// partitions, windows, heals; for the controller, the brokers seen
	// declared down) and how many of them it did judge (the others were
	// undecided or exempt). A checker that judged none fails the suite's
	// coverage (Result.CoverageGaps), not the cluster.
	Judged int `json:"judged"`
	Total  int `json:"total"`
	// Recorded: a live observation copied from the run (convergence), not
	// recomputed from the history by an offline re-check.
	Recorded bool          `json:"recorded,omitempty"`
	Elapsed  time.Duration `json:"elapsed_ns,omitempty"`
}

// partition is one independently checked piece of a history: one key, one
// offsets partition or one consumer group.
type partition struct {
	Checker string
	Name    string
	Ops     []porcupine.Operation
	// Pruned counts unknown writes left out because nobody observed them.
	Pruned int
}

// opMeta travels with each porcupine operation: which partition it belongs
// to (for the partition function) and what to show on hover.
type opMeta struct {
	Part     int
	Index    int
	Process  int
	Endpoint string
	Outcome  Outcome
	Final    bool
}

func newOpMeta(op *Op) *opMeta {
	return &opMeta{Index: op.Index, Process: op.Process, Endpoint: op.Endpoint, Outcome: op.Outcome, Final: op.Final}
}

func (m *opMeta) String() string {
	s := fmt.Sprintf("op %d, process %d, via %s, %s", m.Index, m.Process, m.Endpoint, m.Outcome)
	if m.Final {
		s += ", final read"
	}
	return s
}

// partitionByPart splits a history by the partition each op's metadata
// names (opMeta.Part).
func partitionByPart(history []porcupine.Operation) [][]porcupine.Operation {
	var out [][]porcupine.Operation
	for _, op := range history {
		p := op.Metadata.(*opMeta).Part
		for len(out) <= p {
			out = append(out, nil)
		}
		out[p] = append(out[p], op)
	}
	return out
}

// model is one porcupine model for every checker of the history: the
// partition function keeps the checkers apart and the step function
// dispatches on the input type, so that one check run and one report
// cover the whole history.
func model() porcupine.Model {
	return newModel("", partKind(kvStep, describeKV), partKind(multiStep, describeMulti), partKind(offStep, describeOff), partKind(grpStep, describeGrp))
}

// partModel is one kind of partition of a porcupine model: its step and
// its description of an operation, each answering only for its own
// input type.
type partModel struct {
	step     func(state, input, output any) (ok bool, next any, mine bool)
	describe func(input, output any) (string, bool)
}

// partKind makes a partModel from a typed step and description. A
// partition's state starts as nil and takes the type S at its first step.
func partKind[S, C, R any](step func(S, C, R) (bool, S), describe func(C, R) string) partModel {
	return partModel{
		step: func(state, input, output any) (bool, any, bool) {
			c, mine := input.(C)
			if !mine {
				return false, state, false
			}
			s, _ := state.(S)
			ok, next := step(s, c, output.(R))
			return ok, next, true
		},
		describe: func(input, output any) (string, bool) {
			c, mine := input.(C)
			if !mine {
				return "", false
			}
			return describe(c, output.(R)), true
		},
	}
}

// A partition's state may say of itself how it equals another state
// (states compare with == otherwise) and its hash (0 otherwise).
type (
	stateEqualer interface{ equalState(other any) bool }
	stateHasher  interface{ stateHash() uint64 }
)

// newModel is the porcupine model over kinds of partitions (partitioned
// by partitionByPart); metaPrefix starts each operation's hover text.
func newModel(metaPrefix string, kinds ...partModel) porcupine.Model {
	return porcupine.Model{
		Partition: partitionByPart,
		Init:      func() any { return nil },
		Step: func(state, input, output any) (bool, any) {
			for _, k := range kinds {
				if ok, next, mine := k.step(state, input, output); mine {
					return ok, next
				}
			}
			return false, state
		},
		Equal: func(a, b any) bool {
			if a == nil {
				return b == nil
			}
			if e, ok := a.(stateEqualer); ok {
				return e.equalState(b)
			}
			return a == b
		},
		Hash: func(state any) uint64 {
			if h, ok := state.(stateHasher); ok {
				return h.stateHash()
			}
			return 0
		},
		DescribeOperation: func(input, output any) string {
			for _, k := range kinds {
				if d, mine := k.describe(input, output); mine {
					return d
				}
			}
			return fmt.Sprintf("%v → %v", input, output)
		},
		DescribeState: func(state any) string {
			switch s := state.(type) {
			case nil:
				return "∅"
			case fmt.Stringer:
				return s.String()
			}
			return fmt.Sprintf("%v", state)
		},
		DescribeOperationMetadata: func(m any) string {
			if m, ok := m.(*opMeta); ok {
				return metaPrefix + m.String()
			}
			return ""
		},
	}
}

// Linearizability is the result of the porcupine checkers (kv, offsets,
// offsets-group) over one history, with what it takes to draw the report.
type Linearizability struct {
	// Results has one entry per checker, in the order kv, offsets,
	// offsets-group.
	Results []CheckResult
	parts   []partition
	info    porcupine.LinearizationInfo
}

// CheckLinearizability checks ops with every porcupine model.
//
// All partitions are checked in one porcupine call (one goroutine each),
// bounded by timeout (0: none). A partition is valid when porcupine found a
// complete linearization of it. If the check ran into the timeout, the
// partitions without a complete linearization are checked again one by one
// (concurrently, each bounded by timeout, then alone within one larger
// budget: see lastPass) to tell illegal from undecided; undecided
// partitions make their checker's verdict Unknown, which is not a pass.
func CheckLinearizability(ops []Op, timeout time.Duration) *Linearizability {
	kvParts, kvProblems := kvPartitions(ops)
	offParts, offProblems := offsetPartitions(ops)
	grpParts := groupPartitions(ops)
	var parts []partition
	parts = append(parts, kvParts...)
	parts = append(parts, offParts...)
	parts = append(parts, grpParts...)

	start := time.Now()
	verdicts, longest, info, stopped := checkPartitions(model(), parts, timeout)

	l := &Linearizability{parts: parts, info: info}
	problems := map[string][]string{CheckerKV: kvProblems, CheckerOffsets: offProblems}
	for _, name := range []string{CheckerKV, CheckerOffsets, CheckerOffsetsGroup} {
		r := CheckResult{Checker: name, Verdict: Valid, Elapsed: time.Since(start)}
		details := judgePartitions(&r, parts, verdicts, longest, name+" ", timeout, stopped)
		for _, p := range problems[name] {
			details = append(details, "malformed response: "+p)
		}
		switch {
		case len(r.Failing) > 0 || len(problems[name]) > 0:
			r.Verdict = Invalid
		case len(r.Undecided) > 0:
			r.Verdict = Unknown
		}
		r.Details = strings.Join(details, "; ")
		l.Results = append(l.Results, r)
	}
	return l
}

// judgePartitions counts into r the partitions of parts that belong to
// r.Checker and their ops, names in r those checkPartitions judged
// Invalid (Failing) or could not decide (Undecided), and returns the
// details that say so: each partition not linearizable (its name after
// prefix) with its longest linearizable prefix, how many were undecided
// within timeout and how many unknown writes pruning left out.
func judgePartitions(r *CheckResult, parts []partition, verdicts []Verdict, longest []int, prefix string, timeout time.Duration, stopped bool) []string {
	var details []string
	pruned := 0
	for i, p := range parts {
		if p.Checker != r.Checker {
			continue
		}
		r.Partitions++
		r.Ops += len(p.Ops)
		pruned += p.Pruned
		switch verdicts[i] {
		case Invalid:
			r.Failing = append(r.Failing, p.Name)
			details = append(details, fmt.Sprintf("%s%q: not linearizable (longest linearizable prefix: %d of %d ops)",
				prefix, p.Name, longest[i], len(p.Ops)))
		case Unknown:
			r.Undecided = append(r.Undecided, p.Name)
		}
	}
	switch {
	case len(r.Undecided) > 0 && stopped:
		details = append(details, fmt.Sprintf("%d partitions undecided: the search was stopped when the process's heap passed %d MiB (META_CHECK_HEAP_MIB)",
			len(r.Undecided), heapBudget>>20))
	case len(r.Undecided) > 0:
		details = append(details, fmt.Sprintf("%d partitions undecided within %s (and a last check alone within %s for all of them)",
			len(r.Undecided), timeout, aloneFactor*timeout))
	}
	if pruned > 0 {
		details = append(details, fmt.Sprintf("%d unknown writes nobody observed left out", pruned))
	}
	return details
}

// Visualize writes porcupine's HTML report of the check, with the given
// annotations (fault windows) and with extra HTML (a summary) placed at the
// top of the page.
func (l *Linearizability) Visualize(w io.Writer, annotations []porcupine.Annotation, top string) error {
	info := l.info
	info.AddAnnotations(annotations)
	var b strings.Builder
	if err := porcupine.Visualize(model(), info, &b); err != nil {
		return fmt.Errorf("verify: visualize: %w", err)
	}
	page := b.String()
	if i := strings.Index(page, "<body>"); i >= 0 {
		i += len("<body>")
		page = page[:i] + "\n" + top + "\n" + page[i:]
	} else {
		page = top + page
	}
	_, err := io.WriteString(w, page)
	return err
}
