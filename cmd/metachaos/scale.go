package main

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/metamq/meta/chaos"
	"github.com/metamq/meta/verify"
)

// imageCommand builds the node image (or an image of any binary, for the
// containers of ci/scaleout.sh) and prints its tag.
func imageCommand(s *suite) *cobra.Command {
	var repo string
	cmd := &cobra.Command{
		Use:   "image",
		Short: "Build the image of --binary (FROM scratch: the binary, its shared libraries, the loader) and print its tag",
		Long: "image builds, or reuses, the image chaos runs its nodes from: the --binary at\n" +
			"/bin/<name> as the entrypoint, with the shared libraries ldd lists and the loader.\n" +
			"Any binary works, so scripts can run metabench and metactl in containers too\n" +
			"(ci/scaleout.sh). It prints the tag (<repo>:<content hash>) on stdout.",
		Example: "  metachaos image --binary bin/metabench --repo meta-bench",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			img, err := chaos.BuildImage(cmd.Context(), s.binary, chaos.ImageOptions{Repo: repo, Log: s.logger()})
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(s.stdout, img.Tag)
			return err
		},
	}
	cmd.Flags().StringVar(&repo, "repo", chaos.DefaultImageRepo, "repository part of the tag")
	return cmd
}

// plotCommand draws `metabench --series` files as one SVG line chart.
func plotCommand(s *suite) *cobra.Command {
	var out, title string
	var seriesArgs, windowArgs []string
	cmd := &cobra.Command{
		Use:   "plot",
		Short: "Draw metabench --series CSV files as one SVG chart of throughput over time, with shaded windows",
		Long: "plot reads each --series LABEL=FILE (written by metabench --series) and draws its\n" +
			"items per second against seconds since that run began, one line per file. Each\n" +
			"--window LABEL=START_MS,END_MS[,NAME] shades a span given in Unix milliseconds,\n" +
			"placed on the time axis of the series with that label (ci/scaleout.sh shades\n" +
			"each repetition's rebalance: from adding nodes to balanced).",
		Example: "  metachaos plot --out tp.svg --series rep1=r1.csv --window rep1=1733350000000,1733350042000,rebalance",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return errors.New("--out: required")
			}
			if len(seriesArgs) == 0 {
				return errors.New("--series: give at least one LABEL=FILE")
			}
			var lines []chaos.Line
			origin := map[string]int64{} // label -> Unix ms the run began
			for i, a := range seriesArgs {
				label, file, ok := strings.Cut(a, "=")
				if !ok || label == "" || file == "" {
					return fmt.Errorf("--series %q: want LABEL=FILE", a)
				}
				if _, dup := origin[label]; dup {
					return fmt.Errorf("--series %q: label %q given twice", a, label)
				}
				f, err := os.Open(file)
				if err != nil {
					return fmt.Errorf("--series %q: %w", a, err)
				}
				l, start, err := readSeries(f)
				f.Close()
				if err != nil {
					return fmt.Errorf("--series %q: %w", a, err)
				}
				l.Name, l.Color = label, palette[i%len(palette)]
				lines = append(lines, l)
				origin[label] = start
			}
			var windows []verify.Fault
			for i, a := range windowArgs {
				w, err := parseWindow(a, origin)
				if err != nil {
					return fmt.Errorf("--window %q: %w", a, err)
				}
				w.ID = i + 1
				windows = append(windows, w)
			}
			return chaos.WriteLineChart(out, title, "items/s", lines, windows)
		},
	}
	f := cmd.Flags()
	f.StringVar(&out, "out", "", "SVG file to write (required)")
	f.StringVar(&title, "title", "Throughput over time", "chart title")
	f.StringArrayVar(&seriesArgs, "series", nil, "LABEL=FILE, a metabench --series CSV (repeatable)")
	f.StringArrayVar(&windowArgs, "window", nil, "LABEL=START_MS,END_MS[,NAME]: shade a span on series LABEL's time axis (repeatable)")
	return cmd
}

// palette colours the lines of plot in turn.
var palette = []string{"#1565c0", "#2a7d2a", "#c62828", "#8e24aa", "#e08a00", "#00838f"}

// seriesColumns are the columns of metabench's --series CSV that plot
// reads (metabench's seriesHeader; more may follow them).
var seriesColumns = []string{"unix_ms", "elapsed_s", "items", "failed", "items_per_second"}

// readSeries reads a --series CSV: the line (x seconds since the run
// began, y items per second) and the Unix milliseconds the run began.
func readSeries(r io.Reader) (chaos.Line, int64, error) {
	rows, err := csv.NewReader(r).ReadAll()
	if err != nil {
		return chaos.Line{}, 0, err
	}
	if len(rows) == 0 || len(rows[0]) < len(seriesColumns) || !slices.Equal(rows[0][:len(seriesColumns)], seriesColumns) {
		return chaos.Line{}, 0, fmt.Errorf("header: want %s", strings.Join(seriesColumns, ","))
	}
	if len(rows) < 2 {
		return chaos.Line{}, 0, errors.New("no samples")
	}
	var l chaos.Line
	var start int64
	for i, row := range rows[1:] {
		ms, err1 := strconv.ParseInt(row[0], 10, 64)
		el, err2 := strconv.ParseFloat(row[1], 64)
		rate, err3 := strconv.ParseFloat(row[4], 64)
		if err := errors.Join(err1, err2, err3); err != nil {
			return chaos.Line{}, 0, fmt.Errorf("line %d: %w", i+2, err)
		}
		if i == 0 {
			start = ms - int64(el*1000)
		}
		l.Xs, l.Ys = append(l.Xs, el), append(l.Ys, rate)
	}
	return l, start, nil
}

// parseWindow parses LABEL=START_MS,END_MS[,NAME] against the series'
// start times.
func parseWindow(a string, origin map[string]int64) (verify.Fault, error) {
	label, spec, ok := strings.Cut(a, "=")
	if !ok {
		return verify.Fault{}, errors.New("want LABEL=START_MS,END_MS[,NAME]")
	}
	start, found := origin[label]
	if !found {
		return verify.Fault{}, fmt.Errorf("no --series labelled %q", label)
	}
	parts := strings.Split(spec, ",")
	if len(parts) < 2 || len(parts) > 3 {
		return verify.Fault{}, errors.New("want LABEL=START_MS,END_MS[,NAME]")
	}
	b, err1 := strconv.ParseInt(parts[0], 10, 64)
	e, err2 := strconv.ParseInt(parts[1], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return verify.Fault{}, err
	}
	if e < b {
		return verify.Fault{}, fmt.Errorf("END_MS %d is before START_MS %d", e, b)
	}
	name := label
	if len(parts) == 3 && parts[2] != "" {
		name = label + " " + parts[2]
	}
	ms := func(v int64) time.Duration { return time.Duration(max(v-start, 0)) * time.Millisecond }
	return verify.Fault{Kind: verify.FaultKind(name), Start: ms(b), Duration: ms(e) - ms(b), Began: ms(b), Ended: ms(e)}, nil
}
