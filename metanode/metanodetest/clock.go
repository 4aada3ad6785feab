package metanodetest

import (
	"sync"
	"time"
)

// FakeClock is a clock tests move by hand (metanode.Config.Clock): expiry
// and liveness decisions then happen when the test says, without sleeping.
// Share one between the nodes of a cluster, as synchronised clocks would
// be.
type FakeClock struct {
	mu  sync.Mutex
	now time.Time
}

// NewFakeClock starts at t.
func NewFakeClock(t time.Time) *FakeClock { return &FakeClock{now: t} }

// Now returns the clock's time.
func (c *FakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d.
func (c *FakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}
