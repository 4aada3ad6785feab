package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
)

// readResults reads results written with --output json: one JSON object
// per line; blank lines are skipped.
func readResults(r io.Reader, name string) ([]*Result, error) {
	var out []*Result
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" {
			continue
		}
		var res Result
		if err := json.Unmarshal([]byte(text), &res); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", name, line, err)
		}
		out = append(out, &res)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return out, nil
}

// column names a result's column in the comparison: its label, else its
// target.
func column(r *Result) string {
	if r.Label != "" {
		return r.Label
	}
	return r.Target
}

// workloadName names a result's row: the command and what changes its
// meaning (consistency of reads, batch of batched calls, a client that
// does not coalesce).
func workloadName(r *Result) string {
	name := r.Command
	if r.NoCoalesce {
		name += " no-coalesce"
	}
	if r.Consistency != "" {
		name += " " + r.Consistency
	}
	if r.Batch > 1 {
		name += " batch " + strconv.Itoa(r.Batch)
	}
	return name
}

// writeComparison prints one row per workload and client count and, for
// each column (label or target, in the order first seen), items per
// second, p50, p99 and, when results measured their servers, the servers'
// CPU per item. With exactly two columns it adds the first's
// throughput divided by the second's and whether the first's p99 is no
// worse. Without median, a later result for the same row and column
// replaces an earlier one; with median, the results of a cell (the
// repetitions of a run) are summarised: the medians of items per second,
// p50 and p99, the errors added up, and two more columns per column, the
// range of items per second (min-max) and the number of results.
func writeComparison(w io.Writer, results []*Result, median bool) error {
	type rowKey struct {
		workload string
		clients  int
	}
	var rows []rowKey
	var cols []string
	cells := map[rowKey]map[string][]*Result{}
	for _, r := range results {
		k := rowKey{workloadName(r), r.Clients}
		if _, ok := cells[k]; !ok {
			cells[k] = map[string][]*Result{}
			rows = append(rows, k)
		}
		c := column(r)
		if !slices.Contains(cols, c) {
			cols = append(cols, c)
		}
		if median {
			cells[k][c] = append(cells[k][c], r)
		} else {
			cells[k][c] = []*Result{r}
		}
	}
	cell := func(k rowKey, c string) *Result { return summarise(cells[k][c]) }
	// The cpu column appears when some result measured its servers.
	withCPU := slices.ContainsFunc(results, func(r *Result) bool { return r.ServerCPUSeconds > 0 })
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	header := []string{"workload", "clients"}
	for _, c := range cols {
		header = append(header, c+" ops/s")
		if median {
			header = append(header, "min-max", "runs")
		}
		header = append(header, "p50 ms", "p99 ms", "errors")
		if withCPU {
			header = append(header, "cpu us/op")
		}
	}
	if len(cols) == 2 {
		header = append(header, cols[0]+"/"+cols[1], "p99 no worse")
	}
	fmt.Fprintln(tw, strings.Join(header, "\t")+"\t")
	for _, k := range rows {
		line := []string{k.workload, strconv.Itoa(k.clients)}
		for _, c := range cols {
			r := cell(k, c)
			if r == nil {
				line = append(line, "-", "-", "-", "-")
				if median {
					line = append(line, "-", "-")
				}
				if withCPU {
					line = append(line, "-")
				}
				continue
			}
			line = append(line, fmt.Sprintf("%.0f", r.ItemsPerSecond))
			if median {
				lo, hi := rangeOf(cells[k][c])
				line = append(line, fmt.Sprintf("%.0f-%.0f", lo, hi), strconv.Itoa(len(cells[k][c])))
			}
			line = append(line,
				fmt.Sprintf("%.2f", r.LatencyMs.P50),
				fmt.Sprintf("%.2f", r.LatencyMs.P99),
				strconv.FormatInt(r.ErrorsDefinite+r.ErrorsUnknown+r.Missing, 10))
			if withCPU {
				line = append(line, cpuPerItem(r))
			}
		}
		if len(cols) == 2 {
			a, b := cell(k, cols[0]), cell(k, cols[1])
			if a != nil && b != nil && b.ItemsPerSecond > 0 {
				verdict := "no"
				if a.LatencyMs.P99 <= b.LatencyMs.P99 {
					verdict = "yes"
				}
				line = append(line, fmt.Sprintf("%.2fx", a.ItemsPerSecond/b.ItemsPerSecond), verdict)
			} else {
				line = append(line, "-", "-")
			}
		}
		fmt.Fprintln(tw, strings.Join(line, "\t")+"\t")
	}
	return tw.Flush()
}

// cpuPerItem is a result's server CPU per item in microseconds ("-" when
// its servers were not measured).
func cpuPerItem(r *Result) string {
	if r.ServerCPUSeconds <= 0 || r.Items == 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f", r.ServerCPUSeconds/float64(r.Items)*1e6)
}

// summarise returns the only result of a cell, or for several a result
// holding the medians of items per second, p50 and p99 and the sum of
// the errors; nil for none.
func summarise(rs []*Result) *Result {
	switch len(rs) {
	case 0:
		return nil
	case 1:
		return rs[0]
	}
	med := func(f func(*Result) float64) float64 {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = f(r)
		}
		slices.Sort(v)
		if len(v)%2 == 1 {
			return v[len(v)/2]
		}
		return (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	out := &Result{
		ItemsPerSecond: med(func(r *Result) float64 { return r.ItemsPerSecond }),
		// Per item, so that repetitions of different lengths compare.
		ServerCPUSeconds: med(func(r *Result) float64 { return r.ServerCPUSeconds / float64(max(r.Items, 1)) }),
		Items:            1,
		LatencyMs: Latency{
			P50: med(func(r *Result) float64 { return r.LatencyMs.P50 }),
			P99: med(func(r *Result) float64 { return r.LatencyMs.P99 }),
		},
	}
	for _, r := range rs {
		out.ErrorsDefinite += r.ErrorsDefinite
		out.ErrorsUnknown += r.ErrorsUnknown
		out.Missing += r.Missing
	}
	return out
}

// rangeOf returns the least and greatest items per second of rs.
func rangeOf(rs []*Result) (lo, hi float64) {
	for i, r := range rs {
		if i == 0 || r.ItemsPerSecond < lo {
			lo = r.ItemsPerSecond
		}
		hi = max(hi, r.ItemsPerSecond)
	}
	return lo, hi
}
