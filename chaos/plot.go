package chaos

import (
	"fmt"
	"html"
	"io"
	"math"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/metamq/meta/verify"
)

// Plot files of a run folder.
const (
	ThroughputPlot = "throughput.svg"
	LatencyPlot    = "latency.svg"
)

// The plots are SVG written by hand: two line charts over the run's time
// (the run clock of history.jsonl, in seconds), with every fault window
// (Began..Ended) shaded and labelled "#id kind". Throughput counts the
// workload's ops per second by return time and outcome (final reads are
// left out). Latency shows, per bucket, the median, 99th percentile and
// maximum of ok ops' durations (Return - Call) on a log scale.

// series is one line of a chart.
type series struct {
	name  string
	color string
	xs    []float64 // seconds
	ys    []float64
}

// chart is one SVG line chart.
type chart struct {
	title, ylabel string
	logY          bool
	xmax          float64
	series        []series
	faults        []verify.Fault
}

const (
	plotW, plotH               = 1100, 360
	padL, padR, padT, padB     = 70, 20, 60, 50
	innerW                     = plotW - padL - padR
	innerH                     = plotH - padT - padB
	bucketMin, bucketsPerChart = 250 * time.Millisecond, 120
)

// WritePlots writes ThroughputPlot and LatencyPlot into dir.
func WritePlots(dir string, ops []verify.Op, faults []verify.Fault) error {
	tp, lat := plots(ops, faults)
	for name, c := range map[string]chart{ThroughputPlot: tp, LatencyPlot: lat} {
		if err := writeSVG(dir+"/"+name, c); err != nil {
			return err
		}
	}
	return nil
}

func writeSVG(path string, c chart) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("chaos: plot: %w", err)
	}
	if err := c.render(f); err != nil {
		f.Close()
		return fmt.Errorf("chaos: plot %s: %w", path, err)
	}
	return f.Close()
}

// plots computes both charts from a history.
func plots(ops []verify.Op, faults []verify.Fault) (throughput, latency chart) {
	var end time.Duration
	for _, op := range ops {
		if !op.Final && time.Duration(op.Return) > end {
			end = time.Duration(op.Return)
		}
	}
	for _, f := range faults {
		end = max(end, f.Ended)
	}
	bucket := max(bucketMin, (end / bucketsPerChart).Round(250*time.Millisecond))
	n := int(end/bucket) + 1
	ok, fail, unknown := make([]float64, n), make([]float64, n), make([]float64, n)
	lats := make([][]float64, n)
	for _, op := range ops {
		if op.Final || op.Return <= 0 {
			continue
		}
		i := int(time.Duration(op.Return) / bucket)
		switch op.Outcome {
		case verify.OutcomeOK:
			ok[i]++
			lats[i] = append(lats[i], float64(op.Return-op.Call)/1e6)
		case verify.OutcomeFail:
			fail[i]++
		case verify.OutcomeUnknown:
			unknown[i]++
		}
	}
	perSec := bucket.Seconds()
	xs := make([]float64, n)
	for i := range xs {
		xs[i] = (float64(i) + 0.5) * perSec
	}
	scale := func(v []float64) []float64 {
		out := make([]float64, len(v))
		for i := range v {
			out[i] = v[i] / perSec
		}
		return out
	}
	xmax := math.Max(end.Seconds(), 1)
	throughput = chart{
		title:  fmt.Sprintf("Throughput: workload ops per second by outcome (buckets of %s; faults shaded)", bucket),
		ylabel: "ops/s", xmax: xmax, faults: faults,
		series: []series{
			{"ok", "#2a7d2a", xs, scale(ok)},
			{"fail", "#e08a00", xs, scale(fail)},
			{"unknown", "#c62828", xs, scale(unknown)},
		},
	}
	var lx, p50, p99, pmax []float64
	for i, l := range lats {
		if len(l) == 0 {
			// A bucket without ok ops breaks the lines (NaN), rather
			// than a straight line across an outage.
			if len(lx) > 0 && !math.IsNaN(p50[len(p50)-1]) {
				lx, p50, p99, pmax = append(lx, xs[i]), append(p50, math.NaN()), append(p99, math.NaN()), append(pmax, math.NaN())
			}
			continue
		}
		slices.Sort(l)
		lx = append(lx, xs[i])
		p50 = append(p50, quantile(l, 0.5))
		p99 = append(p99, quantile(l, 0.99))
		pmax = append(pmax, l[len(l)-1])
	}
	latency = chart{
		title:  fmt.Sprintf("Latency of ok ops, ms, log scale (buckets of %s; faults shaded)", bucket),
		ylabel: "ms", logY: true, xmax: xmax, faults: faults,
		series: []series{
			{"p50", "#1565c0", lx, p50},
			{"p99", "#8e24aa", lx, p99},
			{"max", "#9e9e9e", lx, pmax},
		},
	}
	return throughput, latency
}

