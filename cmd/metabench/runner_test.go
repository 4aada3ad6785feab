package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/metamq/meta/rpc/metapb"
	"github.com/metamq/meta/verify/testkit"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var (
	errFakeDefinite = errors.New("fake: definitely not applied")
	errFakeUnknown  = errors.New("fake: outcome unknown")
)

// fakeConn is an in-memory store; fail decides, per call number, whether
// a call fails and how.
type fakeConn struct {
	mu    sync.Mutex // guards the fields below
	store map[string]string
	puts  map[string]int // how many times each key was put
	calls int
	// offsets counts committed offsets per "group/topic/partition".
	offsets map[string]int
	// sessions holds the sessions put, by client id; sessionPuts counts
	// how many times each was put.
	sessions    map[string]session
	sessionPuts map[string]int
	fail        func(call int) error
	// block, when set, makes every call wait for its context to end.
	block bool
}

func newFakeConn() *fakeConn {
	return &fakeConn{store: map[string]string{}, puts: map[string]int{}, offsets: map[string]int{},
		sessions: map[string]session{}, sessionPuts: map[string]int{}}
}

func (f *fakeConn) Close() error { return nil }

func (f *fakeConn) unknown(err error) bool { return errors.Is(err, errFakeUnknown) }

func (f *fakeConn) enter(ctx context.Context) error {
	if f.block {
		<-ctx.Done()
		return ctx.Err()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	n := f.calls
	f.calls++
	if f.fail != nil {
		return f.fail(n)
	}
	return nil
}

// locked enters a call (see enter) and, unless that fails it, runs fn
// holding f.mu: the body of every fake call.
func (f *fakeConn) locked(ctx context.Context, fn func()) error {
	if err := f.enter(ctx); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	fn()
	return nil
}

func (f *fakeConn) put(ctx context.Context, key, value []byte) error {
	return f.locked(ctx, func() {
		f.store[string(key)] = string(value)
		f.puts[string(key)]++
	})
}

func (f *fakeConn) get(ctx context.Context, key []byte, _ bool) (bool, error) {
	var ok bool
	err := f.locked(ctx, func() { _, ok = f.store[string(key)] })
	return ok, err
}

func (f *fakeConn) commitOffsets(ctx context.Context, offsets []offsetCommit) error {
	return f.locked(ctx, func() {
		for _, o := range offsets {
			f.offsets[etcdOffsetKey(o)]++
		}
	})
}

func (f *fakeConn) fetchOffsets(ctx context.Context, partitions []offsetCommit, _ bool) (int, error) {
	found := 0
	err := f.locked(ctx, func() {
		for _, o := range partitions {
			if f.offsets[etcdOffsetKey(o)] > 0 {
				found++
			}
		}
	})
	return found, err
}

// putOnly implements a connection without reads or offsets.
type putOnly struct{ f *fakeConn }

func (p putOnly) put(ctx context.Context, key, value []byte) error { return p.f.put(ctx, key, value) }
func (p putOnly) Close() error                                     { return nil }
func (p putOnly) unknown(err error) bool                           { return p.f.unknown(err) }

func testConfig(clients int, total int64, batch int) runConfig {
	return runConfig{label: "test", clients: clients, total: total, batch: batch, timeout: 5 * time.Second,
		seed: 1, valueSize: 8, maxErrorRate: 0.01}
}

func TestRunPutWritesEveryKeyOnce(t *testing.T) {
	f := newFakeConn()
	wl := &putWorkload{keys: keySpace{prefix: "k/", size: 8}}
	res := mustRun(t, "run", wl, []conn{f, f}, testConfig(7, 500, 1))
	if res.OK != 500 || res.Items != 500 || res.Done != 500 || res.Calls != 500 {
		t.Errorf("got ok %d items %d done %d calls %d, want 500 each", res.OK, res.Items, res.Done, res.Calls)
	}
	if len(f.puts) != 500 {
		t.Errorf("distinct keys written: got %d, want 500", len(f.puts))
	}
	for k, n := range f.puts {
		if n != 1 {
			t.Errorf("key %q: got %d puts, want 1", k, n)
		}
		if len(k) != 8 || !strings.HasPrefix(k, "k/") {
			t.Errorf("key %q: want 8 bytes starting with k/", k)
		}
	}
	if res.LatencyMs.Max <= 0 || res.LatencyMs.P50 > res.LatencyMs.P99 || res.LatencyMs.P99 > res.LatencyMs.Max {
		t.Errorf("latency: got %+v, want 0 < p50 <= p99 <= max", res.LatencyMs)
	}
	if res.ItemsPerSecond <= 0 {
		t.Errorf("throughput: got %v, want > 0", res.ItemsPerSecond)
	}
}

func TestRunClassifiesFailures(t *testing.T) {
	tests := []struct {
		name         string
		wl           workload
		fail         func(int) error
		maxRate      float64
		wantDefinite int64
		wantUnknown  int64
		wantKinds    map[string]int64
		wantErr      error
	}{
		{
			name: "write unknown and definite",
			wl:   &putWorkload{keys: keySpace{prefix: "k", size: 8}},
			fail: func(n int) error {
				switch n % 10 {
				case 0:
					return errFakeUnknown
				case 1:
					return errFakeDefinite
				}
				return nil
			},
			maxRate: 0.5, wantDefinite: 10, wantUnknown: 10,
			wantKinds: map[string]int64{"definite other": 10, "unknown other": 10},
		},
		{
			name: "reads never unknown",
			wl:   &getWorkload{keys: keySpace{prefix: "k", size: 8}, reads: reads{n: 10, load: false}},
			fail: func(n int) error {
				if n%10 == 0 {
					return errFakeUnknown
				}
				return nil
			},
			maxRate: 0.5, wantDefinite: 10,
			wantKinds: map[string]int64{"definite other": 10},
		},
		{
			name: "too many failures",
			wl:   &putWorkload{keys: keySpace{prefix: "k", size: 8}},
			fail: func(n int) error {
				if n%2 == 0 {
					return errFakeDefinite
				}
				return nil
			},
			maxRate: 0.01, wantErr: ErrTooManyFailures,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeConn()
			// Reads need the keys to exist: store them beforehand.
			ks := keySpace{prefix: "k", size: 8}
			for i := range int64(10) {
				f.store[string(ks.key(nil, i))] = "v"
			}
			f.fail = tt.fail
			cfg := testConfig(1, 100, 1) // one worker: call numbers are sequence numbers
			cfg.maxErrorRate = tt.maxRate
			res, err := run(context.Background(), tt.wl, []conn{f}, cfg)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("run: got error %v, want %v", err, tt.wantErr)
			}
			if tt.wantErr != nil {
				if !res.Aborted || res.Done >= 100 {
					t.Errorf("got aborted %v after %d calls, want aborted early", res.Aborted, res.Done)
				}
				return
			}
			if res.ErrorsDefinite != tt.wantDefinite || res.ErrorsUnknown != tt.wantUnknown {
				t.Errorf("got %d definite, %d unknown, want %d, %d", res.ErrorsDefinite, res.ErrorsUnknown, tt.wantDefinite, tt.wantUnknown)
			}
			if want := 100 - tt.wantDefinite - tt.wantUnknown; res.OK != want {
				t.Errorf("ok: got %d, want %d", res.OK, want)
			}
			if res.FirstError == "" {
				t.Errorf("first error: got none, want one")
			}
			if !maps.Equal(res.ErrorKinds, tt.wantKinds) {
				t.Errorf("error kinds: got %v, want %v", res.ErrorKinds, tt.wantKinds)
			}
		})
	}
}

