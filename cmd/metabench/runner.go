package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"golang.org/x/sync/errgroup"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/metamq/meta/rpc/metapb"
)

// ErrTooManyFailures is returned when more than the allowed fraction of
// calls failed; the result is still complete and printed.
var ErrTooManyFailures = errors.New("metabench: too many failed calls")

// Latency histogram range, in microseconds: 1 µs to 1 minute, 3
// significant digits (about 130 KiB per worker).
const (
	histMin    = 1
	histMax    = int64(time.Minute / time.Microsecond)
	histDigits = 3
)

// runConfig is what the runner needs, already validated.
type runConfig struct {
	// label starts the progress line (the command's name).
	label     string
	clients   int
	total     int64 // items
	batch     int   // items per call
	timeout   time.Duration
	seed      uint64
	valueSize int
	// maxErrorRate is the fraction of calls that may fail before the run
	// counts as failed.
	maxErrorRate float64
	// progress receives the progress line; nil for none. tty selects a
	// carriage-return line over one line per report.
	progress io.Writer
	tty      bool
	interval time.Duration // between progress lines; default 1s
	// cpuProfile, when set, receives a CPU profile of the timed phase
	// (the load generator's own cost, which shares the machine's cores).
	cpuProfile string
	// duration, when more than 0, ends the timed phase: no call starts
	// after it (calls in flight finish), even if total is not reached.
	duration time.Duration
	// series, when set, receives one CSV line per interval of the timed
	// phase (seriesHeader), for plots of throughput over time.
	series io.Writer
	// serverPIDs are the cluster's processes on this machine, whose CPU
	// time over the timed phase the result reports.
	serverPIDs []int
}

// seriesHeader names the columns of the --series CSV: the sample's wall
// clock (Unix milliseconds), seconds since the timed phase began, items of
// successful calls and failed calls since the previous sample, and the
// items per second over that interval.
const seriesHeader = "unix_ms,elapsed_s,items,failed,items_per_second"

// calls returns the number of calls that carry total items, batch at a
// time, and how many items call seq carries.
func (c runConfig) calls() int64 { return (c.total + int64(c.batch) - 1) / int64(c.batch) }

func (c runConfig) items(seq int64) int {
	return int(min(int64(c.batch), c.total-seq*int64(c.batch)))
}

// counters are shared by the workers and read by the progress line.
type counters struct {
	calls    atomic.Int64 // calls that returned
	ok       atomic.Int64
	items    atomic.Int64 // items of successful calls
	definite atomic.Int64
	unknown  atomic.Int64
	missing  atomic.Int64
	// staleMisses are successful stale reads that found nothing.
	staleMisses atomic.Int64

	firstErr atomic.Pointer[error]

	kindsMu sync.Mutex       // guards kinds
	kinds   map[string]int64 // failed calls by outcome and kind (errorKind)
}

func (c *counters) failed() int64 { return c.definite.Load() + c.unknown.Load() + c.missing.Load() }

// noteErr records a failed call: outcome is "definite", "unknown" or
// "missing".
func (c *counters) noteErr(outcome string, err error) {
	c.firstErr.CompareAndSwap(nil, &err)
	k := outcome
	if outcome != "missing" {
		k += " " + errorKind(err)
	}
	c.kindsMu.Lock()
	defer c.kindsMu.Unlock()
	if c.kinds == nil {
		c.kinds = map[string]int64{}
	}
	c.kinds[k]++
}

// errorKind names what kind of failure err is, in words that do not vary
// from call to call: its gRPC code and, for meta, the reason its
// ErrorInfo gives (rpc/metapb/errors.go), such as "Unavailable
// WRONG_GROUP"; "DeadlineExceeded" or "Canceled" for a context error that
// did not come as a status; "other" for anything else.
func errorKind(err error) string {
	st, ok := status.FromError(err)
	if !ok {
		if st := status.FromContextError(err); st.Code() != codes.Unknown {
			return st.Code().String()
		}
		return "other"
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.Domain == metapb.ErrorDomain {
			return st.Code().String() + " " + info.Reason
		}
	}
	return st.Code().String()
}

