package sm

import (
	"io"
	"sync"
	"time"
)

// Limiter bounds the rate at which snapshots are sent, in bytes per
// second, so that a replica move or a lagging follower's catch-up does not
// starve client traffic of disk and network. One Limiter may be shared by
// every group of a node (SnapStoreConfig.Limiter): the bound is then on the
// node's total. A nil *Limiter does not limit.
//
// It is a token bucket holding at most a tenth of a second's worth of
// bytes: after a pause the first reads go at once, then the reader is held
// to the rate.
type Limiter struct {
	rate  float64       // bytes per second
	burst time.Duration // credit an idle limiter accumulates

	now   func() time.Time
	sleep func(time.Duration)

	mu   sync.Mutex
	next time.Time // guarded by mu: when the bytes granted so far are paid for
}

// limiterChunk bounds one limited Read, so that one call never waits long
// and concurrent readers interleave.
const limiterChunk = 256 << 10

// NewLimiter returns a limiter of bytesPerSecond, or nil (no limit) when
// bytesPerSecond is zero or negative.
func NewLimiter(bytesPerSecond int64) *Limiter {
	if bytesPerSecond <= 0 {
		return nil
	}
	return &Limiter{rate: float64(bytesPerSecond), burst: 100 * time.Millisecond, now: time.Now, sleep: time.Sleep}
}

// BytesPerSecond returns the limit, 0 for a nil limiter.
func (l *Limiter) BytesPerSecond() int64 {
	if l == nil {
		return 0
	}
	return int64(l.rate)
}

// wait blocks until n more bytes fit in the rate.
func (l *Limiter) wait(n int) {
	if l == nil || n <= 0 {
		return
	}
	l.mu.Lock()
	now := l.now()
	if floor := now.Add(-l.burst); l.next.Before(floor) {
		l.next = floor
	}
	l.next = l.next.Add(time.Duration(float64(n) / l.rate * float64(time.Second)))
	d := l.next.Sub(now)
	l.mu.Unlock()
	if d > 0 {
		l.sleep(d)
	}
}

// reader wraps r so that reading through it keeps to the limit.
func (l *Limiter) reader(r io.Reader) io.Reader {
	if l == nil {
		return r
	}
	return &limitedReader{r: r, l: l}
}

type limitedReader struct {
	r io.Reader
	l *Limiter
}

func (lr *limitedReader) Read(p []byte) (int, error) {
	if len(p) > limiterChunk {
		p = p[:limiterChunk]
	}
	n, err := lr.r.Read(p)
	lr.l.wait(n)
	return n, err
}