// errorKind names a failure by what does not vary between calls: the
// code, meta's reason, a context error, so a run's failures can be told
// apart (ci/scaleout.sh checks that a split's only cost is routing).
func TestErrorKind(t *testing.T) {
	wrongGroup, err := status.New(codes.Unavailable, "data-0 does not hold key k at version 3").
		WithDetails(&errdetails.ErrorInfo{Reason: metapb.ReasonWrongGroup, Domain: metapb.ErrorDomain})
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := status.New(codes.Unavailable, "x").WithDetails(&errdetails.ErrorInfo{Reason: "R", Domain: "elsewhere"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		err  error
		want string
	}{
		{wrongGroup.Err(), "Unavailable WRONG_GROUP"},
		{fmt.Errorf("outcome unknown: %w", wrongGroup.Err()), "Unavailable WRONG_GROUP"},
		{foreign.Err(), "Unavailable"},
		{status.Error(codes.DeadlineExceeded, "late"), "DeadlineExceeded"},
		{fmt.Errorf("put: %w", context.DeadlineExceeded), "DeadlineExceeded"},
		{context.Canceled, "Canceled"},
		{errFakeDefinite, "other"},
	} {
		if got := errorKind(tt.err); got != tt.want {
			t.Errorf("errorKind(%v): got %q, want %q", tt.err, got, tt.want)
		}
	}
}

func TestRunGetLoadsThenCountsMissing(t *testing.T) {
	f := newFakeConn()
	wl := &getWorkload{keys: keySpace{prefix: "g", size: 6}, reads: reads{n: 50, load: true}}
	res := mustRun(t, "run", wl, []conn{f}, testConfig(4, 300, 1))
	if len(f.puts) != 50 {
		t.Errorf("keys loaded: got %d, want 50", len(f.puts))
	}
	if res.OK != 300 || res.Missing != 0 {
		t.Errorf("got ok %d missing %d, want 300 and 0", res.OK, res.Missing)
	}

	// Without loading, an empty store makes every read a missing key.
	empty := newFakeConn()
	wl.load = false
	cfg := testConfig(2, 100, 1)
	cfg.maxErrorRate = 1
	res = mustRun(t, "run without load", wl, []conn{empty}, cfg)
	if res.Missing != 100 || res.OK != 0 {
		t.Errorf("without load: got missing %d ok %d, want 100 and 0", res.Missing, res.OK)
	}

	// A stale read that finds nothing is a lagging replica, not a failure.
	wl.stale = true
	res = mustRun(t, "stale run without load", wl, []conn{empty}, testConfig(2, 100, 1))
	if res.StaleMisses != 100 || res.OK != 100 || res.Missing != 0 {
		t.Errorf("stale without load: got stale misses %d ok %d missing %d, want 100, 100, 0", res.StaleMisses, res.OK, res.Missing)
	}
}

func TestRunOffsetsBatches(t *testing.T) {
	f := newFakeConn()
	wl := &offsetsWorkload{offsetSpace: offsetSpace{groups: 2, partitions: 5, topic: "t", prefix: "g"}}
	res := mustRun(t, "run", wl, []conn{f}, testConfig(3, 103, 5))
	if res.Calls != 21 || res.OK != 21 || res.Items != 103 {
		t.Errorf("got calls %d ok %d items %d, want 21, 21, 103", res.Calls, res.OK, res.Items)
	}
	var sum int
	for _, n := range f.offsets {
		sum += n
	}
	if sum != 103 {
		t.Errorf("offsets committed: got %d, want 103", sum)
	}
	if len(f.offsets) != 10 {
		t.Errorf("partitions touched: got %d, want 10 (2 groups x 5)", len(f.offsets))
	}
}

// offsets-fetch commits every partition of every group first (in
// chunks), then fetches batches of them; without the load, every fetch
// misses.
func TestRunOffsetsFetchLoadsThenCountsMissing(t *testing.T) {
	f := newFakeConn()
	space := offsetSpace{groups: 3, partitions: 250, topic: "t", prefix: "g"}
	wl := &offsetsFetchWorkload{offsetSpace: space, reads: reads{n: 750, load: true}}
	res := mustRun(t, "run", wl, []conn{f}, testConfig(4, 200, 20))
	if len(f.offsets) != 750 {
		t.Errorf("offsets loaded: got %d, want 750 (3 groups x 250)", len(f.offsets))
	}
	for k, n := range f.offsets {
		if n != 1 {
			t.Errorf("%s committed %d times while loading, want once", k, n)
		}
	}
	if res.Calls != 10 || res.OK != 10 || res.Items != 200 || res.Missing != 0 {
		t.Errorf("got calls %d ok %d items %d missing %d, want 10, 10, 200, 0", res.Calls, res.OK, res.Items, res.Missing)
	}
	wl.load = false
	cfg := testConfig(2, 100, 10)
	cfg.maxErrorRate = 1
	res = mustRun(t, "run without load", wl, []conn{newFakeConn()}, cfg)
	if res.Missing != 10 || res.OK != 0 {
		t.Errorf("without load: got missing %d ok %d, want 10 and 0", res.Missing, res.OK)
	}
}

func TestRunUnsupported(t *testing.T) {
	c := putOnly{newFakeConn()}
	for _, wl := range []workload{
		&offsetsWorkload{offsetSpace: offsetSpace{groups: 1, partitions: 1, topic: "t"}},
		&getWorkload{keys: keySpace{prefix: "k", size: 4}, reads: reads{n: 1}},
	} {
		_, err := run(context.Background(), wl, []conn{c}, testConfig(1, 1, 1))
		if !errors.Is(err, errUnsupported) {
			t.Errorf("%s on a put-only connection: got %v, want %v", wl.unit(), err, errUnsupported)
		}
	}
	if _, err := run(context.Background(), &putWorkload{keys: keySpace{prefix: "k", size: 4}}, []conn{c}, testConfig(1, 1, 1)); err != nil {
		t.Errorf("put on a put-only connection: got %v, want success", err)
	}
}

func TestRunInterrupted(t *testing.T) {
	f := newFakeConn()
	f.block = true
	ctx, cancel := context.WithCancel(context.Background())
	var res *Result
	var err error
	done := make(chan struct{})
	go func() {
		defer close(done)
		res, err = run(ctx, &putWorkload{keys: keySpace{prefix: "k", size: 8}}, []conn{f}, testConfig(4, 100, 1))
	}()
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return within 10s of its context ending")
	}
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got error %v, want %v", err, context.Canceled)
	}
	if !res.Aborted || res.ErrorsUnknown != 0 || res.ErrorsDefinite != 0 {
		t.Errorf("got aborted %v, %d unknown, %d definite; want aborted with no failures counted", res.Aborted, res.ErrorsUnknown, res.ErrorsDefinite)
	}
}

