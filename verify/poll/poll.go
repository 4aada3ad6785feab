package poll

import (
	"context"
	"fmt"
	"time"
)

// Interval is how often conditions are re-checked.
const Interval = 20 * time.Millisecond

// Until calls cond every Interval until it returns nil or ctx ends; it then
// returns cond's last error wrapped with ctx's, and names the error before
// it when that said something else: a last try cut short by ctx's end
// says only that, and what kept the condition false is in the one before.
func Until(ctx context.Context, cond func() error) error {
	t := time.NewTicker(Interval)
	defer t.Stop()
	var before error
	for {
		err := cond()
		switch {
		case err == nil:
			return nil
		case ctx.Err() == nil:
			select {
			case <-ctx.Done():
			case <-t.C:
				before = err
				continue
			}
		}
		if before != nil && before.Error() != err.Error() {
			return fmt.Errorf("%w (%w; the try before: %v)", err, ctx.Err(), before)
		}
		return fmt.Errorf("%w (%w)", err, ctx.Err())
	}
}

// TB is the part of testing.TB that For uses.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
}

// For waits until cond holds, failing t with what and cond's last error
// when timeout passes first.
func For(t TB, what string, timeout time.Duration, cond func() error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := Until(ctx, cond); err != nil {
		t.Fatalf("%s: not true after %s: %v", what, timeout, err)
	}
}

// ForTrue is For with a boolean condition.
func ForTrue(t TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	For(t, what, timeout, True(cond))
}

// True adapts a boolean condition to For and Until.
func True(cond func() bool) func() error {
	return func() error {
		if cond() {
			return nil
		}
		return errNotYet
	}
}

var errNotYet = fmt.Errorf("condition not met")

// Check turns a condition and what was last seen into For's and Until's
// form: nil when ok, else an error saying last.
func Check(ok bool, last string) error {
	if ok {
		return nil
	}
	return fmt.Errorf("last seen: %s", last)
}
