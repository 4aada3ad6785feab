package main

import (
	"bytes"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

func TestNewResultFigures(t *testing.T) {
	var c counters
	c.calls.Store(10)
	c.ok.Store(8)
	c.items.Store(80)
	c.definite.Store(1)
	c.unknown.Store(1)
	h := hdrhistogram.New(histMin, histMax, histDigits)
	for _, us := range []int64{1000, 2000, 3000, 4000, 5000, 6000, 7000, 100000} {
		if err := h.RecordValue(us); err != nil {
			t.Fatal(err)
		}
	}
	r := newResult(&c, 10, 2*time.Second, h)
	if r.CallsPerSecond != 4 || r.ItemsPerSecond != 40 {
		t.Errorf("throughput: got %v calls/s, %v items/s, want 4 and 40", r.CallsPerSecond, r.ItemsPerSecond)
	}
	if r.LatencyMs.P50 < 3.99 || r.LatencyMs.P50 > 4.01 {
		t.Errorf("p50: got %vms, want 4ms", r.LatencyMs.P50)
	}
	if r.LatencyMs.Max < 99.9 || r.LatencyMs.Max > 100.1 {
		t.Errorf("max: got %vms, want 100ms", r.LatencyMs.Max)
	}
	if r.ErrorsDefinite != 1 || r.ErrorsUnknown != 1 || r.Done != 10 || r.Calls != 10 {
		t.Errorf("counts: got %+v", r)
	}
}

func sampleResult(target string, clients int, rate, p99 float64) *Result {
	return &Result{Command: "put", Target: target, Endpoints: []string{"a:1"}, Clients: clients, Conns: 1, Batch: 1,
		KeySize: 32, ValueSize: 256, Seed: 1, Unit: "puts", Total: 100, Calls: 100, Done: 100, OK: 100, Items: 100,
		DurationSeconds: 1, CallsPerSecond: rate, ItemsPerSecond: rate, LatencyMs: Latency{P50: p99 / 2, P99: p99, Max: p99 * 2}}
}

func TestResultJSONRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	in := []*Result{sampleResult("meta", 16, 1000, 10), sampleResult("etcd", 16, 100, 20)}
	in[1].Consistency = "linearizable"
	for _, r := range in {
		if err := r.writeJSON(&buf); err != nil {
			t.Fatal(err)
		}
	}
	if n := strings.Count(buf.String(), "\n"); n != 2 {
		t.Fatalf("lines: got %d, want one per result (2)", n)
	}
	out, err := readResults(strings.NewReader(buf.String()+"\n"), "buf")
	if err != nil {
		t.Fatalf("readResults: %v", err)
	}
	if !reflect.DeepEqual(out, in) {
		t.Errorf("round trip: got %+v, want %+v", out, in)
	}
	if _, err := readResults(strings.NewReader("{not json\n"), "bad"); err == nil || !strings.Contains(err.Error(), "bad:1") {
		t.Errorf("bad input: got %v, want an error naming bad:1", err)
	}
}

// comparisonLines writes the comparison of results and returns its lines,
// failing unless they are a header and rows rows.
func comparisonLines(t *testing.T, results []*Result, median bool, rows int) []string {
	t.Helper()
	var buf bytes.Buffer
	if err := writeComparison(&buf, results, median); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(buf.String(), "\n"), "\n")
	if len(lines) != 1+rows {
		t.Fatalf("got %d lines, want header and %d rows:\n%s", len(lines), rows, buf.String())
	}
	return lines
}

func TestWriteComparison(t *testing.T) {
	results := []*Result{
		sampleResult("meta", 256, 50000, 40),
		sampleResult("etcd", 256, 5000, 100),
		sampleResult("meta", 1, 800, 3),
		sampleResult("etcd", 1, 400, 2),
	}
	get := sampleResult("etcd", 256, 5400, 90)
	get.Command, get.Consistency = "get", "linearizable"
	results = append(results, get)
	lines := comparisonLines(t, results, false, 3)
	tests := []struct {
		line int
		want []string
	}{
		{0, []string{"workload", "meta ops/s", "etcd ops/s", "meta/etcd", "p99 no worse"}},
		{1, []string{"put", "256", "50000", "5000", "10.00x", "yes"}},
		{2, []string{"put", "1", "800", "400", "2.00x", "no"}},
		{3, []string{"get linearizable", "256", "5400", "-"}},
	}
	for _, tt := range tests {
		for _, w := range tt.want {
			if !strings.Contains(lines[tt.line], w) {
				t.Errorf("line %d: got %q, want it to contain %q", tt.line, lines[tt.line], w)
			}
		}
	}
}

