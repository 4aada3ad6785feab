package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/metamq/meta/verify"
)

// progress shows where a run is: on a terminal one line rewritten in
// place, otherwise a line at each phase change and every ten seconds.
type progress struct {
	w     io.Writer
	tty   bool
	label string

	phase     string
	fault     string
	ops       int
	rate      float64
	lastOps   int
	lastAt    time.Duration
	lastPrint time.Time
	width     int
}

func newProgress(w io.Writer, label string) *progress {
	tty := false
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			tty = true
		}
	}
	return &progress{w: w, tty: tty, label: label}
}

// update is the run's Progress callback.
func (p *progress) update(pr verify.Progress) {
	changed := pr.Phase != p.phase
	p.phase = pr.Phase
	switch pr.Phase {
	case "workload", "inject", "heal":
		if pr.Elapsed > p.lastAt+500*time.Millisecond && pr.Ops >= p.lastOps {
			p.rate = float64(pr.Ops-p.lastOps) / (pr.Elapsed - p.lastAt).Seconds()
			p.lastOps, p.lastAt = pr.Ops, pr.Elapsed
		}
		p.ops = pr.Ops
		fault := ""
		if pr.Fault != nil {
			fault = pr.Fault.String()
		}
		changed = changed || fault != p.fault
		p.fault = fault
	}
	line := fmt.Sprintf("[%s] %4.0fs %-9s %6.0f ops/s %7d ops", p.label, pr.Elapsed.Seconds(), pr.Phase, p.rate, p.ops)
	if p.fault != "" && (pr.Phase == "workload" || pr.Phase == "inject" || pr.Phase == "heal") {
		line += " | " + p.fault
	}
	if p.tty {
		pad := ""
		if len(line) < p.width {
			pad = strings.Repeat(" ", p.width-len(line))
		}
		p.width = len(line)
		fmt.Fprint(p.w, "\r"+line+pad)
		return
	}
	if changed || time.Since(p.lastPrint) >= 10*time.Second {
		p.lastPrint = time.Now()
		fmt.Fprintln(p.w, line)
	}
}

// done ends the progress display.
func (p *progress) done() {
	if p.tty && p.width > 0 {
		fmt.Fprintln(p.w)
	}
}