func TestRunTimeoutIsUnknownForWrites(t *testing.T) {
	f := newFakeConn()
	f.block = true
	cfg := testConfig(2, 4, 1)
	cfg.timeout = time.Millisecond
	cfg.maxErrorRate = 1
	res := mustRun(t, "run", &putWorkload{keys: keySpace{prefix: "k", size: 8}}, []conn{timeoutUnknown{f}}, cfg)
	if res.ErrorsUnknown != 4 {
		t.Errorf("unknown: got %d, want 4", res.ErrorsUnknown)
	}
}

// timeoutUnknown treats a deadline as an unknown outcome, as real
// targets do.
type timeoutUnknown struct{ *fakeConn }

func (c timeoutUnknown) unknown(err error) bool { return errors.Is(err, context.DeadlineExceeded) }

func TestProgressLines(t *testing.T) {
	var buf testkit.SyncBuffer
	cfg := testConfig(1, 10, 1)
	cfg.progress, cfg.interval = &buf, time.Millisecond
	var n int64
	var mu sync.Mutex
	stop := startProgress(cfg, "put", "puts", 10, func() progressFigures {
		mu.Lock()
		defer mu.Unlock()
		n = min(n+1, 10)
		return progressFigures{done: n, unknown: 1}
	})
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(buf.String(), "10/10 puts") {
		if time.Now().After(deadline) {
			t.Fatalf("progress output after 10s: got %q, want a line with 10/10 puts", buf.String())
		}
		time.Sleep(time.Millisecond)
	}
	stop()
	stop() // safe twice
	line := strings.SplitN(buf.String(), "\n", 2)[0]
	if !strings.HasPrefix(line, "put ") || !strings.Contains(line, "1 unknown") {
		t.Errorf("first progress line: got %q, want it to start with \"put \" and count 1 unknown", line)
	}
}

