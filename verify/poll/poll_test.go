package poll

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// Until returns as soon as the condition holds, and its last error
// (wrapped with the context's) when the deadline passes first.
func TestUntil(t *testing.T) {
	n := 0
	if err := Until(context.Background(), func() error {
		if n++; n < 3 {
			return fmt.Errorf("try %d", n)
		}
		return nil
	}); err != nil || n != 3 {
		t.Fatalf("got err %v after %d tries, want nil after 3", err, n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	boom := errors.New("boom")
	err := Until(ctx, func() error { return boom })
	if !errors.Is(err, boom) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want boom and deadline exceeded", err)
	}
	// The last try cut short by ctx's end: the one before says why.
	short, cancelShort := context.WithCancel(context.Background())
	defer cancelShort()
	tries := 0
	err = Until(short, func() error {
		if tries++; tries == 3 {
			cancelShort()
			return short.Err()
		}
		return boom
	})
	if !strings.Contains(err.Error(), "the try before: boom") {
		t.Fatalf("got %v, want it to name boom, the try before the deadline", err)
	}
}

type fakeTB struct{ failed string }

func (f *fakeTB) Helper() {}
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.failed = fmt.Sprintf(format, args...)
}

// For fails the test, naming what it waited for, when the condition never
// holds; it does not fail when it does.
func TestFor(t *testing.T) {
	var ok fakeTB
	For(&ok, "ready", time.Second, True(func() bool { return true }))
	if ok.failed != "" {
		t.Fatalf("failed on a condition that holds: %s", ok.failed)
	}
	var bad fakeTB
	For(&bad, "ready", 30*time.Millisecond, True(func() bool { return false }))
	if bad.failed == "" {
		t.Fatal("did not fail on a condition that never holds")
	}
}