// run drives wl over conns and returns the measured result. It returns
// ErrTooManyFailures (with the result) when the failures exceed the
// allowed fraction, and the partial result with ctx's error when ctx ends
// first (the run was interrupted).
func run(ctx context.Context, wl workload, conns []conn, cfg runConfig) (*Result, error) {
	if len(conns) == 0 {
		return nil, errors.New("metabench: no connections")
	}
	for _, c := range conns {
		if err := wl.check(c); err != nil {
			return nil, err
		}
	}
	if cfg.interval <= 0 {
		cfg.interval = time.Second
	}
	env := prepareEnv{clients: cfg.clients, seed: cfg.seed, valueSize: cfg.valueSize, timeout: cfg.timeout, phase: func(label, unit string, total int64) (func(int64), func()) {
		var done atomic.Int64
		stop := startProgress(cfg, label, unit, total, func() progressFigures {
			return progressFigures{done: done.Load()}
		})
		return func(n int64) { done.Add(n) }, stop
	}}
	if err := wl.prepare(ctx, conns, env); err != nil {
		return nil, err
	}

	calls := cfg.calls()
	allowed := int64(cfg.maxErrorRate * float64(calls))
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var aborted atomic.Bool
	var ctr counters
	var next atomic.Int64
	hists := make([]*hdrhistogram.Histogram, cfg.clients)

	stopProfile, err := startCPUProfile(cfg.cpuProfile)
	if err != nil {
		return nil, err
	}
	stopProgress := startProgress(cfg, cfg.label, wl.unit(), cfg.total, func() progressFigures {
		return progressFigures{done: ctr.items.Load(), definite: ctr.definite.Load(), unknown: ctr.unknown.Load(), missing: ctr.missing.Load()}
	})
	cpu0 := processCPU()
	server0, serverErr := pidsCPU(cfg.serverPIDs)
	if serverErr != nil {
		return nil, serverErr
	}
	start := time.Now()
	stopSeries, seriesErr := startSeries(cfg, start, &ctr)
	var wg sync.WaitGroup
	for id := range cfg.clients {
		w := newWorker(id, cfg.seed, cfg.valueSize)
		h := hdrhistogram.New(histMin, histMax, histDigits)
		hists[id] = h
		c := conns[id%len(conns)]
		wg.Go(func() {
			for runCtx.Err() == nil {
				if cfg.duration > 0 && time.Since(start) >= cfg.duration {
					return
				}
				seq := next.Add(1) - 1
				if seq >= calls {
					return
				}
				n := cfg.items(seq)
				callCtx, callCancel := context.WithTimeout(runCtx, cfg.timeout)
				t0 := time.Now()
				err := wl.call(callCtx, c, w, seq, n)
				took := time.Since(t0)
				callCancel()
				if err != nil && runCtx.Err() != nil {
					// Cut short by the end of the run, not by the cluster.
					return
				}
				ctr.calls.Add(1)
				if errors.Is(err, errStaleMiss) {
					ctr.staleMisses.Add(1)
					err = nil
				}
				switch {
				case err == nil:
					ctr.ok.Add(1)
					ctr.items.Add(int64(n))
					_ = h.RecordValue(max(took.Microseconds(), histMin))
					continue
				case errors.Is(err, errMissing), errors.Is(err, errPage):
					ctr.missing.Add(1)
					ctr.noteErr("missing", err)
				case wl.writes() && c.unknown(err):
					ctr.unknown.Add(1)
					ctr.noteErr("unknown", err)
				default:
					ctr.definite.Add(1)
					ctr.noteErr("definite", err)
				}
				if ctr.failed() > allowed && aborted.CompareAndSwap(false, true) {
					cancel()
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu := processCPU() - cpu0
	server1, serverErr := pidsCPU(cfg.serverPIDs)
	stopProgress()
	stopSeries()
	profErr := stopProfile()

	all := hdrhistogram.New(histMin, histMax, histDigits)
	for _, h := range hists {
		all.Merge(h)
	}
	res := newResult(&ctr, calls, elapsed, all)
	res.ClientCPUSeconds = cpu.Seconds()
	res.ServerCPUSeconds = (server1 - server0).Seconds()
	if serverErr != nil {
		return res, serverErr
	}
	if profErr != nil {
		return res, fmt.Errorf("--cpuprofile: %w", profErr)
	}
	if err := seriesErr(); err != nil {
		return res, fmt.Errorf("--series: %w", err)
	}
	switch {
	case aborted.Load():
		res.Aborted = true
		return res, fmt.Errorf("%w: %d of %d calls failed, more than --max-error-rate %g allows; stopped early",
			ErrTooManyFailures, ctr.failed(), ctr.calls.Load(), cfg.maxErrorRate)
	case ctx.Err() != nil:
		res.Aborted = true
		return res, fmt.Errorf("interrupted: %w", ctx.Err())
	case ctr.failed() > allowed:
		return res, fmt.Errorf("%w: %d of %d calls failed, more than --max-error-rate %g allows",
			ErrTooManyFailures, ctr.failed(), ctr.calls.Load(), cfg.maxErrorRate)
	}
	return res, nil
}

// startCPUProfile starts writing a CPU profile to path ("" for none);
// stop ends it and closes the file.
func startCPUProfile(path string) (stop func() error, err error) {
	if path == "" {
		return func() error { return nil }, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	return func() error {
		pprof.StopCPUProfile()
		return f.Close()
	}, nil
}

// processCPU returns the user and system CPU time this process has used:
// on a small machine the load generator shares the cores with the cluster,
// so its own cost belongs in the report.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// clockTicks is the unit of /proc/PID/stat's CPU times: USER_HZ, which
// Linux fixes at 100 for user space.
const clockTicks = 100

// pidsCPU returns the user and system CPU time the processes pids have
// used, summed, from /proc/PID/stat (fields 14 and 15, counted after the
// command name, which may hold spaces and parentheses).
func pidsCPU(pids []int) (time.Duration, error) {
	var sum time.Duration
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return 0, fmt.Errorf("--server-pids: %w", err)
		}
		i := bytes.LastIndexByte(b, ')')
		fields := strings.Fields(string(b[i+1:]))
		// fields[0] is field 3 (the state): utime and stime are 14 and 15.
		if i < 0 || len(fields) < 13 {
			return 0, fmt.Errorf("--server-pids: /proc/%d/stat: unexpected format", pid)
		}
		for _, f := range fields[11:13] {
			t, err := strconv.ParseInt(f, 10, 64)
			if err != nil {
				return 0, fmt.Errorf("--server-pids: /proc/%d/stat: %w", pid, err)
			}
			sum += time.Duration(t) * time.Second / clockTicks
		}
	}
	return sum, nil
}

// forEach runs fn for every index in [0, n) with env.clients workers over
// conns, each call bounded by env.timeout; the first error stops it and is
// returned.
func forEach(ctx context.Context, env prepareEnv, conns []conn, n int64,
	fn func(ctx context.Context, c conn, w *worker, i int64) error) error {
	g, ctx := errgroup.WithContext(ctx)
	var next atomic.Int64
	for id := range env.clients {
		// A different stream from the run's workers (id+clients), so the
		// loaded values do not repeat the run's.
		w := newWorker(id+env.clients, env.seed, env.valueSize)
		c := conns[id%len(conns)]
		g.Go(func() error {
			for ctx.Err() == nil {
				i := next.Add(1) - 1
				if i >= n {
					return nil
				}
				callCtx, cancel := context.WithTimeout(ctx, env.timeout)
				err := fn(callCtx, c, w, i)
				cancel()
				if err != nil {
					return err
				}
			}
			return ctx.Err()
		})
	}
	return g.Wait()
}

// startSeries writes the --series CSV (seriesHeader) every cfg.interval
// until stop is called; stop writes a last sample, and err returns the
// first write error.
func startSeries(cfg runConfig, start time.Time, ctr *counters) (stop func(), err func() error) {
	if cfg.series == nil {
		return func() {}, func() error { return nil }
	}
	var werr error
	lastItems, lastFailed, lastAt := int64(0), int64(0), start
	sample := func(now time.Time) {
		items, failed := ctr.items.Load(), ctr.failed()
		rate := 0.0
		if d := now.Sub(lastAt).Seconds(); d > 0 {
			rate = float64(items-lastItems) / d
		}
		if werr == nil {
			// The wall-clock column is the start's plus the monotonic time
			// since: a wall clock stepped back (NTP) must not make the
			// samples go back in time.
			_, werr = fmt.Fprintf(cfg.series, "%d,%.3f,%d,%d,%.1f\n", start.UnixMilli()+now.Sub(start).Milliseconds(), now.Sub(start).Seconds(),
				items-lastItems, failed-lastFailed, rate)
		}
		lastItems, lastFailed, lastAt = items, failed, now
	}
	if _, werr = fmt.Fprintln(cfg.series, seriesHeader); werr != nil {
		return func() {}, func() error { return werr }
	}
	stopTicks := every(cfg.interval, sample)
	var once sync.Once
	return func() {
		once.Do(func() {
			stopTicks()
			sample(time.Now())
		})
	}, func() error { return werr }
}

// every calls fn with the tick's time every interval, from one goroutine,
// until the returned stop is called; stop waits for fn to return.
func every(interval time.Duration, fn func(now time.Time)) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case now := <-t.C:
				fn(now)
			}
		}
	})
	return func() {
		close(done)
		wg.Wait()
	}
}

