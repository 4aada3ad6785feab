package sm

import (
	"bytes"
	"io"
	"testing"
	"time"
)

// fakeClock is a clock whose sleeps advance it.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time                   { return c.t }
func (c *fakeClock) sleep(d time.Duration)            { c.t = c.t.Add(d) }
func (c *fakeClock) since(t0 time.Time) time.Duration { return c.t.Sub(t0) }

func fakeLimiter(bytesPerSecond int64) (*Limiter, *fakeClock) {
	c := &fakeClock{t: time.Unix(1000, 0)}
	l := NewLimiter(bytesPerSecond)
	l.now, l.sleep = c.now, c.sleep
	return l, c
}

// Reading through a limiter takes size/rate, less the burst an idle
// limiter allows, on its clock; and it reads every byte unchanged.
func TestLimiterHoldsTheRate(t *testing.T) {
	const rate = 1 << 20 // 1 MiB/s
	for _, size := range []int{10 << 20, 3<<20 + 12345} {
		l, c := fakeLimiter(rate)
		data := bytes.Repeat([]byte("x"), size)
		t0 := c.now()
		got, err := io.ReadAll(l.reader(bytes.NewReader(data)))
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("read through the limiter: %d bytes, err %v; want %d bytes", len(got), err, size)
		}
		want := time.Duration(float64(size)/rate*float64(time.Second)) - l.burst
		if d := c.since(t0); d < want-time.Millisecond || d > want+time.Millisecond {
			t.Fatalf("%d bytes at %d B/s took %v on the limiter's clock, want %v", size, rate, d, want)
		}
	}
}

// Two readers sharing one limiter share its rate.
func TestLimiterIsShared(t *testing.T) {
	const rate = 1 << 20
	l, c := fakeLimiter(rate)
	a := l.reader(bytes.NewReader(make([]byte, 4<<20)))
	b := l.reader(bytes.NewReader(make([]byte, 4<<20)))
	t0 := c.now()
	buf := make([]byte, 64<<10)
	for done := 0; done < 2; {
		done = 0
		for _, r := range []io.Reader{a, b} {
			if _, err := r.Read(buf); err == io.EOF {
				done++
			}
		}
	}
	want := 8*time.Second - l.burst
	if d := c.since(t0); d < want-time.Millisecond || d > want+time.Millisecond {
		t.Fatalf("8 MiB through two readers of one 1 MiB/s limiter took %v, want %v", d, want)
	}
}

func TestNilLimiter(t *testing.T) {
	if l := NewLimiter(0); l != nil {
		t.Fatalf("NewLimiter(0): got %v, want nil", l)
	}
	var l *Limiter
	r := bytes.NewReader([]byte("abc"))
	if got := l.reader(r); got != io.Reader(r) {
		t.Fatal("a nil limiter wrapped the reader")
	}
	if l.BytesPerSecond() != 0 {
		t.Fatal("a nil limiter has a rate")
	}
}
