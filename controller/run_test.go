package controller

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/metamq/meta/sm"
	"github.com/metamq/meta/sm/logpb"
	"github.com/metamq/meta/verify/poll"
)

// idleNode is a node with nothing to read: the controller's checks find
// nothing to do.
type idleNode struct{}

func (idleNode) Now() time.Time { return time.Now() }
func (idleNode) ProposeMetadata(context.Context, *logpb.Op) (*logpb.Result, error) {
	return nil, errors.New("idle")
}
func (idleNode) Metadata() (*sm.Machine, error)                   { return nil, errors.New("idle") }
func (idleNode) Leaders() (map[string]string, []string)           { return nil, nil }
func (idleNode) MoveLeader(context.Context, string, string) error { return nil }
func (idleNode) StartSplit(context.Context, string, uint64) (string, *logpb.HashRange, error) {
	return "", nil, errors.New("no splits here")
}

// A run that is slow to stop never deactivates the run after it: the old
// term's Run used to clear the controller's activity in a defer after the
// next term's Run had started, and the controller then refused heartbeats.
func TestOldRunDoesNotDeactivateTheNext(t *testing.T) {
	cfg := DefaultConfig()
	cfg.CheckInterval = time.Millisecond
	c, err := New(cfg, idleNode{})
	if err != nil {
		t.Fatal(err)
	}
	oldCtx, stopOld := context.WithCancel(context.Background())
	oldDone := make(chan struct{})
	go func() { c.Run(oldCtx); close(oldDone) }()
	waitRuns(t, c, 1)
	newCtx, stopNew := context.WithCancel(context.Background())
	newDone := make(chan struct{})
	go func() { c.Run(newCtx); close(newDone) }()
	waitRuns(t, c, 2)
	// The new run has started; now the old one ends.
	stopOld()
	<-oldDone
	if !c.Active() {
		t.Fatal("the old run's end deactivated the controller while the new run runs")
	}
	stopNew()
	<-newDone
	if c.Active() {
		t.Fatal("active after every run ended")
	}
}

func waitRuns(t *testing.T, c *Controller, n uint64) {
	t.Helper()
	poll.ForTrue(t, "runs to start", 10*time.Second, func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.run >= n
	})
}
