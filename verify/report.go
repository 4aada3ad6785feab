package verify

import (
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
)

// Files of a run folder.
const (
	HistoryFile = "history.jsonl"
	FaultsFile  = "faults.jsonl"
	SummaryFile = "summary.json"
	ReportFile  = "report.html"
)

// WriteRun writes a run folder: history.jsonl (every op, WriteHistory),
// faults.jsonl (the fault timeline, WriteFaults), summary.json (res) and
// report.html (Linearizability.Visualize with the fault windows and a
// summary on top).
func WriteRun(dir string, res *Result, ops []Op, lin *Linearizability) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var errs []error
	errs = append(errs, SaveHistory(filepath.Join(dir, HistoryFile), ops))
	errs = append(errs, SaveFaults(filepath.Join(dir, FaultsFile), res.Faults))
	errs = append(errs, writeFile(filepath.Join(dir, SummaryFile), func(w io.Writer) error {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		return enc.Encode(res)
	}))
	errs = append(errs, WriteReport(filepath.Join(dir, ReportFile), res, lin))
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("verify: write run %s: %w", dir, err)
	}
	return nil
}

// WriteReport writes report.html: porcupine's visualization of every
// partition (keys, offsets partitions, consumer groups), with each fault
// drawn as an annotation on a "faults" row over its window, and a summary
// (verdicts, faults, ops per window) at the top of the page.
func WriteReport(path string, res *Result, lin *Linearizability) error {
	var notes []porcupine.Annotation
	for _, f := range res.Faults {
		if f.Began == 0 && f.Ended == 0 {
			continue
		}
		bg := "#f4c7c3"
		if f.Err != "" {
			bg = "#d9d9d9"
		}
		details := f.String()
		if f.Err != "" {
			details += " — " + f.Err
		}
		notes = append(notes, porcupine.Annotation{
			Tag: "faults", Start: int64(f.Began), End: int64(f.Ended),
			Description: fmt.Sprintf("#%d %s %s", f.ID, f.Kind, strings.Join(f.Nodes, ",")),
			Details:     details, BackgroundColor: bg,
		})
	}
	if res.Ops.EndTime > 0 {
		notes = append(notes, porcupine.Annotation{Tag: "run", Start: int64(res.Ops.EndTime),
			Description: "workload stopped", Details: "final reads follow"})
	}
	return writeFile(path, func(w io.Writer) error { return lin.Visualize(w, notes, summaryHTML(res)) })
}

func summaryHTML(res *Result) string {
	e := html.EscapeString
	var b strings.Builder
	b.WriteString(`<div style="font-family: sans-serif; margin: 10px 10px 30px 10px">`)
	b.WriteString(`<style>.vt td, .vt th { border: 1px solid #ccc; padding: 2px 6px; text-align: left; vertical-align: top; font-size: 13px } .vt { border-collapse: collapse; margin-bottom: 12px }</style>`)
	fmt.Fprintf(&b, "<h2>meta verify run — seed %d — %s</h2>", res.Seed, verdictHTML(res.Verdict))
	fmt.Fprintf(&b, "<p>started %s, took %s; %d ops (ok %d, fail %d, unknown %d, final reads %d); nodes %s</p>",
		e(res.Started.Format(time.RFC3339)), res.Elapsed.Round(time.Millisecond), res.Ops.Total, res.Ops.OK, res.Ops.Fail,
		res.Ops.Unknown, res.Ops.Final, e(strings.Join(res.Settings.Nodes, ", ")))
	if res.Error != "" {
		fmt.Fprintf(&b, "<p><b>run stopped early:</b> %s</p>", e(res.Error))
	}
	if len(res.CoverageGaps) > 0 {
		fmt.Fprintf(&b, "<p><b>COVERAGE GAP (a failure of the suite, not of the cluster):</b> %s</p>", e(strings.Join(res.CoverageGaps, "; ")))
	}
	b.WriteString(`<h3>Checkers</h3><table class="vt"><tr><th>checker</th><th>valid</th><th>judged / total</th><th>ops</th><th>partitions</th><th>failing</th><th>details</th></tr>`)
	for _, c := range res.Checks {
		failing, more := c.FailingUpTo(20)
		rec := ""
		if c.Recorded {
			rec = " (recorded live)"
		}
		fmt.Fprintf(&b, "<tr><td>%s%s</td><td>%s</td><td>%d / %d</td><td>%d</td><td>%d</td><td>%s%s</td><td>%s</td></tr>",
			e(c.Checker), rec, verdictHTML(c.Verdict), c.Judged, c.Total, c.Ops, c.Partitions, e(strings.Join(failing, ", ")), e(more), e(c.Details))
	}
	b.WriteString("</table>")
	b.WriteString(`<h3>Faults and ops per window</h3><table class="vt"><tr><th>#</th><th>kind</th><th>target</th><th>nodes</th><th>params</th><th>began</th><th>ended</th><th>recovered in</th><th>before ok/fail/unknown</th><th>during</th><th>after</th><th>error</th></tr>`)
	windows := map[int]Window{}
	for _, w := range res.Windows {
		windows[w.Fault] = w
	}
	cnt := func(c Counts) string { return fmt.Sprintf("%d / %d / %d", c.OK, c.Fail, c.Unknown) }
	for _, f := range res.Faults {
		w := windows[f.ID]
		var params []string
		for k, v := range f.Params {
			params = append(params, k+"="+v)
		}
		fmt.Fprintf(&b, "<tr><td>%d</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td></tr>",
			f.ID, e(string(f.Kind)), e(string(f.Target)), e(strings.Join(f.Nodes, ",")), e(strings.Join(params, " ")),
			f.Began.Round(time.Millisecond), f.Ended.Round(time.Millisecond), e(recoveryText(f.Recovery)),
			cnt(w.Before), cnt(w.During), cnt(w.After), e(f.Err))
	}
	b.WriteString("</table>")
	if len(res.Recovery) > 0 {
		b.WriteString(`<h3>Recovery time per fault kind</h3><p>From the end of each heal until every group served again; the next fault waits for it.</p><table class="vt"><tr><th>kind</th><th>heals</th><th>p50</th><th>p99</th><th>max</th><th>not recovered</th></tr>`)
		for _, k := range slices.Sorted(maps.Keys(res.Recovery)) {
			st := res.Recovery[k]
			fmt.Fprintf(&b, "<tr><td>%s</td><td>%d</td><td>%s</td><td>%s</td><td>%s</td><td>%d</td></tr>", e(string(k)), st.Heals,
				st.P50.Round(time.Millisecond), st.P99.Round(time.Millisecond), st.Max.Round(time.Millisecond), st.Unrecovered)
		}
		b.WriteString("</table>")
	}
	b.WriteString("<p>Below, porcupine's view: one block per KV key, per offsets partition and per consumer group " +
		"(offsets-group). Operations that never returned (unknown outcome) reach the right edge. Faults are on the " +
		"<i>faults</i> row. Hover for states; \"jump to first error\" finds a violation.</p></div>")
	return b.String()
}

