package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Result is the outcome of one run, printed as text or, with --output json,
// as one JSON object on one line. The JSON field names are a contract for
// scripts (ci/bench.sh, metabench compare): fields may be added, never
// renamed.
type Result struct {
	// The run's settings.
	Command     string   `json:"command"`         // put, get, offsets, sessions, sessions-list
	Target      string   `json:"target"`          // meta or etcd
	Label       string   `json:"label,omitempty"` // --label, for compare
	Endpoints   []string `json:"endpoints"`
	Clients     int      `json:"clients"`
	Conns       int      `json:"conns"`
	Batch       int      `json:"batch"`
	KeySize     int      `json:"key_size"`
	ValueSize   int      `json:"value_size"`
	Consistency string   `json:"consistency,omitempty"` // reads only
	NoCoalesce  bool     `json:"no_coalesce,omitempty"` // meta: --no-coalesce
	Seed        uint64   `json:"seed"`
	// Unit names an item ("puts", "gets", "offsets", "sessions").
	Unit string `json:"unit"`
	// Total is the number of items asked for.
	Total int64 `json:"total"`

	// Calls is the number of calls planned (total / batch, rounded up);
	// Done how many returned (fewer when the run stopped early).
	Calls int64 `json:"calls"`
	Done  int64 `json:"done"`
	// OK calls succeeded, carrying Items items.
	OK    int64 `json:"ok"`
	Items int64 `json:"items"`
	// Failed calls: definitely not applied, outcome unknown (writes only),
	// and reads of loaded keys that found nothing (for sessions-list:
	// pages that lacked a loaded session or did not continue the
	// listing).
	ErrorsDefinite int64 `json:"errors_definite"`
	ErrorsUnknown  int64 `json:"errors_unknown"`
	Missing        int64 `json:"missing"`
	// StaleMisses counts stale reads (successful calls) that found no
	// value for a loaded key: the replica had not caught up yet.
	StaleMisses int64 `json:"stale_misses"`
	// FirstError is the text of the first failure, if any.
	FirstError string `json:"first_error,omitempty"`
	// ErrorKinds counts the failed calls by outcome ("definite",
	// "unknown", "missing") and, but for missing, kind: the gRPC code
	// and meta's reason, e.g. "definite Unavailable WRONG_GROUP".
	ErrorKinds map[string]int64 `json:"error_kinds,omitempty"`
	// Aborted is true when the run stopped before every call was made
	// (too many failures, or interrupted).
	Aborted bool `json:"aborted"`

	// DurationSeconds is the wall-clock time from the first call to the
	// last return.
	DurationSeconds float64 `json:"duration_seconds"`
	// Throughput of successful calls and items.
	CallsPerSecond float64 `json:"calls_per_second"`
	ItemsPerSecond float64 `json:"items_per_second"`
	// Latency of successful calls, in milliseconds.
	LatencyMs Latency `json:"latency_ms"`
	// ClientCPUSeconds is the CPU time (user and system) metabench itself
	// used during the timed phase; on a machine it shares with the cluster
	// it is CPU the cluster did not get.
	ClientCPUSeconds float64 `json:"client_cpu_seconds"`
	// ServerCPUSeconds is the CPU time (user and system) the processes
	// named by --server-pids used during the timed phase, summed, read
	// from /proc; 0 when none were named. Divided by Items it is the
	// cluster's CPU per item (metabench compare's "cpu us/op").
	ServerCPUSeconds float64 `json:"server_cpu_seconds,omitempty"`
}

// Latency summarises a latency distribution, in milliseconds.
type Latency struct {
	Mean float64 `json:"mean"`
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p999"`
	Max  float64 `json:"max"`
}

