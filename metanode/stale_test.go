package metanode_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/metamq/meta/metanode/metanodetest"
	"github.com/metamq/meta/sm"
	"github.com/metamq/meta/verify/poll"
)

// memSink is a raft.SnapshotSink into memory.
type memSink struct{ bytes.Buffer }

func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Cancel() error { return nil }
func (s *memSink) Close() error  { return nil }

var _ raft.SnapshotSink = (*memSink)(nil)

// A follower offered a snapshot older than its own state refuses it
// (nothing changes) and asks the leader for a fresh one, which the leader
// takes: its next attempt then carries a snapshot the follower can use.
// (The live sequence, seen once in a chaos run: a re-added member took
// its own snapshot and compacted its log, and the leader sent it an older
// snapshot again; hashicorp/raft installed it and panicked.)
func TestFollowerRefusesStaleSnapshotAndAsksForAFreshOne(t *testing.T) {
	c := metanodetest.Start(t, metanodetest.Options{})
	cl := c.Client("")
	const group = "data-0"
	leader := c.WaitLeader(group, 30*time.Second)
	follower := followerOf(t, c, group)
	for i := range 10 {
		put(t, cl, fmt.Sprintf("k%d", i), "v")
	}
	fsm := c.Running(follower).FSM(group)
	waitCaughtUp(t, c, follower, group)
	snap, err := fsm.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var stale memSink
	if err := snap.Persist(&stale); err != nil {
		t.Fatal(err)
	}
	snap.Release()
	staleIndex := fsm.AppliedIndex()

	for i := 10; i < 60; i++ {
		put(t, cl, fmt.Sprintf("k%d", i), "v")
	}
	waitCaughtUp(t, c, follower, group)
	applied := fsm.AppliedIndex()
	before, err := fsm.Hash()
	if err != nil {
		t.Fatal(err)
	}
	if got := lastSnapshot(c, leader, group); got >= applied {
		t.Fatalf("leader's last snapshot: got %d before the test asked, want below %d", got, applied)
	}

	err = fsm.Restore(io.NopCloser(bytes.NewReader(stale.Bytes())))
	if !errors.Is(err, sm.ErrStaleSnapshot) {
		t.Fatalf("restore of the snapshot at %d on a follower at %d: got %v, want %v", staleIndex, applied, err, sm.ErrStaleSnapshot)
	}
	if after, _ := fsm.Hash(); after != before || fsm.AppliedIndex() < applied {
		t.Fatalf("follower after a refused restore: hash %+v at %d, want %+v at %d or later", after, fsm.AppliedIndex(), before, applied)
	}
	poll.ForTrue(t, fmt.Sprintf("the leader to snapshot at least the follower's index %d", applied), 20*time.Second, func() bool {
		return lastSnapshot(c, leader, group) >= applied
	})
	// The group still serves, on both.
	put(t, cl, "after", "v")
}

func lastSnapshot(c *metanodetest.Cluster, id, group string) uint64 {
	for _, st := range c.Running(id).Status() {
		if st.Group == group {
			return st.LastSnapshotIndex
		}
	}
	return 0
}