// recoveryText renders a fault's recovery for the report.
func recoveryText(r *Recovery) string {
	switch {
	case r == nil:
		return "not probed"
	case !r.Recovered():
		return fmt.Sprintf("NOT within %s", r.Took.Round(time.Millisecond))
	}
	return fmt.Sprintf("%s (%s)", r.Took.Round(time.Millisecond), r.Slowest)
}

func verdictHTML(v Verdict) string {
	switch v {
	case Valid:
		return `<span style="color: #2a7d2a; font-weight: bold">valid</span>`
	case Invalid:
		return `<span style="color: #c62828; font-weight: bold">INVALID</span>`
	}
	return `<span style="color: #b26a00; font-weight: bold">unknown</span>`
}

// LoadRun reads a run folder written by WriteRun.
func LoadRun(dir string) (*Result, []Op, error) {
	b, err := os.ReadFile(filepath.Join(dir, SummaryFile))
	if err != nil {
		return nil, nil, err
	}
	res := &Result{}
	if err := json.Unmarshal(b, res); err != nil {
		return nil, nil, fmt.Errorf("verify: %s: %w", SummaryFile, err)
	}
	res.Dir = dir
	ops, err := LoadHistory(filepath.Join(dir, HistoryFile))
	if err != nil {
		return nil, nil, err
	}
	res.Faults, err = LoadFaults(filepath.Join(dir, FaultsFile))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, nil, err
	}
	return res, ops, nil
}

// Recheck re-checks a saved run offline: every checker is computed again
// from history.jsonl and faults.jsonl, except convergence, which was
// observed live and is copied from summary.json. It writes a new
// report.html into the folder (summary.json is left as the run wrote it)
// and returns the new result. timeout overrides the saved check timeout
// when positive.
func Recheck(dir string, timeout time.Duration) (*Result, error) {
	saved, ops, err := LoadRun(dir)
	if err != nil {
		return nil, err
	}
	res := &Result{Seed: saved.Seed, Started: saved.Started, Elapsed: saved.Elapsed, Settings: saved.Settings,
		Error: saved.Error, Faults: saved.Faults, FinalRecovery: saved.FinalRecovery, DataRanges: saved.DataRanges, Dir: dir}
	if timeout > 0 {
		res.Settings.CheckTimeout = timeout
	}
	live := []CheckResult{{Checker: CheckerConvergence, Verdict: Unknown, Recorded: true, Details: "not in summary.json"}}
	if c := saved.Check(CheckerConvergence); c != nil {
		live[0] = *c
	}
	for _, name := range []string{CheckerPlacement, CheckerRanges} {
		if c := saved.Check(name); c != nil { // runs from before the check have none
			live = append(live, *c)
		}
	}
	lin := Evaluate(res, ops, live...)
	if err := WriteReport(filepath.Join(dir, ReportFile), res, lin); err != nil {
		return res, err
	}
	return res, nil
}