// quantile of sorted values, nearest rank.
func quantile(sorted []float64, q float64) float64 {
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// faultColor gives fault families their shades.
func faultColor(k verify.FaultKind) string {
	switch k {
	case verify.FaultKill, verify.FaultKillAll, verify.FaultCrashpoint:
		return "#ef9a9a"
	case verify.FaultPause:
		return "#ffe082"
	case verify.FaultDelay:
		return "#b3e5fc"
	case verify.FaultMember, verify.FaultTransfer:
		return "#c5e1a5"
	}
	return "#ce93d8" // network partitions, flap, lag
}

func (c chart) render(w io.Writer) error {
	ymax := 0.0
	ymin := math.Inf(1)
	for _, s := range c.series {
		for _, y := range s.ys {
			if math.IsNaN(y) {
				continue
			}
			ymax = math.Max(ymax, y)
			if y > 0 {
				ymin = math.Min(ymin, y)
			}
		}
	}
	var ticks []float64
	var yOf func(float64) float64
	if c.logY {
		lo := math.Pow(10, math.Floor(math.Log10(math.Max(math.Min(ymin, ymax), 0.01))))
		hi := math.Pow(10, math.Ceil(math.Log10(math.Max(ymax, lo*10))))
		if hi <= lo {
			hi = lo * 10
		}
		for t := lo; t <= hi*1.0001; t *= 10 {
			ticks = append(ticks, t)
		}
		yOf = func(v float64) float64 {
			v = math.Max(v, lo)
			return padT + innerH - innerH*(math.Log10(v)-math.Log10(lo))/(math.Log10(hi)-math.Log10(lo))
		}
	} else {
		step := niceStep(math.Max(ymax, 1) / 5)
		hi := math.Max(step, math.Ceil(ymax/step)*step)
		for t := 0.0; t <= hi*1.0001; t += step {
			ticks = append(ticks, t)
		}
		yOf = func(v float64) float64 { return padT + innerH - innerH*v/hi }
	}
	xOf := func(s float64) float64 { return padL + innerW*s/c.xmax }

	var b strings.Builder
	e := html.EscapeString
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="11">`+"\n", plotW, plotH, plotW, plotH)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", plotW, plotH)
	fmt.Fprintf(&b, `<text x="%d" y="18" font-size="14" font-weight="bold">%s</text>`+"\n", padL, e(c.title))
	// Fault windows first, so lines draw over them.
	for _, f := range c.faults {
		if f.Ended <= f.Began {
			continue
		}
		x0, x1 := xOf(f.Began.Seconds()), xOf(f.Ended.Seconds())
		title := f.String()
		if f.Err != "" {
			title += " — " + f.Err
		}
		fmt.Fprintf(&b, `<g><title>%s</title><rect x="%.1f" y="%d" width="%.1f" height="%d" fill="%s" fill-opacity="0.45"/>`,
			e(title), x0, padT, math.Max(x1-x0, 1), innerH, faultColor(f.Kind))
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" font-size="10" transform="rotate(-30 %.1f %d)">#%d %s</text></g>`+"\n",
			x0+2, padT-4, x0+2, padT-4, f.ID, e(string(f.Kind)))
	}
	// Axes and grid.
	for _, t := range ticks {
		y := yOf(t)
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#e0e0e0"/><text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n",
			padL, padL+innerW, y, y, padL-6, y+4, fmtTick(t))
	}
	xstep := niceStep(c.xmax / 10)
	for t := 0.0; t <= c.xmax+1e-9; t += xstep {
		x := xOf(t)
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="#999"/><text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n",
			x, x, padT+innerH, padT+innerH+5, x, padT+innerH+18, fmtTick(t))
	}
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#666"/>`+"\n", padL, padT, innerW, innerH)
	fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">run time, s</text>`+"\n", padL+innerW/2, plotH-8)
	fmt.Fprintf(&b, `<text x="16" y="%d" text-anchor="middle" transform="rotate(-90 16 %d)">%s</text>`+"\n", padT+innerH/2, padT+innerH/2, e(c.ylabel))
	// Lines (broken at NaN) and legend.
	for i, s := range c.series {
		var pts []string
		flush := func() {
			if len(pts) > 0 {
				fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/>`+"\n", s.color, strings.Join(pts, " "))
			}
			pts = pts[:0]
		}
		for j := range s.xs {
			if math.IsNaN(s.ys[j]) {
				flush()
				continue
			}
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", xOf(s.xs[j]), yOf(s.ys[j])))
		}
		flush()
		lx := padL + innerW - 90*(len(c.series)-i)
		fmt.Fprintf(&b, `<rect x="%d" y="28" width="14" height="4" fill="%s"/><text x="%d" y="33">%s</text>`+"\n", lx, s.color, lx+18, e(s.name))
	}
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// niceStep rounds a raw step up to 1, 2 or 5 times a power of ten.
func niceStep(raw float64) float64 {
	if raw <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if raw <= m*p {
			return m * p
		}
	}
	return 10 * p
}

func fmtTick(v float64) string {
	if v != 0 && math.Abs(v) < 1 {
		return fmt.Sprintf("%g", v)
	}
	return fmt.Sprintf("%.0f", v)
}

// Line is one line of WriteLineChart: Ys[i] at Xs[i] seconds (NaN breaks
// the line).
type Line struct {
	Name, Color string
	Xs, Ys      []float64
}

// WriteLineChart writes an SVG line chart of lines to path, in the style
// of the run plots: x in seconds from 0, a linear y axis, and windows
// (Began..Ended, labelled "#ID Kind") shaded behind the lines. Tools other
// than the fault runner use it (ci/scaleout.sh plots throughput through a
// rebalance with `metachaos plot`).
func WriteLineChart(path, title, ylabel string, lines []Line, windows []verify.Fault) error {
	c := chart{title: title, ylabel: ylabel, xmax: 1, faults: windows}
	for _, l := range lines {
		for _, x := range l.Xs {
			c.xmax = math.Max(c.xmax, x)
		}
		c.series = append(c.series, series{name: l.Name, color: l.Color, xs: l.Xs, ys: l.Ys})
	}
	for _, w := range windows {
		c.xmax = math.Max(c.xmax, w.Ended.Seconds())
	}
	return writeSVG(path, c)
}