// mustRun runs wl and fails the test (saying what ran) if run fails.
func mustRun(t *testing.T, what string, wl workload, conns []conn, cfg runConfig) *Result {
	t.Helper()
	res, err := run(context.Background(), wl, conns, cfg)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return res
}

func TestRunWritesCPUProfile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cpu.pprof")
	cfg := testConfig(2, 50, 1)
	cfg.cpuProfile = path
	res := mustRun(t, "run", &putWorkload{keys: keySpace{prefix: "k", size: 8}}, []conn{newFakeConn()}, cfg)
	if res.ClientCPUSeconds < 0 {
		t.Errorf("client CPU: got %v, want >= 0", res.ClientCPUSeconds)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatalf("profile: %v", err)
	}
	if st.Size() == 0 {
		t.Errorf("profile size: got 0, want a written profile")
	}

	cfg.cpuProfile = filepath.Join(t.TempDir(), "missing-dir", "cpu.pprof")
	if _, err := run(context.Background(), &putWorkload{keys: keySpace{prefix: "k", size: 8}}, []conn{newFakeConn()}, cfg); err == nil {
		t.Errorf("profile in a missing directory: got no error, want one")
	}
}

func TestRunDurationEndsBeforeTotal(t *testing.T) {
	f := newFakeConn()
	wl := &putWorkload{keys: keySpace{prefix: "k/", size: 16}}
	cfg := testConfig(4, 1_000_000_000, 1)
	cfg.duration = 20 * time.Millisecond
	res := mustRun(t, "run", wl, []conn{f}, cfg)
	if res.Aborted || res.Done >= res.Calls || res.OK != res.Done {
		t.Errorf("got aborted %v, done %d of %d, ok %d; want a complete run that stopped at its duration",
			res.Aborted, res.Done, res.Calls, res.OK)
	}
}

