package main

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/metamq/meta/verify"
)

// errNotValid makes the exit status 1 after a verdict was printed.
var errNotValid = errors.New("metaverify: run is not valid")

func main() {
	cmd := newRoot(os.Stdout)
	if err := cmd.Execute(); err != nil {
		if !errors.Is(err, errNotValid) {
			fmt.Fprintln(os.Stderr, "metaverify:", err)
		}
		os.Exit(1)
	}
}

func newRoot(out io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "metaverify",
		Short:         "Check meta's recorded histories for linearizability and lost writes",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(out)
	root.AddCommand(newCheck(out), newSchedule(out))
	return root
}

func newCheck(out io.Writer) *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "check DIR",
		Short: "Re-check a saved run and write DIR/report.html",
		Long: "check re-runs every checker on DIR/history.jsonl and DIR/faults.jsonl " +
			"(convergence, observed live, is taken from DIR/summary.json), prints a verdict per " +
			"checker with what failed, writes DIR/report.html and exits 1 unless every checker is valid.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			res, err := verify.Recheck(args[0], timeout)
			if err != nil {
				return err
			}
			printResult(out, res)
			if res.Verdict != verify.Valid {
				return errNotValid
			}
			return nil
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 0, "linearizability check timeout (default: the run's; a timeout is not a pass)")
	return cmd
}

func printResult(out io.Writer, res *verify.Result) {
	fmt.Fprintf(out, "run %s: seed %d, %d ops (ok %d, fail %d, unknown %d, final reads %d), %d faults\n",
		res.Dir, res.Seed, res.Ops.Total, res.Ops.OK, res.Ops.Fail, res.Ops.Unknown, res.Ops.Final, len(res.Faults))
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	for _, c := range res.Checks {
		note := ""
		if c.Recorded {
			note = " (recorded)"
		}
		fmt.Fprintf(tw, "  %s%s\t%s\tjudged %d/%d\t%d ops\t%s\n", c.Checker, note, c.Verdict, c.Judged, c.Total, c.Ops, failing(c))
	}
	tw.Flush()
	for _, c := range res.Checks {
		if c.Verdict != verify.Valid && c.Details != "" {
			fmt.Fprintf(out, "  %s: %s\n", c.Checker, c.Details)
		}
	}
	if res.Error != "" {
		fmt.Fprintf(out, "  run stopped early: %s\n", res.Error)
	}
	for _, k := range slices.Sorted(maps.Keys(res.Recovery)) {
		fmt.Fprintf(out, "  recovery after %s: %s\n", k, res.Recovery[k])
	}
	fmt.Fprintf(out, "report: %s\n", filepath.Join(res.Dir, verify.ReportFile))
	fmt.Fprintf(out, "verdict: %s\n", strings.ToUpper(string(res.Verdict)))
	for _, g := range res.CoverageGaps {
		fmt.Fprintf(out, "coverage gap (the suite's, not the cluster's): %s\n", g)
	}
}

func failing(c verify.CheckResult) string {
	var parts []string
	if len(c.Failing) > 0 {
		list := c.Failing
		more := ""
		if len(list) > 10 {
			more = fmt.Sprintf(" (+%d more)", len(list)-10)
			list = list[:10]
		}
		parts = append(parts, "failing: "+strings.Join(list, ", ")+more)
	}
	if len(c.Undecided) > 0 {
		parts = append(parts, fmt.Sprintf("undecided: %d", len(c.Undecided)))
	}
	return strings.Join(parts, "; ")
}

func newSchedule(out io.Writer) *cobra.Command {
	var (
		seed   int64
		kinds  string
		total  time.Duration
		groups []string
	)
	cmd := &cobra.Command{
		Use:   "schedule",
		Short: "Print the fault schedule a seed gives (default schedule options)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ks, err := verify.ParseKinds(kinds)
			if err != nil {
				return err
			}
			faults := verify.Schedule(seed, ks, total, verify.ScheduleOptions{Groups: groups})
			fmt.Fprintf(out, "seed %d, %s, kinds %s\n", seed, total, kinds)
			for i := range faults {
				fmt.Fprintln(out, " ", faults[i].String())
			}
			return nil
		},
	}
	cmd.Flags().Int64Var(&seed, "seed", 1, "schedule seed")
	cmd.Flags().StringVar(&kinds, "kinds", "all", "fault kinds, comma-separated (all, partition, kill, pause, ...)")
	cmd.Flags().DurationVar(&total, "time", 60*time.Second, "workload duration")
	cmd.Flags().StringSliceVar(&groups, "groups", nil, "groups role targets may name (default metadata-0,data-0,offset-0)")
	return cmd
}
