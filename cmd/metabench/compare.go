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
// meaning (consistency of reads, batch of batched calls).
func workloadName(r *Result) string {
	name := r.Command
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
// second, p50 and p99. With exactly two columns it adds the first's
// throughput divided by the second's and whether the first's p99 is no
// worse. A later result for the same row and column replaces an earlier
// one.
func writeComparison(w io.Writer, results []*Result) error {
	type rowKey struct {
		workload string
		clients  int
	}
	var rows []rowKey
	var cols []string
	cells := map[rowKey]map[string]*Result{}
	for _, r := range results {
		k := rowKey{workloadName(r), r.Clients}
		if _, ok := cells[k]; !ok {
			cells[k] = map[string]*Result{}
			rows = append(rows, k)
		}
		c := column(r)
		if !slices.Contains(cols, c) {
			cols = append(cols, c)
		}
		cells[k][c] = r
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	header := []string{"workload", "clients"}
	for _, c := range cols {
		header = append(header, c+" ops/s", "p50 ms", "p99 ms", "errors")
	}
	if len(cols) == 2 {
		header = append(header, cols[0]+"/"+cols[1], "p99 no worse")
	}
	fmt.Fprintln(tw, strings.Join(header, "\t")+"\t")
	for _, k := range rows {
		line := []string{k.workload, strconv.Itoa(k.clients)}
		for _, c := range cols {
			r := cells[k][c]
			if r == nil {
				line = append(line, "-", "-", "-", "-")
				continue
			}
			line = append(line,
				fmt.Sprintf("%.0f", r.ItemsPerSecond),
				fmt.Sprintf("%.2f", r.LatencyMs.P50),
				fmt.Sprintf("%.2f", r.LatencyMs.P99),
				strconv.FormatInt(r.ErrorsDefinite+r.ErrorsUnknown+r.Missing, 10))
		}
		if len(cols) == 2 {
			a, b := cells[k][cols[0]], cells[k][cols[1]]
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