// progressFigures is one sample for the progress line.
type progressFigures struct {
	done                       int64
	definite, unknown, missing int64
}

// startProgress prints a progress line every cfg.interval until the
// returned stop is called; stop waits for the printer and ends the line.
func startProgress(cfg runConfig, label, unit string, total int64, sample func() progressFigures) (stop func()) {
	if cfg.progress == nil {
		return func() {}
	}
	start := time.Now()
	var last int64
	lastAt := start
	stopTicks := every(cfg.interval, func(now time.Time) {
		f := sample()
		rate := float64(f.done-last) / now.Sub(lastAt).Seconds()
		last, lastAt = f.done, now
		line := fmt.Sprintf("%s %5.1f%% %d/%d %s  %.0f %s/s  errors %d definite, %d unknown, %d missing  %s",
			label, 100*float64(f.done)/float64(max(total, 1)), f.done, total, unit, rate, unit,
			f.definite, f.unknown, f.missing, now.Sub(start).Truncate(time.Second))
		if cfg.tty {
			fmt.Fprintf(cfg.progress, "\r%s\x1b[K", line)
		} else {
			fmt.Fprintln(cfg.progress, line)
		}
	})
	var once sync.Once
	return func() {
		once.Do(func() {
			stopTicks()
			if cfg.tty {
				fmt.Fprint(cfg.progress, "\r\x1b[K")
			}
		})
	}
}
