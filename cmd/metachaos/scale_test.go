package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPlotSeriesWithWindow(t *testing.T) {
	dir := t.TempDir()
	csv := filepath.Join(dir, "r1.csv")
	// The run began at 1000000 ms: the first sample, 1 s in, is 1001000.
	body := "unix_ms,elapsed_s,items,failed,items_per_second\n" +
		"1001000,1.000,500,0,500.0\n1002000,2.000,700,1,700.0\n1003000,3.000,0,0,0.0\n"
	if err := os.WriteFile(csv, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "tp.svg")
	var stdout, stderr bytes.Buffer
	cmd := command(&stdout, &stderr)
	cmd.SetArgs([]string{"plot", "--out", out, "--series", "rep1=" + csv, "--window", "rep1=1001500,1002500,rebalance"})
	if err := cmd.Execute(); err != nil {
		t.Fatalf("plot: %v (%s)", err, stderr.String())
	}
	svg, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"<svg", "rep1", "#1 rep1 rebalance", "<polyline"} {
		if !strings.Contains(string(svg), want) {
			t.Errorf("svg: want it to contain %q", want)
		}
	}
	w, err := parseWindow("rep1=1001500,1002500", map[string]int64{"rep1": 1000000})
	if err != nil || w.Began.Milliseconds() != 1500 || w.Ended.Milliseconds() != 2500 {
		t.Errorf("parseWindow: got %+v, %v; want 1.5 s to 2.5 s after the run began", w, err)
	}

	for _, args := range [][]string{
		{"plot", "--series", "rep1=" + csv},                                             // no --out
		{"plot", "--out", out, "--series", "rep1"},                                      // no file
		{"plot", "--out", out, "--series", "rep1=" + csv, "--window", "rep2=1,2"},       // unknown label
		{"plot", "--out", out, "--series", "rep1=" + csv, "--window", "rep1=1002500,1"}, // end before start
		{"plot", "--out", out, "--series", "rep1=" + filepath.Join(dir, "missing.csv")}, // no such file
	} {
		cmd := command(&stdout, &stderr)
		cmd.SetArgs(args)
		if err := cmd.Execute(); err == nil {
			t.Errorf("%q: want an error", args)
		}
	}
}