// newResult fills the measured figures; the caller fills the settings.
func newResult(c *counters, calls int64, elapsed time.Duration, h *hdrhistogram.Histogram) *Result {
	r := &Result{
		Calls:           calls,
		Done:            c.calls.Load(),
		OK:              c.ok.Load(),
		Items:           c.items.Load(),
		ErrorsDefinite:  c.definite.Load(),
		ErrorsUnknown:   c.unknown.Load(),
		Missing:         c.missing.Load(),
		StaleMisses:     c.staleMisses.Load(),
		DurationSeconds: elapsed.Seconds(),
	}
	if p := c.firstErr.Load(); p != nil {
		r.FirstError = (*p).Error()
	}
	c.kindsMu.Lock()
	r.ErrorKinds = maps.Clone(c.kinds)
	c.kindsMu.Unlock()
	if s := elapsed.Seconds(); s > 0 {
		r.CallsPerSecond = float64(r.OK) / s
		r.ItemsPerSecond = float64(r.Items) / s
	}
	if h.TotalCount() > 0 {
		ms := func(us int64) float64 { return float64(us) / 1000 }
		r.LatencyMs = Latency{
			Mean: h.Mean() / 1000,
			P50:  ms(h.ValueAtQuantile(50)),
			P90:  ms(h.ValueAtQuantile(90)),
			P99:  ms(h.ValueAtQuantile(99)),
			P999: ms(h.ValueAtQuantile(99.9)),
			Max:  ms(h.Max()),
		}
	}
	return r
}

// writeJSON prints r as one line of JSON.
func (r *Result) writeJSON(w io.Writer) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// writeText prints r for people.
func (r *Result) writeText(w io.Writer) error {
	var b strings.Builder
	settings := fmt.Sprintf("clients %d, conns %d, batch %d, key %d B, value %d B, seed %d",
		r.Clients, r.Conns, r.Batch, r.KeySize, r.ValueSize, r.Seed)
	if r.Consistency != "" {
		settings += ", " + r.Consistency
	}
	fmt.Fprintf(&b, "metabench %s on %s %s (%s)\n", r.Command, r.Target, strings.Join(r.Endpoints, ","), settings)
	fmt.Fprintf(&b, "  %-11s %d of %d planned", "calls", r.Done, r.Calls)
	if r.Aborted {
		b.WriteString(" (stopped early)")
	}
	b.WriteString("\n")
	fmt.Fprintf(&b, "  %-11s %d succeeded, carrying %d %s\n", "ok", r.OK, r.Items, r.Unit)
	fmt.Fprintf(&b, "  %-11s %d definite, %d unknown outcome, %d missing\n", "errors", r.ErrorsDefinite, r.ErrorsUnknown, r.Missing)
	if r.StaleMisses > 0 {
		fmt.Fprintf(&b, "  %-11s %d stale reads found nothing (the replica lagged; not failures)\n", "stale", r.StaleMisses)
	}
	if len(r.ErrorKinds) > 0 {
		var kinds []string
		for _, k := range slices.Sorted(maps.Keys(r.ErrorKinds)) {
			kinds = append(kinds, fmt.Sprintf("%d %s", r.ErrorKinds[k], k))
		}
		fmt.Fprintf(&b, "  %-11s %s\n", "by kind", strings.Join(kinds, ", "))
	}
	if r.FirstError != "" {
		fmt.Fprintf(&b, "  %-11s %s\n", "first error", r.FirstError)
	}
	fmt.Fprintf(&b, "  %-11s %.3f s (metabench used %.2f s of CPU)\n", "duration", r.DurationSeconds, r.ClientCPUSeconds)
	fmt.Fprintf(&b, "  %-11s %.1f %s/s", "throughput", r.ItemsPerSecond, r.Unit)
	if r.Batch > 1 {
		fmt.Fprintf(&b, " (%.1f calls/s)", r.CallsPerSecond)
	}
	b.WriteString("\n")
	l := r.LatencyMs
	fmt.Fprintf(&b, "  %-11s p50 %s  p90 %s  p99 %s  p99.9 %s  max %s  (mean %s, per call)\n", "latency",
		fmtMs(l.P50), fmtMs(l.P90), fmtMs(l.P99), fmtMs(l.P999), fmtMs(l.Max), fmtMs(l.Mean))
	_, err := io.WriteString(w, b.String())
	return err
}

// fmtMs prints milliseconds with a precision that suits their size.
func fmtMs(ms float64) string {
	switch {
	case ms >= 100:
		return fmt.Sprintf("%.0fms", ms)
	case ms >= 10:
		return fmt.Sprintf("%.1fms", ms)
	default:
		return fmt.Sprintf("%.2fms", ms)
	}
}