func TestWriteText(t *testing.T) {
	r := sampleResult("meta", 16, 1234.5, 12)
	r.ErrorsUnknown, r.FirstError = 2, "boom"
	r.ErrorKinds = map[string]int64{"unknown Unavailable": 2, "definite Unavailable WRONG_GROUP": 1}
	var buf bytes.Buffer
	if err := r.writeText(&buf); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"metabench put on meta", "1234.5 puts/s", "2 unknown", "first error boom", "p99 12.0ms",
		"by kind     1 definite Unavailable WRONG_GROUP, 2 unknown Unavailable\n"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("text report: got\n%s\nwant it to contain %q", buf.String(), want)
		}
	}
}

func TestWriteComparisonMedian(t *testing.T) {
	results := []*Result{
		sampleResult("six", 256, 3000, 40),
		sampleResult("three", 256, 1000, 50),
		sampleResult("six", 256, 1000, 90),
		sampleResult("three", 256, 1500, 60),
		sampleResult("six", 256, 2000, 30),
		sampleResult("three", 256, 1100, 55),
	}
	lines := comparisonLines(t, results, true, 1)
	// six: median 2000 (1000-3000), p99 median 40; three: median 1100
	// (1000-1500), p99 median 55.
	for _, w := range []string{"min-max", "runs", "six/three"} {
		if !strings.Contains(lines[0], w) {
			t.Errorf("header %q: want %q", lines[0], w)
		}
	}
	got := strings.Fields(lines[1])
	want := []string{"put", "256", "2000", "1000-3000", "3"}
	if len(got) < len(want) || !slices.Equal(got[:len(want)], want) {
		t.Errorf("row %q: want it to start %q", lines[1], want)
	}
	for _, w := range []string{"1100", "1000-1500", "40.00", "55.00", "1.82x", "yes"} {
		if !strings.Contains(lines[1], w) {
			t.Errorf("row %q: want it to contain %q", lines[1], w)
		}
	}
}

// TestWriteComparisonServerCPU checks the servers' CPU per item: a column
// per target once some result measured its servers, "-" where one did not.
func TestWriteComparisonServerCPU(t *testing.T) {
	meta, etcd, oxia := sampleResult("meta", 256, 50000, 40), sampleResult("etcd", 256, 5000, 100), sampleResult("oxia", 256, 9000, 50)
	meta.ServerCPUSeconds = 0.0025 // 100 items: 25 µs each
	etcd.ServerCPUSeconds = 0.0125 // 125 µs each
	lines := comparisonLines(t, []*Result{meta, etcd, oxia}, false, 1)
	if got := strings.Count(lines[0], "cpu us/op"); got != 3 {
		t.Fatalf("header %q: got %d cpu columns, want 3", lines[0], got)
	}
	fields := strings.Fields(lines[1])
	want := []string{"put", "256", "50000", "20.00", "40.00", "0", "25", "5000", "50.00", "100.00", "0", "125", "9000", "25.00", "50.00", "0", "-"}
	if !slices.Equal(fields, want) {
		t.Fatalf("row: got %q, want %q", fields, want)
	}
	without := comparisonLines(t, []*Result{sampleResult("meta", 1, 800, 3)}, false, 1)
	if strings.Contains(without[0], "cpu") {
		t.Fatalf("header without measured servers: got %q, want no cpu column", without[0])
	}
}

// TestPidsCPU reads this process's CPU time from /proc and refuses a
// process that does not exist.
func TestPidsCPU(t *testing.T) {
	self, err := pidsCPU([]int{os.Getpid(), os.Getpid()})
	if err != nil {
		t.Fatal(err)
	}
	if self < 0 {
		t.Fatalf("CPU of this process: got %v, want >= 0", self)
	}
	if _, err := pidsCPU([]int{1 << 30}); err == nil || !strings.Contains(err.Error(), "--server-pids") {
		t.Fatalf("pidsCPU of a missing process: got %v, want an error naming --server-pids", err)
	}
}