func TestRunSeriesAddsUpToTheResult(t *testing.T) {
	f := newFakeConn()
	f.fail = func(call int) error {
		if call%50 == 7 {
			return errFakeDefinite
		}
		return nil
	}
	wl := &putWorkload{keys: keySpace{prefix: "k/", size: 16}}
	var buf strings.Builder
	cfg := testConfig(4, 3000, 1)
	cfg.interval, cfg.series, cfg.maxErrorRate = time.Millisecond, &buf, 0.5
	res := mustRun(t, "run", wl, []conn{f}, cfg)
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if lines[0] != seriesHeader || len(lines) < 2 {
		t.Fatalf("series: got %q, want the header and samples", lines)
	}
	var items, failed int64
	var lastMs int64
	for _, l := range lines[1:] {
		var ms, n, fl int64
		var el, rate float64
		if _, err := fmt.Sscanf(l, "%d,%g,%d,%d,%g", &ms, &el, &n, &fl, &rate); err != nil {
			t.Fatalf("series line %q: %v", l, err)
		}
		if ms < lastMs || n < 0 || fl < 0 || rate < 0 {
			t.Errorf("series line %q: want time not going back and counts >= 0", l)
		}
		lastMs = ms
		items += n
		failed += fl
	}
	if items != res.Items || failed != res.ErrorsDefinite || items+failed != 3000 {
		t.Errorf("series sums: items %d failed %d, result items %d failed %d; want equal, 3000 together",
			items, failed, res.Items, res.ErrorsDefinite)
	}
}
